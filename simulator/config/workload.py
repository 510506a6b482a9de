"""The `workload:` section: length distributions, arrival processes (synthetic or a trace), SLOs and
tenant classes, with the checks that relate them (a count or a duration, the span of the arrivals)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from simulator import units
from simulator.config import limits
from simulator.config.fields import (
    MAX_RATE,
    MAX_SECONDS,
    MAX_TOKENS,
    SPAN_RULE,
    Frozen,
    OptionalName,
    Rate,
    Seconds,
    Tokens,
)
from simulator.errors import brief


class FixedLength(Frozen):
    kind: Literal["fixed"]
    value: Tokens


class UniformLength(Frozen):
    kind: Literal["uniform"]
    low: Tokens
    high: Tokens

    @model_validator(mode="after")
    def _ordered(self) -> UniformLength:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class LognormalLength(Frozen):
    """Lognormal with the given mean (tokens) and sigma of the underlying normal; clipped to [1, max]."""
    kind: Literal["lognormal"]
    mean: float = Field(gt=0, le=MAX_TOKENS)
    sigma: float = Field(gt=0, le=5)
    max: Tokens | None = None


class EmpiricalLength(Frozen):
    """Resampled with replacement from observed lengths: a trace file's prompt or output column (the field
    this sits in picks which) or an inline list of `values`. A path is relative to the YAML file."""
    kind: Literal["empirical"]
    format: Literal["azure", "mooncake", "burstgpt", "sharegpt"] | None = None
    path: str | None = None
    values: tuple[Tokens, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> EmpiricalLength:
        if (self.path is None) == (self.values is None):
            raise ValueError("give either path (with format) or values")
        if self.path is not None and self.format is None:
            raise ValueError("path needs a format: azure, mooncake, burstgpt or sharegpt")
        return self


Lengths = Annotated[FixedLength | UniformLength | LognormalLength | EmpiricalLength,
                    Field(discriminator="kind")]
Duration = Annotated[float, BeforeValidator(units.parse_seconds), Field(gt=0, le=MAX_SECONDS)]


class PoissonArrivals(Frozen):
    kind: Literal["poisson"]
    rate: Rate


class GammaArrivals(Frozen):
    """Renewal process with gamma gaps of mean 1/rate and coefficient of variation `cv`: cv = 1 is Poisson,
    cv > 1 bursty (many short gaps, a few long ones), cv < 1 more regular than Poisson."""
    kind: Literal["gamma"]
    rate: Rate
    cv: float = Field(ge=1e-3, le=100)  # a gamma of shape 1/cv^2: below 1e-3 the shape overflows


MIN_PER_CYCLE = 1e-3
MAX_PER_CYCLE = 1e7


class OnOffArrivals(Frozen):
    """Bursts: Poisson at `rate` while on and at `off_rate` while off (an interrupted Poisson process).
    Periods last `on_time` and `off_time` on average (exponentially distributed), or exactly with
    `durations: fixed`; the first period is on. Mean rate: (rate * on_time + off_rate * off_time) /
    (on_time + off_time). (Not `on:`/`off:`, which YAML reads as true/false.)"""
    kind: Literal["on_off"]
    rate: Rate
    off_rate: Annotated[float, BeforeValidator(units.parse_rate), Field(ge=0, le=MAX_RATE)] = 0.0
    on_time: Duration
    off_time: Duration
    durations: Literal["exponential", "fixed"] = "exponential"

    @model_validator(mode="after")
    def _bursts_hold_requests(self) -> OnOffArrivals:
        per_cycle = self.rate * self.on_time + self.off_rate * self.off_time
        if per_cycle < MIN_PER_CYCLE:  # generation walks cycle by cycle: 1e-300 per cycle would never end
            raise ValueError(f"rate x on_time + off_rate x off_time is {per_cycle:.3g} requests per on/off cycle; "
                             f"allowed: at least {MIN_PER_CYCLE:g} (for rarer bursts use kind: poisson)")
        if per_cycle > MAX_PER_CYCLE:  # and draws a whole cycle at once: 1e13 in one burst would fill memory
            raise ValueError(f"rate x on_time + off_rate x off_time is {per_cycle:.3g} requests per on/off cycle; "
                             f"allowed: up to {MAX_PER_CYCLE:.0e} (shorter periods, or kind: poisson)")
        return self


class DailyArrivals(Frozen):
    """Poisson arrivals whose rate follows a daily curve (non-homogeneous; generated exactly by thinning).

    The rate averages `rate` over a `period` (24 h; shorten it to compress a day). `curve` lists relative
    rates at evenly spaced times of the period (24 values = hourly), joined linearly and wrapping around;
    without it the rate is a cosine with `peak_to_trough` ratio, highest at `peak_at` (default: 14/24 of the
    period, 2 pm). t = 0 is `start` into the period.
    """
    kind: Literal["daily"]
    rate: Rate
    period: Duration = 86_400.0
    # relative values, so bounded: their sum and the peak-to-mean ratio stay finite (1e308 overflowed)
    curve: tuple[Annotated[float, Field(ge=0, le=1e9)], ...] | None = Field(default=None, min_length=2,
                                                                             max_length=10_000)
    peak_to_trough: float = Field(default=2.0, ge=1, le=1e9)
    peak_at: Seconds | None = None
    start: Seconds = 0.0

    @model_validator(mode="after")
    def _within_period(self) -> DailyArrivals:
        for name in ("peak_at", "start"):
            if (getattr(self, name) or 0.0) >= self.period:
                raise ValueError(f"{name} ({getattr(self, name):g} s) must be < period ({self.period:g} s)")
        if self.curve is not None and max(self.curve) <= 0:
            raise ValueError("curve needs at least one positive value")
        return self


class ClosedLoopArrivals(Frozen):
    """N users; each sends its next request `think_time` after its previous one finished."""
    kind: Literal["closed_loop"]
    users: int = Field(ge=1)
    think_time: Seconds = 0.0


class LoadStage(Frozen):
    rate: Rate
    duration: Duration


class StagedArrivals(Frozen):
    """Poisson arrivals in stages run back to back, each at its own rate for its own duration (a load test's
    ramp, as inference-perf runs them); the stages' durations say how long the stream lasts."""
    kind: Literal["stages"]
    stages: tuple[LoadStage, ...] = Field(min_length=1, max_length=1000)

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.stages)

    @property
    def mean_rate(self) -> float:
        return sum(s.rate * s.duration for s in self.stages) / self.duration


class OfflineArrivals(Frozen):
    """Every request arrives at t = 0, as in a batch job: measures the cluster's maximum throughput."""
    kind: Literal["offline"]


class TraceWindow(Frozen):
    """A span of a trace, measured from its first request (ServeGen: its first window)."""
    start: Seconds = 0.0
    duration: Duration | None = None


class TraceArrivals(Frozen):
    """Requests replayed from a real trace: arrival times and lengths (Mooncake: prefix hash_ids too).

    azure, mooncake and burstgpt files are replayed row by row; a servegen folder (trace.csv[.gz],
    dataset.jsonl[.gz]) holds per-client rates and fitted gap and length distributions per window, from which
    requests are drawn.
    Applied in order: `window` (t = 0 at its start), `num_requests` (the first n), or `resample` (n gaps and n
    rows drawn with replacement), `dither` (each arrival moved later by up to that much, for timestamps on a
    coarse grid), then `time_scale` (2 replays twice as fast: gaps halved, rate doubled) or `rate` (the
    time_scale that gives this mean rate). Lengths come from the trace unless prompt_tokens or output_tokens
    are given. The path is relative to the YAML file.
    """
    kind: Literal["trace"]
    format: Literal["azure", "mooncake", "burstgpt", "servegen"]
    path: str
    window: TraceWindow = TraceWindow()
    time_scale: float | None = Field(default=None, gt=0)
    rate: Rate | None = None
    resample: bool = False
    dither: Seconds = 0.0

    @model_validator(mode="after")
    def _one_scale(self) -> TraceArrivals:
        if self.time_scale is not None and self.rate is not None:
            raise ValueError("give time_scale or rate, not both")
        return self


Arrivals = Annotated[PoissonArrivals | GammaArrivals | OnOffArrivals | DailyArrivals | ClosedLoopArrivals
                     | OfflineArrivals | TraceArrivals | StagedArrivals, Field(discriminator="kind")]


class SloSpec(Frozen):
    """Latency targets: a request meets them when it completes with TTFT <= ttft and TPOT <= tpot (an unset
    target is not checked). Checked after the run (simulator/results/slo.py), never used for scheduling."""
    ttft: Duration | None = None
    tpot: Duration | None = None


class Traffic(Frozen):
    """What a workload and each of its classes may say about their requests."""
    arrival: Arrivals | None = None
    prompt_tokens: Lengths | None = None
    output_tokens: Lengths | None = None
    num_requests: int | None = Field(default=None, ge=1)
    duration: Duration | None = None
    correlation: float | None = Field(default=None, ge=-1, le=1)
    slo: SloSpec | None = None


class RequestClass(Traffic):
    """One tenant of a mix: either a `weight` (its share of the workload's shared arrival stream) or its own
    `arrival`. Unset lengths, correlation, num_requests and duration fall back to the workload's."""
    name: str = Field(min_length=1)
    weight: float | None = Field(default=None, gt=0)


class SharedPrefixSpec(Frozen):
    """Prompts that share a prefix, as chat services see them (inference-perf's shared_prefix data):
    `system_prompts` distinct system prompts of `system_prompt_tokens` tokens, each used by `users_per_prompt`
    users. With `turns` > 1 a user's requests are conversations of that many turns, each turn's prompt being
    the previous turns' prompts and answers followed by its new text (multi-turn chat).

    The workload's prompt lengths are then each turn's new user text: a request's prompt is its system prompt,
    its conversation so far and that text. Request i (in arrival order) is user i mod (system_prompts x
    users_per_prompt)'s; in a closed loop the users are the loop's users (so their numbers must match), each
    sending its next turn `think_time` after the previous one finished."""
    system_prompts: int = Field(default=1, ge=1, le=10**6)
    users_per_prompt: int = Field(default=1, ge=1, le=10**6)
    system_prompt_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS)
    turns: int = Field(default=1, ge=1, le=10**6)

    @property
    def users(self) -> int:
        return self.system_prompts * self.users_per_prompt


class WorkloadSpec(Traffic):
    """Requests of a run: one class (arrival, lengths, num_requests or duration at the top) or `classes`.

    `correlation` (-1..1) couples prompt and output lengths through a Gaussian copula; unset, they are
    independent, except two empirical lengths from the same file, which are drawn as whole rows.
    `shared_prefix`: shared system prompts and multi-turn conversations (a prefix cache can reuse them).
    """
    name: OptionalName = ""  # results/workload-<name> of `infersim workload describe`
    description: str = ""
    classes: tuple[RequestClass, ...] | None = Field(default=None, min_length=1)
    shared_prefix: SharedPrefixSpec | None = None

    @model_validator(mode="after")
    def _complete(self) -> WorkloadSpec:
        problem = _workload_problem(self)
        if problem:
            raise ValueError(problem)
        return self


def _count_problem(arrival: Any, num_requests: int | None, duration: float | None) -> str | None:
    """How many requests a stream makes: trace -> its window; offline, closed loop -> num_requests."""
    if isinstance(arrival, TraceArrivals):
        return "a trace takes window.duration, not duration" if duration is not None else None
    if isinstance(arrival, StagedArrivals):
        ok = num_requests is None and duration is None
        return None if ok else "stages arrivals last their stages' durations: no num_requests or duration"
    if isinstance(arrival, (OfflineArrivals, ClosedLoopArrivals)):
        ok = num_requests is not None and duration is None
        return None if ok else f"{arrival.kind} arrivals need num_requests only"
    if (num_requests is None) == (duration is None):
        return f"{arrival.kind} arrivals need num_requests or duration (one of them)"
    return None


def span_problem(w: WorkloadSpec) -> str | None:
    """Why the workload's arrivals would run past MAX_SECONDS of simulated time (checked after the limits, so
    that 10^12 requests are refused for their cost first); a replayed trace is checked when it is read."""
    streams = [(w.arrival, w.num_requests)] if w.classes is None else \
        [(w.arrival, w.num_requests)] * any(c.weight is not None for c in w.classes) + \
        [(c.arrival, class_counts(c, w)[0]) for c in w.classes if c.arrival is not None]
    for arrival, n in streams:
        if n is None or arrival is None:
            continue
        if isinstance(arrival, ClosedLoopArrivals):
            span, how = math.ceil(n / arrival.users) * arrival.think_time, \
                f"over {arrival.users} users thinking {arrival.think_time:g} s each"
        elif isinstance(arrival, (OfflineArrivals, TraceArrivals, StagedArrivals)):
            continue
        else:
            span, how = n / limits.mean_rate(arrival), f"at {limits.mean_rate(arrival):.3g} /s"
        if span > MAX_SECONDS:
            return f"workload: {n} requests {how} span {span:.3g} s of simulated time; {SPAN_RULE}"
    return None


def _shared_prefix_problem(w: WorkloadSpec) -> str | None:
    """shared_prefix needs synthetic arrivals, and in a closed loop exactly one loop user per prefix user."""
    p = w.shared_prefix
    if p is None:
        return None
    streams = [w.arrival] + [c.arrival for c in w.classes or ()]
    if any(isinstance(a, TraceArrivals) for a in streams):
        return ("shared_prefix: applies to synthetic arrivals, not a trace (a mooncake trace brings its own "
                "prefix hash_ids)")
    if isinstance(w.arrival, ClosedLoopArrivals) and w.arrival.users != p.users:
        return (f"shared_prefix: system_prompts x users_per_prompt is {p.users} but the closed loop has "
                f"{w.arrival.users} users; allowed: equal numbers (each loop user is one prefix user)")
    return None


def _workload_problem(w: WorkloadSpec) -> str | None:
    problem = _shared_prefix_problem(w)
    if problem:
        return problem
    if w.classes is None:
        if w.arrival is None:
            return "needs an arrival (or classes)"
        missing = [k for k in ("prompt_tokens", "output_tokens") if getattr(w, k) is None]
        if missing and not isinstance(w.arrival, TraceArrivals):
            return f"needs {' and '.join(missing)} (only a trace brings its own lengths)"
        return _count_problem(w.arrival, w.num_requests, w.duration)
    names = [c.name for c in w.classes]
    if len(set(names)) < len(names):
        return f"class names must be unique, got {names}"
    shared = [c for c in w.classes if c.weight is not None]
    if shared and w.arrival is None:
        return f"class {brief(shared[0].name)} has a weight, a share of the workload's arrival, which is missing"
    if w.arrival is not None and not shared:
        return "the workload's arrival is shared by classes with a weight, and no class has one"
    if shared and len(shared) < len(w.classes) and isinstance(w.arrival, ClosedLoopArrivals):
        return "closed_loop arrivals cannot be mixed with classes that have their own arrival"
    problem = _count_problem(w.arrival, w.num_requests, w.duration) if shared else None
    return problem or next(filter(None, (_class_problem(c, w) for c in w.classes)), None)


def _class_problem(c: RequestClass, w: WorkloadSpec) -> str | None:
    where = f"class {brief(c.name)}"
    if (c.weight is None) == (c.arrival is None):
        return f"{where} needs a weight (a share of the workload's arrival) or its own arrival, not both"
    if c.weight is not None and (c.num_requests or c.duration):
        return f"{where} has a weight: its count comes from the workload's num_requests or duration"
    if isinstance(c.arrival, ClosedLoopArrivals):
        return f"{where}: closed_loop arrivals can only be the workload's shared arrival"
    stream = c.arrival or w.arrival
    missing = [k for k in ("prompt_tokens", "output_tokens")
               if getattr(c, k) is None and getattr(w, k) is None]
    if missing and not isinstance(stream, TraceArrivals):
        return f"{where} needs {' and '.join(missing)} (only a trace brings its own lengths)"
    if c.arrival is None:
        return None
    problem = _count_problem(c.arrival, *class_counts(c, w))
    return f"{where}: {problem}" if problem else None


def class_counts(c: RequestClass, w: WorkloadSpec) -> tuple[int | None, float | None]:
    """A class's (num_requests, duration): its own, else the workload's; a trace class keeps its window, so it
    inherits num_requests only."""
    if c.num_requests is not None or c.duration is not None:
        return c.num_requests, c.duration
    return w.num_requests, None if isinstance(c.arrival, TraceArrivals) else w.duration
