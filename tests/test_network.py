"""The network against closed forms: fair sharing, collectives, pipelines, fabrics, contention."""

import numpy as np
import pytest
import simpy
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.cluster import TopologySpec
from simulator.config.load import load_chip, read_yaml, validate
from simulator.engine.link import Network
from simulator.engine.replica import run_collective
from simulator.hardware import collectives
from simulator.hardware.topology import Routes, build_graph, chip


def topology(name):
    spec = validate(TopologySpec, read_yaml(REPO / "topologies" / f"{name}.yaml"), name)
    graph = build_graph(spec, load_chip(spec.chip))
    return spec, graph


def network_for(graph):
    env = simpy.Environment()
    return env, Network(env, {d["id"]: d["bw"] for _, _, d in graph.edges(data=True)}), Routes(graph)


def finish_times(env, events):
    times = {}
    for name, event in events.items():
        event.callbacks.append(lambda _e, name=name: times.__setitem__(name, env.now))
    env.run()
    return times


def test_two_equal_flows_on_one_link_each_get_half_and_finish_together():
    env = simpy.Environment()
    net = Network(env, {"L": 100.0})
    times = finish_times(env, {"a": net.transfer([("x", "y", ("L",))], 50.0, 0.0),
                               "b": net.transfer([("x", "y", ("L",))], 50.0, 0.0)})
    assert times == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert net.carried["L"] == pytest.approx(100.0) and not net.check()


def test_max_min_fairness_gives_the_unconstrained_flow_the_leftover():
    # a and b share L1 (10 B/s) -> 5 each; c shares L2 (30 B/s) with b -> 30 - 5 = 25
    env = simpy.Environment()
    net = Network(env, {"L1": 10.0, "L2": 30.0})
    times = finish_times(env, {"a": net.transfer([("x", "y", ("L1",))], 10.0, 0.0),
                               "b": net.transfer([("x", "z", ("L1", "L2"))], 10.0, 0.0),
                               "c": net.transfer([("w", "z", ("L2",))], 50.0, 0.0)})
    assert times["a"] == pytest.approx(2.0) and times["b"] == pytest.approx(2.0)
    # c moved 25 B/s for 2 s, then has L2 alone: 0 bytes left after 50/25 = 2 s
    assert times["c"] == pytest.approx(2.0)
    assert not net.check()


def test_a_flow_that_starts_later_slows_the_first_one_down():
    env = simpy.Environment()
    net = Network(env, {"L": 10.0})
    first = net.transfer([("x", "y", ("L",))], 20.0, 0.0)
    events = {"first": first}

    def later():
        yield env.timeout(1.0)
        events["second"] = net.transfer([("x", "y", ("L",))], 5.0, 0.0)
        events["second"].callbacks.append(lambda _e: times.__setitem__("second", env.now))

    times = {}
    first.callbacks.append(lambda _e: times.__setitem__("first", env.now))
    env.process(later())
    env.run()
    # 10 bytes alone in 1 s, then 5 B/s each: second done at 2 s, first has 5 left -> 2.5 s
    assert times == {"second": pytest.approx(2.0), "first": pytest.approx(2.5)}


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ring_allreduce_takes_the_closed_form_on_nvswitch(n):
    spec, graph = topology("hgx-h100")
    env, net, routes = network_for(graph)
    size, bw, hop = 256e6, 450e9, spec.scaleup.hop_latency
    done = env.process(run_collective(env, net, routes, collectives.ring_allreduce([chip(i) for i in range(n)],
                                                                                      size)))
    env.run(done)
    assert env.now == pytest.approx(2 * (n - 1) / n * size / bw + 2 * (n - 1) * hop, rel=1e-9)
    assert done.value == pytest.approx(n * 2 * (n - 1) / n * size)  # bytes sent
    assert sum(net.sent.values()) == pytest.approx(sum(net.received.values())) and not net.check()


def p2p_time(name, a, b, size):
    _, graph = topology(name)
    env, net, routes = network_for(graph)
    env.run(env.process(run_collective(env, net, routes, collectives.p2p(chip(a), chip(b), size))))
    return env.now


def test_a_pair_of_mi300x_talks_at_one_link_a_pair_of_h100_at_the_full_switch_port():
    size = 1e9
    assert p2p_time("mi300x-platform", 0, 5, size) == pytest.approx(size / 64e9 + 1e-6)
    assert p2p_time("hgx-h100", 0, 5, size) == pytest.approx(size / 450e9 + 1e-6)


def test_torus_routes_take_the_shortest_way_round():
    _, graph = topology("tpu-v5e-256")
    routes = Routes(graph)
    assert len(routes.route(chip(0), chip(15))[0]) == 1  # wraparound on a full 16-axis
    assert len(routes.route(chip(0), chip(8 * 16 + 8))[0]) == 16  # 8 + 8 hops: the far corner
    assert graph.out_degree(chip(0)) == 4


def test_direct_allreduce_on_a_mesh_uses_every_link():
    _, graph = topology("mi300x-platform")
    env, net, routes = network_for(graph)
    size = 800e6
    env.run(env.process(run_collective(env, net, routes, collectives.direct_allreduce(
        [chip(i) for i in range(8)], size))))
    # two phases, each: every chip sends size/8 to each peer over its own 64 GB/s link
    assert env.now == pytest.approx(2 * (size / 8 / 64e9 + 1e-6))


def test_hierarchical_allreduce_moves_less_across_nodes_than_a_flat_ring():
    groups = [[chip(k * 8 + i) for i in range(8)] for k in range(2)]
    flat = collectives.ring_allreduce(groups[0] + groups[1], 1e6)
    hier = collectives.hierarchical_allreduce(groups, 1e6)
    _, graph = topology("h100-4x8-ndr400")

    def cross(coll):
        return sum(size for phase in coll for a, b, size in phase.flows
                   if graph.nodes[a]["node"] != graph.nodes[b]["node"])

    assert cross(hier) < cross(flat)
    assert [len(p.flows) for p in hier] == [16, 16, 16]


def _pipeline(write_scenario, p, m, schedule, *overrides, tp=2):
    # fast fabric so that sends are negligible; a decode-only closed loop keeps the batch constant
    path = write_scenario({
        "model": "llama-3.1-70b", "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
        "deployment": {"tensor_parallel": tp, "pipeline_parallel": p, "micro_batches": m, "weights_dtype": "fp8",
                       "pipeline_schedule": schedule},
        "workload.arrival": {"kind": "closed_loop", "users": 64},
        "workload.prompt_tokens": {"kind": "fixed", "value": 1},
        "workload.output_tokens": {"kind": "fixed", "value": 64},
        "workload.num_requests": 64})
    return run(load_scenario(path, list(overrides)))


@pytest.mark.parametrize("p, m, schedule, idle", [
    (4, 8, "flush", 3 / 11), (4, 4, "flush", 3 / 7),   # GPipe: (p - 1) / (m + p - 1)
    (4, 8, "in_flight", 0.0), (4, 2, "in_flight", 0.5),  # kept in flight: (p - m) / p, never below 0
])
def test_pipeline_of_p_stages_with_m_micro_batches_idles_as_its_schedule_says(write_scenario, p, m, schedule, idle):
    it = _pipeline(write_scenario, p, m, schedule).iterations
    steady = it[it["batch_size"] == 64]
    # stages are balanced within a few percent (embedding and lm_head stages take fewer layers)
    assert (steady["bubble_s"] / steady["duration_s"]).median() == pytest.approx(idle, abs=0.04)


@pytest.mark.parametrize("schedule", ["flush", "in_flight"])
def test_pipeline_closed_form_equals_the_flow_model(write_scenario, schedule):
    # TP1: only stage-to-stage sends, each on links of its own, so the closed form applies
    closed = _pipeline(write_scenario, 4, 8, schedule, tp=1)
    flows = _pipeline(write_scenario, 4, 8, schedule, "sim.collectives=layer", tp=1)
    assert closed.summary["network"]["closed_form_replicas"] == 1 > flows.summary["network"]["closed_form_replicas"]
    for key in ("ttft_s", "tpot_s"):
        assert closed.summary[key]["p50"] == pytest.approx(flows.summary[key]["p50"], rel=0.01)


def shared_spine(placement):
    # fine link buckets, so that some bucket lies inside an overlap of the all-reduces, however long the
    # compute between them is (it grows as the calibrated compute efficiency falls)
    path = REPO / "scenarios" / "contention-shared-spine.yaml"
    return run(load_scenario(path, [f"deployment.placement={placement}", "sim.link_buckets=1000"]))


def test_replicas_sharing_a_spine_link_are_slower_and_the_link_is_full_while_they_overlap():
    shared, separate = shared_spine("strided"), shared_spine("packed")
    s, p = shared.summary, separate.summary
    assert s["e2e_s"]["p50"] > 1.1 * p["e2e_s"]["p50"]
    assert s["throughput"]["output_tokens_per_s"] < 0.9 * p["throughput"]["output_tokens_per_s"]
    assert s["bottleneck_share"]["network"] > p["bottleneck_share"]["network"]
    # the contention is in the network time itself: two replicas' flows on one uplink get at least half its
    # bandwidth each, so an iteration's network time grows, but at most doubles (the same bytes cross at the
    # same per-link bandwidth whether packed or strided; one pair of extra hop latencies aside)
    network = shared.iterations["network_s"].mean() / separate.iterations["network_s"].mean()
    assert 1.3 < network < 2.0
    uplinks = shared.links[shared.links["link"] == "leaf0->spine0"]
    assert uplinks["utilization"].max() > 0.9
    busy = uplinks[uplinks["utilization"] > 0]
    assert (busy["utilization"] > 0.9).mean() > 0.5  # full for most of the time it carries anything
    assert not separate.links["link"].str.contains("spine").any()
    assert shared.summary["network"]["busiest_link"] in ("leaf0->spine0", "spine0->leaf1", "leaf1->spine0",
                                                          "spine0->leaf0")


def test_tp8_is_fastest_per_user_and_tp2x4_gives_most_throughput_per_chip():
    path = REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml"
    lengths = ["workload.prompt_tokens={kind: fixed, value: 512}", "workload.output_tokens={kind: fixed, value: 128}"]

    def measure(tp, replicas, users, requests):
        s = run(load_scenario(path, lengths + [f"deployment.tensor_parallel={tp}", f"deployment.replicas={replicas}",
                                               f"workload.arrival={{kind: closed_loop, users: {users}}}",
                                               f"workload.num_requests={requests}"])).summary
        return s["tpot_s"]["p50"], s["throughput"]["output_tokens_per_s_per_chip"]

    single_user = {tp: measure(tp, 8 // tp, 1, 4)[0] for tp in (8, 4, 2)}
    saturated = {tp: measure(tp, 8 // tp, 512, 1024)[1] for tp in (8, 4, 2)}
    assert single_user[8] < single_user[4] < single_user[2]  # per-user speed: TP8 best
    assert saturated[2] > saturated[4] > saturated[8]  # throughput per chip: TP2 x 4 best


def test_bytes_sent_equal_bytes_received_on_a_tp_run():
    result = run(load_scenario(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml",
                               ["workload.num_requests=50"]))
    links = result.links
    assert result.summary["network"]["link_bytes"] == pytest.approx(links["bytes"].sum())
    ups = links[links["link"].str.startswith("c")]["bytes"].sum()
    downs = links[links["link"].str.contains("->c")]["bytes"].sum()
    assert ups == pytest.approx(downs)  # through the switch: every byte out of a chip goes into one
    assert np.all(links["utilization"] <= 1 + 1e-9)


def test_closed_form_iterations_equal_the_flow_model():
    # per-layer collectives always run as flows; per-iteration ones on private links use the closed form
    path = REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml"
    fast = run(load_scenario(path, ["workload.num_requests=60"]))
    flows = run(load_scenario(path, ["workload.num_requests=60", "sim.collectives=layer"]))
    assert fast.summary["network"]["closed_form_replicas"] == 1
    assert flows.summary["network"]["closed_form_replicas"] == 0
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert fast.summary[key]["p50"] == pytest.approx(flows.summary[key]["p50"], rel=1e-6)
    assert fast.summary["network"]["link_bytes"] == pytest.approx(flows.summary["network"]["link_bytes"])
    assert flows.summary["sim"]["events"] > 10 * fast.summary["sim"]["events"]


def test_expert_parallel_load_imbalance_makes_moe_iterations_slower_than_an_even_split():
    path = REPO / "scenarios" / "default.yaml"
    base = ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=8",
            "workload.num_requests=200", "workload.arrival={kind: closed_loop, users: 64}"]
    even = run(load_scenario(path, base)).iterations
    ep = run(load_scenario(path, base + ["deployment.expert_parallel=8"])).iterations
    # same FLOPs in total, but each layer waits for the busiest expert rank
    decode = lambda it: it[(it["prefill_tokens"] == 0) & (it["batch_size"] == 64)]  # noqa: E731
    assert decode(ep)["compute_s"].mean() > decode(even)["compute_s"].mean()
    with pytest.raises(Exception, match="expert_parallel: 8 for llama-3.1-8b: it has no experts"):
        run(load_scenario(path, ["deployment.expert_parallel=8", "cluster=hgx-h100", "deployment.tensor_parallel=8"]))
