"""Limits that protect the machine (simulator/config/limits.py): a run that would obviously exhaust memory or
last more than a day is refused up front with its estimate, unless sim.allow_huge: true."""

from __future__ import annotations

import pytest
from conftest import REPO, cli_error

from simulator.config import limits
from simulator.config.load import load_scenario

DEFAULT = REPO / "scenarios" / "default.yaml"


@pytest.fixture(autouse=True)
def a_64_gb_machine(monkeypatch):
    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 64e9)


def test_a_trillion_requests_are_refused_with_the_estimate():
    message = cli_error("run", DEFAULT, "--set", "workload.num_requests=1000000000000")
    assert message == (
        f"{DEFAULT}: workload: 1e+12 requests (>= 1e+12 iterations) need >= 620 TB of memory and >= 116 days of "
        "wall time, estimated at 540 B + 5 us per request, 80 B + 5 us per iteration; allowed: 64 GB (this "
        "machine's memory) and 24 h; set sim.allow_huge: true to run it anyway")


def test_the_opt_out_lets_it_load_but_not_past_what_float64_time_resolves():
    huge = ["workload.num_requests=1000000000000", "sim.allow_huge=true"]
    loaded = load_scenario(DEFAULT, [*huge, "workload.arrival.rate=100000/s"])
    assert loaded.spec.sim.allow_huge and loaded.spec.workload.num_requests == 10**12
    assert cli_error("explain", DEFAULT, *(f"--set={o}" for o in huge)) == (
        f"{DEFAULT}: workload: 1000000000000 requests at 10 /s span 1e+11 s of simulated time; allowed: up to "
        "1e+08 s of simulated time (float64 resolution)")


def test_a_million_requests_on_one_replica_are_allowed():
    """The benchmark's size: ~0.77 GB and ~10 s by the lower bound (measured: 1.49 GB and 56 s)."""
    e = limits.estimate(load_scenario(DEFAULT, ["workload.num_requests=1000000"]).spec)
    assert (e.requests, e.iterations, e.graph_elements) == (1e6, 1e6, 1)  # 256 output tokens, batch 256
    assert limits.size(e.memory_bytes) == "770 MB" and limits.duration(e.wall_s) == "10 s"


def test_the_memory_limit_is_this_machines_memory(monkeypatch):
    overrides = ["workload.num_requests=2000000"]  # 1.39 GB by the estimate
    load_scenario(DEFAULT, overrides)
    monkeypatch.setattr(limits, "machine_memory_bytes", lambda: 1e9)
    assert cli_error("explain", DEFAULT, *(f"--set={o}" for o in overrides)) == (
        f"{DEFAULT}: workload: 2e+06 requests (>= 2e+06 iterations) need >= 1.39 GB of memory and >= 20 s of wall "
        "time, estimated at 540 B + 5 us per request, 80 B + 5 us per iteration; allowed: 1 GB (this machine's "
        "memory) and 24 h; set sim.allow_huge: true to run it anyway")


def test_a_duration_counts_rate_times_duration_and_max_time_counts_only_generation():
    spec = load_scenario(DEFAULT, ["workload.num_requests=null", "workload.duration=1000000 s",
                                   "workload.arrival.rate=10000/s", "sim.allow_huge=true"]).spec
    assert limits.estimate(spec).requests == 1e10
    with pytest.raises(Exception) as refused:
        load_scenario(DEFAULT, ["workload.num_requests=1000000000000", "sim.max_time=60 s"])
    assert str(refused.value) == (
        f"{DEFAULT}: workload: 1e+12 requests generated up front need >= 100 TB of memory and >= 3.47 days of "
        "wall time, estimated at 100 B + 0.3 us per request generated (sim.max_time set); allowed: 64 GB (this "
        "machine's memory) and 24 h; set sim.allow_huge: true to run it anyway")


def test_classes_add_up_and_a_weighted_share_counts_once():
    from simulator.config.load import validate
    from simulator.config.workload import WorkloadSpec

    lengths = {"prompt_tokens": {"kind": "fixed", "value": 10}, "output_tokens": {"kind": "fixed", "value": 64}}
    w = validate(WorkloadSpec, {
        "arrival": {"kind": "poisson", "rate": "10 /s"}, "num_requests": 1000, **lengths,
        "classes": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3},
                    {"name": "c", "arrival": {"kind": "on_off", "rate": "20 /s", "on_time": "1 s",
                                              "off_time": "3 s"}, "duration": "100 s"}]}, "w.yaml")
    assert limits.workload_streams(w) == [(250.0, 64.0), (750.0, 64.0), (500.0, 64.0)]


@pytest.mark.parametrize("topology", ["single-h100", "hgx-h100", "hgx-h100-x2-ndr400", "h100-4x8-ndr400",
                                      "tpu-v5p-64", "mi300x-platform", "spine-contention-demo", "cerebras-cs3-4"])
def test_graph_size_is_the_size_of_the_graph_the_topology_builds(topology):
    """Switch, mesh and torus scale-up; leaf-spine scale-out with one leaf and with several; hosts."""
    from simulator.hardware.topology import build_graph

    loaded = load_scenario(DEFAULT, [f"cluster={topology}", "sim.allow_huge=true"])
    graph = build_graph(loaded.spec.cluster, loaded.chip)
    assert limits.graph_elements(loaded.spec.cluster) == graph.number_of_nodes() + graph.number_of_edges()


def test_the_estimate_is_a_lower_bound_of_what_a_run_allocates():
    """tracemalloc's peak over a short run is above the estimate (without the interpreter's base)."""
    from simulator.run import run

    loaded = load_scenario(DEFAULT, ["workload.num_requests=400"])
    e = limits.estimate(loaded.spec)
    peak = run(loaded, measure_memory=True).summary["sim"]["peak_python_bytes"]
    assert e.memory_bytes - limits.BASE_BYTES < peak


def test_the_check_is_cheap():
    import time

    start = time.perf_counter()
    for _ in range(100):
        limits.scenario_problem(load_scenario(DEFAULT).spec)
    assert time.perf_counter() - start < 5  # mostly YAML reading; the estimate itself is microseconds
