"""A replica as SimPy processes: ask the batcher for a batch, run it through the pipeline stages, record.

Per iteration: one event per stage pass of each micro-batch, plus the flows of its collectives (tensor-
parallel all-reduces aggregated per stage pass by default, or per layer) and of the activations sent to the
next stage. A replica whose links carry nothing else is timed in closed form instead: one event per
iteration, the same result, or fewer when it may run ahead of the clock (run_ahead.py). An idle replica
sleeps on one event until a request is submitted.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import simpy

from simulator.collect import Collector, IterationAccount
from simulator.engine.link import Network
from simulator.engine.run_ahead import run_ahead
from simulator.hardware.collectives import Collective, Phase, phase_links, repeated, uncontended_s
from simulator.hardware.roofline import (ACTIVATION_BYTES, BatchShape, StepCost, StepCostModel, cost_sum,
                                         pipelined)
from simulator.hardware.topology import Routes
from simulator.serving.batcher import Batch, ContinuousBatching


class Stage:
    """One pipeline stage: its TP group's chips, its cost model, and the collective of one layer."""

    def __init__(self, env: simpy.Environment, chips: list[str], cost_model: StepCostModel,
                 layer_collective: Callable[[float], Collective]):
        self.chips = chips
        self.cost_model = cost_model
        self.layer_collective = layer_collective  # bytes of one all-reduce -> collective
        self.busy = simpy.Resource(env, capacity=1)
        self.private: PrivateTraffic | None = None  # set when no other traffic can share this stage's links


class PrivateTraffic:
    """Closed-form traffic of a stage whose links carry nothing else: per byte of activations, the time and
    the bytes per link of its TP all-reduces (all layers) and of its send to the next stage."""

    def __init__(self, stage: Stage, next_stage: Stage | None, routes: Routes, capacity: dict[str, float]):
        unit = repeated(stage.layer_collective(1.0), 2 * stage.cost_model.layers) if len(stage.chips) > 1 else ()
        self.coll_s_per_byte, self.coll_latency_s, self.coll_carried, self.coll_sent = _linear(unit, routes,
                                                                                               capacity)
        send: Collective = ()
        if next_stage is not None:
            n = len(stage.chips)
            send = (Phase(tuple((a, b, 1.0 / n) for a, b in zip(stage.chips, next_stage.chips)), 1),)
        self.send_s_per_byte, self.send_latency_s, self.send_carried, self.send_sent = _linear(send, routes,
                                                                                               capacity)

    def sources(self) -> list[set[str]]:
        """The link sets of its two traffic sources (all-reduces, send), which may overlap in time."""
        return [set(self.coll_carried), set(self.send_carried)]


def _linear(collective: Collective, routes: Routes, capacity: dict[str, float]):
    """(seconds per byte, fixed latency, bytes per link per byte, bytes sent per byte) of a collective."""
    if not collective:
        return 0.0, 0.0, {}, 0.0
    latency = sum(p.steps * phase_links(p, routes.route)[1] for p in collective)
    seconds, carried = uncontended_s(collective, routes.route, capacity)
    sent = sum(size for p in collective for _, _, size in p.flows)
    return seconds - latency, latency, carried, sent


class Drafter:
    """The cost of drafting `tokens` tokens per decoding request each step: `tokens` decode passes of a draft
    model, or, without one, of one target layer each (multi-token prediction heads)."""

    def __init__(self, tokens: int, cost_model: StepCostModel, layers: float):
        self.tokens, self.cost_model, self.fraction = tokens, cost_model, layers / cost_model.layers

    def cost(self, shape: BatchShape) -> StepCost:
        one = self.cost_model.cost(BatchShape(0, 0, 0, shape.decode_tokens, shape.decode_context,
                                              shape.decode_tokens))
        return StepCost(*(value * self.tokens * self.fraction for value in one))


class Replica:
    """One model replica: its batcher, its pipeline stages and its role (colocated, prefill or decode)."""

    def __init__(self, env: simpy.Environment, index: int, batcher: ContinuousBatching, stages: list[Stage],
                 micro_batches: int, pipeline_schedule: str, network: Network, routes: Routes,
                 collector: Collector,
                 on_done: Callable[[list[int]], None], rng: np.random.Generator, per_layer: bool,
                 private: bool = False, role: str = "colocated",
                 on_dropped: Callable[[list[int]], None] | None = None, drafter: "Drafter | None" = None,
                 horizon: Callable[[], tuple[float, float]] | None = None):
        self.env = env
        self.index = index
        self.batcher = batcher
        self.stages = stages
        self.micro_batches = micro_batches
        self.in_flight = pipeline_schedule == "in_flight" and len(stages) > 1
        self.one_pass = len(stages) == 1 or micro_batches == 1  # every batch goes through whole, in one part
        self.network = network
        self.routes = routes
        self.collector = collector
        self.on_done = on_done  # finished here (for a prefill replica: prefilled, to be handed off)
        self.on_dropped = on_dropped or on_done
        self.rng = rng
        self.per_layer = per_layer
        self.private = private  # every stage's links carry only this replica's own traffic: closed form
        self.chips = sum(len(stage.chips) for stage in stages)
        self.role = role  # colocated, prefill (hands requests on after their first token) or decode
        self.drafter = drafter  # speculative decoding: the cost of drafting, added to each decode step
        # closed-form replicas only: () -> (the earliest time a request may be submitted to it, the end of
        # the run); None: unknown, so every iteration is one event
        self.horizon = horizon
        self._timed: tuple | None = None  # (shape, parts, closed form) run-ahead timed but did not commit
        self.early_effects = False  # may run-ahead commit finishes and drops before the clock (open loop)?
        self.dropped = False  # did the last schedule drop requests (whose closed-loop users sent new ones)?
        self.wakeup: simpy.Event | None = None
        self.process = env.process(self.run())

    def submit(self, rid: int) -> None:
        self.batcher.enqueue(rid, self.env.now)
        self._wake()

    def accept(self, rid: int, context: int, generated: int) -> str:
        """A decode replica takes a request whose KV-cache has just arrived; '' or why it never fits."""
        reason = self.batcher.accept(rid, context, generated)
        self._wake()
        return reason

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.triggered:
            self.wakeup.succeed()

    def run(self):
        env, batcher, collector = self.env, self.batcher, self.collector
        batch = None  # run-ahead may have scheduled the next batch already, at the current time
        while True:
            now = env.now
            if batch is None:
                batch = self.schedule(now)
                if batch is None and self.dropped:  # a dropped closed-loop request sent its user's next one
                    continue
            if batch is None:  # sleep until a request arrives (or a static batch's wait runs out)
                self.wakeup = env.event()
                collector.events += 1
                if batcher.wake_at is not None:
                    yield env.any_of([self.wakeup, env.timeout(batcher.wake_at - now)])
                else:
                    yield self.wakeup
                self.wakeup = None
                continue
            if self.horizon is not None:
                ahead, batch = run_ahead(self, batch, now)
                if ahead > now:  # iterations committed up to `ahead`; go on from there
                    collector.events += 1
                    yield env.timeout(exact_delay(now, ahead))
                    continue
            parts = self.micro_batches_of(batch)
            account = IterationAccount(len(self.stages), self.chips)
            if batch.swap_out_bytes or batch.swap_in_bytes:
                yield from self._swap(batch, account)
            if batch.size and self.private:
                collector.events += 1
                duration, costs, bookings = self.timing(batch.shape, parts)
                self._timed = None
                self._book(now, now + duration, parts, costs, bookings, account)
                yield env.timeout(duration)
            elif batch.size and parts == 1:
                yield from self._micro_batch(batch.shape, account)
            elif batch.size:
                micro = batch.shape.split(parts)
                p = len(self.stages) if self.in_flight else 1
                yield env.all_of([env.process(self._micro_batch(micro, account, j % p)) for j in range(parts)])
            self.complete(batch, now, env.now, account)
            batch = None

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
        if first and self.role != "prefill":  # a prefill replica's token is delivered after the hand-off
            collector.first_tokens(first, end)
        if finished:
            if self.role != "prefill":
                collector.finish(finished, end)
            self.on_done(finished)

    def _closed_form(self, shape: BatchShape, parts: int) -> tuple[float, list[StepCost], list]:
        """Duration of an iteration whose links are all private: every stage pass, all-reduce and send in
        closed form, and the pipeline of `parts` identical micro-batches, each through every stage. Drained
        every iteration (flush), a flow shop with identical jobs: sum of every step + (parts - 1) x the slowest
        step that holds a resource. Kept in flight, a cyclic pipeline: the slower of one micro-batch's way
        through the stages and `parts` passes of the slowest step. Returns (duration, each stage's cost, each
        stage's (traffic, activation bytes)); `_book` records them. No side effects."""
        micro = shape.split(parts) if parts > 1 else shape
        size = micro.tokens * self.stages[0].cost_model.model.d_model * ACTIVATION_BYTES
        total = slowest = 0.0
        costs, bookings = [], []
        for stage in self.stages:
            t = stage.private
            cost = self._cost(stage, micro)
            coll = t.coll_s_per_byte * size + t.coll_latency_s
            xfer = t.send_s_per_byte * size
            step = cost.roofline_s + coll
            total += step + xfer + t.send_latency_s
            slowest = max(slowest, step, xfer)
            costs.append(cost)
            bookings.append((t, size, coll, xfer))
        return pipelined(total, slowest, parts, self.in_flight), costs, bookings

    def _book(self, start: float, end: float, parts: int, costs: list[StepCost], bookings: list,
              account: IterationAccount) -> None:
        """Account a closed-form iteration [start, end]: its stage passes, and its bytes on each private link."""
        for cost in costs:
            account.add_compute(cost, parts)
        for t, size, coll, xfer in bookings:
            account.network_s += parts * (coll + xfer + t.send_latency_s)
            account.network_bytes += parts * size * (t.coll_sent + t.send_sent)
            nbytes = size * parts
            if t.coll_carried:
                self.network.account_private(start, end, t.coll_carried, nbytes * t.coll_sent, nbytes)
            if t.send_carried:
                self.network.account_private(start, end, t.send_carried, nbytes * t.send_sent, nbytes)

    def timing(self, shape: BatchShape, parts: int) -> tuple[float, list[StepCost], list]:
        """`_closed_form(shape, parts)`, or the timing run-ahead remembered for it (a pure function of both)."""
        timed = self._timed
        if timed is not None and timed[0] == shape and timed[1] == parts:
            return timed[2]
        return self._closed_form(shape, parts)

    def remember(self, shape: BatchShape, parts: int, timing: tuple[float, list[StepCost], list]) -> None:
        """Run-ahead timed this iteration but could not commit it: the normal path reuses the timing."""
        self._timed = (shape, parts, timing)

    def remember_timing(self, shape: BatchShape, parts: int, duration: float, costs: list[StepCost],
                        size: float) -> None:
        """`remember`, from an unrolled loop's duration and costs (the bookings rebuilt for `_book`)."""
        bookings = [(st.private, size, st.private.coll_s_per_byte * size + st.private.coll_latency_s,
                     st.private.send_s_per_byte * size) for st in self.stages]
        self.remember(shape, parts, (duration, costs, bookings))

    def _micro_batch(self, shape: BatchShape, account: IterationAccount, first: int = 0):
        """One micro-batch through every stage: compute, TP collectives, then activations to the next stage.
        Kept in flight (in_flight), micro-batch j is where the previous iteration left it: it starts at stage
        j mod p and wraps round (the last stage's token goes back to the first; no activations cross)."""
        env = self.env
        for s in [*range(first, len(self.stages)), *range(first)]:
            stage = self.stages[s]
            with stage.busy.request() as turn:
                yield turn
                cost = self._cost(stage, shape)
                account.add_compute(cost)
                size = shape.tokens * stage.cost_model.model.d_model * ACTIVATION_BYTES
                chunks = stage.cost_model.layers if self.per_layer else 1
                layers_per_chunk = stage.cost_model.layers / chunks
                for _ in range(chunks):
                    self.collector.events += 1
                    yield env.timeout(cost.roofline_s / chunks)
                    if len(stage.chips) > 1:
                        collective = repeated(stage.layer_collective(size), round(2 * layers_per_chunk))
                        start = env.now
                        yield from self._run(collective, account)
                        account.network_s += env.now - start
            if s + 1 < len(self.stages):
                nxt = self.stages[s + 1]
                # each TP rank sends its 1/tp slice of the activations to its peer in the next stage
                sends = tuple((a, b, size / len(stage.chips)) for a, b in zip(stage.chips, nxt.chips))
                start = env.now
                yield from self._run((Phase(sends, 1),), account)
                account.network_s += env.now - start

    def _swap(self, batch, account: IterationAccount):
        """Copy preempted requests' KV-cache to host memory and resumed ones back, each chip over its own
        PCIe link (every chip holds its shard), before the iteration computes."""
        start = self.env.now
        chips = [c for stage in self.stages for c in stage.chips]
        flows = []
        for nbytes, outbound in ((batch.swap_out_bytes, True), (batch.swap_in_bytes, False)):
            if nbytes:
                for c in chips:
                    host = self.routes.host_of(c)
                    flows.append((c, host, nbytes / len(chips)) if outbound else (host, c, nbytes / len(chips)))
        yield from self._run((Phase(tuple(flows), 1),), account)
        account.swap_bytes += (batch.swap_out_bytes + batch.swap_in_bytes) / len(chips)
        account.network_s += (self.env.now - start) * len(self.stages)

    def _run(self, collective: Collective, account: IterationAccount):
        account.network_bytes += yield from run_collective(self.env, self.network, self.routes, collective)

    def _cost(self, stage: Stage, shape: BatchShape) -> StepCost:
        """Roofline of one pass of `shape` through `stage`, plus drafting when decoding speculatively."""
        cost = stage.cost_model.cost(shape, self._expert_load(stage, shape))
        if self.drafter is None or not shape.decode_tokens:
            return cost
        return cost_sum(cost, self.drafter.cost(shape))

    def _expert_load(self, stage: Stage, shape: BatchShape) -> tuple[float, float] | None:
        """With expert parallelism: sample top-k routing for every MoE layer of the stage and return the
        busiest rank's (routed tokens, experts touched), summed over layers (each layer waits for it)."""
        cm = stage.cost_model
        m = cm.model
        if cm.ep <= 1 or not m.n_experts:
            return None
        layers = round(cm.moe_layers)
        tokens = int(round(shape.tokens))
        if layers == 0 or tokens == 0:
            return (0.0, 0.0)
        counts = self.rng.multinomial(tokens * m.top_k, np.full(m.n_experts, 1.0 / m.n_experts), size=layers)
        per_rank = counts.reshape(layers, cm.ep, m.n_experts // cm.ep)
        routed = per_rank.sum(axis=2)
        touched = (per_rank > 0).sum(axis=2)
        busiest = routed.argmax(axis=1)
        rows = np.arange(layers)
        return float(routed[rows, busiest].sum()), float(touched[rows, busiest].sum())


def exact_delay(now: float, t: float) -> float:
    """The delay d with now + d == t in floating point (SimPy schedules at now + delay), so that committed
    iterations end where one event per iteration would have put them."""
    d = t - now
    while now + d < t:
        d = math.nextafter(d, math.inf)
    while now + d > t:
        d = math.nextafter(d, -math.inf)
    return d


def run_collective(env: simpy.Environment, network: Network, routes: Routes, collective: Collective):
    """Run a collective's phases in order (a SimPy generator; returns the bytes sent). Each phase's flows go
    as bundles of equal-sized flows, then the phase waits its latency steps (the slowest member route's
    latency per step)."""
    sent = 0.0
    for phase in collective:
        by_size: dict[float, list] = {}
        latency = 0.0
        for src, dst, size in phase.flows:
            links, route_latency = routes.route(src, dst)
            latency = max(latency, route_latency)
            by_size.setdefault(size, []).append((src, dst, links))
            sent += size
        events = [network.transfer(members, size, 0.0) for size, members in by_size.items()]
        network.events += 1
        yield events[0] if len(events) == 1 else env.all_of(events)
        if phase.steps and latency:
            yield env.timeout(phase.steps * latency)
    return sent
