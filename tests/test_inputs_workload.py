"""Malformed workload files (`infersim workload describe FILE`, or named by a scenario): the exact one-line
error, exit 2. test_workload.py covers the structural mistakes of inline workloads; these are the rest."""

from __future__ import annotations

import pytest
import yaml
from conftest import cli_error

LENGTHS = {"prompt_tokens": {"kind": "fixed", "value": 30}, "output_tokens": {"kind": "fixed", "value": 5}}


def describe_error(tmp_path, workload: dict | bytes) -> str:
    path = tmp_path / "w.yaml"
    path.write_bytes(workload if isinstance(workload, bytes) else yaml.safe_dump(workload).encode())
    return cli_error("workload", "describe", path, "-o", tmp_path / "plots").removeprefix(f"{path}: ")


@pytest.mark.parametrize("workload, expected", [
    (b"", "must be a YAML mapping of keys to values, got NoneType"),
    (b"- poisson\n", "must be a YAML mapping of keys to values, got list"),
    ({"num_requests": 3, **LENGTHS}, "needs an arrival (or classes)"),
    ({"arrival": {"kind": "hawkes"}, "num_requests": 3, **LENGTHS},
     "arrival.kind: 'hawkes' is not one of: closed_loop, daily, gamma, offline, on_off, poisson, stages, trace"),
    ({"arrival": {"rate": 5}, "num_requests": 3, **LENGTHS}, "arrival: needs a 'kind:' key"),
    ({"arrival": "poisson", "num_requests": 3, **LENGTHS},
     "arrival: input should be a valid dictionary or object to extract fields from, got 'poisson'"),
    ({"arrival": {"kind": "offline"}, "num_requests": 3, "correlation": 2, **LENGTHS},
     "correlation: must be <= 1.0, got 2"),
    ({"arrival": {"kind": "offline"}, "num_requests": 3, **LENGTHS,
      "prompt_tokens": {"kind": "empirical", "values": [3, -1]}}, "prompt_tokens.values.1: must be >= 1, got -1"),
    ({"arrival": {"kind": "offline"}, "num_requests": 3, **LENGTHS,
      "prompt_tokens": {"kind": "lognormal", "mean": 100, "sigma": 50}}, "prompt_tokens.sigma: must be <= 5.0, got 50"),
    ({"arrival": {"kind": "offline"}, "num_requests": 3, **LENGTHS,
      "prompt_tokens": {"kind": "uniform", "low": 10, "high": 5}}, "prompt_tokens: high (5) must be >= low (10)"),
    ({"arrival": {"kind": "offline"}, "num_requests": 3, **LENGTHS, "output_tokens": {"kind": "fixed", "value": 0}},
     "output_tokens.value: must be >= 1, got 0"),
    ({"arrival": {"kind": "daily", "rate": "5 /s", "curve": [0, 0]}, "num_requests": 3, **LENGTHS},
     "arrival: curve needs at least one positive value"),
    ({"arrival": {"kind": "gamma", "rate": "5 /s", "cv": float("inf")}, "num_requests": 3, **LENGTHS},
     "arrival.cv: must be a finite number, got inf"),
    ({"arrival": {"kind": "poisson", "rate": "1e-300 /s"}, "num_requests": 5, **LENGTHS},
     "5 requests at 1e-300 /s span 5e+300 s of simulated time; allowed: up to 1e+08 s of simulated time "
     "(float64 resolution)"),
    ({"arrival": {"kind": "poisson", "rate": "5 /s"}, "duration": "1000 years", **LENGTHS},
     "duration: expected duration like '2 us', '1.5 ms' or '3 s', got unit 'years'"),
    ({"arrival": {"kind": "poisson", "rate": "5 /s"}, "duration": "1e9 s", **LENGTHS},
     "duration: must be <= 100000000.0, got '1e9 s'"),
    ({"arrival": {"kind": "on_off", "rate": "5 /s", "on_time": "1e-300 s", "off_time": "1 s"}, "num_requests": 3,
      **LENGTHS}, "arrival: rate x on_time + off_rate x off_time is 5e-300 requests per on/off cycle; allowed: at "
                  "least 0.001 (for rarer bursts use kind: poisson)"),
    ({"arrival": {"kind": "closed_loop", "users": 1, "think_time": "1e7 s"}, "num_requests": 100, **LENGTHS},
     "100 requests over 1 users thinking 1e+07 s each span 1e+09 s of simulated time; allowed: up to 1e+08 s of "
     "simulated time (float64 resolution)"),
    ({"arrival": {"kind": "poisson", "rate": "1e9 /s"}, "duration": "1000 h", **LENGTHS},
     "3.6e+15 requests to generate; allowed: up to 1e+07 from a workload file (describe a scenario that uses it to "
     "go further, within that scenario's limits)"),
    ({"name": "../../x", "arrival": {"kind": "offline"}, "num_requests": 3, **LENGTHS},
     "name: '../../x' cannot name an output folder; allowed: letters, digits, '_', '.', '+', '-', starting with a "
     "letter or digit, at most 100 characters"),
    ({"classes": [{"name": "a", "arrival": {"kind": "offline"}, "num_requests": True, **LENGTHS}]},
     "classes.0.num_requests: input should be a valid integer, unable to parse string as an integer, got 'true'"),
])
def test_workload_file_mistakes(tmp_path, workload, expected):
    assert describe_error(tmp_path, workload) == expected


def test_a_referenced_workload_file_is_named(tmp_path, write_scenario):
    (tmp_path / "workloads").mkdir()
    path = tmp_path / "workloads" / "mine.yaml"
    path.write_text(yaml.safe_dump({"arrival": {"kind": "poisson", "rate": "5 /s"}, **LENGTHS}))
    scenario = write_scenario({"workload": "mine"})
    assert cli_error("run", scenario) == f"{path}: poisson arrivals need num_requests or duration (one of them)"


def test_the_default_plot_folder_uses_a_checked_name(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from simulator.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"name": "ok-1", "arrival": {"kind": "offline"},
                                                     "num_requests": 3, **LENGTHS}))
    assert CliRunner().invoke(app, ["workload", "describe", "w.yaml"]).exit_code == 0
    assert sorted(p.name for p in (tmp_path / "results" / "workload-ok-1").iterdir()) == [
        "arrivals.png", "interarrival.png", "lengths.png"]
