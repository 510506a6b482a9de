"""TPU torus: TP groups are slice-shaped sub-blocks, and their all-reduce runs on neighbour links in both
directions, axis by axis, against its closed forms and the flow model."""

import itertools
import math

import pytest
import simpy
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.cluster import TopologySpec
from simulator.config.load import load_chip, read_yaml, validate
from simulator.engine.link import Network
from simulator.engine.replica import run_collective
from simulator.hardware import collectives
from simulator.hardware.allreduce import allreduce_for
from simulator.hardware.placement import chip_order
from simulator.hardware.prepare import prepare
from simulator.hardware.topology import Routes, build_graph, chip, slice_order

B = 100e9   # bytes/s per link and direction
HOP = 1e-6  # s
S = 64e6    # bytes


def torus(dims, chip_id="tpu-v5p", wraparound=True):
    spec = validate(TopologySpec, {
        "name": "t", "chip": chip_id, "chips_per_node": math.prod(dims),
        "scaleup": {"kind": "torus", "dims": list(dims), "bandwidth_per_dir": B, "hop_latency": HOP,
                    "wraparound": wraparound, "source": "test"}}, "t")
    return spec, build_graph(spec, load_chip(chip_id))


def shipped(name):
    spec = validate(TopologySpec, read_yaml(REPO / "topologies" / f"{name}.yaml"), name)
    return spec, build_graph(spec, load_chip(spec.chip))


def block(graph, low, size):
    """The chips of the sub-block at `low` with extent `size`, in row-major order."""
    at = {graph.nodes[c]["coords"]: c for c in graph if "coords" in graph.nodes[c]}
    ranges = [range(lo, lo + s) for lo, s in zip(low, size)]
    return [at[xyz] for xyz in itertools.product(*ranges)]


def timed(graph, chips, size=S):
    """(closed form, flow model) seconds of the group's all-reduce alone on the network, and the collective."""
    coll = allreduce_for(graph, chips)(size)
    capacity = {d["id"]: d["bw"] for _, _, d in graph.edges(data=True)}
    routes = Routes(graph)
    closed, _ = collectives.uncontended_s(coll, routes.route, capacity)
    env = simpy.Environment()
    net = Network(env, capacity)
    env.run(env.process(run_collective(env, net, routes, coll)))
    assert not net.check()
    return closed, env.now, coll


@pytest.mark.parametrize("n", [4, 5, 8, 16])
def test_one_wrapped_axis_is_a_bidirectional_ring_twice_as_fast_as_the_one_way_ring(n):
    _, graph = torus((n,))
    chips = [chip(i) for i in range(n)]
    closed, flows, _ = timed(graph, chips)
    expected = (n - 1) / n * S / B + 2 * (n // 2) * HOP  # each direction carries half of 2(n-1)/n S
    assert closed == pytest.approx(expected, rel=1e-12) and flows == pytest.approx(expected, rel=1e-12)
    one_way = collectives.uncontended_s(collectives.ring_allreduce(chips, S), Routes(graph).route,
                                        {d["id"]: B for _, _, d in graph.edges(data=True)})[0]
    assert one_way == pytest.approx(2 * (n - 1) / n * S / B + 2 * (n - 1) * HOP)
    assert closed < 0.51 * one_way + 2 * (n - 1) * HOP


@pytest.mark.parametrize("a, b", [(4, 4), (4, 6), (3, 8)])
def test_a_whole_2d_torus_runs_the_multi_axis_all_reduce_in_closed_form(a, b):
    # two halves: one reduce-scatters along a then b, the other along b then a, at the same time; each
    # all-reduces its shard along its second axis, then both all-gather back
    _, graph = torus((a, b))
    closed, flows, coll = timed(graph, [chip(i) for i in range(a * b)])
    half = S / 2
    scatter = max((a - 1) / (2 * a) * half, (b - 1) / (2 * b) * half)
    reduce = max((b - 1) / b * half / a, (a - 1) / a * half / b)
    steps = 4 * max(a // 2, b // 2)
    expected = (2 * scatter + reduce) / B + steps * HOP
    assert len(coll) == 3
    assert closed == pytest.approx(expected, rel=1e-12) and flows == pytest.approx(expected, rel=1e-12)
    if a == b:  # n_axes times the bandwidth of one bidirectional ring (scaling book: multi-axis collectives)
        n = a * b
        assert closed - steps * HOP == pytest.approx((n - 1) / n * S / (2 * B))


def test_an_open_2d_sub_block_uses_its_segments_and_a_2x4_one_its_snake_cycle():
    _, graph = torus((8, 8))
    # 4 x 4 inside 8 x 8: no wraparound within the block; per half: reduce-scatter along a segment of 4
    # (3/4 of the half on its end links), all-reduce the quarter-shard (a pipelined chain: the whole shard
    # on every link direction), all-gather back
    closed, flows, _ = timed(graph, block(graph, (2, 2), (4, 4)))
    expected = (3 / 4 * S / 2 + S / 8 + 3 / 4 * S / 2) / B + (3 + 6 + 3) * HOP
    assert closed == pytest.approx(expected) and flows == pytest.approx(expected)
    # 2 x 4: the bidirectional ring around its 8-chip cycle moves the buffer faster than the segments
    closed, flows, coll = timed(graph, block(graph, (0, 0), (2, 4)))
    assert len(coll) == 1
    assert closed == pytest.approx(7 / 8 * S / B + 8 * HOP) and flows == pytest.approx(closed)


@pytest.mark.parametrize("name, sizes", [("tpu-v5p-64", (2, 4, 8, 16, 32, 64)),
                                         ("tpu-v5e-256", (2, 4, 8, 16, 32, 64, 256))])
def test_no_link_carries_two_flows_of_one_torus_all_reduce(name, sizes):
    spec, graph = shipped(name)
    routes = Routes(graph)
    order = chip_order(spec)
    for tp in sizes:
        for start in range(0, len(order), tp * max(1, len(order) // tp // 3)):
            group = [chip(i) for i in order[start:start + tp]]
            coll = allreduce_for(graph, group)(S)
            for phase in coll:
                assert all(len(routes.route(a, b)[0]) == 1 for a, b, _ in phase.flows), (tp, "a flow hops")
                mult, _ = collectives.phase_links(phase, routes.route)
                assert max(mult.values()) == 1, (name, tp, start)
                assert {a for a, _, _ in phase.flows} <= set(group)


def test_tp8_on_a_v5p_cube_is_a_2x2x2_block_using_its_three_links_per_chip():
    spec, graph = shipped("tpu-v5p-64")
    group = [chip(i) for i in chip_order(spec)[:8]]
    assert sorted(graph.nodes[c]["coords"] for c in group) == list(itertools.product((0, 1), repeat=3))
    closed, _, _ = timed(graph, group)
    link = 90e9  # scaling book: one v5p ICI link one way
    # three parts of S/3, each over the three axes of 2 in turn: reduce-scatter S/3 (S/6 on the link), then
    # S/6 (S/12), all-reduce S/12 (S/12 each way), all-gather S/12, S/6: 7/12 S per link in all
    bandwidth = closed - 6 * HOP
    assert bandwidth == pytest.approx(7 / 12 * S / link)
    assert 2 * 7 / 8 * S / bandwidth == pytest.approx(3 * link)  # bus bandwidth: 3 links of 90 GB/s
    # the old one-way ring in row-major chip order (1 x 2 x 4 strip, two hops between rows) was 6x slower
    old = [chip(i) for i in range(8)]
    before = collectives.uncontended_s(collectives.ring_allreduce(old, S), Routes(graph).route,
                                       {d["id"]: d["bw"] for _, _, d in graph.edges(data=True)})[0]
    assert before > 5.5 * closed


def test_a_group_that_is_not_a_sub_block_keeps_the_ring():
    _, graph = shipped("tpu-v5p-64")
    group = [chip(i) for i in (0, 1, 2, 3, 5, 6, 7, 21)]
    assert collectives.torus_sub_block(graph, group) is None
    coll = allreduce_for(graph, group)(S)
    assert coll == collectives.ring_allreduce(group, S)


def test_phases_of_unequal_flows_are_timed_as_the_flow_model_shares_links():
    route = {("a", "b"): (("L",), 0.0), ("c", "d"): (("L",), 0.0), ("e", "f"): (("M",), 0.0)}.get
    capacity = {"L": 10.0, "M": 10.0}
    shared = (collectives.Phase((("a", "b", 10.0), ("c", "d", 30.0)), 0),)
    assert collectives.uncontended_s(shared, lambda s, d: route((s, d)), capacity)[0] == pytest.approx(4.0)
    apart = (collectives.Phase((("a", "b", 10.0), ("e", "f", 30.0)), 0),)
    seconds, carried = collectives.uncontended_s(apart, lambda s, d: route((s, d)), capacity)
    assert seconds == pytest.approx(3.0) and carried == {"L": 10.0, "M": 30.0}


def test_slice_order_cuts_tpu_slice_shapes():
    def shapes(dims):
        order = slice_order(dims)
        coords = list(itertools.product(*(range(d) for d in dims)))
        out = {}
        for n in (2, 4, 8, 16, 32):
            if n <= len(order):
                run_ = [coords[i] for i in order[:n]]
                out[n] = tuple(max(c[a] for c in run_) + 1 for a in range(len(dims)))
        return out

    assert shapes((4, 4, 4)) == {2: (1, 1, 2), 4: (1, 2, 2), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4)}
    assert shapes((16, 16)) == {2: (1, 2), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8)}
    assert sorted(slice_order((4, 4, 4))) == list(range(64))
    assert slice_order((7,)) == list(range(7))


def test_packed_replicas_on_a_torus_get_disjoint_sub_blocks_and_other_fabrics_keep_their_numbering(
        write_scenario):
    _, graph = shipped("tpu-v5p-64")
    plan = prepare(load_scenario(write_scenario({
        "model": "llama-3.1-70b", "cluster": str(REPO / "topologies" / "tpu-v5p-64.yaml"),
        "deployment": {"tensor_parallel": 8, "replicas": 8, "weights_dtype": "bf16"}}))).pools[0].plan
    groups = [[chip(i) for i in plan.stage_chips(r, 0)] for r in range(8)]
    assert sorted(c for g in groups for c in g) == sorted(chip(i) for i in range(64))
    for group in groups:
        axes, _ = collectives.torus_sub_block(graph, group)
        assert [axis.size for axis in axes] == [2, 2, 2]
    hgx = validate(TopologySpec, read_yaml(REPO / "topologies" / "hgx-h100.yaml"), "hgx")
    assert chip_order(hgx) is None


def test_a_tpu_run_is_timed_in_closed_form_and_equals_the_flow_model(write_scenario):
    base = {"model": "llama-3.1-8b", "cluster": str(REPO / "topologies" / "tpu-v5p-64.yaml"),
            "deployment": {"tensor_parallel": 8, "replicas": 2, "weights_dtype": "bf16"},
            "workload.num_requests": 24, "workload.output_tokens": {"kind": "fixed", "value": 16}}
    fast = run(load_scenario(write_scenario(base)))
    flows = run(load_scenario(write_scenario({**base, "sim.collectives": "layer"}, name="layer.yaml")))
    assert fast.summary["network"]["closed_form_replicas"] == 2
    assert flows.summary["network"]["closed_form_replicas"] == 0
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert fast.summary[key]["p50"] == pytest.approx(flows.summary[key]["p50"], rel=1e-6)
    assert fast.summary["network"]["link_bytes"] == pytest.approx(flows.summary["network"]["link_bytes"])
