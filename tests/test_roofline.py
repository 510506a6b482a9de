"""Iteration cost against the physics that bounds it: bytes over bandwidth, FLOPs over peak, ring all-reduce."""

from dataclasses import replace

import pytest
from conftest import REPO

from simulator.config.load import load_scenario
from simulator.hardware.model import DTYPE_BYTES
from simulator.hardware.prepare import prepare
from simulator.hardware.roofline import BatchShape, ring_allreduce_s


def decode(batch: int, context_each: int = 1) -> BatchShape:
    return BatchShape(0, 0, 0, batch, batch * context_each, batch)


def prefill(tokens: int) -> BatchShape:
    return BatchShape(tokens, tokens * (tokens + 1) // 2, 0, 0, 0, 1)


def prepared(path, overrides=()):
    p = prepare(load_scenario(path, list(overrides)))
    assert len(p.cost_models) == 1
    return p.model, p.plan, p.cost_models[0]


@pytest.fixture(scope="module")
def h100_8b():
    return prepared(REPO / "scenarios" / "default.yaml")


@pytest.mark.parametrize("scenario, overrides", [
    ("default.yaml", []),
    ("llama70b-hgx-h100-fp8.yaml", []),
    ("llama70b-hgx-h100-fp8.yaml", ["deployment.tensor_parallel=4", "deployment.weights_dtype=fp8"]),
    ("llama8b-h200.yaml", ["deployment.weights_dtype=fp8"]),
    ("default.yaml", ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=2"]),
])
def test_single_request_decode_never_beats_weight_bytes_over_bandwidth(scenario, overrides):
    model, plan, cost_model = prepared(REPO / "scenarios" / scenario, overrides)
    for context in (1, 1000, 100_000):
        cost = cost_model.cost(decode(1, context))
        kv = context * plan.kv_bytes_per_token_per_chip
        # every layer weight and the lm_head are read; the embedding is only looked up; an MoE token reads
        # only its top-k experts
        routed_all = model.n_moe_layers * model.n_experts * model.expert_params
        read = (model.total_params - model.embedding_params - routed_all
                + model.n_moe_layers * model.top_k * model.expert_params
                + (model.lm_head_params if model.tied_embeddings else 0))
        weights = read * DTYPE_BYTES[plan.weights_dtype] / plan.tensor_parallel
        assert cost.roofline_s >= (weights + kv) / plan.tier_bandwidth
        assert cost.memory_bytes >= weights + kv


def test_decode_step_grows_slowly_while_memory_bound_and_linearly_past_the_ridge(h100_8b):
    _, _, cost_model = h100_8b
    t = {b: cost_model.cost(decode(b)).roofline_s for b in (1, 2, 4, 8, 16, 4096, 8192, 16384)}
    assert t[2] / t[1] < 1.02 and t[16] / t[1] < 1.1  # memory-bound: weights read once for the batch
    assert t[16384] / t[8192] == pytest.approx(2.0, rel=0.03)  # compute-bound: linear in tokens
    assert t[8192] / t[4096] == pytest.approx(2.0, rel=0.05)
    # the ridge: effective peak FLOP/s over effective bandwidth, in FLOP per byte; bf16 weights do
    # 2 FLOPs per 2 bytes per token, so the ridge batch equals the ridge intensity
    ridge = cost_model.peak_flops / cost_model.memory_bw
    below, above = cost_model.cost(decode(int(ridge * 0.7))), cost_model.cost(decode(int(ridge * 1.3)))
    assert below.memory_s > below.compute_s and above.compute_s > above.memory_s


def test_long_prefill_is_compute_bound_and_at_least_flops_over_peak(h100_8b):
    model, _, cost_model = h100_8b
    cost = cost_model.cost(prefill(8192))
    assert cost.compute_s > 5 * cost.memory_s
    assert cost.roofline_s >= model.flops_per_token(0) * 8192 / 989.4e12


def test_ring_allreduce_closed_form():
    size, n, bw, hop = 64e6, 8, 450e9, 1e-6
    assert ring_allreduce_s(size, n, bw, hop) == pytest.approx(2 * 7 / 8 * size / bw + 14 * hop)
    assert ring_allreduce_s(size, 1, bw, hop) == 0.0


def test_tensor_parallel_splits_weight_reads():
    path = REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml"
    _, plan8, tp8 = prepared(path)
    _, plan4, tp4 = prepared(path, ["deployment.tensor_parallel=4"])
    assert plan4.weight_bytes_per_chip == pytest.approx(2 * plan8.weight_bytes_per_chip)
    assert tp4.cost(decode(1)).memory_s == pytest.approx(2 * tp8.cost(decode(1)).memory_s, rel=0.01)


def test_pipeline_stages_split_layers_and_only_the_last_holds_the_lm_head():
    p = prepare(load_scenario(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml",
                              ["deployment.tensor_parallel=2", "deployment.pipeline_parallel=4"]))
    # balanced by bytes: the stages holding the embedding and the lm_head (1.05 GB each) take fewer layers
    assert p.plan.layers_per_stage == (19, 21, 21, 19)
    first, last = p.cost_models[0], p.cost_models[-1]
    assert not first.last and last.last
    lm_head = p.model.lm_head_params * DTYPE_BYTES["fp8"] / 2
    assert last.dense_weight_bytes - first.dense_weight_bytes == pytest.approx(lm_head)
    whole = prepared(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml", ["deployment.tensor_parallel=2"])[2]
    stages = sum(cm.cost(decode(8)).memory_bytes for cm in p.cost_models)
    assert stages == pytest.approx(whole.cost(decode(8)).memory_bytes)


def test_moe_reads_only_the_experts_its_tokens_touch():
    _, _, cost_model = prepared(REPO / "scenarios" / "default.yaml",
                                ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=2"])
    assert cost_model.experts_touched(1) == pytest.approx(2.0)  # top-2 of 8
    assert cost_model.experts_touched(1000) == pytest.approx(8.0)
    assert cost_model.cost(decode(1)).memory_bytes < cost_model.cost(decode(64)).memory_bytes


def test_an_moe_layer_pays_its_own_overhead_on_top_of_a_dense_layers():
    """Per-iteration overhead = step + layers x layer_overhead + MoE layers x moe_layer_overhead: Mixtral (32
    MoE layers) pays 32 MoE overheads per pass, a dense model none; a pipeline stage its share."""
    dense = prepared(REPO / "scenarios" / "default.yaml")[2]
    moe = prepared(REPO / "scenarios" / "default.yaml",
                   ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=2"])[2]
    eff = load_scenario(REPO / "scenarios" / "default.yaml").chip.efficiency
    assert eff.moe_layer_overhead > 0
    assert dense.overhead_s == pytest.approx(eff.step_overhead + 32 * eff.layer_overhead)
    assert moe.overhead_s == pytest.approx(eff.step_overhead + 32 * (eff.layer_overhead + eff.moe_layer_overhead))
    staged = prepare(load_scenario(REPO / "scenarios" / "default.yaml",
                                   ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=2",
                                    "deployment.pipeline_parallel=2"])).cost_models
    assert sum(s.overhead_s for s in staged) == pytest.approx(moe.overhead_s + eff.step_overhead)
    assert moe.cost(decode(1)).roofline_s > moe.cost(decode(1)).memory_s + 32 * eff.moe_layer_overhead


MIXTRAL_TP2 = ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=2"]


def test_grouped_expert_gemms_are_their_own_roofline_class():
    """Dense GEMMs and the experts' grouped GEMMs are different kernels, each bound by its own FLOPs or bytes:
    the pass costs the sum of both rooflines, at least max(FLOPs/peak, bytes/bandwidth) of the two taken
    together (2,048 decode tokens of Mixtral touch all 8 experts of every MoE layer)."""
    model, _, cm = prepared(REPO / "scenarios" / "default.yaml", MIXTRAL_TP2)
    b = decode(2048)
    dense_flops, dense_bytes, expert_flops, expert_bytes = cm._gemms(b, b.tokens)
    dense = max(dense_flops / cm.peak_flops, dense_bytes / cm.memory_bw)
    experts = max(expert_flops / cm.expert_peak_flops, expert_bytes / cm.memory_bw / cm.grouped_gemm)
    gemms = cm.cost(b)  # the attention classes come on top
    assert gemms.compute_bound_s + gemms.memory_bound_s >= dense + experts - 1e-12
    assert dense + experts >= max((dense_flops + expert_flops) / cm.peak_flops,
                                  (dense_bytes + expert_bytes) / cm.memory_bw)
    assert expert_bytes == pytest.approx(model.n_moe_layers * 8 * model.expert_params * 2 / 2)  # all 8 touched


@pytest.mark.parametrize("batch", [1, 16, 2048])
def test_grouped_gemm_efficiency_slows_only_the_experts(batch):
    """Halving `grouped_gemm` doubles the experts' class time (both its compute and its memory time, so it is
    bound the same way) and leaves a dense model untouched."""
    fast = prepared(REPO / "scenarios" / "default.yaml", [*MIXTRAL_TP2, "cluster.chip.efficiency.grouped_gemm=1"])[2]
    slow = prepared(REPO / "scenarios" / "default.yaml", [*MIXTRAL_TP2,
                                                          "cluster.chip.efficiency.grouped_gemm=0.5"])[2]
    b = decode(batch)
    _, _, expert_flops, expert_bytes = fast._gemms(b, b.tokens)
    expert_fast = max(expert_flops / fast.expert_peak_flops, expert_bytes / fast.memory_bw)
    added = slow.cost(b).roofline_s - fast.cost(b).roofline_s
    assert added == pytest.approx(expert_fast, rel=1e-9)
    dense = [prepared(REPO / "scenarios" / "default.yaml", [f"cluster.chip.efficiency.grouped_gemm={g}"])[2]
             for g in (1, 0.5)]
    assert dense[0].cost(b) == dense[1].cost(b)


def test_four_bit_weights_without_a_four_bit_peak_compute_in_sixteen_bits():
    """W4A16: MXFP4 experts on Hopper are dequantised in the kernel and multiplied in bf16; a chip with an fp4
    peak (Blackwell) computes in fp4."""
    from simulator.config.load import load_chip
    from simulator.studies.validate.cases import read_cases
    from simulator.studies.validate.predict import compute_dtype

    cases = {c.case_id: c for c in read_cases(REPO / "validation" / "calibration.csv")}
    hopper = cases["IMAX_H100x2_GPTOSS120B_1K1K_C64_THR"]
    blackwell = cases["IMAX_B200x1_GPTOSS120B_1K1K_C128_THR"]
    assert hopper.weights_dtype == blackwell.weights_dtype == "fp4"
    assert compute_dtype(hopper, load_chip("h100-sxm")) == "bf16"
    assert compute_dtype(blackwell, load_chip("b200")) == "fp4"


def test_the_serving_engine_pays_its_host_time_once_per_sequence_that_yields_a_token():
    """overhead = fixed + sequence_overhead x logits, on the last stage only; the engine's catalog profile
    gives the value unless the chip family has a fitted one."""
    from simulator.config.load import load_engine, sequence_overhead_s

    base = REPO / "scenarios" / "default.yaml"
    chip = load_scenario(base).chip
    per = {engine: prepared(base, [f"serving.engine={engine}"])[2] for engine in ("vllm", "trtllm")}
    for engine, cost_model in per.items():
        expected = sequence_overhead_s(chip, engine)
        assert cost_model.sequence_overhead_s == expected > 0
        if engine not in chip.efficiency.sequence_overhead:
            assert expected == load_engine(engine).sequence_overhead
        one, many = cost_model.cost(decode(1)), cost_model.cost(decode(128))
        assert many.overhead_s - one.overhead_s == pytest.approx(127 * expected)
    staged = prepare(load_scenario(base, ["cluster=hgx-h100", "deployment.pipeline_parallel=2"])).cost_models
    assert staged[0].sequence_overhead_s == 0 < staged[1].sequence_overhead_s  # the engine samples once


def test_an_engines_host_time_per_step_is_paid_by_every_stage_once_per_step():
    """A chip family's fitted engine step overhead (or the profile's default) adds to each stage's fixed
    cost, whatever the batch; another engine on the same chip does not pay it."""
    from simulator.config.load import engine_step_overhead_s

    base = REPO / "scenarios" / "default.yaml"
    extra = 7e-3
    chip = load_scenario(base).chip
    fitted = chip.model_copy(update={"efficiency": chip.efficiency.model_copy(
        update={"engine_step_overhead": {"jetstream": extra}})})
    assert engine_step_overhead_s(fitted, "jetstream") == extra and engine_step_overhead_s(fitted, "vllm") == 0.0
    scenario = load_scenario(base, ["cluster=hgx-h100", "deployment.pipeline_parallel=2"])
    plain = prepare(scenario).cost_models
    for engine, added in (("jetstream", extra), ("vllm", 0.0)):
        spec = scenario.spec.model_copy(update={"serving": scenario.spec.serving.model_copy(
            update={"engine": engine})})
        staged = prepare(replace(scenario, chip=fitted, spec=spec)).cost_models
        for stage, base_stage in zip(staged, plain):
            for batch in (1, 64):
                assert (stage.cost(decode(batch)).overhead_s - stage.sequence_overhead_s * batch
                        == pytest.approx(base_stage.overhead_s + added))


def test_an_unknown_serving_engine_is_refused_with_the_engines_there_are():
    from conftest import cli_error

    path = REPO / "scenarios" / "default.yaml"
    assert cli_error("run", path, "--set", "serving.engine=foo") == (
        f"{path}: serving.engine: 'foo' is not one of: jetstream, sglang, trtllm, vllm")


@pytest.mark.parametrize("weights, kv, attention", [("fp8", "bf16", "bf16"), ("fp8", "fp8", "fp8"),
                                                    ("bf16", "bf16", "bf16")])
def test_attention_multiplies_at_the_kv_cache_precision_not_the_weights(weights, kv, attention):
    """8-bit weights dequantize inside the GEMMs, but QK^T and PV multiply activations by the KV-cache: a long
    prefill's attention takes its FLOPs over the peak of the KV-cache's precision (fp8 only with an fp8
    KV-cache), its GEMMs over the weights'."""
    _, _, cost_model = prepared(REPO / "scenarios" / "default.yaml",
                                [f"deployment.weights_dtype={weights}", f"deployment.kv_dtype={kv}"])
    from simulator.config.load import load_chip
    chip = load_chip("h100-sxm")
    shape = prefill(16384)
    cost = cost_model.cost(shape)
    attention_flops = cost_model.attn_flops_per_pair * shape.prefill_pairs
    gemm_flops = cost.flops - attention_flops
    eff = chip.efficiency.compute
    assert cost.compute_s == pytest.approx(gemm_flops / (chip.compute.peak[weights] * eff)
                                           + attention_flops / (chip.compute.peak[attention] * eff))
