"""run(scenario) -> RunResult: the stages of the data flow, one call each.

(1) the scenario, already validated (config/); (2) the deployment prepared (hardware/prepare.py); (3) the
requests generated (workload/); (4)-(5) served and simulated (serving/, engine/); (6)-(7) the records turned
into tables and summary.json (results/), checked against the summary's own invariants.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace

from simulator.config.load import Scenario, load_engine
from simulator.config.scenario import ScenarioSpec
from simulator.engine.simulation import simulate
from simulator.hardware.prepare import prepare
from simulator.results import slo
from simulator.results.collect import InvariantError, placement_problems, speed_of_light_problems
from simulator.results.run_result import RunResult
from simulator.results.speculation import speculation_summary
from simulator.results.summary import offload_summary, out_of_range, summarize, tables
from simulator.workload.arrivals import Requests, generate


def run(scenario: Scenario, seed: int | None = None, measure_memory: bool = False,
        watch: Callable[[float, int], bool] | None = None, will_write: bool = False) -> RunResult:
    """Simulate a scenario. The same scenario and seed always give the same results.

    `watch(simulated seconds, requests done)` is called every few thousand events (progress); when it returns
    True the run stops there and the result is the partial but consistent state of that moment, marked
    `summary["sim"]["interrupted"]` (unfinished requests count as in flight). `will_write`: the result will be
    written (`RunResult.write`), so its iterations table is encoded meanwhile, in a thread."""
    if seed is not None:
        scenario = replace(scenario, spec=scenario.spec.model_copy(update={"seed": seed}))
    spec = scenario.spec
    wall_start = time.perf_counter()
    if measure_memory:
        tracemalloc.start()
    prepared = prepare(scenario)
    model, plan = prepared.model, prepared.plan
    requests = generate(spec.workload, spec.seed)
    sim = simulate(scenario, prepared, requests, watch)
    cluster, span = sim.cluster, sim.span_s
    peak_bytes = tracemalloc.get_traced_memory()[1] if measure_memory else None
    if measure_memory:
        tracemalloc.stop()
    wall_s = time.perf_counter() - wall_start
    if will_write:
        cluster.collector.iterations.encode_ahead()
    network = cluster.network
    frames = tables(cluster.collector, requests, network.histogram, network.capacity, prepared.graph, span,
                    slo.targets(spec, requests.class_names), load_engine(spec.serving.engine).frontend_latency)
    events = cluster.collector.events + network.events
    summary = summarize(scenario, model, [(p.role, p.plan) for p in prepared.pools], frames, span,
                        events, wall_s, peak_bytes)
    summary["network"]["closed_form_replicas"] = cluster.private_replicas
    summary["sim"]["interrupted"] = sim.interrupted
    summary["sim"]["replica_groups"] = sim.groups
    if spec.sim.workers > 1 and sim.why_one_process:
        summary["sim"]["replica_groups_note"] = f"simulated in one process: {sim.why_one_process}"
    if spec.serving.speculative is not None and prepared.drafter is not None:
        summary["speculative"] = speculation_summary(spec.serving.speculative, prepared.drafter, frames[0],
                                                     frames[1])
    if spec.serving.kv_offload is not None:  # only then: summaries of runs without stay as they were
        summary["kv_offload"] = offload_summary(spec.serving.kv_offload.capacity,
                                                [r.batcher.host for r in cluster.replicas])
    warnings = _warnings(spec, requests, plan.kv_block_tokens)
    if warnings:  # only when there is one: summaries of runs without stay as they were
        summary["warnings"] = warnings
    plans = [p.plan for p in prepared.pools]
    problems = out_of_range(summary) + placement_problems(plans, spec.cluster.nodes * spec.cluster.chips_per_node)
    problems += speed_of_light_problems(frames[1], model, plans, scenario.chip)
    if problems:
        raise InvariantError("run broke its invariants (a bug in infersim): " + "; ".join(problems))
    return RunResult(scenario, plan, model, summary, *frames)


def _warnings(spec: ScenarioSpec, requests: Requests, block_tokens: int) -> list[str]:
    """Settings that ran but cannot have done what they say (each one line, also printed by the CLI)."""
    if spec.serving.prefix_caching and not requests.reusable_prefix(block_tokens):
        return [f"serving.prefix_caching is on but no two requests of workload {spec.workload.name or 'inline'!r} "
                "share a prefix block (no trace hash_ids, no workload.shared_prefix): nothing to reuse"]
    return []
