"""A pipelined replica whose links carry only its own traffic is timed by replaying its micro-batch schedule
(engine/iteration.py `pipeline_time`), iterations where its own transfers would share a link running as
flows: the requests' timestamps must be the flow model's, in every schedule."""

import numpy as np
import pytest
from conftest import REPO

from simulator import load_scenario, run
from simulator.engine import iteration
from simulator.engine.cluster import Cluster


def _scenario(write_scenario, p, m, schedule, tp):
    return write_scenario({
        "model": "llama-3.1-70b", "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
        "deployment": {"tensor_parallel": tp, "pipeline_parallel": p, "micro_batches": m, "weights_dtype": "fp8",
                       "pipeline_schedule": schedule},
        "workload.arrival": {"kind": "poisson", "rate": "4 /s"},
        "workload.prompt_tokens": {"kind": "uniform", "low": 16, "high": 2000},
        "workload.output_tokens": {"kind": "uniform", "low": 1, "high": 100},
        "workload.num_requests": 60})


@pytest.mark.parametrize("p, m, schedule, tp", [
    (4, 8, "in_flight", 1), (4, 8, "flush", 1), (3, 2, "in_flight", 1),  # sends only: each on links of its own
    (2, 2, "in_flight", 2), (2, 4, "flush", 2),  # sends share the switch links with the all-reduces
])
def test_pipelined_closed_form_gives_the_flow_models_timestamps(write_scenario, monkeypatch, p, m, schedule, tp):
    path = _scenario(write_scenario, p, m, schedule, tp)
    replayed = {"closed": 0, "flows": 0}
    replay = iteration.pipeline_time

    def counted(*args):
        duration = replay(*args)
        replayed["closed" if duration is not None else "flows"] += 1
        return duration

    monkeypatch.setattr(iteration, "pipeline_time", counted)
    closed = run(load_scenario(path))
    assert closed.summary["network"]["closed_form_replicas"] == 1
    assert replayed["closed"] + replayed["flows"] > 50
    if tp == 1:
        assert replayed["flows"] == 0  # nothing shares a link: every iteration in closed form
    monkeypatch.setattr(Cluster, "_private_replicas", lambda self, stages, shared: set())
    flows = run(load_scenario(path))
    assert flows.summary["network"]["closed_form_replicas"] == 0
    assert closed.summary["requests"] == flows.summary["requests"]
    columns = ["arrival_s", "first_token_s", "finish_s"]
    a, b = closed.requests[columns].to_numpy(), flows.requests[columns].to_numpy()
    # not bit-identical: the closed form adds a transfer's time as one linear form where the flows add each
    # phase's bytes/rate and latency at the clock's time, so the last bits differ (~1e-16 relative per
    # iteration, accumulated over the run)
    assert np.allclose(a, b, rtol=1e-9, atol=0.0, equal_nan=True)
    assert closed.summary["network"]["link_bytes"] == pytest.approx(flows.summary["network"]["link_bytes"], rel=1e-9)


def test_the_replay_is_the_cyclic_pipelines_period_on_balanced_stages():
    # p balanced stages kept in flight with m >= p micro-batches: every stage busy all the time, m passes each
    step = (1.0, 0.0, 0.0, 0.0)
    assert iteration.pipeline_time([step] * 4, 8, True, frozenset()) == pytest.approx(8.0)
    # drained each iteration: GPipe's (m + p - 1) passes
    assert iteration.pipeline_time([step] * 4, 8, False, frozenset()) == pytest.approx(11.0)


def test_the_replay_declines_when_a_send_would_move_bytes_beside_an_all_reduces_on_a_shared_link():
    # stage 1 slower than stage 0: micro-batch 1 leaves stage 0 (and sends) while micro-batch 0's all-reduce
    # runs on stage 1; they share the receiving chips' links (classes 1 and 2)
    stages = [(1.0, 0.1, 0.01, 0.0), (1.0, 0.5, 0.0, 0.0)]
    # micro-batch 1: stage 1 over [0, 1.5], stage 0 over [1.5, 2.6], sends over [2.6, 2.61]; micro-batch 0:
    # stage 0, sends over [1.1, 1.11], stage 1 over [1.5, 3.0] with its all-reduce over [2.5, 3.0]
    assert iteration.pipeline_time(stages, 2, True, frozenset({(1, 2), (2, 1)})) is None
    assert iteration.pipeline_time(stages, 2, True, frozenset({(0, 0), (2, 2)})) == pytest.approx(3.0)
    # with the transfers' phases (bytes per activation byte, latency wait, uncontended rate): the send's bytes
    # (from 2.6) meet the all-reduce's only if they move then: over [2.5, 3.0] they do; over [2.5, 2.55],
    # followed by a 0.45 s wait, they do not, and the iteration takes its uncontended 3.0
    moving = [(None, ((0.01, 0.0, 1.0),)), (((0.5, 0.0, 1.0),), None)]
    waiting = [(None, ((0.01, 0.0, 1.0),)), (((0.05, 0.45, 1.0),), None)]
    assert iteration.pipeline_time(stages, 2, True, frozenset({(1, 2), (2, 1)}), 1.0, moving) is None
    assert iteration.pipeline_time(stages, 2, True, frozenset({(1, 2), (2, 1)}), 1.0, waiting) == pytest.approx(3.0)


class _Star:
    """Chips a, b, c, d on one switch s: each chip's link to and from it, 1 us a hop."""

    def route(self, src, dst):
        return (f"{src}->s", f"s->{dst}"), 2e-6


@pytest.mark.parametrize("offset", [-3e-6, 0.0, 1e-6, 2.5e-6, 7e-6, 19.9e-6, 25e-6, 31e-6, 40e-6])
def test_a_send_alone_while_the_all_reduce_waits_takes_its_uncontended_time_in_the_flow_model(offset):
    # a send (a->b, c->d) and the ring all-reduce of b and d share the switch links into b and d; the replay
    # treats both as uncontended unless their byte windows (`_windows`) overlap: the flow model must agree
    import simpy

    from simulator.engine.link import Network
    from simulator.engine.replica import run_collective
    from simulator.hardware.collectives import Phase, repeated, ring_allreduce

    routes, size = _Star(), 4e5
    capacity = {f"{x}->s": 1e11 for x in "abcd"} | {f"s->{x}": 1e11 for x in "abcd"}
    capacity["s->d"] = 6e10  # a slower link, so that the shares are not all equal
    send = (Phase((("a", "b", 0.5), ("c", "d", 0.5)), 1),)
    allreduce = repeated(ring_allreduce(["b", "d"], 1.0), 3) + (Phase((("b", "c", 0.25),), 2, 1e-6),)

    def scaled(collective):
        return tuple(Phase(tuple((x, y, n * size) for x, y, n in p.flows), p.steps, p.base_s) for p in collective)

    env = simpy.Environment()
    network = Network(env, capacity)
    ends = {}

    def start(name, collective, at):
        yield env.timeout(at)
        yield from run_collective(env, network, routes, scaled(collective))
        ends[name] = env.now

    t_send, t_ar = 5e-6 + offset, 5e-6
    env.process(start("send", send, t_send))
    env.process(start("allreduce", allreduce, t_ar))
    env.run()
    traffic = [(iteration._phases(allreduce, routes, capacity), iteration._phases(send, routes, capacity))]
    windows = [iteration._windows((t, 0.0, c), size, traffic) for t, c in ((t_send, 1), (t_ar, 0))]
    meet = any(s < f and t < e for s, e in windows[0] for t, f in windows[1])
    alone = {}
    for name, collective, t in (("send", send, t_send), ("allreduce", allreduce, t_ar)):
        per_byte, latency, _, _ = iteration._linear(collective, routes, capacity)
        alone[name] = t + per_byte * size + latency
    if not meet:  # what the replay relies on: bytes never side by side, uncontended times (exactly)
        for name in alone:
            assert ends[name] == pytest.approx(alone[name], rel=1e-12)
    if 0.0 <= offset <= 2.5e-6:  # bytes side by side: max-min shares slow both, and the replay sees it
        assert meet and all(ends[name] > alone[name] * (1 + 1e-9) for name in alone)
    # (a meeting it sees where the bytes take different links, as at 31 us with the all-reduce's last phase
    # b -> c, only sends the iteration to flows: conservative, still exact)


def test_the_unrolled_two_by_two_pipeline_is_the_replay():
    # the commonest pipeline (two stages, two micro-batches in flight) is timed by an unrolled copy of the
    # replay: the same result to the bit, for stages of any balance, ties included
    rng = np.random.default_rng(7)
    conflicts = frozenset({(1, 2), (2, 1), (0, 1), (1, 0), (1, 1)})
    for _ in range(2000):
        r0, r1 = rng.choice([1.0, 2.0, 3.0]) * rng.uniform(0.5, 1.5, 2) if rng.random() < 0.8 else (1.0, 1.0)
        a0, a1 = rng.uniform(0.0, 0.6, 2) * (rng.random() < 0.9)
        x0, l0 = rng.uniform(0.0, 0.3) * (rng.random() < 0.9), rng.uniform(0.0, 0.1)
        stages = [(r0, a0, x0, l0), (r1, a1, 0.0, 0.0)]
        traffic = [(((rng.uniform(0, 0.3), rng.uniform(0, 0.3), 1.0),), ((rng.uniform(0, 0.2), l0, 1.0),)),
                   (((rng.uniform(0, 0.3), rng.uniform(0, 0.3), 1.0),), None)]
        for c, t in ((frozenset(), None), (conflicts, None), (conflicts, traffic)):
            assert iteration._two_by_two(stages, c, 1.0, t) == iteration._replay(stages, 2, True, c, 1.0, t)
