"""`--set` of any chip and link field, `--what-if`, `infersim sensitivity`, the named bottleneck per phase and
the memory tiers' series: each checked against what the physics fixes (more bandwidth on a memory-bound decode
lowers TPOT; doubling the link a run waits on moves it, doubling an idle link does not)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, cli_error
from typer.testing import CliRunner

from simulator import load_scenario, run
from simulator.cli import app
from simulator.config.resources import resources, what_if
from simulator.results.memory_tiers import spread
from simulator.studies.sensitivity import sensitivity

DECODE = {"name": "decode", "seed": 1, "model": "llama-3.1-8b",
          "cluster": str(REPO / "topologies" / "single-h100.yaml"),
          "deployment": {"weights_dtype": "bf16"},
          "workload": {"arrival": {"kind": "closed_loop", "users": 4}, "num_requests": 8,
                       "prompt_tokens": {"kind": "fixed", "value": 128},
                       "output_tokens": {"kind": "fixed", "value": 64}}}
SN40L = {"name": "sn40l", "model": "llama-3.1-405b",
         "cluster": {"name": "one-sn40l", "chip": "sambanova-sn40l", "chips_per_node": 1},
         "deployment": {"weights_dtype": "bf16", "weight_streaming": True},
         "workload": {"arrival": {"kind": "closed_loop", "users": 2}, "num_requests": 2,
                      "prompt_tokens": {"kind": "fixed", "value": 64}, "output_tokens": {"kind": "fixed", "value": 3}}}
SPINE = REPO / "scenarios" / "contention-shared-spine.yaml"
SMALL_SPINE = ["workload.num_requests=64", "workload.arrival.users=32", "cluster.host.bandwidth_per_dir=63 GB/s",
               "cluster.host.source=an idle PCIe link beside the fabric (test)"]


def test_set_reaches_a_memory_tier_and_more_bandwidth_lowers_a_memory_bound_tpot(write_scenario):
    path = write_scenario(base=DECODE)
    faster = load_scenario(path, ["cluster.chip.memory.hbm.bandwidth=6.7 TB/s"])
    assert faster.chip.memory[0].bandwidth == 6.7e12 and faster.chip.id == "h100-sxm-modified"
    assert load_scenario(path, ["cluster.chip.memory.0.bandwidth=6.7 TB/s"]).chip == faster.chip
    base, fast = run(load_scenario(path)).summary, run(faster).summary
    assert base["bottleneck"]["decode"]["bound_by"] == "memory"
    assert fast["tpot_s"]["p50"] < 0.8 * base["tpot_s"]["p50"]
    # a memory-bound decode barely notices half the compute (its attention and GEMMs wait on bytes)
    slower = run(load_scenario(path, ["cluster.chip.efficiency.compute=0.5"])).summary
    assert slower["tpot_s"]["p50"] == pytest.approx(base["tpot_s"]["p50"], rel=0.02)


def test_bad_chip_and_what_if_keys_are_one_line_exit_2(write_scenario):
    path = write_scenario(base=DECODE)
    assert cli_error("run", path, "--set", "cluster.chip.memory.ddr.bandwidth=1 TB/s") == (
        "--set: cluster.chip.memory.ddr.bandwidth: cluster.chip.memory has no 'ddr'; allowed: hbm")
    assert "cluster.chip.memory.0.speed: unknown key; allowed: bandwidth, capacity" in cli_error(
        "run", path, "--set", "cluster.chip.memory.hbm.speed=1")
    assert "must be >= 1000.0, got -1" in cli_error("run", path, "--set", "cluster.chip.memory.hbm.bandwidth=-1")
    assert cli_error("run", path, "--set", "cluster.chip.memory.bandwidth=1") == (
        "--set: cluster.chip.memory.bandwidth: cluster.chip.memory is a list; name one of its items before the "
        "field: hbm")
    assert cli_error("run", path, "--what-if", "ddr.bandwidth=2x").startswith(
        "--what-if: 'ddr.bandwidth' is not a resource of this scenario; allowed: compute, hbm.bandwidth")
    assert "must look like RESOURCE=FACTORx" in cli_error("run", path, "--what-if", "hbm.bandwidth=fast")
    assert "between 0 and 0.9" in cli_error("sensitivity", path, "--delta", "2")


def test_what_if_scales_exactly_one_resource(write_scenario):
    scenario = load_scenario(write_scenario(base=DECODE))
    assert what_if(scenario, "hbm.bandwidth=2x") == ["cluster.chip.memory.hbm.bandwidth=6700000000000.0"]
    names = [r.name for r in resources(scenario)]
    assert names == ["compute", "hbm.bandwidth", "step_overhead", "layer_overhead", "sequence_overhead"]
    spine = [r.name for r in resources(load_scenario(SPINE, SMALL_SPINE))]
    assert {"scaleout.bandwidth", "scaleout.uplink.bandwidth", "scaleout.latency", "host.bandwidth"} <= set(spine)


def test_doubling_the_link_a_run_waits_on_moves_it_more_than_doubling_an_idle_link():
    """The two leaves share one 50 GB/s uplink each way (2:1 oversubscribed): the prefill all-reduces queue
    there, not on the NICs (max-min fair shares) and not on the host link, which carries nothing."""
    with_host = ["cluster.host.bandwidth_per_dir=63 GB/s", "cluster.host.source=an idle PCIe link (test)"]

    def throughput(*what: str) -> float:
        scenario = load_scenario(SPINE, with_host)
        scenario = load_scenario(SPINE, [*with_host, *(o for w in what for o in what_if(scenario, w))])
        return run(scenario).summary["throughput"]["output_tokens_per_s"]

    base = throughput()
    uplink, nic, host = (throughput(f"{link}=2x") for link in ("scaleout.uplink.bandwidth", "scaleout.bandwidth",
                                                                 "host.bandwidth"))
    assert host == base  # no byte crosses the host link
    assert uplink > 1.1 * base
    assert abs(nic - base) < 0.5 * (uplink - base)


def test_a_link_bound_prefill_is_named_bandwidth_bound_and_small_collectives_latency_bound(write_scenario):
    spine = run(load_scenario(SPINE, SMALL_SPINE)).summary["bottleneck"]
    assert spine["prefill"]["bound_by"] == "network" and spine["prefill"]["network_bound"] == "bandwidth"
    assert spine["network"]["busiest_link"].startswith("leaf") and "spine" in spine["network"]["busiest_link"]
    tp8 = {**DECODE, "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
           "deployment": {"weights_dtype": "bf16", "tensor_parallel": 8}}
    small = run(load_scenario(write_scenario(base=tp8))).summary
    net = small["bottleneck"]["network"]
    assert net["bound"] == "latency" and net["busiest_link_utilization"] < 0.1
    assert "latency-bound" in small_words(small)


def small_words(summary: dict) -> str:
    from simulator.results.report import bottleneck_words

    return bottleneck_words(summary)


def test_a_weight_streaming_run_names_the_streaming_tier(write_scenario, tmp_path):
    result = run(load_scenario(write_scenario(base=SN40L)))
    s = result.summary
    for phase in ("decode", "prefill"):
        assert s["bottleneck"][phase]["bound_by"] == "memory"
        assert s["bottleneck"][phase]["memory_tier"] == "ddr"
    ddr = s["utilization"]["memory_tiers"]["ddr"]
    hbm = s["utilization"]["memory_tiers"]["hbm"]
    assert ddr["role"] == "streamed" and ddr["utilization"] > 0.9 > hbm["utilization"]
    words = small_words(s)
    assert "weights streamed from DDR at 0.1 TB/s" in words
    result.write(tmp_path / "out")
    memory = pd.read_parquet(tmp_path / "out" / "memory.parquet")
    for tier, use in s["utilization"]["memory_tiers"].items():  # the series holds every byte of the run
        assert memory.loc[memory["tier"] == tier, "bytes"].sum() == pytest.approx(use["bytes"], rel=1e-9)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Memory tiers" in page and "weights streamed from DDR" in page


def test_spread_splits_an_iteration_over_buckets_by_its_overlap():
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    got = spread(np.array([0.5, 2.0]), np.array([1.0, 0.0]), np.array([10.0, 4.0]), edges)
    assert got.tolist() == pytest.approx([5.0, 5.0, 4.0])


def test_sensitivity_delta_zero_is_the_baseline_every_time(write_scenario, tmp_path):
    result = sensitivity(write_scenario(base=DECODE), tmp_path / "zero", delta=0.0, workers=1)
    for key in ("tpot_s.p50", "ttft_s.p50", "throughput.output_tokens_per_s"):
        assert (result.table[f"{key} low"] == result.baseline[key]).all()
        assert (result.table[f"{key} high"] == result.baseline[key]).all()
        assert (result.table[f"{key} elasticity"] == 0.0).all()


def test_sensitivity_ranks_hbm_first_for_a_memory_bound_decode(write_scenario, tmp_path):
    out = tmp_path / "sens"
    result = CliRunner().invoke(app, ["sensitivity", str(write_scenario(base=DECODE)), "-o", str(out),
                                      "--workers", "2"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "sensitivity.csv")
    tpot = table.set_index("resource")["tpot_s.p50 elasticity"]
    assert tpot.abs().idxmax() == "hbm.bandwidth"
    assert -1.0 <= tpot["hbm.bandwidth"] < -0.5  # bytes over bandwidth, diluted by the fixed overheads
    assert tpot["step_overhead"] > 0  # more fixed time: slower
    assert (out / "report.html").is_file()
    assert "TPOT p50 moves most with HBM bandwidth" in (out / "report.md").read_text()
    again = sensitivity(write_scenario(base=DECODE), tmp_path / "serial", workers=1).table  # any --workers
    assert again["resource"].tolist() == table["resource"].tolist()
    for column in [c for c in table.columns if c.endswith(("low", "high", "elasticity"))]:
        assert again[column].tolist() == table[column].tolist(), column
