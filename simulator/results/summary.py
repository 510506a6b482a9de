"""A run's numbers: the requests and links tables built once from the records, and summary.json.

Metric definitions (the one place they are written down):
- queue_s: arrival -> admission into the running batch. ttft_s: arrival -> first output token delivered, plus
  the serving engine's front-end latency (catalog/engines: HTTP, tokenisation, IPC, streaming back; 0 for
  in-process engines), as a client measures it; first_token_s is when the engine emits it. The front end is
  off the GPU's path: a constant on each request, so the schedule is the same with or without it (a closed
  loop's user would send its next request that much later: not modelled, < 0.1% of a turn of seconds).
- tpot_s: (finish - first token) / (output tokens - 1), first token excluded; requests with 1 output token
  have none. e2e_s: arrival -> last token, plus the front-end latency.
- throughput: completed requests' tokens over the simulated span (time 0 to the last event).
- utilization.compute_mean / memory_bw_mean: achieved FLOP/s and bytes/s as a fraction of nameplate peak,
  averaged over the span and the chips. links: bytes carried over (achievable bandwidth x span), per directed
  link that carried traffic (`src->dst`); achievable = bandwidth x the chip's efficiency.collective.
- utilization.memory_tiers: per tier the plan reads (resident: KV and the weights it holds; streamed: weights
  read from a slower tier), its nameplate bandwidth, bytes moved, and those bytes over the achievable
  bandwidth (nameplate x efficiency.memory) x span x chips (results/memory_tiers.py).
- bottleneck: per phase (decode: iterations with decode tokens only; prefill: with prompt tokens), the largest
  share of its busy time (`bound_by`, `share`, every `shares`), compute and each tier's use of the achievable
  rate while it runs, the tier whose bytes take the longest (`memory_tier`); `network`: the busiest link, the
  share of a replica's time spent waiting for the network, and whether that wait is bandwidth- or
  latency-bound (results/bottleneck.py).
- bottleneck_share: share of busy time in which compute or memory bounds the roofline, the time spent waiting
  for collectives and stage-to-stage sends (network), fixed overheads, and pipeline bubbles.
- energy: idle power of every chip over the span, plus core power while kernels run (a share whenever a kernel
  is resident, the rest with the arithmetic's time at the achievable rate), per byte of the memory tier and
  per byte per link hop (hardware/energy.py): a busy chip draws near TDP, an idle one idle power;
  `energy` breaks it down (kernel_busy_share: chip-time with a kernel resident) and gives the share
  spent moving data. Cost: rent per chip-hour, or purchase price amortised plus energy x PUE x price;
  `cost` records the basis (rent or purchase) and where each price came from (config/cost.py).
- itl_s: inter-token latency over every decode token of the run (weighted percentiles of iteration gaps):
  with chunked prefill, iteration durations weighted by decode tokens; without it, the pauses of decodes
  during prefill-only iterations included (results/slo.py).
- slo: attainment (requests that completed within their class's TTFT and TPOT targets / requests that
  arrived), goodput_requests_per_s (those requests / span), and both per class with the targets checked;
  requests.parquet has each request's `class` and `meets_slo` (definitions in results/slo.py).
- kv_cache.prefix_hit_tokens: prompt tokens whose KV-cache a request found in the prefix cache and did not
  prefill; prefix_hit_rate: those over the prompt tokens of the requests that arrived.
- kv_cache.swapped_bytes: bytes copied between HBM and host DRAM (swapped sequences, and with a host tier
  the prefix blocks offloaded and reloaded).
- kv_offload (only with serving.kv_offload; serving/kv_offload.py): prefix blocks offloaded to the host tier
  (offloaded_blocks, offload_bytes), found there and read back instead of recomputed (hit_blocks,
  reload_bytes), prompt blocks in neither HBM nor the tier (miss_blocks; hit_rate = hits / (hits + misses)),
  entries dropped for room, swaps refused for lack of room (those sequences recompute), the peak bytes one
  replica's tier held against its capacity.
- warnings (only when there is one): settings that ran but could not do what they say, e.g. prefix caching on
  a workload in which no two requests share a block (run.py).
"""

from __future__ import annotations

import functools
import json
import math
import operator
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from simulator.config.cost import CostBasis, cost_basis
from simulator.config.scenario import CostSpec
from simulator.hardware.energy import EnergyModel, EnergyParts, energy_parts, system_counts, system_energy
from simulator.hardware.placement import Plan
from simulator.results import bottleneck, slo
from simulator.results.collect import STATUS_NAMES, Collector, LinkHistogram
from simulator.results.iteration_store import IterationStore
from simulator.results.memory_tiers import plan_tiers, run_use
from simulator.workload.arrivals import Requests

if TYPE_CHECKING:
    import networkx as nx

    from simulator.config.load import Scenario
    from simulator.hardware.model import ModelShape

SECONDS_PER_YEAR = 365.0 * 24 * 3600


def tables(c: Collector, requests: Requests, links: LinkHistogram, capacity: dict[str, float], graph: "nx.DiGraph",
           span_s: float, slo_targets: list[slo.Targets] | None = None, frontend_s: float = 0.0
           ) -> tuple[pd.DataFrame, IterationStore, pd.DataFrame]:
    """(requests frame, iteration rows, links frame) from a finished run's records; `slo_targets` per class
    (none: every completed request meets its SLO); `frontend_s`, the serving engine's front-end latency, is in
    the TTFT and E2E a client sees. Iterations stay in their store (a long run has millions): summaries read
    them a column at a time."""
    req = pd.DataFrame({
        "request_id": np.arange(c.n, dtype=np.int64),
        "replica": np.asarray(c.replica, dtype=np.int32),
        "status": pd.Categorical([STATUS_NAMES[s] for s in c.status], categories=list(STATUS_NAMES.values())),
        "arrival_s": np.asarray(c.arrival_s, dtype=np.float64),
        "admit_s": np.asarray(c.admit_s, dtype=np.float64),
        "first_token_s": np.asarray(c.first_token_s, dtype=np.float64),
        "finish_s": np.asarray(c.finish_s, dtype=np.float64),
        "prompt_tokens": requests.prompt_tokens,
        "output_tokens": requests.output_tokens,
        "drop_reason": c.drop_reason,
        "preemptions": np.asarray(c.preemptions, dtype=np.int32),
        "kv_transfer_bytes": np.asarray(c.kv_transfer_bytes, dtype=np.float64),
        "prefix_hit_tokens": np.asarray(c.prefix_hit_tokens, dtype=np.int64),
        "drafted_tokens": np.asarray(c.drafted_tokens, dtype=np.int64),
        "accepted_tokens": np.asarray(c.accepted_tokens, dtype=np.int64),
    })
    req["queue_s"] = req["admit_s"] - req["arrival_s"]
    req["ttft_s"] = req["first_token_s"] - req["arrival_s"] + frontend_s
    req["e2e_s"] = req["finish_s"] - req["arrival_s"] + frontend_s
    req.loc[req["status"] != "completed", "e2e_s"] = np.nan
    decode_tokens = (req["output_tokens"] - 1).where(req["output_tokens"] > 1)
    req["tpot_s"] = (req["finish_s"] - req["first_token_s"]) / decode_tokens
    req.loc[req["status"] != "completed", "tpot_s"] = np.nan
    req["class"] = pd.Categorical.from_codes(requests.class_id, categories=list(requests.class_names))
    req["meets_slo"] = slo.meets(req, slo_targets or [(None, None)] * len(requests.class_names))
    return req, c.iterations, link_frame(links, capacity, graph, span_s)


def link_frame(hist: LinkHistogram, capacity: dict[str, float], graph: "nx.DiGraph", span_s: float) -> pd.DataFrame:
    """Bytes and utilisation of every link that carried traffic, per time bucket of the histogram; utilisation
    is against what a link can achieve (`capacity`, bytes/s)."""
    edges_by_id = {d["id"]: (u, v, d) for u, v, d in graph.edges(data=True)}
    n = max(1, min(hist.max_buckets, int(np.ceil(span_s / hist.width)) if span_s > 0 else 1))
    starts = np.arange(n) * hist.width
    widths = np.minimum(starts + hist.width, max(span_s, hist.width)) - starts
    names = sorted(hist.bins)
    if not names:
        return pd.DataFrame({name: pd.Series(dtype=kind) for name, kind in LINK_COLUMNS.items()})
    carried = np.zeros((len(names), n))
    for row, link in enumerate(names):
        bins = hist.bins[link][:n]
        carried[row, :len(bins)] = bins
    ends = [edges_by_id[link] for link in names]
    bandwidth = np.array([d["bw"] for _, _, d in ends])
    achievable = np.array([capacity[link] for link in names])
    can_carry = achievable[:, None] * widths[None, :]
    return pd.DataFrame({
        "link": np.repeat(names, n), "fabric": np.repeat([d["fabric"] for _, _, d in ends], n),
        "src": np.repeat([u for u, _, _ in ends], n), "dst": np.repeat([v for _, v, _ in ends], n),
        "bandwidth_bytes_per_s": np.repeat(bandwidth, n), "achievable_bytes_per_s": np.repeat(achievable, n),
        "bucket_start_s": np.tile(starts, len(names)),
        "bucket_s": np.tile(widths, len(names)), "bytes": carried.ravel(),
        "utilization": np.divide(carried, can_carry, out=np.zeros_like(carried), where=can_carry > 0).ravel(),
        "energy_j": (carried * 8.0 * np.array([d["energy_per_bit"] for _, _, d in ends])[:, None]).ravel(),
    })


LINK_COLUMNS = {"link": "str", "fabric": "str", "src": "str", "dst": "str", "bandwidth_bytes_per_s": "f8",
                "achievable_bytes_per_s": "f8",
                "bucket_start_s": "f8", "bucket_s": "f8", "bytes": "f8", "utilization": "f8", "energy_j": "f8"}


def _stats(values: pd.Series) -> dict[str, float | None]:
    v = values.dropna().to_numpy()
    if v.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"mean": float(v.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _share(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def summarize(scenario: "Scenario", model: "ModelShape", pools: list[tuple[str, Plan]],
              tables: tuple[pd.DataFrame, IterationStore, pd.DataFrame], span_s: float, events: int,
              wall_s: float, peak_bytes: int | None = None) -> dict[str, Any]:
    """`pools`: (role, plan) of every pool of replicas; one ("colocated", plan) unless disaggregated."""
    req, it, links = tables
    plan = pools[0][1]
    spec, chip = scenario.spec, scenario.chip
    done = req[req["status"] == "completed"]
    counts = req["status"].value_counts()
    out_tokens = float(done["output_tokens"].sum())
    chips = sum(p.chips_total for _, p in pools)
    nodes = math.ceil(chips / spec.cluster.chips_per_node)
    busy = float(it["duration_s"].sum())
    per_chip = it["chips"]  # iteration columns are per chip of the replica that ran them

    def total(column: str) -> float:
        return float((it[column] * per_chip).sum())

    flops, memory_bytes, stream_bytes, swap_bytes = (total(f"{c}_per_chip") for c in ("flops", "memory_bytes",
                                                                                      "stream_bytes", "swap_bytes"))
    kernel_s = total("compute_bound_s") + total("memory_bound_s")  # chip-seconds with a kernel resident
    arithmetic_s = total("compute_s")  # chip-seconds the FLOPs take at the achievable rate
    del per_chip
    batch_sizes = it["batch_size"]
    link_util = {}
    if not links.empty:
        totals = links.groupby("link", sort=True).agg(bytes=("bytes", "sum"), bw=("achievable_bytes_per_s", "first"))
        link_util = {link: _share(float(row.bytes), float(row.bw) * span_s) for link, row in totals.iterrows()}
    busiest = cast("dict[str, float]", link_util)  # a link carried its bytes over span_s > 0: no share is None
    system = system_counts(spec.cluster, nodes)
    energy = _energy(scenario, plan, chips, kernel_s, arithmetic_s, memory_bytes, stream_bytes, links, span_s)
    if energy is not None:
        energy = system_energy(energy, system, span_s, spec.cost.host_w_per_node, spec.cost.nic_w,
                               spec.cost.switch_w)
    energy_j = energy.total_j if energy else None
    basis = cost_basis(spec.cost, chip)
    racks = None if spec.cluster.nodes_per_rack is None else math.ceil(nodes / spec.cluster.nodes_per_rack)
    cost_parts = _cost_parts(basis, spec.cost, chips, nodes, racks or 1, span_s, energy_j)
    # added in order, left to right (not sum(): its compensated summation moves the last bit)
    cost_usd = None if cost_parts is None else functools.reduce(operator.add, cost_parts.values())
    system_w = sum(system.watts(spec.cost.host_w_per_node, spec.cost.nic_w, spec.cost.switch_w))  # the rest
    per_chip_peak = chip.compute.peak[plan.compute_dtype]
    tiers = plan_tiers(plan, chip.efficiency.memory)
    summary: dict[str, Any] = {
        "scenario": spec.name,
        "seed": spec.seed,
        "model": model.name,
        "chip": chip.id,
        **({} if scenario.chip_origin == "catalog" else {"chip_origin": scenario.chip_origin}),
        "requests": {"arrived": int(len(req) - counts.get("not_arrived", 0)),
                     "completed": int(counts.get("completed", 0)), "dropped": int(counts.get("dropped", 0)),
                     "in_flight": int(counts.get("in_flight", 0))},
        "ttft_s": _stats(done["ttft_s"]),
        "tpot_s": _stats(done["tpot_s"]),
        "e2e_s": _stats(done["e2e_s"]),
        "queue_s": _stats(done["queue_s"]),
        "itl_s": slo.itl_stats(it),
        "slo": slo.summary(req, slo.targets(spec, list(req["class"].cat.categories)), span_s),
        "throughput": {
            "requests_per_s": _share(len(done), span_s),
            "output_tokens_per_s": _share(out_tokens, span_s),
            "total_tokens_per_s": _share(out_tokens + float(done["prompt_tokens"].sum()), span_s),
            "output_tokens_per_s_per_chip": _share(out_tokens, span_s * chips),
        },
        "utilization": {
            "compute_mean": _share(flops, per_chip_peak * span_s * chips),
            "memory_bw_mean": _share(memory_bytes, plan.tier_bandwidth * span_s * chips),
            "links": link_util,
            "memory_tiers": run_use(it, tiers, chips, span_s),
        },
        "bottleneck_share": {
            "compute": _share(float(it["compute_bound_s"].sum()), busy),
            "memory": _share(float(it["memory_bound_s"].sum()), busy),
            "network": _share(float(it["network_s"].sum()), busy),
            "overhead": _share(float(it["overhead_s"].sum()), busy),
            "bubble": _share(float(it["bubble_s"].sum()), busy),
        },
        "bottleneck": bottleneck.analyse(it, busiest, tiers, per_chip_peak * chip.efficiency.compute, span_s),
        "network": {
            "link_bytes": float(links["bytes"].sum()) if len(links) else 0.0,  # bytes x links crossed
            "busiest_link": max(busiest, key=busiest.__getitem__) if busiest else None,
            "busiest_link_utilization": max(busiest.values()) if busiest else None,
        },
        "energy_j": energy_j,
        "energy_j_per_output_token": _share(energy_j, out_tokens) if energy_j is not None else None,
        "energy": None if energy is None else {
            "idle_j": energy.idle_j, "compute_j": energy.compute_j, "kernel_j": energy.kernel_j,
            "arithmetic_j": energy.arithmetic_j, "memory_j": energy.memory_j,
            "network_j": energy.network_j, "data_movement_share": energy.data_movement_share,
            "host_j": energy.host_j, "nic_j": energy.nic_j, "switch_j": energy.switch_j,
            "components": {"nodes": system.nodes, "nics": system.nics, "switches": system.switches},
            "j_per_output_token": {name: _share(joules, out_tokens) for name, joules in (
                ("idle", energy.idle_j), ("kernel", energy.kernel_j), ("arithmetic", energy.arithmetic_j),
                ("memory", energy.memory_j), ("network", energy.network_j), ("host", energy.host_j),
                ("nics", energy.nic_j), ("switches", energy.switch_j))},
            "mean_power_w": _share(energy.total_j, span_s),
            "mean_power_w_per_chip": _share(energy.chips_j, span_s * chips),  # the chips and links only
            "kernel_busy_share": _share(kernel_s, span_s * chips),  # chip-time with a kernel resident
            "links_without_energy_figure": int((links.groupby("link")["energy_j"].sum() == 0).sum())
            if len(links) else 0,
        },
        "deployment": {
            "chips": chips, "nodes": nodes,
            "racks": racks,
            "nameplate_power_kw": None if chip.power is None else (chips * chip.power.tdp + system_w) / 1e3,
            "facility_power_kw": None if chip.power is None
            else (chips * chip.power.tdp + system_w) * spec.cost.pue / 1e3,
        },
        "cost_usd": cost_usd,
        "cost": {**basis.record(), "parts_usd": cost_parts},
        "cost_usd_per_million_output_tokens": (None if cost_usd is None or out_tokens == 0
                                               else cost_usd / out_tokens * 1e6),
        "chips": chips,
        "plan": {
            "tensor_parallel": plan.tensor_parallel, "pipeline_parallel": plan.pipeline_parallel,
            "expert_parallel": plan.expert_parallel, "micro_batches": plan.micro_batches,
            "replicas": plan.replicas,
            "weights_dtype": plan.weights_dtype, "kv_dtype": plan.kv_dtype, "compute_dtype": plan.compute_dtype,
            "memory_tier": plan.tier, "weight_stream_tier": plan.stream_tier,
            "weight_bytes_per_chip": plan.weight_bytes_per_chip,
            "kv_capacity_bytes_per_chip": plan.kv_capacity_bytes_per_chip,
            "kv_capacity_tokens_per_replica": plan.kv_capacity_tokens,
            "pools": {role: {"tensor_parallel": p.tensor_parallel, "pipeline_parallel": p.pipeline_parallel,
                             "replicas": p.replicas, "chips": p.chips_total,
                             "kv_capacity_tokens_per_replica": p.kv_capacity_tokens} for role, p in pools},
        },
        "kv_cache": {"preemptions": int(req["preemptions"].sum()),
                     "requests_preempted": int((req["preemptions"] > 0).sum()),
                     "swapped_bytes": swap_bytes,
                     "transferred_bytes": float(req["kv_transfer_bytes"].sum()),
                     "prefix_hit_tokens": int(req["prefix_hit_tokens"].sum()),
                     "prefix_hit_rate": _share(float(req["prefix_hit_tokens"].sum()),
                                               float(req.loc[req["status"] != "not_arrived", "prompt_tokens"].sum()))},
        "batch": {"mean": float(batch_sizes.mean()) if len(it) else None,
                  "max": int(batch_sizes.max()) if len(it) else 0,
                  "iterations": int(len(it))},
        "sim": {"wall_s": wall_s, "events": int(events), "simulated_s": span_s},
    }
    if peak_bytes is not None:
        summary["sim"]["peak_python_bytes"] = int(peak_bytes)
    return summary


def out_of_range(summary: dict[str, Any]) -> list[str]:
    """Fractions of a summary that must lie in [0, 1] and do not: a bug, never a result to report."""
    u = summary["utilization"]
    fractions = {"utilization.compute_mean": u["compute_mean"], "utilization.memory_bw_mean": u["memory_bw_mean"],
                 **{f"utilization.links.{k}": v for k, v in u["links"].items()},
                 **{f"bottleneck_share.{k}": v for k, v in summary["bottleneck_share"].items()},
                 "slo.attainment": summary["slo"]["attainment"]}
    return [f"{name} = {value} is outside [0, 1]" for name, value in fractions.items()
            if value is not None and not -1e-12 <= value <= 1 + 1e-9]


def _energy(scenario: "Scenario", plan: Plan, chips: int, kernel_s: float, arithmetic_s: float,
            memory_bytes: float, stream_bytes: float, links: pd.DataFrame, span_s: float) -> EnergyParts | None:
    """Energy of the run from its totals over every chip: kernel and arithmetic chip-seconds, bytes of the fast
    tier and streamed bytes (hardware/energy.py)."""
    model = EnergyModel.build(scenario.chip, plan.compute_dtype, plan.tier, plan.stream_tier)
    if model is None:
        return None
    return energy_parts(model, chips, span_s, kernel_s, arithmetic_s, memory_bytes,
                        float(links["energy_j"].sum()) if len(links) else 0.0, stream_bytes)


def _cost_parts(basis: CostBasis, cost: CostSpec, chips: int, nodes: int, racks: int, span_s: float,
                energy_j: float | None) -> dict[str, float] | None:
    """The run's cost by part: rent; or the chips, the rest of each node and the racks' facility share
    amortised over `cost.amortization_years`, plus energy x PUE x price. None: no basis (config/cost.py)."""
    if basis.basis == "rent" and basis.rent_usd_per_hour is not None:
        return {"rent": chips * basis.rent_usd_per_hour * span_s / 3600.0}
    if basis.basis != "purchase" or basis.purchase_usd is None or energy_j is None:
        return None
    years = cost.amortization_years * SECONDS_PER_YEAR
    return {"chips": chips * basis.purchase_usd * span_s / years, "nodes": nodes * cost.node_usd * span_s / years,
            "facility": racks * cost.facility_usd_per_rack_year * span_s / SECONDS_PER_YEAR,
            "energy": energy_j * cost.pue * cost.usd_per_kwh / 3.6e6}


def summary_json(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, allow_nan=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    raise TypeError(f"not JSON serialisable: {value!r}")


def offload_summary(capacity_bytes: float, tiers: list) -> dict[str, Any]:
    """`summary.json: kv_offload`: the host-DRAM KV tiers of the replicas (serving/kv_offload.py), summed:
    prefix blocks offloaded and reloaded (hits) or computed (misses) with the bytes that crossed PCIe, blocks
    dropped for room, swaps refused, the peak bytes held by one replica against its capacity."""
    tiers = [t for t in tiers if t is not None]
    total = lambda name: sum(getattr(t, name) for t in tiers)  # noqa: E731
    hits, misses = total("reloaded_blocks"), total("missed_blocks")
    return {"tier": "host_dram", "capacity_bytes_per_replica": capacity_bytes,
            "peak_bytes_per_replica": max((t.peak_bytes for t in tiers), default=0.0),
            "offloaded_blocks": total("stored_blocks"), "offload_bytes": total("offload_bytes"),
            "hit_blocks": hits, "miss_blocks": misses, "hit_rate": _share(hits, hits + misses),
            "reload_bytes": total("reload_bytes"), "dropped_blocks": total("dropped_blocks"),
            "swaps_refused": total("swaps_refused")}
