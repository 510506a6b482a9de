"""run(scenario) -> RunResult: the stages of the data flow, one call each."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import networkx as nx
import pandas as pd
import simpy

from simulator import replica_groups, report, slo
from simulator.config.load import Scenario, load_model_config
from simulator.collect import InvariantError
from simulator.engine.cluster import Cluster
from simulator.engine.replica import Drafter
from simulator.errors import CapacityError, ScenarioError
from simulator.hardware.model import ModelShape, model_shape
from simulator.hardware.placement import Plan, plan_deployment, plan_pools
from simulator.hardware.roofline import StepCostModel
from simulator.hardware.topology import Routes, build_graph, chip
from simulator.iteration_store import IterationStore
from simulator.workload.arrivals import generate


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced; `write(dir)` puts it on disk in the documented layout."""
    scenario: Scenario
    plan: Plan
    model: ModelShape
    summary: dict
    requests: pd.DataFrame
    iteration_store: IterationStore
    links: pd.DataFrame

    @property
    def iterations(self) -> pd.DataFrame:
        """Every iteration as a DataFrame, built on each call (a long run's is large: the store reads columns)."""
        return self.iteration_store.frame()

    def write(self, out_dir: str | Path, plots: bool = True) -> Path:
        return report.write_outputs(self, Path(out_dir), plots=plots)


@dataclass(frozen=True)
class Pool:
    """Replicas that share one role and one placement: all of them (colocated), or prefill / decode."""
    role: str
    plan: Plan
    cost_models: list[StepCostModel]


@dataclass(frozen=True)
class Prepared:
    """Stage 2: the model's shape, its pools of replicas with their per-stage cost models, the cluster graph."""
    model: ModelShape
    pools: list[Pool]
    graph: nx.DiGraph
    drafter: Drafter | None = None  # speculative decoding's drafting cost

    @property
    def plan(self) -> Plan:
        """The first pool's plan: the only one unless prefill and decode are disaggregated."""
        return self.pools[0].plan

    @property
    def cost_models(self) -> list[StepCostModel]:
        return self.pools[0].cost_models


def prepare(scenario: Scenario) -> Prepared:
    spec = scenario.spec
    try:
        model = model_shape(scenario.model_name, scenario.model_config)
        plans = plan_pools(model, scenario.chip, spec.cluster, spec.deployment)
        graph = build_graph(spec.cluster, scenario.chip)
    except (ScenarioError, CapacityError) as exc:
        raise exc.with_file(scenario.file) from None
    except ValueError as exc:  # a fabric the chip cannot provide
        raise ScenarioError("cluster", str(exc), scenario.origins.get("cluster", scenario.file)) from None
    batcher = spec.serving.batcher
    if batcher.kv_policy == "paged" and batcher.preemption == "swap" and spec.cluster.host is None:
        raise ScenarioError("serving.batcher.preemption",
                            f"swap needs host memory behind PCIe, but topology {spec.cluster.name} has no `host:` "
                            "block; allowed here: recompute", scenario.file)
    pools = [Pool(role, plan, [StepCostModel.build(model, plan, scenario.chip, s)
                               for s in range(plan.pipeline_parallel)]) for role, plan in plans]
    _check_paths(graph, [plan for _, plan in plans], scenario)
    return Prepared(model, pools, graph, _drafter(scenario, model, pools))


def _drafter(scenario: Scenario, model: ModelShape, pools: list[Pool]) -> Drafter | None:
    """Speculative decoding: a draft model's decode passes on the target's chips, or one target layer per
    drafted token (multi-token prediction)."""
    spec, speculative = scenario.spec, scenario.spec.serving.speculative
    if speculative is None:
        return None
    if any(pool.plan.pipeline_parallel > 1 for pool in pools) or spec.serving.batcher.kv_policy != "reserve":
        raise ScenarioError("serving.speculative", "is modelled with pipeline_parallel 1 and kv_policy reserve; "
                            "got pipeline parallelism or paged KV", scenario.file)
    target = pools[-1].cost_models[0]  # the decoding pool's
    if speculative.draft_model is None:
        return Drafter(speculative.tokens, target, 1)
    base = Path(scenario.file).resolve().parent
    name, config = load_model_config(speculative.draft_model, base, scenario.file)
    try:
        draft = model_shape(name, config)
        plan = plan_deployment(draft, scenario.chip, spec.cluster, spec.deployment.model_copy(update={
            "tensor_parallel": pools[-1].plan.tensor_parallel, "replicas": 1, "pipeline_parallel": 1,
            "disaggregated": None, "expert_parallel": 1}))
    except (ScenarioError, CapacityError) as exc:
        raise exc.with_file(scenario.file) from None
    cost_model = StepCostModel.build(draft, plan, scenario.chip, 0)
    return Drafter(speculative.tokens, cost_model, cost_model.layers)


def _check_paths(graph: nx.DiGraph, plans: list[Plan], scenario: Scenario) -> None:
    """Every chip pair a replica's collectives and stage sends use must be connected by the topology."""
    routes = Routes(graph)
    for plan in plans:
        stages = [[chip(i) for i in plan.stage_chips(r, s)] for r in range(plan.replicas)
                  for s in range(plan.pipeline_parallel)]
        pairs = [(a, b) for group in stages for a in group for b in group if a != b]
        pairs += [(a, b) for r in range(plan.replicas) for s in range(plan.pipeline_parallel - 1)
                  for a, b in zip(map(chip, plan.stage_chips(r, s)), map(chip, plan.stage_chips(r, s + 1)))]
        for a, b in pairs:
            try:
                routes.route(a, b)
            except ValueError as exc:
                raise ScenarioError("cluster", f"{exc}: the deployment needs chips {a} and {b} to talk; give "
                                    "the topology a scaleup (inside a node) or scaleout (between nodes) fabric",
                                    scenario.origins.get("cluster", scenario.file)) from None


def run(scenario: Scenario, seed: int | None = None, measure_memory: bool = False,
        watch: Callable[[float, int], bool] | None = None) -> RunResult:
    """Simulate a scenario. The same scenario and seed always give the same results.

    `watch(simulated seconds, requests done)` is called every few thousand events (progress); when it returns
    True the run stops there and the result is the partial but consistent state of that moment, marked
    `summary["sim"]["interrupted"]` (unfinished requests count as in flight)."""
    if seed is not None:
        scenario = replace(scenario, spec=scenario.spec.model_copy(update={"seed": seed}))
    spec = scenario.spec
    wall_start = time.perf_counter()
    if measure_memory:
        tracemalloc.start()
    prepared = prepare(scenario)
    model, plan = prepared.model, prepared.plan
    requests = generate(spec.workload, spec.seed)
    env = simpy.Environment()
    cluster = Cluster(env, spec, model, prepared.pools, prepared.graph, requests, prepared.drafter,
                      scenario.chip.efficiency.collective)
    groups, why_not = replica_groups.split(cluster, spec.sim.workers)
    if groups:
        span, interrupted = replica_groups.simulate(scenario, cluster, groups), False
    else:
        interrupted = cluster.run(spec.sim.max_time, watch)
        span = env.now
    cluster.check(span)
    peak_bytes = tracemalloc.get_traced_memory()[1] if measure_memory else None
    if measure_memory:
        tracemalloc.stop()
    wall_s = time.perf_counter() - wall_start
    frames = report.frames(cluster.collector, requests, cluster.network, prepared.graph, span,
                           slo.targets(spec, requests.class_names))
    events = cluster.collector.events + cluster.network.events
    summary = report.summarize(scenario, model, [(p.role, p.plan) for p in prepared.pools], frames, span,
                               events, wall_s, peak_bytes)
    summary["network"]["closed_form_replicas"] = cluster.private_replicas
    summary["sim"]["interrupted"] = interrupted
    summary["sim"]["replica_groups"] = max(1, len(groups))
    if spec.sim.workers > 1 and not groups:
        summary["sim"]["replica_groups_note"] = f"simulated in one process: {why_not}"
    problems = report.out_of_range(summary)
    if problems:
        raise InvariantError("run broke its invariants (a bug in infersim): " + "; ".join(problems))
    return RunResult(scenario, plan, model, summary, *frames)
