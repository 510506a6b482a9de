"""Lay a model onto chips: tensor-parallel shards, pipeline stages, expert shards, replicas, the memory tier
that holds the weights, and the KV-cache capacity left. Every check that fails says what does not fit, by
how much, or what is allowed.

Chips are numbered node-major (see topology.py). A replica takes tp x pp chips: stage s is the TP group
chips[s*tp:(s+1)*tp]. `packed` placement gives replica r the chips at positions r*n .. r*n+n-1 (TP groups stay
inside a node when they fit); `strided` interleaves replicas (r, r+R, r+2R, ...), which spreads them over
nodes. Positions are chip indices, except on a torus, where they follow each node's slice order
(topology.slice_order): a packed TP group of 2, 4, 8, ... chips is then a TPU-slice-shaped sub-block (2x2x2
on a v5p cube, 2x4 on a v5e pod), not a strip of the row-major numbering (1x2x4, 1x8), as TPU slices are
allocated and as the torus all-reduce (collectives.torus_allreduce) needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from simulator.config.cluster import ChipSpec, MemoryTier, TopologySpec
from simulator.config.deployment import DeploymentSpec
from simulator.config.fields import DType
from simulator.errors import CapacityError, ScenarioError
from simulator.hardware.model import DTYPE_BYTES, ModelShape
from simulator.hardware.topology import slice_order


@dataclass(frozen=True)
class Plan:
    """Where one deployment's bytes live, per chip and per replica."""
    tensor_parallel: int
    pipeline_parallel: int
    expert_parallel: int
    micro_batches: int
    layers_per_stage: tuple[int, ...]
    replica_chips: tuple[tuple[int, ...], ...]  # global chip indices of each replica, stage-major
    replicas: int
    chips_per_replica: int
    chips_total: int
    weights_dtype: DType
    kv_dtype: DType
    compute_dtype: DType
    tier: str                       # memory tier that holds the KV-cache (and the weights unless streamed)
    tier_bandwidth: float           # bytes/s
    stream_tier: str | None         # with weight streaming: the larger, slower tier the weights are read from
    stream_bandwidth: float         # bytes/s of that tier (0 without streaming)
    usable_bytes_per_chip: float
    weight_bytes_per_chip: float     # the fullest stage's chips
    kv_bytes_per_token_per_chip: float  # all layers' KV on one TP rank (a stage holds its layers' share)
    kv_capacity_bytes_per_chip: float
    kv_block_tokens: int
    kv_capacity_tokens: int         # per replica, whole blocks
    lm_head_shares: tuple[float, ...] = ()  # share of the lm_head's vocabulary per stage; (): all on the last
    resident_weight_fraction: float = 1.0  # with weight streaming: the share of the weights the fast tier holds
    pipeline_schedule: str = "in_flight"  # micro-batches stay in the pipeline (in_flight) or it drains (flush)
    data_parallel: int = 1          # attention data-parallel ranks per stage (each tensor_parallel chips)

    @property
    def stage_width(self) -> int:
        """Chips per pipeline stage: data_parallel x tensor_parallel."""
        return self.tensor_parallel * self.data_parallel

    @property
    def expert_tp(self) -> int:
        """Chips each routed expert is split over: tensor_parallel without expert parallelism, else the
        stage's chips per expert-parallel rank."""
        return self.stage_width // self.expert_parallel if self.expert_parallel > 1 else self.tensor_parallel

    @property
    def kv_capacity_blocks(self) -> int:
        return self.kv_capacity_tokens // self.kv_block_tokens

    def stage_chips(self, replica: int, stage: int) -> tuple[int, ...]:
        width = self.stage_width
        return self.replica_chips[replica][stage * width:(stage + 1) * width]


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def kv_share_per_chip(model: ModelShape, tp: int) -> float:
    """Fraction of a token's KV bytes each TP rank stores: heads are split, but a head (or an MLA latent,
    which has no heads) is never split, so it is replicated once TP exceeds the KV heads."""
    if model.attention == "MLA":
        return 1.0
    return max(1, model.n_kv_heads // tp) / model.n_kv_heads


def split_stages(sizes: list[float], stages: int) -> list[list[int]]:
    """Cut a sequence of item sizes into `stages` contiguous, non-empty runs with the largest run as small
    as it can be: bisection on the run capacity, greedy filling for each guess."""

    def greedy(capacity: float) -> list[list[int]]:
        runs: list[list[int]] = [[]]
        load = 0.0
        for i, size in enumerate(sizes):
            if runs[-1] and load + size > capacity:
                runs.append([])
                load = 0.0
            runs[-1].append(i)
            load += size
        return runs

    lo, hi = max(sizes), sum(sizes)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if len(greedy(mid)) <= stages else (mid, hi)
    runs = greedy(hi)
    while len(runs) < stages:  # fewer runs than stages: split the longest run
        longest = max(range(len(runs)), key=lambda r: (len(runs[r]), -r))
        run = runs[longest]
        runs[longest:longest + 1] = [run[: len(run) // 2], run[len(run) // 2:]]
    return runs


VOCAB_SLICES = 64  # the finest cut of the embedding table or the lm_head when they are split by vocabulary
# with weight streaming, the share of the fast tier kept for the KV-cache; the weights take the rest
KV_SHARE_WHEN_STREAMING = 0.25


@dataclass(frozen=True)
class StageLayout:
    layers: tuple[int, ...]          # transformer layers per stage
    fullest_bytes: float             # weight bytes of the fullest stage (all its TP ranks)
    head_shares: tuple[float, ...]   # share of the lm_head (its vocabulary rows) each stage computes
    stage_bytes: tuple[float, ...]   # weight bytes each stage holds (all its TP ranks)


def stage_layout(model: ModelShape, stages: int, wbytes: float, slice_vocab: bool = False) -> StageLayout:
    """How the layers, the embedding and the lm_head fall on `stages` stages, balanced by bytes: contiguous
    runs, the largest as small as it can be. The embedding opens the first stage and the lm_head closes the
    last, so on small-memory chips they get stages of their own. With `slice_vocab` each of them is cut by
    vocabulary into VOCAB_SLICES equal row ranges that neighbouring stages may share out: a stage then
    holds (embedding: looks up) or multiplies (lm_head: the logits of its rows) a slice of the vocabulary,
    as vocabulary-parallel embeddings do (Megatron-LM VocabParallelEmbedding), but over pipeline stages."""
    per_layer: float = (model.total_params - model.embedding_params
                        - (0 if model.tied_embeddings else model.lm_head_params))
    per_layer /= model.n_layers
    edges = [float(model.embedding_params), float(0 if model.tied_embeddings else model.lm_head_params)]
    if stages == 1:
        held = model.total_params * wbytes
        return StageLayout((model.n_layers,), held, (1.0,), (held,))
    cuts = VOCAB_SLICES if slice_vocab else 1
    head = [edges[1] / cuts] * cuts if edges[1] else [per_layer * 1e-9]
    sizes = [edges[0] / cuts] * cuts + [per_layer] * model.n_layers + head
    first_head = cuts + model.n_layers
    runs = split_stages(sizes, stages)
    layers = tuple(sum(1 for i in run if cuts <= i < first_head) for run in runs)
    shares = tuple(sum(1 for i in run if i >= first_head) / len(head) for run in runs)
    held_per_stage = [sum(sizes[i] for i in run) for run in runs]
    return StageLayout(layers, max(held_per_stage) * wbytes, shares, tuple(b * wbytes for b in held_per_stage))


def max_stages(model: ModelShape) -> int:
    """Pipeline stages a model can fill: its layers, and its embedding and lm_head cut by vocabulary."""
    return model.n_layers + VOCAB_SLICES + (1 if model.tied_embeddings else VOCAB_SLICES)


def two_d_shardable(model: ModelShape, tp: int) -> bool:
    """Can `tp` chips each hold 1/tp of every weight? Heads split over gcd(tp, heads) chips; when that is fewer
    than tp, each head's projections are cut along the model width over the other tp / gcd chips: the 2D
    weight-stationary layout of Pope et al. (MLSys 2023, sec. 3.2), which runs PaLM's 48 heads on 64 TPU v4.
    Bytes and FLOPs per chip are 1/tp either way; the all-reduces the engine times stand for its
    reduce-scatters and all-gathers, which move no more data at decode sizes."""
    if model.n_heads % tp == 0:
        return True
    rest = tp // math.gcd(tp, model.n_heads)
    return rest < tp and model.d_model % rest == 0


def _check_parallelism(model: ModelShape, cluster: TopologySpec, d: DeploymentSpec) -> None:
    tp, pp, ep, dp = d.tensor_parallel, d.pipeline_parallel, d.expert_parallel, d.data_parallel_attention
    if not two_d_shardable(model, tp):
        allowed = ", ".join(str(x) for x in range(1, cluster.chips_per_node + 1) if two_d_shardable(model, x))
        raise ScenarioError("deployment.tensor_parallel",
                            f"{tp} does not divide the {model.n_heads} attention heads of {model.name}; "
                            f"allowed: {allowed}")
    if model.n_kv_heads % tp and tp % model.n_kv_heads and model.attention != "MLA":
        raise ScenarioError("deployment.tensor_parallel",
                            f"{tp} neither divides nor is a multiple of the {model.n_kv_heads} KV heads "
                            f"of {model.name}")
    if pp > max_stages(model):
        raise ScenarioError("deployment.pipeline_parallel",
                            f"{pp} stages for the {model.n_layers} layers of {model.name} (plus embedding and "
                            f"lm_head, in up to {VOCAB_SLICES} vocabulary slices each); at most "
                            f"{max_stages(model)}")
    if dp > 1 and (not model.is_moe or ep != dp * tp):
        why = "it has no experts" if not model.is_moe else (
            f"needs expert_parallel = data_parallel_attention x tensor_parallel ({dp * tp}), got {ep}")
        raise ScenarioError("deployment.data_parallel_attention", f"{dp} for {model.name}: {why}")
    if ep > 1 and (not model.is_moe or (dp == 1 and tp % ep) or model.n_experts % ep):
        divisors = [x for x in _divisors(tp) if model.n_experts % x == 0] if model.is_moe else []
        why = "it has no experts" if not model.is_moe else (
            f"does not divide the {model.n_experts} experts" if dp > 1 else
            f"allowed: {', '.join(map(str, divisors))} (divisors of tensor_parallel {tp} that divide the "
            f"{model.n_experts} experts), or data_parallel_attention x tensor_parallel with attention data "
            "parallelism")
        raise ScenarioError("deployment.expert_parallel", f"{ep} for {model.name}: {why}")
    routing = d.expert_routing
    if ep == 1 and (routing.skew or routing.balance != "none" or routing.loads):
        raise ScenarioError("deployment.expert_routing", "skew, loads and balance shape the load of "
                            "expert-parallel ranks; they need expert_parallel > 1")
    if routing.redundant_experts % ep:
        raise ScenarioError("deployment.expert_routing.redundant_experts",
                            f"{routing.redundant_experts} copies do not fill the {ep} expert-parallel ranks "
                            f"evenly; allowed: a multiple of {ep}")
    chips_total = cluster.nodes * cluster.chips_per_node
    needed = tp * dp * pp * d.replicas
    if needed > chips_total:
        attention = f"TP {tp}" if dp == 1 else f"DP {dp} x TP {tp}"
        raise ScenarioError("deployment.replicas",
                            f"{d.replicas} replicas x {attention} x PP {pp} need {needed} chips, "
                            f"{cluster.name} has {chips_total}")


def chip_order(cluster: TopologySpec) -> list[int] | None:
    """Chip index at each placement position: node-major, each torus node in slice order; None: identity."""
    up = cluster.scaleup
    if up is None or up.kind != "torus" or cluster.chips_per_node == 1:
        return None
    n = cluster.chips_per_node
    assert up.dims is not None  # a torus has its dims (TopologySpec checks them)
    local = slice_order(tuple(up.dims))
    return [k * n + j for k in range(cluster.nodes) for j in local]


def _assign_chips(n_replicas: int, per_replica: int, placement: str, offset: int = 0,
                  order: list[int] | None = None) -> tuple[tuple[int, ...], ...]:
    positions: list[Sequence[int]]
    if placement == "packed":
        positions = [range(offset + r * per_replica, offset + (r + 1) * per_replica) for r in range(n_replicas)]
    else:
        positions = [[offset + r + i * n_replicas for i in range(per_replica)] for r in range(n_replicas)]
    return tuple(tuple(order[p] if order else p for p in run) for run in positions)


def plan_pools(model: ModelShape, chip: ChipSpec, cluster: TopologySpec,
               deployment: DeploymentSpec) -> list[tuple[str, Plan]]:
    """[("colocated", plan)], or [("prefill", plan), ("decode", plan)] with the decode pool's chips after the
    prefill pool's."""
    d = deployment.disaggregated
    if d is None:
        return [("colocated", plan_deployment(model, chip, cluster, deployment))]
    pools, offset = [], 0
    for role, pool in (("prefill", d.prefill), ("decode", d.decode)):
        spec = deployment.model_copy(update={"tensor_parallel": pool.tensor_parallel, "replicas": pool.replicas,
                                             "pipeline_parallel": pool.pipeline_parallel, "disaggregated": None})
        try:
            plan = plan_deployment(model, chip, cluster, spec, chip_offset=offset)
        except ScenarioError as exc:  # name the pool's own field
            field = exc.field.replace("deployment.", f"deployment.disaggregated.{role}.")
            raise ScenarioError(field, exc.problem) from None
        pools.append((role, plan))
        offset += plan.chips_total
    total = cluster.nodes * cluster.chips_per_node
    if offset > total:
        raise ScenarioError("deployment.disaggregated", f"the prefill and decode pools need {offset} chips, "
                            f"{cluster.name} has {total}")
    return pools


def plan_deployment(model: ModelShape, chip: ChipSpec, cluster: TopologySpec,
                    deployment: DeploymentSpec, chip_offset: int = 0) -> Plan:
    _check_parallelism(model, cluster, deployment)
    tp, pp, dp = deployment.tensor_parallel, deployment.pipeline_parallel, deployment.data_parallel_attention
    compute_dtype = deployment.compute_dtype or deployment.weights_dtype
    if compute_dtype not in chip.compute.peak:
        allowed = ", ".join(chip.compute.peak) or "none (the catalog has no peak for this chip)"
        raise ScenarioError("deployment.compute_dtype", f"{chip.id} has no {compute_dtype} peak; allowed: {allowed}")
    kv_dtype = deployment.kv_dtype or deployment.weights_dtype
    layout = layout_for(model, chip, deployment)
    layers = layout.layers
    weight_bytes_per_chip = (layout.fullest_bytes / tp if dp == 1 else
                             _dp_weight_bytes(model, layout, tp, dp, DTYPE_BYTES[deployment.weights_dtype]))
    redundant = deployment.expert_routing.redundant_experts
    if redundant:  # each rank holds redundant / ep more expert copies of each of the stage's MoE layers
        weight_bytes_per_chip += (model.n_moe_layers * max(layers) / model.n_layers * redundant
                                  * model.expert_params * DTYPE_BYTES[deployment.weights_dtype] / (tp * dp))
    tier, stream = _tiers(chip, weight_bytes_per_chip, deployment, tp * dp * pp, model)
    usable = tier.capacity * deployment.memory_utilization
    kv_per_token = model.kv_bytes_per_token(kv_dtype) * kv_share_per_chip(model, tp)
    # weights that do not fit stream from the slower tier; the fast tier holds what it can of them beside
    # the KV-cache's share (SambaNova's SN40L: HBM, then DDR)
    resident = min(weight_bytes_per_chip, usable * (1.0 - KV_SHARE_WHEN_STREAMING)) if stream else \
        weight_bytes_per_chip
    kv_bytes = usable - resident
    stage_kv_per_token = kv_per_token * max(layers) / model.n_layers
    blocks = int(kv_bytes // (stage_kv_per_token * deployment.kv_block_tokens))
    micro = deployment.micro_batches or pp
    return Plan(
        tensor_parallel=tp, pipeline_parallel=pp, expert_parallel=deployment.expert_parallel,
        micro_batches=micro if pp > 1 else 1, layers_per_stage=layers,
        pipeline_schedule=deployment.pipeline_schedule,
        replica_chips=_assign_chips(deployment.replicas, tp * dp * pp, deployment.placement, chip_offset,
                                    chip_order(cluster)),
        replicas=deployment.replicas, chips_per_replica=tp * dp * pp,
        chips_total=tp * dp * pp * deployment.replicas, weights_dtype=deployment.weights_dtype, kv_dtype=kv_dtype,
        compute_dtype=compute_dtype, tier=tier.tier, tier_bandwidth=float(tier.bandwidth or 0.0),
        stream_tier=stream.tier if stream else None,
        stream_bandwidth=float(stream.bandwidth or 0.0) if stream else 0.0,
        usable_bytes_per_chip=usable, weight_bytes_per_chip=weight_bytes_per_chip,
        kv_bytes_per_token_per_chip=kv_per_token, kv_capacity_bytes_per_chip=kv_bytes,
        kv_block_tokens=deployment.kv_block_tokens,
        kv_capacity_tokens=blocks * deployment.kv_block_tokens * dp,  # each attention DP rank its own KV-cache
        lm_head_shares=layout.head_shares, data_parallel=dp,
        resident_weight_fraction=resident / weight_bytes_per_chip if weight_bytes_per_chip else 1.0,
    )


def _dp_weight_bytes(model: ModelShape, layout: StageLayout, tp: int, dp: int, wbytes: float) -> float:
    """Weight bytes per chip of the fullest stage with attention data parallelism: everything but the routed
    experts on every DP rank (split over its tp chips), the routed experts once over all dp x tp chips."""
    fullest = max(range(len(layout.stage_bytes)), key=lambda s: layout.stage_bytes[s])
    held = layout.stage_bytes[fullest]
    routed = (model.n_moe_layers * model.n_experts * model.expert_params * wbytes
              * layout.layers[fullest] / model.n_layers)
    return (held - routed) / tp + routed / (tp * dp)


def layout_for(model: ModelShape, chip: ChipSpec, d: DeploymentSpec) -> StageLayout:
    """The embedding and the lm_head stay whole, one stage each at most, when the fullest stage then fits
    the fastest memory tier; otherwise (an 8-chip stage of 230 MB LPUs cannot hold the 2.1 GB 16-bit
    embedding of a 128k vocabulary) they are cut by vocabulary over neighbouring stages, when that makes
    the fullest stage smaller. More stages than layers + 2 always cut them."""
    pp, wbytes = d.pipeline_parallel, DTYPE_BYTES[d.weights_dtype]
    if pp > model.n_layers + 2:
        return stage_layout(model, pp, wbytes, slice_vocab=True)
    whole = stage_layout(model, pp, wbytes)
    fastest = next((t for t in chip.memory if t.bandwidth is not None), None)
    fits = fastest is not None and whole.fullest_bytes / d.tensor_parallel < fastest.capacity * d.memory_utilization
    if pp == 1 or fastest is None or fits:
        return whole
    sliced = stage_layout(model, pp, wbytes, slice_vocab=True)
    return sliced if sliced.fullest_bytes < whole.fullest_bytes else whole


def _tiers(chip: ChipSpec, weight_bytes: float, d: DeploymentSpec, chips: int,
           model: ModelShape) -> tuple[MemoryTier, MemoryTier | None]:
    """(tier for the KV-cache and resident weights, tier the weights stream from or None). Weights go to the
    fastest tier with a known bandwidth that holds them; with weight streaming allowed, weights too big for
    the fastest tier stay in a slower one and are read from it every iteration, the KV-cache in the fastest."""
    timed = [t for t in chip.memory if t.bandwidth is not None]
    holds = [t for t in timed if weight_bytes < t.capacity * d.memory_utilization]
    if holds and (holds[0] is timed[0] or not d.weight_streaming):
        return holds[0], None
    if holds and d.weight_streaming:
        return timed[0], holds[0]
    raise _does_not_fit(chip, timed, weight_bytes, d.memory_utilization, chips, model, d.weights_dtype)


def _does_not_fit(chip: ChipSpec, timed: list[MemoryTier], weight_bytes: float, utilization: float, chips: int,
                  model: ModelShape, dtype: str) -> CapacityError:
    largest = max(timed, key=lambda t: t.capacity)
    available = largest.capacity * utilization
    chips_needed = math.ceil(model.weight_bytes(dtype) / available)
    return CapacityError(
        f"{model.name} weights at {dtype} split over {chips} chip{'s' if chips > 1 else ''}", weight_bytes,
        available,
        f"per chip: {largest.tier} {largest.capacity / 1e9:.4g} GB x memory_utilization {utilization}; "
        f"the weights alone need at least {chips_needed} {chip.id} chips")
