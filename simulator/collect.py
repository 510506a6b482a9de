"""Append-only records of a run (per request, per iteration) and the end-of-run invariant checks.

Per-request fields live in preallocated lists indexed by request id (cheap scalar writes in the event loop);
iteration rows are appended to one flat typed array (8 bytes a value, not a Python object) and reshaped into
columns after the run. Frames are built once, after the run, by report.py.
"""

from __future__ import annotations

import math
import struct

import numpy as np

from simulator.hardware.roofline import BatchShape, StepCost


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

    def add_compute(self, cost: StepCost) -> None:
        self.compute_s += cost.compute_s
        self.memory_s += cost.memory_s
        if cost.compute_s >= cost.memory_s:
            self.compute_bound_s += cost.compute_s
        else:
            self.memory_bound_s += cost.memory_s
        self.overhead_s += cost.overhead_s
        self.flops += cost.flops
        self.memory_bytes += cost.memory_bytes
        self.stream_bytes += cost.stream_bytes

NOT_ARRIVED, IN_FLIGHT, COMPLETED, DROPPED = 0, 1, 2, 3
STATUS_NAMES = {NOT_ARRIVED: "not_arrived", IN_FLIGHT: "in_flight", COMPLETED: "completed", DROPPED: "dropped"}

ITERATION_COLUMNS = (
    "replica", "start_s", "duration_s", "compute_s", "memory_s", "compute_bound_s", "memory_bound_s", "network_s",
    "overhead_s", "bubble_s", "flops_per_chip", "memory_bytes_per_chip", "stream_bytes_per_chip",
    "network_bytes_per_chip", "swap_bytes_per_chip", "chips",
    "prefill_tokens", "decode_tokens", "output_tokens", "batch_size", "decode_context_tokens", "kv_blocks_used",
)

ROW = struct.Struct(f"<{len(ITERATION_COLUMNS)}d")
ROWS_PER_CHUNK = 1 << 16

INTEGER_COLUMNS = {"replica", "chips", "prefill_tokens", "decode_tokens", "batch_size", "decode_context_tokens",
                   "kv_blocks_used"}


class InvariantError(RuntimeError):
    """The run broke a conservation law: a bug in infersim, never a user error."""


class Collector:
    def __init__(self, n_requests: int, arrival_s: list[float]):
        nan = math.nan
        self.n = n_requests
        self.arrival_s = list(arrival_s)
        self.replica = [-1] * n_requests
        self.admit_s = [nan] * n_requests
        self.first_token_s = [nan] * n_requests
        self.finish_s = [nan] * n_requests
        self.status = [NOT_ARRIVED] * n_requests
        self.drop_reason = [""] * n_requests
        self.preemptions = [0] * n_requests
        self.kv_transfer_bytes = [0.0] * n_requests
        self.prefix_hit_tokens = [0] * n_requests
        self.pending_rows: list[bytes] = []  # ITERATION_COLUMNS values of each iteration, packed as float64
        self._chunks: list[bytes] = []  # earlier rows, ROWS_PER_CHUNK to a chunk
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
            self.flush_rows()

    def flush_rows(self) -> None:
        self._chunks.append(b"".join(self.pending_rows))
        self.pending_rows.clear()

    def iteration_columns(self) -> dict[str, np.ndarray]:
        """The iteration records as numpy columns (counts as int64, times and sizes as float64), in the order
        they ended (ties by replica): a replica may record iterations ahead of the clock (run-ahead), so the
        order of recording is not the order of time."""
        width = len(ITERATION_COLUMNS)
        data = b"".join([*self._chunks, *self.pending_rows])
        rows = np.frombuffer(data, dtype="<f8").reshape(-1, width) if data else np.zeros((0, width))
        end = rows[:, 1] + rows[:, 2]
        if np.any(end[1:] < end[:-1]) or np.any((end[1:] == end[:-1]) & (rows[1:, 0] < rows[:-1, 0])):
            rows = rows[np.lexsort((rows[:, 0], end))]
        return {name: rows[:, i].astype(np.int64) if name in INTEGER_COLUMNS else rows[:, i].copy()
                for i, name in enumerate(ITERATION_COLUMNS)}

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
        for rid in range(self.n):
            if self.status[rid] == COMPLETED and not (
                    self.arrival_s[rid] <= self.admit_s[rid] <= self.first_token_s[rid] <= self.finish_s[rid]):
                problems.append(f"request {rid}: times out of order (arrival {self.arrival_s[rid]}, admit "
                                f"{self.admit_s[rid]}, first token {self.first_token_s[rid]}, "
                                f"finish {self.finish_s[rid]})")
                break
        it = self.iteration_columns()
        for replica in np.unique(it["replica"]):
            mine = it["replica"] == replica
            start, end = it["start_s"][mine], it["start_s"][mine] + it["duration_s"][mine]
            if np.any(it["duration_s"][mine] <= 0) or np.any(start[1:] < end[:-1] - 1e-9 * end[:-1]):
                problems.append(f"replica {replica}: iterations overlap or go back in time")
        if problems:
            raise InvariantError("run broke its invariants (a bug in infersim): " + "; ".join(problems))
