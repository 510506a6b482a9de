"""Durability: a run's folder is written all or nothing (kill -9 at any moment leaves the previous complete
result or none), Ctrl-C stops a run between two events and writes a partial result marked as such, and the
end-of-run checks refuse fractions outside [0, 1]."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from conftest import cli_error

from simulator import load_scenario, run
from simulator.results.collect import InvariantError
from simulator.results.outputs import OUTPUT_NAMES
from simulator.results.summary import out_of_range


def _complete(out) -> dict:
    """The folder holds every output of one run, consistent with its summary; returns the summary."""
    # trace.json is written only with --trace, plots/ (PNG files) only with --png
    assert {p.name for p in out.iterdir()} == OUTPUT_NAMES - {"trace.json", "plots"}
    summary = json.loads((out / "summary.json").read_text())
    requests = pd.read_parquet(out / "requests.parquet")
    assert (requests["status"] != "not_arrived").sum() == summary["requests"]["arrived"]
    done = requests[requests["status"] == "completed"]
    if len(done):  # the same run's tables: the summary's percentiles come from them
        assert summary["ttft_s"]["p50"] == pytest.approx(float(np.percentile(done["ttft_s"], 50)), rel=1e-12)
    assert len(pd.read_parquet(out / "iterations.parquet")) == summary["batch"]["iterations"]
    return summary


def _cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "simulator", "run", *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_at_any_moment_leaves_the_previous_result_or_none(write_scenario, tmp_path):
    path = write_scenario({"workload.num_requests": 3000})
    out = tmp_path / "out"
    assert _cli(path, "-o", out, "--seed", "1").wait() == 0
    first = _complete(out)
    landed = 0
    for after_staging in (None, 0.0, 0.02, 0.05, 0.1, 0.2, 0.4):  # None: while starting or simulating
        process = _cli(path, "-o", out, "--seed", "2")
        if after_staging is None:  # (a whole run of 3,000 requests can take under 1 s: the kill comes sooner)
            time.sleep(0.3)
        else:  # the new folder is being written: kill it a little later
            deadline = time.monotonic() + 60
            while not list(tmp_path.glob(".out.new-*")) and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(after_staging)
        process.send_signal(signal.SIGKILL)
        process.wait()
        if out.exists():  # else: killed between the two renames of the swap
            summary = _complete(out)
            assert summary == first or summary["seed"] == 2
            landed += summary["seed"] == 2
        assert {p.name for p in tmp_path.iterdir()} - {"out", "s.yaml"} <= {
            p.name for p in tmp_path.glob(".out.*")}
    assert landed < 7  # most kills came before the swap
    # a later run cleans up the staging folders the killed ones left behind
    assert _cli(path, "-o", out, "--seed", "3").wait() == 0
    assert _complete(out)["seed"] == 3
    assert not list(tmp_path.glob(".out.new-*"))


def test_ctrl_c_stops_the_run_and_writes_a_partial_result_marked_as_such(write_scenario, tmp_path):
    path = write_scenario({"workload.num_requests": 200_000})
    out = tmp_path / "out"
    process = _cli(path, "-o", out)
    time.sleep(4.0)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    assert "interrupted at" in process.stderr.read()
    summary = _complete(out)
    r = summary["requests"]
    assert summary["sim"]["interrupted"] and 0 < r["completed"] < 200_000
    assert r["arrived"] == r["completed"] + r["dropped"] + r["in_flight"]
    assert "**Interrupted**" in (out / "report.md").read_text()


def test_a_watch_stops_the_run_between_two_events_with_its_invariants_holding(write_scenario, tmp_path):
    calls = []

    def watch(now, done):
        calls.append((now, done))
        return len(calls) == 2

    result = run(load_scenario(write_scenario({"workload.num_requests": 3000})), watch=watch)
    s = result.summary
    assert s["sim"]["interrupted"] and s["sim"]["simulated_s"] == calls[-1][0]
    assert s["requests"]["completed"] + s["requests"]["dropped"] == calls[-1][1]
    assert s["requests"]["in_flight"] > 0 and s["requests"]["arrived"] < 3000
    result.write(tmp_path / "out", plots=False)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["sim"]["interrupted"]
    assert not run(load_scenario(write_scenario({"workload.num_requests": 50}))).summary["sim"]["interrupted"]


def test_a_fraction_outside_zero_one_is_a_bug_not_a_result(write_scenario, monkeypatch):
    summary = run(load_scenario(write_scenario({"workload.num_requests": 20}))).summary
    assert out_of_range(summary) == []
    broken = {**summary, "utilization": {**summary["utilization"], "memory_bw_mean": 1.3}}
    assert out_of_range(broken) == ["utilization.memory_bw_mean = 1.3 is outside [0, 1]"]
    run_module = importlib.import_module("simulator.run")  # `simulator.run` is the function
    monkeypatch.setattr(run_module, "out_of_range", lambda s: ["bottleneck_share.compute = -0.5 is outside"])
    with pytest.raises(InvariantError, match="a bug in infersim.*bottleneck_share.compute"):
        run(load_scenario(write_scenario({"workload.num_requests": 20})))


def test_an_output_folder_holding_other_files_is_refused_before_simulating(write_scenario, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert cli_error("run", write_scenario(), "-o", out) == (
        f"{out}: the output folder holds files this command did not write (notes.txt); it replaces its whole "
        "folder, so give -o an empty or new folder")
    assert (out / "notes.txt").read_text() == "keep me"
    assert os.listdir(tmp_path) == ["mine", "s.yaml"] or sorted(os.listdir(tmp_path)) == ["mine", "s.yaml"]
