"""The traffic of one pipeline stage: its tensor-parallel all-reduces and, with attention data parallelism
and wide expert parallelism, each MoE layer's all-to-all dispatch and combine.

With attention data parallelism (deployment.data_parallel_attention = dp) a stage is dp groups of tp chips:
each group all-reduces its own 1/dp of the activations (the groups run at once, on their own links), and
every MoE layer sends each token's hidden state to the chips of its top-k experts (dispatch) and their
outputs back (combine), all-to-all over the stage's n = dp x tp chips (DeepEP, TRT-LLM wide EP). A stage
pass of T tokens of hidden size h at e bytes per element moves T x h x top_k x e bytes in each of dispatch
and combine; each chip sends its 1/n of it, spread evenly over the n chips (uniform routing), so
(n-1)/n of it crosses links. On a switch of port bandwidth B and hop latency a, one all-to-all of
X bytes per chip takes (n-1)/n X / B + a. Without data parallelism every chip of the TP group holds every
token after the all-reduce, so the experts need no all-to-all (their partial sums ride the all-reduce).
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from simulator.hardware.allreduce import Algorithm, AllReduce, allreduce_for, closed_form
from simulator.hardware.collectives import Collective, Phase, all_to_all
from simulator.hardware.topology import Routes

Builder = Callable[[float], Collective]


def dispatch_combine(chips: list[str], top_k: int) -> Builder:
    """One MoE layer's dispatch then combine for a stage pass whose activations are `size` bytes (T x h x e):
    each chip's buffer is size x top_k / n, of which it sends 1/n to every other chip, twice."""
    n = len(chips)

    def make(size: float) -> Collective:
        return all_to_all(chips, size * top_k / n) * 2

    return make


def _concurrent(parts: list[Collective]) -> Collective:
    """Several collectives with the same phase structure run side by side, phase by phase."""
    return tuple(Phase(tuple(f for p in phases for f in p.flows), max(p.steps for p in phases),
                       max(p.base_s for p in phases)) for phases in zip(*parts))


def grouped_allreduce(groups: list[list[str]], graph: nx.DiGraph, routes: Routes,
                      link_efficiency: float) -> AllReduce:
    """The all-reduces of dp TP groups at once, each on 1/dp of the stage's activations; the same algorithm in
    every group (the groups are alike), chosen by the closed form of all of them together."""
    if len(groups[0]) < 2:
        return AllReduce(())
    each = [allreduce_for(graph, g, routes, link_efficiency) for g in groups]
    if len(groups) == 1:
        return each[0]
    capacity = {d["id"]: d["bw"] * link_efficiency for _, _, d in graph.edges(data=True)}
    share = 1.0 / len(groups)
    algorithms = []
    for i, first in enumerate(each[0].algorithms):
        def make(size: float, i: int = i) -> Collective:
            return _concurrent([a.algorithms[i].make(size * share) for a in each])
        alpha, beta = closed_form(make, routes, capacity)
        algorithms.append(Algorithm(first.name, make, alpha, beta, first.max_bytes / share))
    return AllReduce(algorithms)


def stage_traffic(graph: nx.DiGraph, chips: list[str], tp: int, top_k: int, routes: Routes,
                  link_efficiency: float = 1.0) -> tuple[AllReduce, Builder | None]:
    """(the stage's per-layer all-reduce for `size` bytes of activations, its per-MoE-layer all-to-all or
    None): dp = len(chips) / tp groups of consecutive chips."""
    groups = [chips[i:i + tp] for i in range(0, len(chips), tp)]
    allreduce = grouped_allreduce(groups, graph, routes, link_efficiency)
    moe = dispatch_combine(chips, top_k) if len(groups) > 1 else None
    return allreduce, moe
