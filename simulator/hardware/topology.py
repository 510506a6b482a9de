"""TopologySpec -> a directed networkx graph of chips, switches and hosts, and the routes flows take.

Vertices: chips `c{i}` (global index, node-major), node switches `n{k}/sw`, leaf and spine switches
`leaf{l}`, `spine{s}`, hosts `n{k}/host`. Every edge is one direction of a physical link and carries `bw`
(bytes/s), `latency_s`, `energy_per_bit` (J) and `fabric` (scaleup, scaleout, pcie); an edge's id is
"u->v". Within a node, traffic uses the scale-up fabric; between nodes, the chips' NICs and the scale-out
fabric (as NCCL does: NVLink inside the node, the NIC to the rest).

On a torus, chip `c{k*n + j}` of node k sits at the row-major coordinates of j in `scaleup.dims` (the last
axis varies fastest); chips carry `coords`, and the graph `torus_dims`. `slice_order` is the order in which
placement hands torus chips out, so that TP groups and replicas are TPU-slice-shaped sub-blocks.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx
from networkx.algorithms.shortest_paths.generic import _build_paths_from_predecessors

from simulator.config.cluster import ChipSpec, TopologySpec


def chip(i: int) -> str:
    return f"c{i}"


def _link(g: nx.DiGraph, u: str, v: str, bw: float, latency: float, energy: float | None, fabric: str) -> None:
    for a, b in ((u, v), (v, u)):
        g.add_edge(a, b, bw=bw, latency_s=latency, energy_per_bit=energy or 0.0, fabric=fabric, id=f"{a}->{b}")


def build_graph(spec: TopologySpec, chip_spec: ChipSpec) -> nx.DiGraph:
    """The cluster as a graph; chips carry `node` (their node index) as an attribute."""
    g = nx.DiGraph(name=spec.name, chip_kind=chip_spec.kind)
    n = spec.chips_per_node
    for k in range(spec.nodes):
        for local in range(n):
            g.add_node(chip(k * n + local), kind="chip", node=k, local=local)
        if spec.scaleup and n > 1:
            _scaleup(g, spec, chip_spec, k)
        if spec.host:
            g.add_node(f"n{k}/host", kind="host", node=k)
            for local in range(n):
                _link(g, chip(k * n + local), f"n{k}/host", spec.host.bandwidth_per_dir, spec.host.latency,
                      None, "pcie")
    if spec.scaleout and spec.nodes > 1:
        _scaleout(g, spec)
    return g


def _scaleup(g: nx.DiGraph, spec: TopologySpec, chip_spec: ChipSpec, k: int) -> None:
    f = spec.scaleup
    assert f is not None  # build_graph wires a scale-up fabric only when the spec has one
    n = spec.chips_per_node
    members = [chip(k * n + local) for local in range(n)]
    if f.kind == "switch":
        bw = f.bandwidth_per_dir or (chip_spec.scaleup.bandwidth_per_dir if chip_spec.scaleup else None)
        if bw is None:
            raise ValueError(f"{chip_spec.id} has no scale-up bandwidth; set scaleup.bandwidth_per_dir")
        switch = f"n{k}/sw"
        g.add_node(switch, kind="switch", node=k, reduces=f.in_switch_reduction)
        for member in members:  # half the hop latency each way: chip -> switch -> chip is one hop
            _link(g, member, switch, bw, f.hop_latency / 2, f.energy_per_bit, "scaleup")
    elif f.kind == "mesh":
        bw = f.bandwidth_per_dir or (chip_spec.scaleup.link_bandwidth_per_dir if chip_spec.scaleup else None)
        if bw is None:
            raise ValueError(f"{chip_spec.id} has no per-link scale-up bandwidth; set scaleup.bandwidth_per_dir")
        for a, b in itertools.combinations(members, 2):
            _link(g, a, b, bw, f.hop_latency, f.energy_per_bit, "scaleup")
    else:  # torus
        bw = f.bandwidth_per_dir
        if bw is None:
            raise ValueError("a torus needs scaleup.bandwidth_per_dir (per link)")
        dims = f.dims
        assert dims is not None  # a torus has its dims (TopologySpec checks them)
        g.graph["torus_dims"] = tuple(dims)
        for coords in itertools.product(*(range(d) for d in dims)):
            here = members[_index(coords, dims)]
            g.nodes[here]["coords"] = coords
            for axis, size in enumerate(dims):
                if size == 1 or (coords[axis] == size - 1 and (not f.wraparound or size == 2)):
                    continue
                nxt = list(coords)
                nxt[axis] = (coords[axis] + 1) % size
                _link(g, here, members[_index(tuple(nxt), dims)], bw, f.hop_latency, f.energy_per_bit, "scaleup")


def _index(coords: tuple[int, ...], dims: tuple[int, ...]) -> int:
    index = 0
    for c, d in zip(coords, dims):
        index = index * d + c
    return index


def prime_factors(n: int) -> list[int]:
    """Prime factors of n, smallest first (12 -> [2, 2, 3])."""
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def slice_order(dims: tuple[int, ...]) -> list[int]:
    """Row-major indices of a torus's chips in slice order: every aligned run of 2, 4, 8, ... positions is a
    sub-block as near cubic as the axes allow, the way TPU slices are cut (v5p: 2x2x1, 2x2x2, 2x2x4, 2x4x4,
    4x4x4; v5e: 2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16; cloud.google.com/tpu/docs/v5p, .../v5e). Positions are
    mixed-radix numbers whose digits, least significant first, take each axis's prime factors in turn, the
    axis with the smallest extent so far first (ties: the last axis), so a run of p positions, p a product of
    the first digits, spans a contiguous range on every axis."""
    digits: list[tuple[int, int, int]] = []  # (axis, radix, weight of the digit on that axis)
    factors = [prime_factors(d) for d in dims]
    extent = [1] * len(dims)
    while any(factors):
        axis = min((a for a in range(len(dims)) if factors[a]), key=lambda a: (extent[a], -a))
        radix = factors[axis].pop(0)
        digits.append((axis, radix, extent[axis]))
        extent[axis] *= radix
    order = []
    for position in range(math.prod(dims)):
        coords = [0] * len(dims)
        for axis, radix, weight in digits:
            coords[axis] += (position % radix) * weight
            position //= radix
        order.append(_index(tuple(coords), dims))
    return order


def _scaleout(g: nx.DiGraph, spec: TopologySpec) -> None:
    f = spec.scaleout
    assert f is not None  # build_graph wires a scale-out fabric only when the spec has one
    n = spec.chips_per_node
    if f.kind == "ring":
        for k in range(spec.nodes if spec.nodes > 2 else 1):
            for local in range(n):
                _link(g, chip(k * n + local), chip(((k + 1) % spec.nodes) * n + local), f.nic_bandwidth_per_dir,
                      f.hop_latency, f.energy_per_bit, "scaleout")
        return
    leaves = -(-spec.nodes // f.nodes_per_leaf)
    for k in range(spec.nodes):
        leaf = f"leaf{k // f.nodes_per_leaf}"
        g.add_node(leaf, kind="switch")
        for local in range(n):  # one NIC per chip (rail-optimised nodes)
            _link(g, chip(k * n + local), leaf, f.nic_bandwidth_per_dir, f.hop_latency / 2, f.energy_per_bit,
                  "scaleout")
    if leaves > 1:
        assert f.uplink_bandwidth_per_dir is not None  # TopologySpec requires it when nodes span several leaves
        for s in range(f.spines):
            g.add_node(f"spine{s}", kind="switch")
            for j in range(leaves):
                _link(g, f"leaf{j}", f"spine{s}", f.uplink_bandwidth_per_dir, f.hop_latency / 2,
                      f.energy_per_bit, "scaleout")


@dataclass
class Routes:
    """Deterministic routes between chips, cached: links (edge ids) and summed latency."""
    graph: nx.DiGraph
    cache: dict[tuple[str, str], tuple[tuple[str, ...], float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        g = self.graph

        def fabric(keep: Callable[[str], bool]) -> nx.DiGraph:  # a copy: BFS on a filtered view is ~10x slower
            return nx.DiGraph(g.edge_subgraph([(u, v) for u, v, d in g.edges(data=True) if keep(d["fabric"])]))
        self.scaleup = fabric(lambda f: f == "scaleup")
        self.scaleout = fabric(lambda f: f == "scaleout")
        # chips that relay for each other (Groq's TSPs are the dragonfly's switches): a pair that the scale-out
        # fabric alone does not join may still be joined through other chips' scale-up and scale-out links
        self.chip_fabric = fabric(lambda f: f != "pcie")
        self._predecessors: dict[tuple[int, str], dict[str, list[str]]] = {}

    def route(self, src: str, dst: str) -> tuple[tuple[str, ...], float]:
        key = (src, dst)
        if key not in self.cache:
            self.cache[key] = self._route(src, dst)
        return self.cache[key]

    def host_of(self, chip_name: str) -> str:
        host = f"n{self.graph.nodes[chip_name]['node']}/host"
        if host not in self.graph:
            raise ValueError(f"{chip_name} has no host link: give the topology a `host:` block")
        return host

    def _route(self, src: str, dst: str) -> tuple[tuple[str, ...], float]:
        g = self.graph
        if g.has_edge(src, dst) and g.edges[src, dst]["fabric"] == "pcie":
            edge = g.edges[src, dst]
            return (edge["id"],), edge["latency_s"]
        same_node = g.nodes[src]["node"] == g.nodes[dst]["node"]
        path = self._ecmp(self.scaleup if same_node else self.scaleout, src, dst) \
            or self._ecmp(self.chip_fabric, src, dst)
        if not path:
            raise ValueError(f"no {'scale-up' if same_node else 'scale-out'} path from {src} to {dst}")
        edges = list(itertools.pairwise(path))
        return tuple(g.edges[e]["id"] for e in edges), sum(g.edges[e]["latency_s"] for e in edges)

    def _ecmp(self, fabric: nx.DiGraph, src: str, dst: str) -> list[str] | None:
        """One of the shortest paths (None: none), picked by a stable hash of the endpoints (static ECMP). At
        most 16 are considered: enough for a spine layer, and a torus's thousands of equal paths would cost
        too much. One breadth-first search per source, kept for every destination."""
        if src not in fabric or dst not in fabric:
            return None
        key = (id(fabric), src)
        if key not in self._predecessors:
            self._predecessors[key] = nx.predecessor(fabric, src)
        predecessors = self._predecessors[key]
        if dst not in predecessors:
            return None
        # the paths nx.all_shortest_paths yields, in its order, from the search already made
        found = _build_paths_from_predecessors({src}, dst, predecessors)
        paths = sorted(itertools.islice(found, 16))
        if len(paths) == 1:
            return paths[0]
        a, b = int(src[1:]), int(dst[1:])
        return paths[(a * 31 + b) % len(paths)]
