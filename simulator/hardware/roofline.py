"""Time of one iteration (one forward pass of a batch) on one tensor-parallel stage, with its breakdown.

    time = max(FLOPs / (peak x eps_c), bytes / (bandwidth x eps_m)) + collectives + overheads

Bytes: every weight once per iteration (MoE: the experts the batch's tokens are expected to touch), the
KV-cache each token attends to, and the KV it writes. FLOPs: 2 x active params per token, the lm_head for
tokens that produce logits, and attention per (query, key) pair. Tensor parallelism splits both and adds
two ring all-reduces of the activations per layer (closed form here; the network model replaces it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from simulator.config.schema import ChipSpec, TopologySpec
from simulator.hardware.model import DTYPE_BYTES, ModelShape
from simulator.hardware.placement import Plan

ACTIVATION_BYTES = 2.0  # activations and all-reduces in 16-bit, also for 8-bit weights (as TensorRT-LLM does)


class BatchShape(NamedTuple):
    """What an iteration processes, summed over its requests (token counts)."""
    prefill_tokens: int      # new prompt tokens computed this iteration
    prefill_pairs: int       # (query, key) pairs of those tokens' attention
    prefill_kv_tokens: int   # earlier context positions whose KV the prefill chunks read
    decode_tokens: int       # one per decoding request
    decode_context: int      # context positions the decoding requests attend to
    logits: int              # tokens that produce a next-token distribution


class StepCost(NamedTuple):
    duration_s: float
    compute_s: float
    memory_s: float
    network_s: float
    overhead_s: float
    flops: float             # per chip
    memory_bytes: float      # per chip, from the memory tier
    network_bytes: float     # per chip, sent on the scale-up fabric


def ring_allreduce_s(size_bytes: float, n: int, bw_bytes_per_s: float, hop_latency_s: float) -> float:
    """Ring all-reduce: 2(n-1)/n x S / B of transfer plus 2(n-1) hop latencies."""
    if n <= 1:
        return 0.0
    return 2.0 * (n - 1) / n * size_bytes / bw_bytes_per_s + 2 * (n - 1) * hop_latency_s


def scaleup_port_bw(chip: ChipSpec, cluster: TopologySpec) -> float:
    """Per-direction bandwidth of one chip's scale-up port: the topology's figure, else the chip's."""
    if cluster.scaleup and cluster.scaleup.bandwidth_per_dir:
        return cluster.scaleup.bandwidth_per_dir
    return chip.scaleup.bandwidth_per_dir if chip.scaleup else 0.0


@dataclass(frozen=True)
class StepCostModel:
    """Per-chip constants of one replica, so that `cost()` is a handful of float operations."""
    model: ModelShape
    tp: int
    peak_flops: float        # effective: peak x eps_c
    memory_bw: float         # effective: bandwidth x eps_m
    fabric_bw: float         # effective per-direction bandwidth per chip
    hop_latency_s: float
    dense_weight_bytes: float  # per chip: all but routed experts
    expert_bytes: float        # per chip: one routed expert of one layer
    kv_bytes_per_token: float  # per chip
    overhead_s: float

    @classmethod
    def build(cls, model: ModelShape, plan: Plan, chip: ChipSpec, cluster: TopologySpec) -> "StepCostModel":
        eff = chip.efficiency
        wbytes = DTYPE_BYTES[plan.weights_dtype]
        routed = model.n_moe_layers * model.n_experts * model.expert_params
        fabric = cluster.scaleup
        port_bw = scaleup_port_bw(chip, cluster)
        if plan.tensor_parallel > 1 and not port_bw:
            raise ValueError(f"{chip.id} has no scale-up bandwidth, so tensor parallelism cannot be timed")
        return cls(
            model=model, tp=plan.tensor_parallel,
            peak_flops=chip.compute.peak[plan.compute_dtype] * eff.compute,
            memory_bw=plan.tier_bandwidth * eff.memory,
            fabric_bw=port_bw * eff.collective,
            hop_latency_s=fabric.hop_latency if fabric else 0.0,
            dense_weight_bytes=(model.total_params - routed) * wbytes / plan.tensor_parallel,
            expert_bytes=model.expert_params * wbytes / plan.tensor_parallel,
            kv_bytes_per_token=plan.kv_bytes_per_token_per_chip,
            overhead_s=eff.step_overhead + model.n_layers * eff.layer_overhead,
        )

    def experts_touched(self, tokens: int) -> float:
        """Expected distinct experts per MoE layer hit by `tokens` tokens routed top-k uniformly."""
        m = self.model
        return m.n_experts * (1.0 - (1.0 - m.top_k / m.n_experts) ** tokens)

    def cost(self, b: BatchShape) -> StepCost:
        m = self.model
        tokens = b.prefill_tokens + b.decode_tokens
        flops = (2.0 * m.active_layer_params * tokens + 2.0 * m.lm_head_params * b.logits
                 + m.attn_flops_per_pair_per_layer * m.n_layers * (b.prefill_pairs + b.decode_context)) / self.tp
        weights = self.dense_weight_bytes
        if m.n_experts:
            weights += m.n_moe_layers * self.experts_touched(tokens) * self.expert_bytes
        kv = (b.prefill_kv_tokens + b.decode_context + tokens) * self.kv_bytes_per_token  # reads + writes
        memory_bytes = weights + kv
        compute_s = flops / self.peak_flops
        memory_s = memory_bytes / self.memory_bw
        network_s = network_bytes = 0.0
        if self.tp > 1:
            size = tokens * m.d_model * ACTIVATION_BYTES
            per_layer = 2 * ring_allreduce_s(size, self.tp, self.fabric_bw, self.hop_latency_s)
            network_s = m.n_layers * per_layer
            network_bytes = m.n_layers * 2 * 2.0 * (self.tp - 1) / self.tp * size
        duration = max(compute_s, memory_s) + network_s + self.overhead_s
        return StepCost(duration, compute_s, memory_s, network_s, self.overhead_s, flops, memory_bytes,
                        network_bytes)
