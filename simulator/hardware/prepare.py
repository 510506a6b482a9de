"""Stage (2) of a run: the scenario's hardware side made concrete, before anything is simulated.

The model's shape, its pools of replicas (all colocated, or prefill and decode) each with its placement on
the chips and a roofline cost model per pipeline stage, the cluster graph, and the cost of speculative
drafting; checked that every chip pair the deployment needs to talk is connected. `explain` stops here;
`run` hands it to the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from simulator.config.deployment import ExpertRoutingSpec
from simulator.config.load import Scenario, engine_step_overhead_s, load_model_config, sequence_overhead_s
from simulator.errors import CapacityError, ScenarioError
from simulator.hardware.expert_routing import read_loads
from simulator.hardware.model import ModelShape, model_shape
from simulator.hardware.placement import Plan, plan_deployment, plan_pools
from simulator.hardware.roofline import Drafter, StepCostModel
from simulator.hardware.topology import Routes, build_graph, chip


@dataclass(frozen=True)
class Pool:
    """Replicas that share one role and one placement: all of them (colocated), or prefill / decode."""
    role: str
    plan: Plan
    cost_models: list[StepCostModel]
    expert_loads: np.ndarray | None = None  # measured routing probabilities, one row per MoE layer


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
    if spec.serving.kv_offload is not None and spec.cluster.host is None:
        raise ScenarioError("serving.kv_offload",
                            f"the host-DRAM tier sits behind PCIe, but topology {spec.cluster.name} has no `host:` "
                            "block to time its copies on; add one (e.g. PCIe 5.0 x16, 63 GB/s)", scenario.file)
    per_sequence = sequence_overhead_s(scenario.chip, spec.serving.engine)
    per_step = engine_step_overhead_s(scenario.chip, spec.serving.engine)
    loads_file = spec.deployment.expert_routing.loads
    try:
        loads = read_loads(loads_file, model.n_experts, model.n_moe_layers) if loads_file else None
    except ScenarioError as exc:
        raise exc.with_file(scenario.file) from None
    pools = [Pool(role, plan, [StepCostModel.build(model, plan, scenario.chip, s, per_sequence, per_step)
                               for s in range(plan.pipeline_parallel)], loads) for role, plan in plans]
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
        heads = scenario.model_config.get("num_nextn_predict_layers") or 0
        if not isinstance(heads, int) or heads < 1:
            raise ScenarioError("serving.speculative.draft_model", f"is not set, so multi-token-prediction heads "
                                f"would draft, but model {scenario.model_name} has none (its config.json has no "
                                "num_nextn_predict_layers); allowed: a draft_model, or a model with MTP heads "
                                "(e.g. deepseek-v3)", scenario.file)
        return Drafter(speculative.tokens, target, 1)
    base = Path(scenario.file).resolve().parent
    name, config = load_model_config(speculative.draft_model, base, scenario.file)
    try:
        draft = model_shape(name, config)
        plan = plan_deployment(draft, scenario.chip, spec.cluster, spec.deployment.model_copy(update={
            "tensor_parallel": pools[-1].plan.tensor_parallel, "replicas": 1, "pipeline_parallel": 1,
            "disaggregated": None, "expert_parallel": 1, "data_parallel_attention": 1,
            "expert_routing": ExpertRoutingSpec()}))
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
