"""The embedding and the lm_head cut by vocabulary over pipeline stages when a whole one does not fit a stage:
Llama-3.1-70B at 16 bits on 230 MB LPUs."""

import pytest
from conftest import REPO

from simulator import load_scenario
from simulator.hardware.model import DTYPE_BYTES
from simulator.hardware.placement import layout_for, stage_layout
from simulator.hardware.prepare import prepare
from simulator.hardware.roofline import BatchShape
from simulator.studies.explain import min_chips_by_capacity

GROQ = {"name": "groq", "model": "llama-3.1-70b", "cluster": str(REPO / "topologies" / "groq-rack-720.yaml"),
        "deployment": {"tensor_parallel": 8, "pipeline_parallel": 84, "weights_dtype": "bf16",
                       "memory_utilization": 1.0},
        "serving": {"batcher": {"kind": "continuous", "max_batch_size": 64, "max_batched_tokens": 4096}},
        "workload": {"arrival": {"kind": "closed_loop", "users": 1},
                     "prompt_tokens": {"kind": "fixed", "value": 512},
                     "output_tokens": {"kind": "fixed", "value": 16}, "num_requests": 1}}
SRAM = 230e6  # bytes per LPU


def decode(batch):
    return BatchShape(0, 0, 0, batch, batch * 512, batch)


def test_70b_at_16_bits_runs_on_84_stages_of_8_lpus_and_no_chip_holds_more_than_its_sram(write_scenario):
    scenario = load_scenario(write_scenario(base=GROQ))
    prepared = prepare(scenario)
    plan, model = prepared.plan, prepared.model
    assert plan.chips_total == 672 >= min_chips_by_capacity(model, scenario, "bf16") == 614
    layout = layout_for(model, scenario.chip, scenario.spec.deployment)
    # every byte of the weights sits on exactly one stage, and no stage's TP rank holds more than its SRAM
    assert sum(layout.stage_bytes) == pytest.approx(model.weight_bytes("bf16"))
    assert max(layout.stage_bytes) / 8 <= SRAM and plan.weight_bytes_per_chip <= SRAM
    assert plan.kv_capacity_tokens > 0
    # the 2.1 GB embedding (263 MB per LPU) and the lm_head each span the two stages at their end
    assert layout.layers[:2] == (0, 0) and layout.layers[-2:] == (0, 0) and set(layout.layers[2:-2]) == {1}
    embedding = model.embedding_params * 2
    assert layout.stage_bytes[0] + layout.stage_bytes[1] == pytest.approx(embedding)
    assert embedding / 8 > SRAM
    assert plan.lm_head_shares[-2] > 0 and plan.lm_head_shares[-1] > 0 and sum(plan.lm_head_shares) == 1
    # the embedding is only looked up: its stages read no weights; the lm_head's FLOPs and bytes are split
    first, *_, before_last, last = prepared.cost_models
    assert first.cost(decode(4)).memory_bytes < 1e6
    lm_head = model.lm_head_params * DTYPE_BYTES["bf16"] / 8
    head_bytes = before_last.dense_weight_bytes + last.dense_weight_bytes
    assert head_bytes == pytest.approx(lm_head)
    # both hold no layer: their FLOPs are their share of the logits, 2 x lm_head params x tokens / tp in all
    logits = before_last.cost(decode(4)).flops + last.cost(decode(4)).flops
    assert logits == pytest.approx(2 * model.lm_head_params * 4 / 8)


def test_82_stages_cannot_hold_it_and_the_error_says_by_how_much(write_scenario):
    from simulator.errors import CapacityError

    data = {**GROQ, "deployment": {**GROQ["deployment"], "pipeline_parallel": 82}}
    with pytest.raises(CapacityError) as err:
        prepare(load_scenario(write_scenario(base=data)))
    # a stage sharing a vocabulary slice with a layer: (2.10 GB + 1.71 GB) / 2 over 8 chips, ~238 MB
    assert err.value.needed_bytes == pytest.approx(238e6, rel=0.01)


def test_a_model_whose_embedding_fits_keeps_it_whole_on_its_own_stage(write_scenario):
    # int8: the 1.05 GB embedding is 131 MB per LPU, it fits: the plan is the one it always was
    data = {**GROQ, "deployment": {**GROQ["deployment"], "pipeline_parallel": 82, "weights_dtype": "int8"}}
    scenario = load_scenario(write_scenario(base=data))
    layout = layout_for(prepare(scenario).model, scenario.chip, scenario.spec.deployment)
    whole = stage_layout(prepare(scenario).model, 82, 1.0)
    assert layout == whole
    assert layout.layers == (0,) + (1,) * 80 + (0,) and layout.head_shares == (0.0,) * 81 + (1.0,)


def test_vocabulary_slices_balance_bytes_and_conserve_them():
    scenario = load_scenario(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml")
    model = prepare(scenario).model
    whole = stage_layout(model, 4, 1.0)
    sliced = stage_layout(model, 4, 1.0, slice_vocab=True)
    assert sum(sliced.stage_bytes) == pytest.approx(sum(whole.stage_bytes))
    assert max(sliced.stage_bytes) <= max(whole.stage_bytes)
    assert sum(sliced.layers) == model.n_layers and sum(sliced.head_shares) == pytest.approx(1.0)
