"""`infersim explain`: the plan of a scenario without simulating it.

What sits where (weights and KV-cache per chip, in which memory tier), how many requests the KV-cache holds,
the minimum number of chips the weights need by capacity alone, and the speed of light of one decode
step: the physical bound (bytes over nameplate bandwidth, FLOPs over nameplate peak) next to the estimate
with the chip's efficiencies, overheads and uncontended collectives, and which resource bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.config.load import Scenario
from simulator.errors import CapacityError
from simulator.hardware.collectives import Phase, repeated, uncontended_s
from simulator.hardware.model import ModelShape, model_shape
from simulator.hardware.moe_traffic import stage_traffic
from simulator.hardware.prepare import Prepared, prepare
from simulator.hardware.roofline import ACTIVATION_BYTES, BatchShape, pipelined
from simulator.hardware.topology import Routes, chip
from simulator.serving.kv_cache import KvBlockPool
from simulator.workload.arrivals import generate


@dataclass(frozen=True)
class StepEstimate:
    """One decode step of `batch` requests at `context` tokens each (seconds). With pipeline stages the batch
    goes through as micro-batches, as the engine runs it: the step is `pipelined()` over them, and each
    resource's share is its part of one micro-batch's way through every stage, scaled to the step."""
    batch: int
    light_s: float       # physical bound: max(FLOPs / peak, bytes / bandwidth) per stage, pipelined
    compute_s: float     # with efficiencies: the kernel classes bound by their FLOPs
    memory_s: float      # and those bound by their bytes
    network_s: float     # uncontended collectives and stage sends
    overhead_s: float
    micro_batches: int = 1

    @property
    def estimate_s(self) -> float:
        return self.compute_s + self.memory_s + self.network_s + self.overhead_s

    @property
    def bound(self) -> str:
        terms = {"compute": self.compute_s, "memory": self.memory_s, "network": self.network_s,
                 "overhead": self.overhead_s}
        return max(terms, key=terms.__getitem__)


def min_chips_by_capacity(model: ModelShape, scenario: Scenario, dtype: str) -> int:
    """Chips whose largest memory tier, full to the brim, just holds the weights (no KV, no runtime)."""
    largest = max(t.capacity for t in scenario.chip.memory)
    return math.ceil(model.weight_bytes(dtype) / largest)


def decode_step(prepared: Prepared, scenario: Scenario, batch: int, context: int) -> StepEstimate:
    plan, graph = prepared.plan, prepared.graph
    routes = Routes(graph)
    efficiency = scenario.chip.efficiency.collective  # as the engine: achievable share of each link
    capacity = {d["id"]: d["bw"] * efficiency for _, _, d in graph.edges(data=True)}
    parts = max(1, min(plan.micro_batches, batch))  # as the engine splits a batch (one per request at most)
    model = prepared.model
    attended = model.attended_positions(context) / model.n_layers  # sliding-window layers attend their window
    shape = BatchShape(0, 0, 0, batch, batch * attended, batch).split(parts)
    peak = scenario.chip.compute.peak[plan.compute_dtype]
    light = compute = memory = network = overhead = 0.0
    light_slowest = slowest = 0.0
    size = shape.tokens * prepared.model.d_model * ACTIVATION_BYTES
    for s, cost_model in enumerate(prepared.cost_models):
        cost = cost_model.cost(shape)
        streamed = cost.stream_bytes / plan.stream_bandwidth if plan.stream_bandwidth else 0.0
        stage_light = max(cost.flops / peak, cost.memory_bytes / plan.tier_bandwidth, streamed)
        light += stage_light
        light_slowest = max(light_slowest, stage_light)
        compute += cost.compute_bound_s
        memory += cost.memory_bound_s
        overhead += cost.overhead_s
        chips = [chip(i) for i in plan.stage_chips(0, s)]
        coll = 0.0
        if len(chips) > 1:
            allreduce, moe = stage_traffic(graph, chips, plan.tensor_parallel, prepared.model.top_k, routes,
                                           efficiency)
            traffic = repeated(allreduce(size), 2 * cost_model.layers)
            if moe is not None:
                traffic += repeated(moe(size), round(cost_model.moe_layers))
            coll = uncontended_s(traffic, routes.route, capacity)[0]
        send = 0.0
        if s + 1 < len(prepared.cost_models):
            nxt = [chip(i) for i in plan.stage_chips(0, s + 1)]
            sends = (Phase(tuple((a, b, size / len(chips)) for a, b in zip(chips, nxt)), 1),)
            send = uncontended_s(sends, routes.route, capacity)[0]
        network += coll + send
        slowest = max(slowest, cost.roofline_s + coll, send)
    in_flight = plan.pipeline_schedule == "in_flight"
    total = compute + memory + network + overhead
    step = pipelined(total, slowest, parts, in_flight)
    scale = step / total if total else 1.0
    return StepEstimate(batch, pipelined(light, light_slowest, parts, in_flight), compute * scale,
                        memory * scale, network * scale, overhead * scale, parts)


def explain(scenario: Scenario) -> list[tuple[str, str, str]]:
    """(section, item, value) rows describing the plan; a model that does not fit says how many chips it
    needs instead of a plan."""
    spec = scenario.spec
    model = model_shape(scenario.model_name, scenario.model_config)
    dtype = spec.deployment.weights_dtype
    total_chips = spec.cluster.nodes * spec.cluster.chips_per_node
    rows = [
        ("model", "parameters (active)", f"{model.total_params / 1e9:.1f} B ({model.active_params / 1e9:.1f} B)"),
        ("model", f"weights at {dtype}", f"{model.weight_bytes(dtype) / 1e9:.1f} GB"),
        ("model", f"KV-cache per token at {spec.deployment.kv_dtype or dtype}",
         f"{model.kv_bytes_per_token(spec.deployment.kv_dtype or dtype) / 1e3:.1f} kB"),
        ("cluster", "chips", f"{total_chips} x {scenario.chip.id} ({spec.cluster.name})"),
        ("cluster", "minimum chips by capacity alone",
         f"{min_chips_by_capacity(model, scenario, dtype)} (weights / largest tier of one chip)"),
    ]
    try:
        prepared = prepare(scenario)
    except CapacityError as exc:
        return rows + [("plan", "does not fit", str(exc))]
    plan = prepared.plan
    requests = generate(spec.workload, spec.seed)
    per_request = float(requests.prompt_tokens.mean() + requests.output_tokens.mean())
    pool = KvBlockPool.for_model(model, plan.kv_capacity_tokens, plan.kv_block_tokens, 1.0)  # sliding layers
    max_batch = min(spec.serving.batcher.max_batch_size,
                    pool.capacity_blocks // max(1, pool.blocks_for(math.ceil(per_request))))
    rows += [
        ("plan", "parallelism", f"TP {plan.tensor_parallel}"
                                f"{f' x attention DP {plan.data_parallel}' if plan.data_parallel > 1 else ''}"
                                f" x PP {plan.pipeline_parallel} (EP "
                                f"{plan.expert_parallel}) x {plan.replicas} replicas = {plan.chips_total} chips"),
        ("plan", "layers per stage", ", ".join(str(n) for n in plan.layers_per_stage)),
        ("memory", "tier holding weights and KV-cache" if not plan.stream_tier else
         f"tier holding the KV-cache and {plan.resident_weight_fraction:.0%} of the weights",
         f"{plan.tier} ({plan.tier_bandwidth / 1e12:.3g} TB/s)"),
        *([("memory", "weights streamed from", f"{plan.stream_tier} ({plan.stream_bandwidth / 1e9:.4g} GB/s): the "
            f"other {1 - plan.resident_weight_fraction:.0%}, every iteration")] if plan.stream_tier else []),
        ("memory", "weights per chip (fullest stage)", f"{plan.weight_bytes_per_chip / 1e9:.2f} GB"),
        ("memory", "usable per chip", f"{plan.usable_bytes_per_chip / 1e9:.2f} GB "
                                      f"(memory_utilization {spec.deployment.memory_utilization})"),
        ("memory", "left for KV-cache per chip", f"{plan.kv_capacity_bytes_per_chip / 1e9:.2f} GB"),
        ("memory", "KV-cache per replica", f"{plan.kv_capacity_tokens:,} tokens"),
        ("batch", "mean request (prompt + output)", f"{per_request:.0f} tokens"),
        ("batch", "maximum batch per replica", f"{max_batch} (KV-cache and max_batch_size)"),
    ]
    context = int(requests.prompt_tokens.mean() + requests.output_tokens.mean() / 2)
    for batch in sorted({1, max(1, max_batch)}):
        step = decode_step(prepared, scenario, batch, context)
        rows += [
            ("decode", f"batch {batch}: speed of light per token",
             f"{step.light_s * 1e3:.4g} ms ({1 / step.light_s:.4g} tokens/s per user)"),
            ("decode", f"batch {batch}: estimate per token",
             f"{step.estimate_s * 1e3:.4g} ms ({1 / step.estimate_s:.4g} tokens/s per user, "
             f"{batch * plan.replicas / step.estimate_s:.4g} tokens/s in all)"
             + (f"; {step.micro_batches} micro-batches through {plan.pipeline_parallel} stages"
                if step.micro_batches > 1 else "")),
            ("decode", f"batch {batch}: bound by",
             f"{step.bound} (compute {step.compute_s * 1e3:.3f}, memory {step.memory_s * 1e3:.3f}, network "
             f"{step.network_s * 1e3:.3f}, overhead {step.overhead_s * 1e3:.3f} ms)"),
        ]
    return rows
