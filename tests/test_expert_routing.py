"""The routing model: uniform at skew 0 within sampling error, the busiest rank loaded more as skew grows,
EPLB with redundant experts evening it out; and the scenario keys that choose them."""

import numpy as np
import pytest

from simulator import load_scenario, run
from simulator.errors import ScenarioError
from simulator.hardware.expert_routing import POOL_DRAWS, ExpertRouter, eplb, inclusion, zipf_probabilities
from simulator.hardware.prepare import prepare

E, K, RANKS, LAYERS, TOKENS = 256, 8, 8, 4, 512  # DeepSeek-V3's routing, 8 expert-parallel ranks


def mean_busiest(router, draws=200, seed=0):
    rng = np.random.default_rng(seed)
    return np.mean([router.draw(TOKENS, rng)[0] for _ in range(draws)]) / LAYERS


def test_a_token_counts_pool_holds_its_first_draws_and_later_steps_pick_among_them():
    router = ExpertRouter(E, K, LAYERS, RANKS, skew=1.0, rng=np.random.default_rng(3))
    rng = np.random.default_rng(4)
    first = [router.busiest(TOKENS, rng) for _ in range(POOL_DRAWS)]
    fresh = ExpertRouter(E, K, LAYERS, RANKS, skew=1.0, rng=np.random.default_rng(3))
    assert first == [fresh.draw(TOKENS, r) for r in [np.random.default_rng(4)] for _ in range(POOL_DRAWS)]
    later = [router.busiest(TOKENS, rng) for _ in range(500)]
    assert set(later) <= set(first) and len(set(later)) > POOL_DRAWS // 2  # picks spread over the pool
    other = [router.busiest(TOKENS + 1, rng) for _ in range(3)]
    assert len(set(other)) == 3 and not set(other) & set(first)  # another token count: fresh draws of its own


def test_inclusion_probabilities_sum_to_top_k_and_never_exceed_one():
    rng = np.random.default_rng(1)
    for skew in (0.0, 0.5, 1.0, 2.0, 4.0):
        pi = inclusion(zipf_probabilities(E, LAYERS, skew, rng), K)
        assert np.allclose(pi.sum(axis=1), K) and pi.max() <= 1.0


def test_skew_zero_matches_uniform_routing_within_sampling_error():
    router = ExpertRouter(E, K, LAYERS, RANKS)
    rng = np.random.default_rng(2)
    counts = np.array([rng.binomial(TOKENS, router.pi) for _ in range(400)])  # (draws, layers, experts)
    per_expert = counts.mean(axis=0)
    expected = TOKENS * K / E
    sigma = np.sqrt(TOKENS * K / E * (1 - K / E) / 400)
    assert np.abs(per_expert - expected).max() < 5 * sigma
    # each rank expects TOKENS x K / RANKS routed tokens; the busiest of 8 sits a little above it
    busiest = mean_busiest(router)
    mean_rank = TOKENS * K / RANKS
    assert mean_rank < busiest < mean_rank + 4 * np.sqrt(mean_rank)


def test_high_skew_raises_the_busiest_ranks_load_and_eplb_evens_it_out():
    skewed = ExpertRouter(E, K, LAYERS, RANKS, skew=1.2, rng=np.random.default_rng(3))
    balanced = ExpertRouter(E, K, LAYERS, RANKS, skew=1.2, balance="eplb", redundant=32,
                            rng=np.random.default_rng(3))
    uniform = mean_busiest(ExpertRouter(E, K, LAYERS, RANKS))
    assert mean_busiest(skewed) > 1.3 * uniform
    assert mean_busiest(balanced) < 0.85 * mean_busiest(skewed)


def test_eplb_gives_every_rank_its_slots_and_every_expert_a_home():
    load = inclusion(zipf_probabilities(E, 1, 1.0, np.random.default_rng(4)), K)[0]
    share = eplb(load, RANKS, 16)
    assert np.allclose(share.sum(axis=0), 1.0)  # all of each expert's tokens go somewhere
    assert ((share > 0).sum(axis=1) == (E + 16) // RANKS).all()  # every rank fills its slots


BASE = ["model=mixtral-8x7b", "cluster=hgx-h100", "deployment.tensor_parallel=8", "deployment.expert_parallel=8",
        "workload.num_requests=16"]


def test_a_skewed_run_is_slower_than_a_uniform_one():
    uniform = run(load_scenario("scenarios/default.yaml", BASE)).summary
    skewed = run(load_scenario("scenarios/default.yaml", [*BASE, "deployment.expert_routing.skew=2"])).summary
    assert skewed["tpot_s"]["p50"] > uniform["tpot_s"]["p50"]


@pytest.mark.parametrize("overrides, message", [
    (["model=mixtral-8x7b", "deployment.expert_routing.skew=1"],
     "deployment.expert_routing: skew, loads and balance shape the load of expert-parallel ranks; they need "
     "expert_parallel > 1"),
    ([*BASE, "deployment.expert_routing.balance=eplb", "deployment.expert_routing.redundant_experts=4"],
     "deployment.expert_routing.redundant_experts: 4 copies do not fill the 8 expert-parallel ranks evenly; "
     "allowed: a multiple of 8"),
    ([*BASE, "deployment.expert_routing.redundant_experts=8"],
     "deployment.expert_routing: redundant_experts needs balance: eplb (something must place the copies)"),
])
def test_routing_settings_that_cannot_apply_say_why(overrides, message):
    with pytest.raises(ScenarioError) as exc:
        prepare(load_scenario("scenarios/default.yaml", overrides))
    assert str(exc.value).endswith(message)


def write_loads(tmp_path, lines):
    path = tmp_path / "loads.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_measured_loads_route_to_the_hot_experts(tmp_path):
    """Mixtral's 8 experts, all traffic on experts 0 and 1 of every layer (one line for all): with EP 8 the
    two ranks holding them get every token, so steps are slower than with uniform routing."""
    hot = write_loads(tmp_path, ["# expert loads, one line for every layer", "5,5,0,0,0,0,0,0"])
    uniform = run(load_scenario("scenarios/default.yaml", BASE)).summary
    skewed = run(load_scenario("scenarios/default.yaml", [*BASE, f"deployment.expert_routing.loads={hot}"])).summary
    assert skewed["tpot_s"]["p50"] > uniform["tpot_s"]["p50"]
    router = ExpertRouter(8, 2, 3, 8, loads=np.tile([[0.5, 0.5, 0, 0, 0, 0, 0, 0]], (3, 1)))
    assert router.busiest(100, np.random.default_rng(0)) == (300.0, 3.0)  # 100 tokens on each layer's expert 0


@pytest.mark.parametrize("lines, problem", [
    (["1,2,3"], "{path} line 1: 3 values; the model has 8 experts"),
    (["1,2,3,4,5,6,7,x"], "{path} line 1: not all numbers"),
    (["0,0,0,0,0,0,0,0"], "{path} line 1: loads must be finite, non-negative and not all zero"),
    (["1,1,1,1,1,1,1,1"] * 2, "{path}: 2 lines of loads; allowed: 1 (every layer) or 32 (one per MoE layer)"),
])
def test_a_bad_loads_file_is_one_line_naming_it(tmp_path, lines, problem):
    path = write_loads(tmp_path, lines)
    with pytest.raises(ScenarioError) as exc:
        prepare(load_scenario("scenarios/default.yaml", [*BASE, f"deployment.expert_routing.loads={path}"]))
    assert str(exc.value) == "scenarios/default.yaml: deployment.expert_routing.loads: " + problem.format(path=path)
