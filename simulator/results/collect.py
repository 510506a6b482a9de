"""Append-only records of a run (per request, per iteration, per link and time bucket), which the engine
writes, and the end-of-run invariant checks.

Per-request fields live in preallocated typed arrays indexed by request id (cheap scalar writes in the event
loop, 8 bytes a value); iteration rows go to an IterationStore (iteration_store.py), which keeps memory flat
however long the run; link bytes go to a LinkHistogram. Frames are built once, after the run, by summary.py.
"""

from __future__ import annotations

import math
from array import array
from typing import Any, Callable, Sequence

import numpy as np

from simulator.config.cluster import ChipSpec
from simulator.hardware.model import DTYPE_BYTES, ModelShape
from simulator.hardware.placement import Plan
from simulator.hardware.roofline import BatchShape, StepCost
from simulator.results.iteration_store import ITERATION_COLUMNS, ROW, ROWS_PER_CHUNK, IterationStore

__all__ = ["Collector", "ITERATION_COLUMNS", "InvariantError", "IterationAccount", "LinkHistogram", "STATUS_NAMES",
           "placement_problems", "speed_of_light_problems"]


class IterationAccount:
    """Where one iteration's time went, summed over its stage passes, reported per chip (stage average).

    compute_bound_s / memory_bound_s: roofline time bound by FLOPs or by bytes; network_s: waiting for
    collectives and stage-to-stage sends; bubble_s: the rest of the iteration (pipeline fill and drain)."""
    __slots__ = ("stages", "chips", "compute_s", "memory_s", "compute_bound_s", "memory_bound_s", "overhead_s",
                 "network_s", "flops", "memory_bytes", "stream_bytes", "network_bytes", "swap_bytes")

    def __init__(self, stages: int, chips: int):
        self.stages, self.chips = stages, chips
        self.compute_s = self.memory_s = self.compute_bound_s = self.memory_bound_s = 0.0
        self.overhead_s = self.network_s = self.flops = self.memory_bytes = self.network_bytes = 0.0
        self.stream_bytes = self.swap_bytes = 0.0

    def add_compute(self, cost: StepCost, passes: int = 1) -> None:
        """`passes` stage passes of this cost (a pipeline's identical micro-batches)."""
        self.compute_s += passes * cost.compute_s
        self.memory_s += passes * cost.memory_s
        self.compute_bound_s += passes * cost.compute_bound_s
        self.memory_bound_s += passes * cost.memory_bound_s
        self.overhead_s += passes * cost.overhead_s
        self.flops += passes * cost.flops
        self.memory_bytes += passes * cost.memory_bytes
        self.stream_bytes += passes * cost.stream_bytes

NOT_ARRIVED, IN_FLIGHT, COMPLETED, DROPPED = 0, 1, 2, 3
STATUS_NAMES = {NOT_ARRIVED: "not_arrived", IN_FLIGHT: "in_flight", COMPLETED: "completed", DROPPED: "dropped"}

class InvariantError(RuntimeError):
    """The run broke a conservation law: a bug in infersim, never a user error."""


class Collector:
    def __init__(self, n_requests: int, arrival_s: Sequence[float], clock: Callable[[], float]):
        nan = math.nan
        self.n = n_requests
        # per request, typed arrays (8 bytes a value) indexed by request id: cheap scalar writes, flat memory
        self.arrival_s = array("d", arrival_s)
        self.replica = array("q", [-1]) * n_requests
        self.admit_s = array("d", [nan]) * n_requests
        self.first_token_s = array("d", [nan]) * n_requests
        self.finish_s = array("d", [nan]) * n_requests
        self.status = array("b", [NOT_ARRIVED]) * n_requests
        self.drop_reason = [""] * n_requests
        self.preemptions = array("q", [0]) * n_requests
        self.kv_transfer_bytes = array("d", [0.0]) * n_requests
        self.prefix_hit_tokens = array("q", [0]) * n_requests
        self.drafted_tokens = array("q", [0]) * n_requests  # speculative decoding: tokens drafted for it
        self.accepted_tokens = array("q", [0]) * n_requests  # and those the target accepted
        self.iterations = IterationStore(clock)
        self.pending_rows = self.iterations.pending  # ITERATION_COLUMNS values of each iteration, packed
        self.arrived = self.completed = self.dropped = 0
        self.events = 0

    def arrive(self, rid: int, now: float, replica: int) -> None:
        if math.isnan(self.arrival_s[rid]):
            self.arrival_s[rid] = now
        self.replica[rid] = replica
        self.status[rid] = IN_FLIGHT
        self.arrived += 1

    def admit(self, rids: list[int], now: float) -> None:
        for rid in rids:
            if math.isnan(self.admit_s[rid]):  # the first admission; a preempted request is admitted again
                self.admit_s[rid] = now

    def prefix_hits(self, hits: list[tuple[int, int]]) -> None:
        for rid, tokens in hits:
            self.prefix_hit_tokens[rid] = max(self.prefix_hit_tokens[rid], tokens)

    def speculated(self, drafts: list[tuple[int, int, int]]) -> None:
        for rid, drafted, accepted in drafts:
            self.drafted_tokens[rid], self.accepted_tokens[rid] = drafted, accepted

    def kv_transferred(self, rid: int, nbytes: float) -> None:
        self.kv_transfer_bytes[rid] += nbytes

    def preempt(self, rids: list[int]) -> None:
        for rid in rids:
            self.preemptions[rid] += 1

    def drop(self, rid: int, reason: str, now: float) -> None:
        self.status[rid] = DROPPED
        self.drop_reason[rid] = reason
        self.finish_s[rid] = now
        self.dropped += 1

    def first_tokens(self, rids: list[int], now: float) -> None:
        for rid in rids:
            self.first_token_s[rid] = now

    def finish(self, rids: list[int], now: float) -> None:
        for rid in rids:
            self.finish_s[rid] = now
            self.status[rid] = COMPLETED
        self.completed += len(rids)

    def iteration(self, replica: int, start: float, duration: float, a: IterationAccount, shape: BatchShape,
                  batch_size: int, kv_blocks_used: int, output_tokens: float) -> None:
        k = a.stages
        busy = (a.compute_bound_s + a.memory_bound_s + a.overhead_s + a.network_s) / k
        self.row((replica, start, duration, a.compute_s / k, a.memory_s / k, a.compute_bound_s / k,
                  a.memory_bound_s / k, a.network_s / k, a.overhead_s / k, max(duration - busy, 0.0),
                  a.flops / k, a.memory_bytes / k, a.stream_bytes / k, a.network_bytes / a.chips, a.swap_bytes,
                  a.chips, shape.prefill_tokens,
                  shape.decode_tokens, output_tokens, batch_size, shape.decode_context, kv_blocks_used))

    def row(self, values: tuple) -> None:
        """Record one iteration: ITERATION_COLUMNS values, packed as float64 (run_ahead.py packs its own)."""
        self.pending_rows.append(ROW.pack(*values))
        if len(self.pending_rows) >= ROWS_PER_CHUNK:
            self.iterations.flush()

    @property
    def in_flight(self) -> int:
        return self.arrived - self.completed - self.dropped

    def check(self, extra_problems: list[str] | None = None) -> None:
        """Raise InvariantError listing every broken conservation law."""
        problems = list(extra_problems or [])
        counted = [self.status.count(s) for s in (IN_FLIGHT, COMPLETED, DROPPED)]
        if counted != [self.in_flight, self.completed, self.dropped]:
            problems.append(f"status counts {counted} != in flight/completed/dropped "
                            f"{[self.in_flight, self.completed, self.dropped]}")
        if self.arrived != self.completed + self.dropped + self.in_flight:
            problems.append("arrived != completed + dropped + in flight")
        arrival, admit, first, finish = (np.asarray(x) for x in (self.arrival_s, self.admit_s, self.first_token_s,
                                                                 self.finish_s))
        ordered = (arrival <= admit) & (admit <= first) & (first <= finish)
        late = np.flatnonzero((np.asarray(self.status) == COMPLETED) & ~ordered)
        if late.size:
            rid = int(late[0])
            problems.append(f"request {rid}: times out of order (arrival {arrival[rid]}, admit {admit[rid]}, "
                            f"first token {first[rid]}, finish {finish[rid]})")
        problems += [f"replica {replica}: iterations overlap or go back in time"
                     for replica in overlapping_replicas(self.iterations)]
        if problems:
            raise InvariantError("run broke its invariants (a bug in infersim): " + "; ".join(problems))


def overlapping_replicas(store: IterationStore) -> list[int]:
    """Replicas with an iteration of no duration or one that starts before the previous one ended (chunk by
    chunk, each replica's iterations in the order they ended)."""
    last_end: dict[int, float] = {}
    bad: set[int] = set()
    for part in store.chunks(["replica", "start_s", "duration_s"]):
        order = np.argsort(part["replica"], kind="stable")
        replicas, starts, durations = part["replica"][order], part["start_s"][order], part["duration_s"][order]
        ends = starts + durations
        first = np.r_[True, replicas[1:] != replicas[:-1]]
        previous = np.r_[np.nan, ends[:-1]]
        previous[first] = [last_end.get(int(r), -np.inf) for r in replicas[first]]
        late = starts < previous - 1e-9 * np.abs(previous)
        bad.update(int(r) for r in replicas[late | (durations <= 0)])
        last = np.r_[replicas[1:] != replicas[:-1], True]
        last_end.update(zip(replicas[last].tolist(), ends[last].tolist()))
    return sorted(bad)


class LinkHistogram:
    """Bytes per link per time bucket, all links sharing one bucket width that doubles (merging pairs of
    buckets) whenever the run outgrows `max_buckets`."""

    def __init__(self, max_buckets: int, first_width_s: float = 1e-3):
        self.max_buckets = max(2, max_buckets)
        self.width = first_width_s
        self.bins: dict[str, list[float]] = {}

    def add(self, link: str, start: float, end: float, nbytes: float) -> None:
        """Spread `nbytes` carried at a constant rate over [start, end] into the buckets."""
        while end >= self.width * self.max_buckets:
            self._coarsen()
        bins = self.bins.get(link)
        if bins is None:
            bins = self.bins[link] = []
        first, last = int(start / self.width), min(int(end / self.width), self.max_buckets - 1)
        if len(bins) <= last:
            bins.extend([0.0] * (last + 1 - len(bins)))
        if first >= last or end <= start:
            bins[last] += nbytes
            return
        rate = nbytes / (end - start)
        for i in range(first, last + 1):
            lo, hi = max(start, i * self.width), min(end, (i + 1) * self.width)
            bins[i] += rate * (hi - lo)

    def _coarsen(self) -> None:
        self.width *= 2
        for link, bins in self.bins.items():
            self.bins[link] = _pairs(bins)

    def merge(self, width: float, bins: dict[str, list[float]]) -> None:
        """Add another histogram's buckets (of `width`, this one's first width times a power of 2)."""
        while self.width < width:
            self._coarsen()
        for link, row in bins.items():
            w = width
            while w < self.width:
                row, w = _pairs(row), w * 2
            mine = self.bins.setdefault(link, [])
            mine.extend([0.0] * (len(row) - len(mine)))
            for i, value in enumerate(row):
                mine[i] += value


def _pairs(bins: list[float]) -> list[float]:
    """Buckets twice as wide: each the sum of two."""
    if len(bins) % 2:
        bins = [*bins, 0.0]
    return [bins[i] + bins[i + 1] for i in range(0, len(bins), 2)]


def placement_problems(plans: Sequence[Plan], chips_total: int) -> list[str]:
    """A replica must sit on as many distinct chips as it claims, inside the cluster, no chip shared with
    another replica: otherwise its collectives cross no link and its results beat the hardware."""
    problems: list[str] = []
    used: set[int] = set()
    for plan in plans:
        for r, chips in enumerate(plan.replica_chips):
            distinct = set(chips)
            if len(chips) != plan.chips_per_replica or len(distinct) != len(chips):
                problems.append(f"replica {r} claims {plan.chips_per_replica} chips but is placed on "
                                f"{len(distinct)} distinct chip(s) {sorted(distinct)[:8]}")
            if any(not 0 <= c < chips_total for c in distinct):
                problems.append(f"replica {r} is placed on a chip outside the cluster's {chips_total}")
            if used & distinct:
                problems.append(f"replica {r} shares chip(s) {sorted(used & distinct)[:8]} with another replica")
            used |= distinct
    return problems


def speed_of_light_problems(iterations: Any, model: ModelShape, plans: Sequence[Plan],
                            chip: ChipSpec) -> list[str]:
    """Each replica's busy time against what its distinct chips could do at nameplate: the FLOPs of its
    tokens (2 x active layer parameters each) at the chip's highest peak, and one read of the dense layers'
    weights per iteration at its fastest memory. A shorter busy time is physically impossible: a bug.
    `iterations`: the columns replica, duration_s, prefill_tokens, decode_tokens (a store or a frame)."""
    peak = max(chip.compute.peak.values())
    bandwidth = max((tier.bandwidth or 0.0) for tier in chip.memory) or math.inf
    chips = np.array([len(set(c)) for plan in plans for c in plan.replica_chips], dtype=np.float64)
    dense_bytes = np.array([model.dense_layer_params * DTYPE_BYTES[plan.weights_dtype]
                            for plan in plans for _ in plan.replica_chips])
    replica = np.asarray(iterations["replica"]).astype(np.int64)
    if replica.size == 0:
        return []
    n = len(chips)
    busy = np.bincount(replica, weights=np.asarray(iterations["duration_s"]), minlength=n)
    count = np.bincount(replica, minlength=n)
    tokens = np.bincount(replica, weights=np.asarray(iterations["prefill_tokens"])
                         + np.asarray(iterations["decode_tokens"]), minlength=n)
    floor = np.maximum(2.0 * model.active_layer_params * tokens / (chips * peak),
                       count * dense_bytes / (chips * bandwidth))
    return [f"replica {r} was busy {busy[r]:.6g} s, below the speed of light of its {chips[r]:.0f} chip(s) "
            f"({floor[r]:.6g} s at nameplate peak and bandwidth)"
            for r in np.flatnonzero(busy < floor * (1 - 1e-9))]
