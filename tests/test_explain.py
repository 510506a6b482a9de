"""`infersim explain`: the plan and the speed of light, without simulating."""

import pytest
from conftest import REPO
from typer.testing import CliRunner

from simulator import load_scenario
from simulator.cli import app
from simulator.hardware.prepare import prepare
from simulator.studies.explain import decode_step, explain

GROQ = {"name": "groq", "model": "llama-3.1-70b", "cluster": str(REPO / "topologies" / "groq-rack-720.yaml"),
        "deployment": {"tensor_parallel": 8, "pipeline_parallel": 82, "weights_dtype": "int8",
                       "memory_utilization": 1.0},
        "serving": {"batcher": {"kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 4096}},
        "workload": {"arrival": {"kind": "closed_loop", "users": 8},
                     "prompt_tokens": {"kind": "fixed", "value": 512},
                     "output_tokens": {"kind": "fixed", "value": 128}, "num_requests": 8}}


def rows_of(path, overrides=()):
    return {(section, item): value for section, item, value in explain(load_scenario(path, list(overrides)))}


def test_70b_at_16_bits_on_230_mb_sram_chips_needs_at_least_614_chips(write_scenario):
    # 141.1 GB of weights / 230 MB per LPU = 613.5 -> 614, by capacity alone
    path = write_scenario(base=GROQ)
    rows = rows_of(path, ["deployment.weights_dtype=bf16"])
    assert rows[("model", "weights at bf16")] == "141.1 GB"
    assert rows[("cluster", "minimum chips by capacity alone")].startswith("614 ")
    assert "the weights alone need at least 614 groq-lpu chips" in rows[("plan", "does not fit")]
    fits = rows_of(path)  # at 8 bits: half the bytes
    assert fits[("cluster", "minimum chips by capacity alone")].startswith("307 ")
    assert fits[("memory", "tier holding weights and KV-cache")].startswith("sram")


def test_speed_of_light_never_exceeds_the_estimate_and_matches_bytes_over_bandwidth():
    scenario = load_scenario(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml")
    prepared = prepare(scenario)
    step = decode_step(prepared, scenario, batch=1, context=1)
    plan, model = prepared.plan, prepared.model
    read = (model.total_params - model.embedding_params) / plan.tensor_parallel  # fp8: one byte a parameter
    assert step.light_s == pytest.approx((read + 2 * plan.kv_bytes_per_token_per_chip) / 3.35e12, rel=1e-6)
    assert step.estimate_s > step.light_s
    assert step.bound == "memory"
    big = decode_step(prepared, scenario, batch=4096, context=1)
    assert big.compute_s > big.memory_s  # past the ridge


def test_explain_command_prints_the_plan():
    result = CliRunner().invoke(app, ["explain", str(REPO / "scenarios" / "default.yaml")])
    assert result.exit_code == 0, result.output
    for text in ("weights at bf16", "16.06 GB", "maximum batch per replica", "speed of light per token", "bound by"):
        assert text in result.stdout
