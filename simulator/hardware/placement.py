"""Lay a model onto chips: tensor-parallel shards, replicas, the memory tier that holds the weights, and the
KV-cache capacity left. Every check that fails says what does not fit, by how much, or what is allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.config.schema import ChipSpec, DeploymentSpec, MemoryTier, TopologySpec
from simulator.errors import CapacityError, ScenarioError
from simulator.hardware.model import ModelShape


@dataclass(frozen=True)
class Plan:
    """Where one deployment's bytes live, per chip and per replica."""
    tensor_parallel: int
    replicas: int
    chips_per_replica: int
    chips_total: int
    weights_dtype: str
    kv_dtype: str
    compute_dtype: str
    tier: str                       # memory tier that holds weights and KV-cache
    tier_bandwidth: float           # bytes/s
    usable_bytes_per_chip: float
    weight_bytes_per_chip: float
    kv_bytes_per_token_per_chip: float
    kv_capacity_bytes_per_chip: float
    kv_block_tokens: int
    kv_capacity_tokens: int         # per replica, whole blocks

    @property
    def kv_capacity_blocks(self) -> int:
        return self.kv_capacity_tokens // self.kv_block_tokens


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def kv_share_per_chip(model: ModelShape, tp: int) -> float:
    """Fraction of a token's KV bytes each TP rank stores: heads are split, but a head (or an MLA latent,
    which has no heads) is never split, so it is replicated once TP exceeds the KV heads."""
    if model.attention == "MLA":
        return 1.0
    return max(1, model.n_kv_heads // tp) / model.n_kv_heads


def plan_deployment(model: ModelShape, chip: ChipSpec, cluster: TopologySpec,
                    deployment: DeploymentSpec) -> Plan:
    tp = deployment.tensor_parallel
    if model.n_heads % tp:
        allowed = ", ".join(str(d) for d in _divisors(model.n_heads) if d <= cluster.chips_per_node)
        raise ScenarioError("deployment.tensor_parallel",
                            f"{tp} does not divide the {model.n_heads} attention heads of {model.name}; "
                            f"allowed: {allowed}")
    if model.n_kv_heads % tp and tp % model.n_kv_heads and model.attention != "MLA":
        raise ScenarioError("deployment.tensor_parallel",
                            f"{tp} neither divides nor is a multiple of the {model.n_kv_heads} KV heads "
                            f"of {model.name}")
    if tp > cluster.chips_per_node:
        raise ScenarioError("deployment.tensor_parallel",
                            f"{tp} exceeds the {cluster.chips_per_node} chips of one {cluster.name} node; "
                            "tensor parallelism stays inside a node")
    chips_total = cluster.nodes * cluster.chips_per_node
    if tp * deployment.replicas > chips_total:
        raise ScenarioError("deployment.replicas",
                            f"{deployment.replicas} replicas x TP {tp} need {tp * deployment.replicas} chips, "
                            f"{cluster.name} has {chips_total}")
    compute_dtype = deployment.compute_dtype or deployment.weights_dtype
    if compute_dtype not in chip.compute.peak:
        raise ScenarioError("deployment.compute_dtype",
                            f"{chip.id} has no {compute_dtype} peak; allowed: {', '.join(chip.compute.peak)}")
    kv_dtype = deployment.kv_dtype or deployment.weights_dtype
    weight_bytes_per_chip = model.weight_bytes(deployment.weights_dtype) / tp
    tier = _first_tier_that_holds(chip, weight_bytes_per_chip, deployment.memory_utilization, tp, model,
                                  deployment.weights_dtype)
    usable = tier.capacity * deployment.memory_utilization
    kv_per_token = model.kv_bytes_per_token(kv_dtype) * kv_share_per_chip(model, tp)
    kv_bytes = usable - weight_bytes_per_chip
    blocks = int(kv_bytes // (kv_per_token * deployment.kv_block_tokens))
    return Plan(
        tensor_parallel=tp, replicas=deployment.replicas, chips_per_replica=tp,
        chips_total=tp * deployment.replicas, weights_dtype=deployment.weights_dtype, kv_dtype=kv_dtype,
        compute_dtype=compute_dtype, tier=tier.tier, tier_bandwidth=float(tier.bandwidth or 0.0),
        usable_bytes_per_chip=usable, weight_bytes_per_chip=weight_bytes_per_chip,
        kv_bytes_per_token_per_chip=kv_per_token, kv_capacity_bytes_per_chip=kv_bytes,
        kv_block_tokens=deployment.kv_block_tokens, kv_capacity_tokens=blocks * deployment.kv_block_tokens,
    )


def _first_tier_that_holds(chip: ChipSpec, weight_bytes: float, utilization: float, tp: int,
                           model: ModelShape, dtype: str) -> MemoryTier:
    """The fastest tier with a known bandwidth that holds this chip's share of the weights."""
    timed = [t for t in chip.memory if t.bandwidth is not None]
    for tier in timed:
        if weight_bytes < tier.capacity * utilization:
            return tier
    largest = max(timed, key=lambda t: t.capacity)
    available = largest.capacity * utilization
    chips_needed = math.ceil(model.weight_bytes(dtype) / available)
    raise CapacityError(
        f"{model.name} weights at {dtype} split over TP {tp}", weight_bytes, available,
        f"per chip: {largest.tier} {largest.capacity / 1e9:.1f} GB x memory_utilization {utilization}; "
        f"the weights alone need at least {chips_needed} {chip.id} chips")
