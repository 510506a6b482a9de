"""Malformed sweep and compare files: the exact one-line error, exit 2, before any point is simulated.
test_sweep.py and test_compare.py cover zip lengths, axes given twice, duplicate designs and --set clashes."""

from __future__ import annotations

import pytest
import yaml
from conftest import REPO, cli_error

from simulator.errors import ScenarioError

NAME_RULE = ("allowed: letters, digits, '_', '.', '+', '-', starting with a letter or digit, at most 100 "
             "characters")
H100 = str(REPO / "topologies" / "single-h100.yaml")


@pytest.fixture
def sweep_error(tmp_path, write_scenario):
    write_scenario({"workload.num_requests": 4}, name="base.yaml")

    def error(body: dict | bytes) -> str:
        path = tmp_path / "sweep.yaml"
        path.write_bytes(body if isinstance(body, bytes) else yaml.safe_dump(body, sort_keys=False).encode())
        return cli_error("sweep", path, "-o", tmp_path / "out", "--no-plots", "--workers", "1").removeprefix(
            f"{path}: ")

    return error


@pytest.mark.parametrize("body, expected", [
    (b"", "must be a YAML mapping of keys to values, got NoneType"),
    ({"axes": {"seed": [1]}}, "base: required key is missing"),
    ({"base": "nope.yaml"}, "base: 'nope.yaml' is not a scenario file (no {d}/nope.yaml)"),
    ({"base": "base.yaml", "axes": {"a": 5}}, "axes.a: input should be a valid list, got 5"),
    ({"base": "base.yaml", "axes": {"a": []}}, "axes.a: must have at least 1 item, got 0"),
    ({"base": "base.yaml", "axes": ["a"]}, "axes: input should be a valid dictionary, got ['a']"),
    ({"base": "base.yaml", "axes": {"seed": [1, "x"]}}, "axes.seed: seeds must be integers >= 0, got 'x'"),
    ({"base": "base.yaml", "zip": [{"seed": [1, None], "a": [1, 2]}]}, "zip.0.seed: seeds must be integers >= 0, "
                                                                      "got None"),
    ({"base": "base.yaml", "axes": {"seed": [1]}, "x_axis": "zz"}, "x_axis: 'zz' is not one of the axes: seed"),
    ({"base": "base.yaml", "overrides": ["nokey"], "axes": {"seed": [1]}},
     "overrides.0: 'nokey' must look like dotted.key=value"),
    ({"base": "base.yaml", "seed": -1}, "seed: must be >= 0, got -1"),
    ({"base": "base.yaml", "seeds": "random"}, "seeds: 'random' is not one of: shared, spawn"),
    ({"base": "base.yaml", "axes": {f"k{i}": list(range(10)) for i in range(5)}},
     "axes: 1e+05 points; allowed: up to 10000 (at ~1 s each, more would take days); set allow_huge: true to "
     "run them anyway"),
    ({"base": "base.yaml", "axes": {"a": list(range(200))}, "zip": [{"b": list(range(100)), "c": list(range(100))}]},
     "axes: 2e+04 points; allowed: up to 10000 (at ~1 s each, more would take days); set allow_huge: true to "
     "run them anyway"),
    ({"base": "base.yaml", "name": "../x", "axes": {"seed": [1]}}, f"name: '../x' cannot name an output folder; "
                                                                   f"{NAME_RULE}"),
    ({"base": "base.yaml", "metrics": ["../../x"], "axes": {"seed": [1]}},
     "metrics.0: '../../x' cannot name a plot file; allowed: a dotted summary metric without '/', '\\' or "
     "control characters"),
    ({"base": "base.yaml", "axes": {"name": ["../../x"]}},
     f"no point of the sweep loads; the first: {{d}}/base.yaml: name: '../../x' cannot name an output folder; "
     f"{NAME_RULE}"),
    ({"base": "base.yaml", "axes": {"workload.num_requests": [10**12]}},
     "no point of the sweep loads; the first: {d}/base.yaml: workload: 1e+12 requests (>= 1.57e+12 iterations) "
     "need >= 666 TB of memory and >= 149 days of wall time, estimated at 540 B + 5 us per request, 80 B + 5 "
     "us per iteration; allowed: 64 GB (this machine's memory) and 24 h; set sim.allow_huge: true to run it "
     "anyway"),
])
def test_sweep_file_mistakes(sweep_error, tmp_path, monkeypatch, body, expected):
    monkeypatch.setattr("simulator.config.limits.machine_memory_bytes", lambda: 64e9)
    assert sweep_error(body) == expected.format(d=tmp_path)


def test_a_sweep_may_opt_out_of_the_point_limit(tmp_path):
    import importlib

    sweep_mod = importlib.import_module("simulator.studies.sweep")
    (tmp_path / "base.yaml").write_text("name: b\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "axes": {"a": [1, 2], "b": list(range(5001))}}))
    with pytest.raises(ScenarioError) as refused:
        sweep_mod.load_sweep(path)
    assert str(refused.value) == (f"{path}: axes: 1e+04 points; allowed: up to 10000 (at ~1 s each, more would "
                                  "take days); set allow_huge: true to run them anyway")
    path.write_text(yaml.safe_dump({"base": "base.yaml", "allow_huge": True,
                                    "axes": {"a": [1, 2], "b": list(range(5001))}}))
    spec, _ = sweep_mod.load_sweep(path)
    assert len(sweep_mod.expand(spec, 0)) == 10_002


# ---------------------------------------------------------------- compare files

def tiny() -> dict:
    return {"name": "c", "model": "llama-3.1-8b", "concurrency": [1], "requests_per_user": 1, "min_requests": 2,
            "workload": {"prompt_tokens": {"kind": "fixed", "value": 64}, "output_tokens": {"kind": "fixed",
                                                                                          "value": 4},
                         "arrival": {"kind": "poisson", "rate": "5 /s"}, "num_requests": 3},
            "designs": [{"name": "h100", "cluster": H100}]}


@pytest.mark.parametrize("changes, expected", [
    ({"designs": None}, "designs: required key is missing"),
    ({"designs": []}, "designs: must have at least 1 item, got 0"),
    ({"concurrency": [0]}, "concurrency.0: must be >= 1, got 0"),
    ({"concurrency": 4}, "concurrency: input should be a valid tuple, got 4"),
    ({"requests_per_user": 1.5}, "requests_per_user: must be an integer, got 1.5"),
    ({"think_time": "-1 s"}, "think_time: must be >= 0, got '-1 s'"),
    ({"name": "../x"}, f"name: '../x' cannot name an output folder; {NAME_RULE}"),
    ({"designs": [{"name": "a/b", "cluster": H100}]},
     f"designs.0.name: 'a/b' cannot name an output folder; {NAME_RULE}"),
    ({"designs": [{"name": "a", "cluster": "nope"}]},
     "designs.0.cluster: 'nope' is not one of: a100-4x, cerebras-cs3-4, dgx-b200, gb200-nvl72, groq-rack-720, "
     "h100-4x8-ndr400, hgx-h100, hgx-h100-x2-ndr400, hgx-h200, mi300x-platform, single-h100, single-h200, "
     "spine-contention-demo, tpu-v5e-256, tpu-v5p-64"),
    ({"designs": [{"name": "a", "cluster": H100, "deployment": {"replicas": 0}}]},
     "designs.0.deployment.replicas: must be >= 1, got 0"),
    ({"workload": "nope"},
     "workload: 'nope' is not one of: azure-code-2023, azure-conv-2023, chat-poisson, closed-loop-64, "
     "mixed-tenants, mooncake-conversation, servegen-deepseek-r1, shared-prefix-chat, sharegpt-poisson"),
    ({"concurrency": [10**9]},
     "workload: 1e+09 requests (>= 1.56e+07 iterations) need >= 541 GB of memory and >= 84.6 min of wall time, "
     "estimated at 540 B + 5 us per request, 80 B + 5 us per iteration; "
     "allowed: 64 GB (this machine's memory) and 24 h; set sim.allow_huge: true to run it anyway"),
])
def test_compare_file_mistakes(tmp_path, monkeypatch, changes, expected):
    monkeypatch.setattr("simulator.config.limits.machine_memory_bytes", lambda: 64e9)
    data = tiny()
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    message = cli_error("compare", path, "-o", tmp_path / "out", "--no-plots", "--workers", "1")
    assert message == f"{path}: {expected}"
