"""Wire a run: the network, replicas with their stages, batchers and KV pools, the router and the arrival
feeder. Wiring only."""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Callable
from functools import partial

import networkx as nx
import numpy as np
import simpy

from simulator.config.scenario import ScenarioSpec
from simulator.engine.iteration import PrivateTraffic, Stage
from simulator.engine.link import Network
from simulator.engine.replica import Replica, exact_delay, run_collective
from simulator.hardware.collectives import Phase
from simulator.hardware.expert_routing import ExpertRouter
from simulator.hardware.model import ModelShape
from simulator.hardware.moe_traffic import stage_traffic
from simulator.hardware.roofline import Drafter, StepCostModel
from simulator.hardware.topology import Routes, chip
from simulator.results.collect import Collector
from simulator.serving.batcher import ContinuousBatching
from simulator.serving.kv_cache import KvBlockPool
from simulator.serving.kv_offload import HostKvTier
from simulator.serving.router import ReplicaView, RoundRobinRouter, make_router
from simulator.serving.speculation import Speculation
from simulator.workload.arrivals import Requests

WATCH_EVERY = 2048  # events between two calls of Cluster.run's `watch`


def _int_array(values: np.ndarray) -> array:
    """Per-request integers as a typed array: 8 bytes each (a list of ints costs 36), fast to index."""
    return array("q", np.ascontiguousarray(values, dtype=np.int64).tobytes())


class ArrivalTimeout(simpy.Event):
    """A timeout processed before every other event of the same instant, so that a request arriving exactly
    at an iteration boundary is always seen there (whatever the order the events were created in)."""

    def __init__(self, env: simpy.Environment, delay: float):
        super().__init__(env)
        self._ok, self._value = True, None  # triggered, as simpy.Timeout sets itself
        env.schedule(self, simpy.core.URGENT, delay)


class Cluster:
    """Everything of one simulation that lives inside the SimPy environment."""

    def __init__(self, env: simpy.Environment, spec: ScenarioSpec, model: ModelShape, pools: list,
                 graph: nx.DiGraph, requests: Requests, drafter: Drafter | None = None,
                 link_efficiency: float = 1.0, only_replicas: frozenset[int] | None = None):
        """`only_replicas`: simulate only these replicas, with the requests round robin gives them
        (replica_groups.py runs independent groups of replicas in parallel processes)."""
        self.env = env
        self.spec = spec
        self.only_replicas = only_replicas
        self.requests = requests
        self.arrival_s = array("d", np.ascontiguousarray(requests.arrival_s, dtype=np.float64).tobytes())
        self.collector = Collector(len(requests), self.arrival_s, lambda: env.now)
        # links carry bulk transfers at the chip's achievable fraction of their bandwidth (NCCL's "bus
        # bandwidth" is ~80% of the wire's): the catalog's efficiency.collective
        self.network = Network(env, {d["id"]: d["bw"] * link_efficiency for _, _, d in graph.edges(data=True)},
                               spec.sim.link_buckets)
        self.routes = Routes(graph)
        self.link_efficiency = link_efficiency
        self.all_done = env.event()
        self.next_closed_loop = requests.closed_loop_users
        self.disaggregated = any(pool.role == "prefill" for pool in pools)
        # a prompt's KV-cache as sent to a decode replica: sliding-window layers send at most their window
        kv_dtype = pools[0].plan.kv_dtype
        self.kv_bytes = lambda tokens: model.kv_bytes(int(tokens), kv_dtype)
        prompt, output = _int_array(requests.prompt_tokens), _int_array(requests.output_tokens)
        self.output = output
        members = [(pool.role, pool.plan, self._stages(pool, r, graph))
                   for pool in pools for r in range(pool.plan.replicas)]
        private = (self._private_replicas([stages for _, _, stages in members], self._kv_transfer_links(members))
                   if spec.sim.collectives == "iteration" else set())
        self.private_replicas = len(private)
        self.kv_pools: list[KvBlockPool] = []
        self.replicas: list[Replica] = []
        for index, (role, plan, stages) in enumerate(members):
            self._add_replica(index, role, plan, stages, spec, model, prompt, index in private, drafter)
        self.entry = [r for r in self.replicas if r.role != "decode"]  # where requests arrive
        self.decoders = [r for r in self.replicas if r.role == "decode"]
        self.view = ReplicaView([replica.batcher for replica in self.entry], requests)
        self.router = make_router(spec.serving.router, self.view, requests)
        # run-ahead (sim.run_ahead): when nothing but arrivals and the end of the run can reach a closed-form
        # replica, it commits its iterations up to the next arrival that may be routed to it
        self.arrival_event_s = self._arrival_event_times()
        self.next_arrival = 0  # the feed's next request id
        self.pending_thinks: list[float] = []  # closed loop: when thinking users send their next request
        self.max_time_s = math.inf if spec.sim.max_time is None else spec.sim.max_time
        self.expected_requests = len(requests) if only_replicas is None else sum(
            1 for rid in range(len(requests)) if rid % len(self.entry) in only_replicas)
        if self._can_run_ahead(spec, model):
            for replica in self.replicas:
                if replica.private:
                    replica.horizon = partial(self._horizon, replica.index)
                    replica.early_effects = not requests.closed_loop_users
        if requests.closed_loop_users:
            for rid in range(min(requests.closed_loop_users, len(requests))):
                self._arrive(rid)
        else:
            env.process(self._feed_open_loop())

    def _stages(self, pool, replica: int, graph: nx.DiGraph) -> list[Stage]:
        """The pipeline stages of one replica of a pool: chips, cost model and the TP group's all-reduce."""
        stages = []
        for s, cost_model in enumerate(pool.cost_models):
            chips = [chip(i) for i in pool.plan.stage_chips(replica, s)]
            allreduce, moe = stage_traffic(graph, chips, pool.plan.tensor_parallel, cost_model.model.top_k,
                                           self.routes, self.link_efficiency)
            first = sum(round(m.moe_layers) for m in pool.cost_models[:s])
            stages.append(Stage(self.env, chips, cost_model, allreduce, moe,
                                self._router(cost_model, s, pool.expert_loads, first)))
        return stages

    def _router(self, cost_model: StepCostModel, stage: int, loads: np.ndarray | None,
                first: int) -> ExpertRouter | None:
        """The expert routing of a stage with expert parallelism: the model's popularity per layer drawn from
        the run's seed (the same for every replica) or measured (`loads`, from its MoE layer `first` on), its
        placement on the ranks."""
        m, spec = cost_model.model, self.spec.deployment.expert_routing
        if cost_model.ep <= 1 or not m.n_experts:
            return None
        layers = round(cost_model.moe_layers)
        rng = np.random.default_rng(np.random.SeedSequence([self.spec.seed, 0xE8, stage]))
        return ExpertRouter(m.n_experts, m.top_k, layers, cost_model.ep, spec.skew, spec.balance,
                            spec.redundant_experts, rng,
                            None if loads is None else loads[[min(first + i, len(loads) - 1) for i in range(layers)]])

    def _add_replica(self, index: int, role: str, plan, stages: list[Stage], spec: ScenarioSpec,
                     model: ModelShape, prompt: array, private: bool, drafter: Drafter | None) -> None:
        """Wire one replica: its KV pool, its batcher (a prefill replica makes one token per request) and its
        process; prefill replicas hand their requests off instead of finishing them."""
        env, output = self.env, self.output
        block_bytes = plan.kv_bytes_per_token_per_chip * plan.kv_block_tokens * plan.tensor_parallel
        kv = KvBlockPool.for_model(model, plan.kv_capacity_tokens, plan.kv_block_tokens, block_bytes)
        lengths = array("q", [1]) * len(output) if role == "prefill" else output  # a prefill replica: one token
        rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0xE7, index]))
        speculative = spec.serving.speculative if role != "prefill" else None
        speculation = Speculation(speculative.tokens, speculative.acceptance,
                                  np.random.default_rng(np.random.SeedSequence([spec.seed, 0x5D, index]))
                                  ) if speculative else None
        hashes, hash_block_tokens = self.requests.block_hashes(plan.kv_block_tokens)
        offload = spec.serving.kv_offload
        batcher = ContinuousBatching(spec.serving.batcher, kv, prompt, lengths, model.max_context,
                                     hashes if spec.serving.prefix_caching else None, hash_block_tokens,
                                     full_output_tokens=output, speculative=speculation,
                                     answer_blocks=self.requests.shared_prefixes is not None,
                                     window=model.sliding_window or 0,
                                     sliding_share=model.n_sliding_layers / model.n_layers,
                                     host=HostKvTier(offload.capacity, offload.prefixes) if offload else None)
        on_done = partial(self._hand_off, index) if role == "prefill" else self._on_done
        self.kv_pools.append(kv)
        self.replicas.append(Replica(env, index, batcher, stages, plan.micro_batches, plan.pipeline_schedule,
                                     self.network, self.routes,
                                     self.collector, on_done, rng, spec.sim.collectives == "layer",
                                     private=private, role=role, on_dropped=self._on_done,
                                     drafter=drafter if speculation else None))

    def _kv_transfer_links(self, members: list) -> set[str]:
        """Every link a KV-cache hand-off from a prefill replica to a decode replica may use."""
        chips = {role: [[c for stage in stages for c in stage.chips] for r, _, stages in members if r == role]
                 for role in ("prefill", "decode")}
        links: set[str] = set()
        for sources in chips["prefill"]:
            for targets in chips["decode"]:
                for i in range(max(len(sources), len(targets))):
                    links.update(self.routes.route(sources[i % len(sources)], targets[i % len(targets)])[0])
        return links

    def _private_replicas(self, all_stages: list[list[Stage]], shared: set[str]) -> set[int]:
        """Replicas none of whose links carry another replica's traffic (nor KV hand-offs, the `shared`
        links): their iterations can be timed in closed form (exactly what the flow model would give), one
        event each. Traffic of one replica's own stages may share links (a stage's send to the next stage and
        the all-reduces on the chips' switch links): `ReplicaState.pipeline` replays their schedule and
        leaves to flows the iterations where such transfers would overlap."""
        capacity = self.network.capacity
        users: dict[str, set[int]] = {link: {-1} for link in shared}
        for r, stages in enumerate(all_stages):
            for s, stage in enumerate(stages):
                try:
                    stage.private = PrivateTraffic(stage, stages[s + 1] if s + 1 < len(stages) else None,
                                                   self.routes, capacity)
                except ValueError:  # no closed form for this collective: keep flows
                    stage.private = None
                    continue
                for links in stage.private.sources():
                    for link in links:
                        users.setdefault(link, set()).add(r)
        return {r for r, stages in enumerate(all_stages)
                if all(st.private and all(users[link] == {r} for links in st.private.sources() for link in links)
                       for st in stages)}

    def _can_run_ahead(self, spec: ScenarioSpec, model: ModelShape) -> bool:
        """Arrivals are the only outside events that can reach a replica when prefill and decode are not
        disaggregated (no KV hand-offs), a closed loop has one replica (another's finish would release a
        user at any time) and no iteration draws random numbers (expert-parallel routing is sampled)."""
        sampled = model.n_experts and any(s.cost_model.ep > 1 for r in self.replicas for s in r.stages)
        return (spec.sim.run_ahead and not self.disaggregated and not sampled
                and (not self.requests.closed_loop_users or len(self.entry) == 1))

    def _horizon(self, replica: int) -> tuple[float, float, float]:
        """(the earliest time a request may be submitted to `replica`, to any replica, the end of the run).
        Round robin is blind to load, so the next request `replica` gets is known in advance."""
        if self.requests.closed_loop_users:
            anywhere = self.pending_thinks[0] if self.pending_thinks else math.inf
            return anywhere, anywhere, self.max_time_s
        times, j = self.arrival_event_s, self.next_arrival
        anywhere = times[j] if j < len(times) else math.inf
        if isinstance(self.router, RoundRobinRouter):  # request j goes to replica j mod n
            j += (replica - j) % len(self.entry)
        return (times[j] if j < len(times) else math.inf), anywhere, self.max_time_s

    def _arrival_event_times(self) -> array:
        """When the open-loop feed processes each arrival: exactly the times SimPy schedules them at."""
        now, times = 0.0, array("d")
        for t in self.arrival_s if not self.requests.closed_loop_users else ():
            if t > now:
                now = now + (t - now)
            times.append(now)
        return times

    def _arrive(self, rid: int) -> None:
        replica = self.router.route(rid)
        self.view.assign(rid, replica)
        self.collector.arrive(rid, self.env.now, replica)
        self.entry[replica].submit(rid)

    def _feed_open_loop(self):
        env, only, n = self.env, self.only_replicas, len(self.entry)
        for rid, t in enumerate(self.arrival_event_s):
            if only is not None and rid % n not in only:
                continue
            if t > env.now:
                self.collector.events += 1
                yield ArrivalTimeout(env, exact_delay(env.now, t))
            self.next_arrival = rid + 1
            self._arrive(rid)

    def _hand_off(self, source: int, rids: list[int]) -> None:
        """Prefilled on replica `source`: move each request's KV-cache to a decode replica (its first token is
        delivered when the KV-cache has arrived); a one-token request is done already."""
        self.view.release(rids)
        now = self.env.now
        for rid in rids:
            if self.output[rid] == 1:
                self.collector.first_tokens([rid], now)
                self.collector.finish([rid], now)
                self._on_done([rid])
            else:
                self.env.process(self._transfer_kv(rid, self.replicas[source]))

    def _transfer_kv(self, rid: int, source: Replica):
        target = min(self.decoders, key=lambda r: (len(r.batcher.waiting) + len(r.batcher.running), r.index))
        nbytes = self.kv_bytes(self.requests.prompt_tokens[rid])
        sources = [c for stage in source.stages for c in stage.chips]
        targets = [c for stage in target.stages for c in stage.chips]
        n = max(len(sources), len(targets))
        flows = tuple((sources[i % len(sources)], targets[i % len(targets)], nbytes / n) for i in range(n))
        sent = yield from run_collective(self.env, self.network, self.routes, (Phase(flows, 1),))
        self.collector.kv_transferred(rid, sent)
        self.collector.first_tokens([rid], self.env.now)
        reason = target.accept(rid, self.requests.prompt_tokens[rid] + 1, 1)
        if reason:
            self.collector.drop(rid, reason, self.env.now)
            self._on_done([rid])

    def _on_done(self, rids: list[int]) -> None:
        c = self.collector
        if not self.disaggregated:  # under disaggregation the prefill replica released them at hand-off
            self.view.release(rids)
        if c.completed + c.dropped == self.expected_requests and not self.all_done.triggered:
            self.all_done.succeed()
        if not self.requests.closed_loop_users:
            return
        for done in rids:  # each finished user sends its next request after thinking
            if self.requests.user_turns:  # its own next turn (shared_prefix: request ids cycle over users)
                rid = done + self.requests.closed_loop_users
                if rid >= len(self.requests):
                    continue
            elif self.next_closed_loop >= len(self.requests):
                return
            else:
                rid, self.next_closed_loop = self.next_closed_loop, self.next_closed_loop + 1
            self.view.follow(rid, done)
            think = self.requests.think_time_s
            if think > 0:
                c.events += 1
                heapq.heappush(self.pending_thinks, self.env.now + think)

                def think_done(_event: simpy.Event, rid: int = rid) -> None:
                    self._think_done(rid)
                ArrivalTimeout(self.env, think).callbacks.append(think_done)
            else:
                self._arrive(rid)

    def _think_done(self, rid: int) -> None:
        heapq.heappop(self.pending_thinks)  # timers fire in time order
        self._arrive(rid)

    def run(self, max_time_s: float | None, watch: Callable[[float, int], bool] | None = None) -> bool:
        """Simulate until every request is done (or `max_time_s`). `watch(simulated s, requests done)` is
        called about every WATCH_EVERY events; when it returns True the run stops there, between two events,
        so that what was simulated is consistent. Returns whether it was stopped so."""
        env = self.env
        until = self.all_done
        if max_time_s is not None:
            until = env.any_of([self.all_done, env.timeout(max_time_s)])
        if not len(self.requests):
            return False
        if watch is None:
            env.run(until=until)
            return False
        c = self.collector
        while not until.processed:
            try:
                for _ in range(WATCH_EVERY):
                    env.step()
                    if until.processed:
                        return False
            except simpy.core.EmptySchedule:
                raise RuntimeError(f"no events left but the run is not over: {until}") from None
            if watch(env.now, c.completed + c.dropped):
                return True
        return False

    def check(self, span_s: float | None = None) -> None:
        """The run's conservation laws (results/collect.py, link.py, serving/kv_cache.py); `span_s`: how long it
        ran, when not the clock's time (replica groups simulated elsewhere)."""
        problems = [p for pool in self.kv_pools for p in pool.check()]
        problems += [p for r in self.replicas if r.batcher.host is not None for p in r.batcher.host.check()]
        self.network.fold_private()
        problems += self.network.check(span_s)
        held = sum(1 for pool in self.kv_pools for key in pool.held if isinstance(key, int))  # not cache entries
        running = sum(len(r.batcher.running) for r in self.replicas)
        if held != running:
            problems.append(f"{held} requests hold KV blocks but {running} are running")
        if not math.isfinite(self.env.now):
            problems.append(f"simulated time is {self.env.now}")
        self.collector.check(problems)
