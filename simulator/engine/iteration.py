"""What one iteration of a replica costs and does to its state, apart from the event loop that drives it.

A replica's stages (each a TP group with its cost model), its batcher and its records, and the operations on
them that both drivers share: the roofline of a stage pass (with sampled expert routing and speculative
drafting), the closed-form duration of an iteration whose links carry only the replica's own traffic and its
booking onto the iteration account and the links, and the effects of an iteration that ended (first tokens,
finishes, drops). The SimPy process (replica.Replica) and run-ahead (run_ahead.py) both time and record
iterations here, so the two agree to the bit.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import simpy

from simulator.engine.link import Network
from simulator.hardware.allreduce import AllReduce
from simulator.hardware.collectives import Collective, Phase, phase_links, repeated, uncontended_s
from simulator.hardware.expert_routing import ExpertRouter
from simulator.hardware.roofline import (
    ACTIVATION_BYTES,
    BatchShape,
    Drafter,
    StepCost,
    StepCostModel,
    cost_sum,
    pipelined,
)
from simulator.hardware.topology import Routes
from simulator.results.collect import Collector, IterationAccount
from simulator.serving.batcher import Batch, ContinuousBatching


class Stage:
    """One pipeline stage: its chips (a TP group, or dp of them with attention data parallelism), its cost
    model, the all-reduce of one layer and, with attention data parallelism, one MoE layer's all-to-all."""

    def __init__(self, env: simpy.Environment, chips: list[str], cost_model: StepCostModel,
                 layer_collective: AllReduce, moe_collective: Callable[[float], Collective] | None = None,
                 router: ExpertRouter | None = None):
        self.chips = chips
        self.router = router  # with expert parallelism: where this stage's MoE layers send their tokens
        self.cost_model = cost_model
        self.layer_collective = layer_collective  # bytes of activations -> one layer's all-reduce (size-aware)
        self.moe_collective = moe_collective  # bytes of activations -> one MoE layer's dispatch and combine
        self.busy = simpy.Resource(env, capacity=1)
        self.private: PrivateTraffic | None = None  # set when no other traffic can share this stage's links


class Linear(NamedTuple):
    """A collective's traffic per byte of activations on private links: seconds per byte, fixed latency,
    bytes per link per byte, bytes sent per byte, its phases (`_phases`; None: one has flows of several
    sizes, so contention with it is left to flows)."""
    s_per_byte: float
    latency_s: float
    carried: dict[str, float]
    sent: float
    phases: tuple | None = None


class PrivateTraffic:
    """Closed-form traffic of a stage whose links carry nothing else: per byte of activations, the time and
    the bytes per link of its TP all-reduces (all layers; one linear form per algorithm the group may pick,
    `collective(size)` the one its size picks) and of its send to the next stage."""

    def __init__(self, stage: Stage, next_stage: Stage | None, routes: Routes, capacity: dict[str, float]):
        self.choice = stage.layer_collective
        reps = 2 * stage.cost_model.layers
        moe: Collective = ()
        if stage.moe_collective is not None:
            moe = repeated(stage.moe_collective(1.0), round(stage.cost_model.moe_layers))
        units = [repeated(a.make(1.0), reps) + moe for a in self.choice.algorithms] or [moe]
        self.collectives = [Linear(*_linear(unit, routes, capacity), phases=_phases(unit, routes, capacity))
                            for unit in units]
        send: Collective = ()
        if next_stage is not None:
            n = len(stage.chips)
            send = (Phase(tuple((a, b, 1.0 / n) for a, b in zip(stage.chips, next_stage.chips)), 1),)
        self.send_s_per_byte, self.send_latency_s, self.send_carried, self.send_sent = _linear(send, routes,
                                                                                               capacity)
        self.send_phases = _phases(send, routes, capacity)

    def collective(self, size: float) -> Linear:
        """The all-reduces' linear form for activations of `size` bytes (the algorithm that size picks)."""
        return self.collectives[self.choice.choose(size)] if len(self.collectives) > 1 else self.collectives[0]

    def sources(self) -> list[set[str]]:
        """The link sets of its traffic sources (all-reduces, whichever algorithm; send), which may overlap
        in time."""
        return [set().union(*(c.carried for c in self.collectives)), set(self.send_carried)]


def conflicts(stages: list[Stage]) -> frozenset[tuple[int, int]]:
    """The pairs of traffic classes of a closed-form replica (2 s: stage s's all-reduces, 2 s + 1: its send
    to the next stage) that have a link in common, both orders; `pipeline_time` checks these never overlap."""
    links = []
    for s, stage in enumerate(stages):
        assert stage.private is not None  # closed form: every stage of the replica has private links
        for k, used in enumerate(stage.private.sources()):
            if used:
                links.append((2 * s + k, used))
    return frozenset((a, b) for a, la in links for b, lb in links if la & lb)


def _phases(collective: Collective, routes: Routes, capacity: dict[str, float]) -> tuple | None:
    """Per phase of a collective, per byte of activations: (bytes each member moves, the latency wait after
    its transfer, its uncontended rate), as `engine.link.Network` runs it (one bundle per phase); None if a
    phase has flows of several sizes (several bundles)."""
    phases = []
    for phase in collective:
        sizes = {size for _, _, size in phase.flows}
        if len(sizes) > 1:
            return None
        mult, latency = phase_links(phase, routes.route)
        rate = min((capacity[link] / m for link, m in mult.items()), default=0.0)
        phases.append((sizes.pop() if sizes and mult else 0.0, phase.steps * latency + phase.base_s, rate))
    return tuple(phases)


def _linear(collective: Collective, routes: Routes,
            capacity: dict[str, float]) -> tuple[float, float, dict[str, float], float]:
    """(seconds per byte, fixed latency, bytes per link per byte, bytes sent per byte) of a collective."""
    if not collective:
        return 0.0, 0.0, {}, 0.0
    latency = sum(p.steps * phase_links(p, routes.route)[1] + p.base_s for p in collective)
    seconds, carried = uncontended_s(collective, routes.route, capacity)
    sent = sum(size for p in collective for _, _, size in p.flows)
    return seconds - latency, latency, carried, sent


def pipeline_time(stages: list[tuple[float, float, float, float]], parts: int, in_flight: bool,
                  conflicts: frozenset[tuple[int, int]], size: float = 0.0,
                  traffic: list[tuple[tuple | None, tuple | None]] | None = None) -> float | None:
    """Duration of one iteration of `parts` identical micro-batches through a pipeline whose stages (each
    (pass, all-reduce, send, send latency) seconds, uncontended) may share links with one another inside the
    replica (`conflicts`: the pairs of traffic classes 2 s, all-reduces of stage s, and 2 s + 1, its send,
    with a link in common); None when two of its transfers would move bytes on a shared link at the same
    time (the caller then runs the iteration as flows).

    The schedule is the one `Replica._micro_batch` runs as SimPy processes, replayed without the event loop:
    micro-batch j starts at stage j mod p when kept in flight (at stage 0 when drained) and goes round every
    stage once; a stage is a FIFO resource held for its pass and its all-reduce; the send to the next stage
    follows the release (the stage already takes the next micro-batch); the iteration ends when the last
    micro-batch is through. Requests at one instant are served in the order the event loop makes them (a
    heap of (time, order of scheduling), as SimPy orders its events).

    Why it is exact. The flow model (engine/link.py) runs each phase of a transfer as one bundle at the
    max-min fair rate of the bundles on its links, then waits the phase's latency steps; the per-iteration
    all-reduces of a stage are one such phase per algorithm phase (`repeated`: all layers' bytes, then all
    their latency steps). A bundle alone on its links moves at its uncontended rate, so a transfer none of
    whose bundles meets another takes its closed form (`_linear`), whatever else uses those links while it
    only waits. The replay times every transfer uncontended and lays out the windows in which its bundles
    move bytes (`traffic`: each class's phases for activations of `size` bytes, `_phases`; a class without
    them counts as moving bytes all along). If no two windows of classes that share a link overlap, no
    bundle ever shares a link: every time is the flow model's, up to the rounding of the additions, which
    the two paths order differently. In Vidur's TP2 x PP2 a stage's send does fall inside the next stage's
    all-reduce, every iteration (stage 1 is slower by the lm_head), but in its latency waits: 80 layers'
    bytes move first (~60 us for a decode batch), then 160 steps of hop latency (~0.5 ms). When bytes would
    meet, the max-min shares would change the times (and, in the in-flight schedule with two micro-batches,
    both sends meet an all-reduce at the same offset): that iteration runs as flows."""
    if len(stages) == 2 and parts == 2 and in_flight:
        return _two_by_two(stages, conflicts, size, traffic)
    return _replay(stages, parts, in_flight, conflicts, size, traffic)


def _replay(stages: list[tuple[float, float, float, float]], parts: int, in_flight: bool,
            conflicts: frozenset[tuple[int, int]], size: float, traffic: list | None) -> float | None:
    """`pipeline_time` by replaying the schedule event by event (any number of stages and micro-batches)."""
    p = len(stages)
    busy = [False] * p
    queues: list[deque[int]] = [deque() for _ in range(p)]
    routes = [[*range(j % p if in_flight else 0, p), *range(j % p if in_flight else 0)] for j in range(parts)]
    where = [0] * parts  # index into the micro-batch's route of the stage it is at or waits for
    heap: list[tuple[float, int, int, int]] = []  # (time, order, kind: 0 pass done / 1 send done, micro-batch)
    order = 0
    transfers: list[tuple[float, float, int]] = []  # (start, end, class: 2 s all-reduce, 2 s + 1 send)
    end = 0.0

    def grant(s: int, j: int, t: float) -> None:
        nonlocal order
        busy[s] = True
        pass_s, coll, _, _ = stages[s]
        t_coll = t + pass_s
        done = t_coll + coll
        if coll > 0.0:
            transfers.append((t_coll, done, 2 * s))
        heapq.heappush(heap, (done, order, 0, j))
        order += 1

    def request(j: int, t: float) -> None:
        s = routes[j][where[j]]
        if busy[s]:
            queues[s].append(j)
        else:
            grant(s, j, t)

    for j in range(parts):
        request(j, 0.0)
    while heap:
        t, _, kind, j = heapq.heappop(heap)
        if kind == 0:
            s = routes[j][where[j]]
            busy[s] = False
            if queues[s]:
                grant(s, queues[s].popleft(), t)
            if s + 1 < p:  # activations to the next stage
                _, _, xfer, latency = stages[s]
                arrive = t + xfer + latency
                if xfer > 0.0:
                    transfers.append((t, arrive, 2 * s + 1))
                heapq.heappush(heap, (arrive, order, 1, j))
                order += 1
                continue
        where[j] += 1
        if where[j] == p:
            end = max(end, t)
        else:
            request(j, t)
    return end if _apart(transfers, conflicts, size, traffic) else None


def _two_by_two(stages: list[tuple[float, float, float, float]], conflicts: frozenset[tuple[int, int]],
                size: float, traffic: list | None) -> float | None:
    """`pipeline_time` of the commonest pipeline, two stages with two micro-batches in flight, unrolled: the
    same additions as the replay. Micro-batch 0 passes stage 0, sends, then waits for stage 1; micro-batch 1
    passes stage 1 first, then waits for stage 0 and sends (its activations are stage 1's next time)."""
    (r0, a0, x0, l0), (r1, a1, _, _) = stages
    c0, c1 = 0.0 + r0, 0.0 + r1
    t0, t1 = c0 + a0, c1 + a1  # both stages' first passes end
    arrive0 = t0 + x0 + l0  # micro-batch 0 at stage 1
    start1 = t0 if t0 > t1 else t1  # micro-batch 1 at stage 0, once free
    start0 = arrive0 if arrive0 > t1 else t1  # micro-batch 0 at stage 1, once free
    c0b, c1b = start1 + r0, start0 + r1
    done1, done0 = c0b + a0, c1b + a1
    arrive1 = done1 + x0 + l0
    end = done0 if done0 > arrive1 else arrive1
    if not conflicts:
        return end
    transfers = []
    for start, stop, kind, moves in ((c0, t0, 0, a0), (c1, t1, 2, a1), (t0, arrive0, 1, x0), (c0b, done1, 0, a0),
                                     (c1b, done0, 2, a1), (done1, arrive1, 1, x0)):
        if moves > 0.0:
            transfers.append((start, stop, kind))
    return end if _apart(transfers, conflicts, size, traffic) else None


def _apart(transfers: list[tuple[float, float, int]], conflicts: frozenset[tuple[int, int]], size: float,
           traffic: list | None) -> bool:
    """No two transfers (start, end, class) of classes that share a link move bytes at the same time."""
    if not conflicts:
        return True
    windows: dict[int, list[tuple[float, float]]] = {}
    for i, a in enumerate(transfers):
        for k in range(i + 1, len(transfers)):
            b = transfers[k]
            if a[0] < b[1] and b[0] < a[1] and (a[2], b[2]) in conflicts:
                wa = windows[i] if i in windows else windows.setdefault(i, _windows(a, size, traffic))
                wb = windows[k] if k in windows else windows.setdefault(k, _windows(b, size, traffic))
                if any(s < f and t < e for s, e in wa for t, f in wb):
                    return False
    return True


def _windows(transfer: tuple[float, float, int], size: float, traffic: list | None) -> list[tuple[float, float]]:
    """When a transfer's bundles move bytes, uncontended: one window per phase (its whole span without the
    phases)."""
    phases = None if traffic is None else traffic[transfer[2] // 2][transfer[2] % 2]
    if phases is None:
        return [(transfer[0], transfer[1])]
    t, windows = transfer[0], []
    for per_byte, wait, rate in phases:
        if per_byte:
            d = per_byte * size / rate
            windows.append((t, t + d))
            t += d
        t += wait
    return windows


class ReplicaState:
    """One model replica's batcher, pipeline stages and role (colocated, prefill or decode), and what one of
    its iterations costs and records. replica.Replica runs it as SimPy processes; run_ahead.py commits its
    iterations ahead of the clock."""

    def __init__(self, index: int, batcher: ContinuousBatching, stages: list[Stage], micro_batches: int,
                 pipeline_schedule: str, network: Network, collector: Collector,
                 on_done: Callable[[list[int]], None], rng: np.random.Generator, private: bool = False,
                 role: str = "colocated", on_dropped: Callable[[list[int]], None] | None = None,
                 drafter: Drafter | None = None, horizon: Callable[[], tuple[float, float, float]] | None = None):
        self.index = index
        self.batcher = batcher
        self.stages = stages
        self.micro_batches = micro_batches
        self.in_flight = pipeline_schedule == "in_flight" and len(stages) > 1
        self.one_pass = len(stages) == 1 or micro_batches == 1  # every batch goes through whole, in one part
        self.network = network
        self.collector = collector
        self.on_done = on_done  # finished here (for a prefill replica: prefilled, to be handed off)
        self.on_dropped = on_dropped or on_done
        self.rng = rng
        self.private = private  # every stage's links carry only this replica's own traffic: closed form
        self.chips = sum(len(stage.chips) for stage in stages)
        self.role = role  # colocated, prefill (hands requests on after their first token) or decode
        self.drafter = drafter  # speculative decoding: the cost of drafting, added to each decode step
        # closed-form replicas only: () -> (the earliest time a request may be submitted to it, the earliest
        # arrival anywhere, the end of the run); None: unknown, so every iteration is one event
        self.horizon = horizon
        self._timed: tuple | None = None  # (shape, parts, closed form) run-ahead timed but did not commit
        self.early_effects = False  # may run-ahead commit finishes and drops before the clock (open loop)?
        self.dropped = False  # did the last schedule drop requests (whose closed-loop users sent new ones)?
        self._conflicts: frozenset[tuple[int, int]] | None = None  # closed form: link-sharing traffic classes

    def micro_batches_of(self, batch: Batch) -> int:
        """Micro-batches the pipeline splits `batch` into: as configured, at most one per request."""
        return 1 if self.one_pass else max(1, min(self.micro_batches, batch.size))

    def schedule(self, now: float) -> Batch | None:
        """The batcher's next batch at `now`, with its admissions, drops, preemptions and prefix hits recorded."""
        batcher, collector = self.batcher, self.collector
        batch = batcher.schedule(now)
        if batcher.admitted:
            collector.admit(batcher.take_admitted(), now)
        self.dropped = bool(batcher.dropped)
        if batcher.dropped:
            dropped = batcher.take_dropped()
            for rid, reason in dropped:
                collector.drop(rid, reason, now)
            self.on_dropped([rid for rid, _ in dropped])
        if batcher.preempted:
            collector.preempt(batcher.take_preempted())
        if batcher.hits:
            collector.prefix_hits(batcher.take_prefix_hits())
        return batch

    def complete(self, batch: Batch, start: float, end: float, account: IterationAccount) -> None:
        """Apply an iteration that ran from `start` to `end`: record it, deliver first tokens, finish requests."""
        first, finished = self.batcher.complete(batch)
        self.collector.iteration(self.index, start, end - start, account, batch.shape, batch.size,
                                 self.batcher.kv.used_blocks, batch.output_tokens)
        self.deliver(first, finished, end)

    def deliver(self, first: list[int], finished: list[int], end: float) -> None:
        """Record the first tokens and the finished requests of an iteration that ended at `end`."""
        collector = self.collector
        if self.batcher.speculated:
            collector.speculated(self.batcher.take_speculated())
        if first and self.role != "prefill":  # a prefill replica's token is delivered after the hand-off
            collector.first_tokens(first, end)
        if finished:
            if self.role != "prefill":
                collector.finish(finished, end)
            self.on_done(finished)

    def closed_form(self, shape: BatchShape, parts: int) -> tuple[float | None, list[StepCost], list]:
        """Duration of an iteration whose links are all private: every stage pass, all-reduce and send in
        closed form, and the pipeline of `parts` identical micro-batches, each through every stage (`pipeline`).
        Returns (duration, each stage's cost, each stage's (traffic, activation bytes)); `book` records them;
        the duration is None when transfers inside the replica would contend (the iteration runs as flows).
        No side effects."""
        micro = shape.split(parts) if parts > 1 else shape
        size = micro.tokens * self.stages[0].cost_model.model.d_model * ACTIVATION_BYTES
        total = slowest = 0.0
        costs, bookings, steps = [], [], []
        for stage in self.stages:
            t = stage.private
            assert t is not None  # closed form: every stage of the replica has private links
            cost = self.cost(stage, micro)
            c = t.collective(size)
            coll = c.s_per_byte * size + c.latency_s
            xfer = t.send_s_per_byte * size
            step = cost.roofline_s + coll
            total += step + xfer + t.send_latency_s
            slowest = max(slowest, step, xfer)
            costs.append(cost)
            bookings.append((t, size, coll, xfer, c))
            steps.append((cost.roofline_s, coll, xfer, t.send_latency_s))
        return self.pipeline(total, slowest, parts, steps, size, [b[4] for b in bookings]), costs, bookings

    def pipeline(self, total: float, slowest: float, parts: int, steps: list[tuple[float, float, float, float]],
                 size: float, collectives: list[Linear]) -> float | None:
        """Duration of an iteration of `parts` micro-batches from its stages' (pass, all-reduce, send, send
        latency) `steps`; `total` and `slowest` are their sum over stages and slowest resource-holding step;
        `size` the activation bytes of a micro-batch, `collectives` each stage's all-reduce form. One
        micro-batch (or one stage): the sum. Several through several stages: the replay of the flow model's
        schedule (`pipeline_time`), exact also where a stage's send shares links with its own or the next
        stage's all-reduce (the chips' switch links); None where it leaves the contention to flows."""
        if parts > 1 and len(steps) > 1:
            if self._conflicts is None:
                self._conflicts = conflicts(self.stages)
            traffic = [(c.phases, st.private.send_phases) for c, st in zip(collectives, self.stages)
                       if st.private is not None] if self._conflicts else None  # read only where links are shared
            return pipeline_time(steps, parts, self.in_flight, self._conflicts, size, traffic)
        return pipelined(total, slowest, parts, self.in_flight)

    def book(self, start: float, end: float, parts: int, costs: list[StepCost], bookings: list,
              account: IterationAccount) -> None:
        """Account a closed-form iteration [start, end]: its stage passes, and its bytes on each private link."""
        for cost in costs:
            account.add_compute(cost, parts)
        for t, size, coll, xfer, c in bookings:
            account.network_s += parts * (coll + xfer + t.send_latency_s)
            account.network_bytes += parts * size * (c.sent + t.send_sent)
            nbytes = size * parts
            if c.carried:
                self.network.account_private(start, end, c.carried, nbytes * c.sent, nbytes)
            if t.send_carried:
                self.network.account_private(start, end, t.send_carried, nbytes * t.send_sent, nbytes)

    def timing(self, shape: BatchShape, parts: int) -> tuple[float | None, list[StepCost], list]:
        """`closed_form(shape, parts)`, or the timing run-ahead remembered for it (a pure function of both)."""
        timed = self._timed
        if timed is not None and timed[0] == shape and timed[1] == parts:
            return timed[2]
        return self.closed_form(shape, parts)

    def remember(self, shape: BatchShape, parts: int, timing: tuple[float | None, list[StepCost], list]) -> None:
        """Run-ahead timed this iteration but could not commit it: the normal path reuses the timing."""
        self._timed = (shape, parts, timing)

    def remember_timing(self, shape: BatchShape, parts: int, duration: float, costs: list[StepCost],
                        size: float) -> None:
        """`remember`, from an unrolled loop's duration and costs (the bookings rebuilt for `book`)."""
        bookings = []
        for st in self.stages:
            p = st.private
            assert p is not None  # closed form: every stage of the replica has private links
            c = p.collective(size)
            bookings.append((p, size, c.s_per_byte * size + c.latency_s, p.send_s_per_byte * size, c))
        self.remember(shape, parts, (duration, costs, bookings))

    def cost(self, stage: Stage, shape: BatchShape) -> StepCost:
        """Roofline of one pass of `shape` through `stage`, plus drafting when decoding speculatively."""
        cost = stage.cost_model.cost(shape, self._expert_load(stage, shape))
        if self.drafter is None or not shape.decode_tokens:
            return cost
        return cost_sum(cost, self.drafter.cost(shape))

    def _expert_load(self, stage: Stage, shape: BatchShape) -> tuple[float, float] | None:
        """With expert parallelism: sample the routing of every MoE layer of the stage (its router's model and
        placement) and return the busiest rank's (routed tokens, experts touched), summed over layers (each
        layer waits for it)."""
        if stage.router is None:
            return None
        return stage.router.busiest(round(shape.tokens), self.rng)
