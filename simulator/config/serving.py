"""The `serving:` section: each replica's batcher, the router across replicas, prefix caching, speculative
decoding and the default SLO. Each policy family is a union discriminated on `kind:`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from simulator.config.fields import Bytes, Frozen, Seconds
from simulator.config.workload import SloSpec


class ContinuousBatcher(Frozen):
    """Iteration-level batching (Orca/vLLM): requests join and leave between iterations.

    With `chunked_prefill`, long prompts are split to fill the token budget left by decodes (Sarathi);
    without it a prompt is prefilled whole and must fit the budget. `kv_policy` and `preemption`: see
    serving/batcher.py; swapping needs host links in the topology (`host:`).
    """
    kind: Literal["continuous"] = "continuous"
    max_batch_size: int = Field(default=256, ge=1)
    max_batched_tokens: int = Field(default=8192, ge=1)
    chunked_prefill: bool = True
    kv_policy: Literal["reserve", "paged"] = "reserve"  # reserve all output blocks up front, or grow (vLLM)
    preemption: Literal["recompute", "swap"] = "recompute"  # paged only: what a preempted request does
    priority: Literal["decode_first", "prefill_first"] | None = None  # None: decode first iff chunked

    @model_validator(mode="after")
    def _budget_holds_batch(self) -> ContinuousBatcher:
        if self.max_batched_tokens < self.max_batch_size:
            raise ValueError(f"max_batched_tokens ({self.max_batched_tokens}) must be >= max_batch_size "
                             f"({self.max_batch_size}): every running request decodes one token per iteration")
        return self


class StaticBatcher(Frozen):
    """Request-level (static) batching, as FasterTransformer served: a batch is admitted only when the
    replica is empty, prefilled at once, and decoded until its last request finishes; requests that arrive
    meanwhile wait for the whole batch. It starts when `max_batch_size` requests wait or the oldest has
    waited `max_wait`."""
    kind: Literal["static"]
    max_batch_size: int = Field(default=32, ge=1)
    max_wait: Seconds = 0.0
    # fixed for static batching (same names as the continuous batcher's, so the scheduler reads one shape)
    max_batched_tokens: Literal[2147483648] = 2147483648  # 2**31, spelled out: a Literal takes no expression
    chunked_prefill: Literal[False] = False
    kv_policy: Literal["reserve"] = "reserve"
    preemption: Literal["recompute"] = "recompute"
    priority: Literal["prefill_first"] = "prefill_first"


Batcher = Annotated[ContinuousBatcher | StaticBatcher, Field(discriminator="kind")]


class RoundRobin(Frozen):
    """Replica i gets requests i, i + n, i + 2n, ... (serving/router.py describes every router)."""
    kind: Literal["round_robin"] = "round_robin"


class LeastOutstandingTokens(Frozen):
    """The replica with the fewest prompt + output tokens of requests routed to it and not yet finished."""
    kind: Literal["least_outstanding_tokens"]


class ShortestQueue(Frozen):
    """The replica with the fewest requests waiting or running."""
    kind: Literal["shortest_queue"]


class Affinity(Frozen):
    """A session (closed-loop user) or a prefix (its first `prefix_blocks` hashes) sticks to one replica,
    unless that replica's queue exceeds the shortest by more than `max_queue_gap` requests and more than
    `max_queue_ratio` times; then, and without a key, least outstanding tokens."""
    kind: Literal["affinity"]
    prefix_blocks: int = Field(default=2, ge=1)
    max_queue_gap: int = Field(default=64, ge=0)
    max_queue_ratio: float = Field(default=1.5, ge=1)


RouterSpec = Annotated[RoundRobin | LeastOutstandingTokens | ShortestQueue | Affinity,
                       Field(discriminator="kind")]


class SpeculativeSpec(Frozen):
    """Speculative decoding: each decode step drafts `tokens` tokens and verifies them in one pass of the
    target model; each draft token is accepted with probability `acceptance` until the first rejection,
    and the verification adds one token of its own. `draft_model`: a catalog model or config.json that
    drafts, on the same chips; without one, multi-token-prediction heads draft at the cost of one target
    layer per token (DeepSeek-V3's MTP module), for models whose config.json has them
    (`num_nextn_predict_layers`)."""
    tokens: int = Field(ge=1, le=16)
    acceptance: float = Field(ge=0, lt=1)
    draft_model: str | None = None


class KvOffloadSpec(Frozen):
    """A KV-cache tier below HBM, per replica (serving/kv_offload.py): host DRAM behind each chip's PCIe link
    (the topology's `host:` block times every copy). `capacity` bounds swapped sequences and offloaded prefix
    blocks together; `prefixes`: prefix-cache blocks evicted from HBM are kept there and read back on reuse
    instead of recomputed (LMCache's CPU offload), needs `prefix_caching`. Only host DRAM: the shared catalog
    has no CXL or SSD link to time another tier on."""
    tier: Literal["host_dram"] = "host_dram"
    capacity: Bytes
    prefixes: bool = True
    source: str = ""


class ServingSpec(Frozen):
    """How replicas serve: the batcher of each, the router across them, and a default SLO for requests
    whose class (or workload) sets none."""
    batcher: Batcher = ContinuousBatcher()
    router: RouterSpec = RoundRobin()
    slo: SloSpec | None = None
    # reuse cached prefix blocks (serving/kv_cache.py: PrefixCache); needs a workload whose requests share
    # blocks (Mooncake hash_ids, workload.shared_prefix), else the run warns
    prefix_caching: bool = False
    speculative: SpeculativeSpec | None = None
    # the serving engine whose host-side costs apply (catalog/engines/<id>.yaml); vLLM when not said
    engine: Literal["vllm", "sglang", "trtllm", "jetstream"] = "vllm"
    kv_offload: KvOffloadSpec | None = None  # a host-DRAM KV tier: bounded swap, evicted prefixes kept

    @model_validator(mode="after")
    def _offload_has_prefixes(self) -> ServingSpec:
        if self.kv_offload is not None and self.kv_offload.prefixes and not self.prefix_caching:
            raise ValueError("kv_offload.prefixes: true needs prefix_caching: true (it keeps the prefix cache's "
                             "evicted blocks); allowed: prefixes: false (the tier then bounds swap only)")
        return self
