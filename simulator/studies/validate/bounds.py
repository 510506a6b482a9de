"""Speed of light: the best value physics allows a case's metric, whatever the software does.

Every bound uses nameplate numbers (efficiency 1) and the most generous reading of the row, so that a value
beyond it means something is wrong: in a prediction, a bug; in a measurement, a misdescribed case (speculative
decoding, a smaller precision, more chips than stated). Per chip: the fastest memory tier with a bandwidth
(`bw`, as if every byte lived there), the capacity of all tiers together, the peak of the compute dtype.

- A decode step reads every weight a token touches at least once (MoE: the k routed experts per layer; the
  embedding lookup is free) and the KV of every sequence's context (at least its prompt), spread perfectly
  over the replica's chips; one token's pass crosses the pipeline stages in turn, so it sees only one
  stage's chips' bandwidth at a time. Its FLOPs are 2 x active layer parameters (+ the lm_head).
- The batch is bounded by the memory left after the weights over the KV of one prompt's context (and by the
  users, for closed loops). Throughput <= replicas x batch / step time, and <= chips x peak over the FLOPs of
  a request's prompt and output tokens per output token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from simulator.config.cluster import ChipSpec
from simulator.config.fields import DType
from simulator.config.load import load_model_config
from simulator.hardware.model import DTYPE_BYTES, ModelShape, model_shape
from simulator.studies.validate.cases import Case


@dataclass(frozen=True)
class Physics:
    """Per-case constants of the bounds, whole model unless named per chip."""
    read_bytes: float     # weight bytes a step must read (touched by one token)
    weight_bytes: float   # all weights
    kv_per_token: float   # KV bytes of one context token, all layers, not replicated
    token_flops: float    # 2 x active layer parameters
    head_flops: float     # 2 x lm_head parameters (once per token that produces logits)
    pair_flops: float     # attention FLOPs of one (query, key) pair over all layers
    bw: float             # per chip
    capacity: float       # per chip
    peak: float | None    # per chip

    @classmethod
    def of(cls, case: Case, chip: ChipSpec, model: ModelShape, dtype: DType) -> Physics:
        wbytes = DTYPE_BYTES[case.weights_dtype]
        read = model.active_params - (0 if model.tied_embeddings else model.embedding_params)
        timed = [t.bandwidth for t in chip.memory if t.bandwidth]
        return cls(read * wbytes, model.weight_bytes(case.weights_dtype),
                   model.kv_bytes_per_token(case.kv_dtype), 2.0 * model.active_layer_params,
                   2.0 * model.lm_head_params,
                   float(model.attn_flops_per_pair_per_layer * model.n_layers), max(timed),
                   sum(t.capacity for t in chip.memory), chip.compute.peak.get(dtype))


def _step_s(p: Physics, batch: float, chips: int, context: int) -> float:
    """Least time of one decode step of `batch` sequences on `chips` chips."""
    memory = (p.read_bytes + batch * p.kv_per_token * context) / (chips * p.bw)
    compute = batch * (p.token_flops + p.head_flops) / (chips * p.peak) if p.peak else 0.0
    return max(memory, compute)


def _token_s(p: Physics, case: Case, users: float | None) -> float:
    """Least time per output token of one stream among `users` per replica (None: alone)."""
    chain = _step_s(p, 1, case.chips_per_replica // case.pp, case.input_tokens)
    return max(chain, _step_s(p, users or 1, case.chips_per_replica, case.input_tokens))


def _ttft_s(p: Physics, case: Case) -> float:
    n = case.input_tokens
    flops = p.token_flops * n + p.head_flops + p.pair_flops * n * (n + 1) / 2
    compute = flops / (case.chips_per_replica * p.peak) if p.peak else 0.0
    return max(compute, p.read_bytes / (case.chips_per_replica // case.pp * p.bw))


def _throughput(p: Physics, case: Case, users: float | None) -> float | None:
    chips, context = case.chips_per_replica, case.input_tokens
    room = chips * p.capacity - p.weight_bytes
    if room <= 0:
        return None  # the weights cannot fit at all: the memory bound is meaningless
    batch = max(1.0, math.floor(room / (p.kv_per_token * context)))
    if users:
        batch = min(batch, users)
    bound = case.replicas * batch / _step_s(p, batch, chips, context)
    if users:
        bound = min(bound, case.replicas * users / _token_s(p, case, None))
    if p.peak:
        per_output = (p.token_flops * (case.input_tokens + case.output_tokens)
                      + p.head_flops * case.output_tokens) / case.output_tokens
        bound = min(bound, case.num_chips * p.peak / per_output)
    return bound


def speed_of_light(case: Case, chip: ChipSpec, dtype: DType) -> float | None:
    """The bound on the case's metric (an upper bound, or a lower bound for latencies); None when the case
    gives physics nothing to hold on to (weights that fit nowhere)."""
    name, config = load_model_config(case.model, Path.cwd(), "validation")
    p = Physics.of(case, chip, model_shape(name, config), dtype)
    users = math.ceil(case.concurrency / case.replicas) if case.concurrency else None
    if case.metric in ("output_tokens_per_s", "requests_per_s"):
        bound = _throughput(p, case, users)
        return bound / case.output_tokens if bound and case.metric == "requests_per_s" else bound
    if case.metric == "output_tokens_per_s_per_user":
        return 1.0 / _token_s(p, case, users)
    if case.metric == "tpot_s":
        return _token_s(p, case, users)
    if case.metric == "ttft_s":
        return _ttft_s(p, case)
    if case.metric == "e2e_s":
        return _ttft_s(p, case) + (case.output_tokens - 1) * _token_s(p, case, users)
    return 1.0  # mfu


def beats(case: Case, value: float | None, bound: float | None) -> bool:
    """True when `value` is better than physics allows (a relative 1e-9 for rounding)."""
    if value is None or bound is None:
        return False
    return value < bound * (1 - 1e-9) if case.lower_is_better else value > bound * (1 + 1e-9)
