"""Time of one iteration (one forward pass of a batch) on one pipeline stage, with its breakdown.

The kernels of a pass run one after the other, and each is bound by its own FLOPs or its own bytes, so the
pass costs the sum of a roofline per kernel class, not one roofline over the whole pass:

    time = sum over classes of max(FLOPs / (peak x eps_c), bytes / (bandwidth x eps_m)) + overheads

Classes: the dense GEMMs (every weight read once, multiplied by every token of the batch, lm_head
included), the routed experts' grouped GEMMs (the experts the tokens touch, each read once and multiplied by
its own few tokens, at `grouped_gemm` of the dense GEMMs' rates: a grouped GEMM of a few tokens per expert
is memory bound while the dense GEMMs of the same batch may be compute bound), prefill attention (the
chunks' (query, key) pairs; the KV they read and write) and decode attention (each decoding request's
context read; its new KV written). A chunked-prefill step therefore pays
its prefill GEMMs' compute and its decodes' KV reads in turn, as engines run them, and a large decode batch
whose GEMMs are compute bound still reads its KV-cache after them.

Bytes: every layer weight of the stage once per iteration (MoE: the experts the batch's tokens touch), the
lm_head on the last stage (or its vocabulary slices on the last few), the KV-cache each token attends to and
the KV it writes; the embedding is only looked up (a row per token), never read whole. FLOPs: 2 x active
params per token, the lm_head for tokens that produce logits, and attention per (query, key) pair.
Tensor parallelism divides both; its all-reduces are flows on the network (engine), and
`ring_allreduce_s` gives their uncontended closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from simulator.config.cluster import ChipSpec
from simulator.config.fields import DType
from simulator.hardware.model import DTYPE_BYTES, ModelShape
from simulator.hardware.placement import Plan

ACTIVATION_BYTES = 2.0  # activations and all-reduces in 16-bit, also for 8-bit weights (as TensorRT-LLM does)
# The matrix products of one transformer layer that run one after the other in decode: QKV projection,
# attention over the KV-cache, output projection, gate/up projection, down projection.
SEQUENTIAL_PRODUCTS_PER_LAYER = 5


class BatchShape(NamedTuple):
    """What an iteration processes, summed over its requests (token counts)."""
    prefill_tokens: float    # new prompt tokens computed this iteration
    prefill_pairs: float     # (query, key) pairs of those tokens' attention
    prefill_kv_tokens: float  # earlier context positions whose KV the prefill chunks read
    decode_tokens: float     # one per decoding request
    decode_context: float    # context positions the decoding requests attend to
    logits: float            # tokens that produce a next-token distribution
    verify_tokens: float = 0.0  # speculative decoding: drafted tokens scored besides the decode tokens
    verify_pairs: float = 0.0   # their (query, key) attention pairs

    @property
    def tokens(self) -> float:
        return self.prefill_tokens + self.decode_tokens + self.verify_tokens

    def split(self, parts: int) -> BatchShape:
        """One of `parts` equal micro-batches (pipeline parallelism)."""
        return BatchShape(*(value / parts for value in self))


class StepCost(NamedTuple):
    compute_s: float         # every kernel class's FLOPs over its effective peak
    memory_s: float          # all bytes over the effective bandwidths
    overhead_s: float
    flops: float             # per chip
    memory_bytes: float      # per chip, from the fast memory tier
    stream_bytes: float      # per chip, weights streamed from a slower tier (weight streaming only)
    compute_bound_s: float   # time of the kernel classes their FLOPs bound
    memory_bound_s: float    # time of the kernel classes their bytes bound

    @property
    def roofline_s(self) -> float:
        return self.compute_bound_s + self.memory_bound_s + self.overhead_s


def cost_sum(a: StepCost, b: StepCost) -> StepCost:
    """Two passes run one after the other (e.g. verifying and drafting), as one step's cost."""
    return StepCost(*(x + y for x, y in zip(a, b)))


def ring_allreduce_s(size_bytes: float, n: int, bw_bytes_per_s: float, hop_latency_s: float) -> float:
    """Ring all-reduce: 2(n-1)/n x S / B of transfer plus 2(n-1) hop latencies."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * size_bytes / bw_bytes_per_s + 2 * (n - 1) * hop_latency_s


def attention_dtype(plan: Plan, chip: ChipSpec) -> DType:
    """The precision attention's matrix products run at: the KV-cache's 8-bit float when it is fp8 and the
    chip has an fp8 rate (TensorRT-LLM's fp8 FMHA), else 16-bit, whatever the weights are: fp4 or int8
    weights dequantize in the GEMMs, but QK^T and PV multiply activations by the KV-cache. A chip with
    no 16-bit rate in the catalog runs it at the GEMMs' dtype."""
    peaks = chip.compute.peak
    if plan.kv_dtype == "fp8" and "fp8" in peaks:
        return "fp8"
    sixteen: tuple[DType, ...] = ("bf16", "fp16")
    return next((d for d in sixteen if d in peaks), plan.compute_dtype)


def mesh_layer_s(model: ModelShape, plan: Plan, chip: ChipSpec) -> float:
    """Latency one layer's decode pays crossing its region of a wafer's core mesh (0 for chips without one).
    The stage's weights are spread over all the cores, so a layer holds a region of c = cores x (its share of
    the stage's bytes) cores, a square sqrt(c) cores wide. Each of its SEQUENTIAL_PRODUCTS_PER_LAYER matrix
    products sends the activation across the region and reduces the partial sums back: 2 sqrt(c) hops
    (WaferLLM's MeshGEMV, OSDI'25). It grows with the span a layer occupies, not with the batch: the tokens
    of a batch travel the mesh together."""
    mesh = chip.mesh
    if mesh is None or plan.weight_bytes_per_chip <= 0:
        return 0.0
    layer_bytes = (model.dense_layer_params + model.n_moe_layers * model.n_experts * model.expert_params) \
        / model.n_layers * DTYPE_BYTES[plan.weights_dtype] / plan.tensor_parallel
    region = mesh.cores * min(1.0, layer_bytes / plan.weight_bytes_per_chip)
    return SEQUENTIAL_PRODUCTS_PER_LAYER * 2.0 * math.sqrt(region) * mesh.hop_latency


def pipelined(total: float, slowest: float, parts: int, in_flight: bool) -> float:
    """An iteration of `parts` identical micro-batches through a pipeline, from one micro-batch's way through
    all stages (`total`) and the slowest step that holds a stage or a link (`slowest`). Drained each iteration
    (flush): a flow shop of identical jobs, total + (parts - 1) x slowest, idle (p - 1) / (m + p - 1) of the
    time on balanced stages. Kept in flight from one iteration to the next: a cyclic pipeline, whose period
    is the slower of one micro-batch's way round and `parts` passes of the slowest step."""
    return max(total, parts * slowest) if in_flight else total + (parts - 1) * slowest


@dataclass(frozen=True)
class StepCostModel:
    """Per-chip constants of one pipeline stage, so that `cost()` is a handful of float operations."""
    model: ModelShape
    tp: int
    ep: int
    layers: int               # transformer layers in this stage
    last: bool                # holds the lm_head (or a vocabulary slice of it)
    peak_flops: float         # effective: peak x eps_c, of the GEMMs' compute dtype
    attn_peak_flops: float    # effective peak of the attention kernels' dtype (attention_dtype)
    memory_bw: float          # effective: bandwidth x eps_m
    stream_bw: float          # effective bandwidth of the tier weights stream from; 0 without streaming
    streamed_share: float     # of the weight bytes a pass reads, the share in that slower tier (the rest fits)
    expert_peak_flops: float  # effective peak of the routed experts' grouped GEMMs: peak_flops x grouped_gemm
    grouped_gemm: float       # their achieved fraction of the dense GEMMs' rates (bandwidth too)
    dense_weight_bytes: float  # per chip: this stage's layers except routed experts (+ lm_head if last)
    expert_bytes: float       # per chip: one routed expert of one layer (whole with EP, 1/tp without)
    kv_bytes_per_token: float  # per chip, this stage's layers
    overhead_s: float         # fixed per pass: step, per-layer and per-MoE-layer overheads
    sequence_overhead_s: float  # the serving engine's host time per sequence that yields a token (logit)
    # derived in build(), so that cost() does few operations (the same ones, in the same order)
    attn_flops_per_pair: float = 0.0   # attention FLOPs of one (query, key) pair over this stage's layers
    decode_flops_per_pair: float = 0.0  # the same for a decoding query (MLA: absorbed, ModelShape)
    dense_flops_per_token: float = 0.0  # 2 x the dense active parameters of this stage's layers
    routed_flops_per_token: float = 0.0  # 2 x the routed experts' active parameters of this stage's layers
    lm_head_flops_per_logit: float = 0.0  # 2 x the lm_head parameters this stage holds
    # attention data parallelism (deployment.data_parallel_attention): each of `dp` ranks of `tp` chips
    # attends to and runs the dense layers for 1/dp of the batch; the routed experts see the whole batch
    dp: int = 1
    expert_tp: int = 1        # chips one routed expert is split over (1 with expert parallelism)

    @classmethod
    def build(cls, model: ModelShape, plan: Plan, chip: ChipSpec, stage: int,
              sequence_overhead_s: float = 0.0, engine_step_s: float = 0.0) -> StepCostModel:
        """The cost model of `stage`; `sequence_overhead_s` is paid once per step per logit, on the last stage
        (where the engine samples); `engine_step_s`, the engine's host time per step, by every stage."""
        eff = chip.efficiency
        wbytes = DTYPE_BYTES[plan.weights_dtype]
        layers = plan.layers_per_stage[stage]
        head = plan.lm_head_shares[stage] if plan.lm_head_shares else float(stage == len(plan.layers_per_stage) - 1)
        last = head > 0  # holds (a vocabulary slice of) the lm_head
        frac = layers / model.n_layers
        dense = model.dense_layer_params * frac + (model.lm_head_params * head if last else 0)
        routed_active = model.n_moe_layers * model.top_k * model.expert_params
        dense_active = model.active_layer_params - routed_active
        return cls(
            model=model, tp=plan.tensor_parallel, ep=plan.expert_parallel, layers=layers, last=last,
            peak_flops=chip.compute.peak[plan.compute_dtype] * eff.compute,
            attn_peak_flops=chip.compute.peak[attention_dtype(plan, chip)] * eff.compute,
            expert_peak_flops=chip.compute.peak[plan.compute_dtype] * eff.compute * eff.grouped_gemm,
            grouped_gemm=eff.grouped_gemm,
            memory_bw=plan.tier_bandwidth * eff.memory,
            stream_bw=plan.stream_bandwidth * eff.memory,
            streamed_share=1.0 - plan.resident_weight_fraction if plan.stream_tier else 0.0,
            dense_weight_bytes=dense * wbytes / plan.tensor_parallel,
            expert_bytes=model.expert_params * wbytes / plan.expert_tp,
            kv_bytes_per_token=plan.kv_bytes_per_token_per_chip * frac,
            overhead_s=eff.step_overhead + engine_step_s
            + layers * (eff.layer_overhead + mesh_layer_s(model, plan, chip))
            + model.n_moe_layers * layers / model.n_layers * eff.moe_layer_overhead,
            sequence_overhead_s=sequence_overhead_s if last else 0.0,
            attn_flops_per_pair=model.attn_flops_per_pair_per_layer * layers,
            decode_flops_per_pair=model.decode_attn_flops * layers,
            dense_flops_per_token=2.0 * dense_active * frac,
            routed_flops_per_token=2.0 * routed_active * frac,
            lm_head_flops_per_logit=2.0 * model.lm_head_params * head,
            dp=plan.data_parallel, expert_tp=plan.expert_tp,
        )

    @property
    def moe_layers(self) -> float:
        m = self.model
        return m.n_moe_layers * self.layers / m.n_layers

    def experts_touched(self, tokens: float) -> float:
        """Expected distinct experts per MoE layer hit by `tokens` tokens routed top-k uniformly."""
        m = self.model
        return m.n_experts * (1.0 - (1.0 - m.top_k / m.n_experts) ** tokens)

    def _gemms(self, b: BatchShape, tokens: float,
               expert_load: tuple[float, float] | None = None) -> tuple[float, float, float, float]:
        """(FLOPs, weight bytes) of the pass's dense GEMMs (the dense layers, the lm_head on the last stage),
        then of its routed experts' grouped GEMMs: evenly over the TP group (expected experts touched) or as
        the busiest EP rank's `expert_load` says (zeros without experts)."""
        gemm = self.dense_flops_per_token * tokens / self.tp
        if self.last:
            gemm += self.lm_head_flops_per_logit * b.logits / self.tp
        if not self.model.n_experts:
            return gemm, self.dense_weight_bytes, 0.0, 0.0
        if expert_load is None:  # expected experts touched by the whole batch, on 1/ep of them per rank
            return (gemm, self.dense_weight_bytes, self.routed_flops_per_token * tokens / self.tp,
                    self.moe_layers * self.experts_touched(tokens * self.dp) * self.expert_bytes / self.ep)
        routed_tokens, touched = expert_load
        return (gemm, self.dense_weight_bytes, 2.0 * self.model.expert_params * routed_tokens / self.expert_tp,
                touched * self.expert_bytes)

    def _gemm_times(self, b: BatchShape, tokens: float, expert_load: tuple[float, float] | None = None
                    ) -> tuple[float, float, float, float, float, float, float]:
        """The GEMM classes of a pass, dense then grouped, for cost() and decode_terms alike (the same float
        operations): (FLOPs, compute time, compute-bound time, memory-bound time, memory time, weight bytes
        from the fast tier, weight bytes streamed)."""
        gemm, weights, expert, expert_weights = self._gemms(b, tokens, expert_load)
        gc = gemm / self.peak_flops
        resident, streamed, gm = self._weight_reads(weights)
        ec = expert / self.expert_peak_flops
        e_resident, e_streamed, em = self._weight_reads(expert_weights)
        em = em / self.grouped_gemm
        cb = (gc if gc >= gm else 0.0) + (ec if ec >= em else 0.0)
        mb = (gm if gm > gc else 0.0) + (em if em > ec else 0.0)
        return gemm + expert, gc + ec, cb, mb, gm + em, resident + e_resident, streamed + e_streamed

    def _weight_reads(self, weights: float) -> tuple[float, float, float]:
        """(bytes read from the fast tier, bytes streamed from the slower one, their time) of `weights` weight
        bytes, for cost() and decode_terms alike (the same float operations)."""
        streamed = weights * self.streamed_share
        resident = weights - streamed
        if self.stream_bw:
            return resident, streamed, resident / self.memory_bw + streamed / self.stream_bw
        return resident, streamed, weights / self.memory_bw

    def cost(self, b: BatchShape, expert_load: tuple[float, float] | None = None) -> StepCost:
        """Roofline of one pass of `b` through this stage on one chip, kernel class by class. `expert_load` =
        (routed tokens, experts touched) summed over this stage's MoE layers on the busiest expert-parallel
        rank; without it the routed experts are split evenly over the TP group (expected experts touched). With
        attention data parallelism the chip runs its DP rank's 1/dp of `b` (the batch of the whole stage)."""
        if self.dp > 1:
            b = b.split(self.dp)
        tokens = b.prefill_tokens + b.decode_tokens + b.verify_tokens
        gemm, gc, gcb, gmb, gm, resident, streamed = self._gemm_times(b, tokens, expert_load)
        prefill = (self.attn_flops_per_pair * b.prefill_pairs + self.decode_flops_per_pair * b.verify_pairs) / self.tp
        decode = self.decode_flops_per_pair * b.decode_context / self.tp
        kv_prefill = (b.prefill_kv_tokens + b.prefill_tokens + b.verify_tokens) * self.kv_bytes_per_token
        kv_decode = (b.decode_context + b.decode_tokens) * self.kv_bytes_per_token  # reads + the new token's
        overhead = self.overhead_s + self.sequence_overhead_s * b.logits
        attn_peak, bw = self.attn_peak_flops, self.memory_bw
        pc, pm, dc, dm = prefill / attn_peak, kv_prefill / bw, decode / attn_peak, kv_decode / bw
        cb = gcb + (pc if pc >= pm else 0.0) + (dc if dc >= dm else 0.0)
        mb = gmb + (pm if pm > pc else 0.0) + (dm if dm > dc else 0.0)
        flops = gemm + prefill + decode
        kv = kv_prefill + kv_decode
        return StepCost(gc + pc + dc, gm + pm + dm, overhead, flops, resident + kv, streamed, cb, mb)

    def decode_terms(self, b: BatchShape) -> tuple:
        """What `cost(b)` computes that does not depend on `b.decode_context`, for a batch of decodes without
        prefill, speculation or sampled expert load (run-ahead's steady decoding, engine/run_ahead.py):
        (gemm FLOPs, their compute time, the GEMMs' compute-bound and memory-bound time, their memory time,
        attention FLOPs per pair, tp, tokens, KV bytes per token, attention's peak, bandwidth, weight bytes in
        the fast tier and streamed from the slower one, overhead). With context c, the same float operations as
        cost() give: decode attention = per_pair x c / tp over attention's peak against (c + tokens) x
        kv_per_token over bandwidth; compute time = GEMMs' + attention's; the prefill class adds zero."""
        tokens = b.prefill_tokens + b.decode_tokens + b.verify_tokens
        gemm, gc, gcb, gmb, gm, resident, streamed = self._gemm_times(b, tokens)
        return (gemm, gc, gcb, gmb, gm, self.decode_flops_per_pair, self.tp,
                tokens, self.kv_bytes_per_token, self.attn_peak_flops, self.memory_bw, resident, streamed,
                self.overhead_s + self.sequence_overhead_s * b.logits)


class Drafter:
    """The cost of drafting `tokens` tokens per decoding request each step: `tokens` decode passes of a draft
    model, or, without one, of one target layer each (multi-token prediction heads)."""

    def __init__(self, tokens: int, cost_model: StepCostModel, layers: float):
        self.tokens, self.cost_model, self.fraction = tokens, cost_model, layers / cost_model.layers

    def cost(self, shape: BatchShape) -> StepCost:
        one = self.cost_model.cost(BatchShape(0, 0, 0, shape.decode_tokens, shape.decode_context,
                                              shape.decode_tokens))
        return StepCost(*(value * self.tokens * self.fraction for value in one))

