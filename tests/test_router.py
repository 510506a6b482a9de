"""Routers across replicas: even spreading, load-aware choices, session and prefix affinity, wiring."""

import json
from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.serving import Affinity
from simulator.errors import ScenarioError
from simulator.serving.router import (
    AffinityRouter,
    LeastOutstandingTokensRouter,
    ReplicaView,
    RoundRobinRouter,
    ShortestQueueRouter,
    stable_hash,
)
from simulator.workload.arrivals import Requests


def fake_batchers(n):
    return [SimpleNamespace(waiting=deque(), running={}) for _ in range(n)]


def requests(prompt, output, users=0, prefixes=None):
    n = len(prompt)
    return Requests(np.full(n, np.nan) if users else np.arange(n, dtype=float), np.asarray(prompt),
                    np.asarray(output), closed_loop_users=users, prefix_hashes=prefixes)


def test_round_robin_spreads_evenly():
    router = RoundRobinRouter(3)
    assert [router.route(rid) for rid in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_least_outstanding_tokens_counts_prompt_and_output_until_release():
    reqs = requests([1000, 10, 10, 10], [1000, 10, 10, 10])
    view = ReplicaView(fake_batchers(2), reqs)
    router = LeastOutstandingTokensRouter(view)
    chosen = []
    for rid in range(3):
        chosen.append(router.route(rid))
        view.assign(rid, chosen[-1])
    assert chosen == [0, 1, 1]  # the long request keeps replica 0 busy; both short ones go to replica 1
    assert view.outstanding == [2000, 40]
    view.release([0])
    assert view.outstanding == [0, 40] and router.route(3) == 0


def test_shortest_queue_reads_waiting_and_running():
    batchers = fake_batchers(3)
    view = ReplicaView(batchers, requests([1] * 4, [1] * 4))
    router = ShortestQueueRouter(view)
    batchers[0].waiting.extend([7, 8])
    batchers[1].running.update({9: None})
    assert router.route(0) == 2
    batchers[2].waiting.extend([1, 2, 3])
    assert router.route(1) == 1


def test_ties_rotate_so_idle_replicas_take_turns():
    view = ReplicaView(fake_batchers(3), requests([1] * 6, [1] * 6))
    router = LeastOutstandingTokensRouter(view)
    assert [router.route(rid) for rid in range(6)] == [0, 1, 2, 0, 1, 2]  # nothing assigned: all tied


def test_affinity_keeps_a_closed_loop_session_on_one_replica():
    reqs = requests([10] * 40, [10] * 40, users=4)
    view = ReplicaView(fake_batchers(3), reqs)
    router = AffinityRouter(Affinity(kind="affinity"), view, reqs)
    user_of = {rid: rid for rid in range(4)}
    for rid in range(4, 40):  # request rid continues the session of request rid - 4
        view.follow(rid, rid - 4)
        user_of[rid] = user_of[rid - 4]
    replica_of_user = {}
    for rid in range(40):
        replica = router.route(rid)
        view.assign(rid, replica)
        assert replica_of_user.setdefault(user_of[rid], replica) == replica
    assert replica_of_user == {u: stable_hash((0, u)) % 3 for u in range(4)}
    assert router.sticky == 40 and router.fallbacks == 0


def test_affinity_falls_back_to_least_outstanding_when_the_chosen_queue_is_much_longer():
    prefixes = tuple((7, 1, 100 + i) for i in range(3))  # one prefix (first 2 blocks) for all
    reqs = requests([10] * 3, [10] * 3, prefixes=prefixes)
    batchers = fake_batchers(2)
    view = ReplicaView(batchers, reqs)
    router = AffinityRouter(Affinity(kind="affinity", max_queue_gap=4, max_queue_ratio=2), view, reqs)
    home = stable_hash((1, 7, 1)) % 2
    assert router.route(0) == home
    batchers[home].waiting.extend(range(5))  # 5 longer than the other's 0: gap 5 > 4 and 5 > 2 x 0
    assert router.route(1) == 1 - home and router.fallbacks == 1
    batchers[1 - home].waiting.extend(range(3))  # gap 2 <= 4: back home
    assert router.route(2) == home


def test_stable_hash_is_fixed_across_runs_and_machines():
    assert stable_hash((0, 1)) == stable_hash((0, 1)) != stable_hash((1, 0))
    assert stable_hash((0, 1)) == 0x70A94C03EEAA82EB  # BLAKE2b, not Python's salted hash()


# ---------------------------------------------------------------- whole runs

@pytest.fixture
def alternating(tmp_path):
    """2 replicas (TP1 on an HGX H100), requests every 100 ms alternating long (2,000 + 400 tokens) and short
    (100 + 20): round robin sends every long request to replica 0. Sessions of 10 requests share a prefix."""
    rows = [{"timestamp": i * 100.0, "input_length": 2000 if i % 2 == 0 else 100,
             "output_length": 400 if i % 2 == 0 else 20, "hash_ids": [i // 10, 500 + i // 10, 1000 + i]}
            for i in range(200)]
    trace = tmp_path / "alt.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    scenario = {"name": "alternating", "seed": 1, "model": "llama-3.1-8b",
                "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
                "deployment": {"tensor_parallel": 1, "replicas": 2},
                "serving": {"batcher": {"kind": "continuous", "max_batch_size": 16,
                                        "max_batched_tokens": 4096}},
                "workload": {"arrival": {"kind": "trace", "format": "mooncake", "path": str(trace)}}}
    path = tmp_path / "alt.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def routed(path, kind):
    return run(load_scenario(path, [f"serving.router.kind={kind}"]))


def test_load_aware_routers_beat_round_robin_on_alternating_lengths(alternating):
    rr = routed(alternating, "round_robin")
    long_rr = rr.requests[rr.requests["prompt_tokens"] == 2000]
    assert set(long_rr["replica"]) == {0} and (rr.requests.groupby("replica").size() == 100).all()
    for kind in ("least_outstanding_tokens", "shortest_queue"):
        other = routed(alternating, kind)
        long_other = other.requests[other.requests["prompt_tokens"] == 2000]
        assert long_other.groupby("replica").size().min() >= 40  # long requests on both replicas
        for metric in ("ttft_s", "e2e_s"):
            assert other.summary[metric]["p99"] < 0.7 * rr.summary[metric]["p99"], (kind, metric)


def test_affinity_runs_each_prefix_session_on_one_replica(alternating):
    result = routed(alternating, "affinity")
    req = result.requests.assign(session=np.arange(200) // 10)
    assert (req.groupby("session")["replica"].nunique() == 1).all()
    assert req["replica"].nunique() == 2
    assert result.summary["requests"]["completed"] == 200


def test_routing_is_deterministic(alternating):
    a, b = routed(alternating, "shortest_queue"), routed(alternating, "shortest_queue")
    assert a.requests["replica"].tolist() == b.requests["replica"].tolist()
    assert a.summary["e2e_s"] == b.summary["e2e_s"]


def test_unknown_router_kind_is_one_line(write_scenario):
    with pytest.raises(ScenarioError) as err:
        load_scenario(write_scenario({"serving.router": {"kind": "random"}}))
    assert str(err.value).endswith("serving.router.kind: 'random' is not one of: affinity, "
                                   "least_outstanding_tokens, round_robin, shortest_queue")
    with pytest.raises(ScenarioError) as err:
        load_scenario(write_scenario({"serving.router": {"kind": "affinity", "prefix_blocks": 0}}))
    assert str(err.value).endswith("serving.router.prefix_blocks: must be >= 1, got 0")
