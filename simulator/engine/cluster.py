"""Wire a run: the network, replicas with their stages, batchers and KV pools, the router and the arrival
feeder. Wiring only."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import simpy

from simulator.collect import Collector
from simulator.config.schema import ScenarioSpec
from simulator.engine.link import Network
from simulator.engine.replica import PrivateTraffic, Replica, Stage
from simulator.hardware.collectives import allreduce_for
from simulator.hardware.model import ModelShape
from simulator.hardware.placement import Plan
from simulator.hardware.roofline import StepCostModel
from simulator.hardware.topology import Routes, chip
from simulator.serving.batcher import ContinuousBatching
from simulator.serving.kv_cache import KvBlockPool
from simulator.serving.router import RoundRobinRouter
from simulator.workload.arrivals import Requests


class Cluster:
    """Everything of one simulation that lives inside the SimPy environment."""

    def __init__(self, env: simpy.Environment, spec: ScenarioSpec, model: ModelShape, plan: Plan,
                 cost_models: list[StepCostModel], graph: nx.DiGraph, requests: Requests):
        self.env = env
        self.requests = requests
        self.collector = Collector(len(requests), requests.arrival_s.tolist())
        self.network = Network(env, {d["id"]: d["bw"] for _, _, d in graph.edges(data=True)},
                               spec.sim.link_buckets)
        self.routes = Routes(graph)
        self.router = RoundRobinRouter(plan.replicas)
        self.all_done = env.event()
        self.next_closed_loop = requests.closed_loop_users
        prompt, output = requests.prompt_tokens.tolist(), requests.output_tokens.tolist()
        block_bytes = plan.kv_bytes_per_token_per_chip * plan.kv_block_tokens * plan.tensor_parallel
        self.pools = [KvBlockPool(plan.kv_capacity_blocks, plan.kv_block_tokens, block_bytes)
                      for _ in range(plan.replicas)]
        all_stages = [[Stage(env, [chip(i) for i in plan.stage_chips(r, s)], cost_model,
                             allreduce_for(graph, [chip(i) for i in plan.stage_chips(r, s)]))
                       for s, cost_model in enumerate(cost_models)] for r in range(plan.replicas)]
        private = self._private_replicas(all_stages) if spec.sim.collectives == "iteration" else set()
        self.private_replicas = len(private)
        self.replicas = []
        for r, (pool, stages) in enumerate(zip(self.pools, all_stages)):
            batcher = ContinuousBatching(spec.serving.batcher, pool, prompt, output, model.max_context)
            rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xE7, r]))
            self.replicas.append(Replica(env, r, batcher, stages, plan.micro_batches, self.network, self.routes,
                                         self.collector, self._on_done, rng, spec.sim.collectives == "layer",
                                         private=r in private))
        if requests.closed_loop_users:
            for rid in range(min(requests.closed_loop_users, len(requests))):
                self._arrive(rid)
        else:
            env.process(self._feed_open_loop())

    def _private_replicas(self, all_stages: list[list[Stage]]) -> set[int]:
        """Replicas none of whose links carry another replica's or stage's traffic: their iterations can be
        timed in closed form (exactly what the flow model would give), one event each."""
        capacity = self.network.capacity
        users: dict[str, int] = {}
        for stages in all_stages:
            for s, stage in enumerate(stages):
                try:
                    stage.private = PrivateTraffic(stage, stages[s + 1] if s + 1 < len(stages) else None,
                                                   self.routes, capacity)
                except ValueError:  # no closed form for this collective: keep flows
                    stage.private = None
                    continue
                for links in stage.private.sources():
                    for link in links:
                        users[link] = users.get(link, 0) + 1
        return {r for r, stages in enumerate(all_stages)
                if all(st.private and all(users[link] == 1 for links in st.private.sources() for link in links)
                       for st in stages)}

    def _arrive(self, rid: int) -> None:
        replica = self.router.route(rid)
        self.collector.arrive(rid, self.env.now, replica)
        self.replicas[replica].submit(rid)

    def _feed_open_loop(self):
        env = self.env
        for rid, t in enumerate(self.requests.arrival_s.tolist()):
            if t > env.now:
                self.collector.events += 1
                yield env.timeout(t - env.now)
            self._arrive(rid)

    def _on_done(self, rids: list[int]) -> None:
        c = self.collector
        if c.completed + c.dropped == c.n and not self.all_done.triggered:
            self.all_done.succeed()
        if not self.requests.closed_loop_users:
            return
        for _ in rids:  # each finished user sends its next request after thinking
            if self.next_closed_loop >= len(self.requests):
                return
            rid, self.next_closed_loop = self.next_closed_loop, self.next_closed_loop + 1
            think = self.requests.think_time_s
            if think > 0:
                c.events += 1
                self.env.timeout(think).callbacks.append(lambda _event, rid=rid: self._arrive(rid))
            else:
                self._arrive(rid)

    def run(self, max_time_s: float | None) -> None:
        until = self.all_done
        if max_time_s is not None:
            until = self.env.any_of([self.all_done, self.env.timeout(max_time_s)])
        if len(self.requests):
            self.env.run(until=until)

    def check(self) -> None:
        problems = [p for pool in self.pools for p in pool.check()]
        problems += self.network.check()
        held = sum(len(pool.held) for pool in self.pools)
        running = sum(len(r.batcher.running) for r in self.replicas)
        if held != running:
            problems.append(f"{held} requests hold KV blocks but {running} are running")
        if not math.isfinite(self.env.now):
            problems.append(f"simulated time is {self.env.now}")
        self.collector.check(problems)
