"""Output folders under faults: every command checks its `-o` before simulating (a file, under a file,
'..', a name too long once staged) and says so in one line; a write error (a full disk) is one line and
leaves the previous folder; two writers of one folder are serialised by a lock file (the second is refused);
SIGTERM acts as Ctrl-C (a run writes its partial result; a study unwinds, removes its staging folder and
stops its workers); a killed re-run of a study leaves the previous folder or the new one, whole."""

from __future__ import annotations

import errno
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli_error

from simulator.results import outputs
from simulator.results.outputs import OutputFolderError, check_output_folder, claim, staged_folder

H100 = str(REPO / "topologies" / "single-h100.yaml")


def _compare_file(tmp_path, concurrency=(1, 4), requests=3) -> Path:
    data = {"name": "tiny", "seed": 2, "model": "llama-3.1-8b",
            "workload": {"prompt_tokens": {"kind": "fixed", "value": 128},
                         "output_tokens": {"kind": "fixed", "value": 24},
                         "arrival": {"kind": "poisson", "rate": "5 /s"}, "num_requests": requests},
            "concurrency": list(concurrency), "requests_per_user": 2, "min_requests": 4,
            "designs": [{"name": "a", "cluster": H100}, {"name": "b", "cluster": H100,
                                                          "deployment": {"memory_utilization": 0.5}}]}
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _sweep_file(tmp_path, base, name="sw") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": str(base), "axes": {"seed": [1, 2]}}))
    return path


def _commands(tmp_path, write_scenario):
    scenario = write_scenario({"workload.num_requests": 20})
    workload = tmp_path / "w.yaml"
    workload.write_text(yaml.safe_dump({"arrival": {"kind": "poisson", "rate": "1 /s"}, "num_requests": 5,
                                        "prompt_tokens": {"kind": "fixed", "value": 5},
                                        "output_tokens": {"kind": "fixed", "value": 5}}))
    cases = tmp_path / "cases.csv"
    lines = (REPO / "validation" / "calibration.csv").read_text().splitlines()
    cases.write_text("\n".join(lines[:2]) + "\n")
    return {"run": ["run", scenario], "sweep": ["sweep", _sweep_file(tmp_path, scenario)],
            "compare": ["compare", _compare_file(tmp_path)], "validate": ["validate", cases, "--no-plots"],
            "describe": ["workload", "describe", workload]}


COMMANDS = ["run", "sweep", "compare", "validate", "describe"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("fault", ["a file", "under a file", "dot-dot", "long CJK name", "long staging name"])
def test_a_bad_output_folder_is_one_line_before_simulating(tmp_path, write_scenario, monkeypatch, command, fault):
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    out = {"a file": a_file, "under a file": a_file / "sub", "dot-dot": tmp_path / "newdir" / "..",
           "long CJK name": tmp_path / ("模" * 100), "long staging name": tmp_path / ("x" * 240)}[fault]
    simulated = []  # the engine, in this process: a bad folder is refused before anything is simulated
    monkeypatch.setattr(importlib.import_module("simulator.run"), "simulate", lambda *a, **k: simulated.append(1))
    start = time.perf_counter()
    message = cli_error(*_commands(tmp_path, write_scenario)[command], "-o", out)
    assert message.startswith(f"{out}: "), message
    assert not simulated and time.perf_counter() - start < 30
    assert a_file.read_text() == "x"


def test_an_empty_sweep_name_never_writes_into_the_working_folder(tmp_path, write_scenario, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = write_scenario({"workload.num_requests": 10})
    sweep = tmp_path / "...yaml"
    sweep.write_text(yaml.safe_dump({"name": "", "base": str(base), "axes": {"seed": [1]}}))
    before = set(os.listdir(tmp_path))
    message = cli_error("sweep", sweep)
    assert "must end in a folder name" in message
    assert set(os.listdir(tmp_path)) - before <= {"results"}


def test_a_full_disk_is_one_line_and_leaves_the_previous_folder(tmp_path, write_scenario, monkeypatch):
    scenario = write_scenario({"workload.num_requests": 20})
    out = tmp_path / "out"
    cli_ok = __import__("typer.testing", fromlist=["CliRunner"]).CliRunner()
    from simulator.cli import app

    assert cli_ok.invoke(app, ["run", str(scenario), "-o", str(out), "--no-plots"]).exit_code == 0
    before = (out / "summary.json").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pandas.DataFrame.to_parquet", full)
    message = cli_error("run", scenario, "-o", out, "--seed", "9", "--no-plots")
    assert message == f"{out}: cannot be written: No space left on device"
    assert (out / "summary.json").read_bytes() == before
    assert not list(tmp_path.glob(".out.new-*"))


def test_the_staging_name_always_fits(tmp_path):
    """Property over name lengths: a name the check accepts can always be staged (mkdtemp does not fail)."""
    for n in (1, 100, 200, 230, 232, 233, 234, 240, 255):
        out = tmp_path / ("n" * n)
        try:
            check_output_folder(out)
        except OutputFolderError:
            assert n > 200
            continue
        with staged_folder(out) as folder:
            (folder / "report.md").write_text("x")
        assert (out / "report.md").read_text() == "x"


# ---------------------------------------------------------------- concurrent writers

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_a_second_writer_of_one_folder_is_refused(tmp_path, write_scenario, command):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / ".out.lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        message = cli_error(*_commands(tmp_path, write_scenario)[command], "-o", out)
        assert message == f"{out}: another infersim is writing this folder now; wait for it to finish or give " \
                          "another -o"
    finally:
        holder.kill()
        holder.wait()


def test_two_concurrent_runs_end_with_one_whole_folder(tmp_path, write_scenario):
    scenario = write_scenario({"workload.num_requests": 400})
    out = tmp_path / "out"
    runs = [subprocess.Popen([sys.executable, "-m", "simulator", "run", str(scenario), "-o", str(out), "--seed",
                              str(seed), "--no-plots"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for seed in (1, 2)]
    codes = [r.wait(timeout=120) for r in runs]
    errors = [r.stderr.read() for r in runs]
    assert sorted(codes) in ([0, 0], [0, 2]), errors
    for code, err in zip(codes, errors):
        if code == 2:
            assert err.strip().splitlines() == [f"error: {out}: another infersim is writing this folder now; wait "
                                                "for it to finish or give another -o"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] in (1, 2)
    assert not list(tmp_path.glob(".out.new-*"))


def test_claim_is_reentrant_in_one_process(tmp_path):
    out = tmp_path / "out"
    with claim(out), staged_folder(out) as folder:
        (folder / "report.md").write_text("x")
    assert not outputs._HELD


# ---------------------------------------------------------------- signals

def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return found | {g for c in list(found) for g in _children(c)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_a_run_like_ctrl_c_with_a_partial_result(write_scenario, tmp_path):
    scenario = write_scenario({"workload.num_requests": 200_000})
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "simulator", "run", str(scenario), "-o", str(out),
                                "--no-plots"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(4.0)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert "interrupted at" in process.stderr.read()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sim"]["interrupted"] and 0 < summary["requests"]["completed"] < 200_000


def test_sigterm_on_a_run_with_worker_processes_writes_a_partial_result(write_scenario, tmp_path):
    scenario = write_scenario({"cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
                               "deployment.replicas": 2, "workload.num_requests": 300_000,
                               "workload.arrival": {"kind": "poisson", "rate": "40 /s"}, "sim.workers": 2})
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "simulator", "run", str(scenario), "-o", str(out),
                                "--no-plots"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(6.0)
    workers = _children(process.pid)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    err = process.stderr.read()
    assert code == 130 and "Traceback" not in err, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sim"]["interrupted"] and summary["sim"]["replica_groups"] == 2
    time.sleep(1.0)
    assert not any(_alive(p) for p in workers)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_compare_with_workers_leaves_no_process_and_the_previous_folder(tmp_path, sig):
    cmp = _compare_file(tmp_path, concurrency=(1, 4, 16, 64), requests=3)
    out = tmp_path / "out"
    first = subprocess.run([sys.executable, "-m", "simulator", "compare", str(cmp), "-o", str(out), "--no-plots",
                            "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    data = yaml.safe_load(cmp.read_text())
    data["min_requests"] = 400_000  # the re-run takes long enough to be interrupted while simulating
    cmp.write_text(yaml.safe_dump(data))
    process = subprocess.Popen([sys.executable, "-m", "simulator", "compare", str(cmp), "-o", str(out),
                                "--no-plots", "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while len(_children(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    workers = _children(process.pid)
    assert workers and process.poll() is None
    process.send_signal(sig)
    assert process.wait(timeout=60) == 130
    time.sleep(1.0)
    assert not any(_alive(p) for p in workers)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not list(tmp_path.glob(".out.new-*"))


def test_a_killed_compare_leaves_no_worker_behind(tmp_path):
    cmp = _compare_file(tmp_path, concurrency=(1, 4, 16, 64), requests=3)
    data = yaml.safe_load(cmp.read_text())
    data["min_requests"] = 400_000
    cmp.write_text(yaml.safe_dump(data))
    process = subprocess.Popen([sys.executable, "-m", "simulator", "compare", str(cmp), "-o", str(tmp_path / "o"),
                                "--no-plots", "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(_children(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    workers = _children(process.pid)
    process.kill()
    process.wait()
    time.sleep(2.0)
    assert workers and not any(_alive(p) for p in workers)
