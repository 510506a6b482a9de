"""SRAM pipelines, wafers and TPU layouts from their own physics: what a hop, a mesh span and a chip's
capacity fix, and rows the engine could not express before."""

import dataclasses
import math

import pytest
import yaml
from conftest import REPO

from simulator.config.load import load_chip, load_scenario_dict
from simulator.errors import CapacityError
from simulator.hardware.model import DTYPE_BYTES, model_shape
from simulator.hardware.placement import plan_deployment, two_d_shardable
from simulator.hardware.prepare import prepare
from simulator.hardware.roofline import SEQUENTIAL_PRODUCTS_PER_LAYER, mesh_layer_s
from simulator.run import run
from simulator.studies.explain import decode_step
from simulator.studies.validate.cases import read_cases
from simulator.studies.validate.predict import simulate


def scenario(cluster: dict | str, deployment: dict, model: str = "llama-3.1-70b", requests: int = 2):
    return load_scenario_dict({
        "name": "t", "seed": 1, "model": model, "cluster": cluster, "deployment": deployment,
        "serving": {"batcher": {"kind": "continuous", "max_batch_size": 8, "max_batched_tokens": 4096}},
        "workload": {"arrival": {"kind": "closed_loop", "users": 1},
                     "prompt_tokens": {"kind": "fixed", "value": 128},
                     "output_tokens": {"kind": "fixed", "value": 32}, "num_requests": requests},
    }, "test", REPO)


def groq_cluster(hop_latency_s: float) -> dict:
    spec = yaml.safe_load((REPO / "topologies" / "groq-rack-720.yaml").read_text())
    spec["scaleup"]["hop_latency"] = hop_latency_s
    spec["scaleout"]["hop_latency"] = hop_latency_s
    return spec


@pytest.mark.parametrize("model, stages", [("llama-3.1-8b", 20), ("llama-3.1-70b", 82)])
def test_a_token_through_a_p_stage_pipeline_pays_at_least_p_minus_1_hops(model, stages):
    """Each decode step crosses every stage boundary once, one after the other: with a hop far slower than
    anything else, the time per token is at least (p - 1) hops, and grows by (p - 1) per added hop latency."""
    deployment = {"tensor_parallel": 8, "pipeline_parallel": stages, "weights_dtype": "int8",
                  "memory_utilization": 1.0}
    slow, fast = 1e-3, 1e-4
    tpot = {}
    for hop in (slow, fast):
        tpot[hop] = run(scenario(groq_cluster(hop), deployment, model)).summary["tpot_s"]["p50"]
    assert tpot[slow] >= (stages - 1) * slow
    assert tpot[slow] - tpot[fast] >= (stages - 1) * (slow - fast) * (1 - 1e-9)


def test_a_wafer_layer_decode_time_grows_with_the_mesh_span_it_occupies():
    """Four stages put a quarter of the layers on each wafer, so each layer spreads over ~4x the cores: a
    region ~twice as wide, ~twice the hops per product (the embedding and lm_head take their share too)."""
    chip = load_chip("cerebras-wse3")
    assert chip.mesh is not None
    times, plans = {}, {}
    for pp in (1, 4):
        prepared = prepare(scenario("cerebras-cs3-4", {"pipeline_parallel": pp, "weights_dtype": "bf16"},
                                    "llama-3.1-8b"))
        m, plans[pp] = prepared.model, prepared.plan
        times[pp] = mesh_layer_s(m, plans[pp], chip)
    assert 1.6 < times[4] / times[1] <= 2.0 + 1e-9
    # the closed form: each sequential product crosses the region and back, 2 sqrt(c) hops
    cores = chip.mesh.cores * m.dense_layer_params / m.n_layers * DTYPE_BYTES["bf16"] / plans[4].weight_bytes_per_chip
    assert times[4] == pytest.approx(SEQUENTIAL_PRODUCTS_PER_LAYER * 2 * math.sqrt(cores) * chip.mesh.hop_latency)
    # and the engine pays it: a slower hop, a slower token
    slow = chip.model_copy(update={"mesh": chip.mesh.model_copy(update={"hop_latency": 4 * chip.mesh.hop_latency})})
    base = scenario("cerebras-cs3-4", {"pipeline_parallel": 1, "weights_dtype": "bf16"}, "llama-3.1-8b")
    tpot = run(base).summary["tpot_s"]["p50"]
    tpot_slow = run(dataclasses.replace(base, chip=slow)).summary["tpot_s"]["p50"]
    assert tpot_slow - tpot == pytest.approx(3 * times[1] * m.n_layers, rel=0.02)


def test_a_chip_without_a_mesh_pays_no_mesh_term():
    prepared = prepare(scenario("hgx-h100", {"tensor_parallel": 8, "weights_dtype": "fp8"}))
    assert mesh_layer_s(prepared.model, prepared.plan, load_chip("h100-sxm")) == 0.0


def test_llama_70b_at_16_bits_on_230_mb_chips_needs_at_least_614_chips():
    groq = {"tensor_parallel": 8, "weights_dtype": "bf16", "memory_utilization": 1.0}
    s = scenario("groq-rack-720", {**groq, "pipeline_parallel": 72})
    model = model_shape(s.model_name, s.model_config)
    assert math.ceil(model.weight_bytes("bf16") / s.chip.memory[0].capacity) >= 614
    with pytest.raises(CapacityError, match=r"at least 6[1-9]\d groq-lpu chips"):
        plan_deployment(model, s.chip, s.spec.cluster, s.spec.deployment)
    # 84 stages of 8 (672 chips) hold it
    assert prepare(scenario("groq-rack-720", {**groq, "pipeline_parallel": 84})).plan.chips_total == 672


def test_pope_2d_weight_stationary_layout_runs_48_heads_on_64_chips():
    s = scenario("tpu-v5p-64", {"tensor_parallel": 64, "weights_dtype": "int8"}, model="palm-540b")
    palm = model_shape(s.model_name, s.model_config)
    assert palm.n_heads == 48 and two_d_shardable(palm, 64)  # heads over 16, width over 4
    assert not two_d_shardable(palm, 7)  # 7 shares nothing with 48 heads: no 2D layout


def test_rows_that_failed_before_are_simulated_or_reported_never_a_crash():
    """Shortened (few output tokens, one wave) so that they run in seconds; the layouts are the rows' own."""
    cases = {c.case_id: dataclasses.replace(c, output_tokens=8)
             for c in read_cases(REPO / "validation" / "calibration.csv")}
    groq = cases["LLMPERF_GROQ_L2_70B_ITL"]
    # a TP group spanning two 8-chip nodes: routed through the chips that relay on the C2C fabric
    spanning = simulate(dataclasses.replace(groq, tp=16, pp=36))
    assert spanning.predicted is not None and spanning.reason == ""
    # a layout with no expression: one line, no exception
    impossible = simulate(dataclasses.replace(groq, tp=7, pp=82, num_chips=574))
    assert impossible.predicted is None and "tensor_parallel" in impossible.reason
    for case_id in ("PAPER_PALM540B_TPUv4x64_DECODE_INT8", "BLOG_SAMBANOVA_DSR1_16RDU_C256_THR"):
        case = dataclasses.replace(cases[case_id], concurrency=min(cases[case_id].concurrency or 1, 8))
        assert case.tp > 1 and simulate(case).predicted is not None


def test_explain_agrees_with_the_engine_on_a_deep_pipeline():
    """explain pipelines the batch's micro-batches through the stages as the engine does, so its decode
    estimate is the engine's time per token for a steady full batch (closed loop, fixed lengths)."""
    batch = 40
    s = load_scenario_dict({
        "name": "t", "seed": 1, "model": "llama-3.1-8b", "cluster": "groq-rack-720",
        "deployment": {"tensor_parallel": 8, "pipeline_parallel": 20, "weights_dtype": "int8",
                       "memory_utilization": 1.0},
        "serving": {"batcher": {"kind": "continuous", "max_batch_size": batch, "max_batched_tokens": 8192}},
        "workload": {"arrival": {"kind": "closed_loop", "users": batch},
                     "prompt_tokens": {"kind": "fixed", "value": 64},
                     "output_tokens": {"kind": "fixed", "value": 256}, "num_requests": batch},
    }, "test", REPO)
    step = decode_step(prepare(s), s, batch, 64 + 128)
    assert step.micro_batches == 20
    tpot = run(s).summary["tpot_s"]["p50"]
    assert step.estimate_s == pytest.approx(tpot, rel=0.05)
    assert step.light_s < step.estimate_s


def test_a_token_through_an_lpu_pipeline_pays_every_layers_schedule_time_one_after_another():
    """A token crosses the layers one after another, each on its stage: its time is at least layers x the
    LPU's per-layer schedule time plus the (p - 1) stage hops, and a larger per-layer time adds exactly
    layers x the difference (nothing overlaps it at one user)."""
    s = scenario("groq-rack-720", {"tensor_parallel": 8, "pipeline_parallel": 82, "weights_dtype": "int8",
                                   "memory_utilization": 1.0})
    layers, per_layer = 80, s.chip.efficiency.layer_overhead
    hop = yaml.safe_load((REPO / "topologies" / "groq-rack-720.yaml").read_text())["scaleout"]["hop_latency"]
    tpot = run(s).summary["tpot_s"]["p50"]
    assert tpot >= layers * per_layer + 81 * float(hop.split()[0]) * 1e-6
    slower = s.chip.model_copy(update={"efficiency": s.chip.efficiency.model_copy(
        update={"layer_overhead": per_layer + 10e-6})})
    tpot_slower = run(dataclasses.replace(s, chip=slower)).summary["tpot_s"]["p50"]
    assert tpot_slower - tpot == pytest.approx(layers * 10e-6, rel=0.02)


def test_the_wafers_dense_peak_is_one_a_wafer_clock_can_deliver():
    """900,000 cores with an 8-wide FP16 FMA unit each (16 FLOP a cycle): the catalog's dense peak must come out
    at a clock a wafer runs at (0.5-2 GHz). The quoted 125 PFLOP/s would need 8.7 GHz: it counts sparsity."""
    chip = load_chip("cerebras-wse3")
    assert chip.mesh is not None
    clock = chip.compute.peak["bf16"] / (chip.mesh.cores * 8 * 2)
    assert 0.5e9 <= clock <= 2e9
    assert 125e15 / (chip.mesh.cores * 8 * 2) > 4e9
    assert "fp8" not in chip.compute.peak and "int8" not in chip.compute.peak  # none disclosed


def test_the_sram_evidence_rows_are_well_formed_sourced_and_not_in_the_shared_copy():
    """validation/sram-evidence.csv reads like calibration.csv, says where every number comes from and marks
    its guessed layouts, and repeats no case of the shared file (which stays a verbatim copy)."""
    evidence = read_cases(REPO / "validation" / "sram-evidence.csv")
    shared = {c.case_id for c in read_cases(REPO / "validation" / "calibration.csv")}
    assert evidence and not {c.case_id for c in evidence} & shared
    for case in evidence:
        assert case.chip in ("groq-lpu", "cerebras-wse3", "sambanova-sn40l")
        assert case.source and "ESTIMATED" in case.notes
