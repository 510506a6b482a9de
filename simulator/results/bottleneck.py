"""Which resource bounds decode and which bounds prefill, named (`summary.json: bottleneck`), and said in
plain words for the console and the reports.

A phase is the iterations that do it: prefill, those with prompt tokens (chunked prefill mixes decodes in);
decode, those with decode tokens only. Its bound is the largest share of its busy time (roofline compute or
memory, waiting for the network, fixed overheads, pipeline bubbles). Memory time is split over the tiers by
the time each one's bytes take at its achievable bandwidth, so weights streamed from DDR are named as DDR,
not as an HBM at 0.2% of its bandwidth. Waiting for the network is bandwidth-bound when the busiest link
carried bytes for at least half of that waiting, else latency-bound: many small messages whose hop latency
and synchronisation, not bytes, cost the time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from simulator.results.memory_tiers import Tier

PARTS = {"compute": "compute_bound_s", "memory": "memory_bound_s", "network": "network_s",
         "overhead": "overhead_s", "bubble": "bubble_s"}
BANDWIDTH_BOUND = 0.5  # share of the network wait in which the busiest link carries bytes


def analyse(it: Any, link_use: dict[str, float], tiers: list[Tier], achievable_flops: float, span_s: float
            ) -> dict[str, Any]:
    """{"decode": phase or None, "prefill": phase or None, "network": links' story or None}."""
    prefill = np.asarray(it["prefill_tokens"]) > 0
    decode = ~prefill & (np.asarray(it["decode_tokens"]) > 0)
    network = _network(it, link_use, span_s)
    return {"decode": _phase(it, decode, tiers, achievable_flops, network),
            "prefill": _phase(it, prefill, tiers, achievable_flops, network),
            "network": network}


def _phase(it: Any, mask: np.ndarray, tiers: list[Tier], achievable_flops: float,
           network: dict[str, Any] | None) -> dict[str, Any] | None:
    if not mask.any():
        return None
    busy = float(np.asarray(it["duration_s"])[mask].sum())
    if busy <= 0:
        return None
    shares = {name: float(np.asarray(it[column])[mask].sum()) / busy for name, column in PARTS.items()}
    top = max(shares, key=shares.__getitem__)
    out: dict[str, Any] = {"bound_by": top, "share": shares[top], "iterations": int(mask.sum()), "busy_s": busy,
                           "shares": shares}
    flops = float(np.asarray(it["flops_per_chip"])[mask].sum())
    out["compute_utilization"] = flops / (achievable_flops * busy) if achievable_flops > 0 else None
    used = {t.name: float(np.asarray(it[t.column])[mask].sum()) for t in tiers}
    out["memory_tiers"] = {t.name: {"role": t.role, "utilization": used[t.name] / (t.achievable * busy)
                                    if t.achievable > 0 else None} for t in tiers}
    timed = {t.name: used[t.name] / t.achievable for t in tiers if t.achievable > 0}
    tier = max(timed, key=timed.__getitem__) if any(timed.values()) else tiers[0].name
    out["memory_tier"] = tier
    if top == "network" and network is not None:
        out["network_bound"] = network["bound"]
    return out


def _network(it: Any, link_use: dict[str, float], span_s: float) -> dict[str, Any] | None:
    """`link_use`: each link's share of what it could carry over the run (summary's, links in sorted order)."""
    wait = float(np.asarray(it["network_s"]).sum())
    if wait <= 0 or not link_use or span_s <= 0:
        return None
    replicas = max(1, int(np.unique(np.asarray(it["replica"])).size))
    busiest = max(link_use, key=link_use.__getitem__)  # the first of equals, in sorted order
    wait_share = min(1.0, wait / (span_s * replicas))  # of a replica's time, waiting for the network
    carrying = min(1.0, link_use[busiest] / wait_share)
    return {"busiest_link": busiest, "busiest_link_utilization": link_use[busiest], "wait_share": wait_share,
            "busiest_link_carrying_share": carrying,
            "bound": "bandwidth" if carrying >= BANDWIDTH_BOUND else "latency"}


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e12:.3g} TB/s" if bytes_per_s >= 1e11 else f"{bytes_per_s / 1e9:.3g} GB/s"


def _arrow(link: str) -> str:
    return link.replace("->", "→")


def phase_words(name: str, phase: dict[str, Any] | None, tiers: dict[str, Any],
                network: dict[str, Any] | None) -> str:
    """'decode: weights streamed from DDR at 0.1 TB/s (DDR at 97% of achievable bandwidth), 88% of its busy
    time' and the like; `tiers`: summary.json's utilization.memory_tiers (nameplate bandwidths)."""
    if phase is None:
        return f"{name}: no iteration"
    top, share = phase["bound_by"], phase["share"]
    if top == "memory":
        tier = phase["memory_tier"]
        use = phase["memory_tiers"][tier]["utilization"]
        bandwidth = tiers.get(tier, {}).get("bandwidth_bytes_per_s", 0.0)
        at = f"{tier.upper()} at {use:.0%} of achievable bandwidth" if use is not None else tier.upper()
        what = (f"weights streamed from {tier.upper()} at {_rate(bandwidth)} ({at})"
                if phase["memory_tiers"][tier]["role"] == "streamed" else f"memory bandwidth, {at}")
    elif top == "compute":
        use = phase.get("compute_utilization")
        what = "compute" + (f" at {use:.0%} of achievable FLOP/s" if use is not None else "")
    elif top == "network" and network is not None:
        link = f"{_arrow(network['busiest_link'])}, {network['busiest_link_utilization']:.0%} busy"
        what = (f"the network, bandwidth-bound: link {link}" if network["bound"] == "bandwidth" else
                f"the network, latency-bound: many small messages, the busiest link ({link}) carrying bytes "
                f"{network['busiest_link_carrying_share']:.0%} of the time the chips wait")
    elif top == "overhead":
        what = "fixed overheads (per step, per layer, per sequence: host and kernel launches)"
    else:
        what = top if top != "bubble" else "pipeline bubbles (stages waiting on each other)"
    return f"{name}: {what}, {share:.0%} of its busy time"


def headline(s: dict[str, Any]) -> str | None:
    """One line for the headline table: decode's and prefill's bounds, or None for a summary without them."""
    b = s.get("bottleneck")
    if not isinstance(b, dict):
        return None
    tiers = s.get("utilization", {}).get("memory_tiers", {})
    return "; ".join(phase_words(name, b.get(name), tiers, b.get("network")) for name in ("decode", "prefill"))
