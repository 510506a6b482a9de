"""How hard each memory tier worked: the bytes the chips read from it and the share of its achievable
bandwidth (nameplate x the chip's efficiency.memory) they used, over the run and per time bucket
(`memory.parquet`, beside `links.parquet`).

A plan reads from one tier (HBM, or SRAM on an SRAM chip: the iterations' `memory_bytes_per_chip`) and, with
weight streaming, also from a larger, slower one (DDR on an SN40L: `stream_bytes_per_chip`). Each
iteration's bytes are spread evenly over its duration, as the link histogram spreads a flow's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from simulator.hardware.placement import Plan

MEMORY_NAME = "memory.parquet"
MAX_BUCKETS = 400
COLUMNS = {"tier": "str", "role": "str", "bandwidth_bytes_per_s": "f8", "achievable_bytes_per_s": "f8",
           "bucket_start_s": "f8", "bucket_s": "f8", "bytes": "f8", "utilization": "f8"}


@dataclass(frozen=True)
class Tier:
    """One tier a plan reads: its name, role (resident: KV and the weights it holds; streamed: the weights
    read from the slower tier each pass), nameplate and achievable bandwidth, and its iteration column."""
    name: str
    role: str
    bandwidth: float
    achievable: float
    column: str


def plan_tiers(plan: Plan, memory_efficiency: float) -> list[Tier]:
    tiers = [Tier(plan.tier, "resident", plan.tier_bandwidth, plan.tier_bandwidth * memory_efficiency,
                  "memory_bytes_per_chip")]
    if plan.stream_tier is not None:
        tiers.append(Tier(plan.stream_tier, "streamed", plan.stream_bandwidth,
                          plan.stream_bandwidth * memory_efficiency, "stream_bytes_per_chip"))
    return tiers


def run_use(it: Any, tiers: list[Tier], chips: int, span_s: float) -> dict[str, dict[str, Any]]:
    """Per tier over the run: role, nameplate bandwidth, bytes moved by all chips, and utilisation (those bytes
    over what the chips could achieve over the span)."""
    out = {}
    for tier in tiers:
        moved = float((np.asarray(it[tier.column], dtype=np.float64) * np.asarray(it["chips"])).sum())
        can = tier.achievable * span_s * chips
        out[tier.name] = {"role": tier.role, "bandwidth_bytes_per_s": tier.bandwidth, "bytes": moved,
                          "utilization": moved / can if can > 0 else None}
    return out


def spread(start: np.ndarray, duration: np.ndarray, amount: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per bucket between `edges`, the part of each amount that falls in it when spread evenly over
    [start, start + duration] (an instant's amount lands in the bucket of its start): the integral of the
    summed rate at each edge, F(t) = sum r (t - s)+ - r (t - e)+, differenced."""
    end = start + duration
    timed = duration > 0
    rate = np.where(timed, amount / np.where(timed, duration, 1.0), 0.0)

    def integral(at: np.ndarray, points: np.ndarray) -> np.ndarray:
        order = np.argsort(points, kind="stable")
        p, r = points[order], rate[order]
        r_sum, rp_sum = np.concatenate([[0.0], np.cumsum(r)]), np.concatenate([[0.0], np.cumsum(r * p)])
        k = np.searchsorted(p, at, side="left")
        return at * r_sum[k] - rp_sum[k]

    filled = np.diff(integral(edges, start) - integral(edges, end))
    if not timed.all():
        which = np.clip(np.searchsorted(edges, start[~timed], side="right") - 1, 0, len(edges) - 2)
        filled += np.bincount(which, weights=amount[~timed], minlength=len(edges) - 1)
    return filled


def series(it: Any, tiers: list[Tier], chips: int, span_s: float) -> pd.DataFrame:
    """memory.parquet: per tier and time bucket, bytes moved by all chips and utilisation of the achievable
    bandwidth of every chip."""
    if len(it) == 0 or span_s <= 0:
        return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in COLUMNS.items()})
    buckets = int(min(MAX_BUCKETS, max(20, len(it) // 20)))
    edges = np.linspace(0.0, span_s, buckets + 1)
    width = np.diff(edges)
    start = np.asarray(it["start_s"], dtype=np.float64)
    duration = np.asarray(it["duration_s"], dtype=np.float64)
    per_chip = np.asarray(it["chips"], dtype=np.float64)
    frames = []
    for tier in tiers:
        moved = spread(start, duration, np.asarray(it[tier.column], dtype=np.float64) * per_chip, edges)
        can = tier.achievable * width * chips
        frames.append(pd.DataFrame({
            "tier": tier.name, "role": tier.role, "bandwidth_bytes_per_s": tier.bandwidth,
            "achievable_bytes_per_s": tier.achievable, "bucket_start_s": edges[:-1], "bucket_s": width,
            "bytes": moved, "utilization": np.divide(moved, can, out=np.zeros_like(moved), where=can > 0)}))
    return pd.concat(frames, ignore_index=True)
