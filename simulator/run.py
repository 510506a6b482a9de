"""run(scenario) -> RunResult: the stages of the data flow, one call each."""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path

import networkx as nx
import pandas as pd
import simpy

from simulator import report
from simulator.config.load import Scenario
from simulator.engine.cluster import Cluster
from simulator.errors import CapacityError, ScenarioError
from simulator.hardware.model import ModelShape, model_shape
from simulator.hardware.placement import Plan, plan_deployment
from simulator.hardware.roofline import StepCostModel
from simulator.hardware.topology import build_graph
from simulator.workload.arrivals import generate


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced; `write(dir)` puts it on disk in the documented layout."""
    scenario: Scenario
    plan: Plan
    model: ModelShape
    summary: dict
    requests: pd.DataFrame
    iterations: pd.DataFrame
    links: pd.DataFrame

    def write(self, out_dir: str | Path, plots: bool = True) -> Path:
        return report.write_outputs(self, Path(out_dir), plots=plots)


@dataclass(frozen=True)
class Prepared:
    """Stage 2: the model's shape, its placement, the per-stage cost models and the cluster graph."""
    model: ModelShape
    plan: Plan
    cost_models: list[StepCostModel]
    graph: nx.DiGraph


def prepare(scenario: Scenario) -> Prepared:
    spec = scenario.spec
    try:
        model = model_shape(scenario.model_name, scenario.model_config)
        plan = plan_deployment(model, scenario.chip, spec.cluster, spec.deployment)
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
    cost_models = [StepCostModel.build(model, plan, scenario.chip, s) for s in range(plan.pipeline_parallel)]
    return Prepared(model, plan, cost_models, graph)


def run(scenario: Scenario, seed: int | None = None, measure_memory: bool = False) -> RunResult:
    """Simulate a scenario. The same scenario and seed always give the same results."""
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
    cluster = Cluster(env, spec, model, plan, prepared.cost_models, prepared.graph, requests)
    cluster.run(spec.sim.max_time)
    cluster.check()
    peak_bytes = tracemalloc.get_traced_memory()[1] if measure_memory else None
    if measure_memory:
        tracemalloc.stop()
    wall_s = time.perf_counter() - wall_start
    frames = report.frames(cluster.collector, requests, cluster.network, prepared.graph, env.now)
    events = cluster.collector.events + cluster.network.events
    summary = report.summarize(scenario, model, plan, frames, env.now, events, wall_s, peak_bytes)
    summary["network"]["closed_form_replicas"] = cluster.private_replicas
    return RunResult(scenario, plan, model, summary, *frames)
