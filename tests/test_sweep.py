"""Sweeps: exact axis expansion, resume after a kill, failing points, identical tables across backends."""

import importlib
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.load import load_scenario, parse_override
from simulator.errors import ScenarioError

sweep_mod = importlib.import_module("simulator.studies.sweep")
points_mod = importlib.import_module("simulator.studies.points")  # simulates each point with its `run`
WALL = ["sim.wall_s"]  # the only column that differs between two runs of the same points


@pytest.fixture
def write_sweep(tmp_path, write_scenario):
    """Write a small base scenario (50 requests) and a sweep file over it; return the sweep's path."""
    base = write_scenario({"workload.num_requests": 50}, name="base.yaml")

    def write(body: dict, name: str = "sweep.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"base": base.name, "seed": 1, **body}, sort_keys=False))
        return path

    return write


def values(path):
    spec, _ = sweep_mod.load_sweep(path)
    return [tuple(p.values.values()) for p in sweep_mod.expand(spec, 1)]


# ---------------------------------------------------------------- expansion

def test_axes_expand_to_their_product_in_file_order_the_last_fastest(write_sweep):
    path = write_sweep({"axes": {"a.x": [1, 2], "b.y": ["p", "q", "r"]}})
    assert values(path) == [(1, "p"), (1, "q"), (1, "r"), (2, "p"), (2, "q"), (2, "r")]


def test_zipped_keys_advance_together(write_sweep):
    path = write_sweep({"zip": [{"a.x": [1, 2, 3], "b.y": [4, 5, 6]}]})
    assert values(path) == [(1, 4), (2, 5), (3, 6)]


def test_axes_and_zip_groups_mix_as_a_product(write_sweep):
    path = write_sweep({"axes": {"c": [10, 20]}, "zip": [{"a": [1, 2], "b": [3, 4]}, {"d": [7, 8, 9]}]})
    assert values(path) == [(c, a, b, d) for c in (10, 20) for a, b in ((1, 3), (2, 4)) for d in (7, 8, 9)]
    spec, _ = sweep_mod.load_sweep(path)
    assert [p.index for p in sweep_mod.expand(spec, 1)] == list(range(12))


def test_no_axes_is_one_point(write_sweep):
    assert values(write_sweep({})) == [()]


def test_zipped_lists_of_different_lengths_are_refused_in_one_line(write_sweep):
    path = write_sweep({"zip": [{"a.x": [1, 2, 3], "b.y": [4, 5]}]})
    with pytest.raises(ScenarioError) as err:
        sweep_mod.load_sweep(path)
    assert str(err.value) == f"{path}: zip.0: zipped keys need lists of equal length; a.x has 3, b.y has 2"


def test_a_key_both_axis_and_zipped_is_refused(write_sweep):
    path = write_sweep({"axes": {"a": [1]}, "zip": [{"a": [2]}]})
    with pytest.raises(ScenarioError, match=r"zip.0: a is already an axis$"):
        sweep_mod.load_sweep(path)


def test_seeds_are_spawned_per_point_index_from_the_root(write_sweep):
    spec, _ = sweep_mod.load_sweep(write_sweep({"axes": {"a": [1, 2, 3]}}))
    children = np.random.SeedSequence(9).spawn(3)
    assert [p.seed for p in sweep_mod.expand(spec, 9)] == [int(c.generate_state(1)[0]) for c in children]
    shared, _ = sweep_mod.load_sweep(write_sweep({"axes": {"a": [1, 2]}, "seeds": "shared"}, "shared.yaml"))
    assert [p.seed for p in sweep_mod.expand(shared, 9)] == [9, 9]
    replications, _ = sweep_mod.load_sweep(write_sweep({"axes": {"seed": [4, 5]}}, "seeds.yaml"))
    assert [p.seed for p in sweep_mod.expand(replications, 9)] == [4, 5]


@pytest.mark.parametrize("value", [64, 1e-06, 2.5, "20 /s", "hgx-h100", "1e3", "yes", "", None, True,
                                   {"kind": "fixed", "value": 7}, [1, 2]])
def test_axis_values_read_back_exactly_as_set_overrides(value):
    (text,) = sweep_mod.Point(0, {"a.b": value}, 0).overrides()
    assert parse_override(text) == (["a", "b"], value)


def test_axis_values_are_the_same_overrides_as_run_set(write_sweep, tmp_path):
    path = write_sweep({"axes": {"workload.arrival.rate": ["5 /s"], "serving.batcher.max_batch_size": [16]}})
    spec, base = sweep_mod.load_sweep(path)
    (job,) = sweep_mod.resolve(path, base, sweep_mod.expand(spec, 1), [])
    direct = load_scenario(base, ["workload.arrival.rate=5 /s", "serving.batcher.max_batch_size=16"])
    assert job.scenario.spec == direct.spec


# ---------------------------------------------------------------- resume

def count_runs(monkeypatch):
    calls = []
    real = points_mod.run

    def counting(scenario, seed=None):
        calls.append(seed)
        return real(scenario, seed=seed)

    monkeypatch.setattr(points_mod, "run", counting)
    return calls


def test_a_resumed_sweep_computes_only_the_missing_points_and_gives_the_same_table(write_sweep, tmp_path,
                                                                                   monkeypatch):
    path = write_sweep({"axes": {"serving.batcher.max_batch_size": [8, 32, 128],
                                 "workload.arrival.rate": [5, 20]}})
    calls = count_runs(monkeypatch)
    full = sweep_mod.sweep(path, tmp_path / "out", workers=1, plots=False)
    assert len(calls) == 6 and full.computed == 6 and full.count("ok") == 6
    records = sorted((tmp_path / "out" / "points").glob("*.json"))
    for record in records[1::2]:  # a kill loses what was not yet written
        record.unlink()
    (tmp_path / "out" / "points" / f".{records[1].name}.123.tmp").write_text('{"half": ')  # killed mid-write
    calls.clear()
    resumed = sweep_mod.sweep(path, tmp_path / "out", workers=1, plots=False)
    assert len(calls) == 3 and resumed.computed == 3
    pd.testing.assert_frame_equal(resumed.table.drop(columns=WALL), full.table.drop(columns=WALL))
    calls.clear()
    again = sweep_mod.sweep(path, tmp_path / "out", workers=1, plots=False)
    assert calls == [] and again.computed == 0
    pd.testing.assert_frame_equal(again.table, resumed.table)


def test_a_sweep_killed_midway_resumes_to_the_uninterrupted_table(write_sweep, tmp_path):
    """SIGKILL a 2-worker sweep right after its third record, re-run it, compare with an uninterrupted run."""
    path = write_sweep({"axes": {"serving.batcher.max_batch_size": [8, 64],
                                 "workload.arrival.rate": [5, 10, 20]}})
    out = tmp_path / "killed"
    kill_after_three = (
        "import importlib, os, signal\n"
        "s = importlib.import_module('simulator.studies.sweep')\n"
        "save, n = s._save, []\n"
        "def dying(*a):\n"
        "    r = save(*a); n.append(1)\n"
        "    if len(n) == 3: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return r\n"
        "s._save = dying\n"
        f"s.sweep({str(path)!r}, {str(out)!r}, workers=2, plots=False)\n")
    killed = subprocess.run([sys.executable, "-c", kill_after_three], capture_output=True, text=True,
                            timeout=60)
    assert killed.returncode == -9, killed.stderr
    assert len(list((out / "points").glob("*.json"))) == 3
    resumed = sweep_mod.sweep(path, out, workers=2, plots=False)
    assert resumed.computed == 3
    whole = sweep_mod.sweep(path, tmp_path / "whole", workers=1, plots=False)
    pd.testing.assert_frame_equal(resumed.table.drop(columns=WALL), whole.table.drop(columns=WALL))
    on_disk = pd.read_parquet(out / "sweep.parquet").drop(columns=WALL)
    whole_on_disk = pd.read_parquet(tmp_path / "whole" / "sweep.parquet").drop(columns=WALL)
    pd.testing.assert_frame_equal(on_disk, whole_on_disk)


# ---------------------------------------------------------------- failures

def test_failing_points_are_reported_and_the_others_complete(write_sweep, tmp_path):
    path = write_sweep({"axes": {"deployment.tensor_parallel": [1, 3],
                                 "serving.batcher.max_batch_size": [16, 0]}})
    result = sweep_mod.sweep(path, tmp_path / "out", workers=2, plots=True, png=True)
    table = result.table
    assert list(table["status"]) == ["ok", "error", "error", "error"]
    assert table.loc[2, "error"] == (f"{tmp_path / 'base.yaml'}: deployment.tensor_parallel: 3 does not "
                                     "divide the 32 attention heads of llama-3.1-8b; allowed: 1")
    assert "serving.batcher.max_batch_size: must be >= 1, got 0" in table.loc[1, "error"]
    assert table.loc[0, "throughput.output_tokens_per_s"] > 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Failed points" in report and "does not divide the 32 attention heads" in report
    assert {p.name for p in (tmp_path / "out" / "plots").iterdir()} == {
        "throughput.output_tokens_per_s_per_chip.png", "tpot_s.p50.png", "ttft_s.p99.png", "pareto.png"}


def test_a_point_that_crashes_is_recorded_and_recomputed_on_the_next_run(write_sweep, tmp_path, monkeypatch):
    path = write_sweep({"axes": {"serving.batcher.max_batch_size": [8, 16, 32]}})
    real = points_mod.run

    def buggy(scenario, seed=None):
        if scenario.spec.serving.batcher.max_batch_size == 16:
            raise ZeroDivisionError("division by zero")
        return real(scenario, seed=seed)

    monkeypatch.setattr(points_mod, "run", buggy)
    first = sweep_mod.sweep(path, tmp_path / "out", workers=1, plots=False)
    assert list(first.table["status"]) == ["ok", "crash", "ok"]
    assert first.table.loc[1, "error"] == "ZeroDivisionError: division by zero"
    record = json.loads((tmp_path / "out" / "points" / f"{first.table.loc[1, 'key']}.json").read_text())
    assert "Traceback" in record["traceback"]
    monkeypatch.setattr(points_mod, "run", real)  # the bug fixed
    calls = count_runs(monkeypatch)
    second = sweep_mod.sweep(path, tmp_path / "out", workers=1, plots=False)
    assert len(calls) == 1 and list(second.table["status"]) == ["ok", "ok", "ok"]


def test_a_sweep_in_which_no_point_loads_fails_in_one_line(write_sweep, tmp_path):
    path = write_sweep({"axes": {"serving.batcher.max_batchsize": [8, 16]}})
    with pytest.raises(ScenarioError, match=r"no point of the sweep loads; the first: .*max_batchsize: unkn"):
        sweep_mod.sweep(path, tmp_path / "out", workers=1)


def test_set_on_an_axis_key_is_refused(write_sweep, tmp_path):
    path = write_sweep({"axes": {"serving.batcher.max_batch_size": [8]}})
    with pytest.raises(ScenarioError) as err:
        sweep_mod.sweep(path, tmp_path / "out", overrides=["serving.batcher.max_batch_size=4"])
    assert str(err.value) == (f"--set: serving.batcher.max_batch_size is an axis of {path}; "
                              "change its values there")


def test_without_ray_the_ray_backend_says_how_to_install_it(write_sweep, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    path = write_sweep({"axes": {"serving.batcher.max_batch_size": [8]}})
    result = CliRunner().invoke(app, ["sweep", str(path), "-o", str(tmp_path / "out"), "--backend", "ray"])
    assert result.exit_code == 2
    assert result.stderr == "error: ray is not installed: pip install -e '.[ray]'\n"


def test_cli_sweep_writes_table_plots_and_report(write_sweep, tmp_path):
    path = write_sweep({"axes": {"workload.arrival.rate": [5, 20]}, "metrics": ["ttft_s.p99"]})
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1",
                                      "--set", "workload.num_requests=40", "--png"])
    assert result.exit_code == 0, result.output
    assert "2 points: 2 ok, 0 error, 0 crash; simulated 2, the rest cached" in result.stdout
    for name in ("sweep.parquet", "sweep.csv", "report.md", "report.html", "plots/ttft_s.p99.png",
                 "plots/pareto.png"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "sweep.csv")
    assert list(table.columns[:5]) == ["workload.arrival.rate", "seed", "status", "error", "key"]
    assert list(table["requests.completed"]) == [40, 40]
    bad = CliRunner().invoke(app, ["sweep", str(path), "-o", str(out), "--workers", "1", "--set", "x.y=1"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    from simulator.studies.points import pareto_front

    x = np.array([1.0, 2.0, 3.0, 2.0, 0.5, 3.0])
    y = np.array([5.0, 4.0, 1.0, 3.0, 5.0, 0.5])
    assert list(pareto_front(x, y)) == [True, True, True, False, False, False]


def test_shipped_sweeps_load_and_expand():
    for path in sorted((REPO / "scenarios" / "sweeps").glob("*.yaml")):
        spec, base = sweep_mod.load_sweep(path)
        jobs = sweep_mod.resolve(path, base, sweep_mod.expand(spec, 0), list(spec.overrides))
        assert jobs and all(job.error is None for job in jobs), path.name


# ---------------------------------------------------------------- backends

def test_local_processes_and_ray_give_identical_tables(write_sweep, tmp_path):
    pytest.importorskip("ray")
    path = write_sweep({"axes": {"serving.batcher.max_batch_size": [8, 64],
                                 "workload.arrival.rate": [5, 20]}})
    local = sweep_mod.sweep(path, tmp_path / "local", backend="local", workers=2, plots=False)
    start = time.perf_counter()
    on_ray = sweep_mod.sweep(path, tmp_path / "ray", backend="ray", workers=2, plots=False)
    assert time.perf_counter() - start < 60
    assert on_ray.computed == 4 and on_ray.count("ok") == 4
    pd.testing.assert_frame_equal(on_ray.table.drop(columns=WALL), local.table.drop(columns=WALL))
    local_files = sorted(p.name for p in (tmp_path / "local" / "points").iterdir())
    assert sorted(p.name for p in (tmp_path / "ray" / "points").iterdir()) == local_files
