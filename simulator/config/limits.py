"""Limits that protect the machine: a scenario whose run would obviously exhaust memory or last for days is
refused when it is validated, before anything is generated or simulated, unless `sim.allow_huge: true`.

The estimate is meant as a lower bound, built from the scenario alone (no file is read, nothing is simulated),
so that a refusal is a sure thing rather than a guess; a run may well need more than the estimate. Measured on
the default scenario (Llama-3.1-8B, one H100, continuous batching), peak resident memory and wall time grow as

    memory ~ 150 MB + 540 B x requests + 80 B x iterations + 1 kB x (graph nodes + edges)
    wall   ~ 5 us x (requests + iterations) + 20 us x (graph nodes + edges)

(benchmarks/README.md: 10^6 requests, 9.7 M iterations: 1.49 GB and 56 s; 4,096 chips, 7.6 M iterations:
1.15 GB and 41 s)

(the collector keeps a row per request and one per iteration; the topology is a networkx graph). Requests
are num_requests, or the mean arrival rate x duration, summed over the classes (a trace replayed without
num_requests brings the rows of its file, which are not counted). Iterations are at least the output tokens
over max_batch_size: a replica's iteration decodes at most one token (speculative: tokens + 1) for each of at
most max_batch_size requests. With sim.max_time the run may stop early, so only generating the requests up
front counts (~100 B and 0.3 us each). The limits: the machine's physical memory, and 24 hours of wall time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

BASE_BYTES = 150e6
BYTES_PER_REQUEST = 540.0
BYTES_PER_ITERATION = 80.0  # rows are spooled to disk (results/iteration_store.py); the summary reads ~10 columns
BYTES_PER_GENERATED_REQUEST = 100.0  # a request's arrays generated up front, with their temporaries (~110 B peak)
SECONDS_PER_GENERATED_REQUEST = 0.3e-6  # measured ~0.5 us (lognormal lengths)
BYTES_PER_GRAPH_ELEMENT = 1000.0
SECONDS_PER_EVENT = 5e-6  # per request and per iteration: 10^6 requests and 9.7 M iterations take 56 s
SECONDS_PER_GRAPH_ELEMENT = 20e-6
MAX_WALL_S = 24 * 3600.0
MAX_DESCRIBE_REQUESTS = 10**7  # a bare workload file (`infersim workload describe`), which has no sim: block
# requests a ServeGen folder's windows draw before the workload keeps its num_requests, and requests of one
# validation case: ~1 GB of arrays at most, whatever the scenario's own limits say
MAX_DRAWN_REQUESTS = 10**7
OPT_OUT = "set sim.allow_huge: true to run it anyway"


def machine_memory_bytes() -> float:
    """Physical memory of this machine (64 GB where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 64e9


@dataclass(frozen=True)
class Estimate:
    """Lower bounds on what a run needs."""
    requests: float
    iterations: float
    graph_elements: float
    stops_early: bool  # sim.max_time is set: iterations (and request rows) are not counted

    @property
    def memory_bytes(self) -> float:
        if self.stops_early:
            return BASE_BYTES + BYTES_PER_GENERATED_REQUEST * self.requests + \
                BYTES_PER_GRAPH_ELEMENT * self.graph_elements
        return (BASE_BYTES + BYTES_PER_REQUEST * self.requests + BYTES_PER_ITERATION * self.iterations
                + BYTES_PER_GRAPH_ELEMENT * self.graph_elements)

    @property
    def wall_s(self) -> float:
        run = SECONDS_PER_GENERATED_REQUEST * self.requests if self.stops_early else \
            SECONDS_PER_EVENT * (self.requests + self.iterations)
        return run + SECONDS_PER_GRAPH_ELEMENT * self.graph_elements


# ---------------------------------------------------------------- counts from the spec (duck-typed: no schema import)

def mean_rate(arrival: Any) -> float:
    """Mean requests per second of a synthetic open-loop arrival (0 when it has no rate of its own)."""
    if arrival.kind == "stages":
        return float(arrival.mean_rate)
    if arrival.kind == "on_off":
        return (arrival.rate * arrival.on_time + arrival.off_rate * arrival.off_time) / \
            (arrival.on_time + arrival.off_time)
    return float(getattr(arrival, "rate", None) or 0.0) if arrival.kind != "trace" else 0.0


def stream_requests(arrival: Any, num_requests: int | None, duration: float | None) -> float:
    """Requests one arrival stream makes: num_requests, else its mean rate over the duration."""
    if num_requests is not None:
        return float(num_requests)
    if arrival is not None and arrival.kind == "stages":
        return float(arrival.mean_rate * arrival.duration)
    if duration is not None and arrival is not None:
        return mean_rate(arrival) * duration
    return 0.0


def mean_tokens(lengths: Any) -> float:
    """Mean of a length distribution; 1 when only a file knows it (a lower bound)."""
    if lengths is None:
        return 1.0
    if lengths.kind == "fixed":
        return float(lengths.value)
    if lengths.kind == "uniform":
        return (lengths.low + lengths.high) / 2.0
    if lengths.kind == "lognormal":
        return min(lengths.mean, lengths.max or math.inf)
    if lengths.kind == "empirical" and lengths.values is not None:
        return sum(lengths.values) / len(lengths.values)
    return 1.0


def workload_streams(w: Any) -> list[tuple[float, float]]:
    """(requests, mean output tokens) of each stream of a workload: its own, or one per class."""
    if w.classes is None:
        return [(stream_requests(w.arrival, w.num_requests, w.duration), mean_tokens(w.output_tokens))]
    weighted = [c for c in w.classes if c.weight is not None]
    streams = []
    if weighted:
        shared = stream_requests(w.arrival, w.num_requests, w.duration)
        total = sum(c.weight for c in weighted)
        streams += [(shared * c.weight / total, mean_tokens(c.output_tokens or w.output_tokens)) for c in weighted]
    for c in w.classes:
        if c.arrival is not None:
            own = c.num_requests is not None or c.duration is not None
            n, d = (c.num_requests, c.duration) if own else \
                (w.num_requests, None if c.arrival.kind == "trace" else w.duration)
            streams.append((stream_requests(c.arrival, n, d), mean_tokens(c.output_tokens or w.output_tokens)))
    return streams


def workload_requests(w: Any) -> float:
    return sum(n for n, _ in workload_streams(w))


def graph_elements(t: Any) -> float:
    """Nodes plus directed edges of the topology's graph (simulator/hardware/topology.py builds it)."""
    per_node = t.chips_per_node
    chips = float(t.nodes) * per_node
    nodes, edges = chips, 0.0
    if t.host is not None:
        nodes, edges = nodes + t.nodes, edges + 2 * chips
    if t.scaleup is not None and per_node > 1:
        if t.scaleup.kind == "switch":
            nodes, edges = nodes + t.nodes, edges + 2 * chips
        elif t.scaleup.kind == "mesh":
            edges += float(t.nodes) * per_node * (per_node - 1)
        else:
            edges += 2 * chips * len(t.scaleup.dims or ())
    if t.scaleout is not None and t.nodes > 1:
        if t.scaleout.kind == "leaf_spine":
            leaves = math.ceil(t.nodes / t.scaleout.nodes_per_leaf)
            spines = t.scaleout.spines if leaves > 1 else 0  # one leaf needs no spine
            nodes += leaves + spines
            edges += 2 * chips + 2.0 * leaves * spines
        else:
            edges += 2 * chips
    return nodes + edges


def estimate(spec: Any) -> Estimate:
    """The lower bounds for a ScenarioSpec."""
    batcher, speculative = spec.serving.batcher, spec.serving.speculative
    per_iteration = batcher.max_batch_size * (1 + (speculative.tokens if speculative else 0))
    streams = workload_streams(spec.workload)
    requests = sum(n for n, _ in streams)
    iterations = sum(n * tokens for n, tokens in streams) / per_iteration
    return Estimate(requests, iterations, graph_elements(spec.cluster), spec.sim.max_time is not None)


# ---------------------------------------------------------------- the check

def scenario_problem(spec: Any) -> str | None:
    """Why the scenario is refused, in one line with the estimate, or None when it is within the limits."""
    if spec.sim.allow_huge:
        return None
    e = estimate(spec)
    memory, wall, allowed_memory = e.memory_bytes, e.wall_s, machine_memory_bytes()
    if memory <= allowed_memory and wall <= MAX_WALL_S:
        return None
    graph_share = BYTES_PER_GRAPH_ELEMENT * e.graph_elements / max(memory - BASE_BYTES, 1.0)
    if graph_share > 0.5:
        what = (f"cluster: {e.graph_elements:.3g} graph nodes and links ({spec.cluster.nodes} nodes x "
                f"{spec.cluster.chips_per_node} chips)")
    elif e.stops_early:
        what = f"workload: {e.requests:.3g} requests generated up front"
    else:
        what = f"workload: {e.requests:.3g} requests (>= {e.iterations:.3g} iterations)"
    return (f"{what} need >= {size(memory)} of memory and >= {duration(wall)} of wall time, estimated at "
            f"{_formula(e)}; allowed: {size(allowed_memory)} (this machine's memory) and "
            f"{duration(MAX_WALL_S)}; {OPT_OUT}")


def _formula(e: Estimate) -> str:
    us = SECONDS_PER_EVENT * 1e6
    parts = [f"{BYTES_PER_GENERATED_REQUEST:.0f} B + {SECONDS_PER_GENERATED_REQUEST * 1e6:g} us per request "
             "generated (sim.max_time set)"] if e.stops_early else \
        [f"{BYTES_PER_REQUEST:.0f} B + {us:.0f} us per request, {BYTES_PER_ITERATION:.0f} B + {us:.0f} us per "
         "iteration"]
    if BYTES_PER_GRAPH_ELEMENT * e.graph_elements >= 0.01 * e.memory_bytes:  # the topology matters
        parts.append(f"{size(BYTES_PER_GRAPH_ELEMENT)} + {SECONDS_PER_GRAPH_ELEMENT * 1e6:.0f} us per graph node "
                     "or link")
    return ", ".join(parts)


def size(nbytes: float) -> str:
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.3g} B"


def duration(seconds: float) -> str:
    for unit, scale in (("years", 365 * 86400.0), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"
