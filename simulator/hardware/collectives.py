"""Collectives as flows: which chip sends how many bytes to which, phase by phase.

A collective is a sequence of phases; the flows of a phase run concurrently (and share links with whatever
else is on the network), and a phase also costs `steps` sequential hop latencies (the synchronisation of
ring steps, which the flow model would otherwise hide by aggregating them). Uncontended, a ring all-reduce
of S bytes over n chips on links of bandwidth B takes exactly 2(n-1)/n * S / B + 2(n-1) hop latencies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

FlowSpec = tuple[str, str, float]  # (source chip, destination chip, bytes)


@dataclass(frozen=True)
class Phase:
    flows: tuple[FlowSpec, ...]
    steps: int


Collective = tuple[Phase, ...]


def _ring(chips: list[str], per_flow: float, steps: int) -> Phase:
    n = len(chips)
    return Phase(tuple((chips[i], chips[(i + 1) % n], per_flow) for i in range(n)), steps)


def ring_allreduce(chips: list[str], size: float) -> Collective:
    """Reduce-scatter then all-gather around a ring: each chip sends 2(n-1)/n of the buffer to its successor."""
    n = len(chips)
    if n <= 1:
        return ()
    return (_ring(chips, 2.0 * (n - 1) / n * size, 2 * (n - 1)),)


def ring_allgather(chips: list[str], size: float) -> Collective:
    """`size` is the gathered result; each chip forwards (n-1)/n of it around the ring."""
    n = len(chips)
    return (_ring(chips, (n - 1) / n * size, n - 1),) if n > 1 else ()


def ring_reduce_scatter(chips: list[str], size: float) -> Collective:
    """`size` is the input buffer; each chip forwards (n-1)/n of it around the ring."""
    return ring_allgather(chips, size)


def direct_allreduce(chips: list[str], size: float) -> Collective:
    """For full meshes: every chip sends each peer 1/n of the buffer (reduce-scatter), then the reduced
    slices back (all-gather), using all n-1 of its links at once."""
    n = len(chips)
    if n <= 1:
        return ()
    pairs = tuple((a, b, size / n) for a in chips for b in chips if a != b)
    return (Phase(pairs, 1), Phase(pairs, 1))


def tree_allreduce(chips: list[str], size: float) -> Collective:
    """Reduce up a binary tree then broadcast down: every tree edge carries the whole buffer each way,
    pipelined, in 2 ceil(log2 n) latency steps."""
    n = len(chips)
    if n <= 1:
        return ()
    depth = math.ceil(math.log2(n))
    up = tuple((chips[i], chips[(i - 1) // 2], size) for i in range(1, n))
    down = tuple((chips[(i - 1) // 2], chips[i], size) for i in range(1, n))
    return (Phase(up, depth), Phase(down, depth))


def hierarchical_allreduce(groups: list[list[str]], size: float) -> Collective:
    """Reduce-scatter inside each group (node), all-reduce the 1/g slices across groups rank by rank, then
    all-gather inside each group. Groups must be the same size."""
    g = len(groups[0])
    local_rs = [ring_reduce_scatter(group, size) for group in groups]
    across = [ring_allreduce([group[r] for group in groups], size / g) for r in range(g)]
    local_ag = [ring_allgather(group, size) for group in groups]
    return tuple(_merge(parts) for parts in (local_rs, across, local_ag) if any(parts))


def all_to_all(chips: list[str], size_per_chip: float) -> Collective:
    """Each chip sends 1/n of its `size_per_chip` buffer to every other chip (MoE dispatch/combine)."""
    n = len(chips)
    if n <= 1:
        return ()
    return (Phase(tuple((a, b, size_per_chip / n) for a in chips for b in chips if a != b), 1),)


def p2p(src: str, dst: str, size: float) -> Collective:
    return (Phase(((src, dst, size),), 1),)


def _merge(parts: list[Collective]) -> Phase:
    """Run the single phases of several independent collectives concurrently."""
    flows = tuple(f for c in parts for phase in c for f in phase.flows)
    return Phase(flows, max((phase.steps for c in parts for phase in c), default=0))


def repeated(collective: Collective, times: int) -> Collective:
    """`times` back-to-back runs of a collective as one: bytes and latency steps add up (aggregating the
    all-reduces of many layers into one set of flows per iteration)."""
    return tuple(Phase(tuple((a, b, n * times) for a, b, n in p.flows), p.steps * times) for p in collective)


def phase_links(phase: Phase, route) -> tuple[dict[str, int], float]:
    """(members per link, slowest route latency) of a phase; `route(src, dst)` -> (links, latency)."""
    mult: dict[str, int] = {}
    latency = 0.0
    for src, dst, _ in phase.flows:
        links, route_latency = route(src, dst)
        latency = max(latency, route_latency)
        for link in links:
            mult[link] = mult.get(link, 0) + 1
    return mult, latency


def uncontended_s(collective: Collective, route, capacity: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Time of a collective alone on the network, and the bytes it puts on each link: per phase, its flows
    move at the rate of their tightest link (capacity over the members crossing it), then wait its latency
    steps. A phase whose flows differ in size runs as the flow model runs it: one bundle per size, max-min
    fair rates by progressive filling, refilled as each bundle ends. This is what the flow model gives when
    nothing else shares the links."""
    total = 0.0
    carried: dict[str, float] = {}
    for phase in collective:
        sizes = {size for _, _, size in phase.flows}
        if len(sizes) > 1:
            seconds, latency = _mixed_phase(phase, route, capacity, carried)
            total += seconds + phase.steps * latency
            continue
        size = sizes.pop() if sizes else 0.0
        mult, latency = phase_links(phase, route)
        if mult:
            total += size / min(capacity[link] / m for link, m in mult.items())
        total += phase.steps * latency
        for link, m in mult.items():
            carried[link] = carried.get(link, 0.0) + size * m
    return total, carried


def _mixed_phase(phase: Phase, route, capacity: dict[str, float], carried: dict[str, float]) -> tuple[float, float]:
    """(seconds until the last bundle of a phase ends, slowest route latency), adding its bytes to `carried`.
    The flows of each size form one bundle with one rate (as run_collective sends them); rates are max-min
    fair by progressive filling, as engine/link.py's Network shares links."""
    bundles: dict[float, dict[str, int]] = {}
    latency = 0.0
    for src, dst, size in phase.flows:
        links, route_latency = route(src, dst)
        latency = max(latency, route_latency)
        mult = bundles.setdefault(size, {})
        for link in links:
            mult[link] = mult.get(link, 0) + 1
            carried[link] = carried.get(link, 0.0) + size
    remaining = {size: size for size, mult in bundles.items() if mult and size > 0}
    elapsed = 0.0
    while remaining:
        rates = _fill({size: bundles[size] for size in remaining}, capacity)
        step = min(remaining[size] / rates[size] for size in remaining)
        elapsed += step
        for size in list(remaining):
            left = remaining[size] - rates[size] * step
            if left <= 1e-12 * size:
                del remaining[size]
            else:
                remaining[size] = left
    return elapsed, latency


def _fill(bundles: dict[float, dict[str, int]], capacity: dict[str, float]) -> dict[float, float]:
    """Max-min fair rate of each bundle (weighted by its members on each link): raise all rates together and
    freeze the bundles of the link that fills first."""
    left: dict[str, float] = {}
    weight: dict[str, int] = {}
    for mult in bundles.values():
        for link, m in mult.items():
            left[link] = capacity[link]
            weight[link] = weight.get(link, 0) + m
    rates: dict[float, float] = {}
    while len(rates) < len(bundles):
        link = min((k for k in left if weight[k] > 0), key=lambda k: (max(left[k], 0.0) / weight[k], k))
        share = max(left[link], 0.0) / weight[link]
        for key, mult in bundles.items():
            if key not in rates and link in mult:
                rates[key] = share
                for other, m in mult.items():
                    left[other] -= share * m
                    weight[other] -= m
    return rates


def allreduce_for(graph: nx.DiGraph, chips: list[str]):
    """The all-reduce a TP group uses on its fabric: direct on a full mesh (every pair has its own link,
    as RCCL does on Infinity Fabric), hierarchical across nodes, a ring otherwise (NCCL on NVSwitch)."""
    nodes = sorted({graph.nodes[c]["node"] for c in chips})
    if len(nodes) > 1:
        groups = [[c for c in chips if graph.nodes[c]["node"] == n] for n in nodes]
        if len({len(g) for g in groups}) == 1 and len(groups[0]) > 1:
            return lambda size: hierarchical_allreduce(groups, size)
        return lambda size: ring_allreduce(chips, size)
    full_mesh = all(graph.has_edge(a, b) for a in chips for b in chips if a != b)
    if full_mesh and len(chips) > 2:
        return lambda size: direct_allreduce(chips, size)
    return lambda size: ring_allreduce(chips, size)
