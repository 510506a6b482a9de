"""Size- and topology-aware all-reduce selection: each algorithm's closed form against hand computation, the
flow model against the closed form, and which algorithm wins at which size."""

import pytest
import simpy

from simulator import load_scenario
from simulator.config.cluster import TopologySpec
from simulator.config.load import load_chip, validate
from simulator.engine.link import Network
from simulator.engine.replica import run_collective
from simulator.errors import ScenarioError
from simulator.hardware.allreduce import BASE_S, CUSTOM_MAX_BYTES, allreduce_for
from simulator.hardware.prepare import prepare
from simulator.hardware.topology import Routes, build_graph, chip
from simulator.studies.explain import decode_step

B = 400e9  # bytes/s per port (switch) or per link (mesh), per direction
A = 1e-6   # s per hop, chip to chip
N = 8


def group(kind: str, reduces: bool = False):
    up = {"kind": kind, "bandwidth_per_dir": B, "hop_latency": A, "source": "test"}
    if reduces:
        up["in_switch_reduction"] = True
    spec = validate(TopologySpec, {"name": "t", "chip": "h100-sxm", "chips_per_node": N, "scaleup": up}, "t")
    graph = build_graph(spec, load_chip("h100-sxm"))
    chips = [chip(i) for i in range(N)]
    return graph, chips, allreduce_for(graph, chips)


def by_name(allreduce):
    return {a.name: a for a in allreduce.algorithms}


@pytest.mark.parametrize("kind, reduces, expected", [
    ("switch", True, {"ring": (2 * (N - 1), 2 * (N - 1) / N), "tree": (6, 2.0), "one-shot": (1, N - 1.0),
                      "two-shot": (2, 2 * (N - 1) / N), "nvls": (2, (N + 1) / N)}),
    ("mesh", False, {"ring": (2 * (N - 1), 2 * (N - 1) / N), "tree": (6, 1.0), "one-shot": (1, 1.0),
                     "two-shot": (2, 2 / N)}),
])
def test_closed_forms_match_hand_computation(kind, reduces, expected):
    """alpha = NCCL's fixed latency + hops x A, beta = bytes through the busiest port or link per byte of
    buffer / B (see the table in hardware/allreduce.py's docstring)."""
    _, _, allreduce = group(kind, reduces)
    found = by_name(allreduce)
    assert set(found) == set(expected)
    for name, (hops, per_byte) in expected.items():
        assert found[name].alpha_s == pytest.approx(BASE_S[name] + hops * A), name
        assert found[name].beta_s_per_byte == pytest.approx(per_byte / B), name


@pytest.mark.parametrize("kind, reduces", [("switch", True), ("switch", False), ("mesh", False)])
@pytest.mark.parametrize("size", [4e3, 2e6, 256e6])
def test_the_flow_model_takes_the_chosen_algorithms_closed_form(kind, reduces, size):
    graph, _, allreduce = group(kind, reduces)
    env = simpy.Environment()
    net = Network(env, {d["id"]: d["bw"] for _, _, d in graph.edges(data=True)})
    env.run(env.process(run_collective(env, net, Routes(graph), allreduce(size))))
    assert env.now == pytest.approx(allreduce.algorithms[allreduce.choose(size)].seconds(size), rel=1e-9)


@pytest.mark.parametrize("kind, reduces", [("switch", True), ("switch", False), ("mesh", False)])
def test_small_messages_beat_the_ring(kind, reduces):
    """At 8 kB (one token of a 4096-wide model in 16 bits) the ring's 14 hop latencies dominate: one-shot
    takes 7.6 us against its 20.6."""
    _, _, allreduce = group(kind, reduces)
    chosen = allreduce.algorithms[allreduce.choose(8e3)]
    assert chosen.name == "one-shot"
    assert chosen.seconds(8e3) < by_name(allreduce)["ring"].seconds(8e3) / 2.5


def test_large_messages_go_to_nvls_where_the_switch_reduces_and_to_the_ring_where_it_does_not():
    size = 256e6  # beyond the custom kernels' buffer: NCCL's algorithms only
    _, _, nvls = group("switch", True)
    assert nvls.algorithms[nvls.choose(size)].name == "nvls"
    _, _, plain = group("switch", False)
    assert plain.algorithms[plain.choose(size)].name == "ring"
    # the ring's smaller bandwidth term (2(n-1)/n against 2) pays its 8 more hops back past
    # (8 A + 6.6 - 6.8 us) / (0.25 / B), 12.48 MB: NCCL's switch from tree to ring
    crossing = (8 * A + BASE_S["ring"] - BASE_S["tree"]) / (0.25 / B)
    assert crossing == pytest.approx(12.48e6) and crossing > CUSTOM_MAX_BYTES
    assert plain.algorithms[plain.choose(1.01 * crossing)].name == "ring"
    assert plain.algorithms[plain.choose(0.99 * crossing)].name == "tree"


def test_custom_kernels_stop_at_their_buffer_on_a_switch():
    _, _, allreduce = group("switch", False)
    assert allreduce.algorithms[allreduce.choose(CUSTOM_MAX_BYTES)].name == "two-shot"
    assert allreduce.algorithms[allreduce.choose(CUSTOM_MAX_BYTES + 1)].name != "two-shot"


def test_in_switch_reduction_needs_a_switch():
    with pytest.raises(ScenarioError) as exc:
        group("mesh", True)
    assert str(exc.value) == "t: scaleup.in_switch_reduction needs kind: switch, not mesh"


def network_ms(cluster: str) -> float:
    scenario = load_scenario("scenarios/default.yaml", ["model=mixtral-8x7b", f"cluster={cluster}",
                                                        "deployment.tensor_parallel=8"])
    return decode_step(prepare(scenario), scenario, 1, 1024).network_s * 1e3


def test_issue_19_mixtral_tp8_batch1_h100_all_reduce_no_longer_pays_a_ring():
    """Issue 19: at batch 1 a mesh all-reduce paid 2 hop latencies and a ring on NVSwitch 14, so MI300X
    looked 1.9x faster than H100 on Mixtral TP8 (network 0.131 vs 0.899 ms per step). Both now run the
    one-shot all-reduce of an 8 kB buffer: its fixed latency and one hop, 64 of them per step."""
    h100, mi300x = network_ms("hgx-h100"), network_ms("mi300x-platform")
    assert h100 == pytest.approx(64 * (BASE_S["one-shot"] + 1e-6) * 1e3, rel=0.05)  # ms
    assert h100 == pytest.approx(mi300x, rel=0.05)
