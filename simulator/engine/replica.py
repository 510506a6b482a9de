"""A replica as a SimPy process: ask the batcher for a batch, hold the chips for its roofline time, record.

One SimPy event per iteration; an idle replica sleeps on one event until a request is submitted.
"""

from __future__ import annotations

from typing import Callable

import simpy

from simulator.collect import Collector
from simulator.hardware.roofline import StepCostModel
from simulator.serving.batcher import ContinuousBatching


class Replica:
    def __init__(self, env: simpy.Environment, index: int, batcher: ContinuousBatching,
                 cost_model: StepCostModel, collector: Collector, on_done: Callable[[list[int]], None]):
        self.env = env
        self.index = index
        self.batcher = batcher
        self.cost_model = cost_model
        self.collector = collector
        self.on_done = on_done
        self.wakeup: simpy.Event | None = None
        self.process = env.process(self.run())

    def submit(self, rid: int) -> None:
        self.batcher.enqueue(rid)
        if self.wakeup is not None and not self.wakeup.triggered:
            self.wakeup.succeed()

    def run(self):
        env, batcher, collector = self.env, self.batcher, self.collector
        while True:
            batch = batcher.schedule()
            now = env.now
            collector.admit(batcher.take_admitted(), now)
            dropped = batcher.take_dropped()
            for rid, reason in dropped:
                collector.drop(rid, reason, now)
            if dropped:
                self.on_done([rid for rid, _ in dropped])
            if batch is None:
                self.wakeup = env.event()
                collector.events += 1
                yield self.wakeup
                self.wakeup = None
                continue
            cost = self.cost_model.cost(batch.shape)
            collector.events += 1
            yield env.timeout(cost.duration_s)
            first, finished = batcher.complete(batch)
            collector.iteration(self.index, now, cost, batch.shape, batch.size, batcher.kv.used_blocks)
            end = env.now
            if first:
                collector.first_tokens(first, end)
            if finished:
                collector.finish(finished, end)
                self.on_done(finished)
