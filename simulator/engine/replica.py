"""A replica as SimPy processes: ask the batcher for a batch, run it through the pipeline stages, record.

Per iteration: one event per stage pass of each micro-batch, plus the flows of its collectives (tensor-
parallel all-reduces aggregated per stage pass by default, or per layer) and of the activations sent to the
next stage. A replica whose links carry nothing else is timed in closed form instead (iteration.py): one
event per iteration, the same result, or fewer when it may run ahead of the clock (run_ahead.py). An idle
replica sleeps on one event until a request is submitted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import simpy

from simulator.engine.iteration import ReplicaState, Stage
from simulator.engine.link import Network
from simulator.engine.run_ahead import run_ahead
from simulator.hardware.collectives import Collective, Phase, repeated
from simulator.hardware.roofline import ACTIVATION_BYTES, BatchShape, Drafter
from simulator.hardware.topology import Routes
from simulator.results.collect import Collector, IterationAccount
from simulator.serving.batcher import ContinuousBatching


class Replica(ReplicaState):
    """A ReplicaState driven in simulated time: one process that sleeps until a request is submitted, then
    runs iterations (in closed form, ahead of the clock, or as flows on the network) until none is left."""

    def __init__(self, env: simpy.Environment, index: int, batcher: ContinuousBatching, stages: list[Stage],
                 micro_batches: int, pipeline_schedule: str, network: Network, routes: Routes,
                 collector: Collector,
                 on_done: Callable[[list[int]], None], rng: np.random.Generator, per_layer: bool,
                 private: bool = False, role: str = "colocated",
                 on_dropped: Callable[[list[int]], None] | None = None, drafter: Drafter | None = None,
                 horizon: Callable[[], tuple[float, float, float]] | None = None):
        super().__init__(index, batcher, stages, micro_batches, pipeline_schedule, network, collector, on_done, rng,
                         private, role, on_dropped, drafter, horizon)
        self.env = env
        self.routes = routes
        self.per_layer = per_layer
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
                    if env.now < ahead:  # no float delay from `now` lands on `ahead`: close the last ulps
                        yield env.timeout(ahead - env.now)  # exact: the two are within a few ulps
                    continue
            parts = self.micro_batches_of(batch)
            account = IterationAccount(len(self.stages), self.chips)
            if batch.swap_out_bytes or batch.swap_in_bytes:
                yield from self._swap(batch, account)
            duration = None
            if batch.size and self.private:
                duration, costs, bookings = self.timing(batch.shape, parts)
                self._timed = None
            if duration is not None:
                collector.events += 1
                self.book(now, now + duration, parts, costs, bookings, account)
                yield env.timeout(duration)
            elif batch.size and parts == 1:
                yield from self._micro_batch(batch.shape, account)
            elif batch.size:
                micro = batch.shape.split(parts)
                p = len(self.stages) if self.in_flight else 1
                yield env.all_of([env.process(self._micro_batch(micro, account, j % p)) for j in range(parts)])
            self.complete(batch, now, env.now, account)
            batch = None

    def _micro_batch(self, shape: BatchShape, account: IterationAccount, first: int = 0):
        """One micro-batch through every stage: compute, TP collectives, then activations to the next stage.
        Kept in flight (in_flight), micro-batch j is where the previous iteration left it: it starts at stage
        j mod p and wraps round (the last stage's token goes back to the first; no activations cross)."""
        env = self.env
        for s in [*range(first, len(self.stages)), *range(first)]:
            stage = self.stages[s]
            with stage.busy.request() as turn:
                yield turn
                cost = self.cost(stage, shape)
                account.add_compute(cost)
                size = shape.tokens * stage.cost_model.model.d_model * ACTIVATION_BYTES
                chunks = stage.cost_model.layers if self.per_layer else 1
                layers_per_chunk = stage.cost_model.layers / chunks
                for _ in range(chunks):
                    self.collector.events += 1
                    yield env.timeout(cost.roofline_s / chunks)
                    if len(stage.chips) > 1:
                        collective = repeated(stage.layer_collective(size), round(2 * layers_per_chunk))
                        if stage.moe_collective is not None:  # attention DP: each MoE layer's all-to-all
                            moe_layers = round(stage.cost_model.moe_layers / chunks)
                            collective += repeated(stage.moe_collective(size), moe_layers)
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


def exact_delay(now: float, t: float) -> float:
    """The delay d with now + d == t in floating point (SimPy schedules at now + delay), so that committed
    iterations end where one event per iteration would have put them; when no d reaches t exactly (the sum
    rounds past it), the largest d with now + d < t, from where t - (now + d) is exact."""
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
        wait = phase.steps * latency + phase.base_s
        if wait:
            yield env.timeout(wait)
    return sent
