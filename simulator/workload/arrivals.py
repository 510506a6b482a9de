"""Workloads -> requests: arrival times, prompt/output lengths and request classes as numpy arrays, one seed.

`generate(spec, seed)` is the one entry point the engine calls. Arrival processes:
- poisson: exponential gaps, never clipped; gamma: gamma gaps with a chosen CV (burstiness);
- on_off: Poisson bursts separated by quiet periods; daily: a rate that follows a daily curve (thinning);
- closed_loop: no times up front (NaN): the engine releases a user's next request when the previous finishes;
- offline: everything at t = 0; trace: replayed from a real trace (traces.py, servegen.py);
- stages: Poisson stages back to back, each with its rate and duration (a load test's ramp).
A workload's `shared_prefix` then turns prompt lengths into system prompt + conversation + new text (prefixes.py).
A stream runs for num_requests, or for `duration` seconds. Lengths are drawn in lengths.py.

Multi-tenant mixes: each class either takes a `weight` share of the workload's shared arrival stream (each
arrival is given a class at random by weight, which thins the stream) or has its own arrival process. The
classes' requests are merged by a stable sort on arrival time; request ids follow that order.

Determinism: stream k of a run is `SeedSequence(seed, spawn_key=(k,))`, = `SeedSequence(seed).spawn(...)[k]`.
Class c draws its arrivals from stream 3c, prompts from 3c + 1 and outputs from 3c + 2 (so a one-class
workload uses streams 0, 1, 2); the shared stream of weighted classes uses 3C and its class draw 3C + 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from simulator.config.workload import (
    Arrivals,
    ClosedLoopArrivals,
    DailyArrivals,
    GammaArrivals,
    Lengths,
    OfflineArrivals,
    OnOffArrivals,
    PoissonArrivals,
    StagedArrivals,
    TraceArrivals,
    WorkloadSpec,
    class_counts,
)
from simulator.workload import prefixes
from simulator.workload.lengths import Cache, sample_lengths, sample_pair
from simulator.workload.prefixes import BlockHashes, SharedPrefixes
from simulator.workload.tracefile import TraceRequests
from simulator.workload.traces import replay

MOONCAKE_BLOCK_TOKENS = 512  # tokens per hash_id block in Mooncake traces

__all__ = ["Requests", "arrival_times", "generate", "poisson_arrivals", "sample_lengths"]


@dataclass(frozen=True)
class Requests:
    """Every request of a run, indexed by request id, in arrival order; arrival times are NaN in closed loops.

    class_id indexes class_names; prefix_hashes (Mooncake hash_ids, 512 tokens per block) are carried for a
    prefix cache and are empty tuples for requests that have none; None when no request has any.
    shared_prefixes: the system prompt and conversation of each request of a `shared_prefix` workload; in a
    closed loop each user then sends its own next request, id + closed_loop_users (`user_turns`).
    """
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    closed_loop_users: int = 0
    think_time_s: float = 0.0
    class_id: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    class_names: tuple[str, ...] = ("default",)
    prefix_hashes: tuple[tuple[int, ...], ...] | None = None
    shared_prefixes: SharedPrefixes | None = None

    @property
    def user_turns(self) -> bool:
        """Closed loop: does a finished request's user send request id + users next (its own next turn)?"""
        return self.closed_loop_users > 0 and self.shared_prefixes is not None

    def block_hashes(self, block_tokens: int) -> tuple[Sequence[tuple[int, ...]] | None, int]:
        """(each request's prefix block hashes, tokens per block): a trace's own (Mooncake: 512-token blocks),
        or those of a shared_prefix workload at `block_tokens`; None when requests carry no prefix."""
        if self.shared_prefixes is not None:
            return BlockHashes(self.shared_prefixes, self.prompt_tokens, self.output_tokens,
                               block_tokens), block_tokens
        return self.prefix_hashes, MOONCAKE_BLOCK_TOKENS

    def reusable_prefix(self, block_tokens: int) -> bool:
        """Does any full prompt block of one request occur in another (something a prefix cache can reuse)?"""
        hashes, tokens = self.block_hashes(block_tokens)
        return hashes is not None and prefixes.anything_shared(hashes, self.prompt_tokens, tokens)

    def __post_init__(self) -> None:
        if len(self.class_id) != len(self.prompt_tokens):
            object.__setattr__(self, "class_id", np.zeros(len(self.prompt_tokens), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.prompt_tokens)


# ---------------------------------------------------------------- arrival processes

Chunk = Callable[[float], tuple[np.ndarray, float]]  # start -> (sorted arrivals, where the next chunk starts)


def _collect(chunk: Chunk, n: int | None, duration: float | None) -> np.ndarray:
    """Successive chunks of arrivals until there are n of them, or until `duration` seconds have passed."""
    parts, end, count = [], 0.0, 0
    while count < n if n is not None else end < (duration or 0.0):
        times, end = chunk(end)
        parts.append(times)
        count += len(times)
    times = np.concatenate(parts) if parts else np.empty(0)
    return times[:n] if n is not None else times[times < (duration or 0.0)]


def _chunk_size(rate: float, n: int | None, duration: float | None) -> int:
    """Arrivals per chunk: about all of them in one go."""
    expected = n if n is not None else rate * (duration or 0.0)
    return int(min(expected * 1.1, CHUNK_MAX)) + 64


CHUNK_MAX = 10_000_000  # arrivals drawn at once (80 MB a float array); more come chunk by chunk


def _renewal(draw: Callable[[int], np.ndarray], rate: float, n: int | None,
             duration: float | None) -> np.ndarray:
    """Arrivals whose gaps are independent draws; the first arrives one gap after t = 0."""
    if n is not None:
        return np.cumsum(draw(n))
    size = _chunk_size(rate, n, duration)

    def chunk(start: float) -> tuple[np.ndarray, float]:
        times = start + np.cumsum(draw(size))
        return times, float(times[-1])

    return _collect(chunk, n, duration)


def poisson_arrivals(rate_per_s: float, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))


def _on_off(spec: OnOffArrivals, n: int | None, duration: float | None,
            rng: np.random.Generator) -> np.ndarray:
    cycle = spec.on_time + spec.off_time
    mean_rate = (spec.rate * spec.on_time + spec.off_rate * spec.off_time) / cycle
    cycles = _chunk_size(mean_rate, n, duration) // max(1, int(mean_rate * cycle)) + 1
    rates = np.tile([spec.rate, spec.off_rate], cycles)
    means = np.tile([spec.on_time, spec.off_time], cycles)

    def chunk(start: float) -> tuple[np.ndarray, float]:
        lengths = means if spec.durations == "fixed" else rng.exponential(means)
        begins = start + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        counts = rng.poisson(rates * lengths)
        offsets = rng.random(int(counts.sum())) * np.repeat(lengths, counts)
        return np.sort(np.repeat(begins, counts) + offsets), float(start + lengths.sum())

    return _collect(chunk, n, duration)


def _staged(spec: StagedArrivals, rng: np.random.Generator) -> np.ndarray:
    """Poisson arrivals of each stage within its own span, the stages back to back."""
    parts, start = [], 0.0
    for stage in spec.stages:
        gaps = lambda k, rate=stage.rate: rng.exponential(1.0 / rate, size=k)  # noqa: E731
        parts.append(start + _renewal(gaps, stage.rate, None, stage.duration))
        start += stage.duration
    return np.concatenate(parts)


def daily_rate(spec: DailyArrivals, t: np.ndarray) -> np.ndarray:
    """The arrival rate (1/s) at times t: the daily curve scaled so that it averages spec.rate."""
    phase = np.mod(t + spec.start, spec.period)
    if spec.curve is None:
        swing = (spec.peak_to_trough - 1.0) / (spec.peak_to_trough + 1.0)
        peak_at = spec.period * 14 / 24 if spec.peak_at is None else spec.peak_at
        return spec.rate * (1.0 + swing * np.cos(2.0 * math.pi * (phase - peak_at) / spec.period))
    points = np.asarray(spec.curve, dtype=np.float64)
    xs = np.linspace(0.0, spec.period, len(points) + 1)
    return spec.rate * np.interp(phase, xs, np.append(points, points[0])) / points.mean()


def _daily(spec: DailyArrivals, n: int | None, duration: float | None,
           rng: np.random.Generator) -> np.ndarray:
    """Thinning (Lewis-Shedler): Poisson candidates at the peak rate, each kept with chance rate(t) / peak."""
    if spec.curve is None:
        peak = spec.rate * 2.0 * spec.peak_to_trough / (spec.peak_to_trough + 1.0)
    else:
        peak = spec.rate * max(spec.curve) * len(spec.curve) / sum(spec.curve)
    size = min(int(_chunk_size(spec.rate, n, duration) * peak / spec.rate), CHUNK_MAX)  # the rest: more chunks

    def chunk(start: float) -> tuple[np.ndarray, float]:
        candidates = start + np.cumsum(rng.exponential(1.0 / peak, size=size))
        keep = rng.random(size) * peak < daily_rate(spec, candidates)
        return candidates[keep], float(candidates[-1])

    return _collect(chunk, n, duration)


def arrival_times(spec: Arrivals, n: int | None, duration: float | None,
                  rng: np.random.Generator) -> np.ndarray:
    """Arrival times (s, ascending) of a synthetic process: n of them, or all within `duration`."""
    if isinstance(spec, PoissonArrivals):
        return _renewal(lambda k: rng.exponential(1.0 / spec.rate, size=k), spec.rate, n, duration)
    if isinstance(spec, GammaArrivals):
        shape = 1.0 / spec.cv**2
        return _renewal(lambda k: rng.gamma(shape, 1.0 / (spec.rate * shape), size=k), spec.rate, n, duration)
    if isinstance(spec, OnOffArrivals):
        return _on_off(spec, n, duration, rng)
    if isinstance(spec, DailyArrivals):
        return _daily(spec, n, duration, rng)
    if isinstance(spec, StagedArrivals):
        return _staged(spec, rng)
    if isinstance(spec, OfflineArrivals):
        return np.zeros(n or 0)
    if isinstance(spec, ClosedLoopArrivals):
        return np.full(n or 0, np.nan)
    raise TypeError(f"not a synthetic arrival process: {spec!r}")


# ---------------------------------------------------------------- classes and merging

@dataclass(frozen=True)
class _Class:
    """A request class with the workload's defaults filled in."""
    name: str
    weight: float | None
    arrival: Arrivals | None
    prompt: Lengths | None
    output: Lengths | None
    num_requests: int | None
    duration: float | None
    correlation: float | None


def _classes(spec: WorkloadSpec) -> list[_Class]:
    if spec.classes is None:
        return [_Class("default", None, spec.arrival, spec.prompt_tokens, spec.output_tokens,
                       spec.num_requests, spec.duration, spec.correlation)]
    return [_Class(c.name, c.weight, c.arrival, c.prompt_tokens or spec.prompt_tokens,
                   c.output_tokens or spec.output_tokens, *class_counts(c, spec),
                   spec.correlation if c.correlation is None else c.correlation) for c in spec.classes]


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))


def _stream(arrival: Arrivals, n: int | None, duration: float | None,
            rng: np.random.Generator) -> TraceRequests:
    """Arrival times of one stream; a trace brings its lengths (and prefix hashes) too, others none yet."""
    if isinstance(arrival, TraceArrivals):
        return replay(arrival, n, rng)
    times = arrival_times(arrival, n, duration, rng)
    empty = np.zeros(len(times), dtype=np.int64)
    return TraceRequests(times, empty, empty)


def _with_lengths(stream: TraceRequests, cls: _Class, index: int, seed: int, cache: Cache,
                  from_trace: bool) -> TraceRequests:
    rngs = (_rng(seed, 3 * index + 1), _rng(seed, 3 * index + 2))
    prompt, output = sample_pair(cls.prompt, cls.output, len(stream), cls.correlation, rngs, cache,
                                 stream if from_trace else None)
    return TraceRequests(stream.arrival_s, prompt, output, stream.prefix_hashes)


def _shared(spec: WorkloadSpec, classes: list[_Class], seed: int,
            cache: Cache) -> tuple[TraceRequests, np.ndarray]:
    """The shared stream, each arrival given a weighted class, with each class's lengths."""
    assert spec.arrival is not None  # the schema requires it when a class has a weight
    members = [i for i, c in enumerate(classes) if c.weight is not None]
    stream = _stream(spec.arrival, spec.num_requests, spec.duration, _rng(seed, 3 * len(classes)))
    weights = np.asarray([classes[i].weight for i in members], dtype=np.float64)
    ids = np.asarray(members)[_rng(seed, 3 * len(classes) + 1).choice(len(members), size=len(stream),
                                                                        p=weights / weights.sum())]
    prompt, output = stream.prompt_tokens.copy(), stream.output_tokens.copy()
    for i in members:
        rows = np.flatnonzero(ids == i)
        part = _with_lengths(stream.take(rows), classes[i], i, seed, cache,
                             isinstance(spec.arrival, TraceArrivals))
        prompt[rows], output[rows] = part.prompt_tokens, part.output_tokens
    return TraceRequests(stream.arrival_s, prompt, output, stream.prefix_hashes), ids


def _merge(parts: list[tuple[TraceRequests, np.ndarray]]) -> tuple[TraceRequests, np.ndarray]:
    """All classes' requests in one arrival order (stable: ties keep stream order, then class order)."""
    t = np.concatenate([p.arrival_s for p, _ in parts])
    hashes = None
    if any(p.prefix_hashes is not None for p, _ in parts):
        hashes = tuple(h for p, _ in parts for h in (p.prefix_hashes or ((),) * len(p)))
    merged = TraceRequests(t, np.concatenate([p.prompt_tokens for p, _ in parts]).astype(np.int64),
                           np.concatenate([p.output_tokens for p, _ in parts]).astype(np.int64), hashes)
    ids = np.concatenate([c for _, c in parts]).astype(np.int64)
    if np.isnan(t).any():
        return merged, ids
    order = np.argsort(t, kind="stable")
    return merged.take(order), ids[order]


def generate(spec: WorkloadSpec, seed: int) -> Requests:
    """The workload's requests; the same spec and seed always give the same arrays."""
    classes = _classes(spec)
    cache: Cache = {}
    parts = []
    if any(c.weight is not None for c in classes):
        parts.append(_shared(spec, classes, seed, cache))
    for i, c in enumerate(classes):
        if c.arrival is not None:
            stream = _stream(c.arrival, c.num_requests, c.duration, _rng(seed, 3 * i))
            part = _with_lengths(stream, c, i, seed, cache, isinstance(c.arrival, TraceArrivals))
            parts.append((part, np.full(len(part), i, dtype=np.int64)))
    merged, ids = _merge(parts)
    loop = spec.arrival if isinstance(spec.arrival, ClosedLoopArrivals) else classes[0].arrival
    users, think = (loop.users, loop.think_time) if isinstance(loop, ClosedLoopArrivals) else (0, 0.0)
    prompt, shared = merged.prompt_tokens, None
    if spec.shared_prefix is not None:
        prompt, shared = prefixes.apply(spec.shared_prefix, prompt, merged.output_tokens)
    return Requests(merged.arrival_s, prompt, merged.output_tokens, closed_loop_users=users,
                    think_time_s=think, class_id=ids, class_names=tuple(c.name for c in classes),
                    prefix_hashes=merged.prefix_hashes, shared_prefixes=shared)
