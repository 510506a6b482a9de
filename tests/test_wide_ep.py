"""Attention data parallelism x wide expert parallelism: placement, the all-to-all dispatch and combine (bytes,
closed form, flows on the links), and the errors for layouts that cannot be built."""

import pytest
import simpy

from simulator import load_scenario, run
from simulator.config.cluster import TopologySpec
from simulator.config.load import load_chip, validate
from simulator.engine.link import Network
from simulator.engine.replica import run_collective
from simulator.errors import ScenarioError
from simulator.hardware.collectives import uncontended_s
from simulator.hardware.model import DTYPE_BYTES
from simulator.hardware.moe_traffic import dispatch_combine
from simulator.hardware.prepare import prepare
from simulator.hardware.roofline import ACTIVATION_BYTES
from simulator.hardware.topology import Routes, build_graph, chip

B, A, N = 450e9, 1e-6, 8
MIXTRAL_DP8 = ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=1",
               "deployment.data_parallel_attention=8", "deployment.expert_parallel=8", "workload.num_requests=24",
               "serving.batcher.max_batch_size=32"]


def switch_node():
    spec = validate(TopologySpec, {"name": "t", "chip": "h100-sxm", "chips_per_node": N, "scaleup": {
        "kind": "switch", "bandwidth_per_dir": B, "hop_latency": A, "source": "test"}}, "t")
    return build_graph(spec, load_chip("h100-sxm")), [chip(i) for i in range(N)]


def test_dispatch_and_combine_move_tokens_x_hidden_x_top_k_x_bytes_each():
    tokens, hidden, top_k = 300, 4096, 2
    size = tokens * hidden * ACTIVATION_BYTES
    _, chips = switch_node()
    dispatch, combine = dispatch_combine(chips, top_k)(size)
    for phase in (dispatch, combine):
        crossing = sum(nbytes for _, _, nbytes in phase.flows)
        # each chip keeps the 1/n for its own experts: the rest crosses the switch
        assert crossing == pytest.approx(tokens * hidden * top_k * ACTIVATION_BYTES * (N - 1) / N)


def test_all_to_all_of_8_ranks_on_a_switch_has_its_closed_form_time():
    """Per phase each port carries the chip's buffer X = T h k e / n less its own share: (n-1)/n X / B + a."""
    graph, chips = switch_node()
    size, top_k = 8192 * 7168 * ACTIVATION_BYTES, 8
    x = size * top_k / N
    expected = 2 * ((N - 1) / N * x / B + A)
    collective = dispatch_combine(chips, top_k)(size)
    routes = Routes(graph)
    capacity = {d["id"]: d["bw"] for _, _, d in graph.edges(data=True)}
    assert uncontended_s(collective, routes.route, capacity)[0] == pytest.approx(expected, rel=1e-12)
    env = simpy.Environment()
    net = Network(env, capacity)
    env.run(env.process(run_collective(env, net, routes, collective)))
    assert env.now == pytest.approx(expected, rel=1e-9)


def test_data_parallel_attention_places_dense_weights_per_rank_and_experts_once():
    prepared = prepare(load_scenario("scenarios/default.yaml", MIXTRAL_DP8))
    plan, model = prepared.plan, prepared.model
    wbytes = DTYPE_BYTES[plan.weights_dtype]
    routed = model.n_moe_layers * model.n_experts * model.expert_params * wbytes
    assert plan.chips_per_replica == 8 and plan.stage_width == 8 and plan.expert_tp == 1
    assert plan.weight_bytes_per_chip == pytest.approx(model.total_params * wbytes - routed + routed / 8)
    # each DP rank its own KV-cache: 8 chips' worth of blocks
    per_chip_blocks = int(plan.kv_capacity_bytes_per_chip
                          // (plan.kv_bytes_per_token_per_chip * plan.kv_block_tokens))
    assert plan.kv_capacity_tokens == 8 * per_chip_blocks * plan.kv_block_tokens


def test_the_all_to_all_is_on_the_links_with_its_bytes():
    result = run(load_scenario("scenarios/default.yaml", MIXTRAL_DP8))
    model = prepare(load_scenario("scenarios/default.yaml", MIXTRAL_DP8)).model
    it, links = result.iterations, result.links
    tokens = float((it["prefill_tokens"] + it["decode_tokens"]).sum())
    sent = 2 * tokens * model.d_model * model.top_k * ACTIVATION_BYTES * (N - 1) / N * model.n_moe_layers
    into_switch = links[links["dst"] == "n0/sw"]["bytes"].sum()  # every flow crosses one chip -> switch port
    assert into_switch == pytest.approx(sent, rel=1e-9)
    assert result.summary["requests"]["completed"] == 24


@pytest.mark.parametrize("overrides, message", [
    (["model=llama-3.1-8b", "deployment.data_parallel_attention=8", "deployment.expert_parallel=8"],
     "deployment.data_parallel_attention: 8 for llama-3.1-8b: it has no experts"),
    (["model=mixtral-8x7b", "deployment.data_parallel_attention=8", "deployment.expert_parallel=4"],
     "deployment.data_parallel_attention: 8 for mixtral-8x7b: needs expert_parallel = data_parallel_attention "
     "x tensor_parallel (8), got 4"),
    (["model=mixtral-8x7b", "deployment.tensor_parallel=8", "deployment.expert_parallel=3"],
     "deployment.expert_parallel: 3 for mixtral-8x7b: allowed: 1, 2, 4, 8 (divisors of tensor_parallel 8 that "
     "divide the 8 experts), or data_parallel_attention x tensor_parallel with attention data parallelism"),
])
def test_layouts_that_cannot_be_built_say_why(overrides, message):
    with pytest.raises(ScenarioError) as exc:
        prepare(load_scenario("scenarios/default.yaml", ["cluster=hgx-h100", *overrides]))
    assert str(exc.value).endswith(message)


def test_wide_ep_across_two_nodes_puts_half_the_all_to_all_on_the_nics():
    """16 ranks on 2 nodes: of each chip's dispatch and combine, 7/16 goes over NVLink to its node's other
    chips, 8/16 over its NIC to the other node's."""
    path = "scenarios/deepseek-r1-wide-ep-2xhgx.yaml"
    result = run(load_scenario(path, ["workload.num_requests=6"]))
    model = prepare(load_scenario(path)).model
    it, links = result.iterations, result.links
    tokens = float((it["prefill_tokens"] + it["decode_tokens"]).sum())
    volume = 2 * tokens * model.d_model * model.top_k * ACTIVATION_BYTES * model.n_moe_layers
    nic = links[links["link"].str.match(r"c\d+->leaf0$")]["bytes"].sum()
    nvlink = links[links["link"].str.match(r"c\d+->n\d/sw$")]["bytes"].sum()
    assert nic == pytest.approx(volume * 8 / 16, rel=1e-9)
    assert nvlink == pytest.approx(volume * 7 / 16, rel=1e-9)
