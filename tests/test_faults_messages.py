"""Messages that mislead or leak: every command-line usage error is one `error:` line with exit 2 (not a
framed box); trace errors never echo the file's content; a byte-order mark is read past; duplicate YAML keys
are refused; a bad Ray address fails in seconds."""

from __future__ import annotations

import csv
import io
import socket
import time

import pytest
import yaml
from conftest import REPO, cli_error

from simulator.errors import ScenarioError


@pytest.mark.parametrize("args, expected", [
    (["explain"], "Missing argument 'scenario'."),  # `run` alone runs the shipped default scenario
    (["run", "--seed", "nan", "s.yaml"], "Invalid value for '--seed'"),
    (["run", "--seed", "-1", "s.yaml"], "Invalid value for '--seed'"),
    (["sweep", "--workers", "0", "s.yaml"], "Invalid value for '--workers'"),
    (["compare", "--workers", "0", "s.yaml"], "Invalid value for '--workers'"),
    (["validate", "--workers", "-3"], "Invalid value for '--workers'"),
    (["slo-search", "--target", "abc", "s.yaml"], "Invalid value for '--target'"),
    (["slo-search", "--max-runs", "0", "s.yaml"], "Invalid value for '--max-runs'"),
    (["run", "--bogus", "s.yaml"], "No such option: --bogus"),
    (["bogus"], "No such command 'bogus'."),
    (["list"], "Missing argument 'what'."),
    (["workload", "describe"], "Missing argument 'file'."),
    (["calibrate", "--folds", "1"], "Invalid value for '--folds'"),
    (["run", "a.yaml", "b.yaml"], "Got unexpected extra argument"),
])
def test_usage_errors_are_one_line(args, expected):
    assert cli_error(*args).startswith(expected)


def test_no_command_shows_the_help():
    from typer.testing import CliRunner

    from simulator.cli import app

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2 and "Usage" in result.output and "run" in result.output


def test_the_installed_entry_point_exits_2_with_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "simulator", "run", "--seed", "nan", "x.yaml"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: Invalid value for '--seed'")


# ---------------------------------------------------------------- traces never echo their content

SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize("name, content, fmt", [
    ("t.csv", f"API_KEY={SECRET}\n1,2,3\n", "azure"),
    ("t.csv", f"TIMESTAMP,{SECRET},GeneratedTokens\n", "azure"),
    ("t.jsonl", f"{SECRET}\n", "mooncake"),
    ("t.jsonl", f'{{"token": "{SECRET}"}}\n', "mooncake"),
])
def test_trace_errors_do_not_echo_the_file(write_scenario, tmp_path, name, content, fmt):
    path = tmp_path / name
    path.write_text(content)
    message = cli_error("run", write_scenario({"workload": {"arrival": {"kind": "trace", "format": fmt,
                                                                        "path": str(path)}}}), "-o", tmp_path / "o")
    assert message.startswith(f"{path}: ") and SECRET not in message, message


def test_sharegpt_header_is_not_echoed(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text(f"password={SECRET}\n1,2\n")
    workload = tmp_path / "w.yaml"
    workload.write_text(yaml.safe_dump({"arrival": {"kind": "poisson", "rate": "1 /s"}, "num_requests": 3,
                                        "prompt_tokens": {"kind": "empirical", "path": str(path),
                                                          "format": "sharegpt"},
                                        "output_tokens": {"kind": "fixed", "value": 3}}))
    message = cli_error("workload", "describe", workload, "-o", tmp_path / "p")
    assert SECRET not in message and "the header has no column" in message


# ---------------------------------------------------------------- byte-order marks

def test_a_bom_in_a_validation_csv_is_read_past(tmp_path):
    from simulator.studies.validate.cases import read_cases

    rows = list(csv.DictReader((REPO / "validation" / "calibration.csv").open(encoding="utf-8")))
    out = io.StringIO()
    writer = csv.DictWriter(out, list(rows[0]))
    writer.writeheader()
    writer.writerow(rows[1])
    path = tmp_path / "cases.csv"
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode())
    assert [c.case_id for c in read_cases(path)] == [rows[1]["case_id"]]


def test_a_bom_in_a_scenario_and_a_trace(write_scenario, tmp_path):
    from simulator.config.load import load_scenario
    from simulator.workload.traces import read_trace

    path = write_scenario()
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_scenario(path).spec.name == "test"
    trace = tmp_path / "t.csv"
    trace.write_bytes(b"\xef\xbb\xbfTIMESTAMP,ContextTokens,GeneratedTokens\n"
                      b"2023-11-16 18:17:03.5000000,10,3\n")
    assert len(read_trace("azure", trace)) == 1


# ---------------------------------------------------------------- duplicate keys

@pytest.mark.parametrize("where", ["scenario", "topology", "workload"])
def test_duplicate_keys_are_refused_in_every_yaml_file(write_scenario, tmp_path, where):
    if where == "scenario":
        path = write_scenario()
        path.write_text(path.read_text() + "seed: 4\n")
        target = path
    elif where == "topology":
        target = tmp_path / "t.yaml"
        target.write_text((REPO / "topologies" / "single-h100.yaml").read_text() + "nodes: 1\nnodes: 2\n")
        path = write_scenario({"cluster": str(target)})
    else:
        target = tmp_path / "w.yaml"
        target.write_text("arrival: {kind: poisson, rate: 1 /s, rate: 2 /s}\nnum_requests: 3\n"
                          "prompt_tokens: {kind: fixed, value: 3}\noutput_tokens: {kind: fixed, value: 3}\n")
        path = write_scenario({"workload": str(target)})
    message = cli_error("explain", path)
    assert message.startswith(f"{target}: line ") and "appears twice" in message, message


# ---------------------------------------------------------------- a bad Ray address fails fast

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address, expected", [
    ("not an address", "is not an address; allowed: host:port"),
    ("localhost:99999", "is not an address"),
    ("localhost", "is not an address"),
    ("127.0.0.1:{closed}", "does not answer within"),
    ("ray://127.0.0.1:{closed}", "does not answer within"),
    ("no-such-host.invalid:6379", "does not answer within"),
])
def test_a_bad_ray_address_fails_in_seconds(address, expected):
    from simulator.studies.sweep import check_ray_address

    start = time.perf_counter()
    with pytest.raises(ScenarioError) as info:
        check_ray_address(address.format(closed=_closed_port()), timeout_s=2)
    assert expected in str(info.value) and str(info.value).startswith("--address: ")
    assert time.perf_counter() - start < 10


def test_sweep_with_a_bad_ray_address_is_one_line(tmp_path):
    start = time.perf_counter()
    message = cli_error("sweep", REPO / "scenarios" / "sweeps" / "llama70b-tp-split.yaml", "-o", tmp_path / "o",
                        "--backend", "ray", "--address", f"127.0.0.1:{_closed_port()}")
    assert message.startswith("--address: ") and time.perf_counter() - start < 30
