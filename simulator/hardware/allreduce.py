"""Which all-reduce a tensor-parallel group runs: the algorithms its fabric allows, each algorithm's closed
form, and the fastest one for the message size, as NCCL's tuner and the serving engines' custom all-reduces
pick them.

Every algorithm is a flow model (phases of flows, collectives.py) and, on idle links, an alpha-beta closed
form `t(S) = alpha + beta x S`: alpha = a fixed latency L (the kernel's launch and synchronisation) + latency
steps x the route latency of a step, beta = the bytes the busiest link carries per byte of buffer over its
bandwidth. On n chips with ports (switch) or links (mesh) of bandwidth B and a hop latency a (chip -> chip,
through the switch or over one link):

    algorithm                 switch (one port per chip)             full mesh (one link per pair)
    ring                      L + 2(n-1) a + 2(n-1)/n S/B            L + 2(n-1) a + 2(n-1)/n S/B
    double binary tree        L + 2 floor(log2 n) a + 2 S/B          L + 2 floor(log2 n) a + S/B
    one-shot                  L + a + (n-1) S/B                      L + a + S/B
    two-shot                  L + 2 a + 2(n-1)/n S/B                 L + 2 a + 2 S/(n B)
    NVLS (in-switch reduce)   L + 2 a + (n+1)/n S/B                  -

L (BASE_S) is NCCL's own tuning model's (github.com/NVIDIA/nccl src/graph/tuning.cc, baseLatencies and
hwLatencies, in us): ring 6.6 and tree 6.8 (LL protocol), NVLS 25 (its NVLink latency; Simple, NVLS's only
protocol, so it wins on bandwidth, not latency). One-shot and two-shot are ASSUMED to pay what NCCL's LL ring
pays besides its hops (one kernel launch and a flag-synchronised exchange). These are GPU software: on other
chips (LPUs' compiled, statically scheduled transfers) the all-reduce pays its hops only and no IPC buffer
limits it. Multi-node and torus all-reduces keep alpha = hops only.

One-shot (every chip sends its whole buffer to every peer and reduces locally) and two-shot (a direct
reduce-scatter then a direct all-gather) are the serving engines' custom all-reduce kernels, which run out
of a registered IPC buffer and hand larger messages to NCCL: vLLM's CustomAllreduce(max_size=8192 * 1024)
(vllm/distributed/device_communicators/custom_all_reduce.py), so they are offered up to CUSTOM_MAX_BYTES on
a switch. On a full mesh the two-shot's flows (every link busy, 1/n of the buffer each way) are also what
RCCL's one ring per link set achieves for large messages, so there it has no limit (as before this module).
NVLS needs a switch that reduces (NVSwitch gen3+, topology `scaleup.in_switch_reduction`): each chip sends
the switch its buffer once and gets the sum back once, its reduce-scatter (multimem.ld_reduce) and all-gather
(multimem.st) pipelined into one phase of (n+1)/n S each way per port. Multi-node groups run the hierarchical
all-reduce, torus sub-blocks the torus all-reduce (collectives.py), each the only candidate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import networkx as nx

from simulator.hardware.collectives import (
    Collective,
    Phase,
    direct_allreduce,
    hierarchical_allreduce,
    phase_links,
    ring_allreduce,
    torus_allreduce,
    uncontended_s,
)
from simulator.hardware.topology import Routes

CUSTOM_MAX_BYTES = 8 * 2**20  # vLLM CustomAllreduce max_size (8 MiB): larger buffers go to NCCL
BASE_S = {"ring": 6.6e-6, "tree": 6.8e-6, "one-shot": 6.6e-6, "two-shot": 6.6e-6, "nvls": 25e-6}


def _with_base(make: Callable[[float], Collective], base_s: float) -> Callable[[float], Collective]:
    """The collective with a fixed latency on its first phase."""
    def based(size: float) -> Collective:
        collective = make(size)
        return (replace(collective[0], base_s=base_s),) + collective[1:] if collective else ()
    return based


def one_shot_allreduce(chips: list[str], size: float) -> Collective:
    """Every chip sends its whole buffer to every peer, which sums the n copies itself: one step."""
    n = len(chips)
    if n <= 1:
        return ()
    return (Phase(tuple((a, b, size) for a in chips for b in chips if a != b), 1),)


def double_binary_tree_allreduce(chips: list[str], size: float) -> Collective:
    """NCCL's tree: two binary trees, each reducing half of the buffer up to its root and broadcasting it back
    down; a chip that is interior in one tree is a leaf in the other (the second tree is the first over the
    chips in reverse order), so every chip sends at most the whole buffer in each direction's phase.
    Reduce then broadcast, floor(log2 n) steps each."""
    n = len(chips)
    if n <= 1:
        return ()
    depth = max(1, int(math.log2(n)))
    up: list[tuple[str, str, float]] = []
    for order in (chips, chips[::-1]):
        up += [(order[i], order[(i - 1) // 2], size / 2) for i in range(1, n)]
    down = tuple((b, a, s) for a, b, s in up)
    return (Phase(tuple(up), depth), Phase(down, depth))


def nvls_allreduce(chips: list[str], switch: str, size: float) -> Collective:
    """In-switch reduction (NVLink SHARP): each chip sends the switch its whole buffer, which it reduces and
    returns slice by slice (S/n down to each chip), and each chip sends its reduced slice up once more to be
    multicast to all (S down to each): (n+1)/n S up and down each port, pipelined in one phase. Chip ->
    switch is half a hop, so the 4 latency steps are the 2 hops of the reduce and of the multicast."""
    n = len(chips)
    if n <= 1:
        return ()
    each = (n + 1) / n * size
    return (Phase(tuple((c, switch, each) for c in chips) + tuple((switch, c, each) for c in chips), 4),)


@dataclass(frozen=True)
class Algorithm:
    """One way to all-reduce a group: its flows for a buffer size and its closed form on idle links."""
    name: str
    make: Callable[[float], Collective]
    alpha_s: float          # latency: steps x route latency, summed over phases
    beta_s_per_byte: float  # seconds per byte of buffer for the busiest link
    max_bytes: float = math.inf  # the largest buffer it runs (custom kernels' IPC buffer)

    def seconds(self, size: float) -> float:
        return self.alpha_s + self.beta_s_per_byte * size


class AllReduce:
    """The all-reduce of a group: called with a buffer size, the flows of the fastest algorithm for it (ties
    to the earlier candidate)."""

    def __init__(self, algorithms: Sequence[Algorithm]):
        self.algorithms = tuple(algorithms)
        self._chosen: dict[float, int] = {}  # size -> choice: a run's sizes are a few token counts, met often

    def choose(self, size: float) -> int:
        """Index of the fastest algorithm that runs a buffer of `size` bytes."""
        best = self._chosen.get(size)
        if best is not None:
            return best
        best, best_s = 0, math.inf
        for i, algorithm in enumerate(self.algorithms):
            if size <= algorithm.max_bytes and algorithm.seconds(size) < best_s:
                best, best_s = i, algorithm.seconds(size)
        self._chosen[size] = best
        return best

    def __call__(self, size: float) -> Collective:
        return self.algorithms[self.choose(size)].make(size) if self.algorithms else ()


def closed_form(make: Callable[[float], Collective], routes: Routes,
                capacity: dict[str, float]) -> tuple[float, float]:
    """(alpha, beta) of a collective builder: its flows' time on idle links is linear in the buffer size."""
    unit = make(1.0)
    alpha = sum(p.steps * phase_links(p, routes.route)[1] + p.base_s for p in unit)
    return alpha, uncontended_s(unit, routes.route, capacity)[0] - alpha


def candidates(graph: nx.DiGraph, chips: list[str]) -> list[tuple[str, Callable[[float], Collective], float]]:
    """(name, flows builder, largest buffer) of every all-reduce the group's fabric allows."""
    nodes = sorted({graph.nodes[c]["node"] for c in chips})
    if len(nodes) > 1:
        groups = [[c for c in chips if graph.nodes[c]["node"] == n] for n in nodes]
        if len({len(g) for g in groups}) == 1 and len(groups[0]) > 1:
            return [("hierarchical", lambda size: hierarchical_allreduce(groups, size), math.inf)]
        return [("ring", lambda size: ring_allreduce(chips, size), math.inf)]
    torus = torus_allreduce(graph, chips) if len(chips) > 1 else None
    if torus is not None:
        return [("torus", torus, math.inf)]
    switch = f"n{nodes[0]}/sw"
    on_switch = switch in graph and all(graph.has_edge(c, switch) for c in chips)
    full_mesh = all(graph.has_edge(a, b) for a in chips for b in chips if a != b)
    if not (on_switch or full_mesh) or len(chips) < 2:
        return [("ring", lambda size: ring_allreduce(chips, size), math.inf)]
    found: list[tuple[str, Callable[[float], Collective], float]] = [
        ("ring", lambda size: ring_allreduce(chips, size), math.inf),
        ("tree", lambda size: double_binary_tree_allreduce(chips, size), math.inf),
        ("one-shot", lambda size: one_shot_allreduce(chips, size), CUSTOM_MAX_BYTES),
        ("two-shot", lambda size: direct_allreduce(chips, size), CUSTOM_MAX_BYTES if on_switch else math.inf)]
    if on_switch and graph.nodes[switch].get("reduces"):
        found.append(("nvls", lambda size: nvls_allreduce(chips, switch, size), math.inf))
    if graph.graph.get("chip_kind", "gpu") != "gpu":
        return [(name, make, math.inf) for name, make, _ in found]
    return [(name, _with_base(make, BASE_S[name]), limit) for name, make, limit in found]


def allreduce_for(graph: nx.DiGraph, chips: list[str], routes: Routes | None = None,
                  link_efficiency: float = 1.0) -> AllReduce:
    """The all-reduce a TP group runs on its fabric, its algorithm chosen per buffer size by the closed forms
    on links at `link_efficiency` of their bandwidth (as the engine's network runs them)."""
    routes = routes or Routes(graph)
    capacity = {d["id"]: d["bw"] * link_efficiency for _, _, d in graph.edges(data=True)}
    algorithms = []
    for name, make, limit in candidates(graph, chips):
        alpha, beta = closed_form(make, routes, capacity)
        algorithms.append(Algorithm(name, make, alpha, beta, limit))
    return AllReduce(algorithms)
