"""Special files and unbounded reads: a device, a FIFO, a folder or an oversized file given as any input is
one line (exit 2) and never read without bound or waited on; every YAML string (a file, a --set value, a
sweep's overrides) has the same caps on aliases, self-reference, nesting and duplicate keys; every path that
generates requests is within a limit before it allocates."""

from __future__ import annotations

import gzip
import os
import signal
from contextlib import contextmanager

import pytest
import yaml
from conftest import REPO, cli_error, small_scenario

from simulator.config import files
from simulator.errors import ScenarioError

BOMB = ('a: &a ["x","x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n'
        'e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n'
        'g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n')
FLOW_BOMB = ('{a: &a [x,x,x,x,x,x,x,x,x,x], b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,'
             '*b], d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d], f: &f [*e,*e,*e,*e,'
             '*e,*e,*e,*e,*e,*e], g: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]}')


@contextmanager
def deadline(seconds: int = 20):
    """Fail, instead of hanging the suite, when the code under test waits forever (a FIFO)."""
    def expire(signum, frame):
        raise TimeoutError(f"still waiting after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.yaml"
    os.mkfifo(path)
    return path


# ---------------------------------------------------------------- special files as every kind of input

@pytest.mark.parametrize("command", [["run"], ["explain"], ["sweep"], ["compare"], ["workload", "describe"],
                                     ["slo-search"]])
def test_dev_zero_as_an_input_file(command):
    message = cli_error(*command, "/dev/zero")
    assert message == "/dev/zero: is a device, not a regular file; allowed: a regular YAML file"


def test_dev_zero_as_a_validation_file(tmp_path):
    message = cli_error("validate", "/dev/zero", "-o", tmp_path / "out")
    assert message == "/dev/zero: is a device, not a regular file; allowed: a regular validation CSV"


@pytest.mark.parametrize("command", [["run"], ["explain"], ["sweep"], ["workload", "describe"]])
def test_a_fifo_is_refused_not_waited_on(command, fifo):
    with deadline():
        message = cli_error(*command, fifo)
    assert message == f"{fifo}: is a FIFO (named pipe), not a regular file; allowed: a regular YAML file"


def test_a_fifo_as_validation_file(tmp_path):
    os.mkfifo(tmp_path / "cases.csv")
    with deadline():
        message = cli_error("validate", tmp_path / "cases.csv", "-o", tmp_path / "out")
    assert "is a FIFO (named pipe), not a regular file" in message


def test_a_folder_as_validation_file(tmp_path):
    assert cli_error("validate", tmp_path, "-o", tmp_path / "out") == f"{tmp_path}: is a folder, not a validation CSV"


@pytest.mark.parametrize("path_kind", ["dev_zero", "fifo", "folder"])
def test_special_files_as_a_trace(write_scenario, tmp_path, path_kind):
    path = {"dev_zero": "/dev/zero", "folder": str(tmp_path)}.get(path_kind)
    if path is None:
        path = str(tmp_path / "trace.jsonl")
        os.mkfifo(path)
    scenario = write_scenario({"workload": {"arrival": {"kind": "trace", "format": "mooncake", "path": path}}})
    with deadline():
        message = cli_error("run", scenario, "-o", tmp_path / "out")
    assert message.startswith(f"{path}: is "), message


@pytest.mark.parametrize("path_kind", ["dev_zero", "fifo"])
def test_special_files_as_a_model_config(write_scenario, tmp_path, path_kind):
    path = tmp_path / "config.json"
    if path_kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with deadline():
        message = cli_error("explain", write_scenario({"model": str(path)}))
    assert "not a regular file" in message


def test_sizes_are_capped_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "t.jsonl"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(ScenarioError, match="is 0.0 MiB; allowed: up to 0.00390625 MiB"):
        files.read_bytes(big, 4096)
    bomb = tmp_path / "t.jsonl.gz"
    bomb.write_bytes(gzip.compress(b"\n" * 100_000))
    assert len(bomb.read_bytes()) < 4096
    with pytest.raises(ScenarioError, match="expands to over"):
        files.read_bytes(bomb, 4096)


def test_a_gzip_bomb_as_a_trace(write_scenario, tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_TRACE_BYTES", 2**20)
    bomb = tmp_path / "t.jsonl.gz"
    bomb.write_bytes(gzip.compress(b" " * (8 * 2**20)))
    scenario = write_scenario({"workload": {"arrival": {"kind": "trace", "format": "mooncake", "path": str(bomb)}}})
    message = cli_error("run", scenario, "-o", tmp_path / "out")
    assert message == f"{bomb}: expands to over 1 MiB; allowed: up to 1 MiB uncompressed"


# ---------------------------------------------------------------- YAML strings, wherever they come from

@pytest.mark.parametrize("value, expected", [
    (FLOW_BOMB, "values once its aliases (*name) are expanded"),
    ("&a [*a]", "an alias (*name) refers to the node that contains it"),
    ("&a {x: *a}", "an alias (*name) refers to the node that contains it"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ("{a: 1, a: 2}", "key 'a' appears twice"),
])
def test_set_values_have_the_file_caps(write_scenario, value, expected):
    with deadline():
        message = cli_error("run", write_scenario(), "--set", f"description={value}")
    assert message.startswith("--set: ") and expected in message, message


@pytest.mark.parametrize("value, expected", [
    (FLOW_BOMB, "values once its aliases (*name) are expanded"),
    ("&a [*a]", "refers to the node that contains it"),
    ("{a: 1, a: 2}", "appears twice"),
])
def test_sweep_overrides_have_the_file_caps(tmp_path, write_scenario, value, expected):
    base = write_scenario()
    sweep = tmp_path / "sw.yaml"
    sweep.write_text(yaml.safe_dump({"name": "sw", "base": str(base), "overrides": [f"description={value}"],
                                     "axes": {"seed": [1, 2]}}))
    with deadline():
        message = cli_error("sweep", sweep, "-o", tmp_path / "out")
    assert message.startswith(f"{sweep}: overrides.0: ") and expected in message, message


@pytest.mark.parametrize("text, expected", [
    (BOMB, "values once its aliases (*name) are expanded"),
    ("name: a\nname: b\n", "line 2: invalid YAML: key 'name' appears twice"),
    ("a: &x [*x]\n", "refers to the node that contains it"),
])
def test_yaml_files_have_the_caps(tmp_path, text, expected):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with deadline():
        message = cli_error("run", path)
    assert message.startswith(f"{path}: ") and expected in message, message


def test_merge_keys_may_still_be_overridden(write_scenario, tmp_path):
    """`<<: *base` then a key of the base again is YAML's way to override, not a duplicate."""
    data = small_scenario()
    text = yaml.safe_dump(data).replace("serving:", "x-batcher: &b {kind: continuous, max_batch_size: 8, "
                                        "max_batched_tokens: 4096}\nserving:")
    path = tmp_path / "s.yaml"
    path.write_text(text.replace("  batcher:", "  batcher:\n    <<: *b\n    max_batch_size: 64\n  old_batcher:", 1))
    from simulator.config.load import read_yaml

    tree = read_yaml(path)
    assert tree["serving"]["batcher"]["max_batch_size"] == 64


# ---------------------------------------------------------------- request-generating paths within limits

def test_servegen_row_at_the_maximum_rate_is_refused(tmp_path):
    folder = tmp_path / "sg"
    folder.mkdir()
    (folder / "trace.csv").write_text("client_id,window_start_s,rate_rps,cv,iat_dist,iat_shape,iat_scale\n"
                                      "0,0,1000000,1,Gamma,1,1\n")
    (folder / "dataset.jsonl").write_text('{"client_id": 0, "windows": {"0": {"input_tokens": "{5: 1.0}", '
                                          '"output_tokens": "{3: 1.0}"}}}\n')
    workload = tmp_path / "w.yaml"
    workload.write_text(yaml.safe_dump({"arrival": {"kind": "trace", "format": "servegen", "path": str(folder)},
                                        "num_requests": 50}))
    message = cli_error("workload", "describe", workload, "-o", tmp_path / "plots")
    assert message.startswith(f"{folder}: window: its client windows draw 6e+08 requests; allowed: up to 1e+07"), \
        message


def test_a_validation_rate_at_its_maximum_is_refused_not_simulated():
    from simulator.studies.validate.cases import read_cases
    from simulator.studies.validate.predict import simulate

    case = next(c for c in read_cases(REPO / "validation" / "calibration.csv") if c.mode == "rate")
    from dataclasses import replace

    outcome = simulate(replace(case, rate_per_s=1e6))
    assert outcome.predicted is None and outcome.reason.startswith("rate_per_s: 1e+06 /s over 40 s is 4e+07 "
                                                                   "requests; allowed: up to 1e+07 per case")
