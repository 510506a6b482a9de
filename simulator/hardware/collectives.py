"""Collectives as flows: which chip sends how many bytes to which, phase by phase.

A collective is a sequence of phases; the flows of a phase run concurrently (and share links with whatever
else is on the network), and a phase also costs `steps` sequential hop latencies (the synchronisation of
ring steps, which the flow model would otherwise hide by aggregating them). Uncontended, a ring all-reduce
of S bytes over n chips on links of bandwidth B takes exactly 2(n-1)/n * S / B + 2(n-1) hop latencies.

On a TPU torus a TP group is a sub-block (placement.py) and its all-reduce runs on neighbour links only, in
both directions (`torus_allreduce`): along one wrapped axis of n chips it takes (n-1)/n * S / B + 2 floor(n/2)
hop latencies, half the one-way ring's time; over k axes it splits the buffer into k parts that reduce-scatter
axis after axis in rotated orders, so every axis's links are busy at once (k times the bandwidth of one axis,
github.com/jax-ml/scaling-book sharding.md @04d8de5, "What happens when we AllGather over multiple axes?").
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import networkx as nx

FlowSpec = tuple[str, str, float]  # (source chip, destination chip, bytes)


@dataclass(frozen=True)
class Phase:
    flows: tuple[FlowSpec, ...]
    steps: int
    base_s: float = 0.0  # fixed latency besides the hops (a collective kernel's launch and synchronisation)


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
    return Phase(flows, max((phase.steps for c in parts for phase in c), default=0),
                 max((phase.base_s for c in parts for phase in c), default=0.0))


def repeated(collective: Collective, times: int) -> Collective:
    """`times` back-to-back runs of a collective as one: bytes and latency steps add up (aggregating the
    all-reduces of many layers into one set of flows per iteration)."""
    return tuple(Phase(tuple((a, b, n * times) for a, b, n in p.flows), p.steps * times, p.base_s * times)
                 for p in collective)


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
            total += seconds + (phase.steps * latency + phase.base_s)
            continue
        size = sizes.pop() if sizes else 0.0
        mult, latency = phase_links(phase, route)
        if mult:
            total += size / min(capacity[link] / m for link, m in mult.items())
        total += phase.steps * latency + phase.base_s
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


# ---------------------------------------------------------------- torus (TPU ICI)

@dataclass(frozen=True)
class TorusAxis:
    """One axis of a TP sub-block: its lines of chips (each in coordinate order) and whether each line
    closes into a ring (the axis is whole and wraps around) or is open (a segment, or 2 chips, one link)."""
    lines: tuple[tuple[str, ...], ...]
    ring: bool

    @property
    def size(self) -> int:
        return len(self.lines[0])

    def flows(self, x: float, kind: str) -> tuple[list[FlowSpec], int]:
        """(flows, latency steps) of a reduce-scatter ("rs"), all-gather ("ag") or all-reduce ("ar") of an
        x-byte buffer along every line of the axis at once, each link direction used by one flow.

        Ring of s: each chip sends to both neighbours, half the traffic each way, and each shard goes the
        shorter way round (floor(s/2) hops; scaling-book sharding.md): reduce-scatter and all-gather put
        (s-1)/(2s) x on every link direction, an all-reduce (s-1)/s x. Open line of s: reduce-scatter sends
        chip i's partial sums of the shards beyond it, (s-1-i)/s x rightwards and i/s x leftwards (s-1
        hops edge to edge: it cannot be bidirectional, scaling-book pop quiz 2); all-gather the mirror; an
        all-reduce overlaps the two (a pipelined chain: x on every link direction, the bound across any cut
        of a line, in 2(s-1) steps)."""
        s = self.size
        out: list[FlowSpec] = []
        for line in self.lines:
            if self.ring:
                share = (s - 1) / s * x / (1 if kind == "ar" else 2)
                for i in range(s):
                    out += [(line[i], line[(i + 1) % s], share), (line[i], line[i - 1], share)]
                continue
            for i in range(s - 1):
                right, left = {"rs": ((s - 1 - i) / s * x, (i + 1) / s * x),
                               "ag": ((i + 1) / s * x, (s - 1 - i) / s * x),
                               "ar": (x, x)}[kind]
                out += [(line[i], line[i + 1], right), (line[i + 1], line[i], left)]
        steps = s // 2 if self.ring else s - 1
        return out, steps * (2 if kind == "ar" else 1)


def multi_axis_allreduce(axes: list[TorusAxis], size: float) -> Collective:
    """All-reduce over a sub-block spanning k axes: the buffer is cut into k equal parts; part p
    reduce-scatters along axes p, p+1, ... (mod k), the shard it holds shrinking by each axis's size,
    all-reduces along its last axis, then all-gathers back in reverse. In every phase the k parts use k
    different axes, so all the sub-block's links carry traffic at once and no link carries two flows: k
    times the bandwidth of one axis (scaling-book sharding.md, multi-axis collectives). Phases run in
    lock-step (a part that is done early waits), a little pessimistic when the axes differ."""
    k = len(axes)
    if k == 0:
        return ()
    shares = []  # shares[p][j]: bytes part p holds when it reaches its j-th axis
    for p in range(k):
        x, row = size / k, []
        for j in range(k):
            row.append(x)
            x /= axes[(p + j) % k].size
        shares.append(row)

    def phase(j: int, kind: str) -> Phase:
        flows: list[FlowSpec] = []
        steps = 0
        for p in range(k):
            part, part_steps = axes[(p + j) % k].flows(shares[p][j], kind)
            flows += part
            steps = max(steps, part_steps)
        return Phase(tuple(flows), steps)

    return (tuple(phase(j, "rs") for j in range(k - 1)) + (phase(k - 1, "ar"),)
            + tuple(phase(j, "ag") for j in reversed(range(k - 1))))


def bidirectional_ring_allreduce(cycle: list[str], size: float) -> Collective:
    """Ring all-reduce around a cycle of neighbours in both directions at once: each direction carries half
    the buffer, (n-1)/n of the buffer on every link direction, and each shard goes the shorter way round:
    (n-1)/n * S / B + 2 floor(n/2) hop latencies."""
    n = len(cycle)
    if n <= 2:  # one link pair: both directions are the one ring
        return ring_allreduce(cycle, size)
    share = (n - 1) / n * size
    flows = tuple(f for i in range(n) for f in ((cycle[i], cycle[(i + 1) % n], share),
                                                 (cycle[(i + 1) % n], cycle[i], share)))
    return (Phase(flows, 2 * (n // 2)),)


def torus_sub_block(graph: nx.DiGraph, chips: list[str]) -> tuple[list[TorusAxis], list[str] | None] | None:
    """(axes of the sub-block the chips fill, with more than one chip; a cycle through all of them on
    neighbour links, or None), or None when the chips are not one node's torus sub-block."""
    dims = graph.graph.get("torus_dims")
    if not dims or any("coords" not in graph.nodes[c] for c in chips) \
            or len({graph.nodes[c]["node"] for c in chips}) != 1:
        return None
    at = {graph.nodes[c]["coords"]: c for c in chips}
    low = [min(xyz[a] for xyz in at) for a in range(len(dims))]
    size = [max(xyz[a] for xyz in at) - low[a] + 1 for a in range(len(dims))]
    if len(at) != len(chips) or math.prod(size) != len(chips):
        return None
    axes = []
    for a in (a for a in range(len(dims)) if size[a] > 1):
        others = [range(low[b], low[b] + size[b]) if b != a else (0,) for b in range(len(dims))]
        lines = [tuple(at[base[:a] + (low[a] + i,) + base[a + 1:]] for i in range(size[a]))
                 for base in itertools.product(*others)]
        ring = size[a] == dims[a] and size[a] > 2 and graph.has_edge(lines[0][-1], lines[0][0])
        axes.append(TorusAxis(tuple(lines), ring))
    return axes, _snake_cycle(graph, at, low, size)


def _snake_cycle(graph: nx.DiGraph, at: dict, low: list[int], size: list[int]) -> list[str] | None:
    """A cycle through every chip of the sub-block on neighbour links: along the axis when it is one whole
    wrapped axis; else, with an axis of even length e, the comb: out along row 0 of (e x the snake path over
    the other axes), back and forth over columns 1.., home along column 0. None when there is none."""
    active = [a for a in range(len(size)) if size[a] > 1]
    if len(active) == 1:
        a = active[0]
        line = [c for _, c in sorted((xyz[a], c) for xyz, c in at.items())]
        return line if len(line) > 2 and graph.has_edge(line[-1], line[0]) else None
    even = next((a for a in active if size[a] % 2 == 0), None)
    if even is None:
        return None
    path: list[tuple[int, ...]] = [()]  # snake (boustrophedon) order over the other axes
    for a in (a for a in active if a != even):
        path = [p + (i,) for r, p in enumerate(path)
                for i in (range(size[a]) if r % 2 == 0 else reversed(range(size[a])))]
    rest = [a for a in active if a != even]

    def chip_at(row: int, col: int) -> str:
        xyz = list(low)
        xyz[even] += row
        for a, i in zip(rest, path[col]):
            xyz[a] += i
        return at[tuple(xyz)]

    rows, cols = size[even], len(path)
    cycle = [chip_at(0, c) for c in range(cols)]
    for r in range(1, rows):
        cycle += [chip_at(r, c) for c in (range(cols - 1, 0, -1) if r % 2 else range(1, cols))]
    cycle += [chip_at(r, 0) for r in range(rows - 1, 0, -1)]
    pairs = zip(cycle, cycle[1:] + cycle[:1])
    return cycle if all(graph.has_edge(a, b) for a, b in pairs) else None


def torus_allreduce(graph: nx.DiGraph, chips: list[str]):
    """The all-reduce of a TP group that fills a torus sub-block, or None when it does not: the multi-axis
    algorithm, or the bidirectional ring around a snake cycle of the sub-block when that moves the buffer
    faster (open sub-blocks, whose axes are segments without wraparound: 2x4 on a v5e pod), by the
    bandwidth term on idle links, ties to the fewer latency steps. Size-independent, as the engine's closed
    form (one unit-size collective, scaled) needs."""
    found = torus_sub_block(graph, chips)
    if found is None:
        return None
    axes, cycle = found
    candidates = [lambda size: multi_axis_allreduce(axes, size)]
    if cycle is not None and len(axes) > 1:
        candidates.append(lambda size: bidirectional_ring_allreduce(cycle, size))

    def route(a: str, b: str):
        edge = graph.edges[a, b]
        return (edge["id"],), edge["latency_s"]

    capacity = {graph.edges[a, b]["id"]: graph.edges[a, b]["bw"] for a in chips for b in graph.successors(a)}

    def cost(make) -> tuple[float, int]:  # (seconds per byte on idle links, latency steps)
        collective = make(1.0)
        latency = sum(p.steps * phase_links(p, route)[1] for p in collective)
        return uncontended_s(collective, route, capacity)[0] - latency, sum(p.steps for p in collective)

    costs = [cost(make) for make in candidates]
    best = min(range(len(candidates)), key=lambda i: (round(costs[i][0] / costs[0][0], 9), costs[i][1]))
    return candidates[best]
