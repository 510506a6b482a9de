"""Pydantic models of every input file: chips, topologies, workloads and scenarios.

All models are frozen and forbid unknown keys, so a misspelt key is an error, not a silent default. Quantity
fields accept strings with units ("80 GiB", "3.35 TB/s") and hold SI floats after validation. Each policy
family is a union discriminated on `kind:`; that union is the only lookup table.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from simulator import units
from simulator.config import limits
from simulator.errors import brief

DType = Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]

Bytes = Annotated[float, BeforeValidator(units.parse_bytes), Field(gt=0)]
# >= 1 kB/s: a slower link stretches one transfer past the float64 time horizon (1e-300 B/s gave NaN times)
Bandwidth = Annotated[float, BeforeValidator(units.parse_bandwidth), Field(ge=1e3)]
FlopRate = Annotated[float, BeforeValidator(units.parse_flops), Field(gt=0)]
# Simulated time stays below ~3 years, where float64 still resolves a nanosecond: beyond 1e8 s, adding a
# microsecond step to the clock starts to round away (found by fuzzing: a rate of 1e-300 /s).
MAX_SECONDS = 1e8
SPAN_RULE = f"allowed: up to {MAX_SECONDS:.0e} s of simulated time (float64 resolution)"
Seconds = Annotated[float, BeforeValidator(units.parse_seconds), Field(ge=0, le=MAX_SECONDS)]
Rate = Annotated[float, BeforeValidator(units.parse_rate), Field(gt=0)]
Watts = Annotated[float, BeforeValidator(units.parse_watts), Field(ge=0)]
Fraction = Annotated[float, Field(ge=1e-3, le=1)]  # >= 0.1%: an efficiency of 1e-300 makes step times infinite

MAX_TOKENS = 10**9  # longest prompt or answer a length may give (today's longest contexts: ~10^7 tokens)
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]

_NAME = re.compile(r"[^\W_][\w.+-]{0,99}")
NAME_RULE = "letters, digits, '_', '.', '+', '-', starting with a letter or digit, at most 100 characters"


def safe_name(name: str) -> str:
    """A name that becomes a file or folder name (results/<name>): never a path that leaves the output folder."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{brief(name)} cannot name an output folder; allowed: {NAME_RULE}")
    return name


# the names an output path is made of: scenario (results/<name>), sweep, compare and its designs, workload
SafeName = Annotated[str, AfterValidator(safe_name)]
OptionalName = Annotated[str, AfterValidator(lambda name: name and safe_name(name))]  # "" when unnamed


def _plot_name(metric: str) -> str:
    """A metric a sweep plots to plots/<metric>.png: any dotted summary name that is one file name."""
    if not metric or re.search(r"[/\\\x00-\x1f\x7f]", metric):
        raise ValueError(f"{brief(metric)} cannot name a plot file; allowed: a dotted summary metric without "
                         "'/', '\\' or control characters")
    return metric


PlotName = Annotated[str, AfterValidator(_plot_name)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        """`num_requests: true` is a typo, not 1: a boolean where a plain number belongs is passed on as the
        word the file holds, which the number field then refuses (pydantic would read true as 1)."""
        if isinstance(data, dict) and any(isinstance(v, bool) for v in data.values()):
            fields = cls.model_fields
            data = {k: str(v).lower() if isinstance(v, bool) and k in fields and
                    _plain_number(fields[k].annotation) else v for k, v in data.items()}
        return data


def _plain_number(annotation: Any) -> bool:
    """An int or float field (optional or not), not a bool, string or quantity with units."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and type(None) in args and all(a in (int, float, type(None)) for a in args)


# ---------------------------------------------------------------- chips (catalog data)

class ComputeSpec(Frozen):
    """Dense peak compute per dtype, FLOP/s (integer OP/s counted as FLOP/s)."""
    peak: dict[DType, FlopRate]
    source: str


class MemoryTier(Frozen):
    """A memory that can hold weights or KV-cache. Bandwidth is read+write combined (half duplex)."""
    tier: Literal["sram", "hbm", "ddr"]
    capacity: Bytes
    bandwidth: Bandwidth | None = None
    energy_per_bit: Annotated[float, BeforeValidator(units.parse_joules), Field(ge=0)] | None = None  # read/write
    source: str


class ScaleUpSpec(Frozen):
    """The chip's scale-up fabric port: bandwidth per chip per direction."""
    name: str
    bandwidth_per_dir: Bandwidth
    domain_size: int = Field(ge=1)
    latency: Seconds | None = None
    links_per_chip: int | None = Field(default=None, ge=1)
    link_bandwidth_per_dir: Bandwidth | None = None
    source: str


class PortSpec(Frozen):
    name: str = ""
    bandwidth_per_dir: Bandwidth
    source: str


class PowerSpec(Frozen):
    tdp: Watts
    idle: Watts
    source: str


class PriceSpec(Frozen):
    purchase_usd: float | None = Field(default=None, gt=0)
    rent_usd_per_hour: float | None = Field(default=None, gt=0)
    source: str


class EfficiencySpec(Frozen):
    """Achievable fractions of peak and fixed per-iteration costs; one set per chip, never per scenario."""
    compute: Fraction
    memory: Fraction
    collective: Fraction
    layer_overhead: Seconds
    step_overhead: Seconds
    source: str

    @property
    def calibrated(self) -> bool:
        """Fitted on published measurements by tools/calibrate.py (for this chip, or copied from the fit of
        the same silicon), as its `source:` says; False: ASSUMED family defaults."""
        return "fitted by tools/calibrate.py" in self.source and not self.source.startswith("ASSUMED")


class ChipSpec(Frozen):
    id: str
    name: str
    vendor: str
    kind: Literal["gpu", "tpu", "lpu", "wafer", "rdu"]
    year: int | None = None
    compute: ComputeSpec
    memory: tuple[MemoryTier, ...] = Field(min_length=1)
    scaleup: ScaleUpSpec | None = None
    scaleout: PortSpec | None = None
    host_link: PortSpec | None = None
    power: PowerSpec | None = None
    price: PriceSpec | None = None
    efficiency: EfficiencySpec


# ---------------------------------------------------------------- topologies

class ScaleUpFabric(Frozen):
    """How the chips inside one node talk.

    switch: every chip has one port of `bandwidth_per_dir` into a non-blocking switch (NVSwitch), so any pair
      talks at the full port bandwidth. mesh: a direct link of `bandwidth_per_dir` between every pair
      (AMD Infinity Fabric: 7 links per GPU), so one pair gets one link. torus: links between neighbours of a
      `dims` grid, wrapped around when `wraparound` (TPU ICI); `bandwidth_per_dir` is per link.
    """
    kind: Literal["switch", "mesh", "torus"] = "switch"
    bandwidth_per_dir: Bandwidth | None = None  # None: the chip's scale-up port (switch) or link bandwidth
    dims: tuple[int, ...] | None = None
    wraparound: bool = True
    hop_latency: Seconds
    energy_per_bit: Annotated[float, BeforeValidator(units.parse_joules), Field(ge=0)] | None = None
    source: str


class ScaleOutFabric(Frozen):
    """How nodes talk. leaf_spine: one NIC per chip into its node's leaf switch (`nodes_per_leaf` nodes per
    leaf), leaves joined to every spine by one uplink each; flows pick a spine by a static hash (ECMP).
    ring: chip i of each node linked to chip i of the next node (rail-aligned direct links, Groq-style)."""
    kind: Literal["leaf_spine", "ring"]
    nic_bandwidth_per_dir: Bandwidth
    nodes_per_leaf: int = Field(default=1, ge=1)
    spines: int = Field(default=1, ge=1)
    uplink_bandwidth_per_dir: Bandwidth | None = None
    hop_latency: Seconds
    energy_per_bit: Annotated[float, BeforeValidator(units.parse_joules), Field(ge=0)] | None = None
    source: str


class HostLink(Frozen):
    """Each node's host (CPU, DRAM) behind a PCIe link per chip."""
    bandwidth_per_dir: Bandwidth
    latency: Seconds = 1e-6
    source: str


class TopologySpec(Frozen):
    name: str
    description: str = ""
    chip: str
    nodes: int = Field(default=1, ge=1)
    chips_per_node: int = Field(ge=1)
    nodes_per_rack: int | None = Field(default=None, ge=1)  # for counting racks; None when not known
    scaleup: ScaleUpFabric | None = None
    scaleout: ScaleOutFabric | None = None
    host: HostLink | None = None
    source: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> "TopologySpec":
        if self.scaleup and self.scaleup.kind == "torus":
            dims = self.scaleup.dims or ()
            if not dims or math.prod(dims) != self.chips_per_node:
                raise ValueError(f"scaleup.dims {list(dims)} must multiply to chips_per_node "
                                 f"({self.chips_per_node})")
        if self.nodes > 1 and self.scaleout is None:
            raise ValueError(f"{self.nodes} nodes need a scaleout fabric between them")
        if self.scaleout and self.scaleout.kind == "leaf_spine" and self.nodes > self.scaleout.nodes_per_leaf \
                and self.scaleout.uplink_bandwidth_per_dir is None:
            raise ValueError("scaleout.uplink_bandwidth_per_dir is needed when nodes span several leaves")
        return self


# ---------------------------------------------------------------- workloads

class FixedLength(Frozen):
    kind: Literal["fixed"]
    value: Tokens


class UniformLength(Frozen):
    kind: Literal["uniform"]
    low: Tokens
    high: Tokens

    @model_validator(mode="after")
    def _ordered(self) -> "UniformLength":
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
    format: Literal["azure", "mooncake", "sharegpt"] | None = None
    path: str | None = None
    values: tuple[Tokens, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> "EmpiricalLength":
        if (self.path is None) == (self.values is None):
            raise ValueError("give either path (with format) or values")
        if self.path is not None and self.format is None:
            raise ValueError("path needs a format: azure, mooncake or sharegpt")
        return self


Lengths = Annotated[Union[FixedLength, UniformLength, LognormalLength, EmpiricalLength],
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
    cv: float = Field(gt=0, le=100)


MIN_PER_CYCLE = 1e-3


class OnOffArrivals(Frozen):
    """Bursts: Poisson at `rate` while on and at `off_rate` while off (an interrupted Poisson process).
    Periods last `on_time` and `off_time` on average (exponentially distributed), or exactly with
    `durations: fixed`; the first period is on. Mean rate: (rate * on_time + off_rate * off_time) /
    (on_time + off_time). (Not `on:`/`off:`, which YAML reads as true/false.)"""
    kind: Literal["on_off"]
    rate: Rate
    off_rate: Annotated[float, BeforeValidator(units.parse_rate), Field(ge=0)] = 0.0
    on_time: Duration
    off_time: Duration
    durations: Literal["exponential", "fixed"] = "exponential"

    @model_validator(mode="after")
    def _bursts_hold_requests(self) -> "OnOffArrivals":
        per_cycle = self.rate * self.on_time + self.off_rate * self.off_time
        if per_cycle < MIN_PER_CYCLE:  # generation walks cycle by cycle: 1e-300 per cycle would never end
            raise ValueError(f"rate x on_time + off_rate x off_time is {per_cycle:.3g} requests per on/off cycle; "
                             f"allowed: at least {MIN_PER_CYCLE:g} (for rarer bursts use kind: poisson)")
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
    curve: tuple[Annotated[float, Field(ge=0)], ...] | None = Field(default=None, min_length=2)
    peak_to_trough: float = Field(default=2.0, ge=1)
    peak_at: Seconds | None = None
    start: Seconds = 0.0

    @model_validator(mode="after")
    def _within_period(self) -> "DailyArrivals":
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


class OfflineArrivals(Frozen):
    """Every request arrives at t = 0, as in a batch job: measures the cluster's maximum throughput."""
    kind: Literal["offline"]


class TraceWindow(Frozen):
    """A span of a trace, measured from its first request (ServeGen: its first window)."""
    start: Seconds = 0.0
    duration: Duration | None = None


class TraceArrivals(Frozen):
    """Requests replayed from a real trace: arrival times and lengths (Mooncake: prefix hash_ids too).

    azure and mooncake files are replayed row by row; a servegen folder (trace.csv[.gz], dataset.jsonl[.gz])
    holds per-client rates and fitted gap and length distributions per window, from which requests are drawn.
    Applied in order: `window` (t = 0 at its start), `num_requests` (the first n), or `resample` (n gaps and n
    rows drawn with replacement), `dither` (each arrival moved later by up to that much, for timestamps on a
    coarse grid), then `time_scale` (2 replays twice as fast: gaps halved, rate doubled) or `rate` (the
    time_scale that gives this mean rate). Lengths come from the trace unless prompt_tokens or output_tokens
    are given. The path is relative to the YAML file.
    """
    kind: Literal["trace"]
    format: Literal["azure", "mooncake", "servegen"]
    path: str
    window: TraceWindow = TraceWindow()
    time_scale: float | None = Field(default=None, gt=0)
    rate: Rate | None = None
    resample: bool = False
    dither: Seconds = 0.0

    @model_validator(mode="after")
    def _one_scale(self) -> "TraceArrivals":
        if self.time_scale is not None and self.rate is not None:
            raise ValueError("give time_scale or rate, not both")
        return self


Arrivals = Annotated[Union[PoissonArrivals, GammaArrivals, OnOffArrivals, DailyArrivals, ClosedLoopArrivals,
                           OfflineArrivals, TraceArrivals], Field(discriminator="kind")]


class SloSpec(Frozen):
    """Latency targets: a request meets them when it completes with TTFT <= ttft and TPOT <= tpot (an unset
    target is not checked). Checked after the run (simulator/slo.py), never used for scheduling."""
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


class WorkloadSpec(Traffic):
    """Requests of a run: one class (arrival, lengths, num_requests or duration at the top) or `classes`.

    `correlation` (-1..1) couples prompt and output lengths through a Gaussian copula; unset, they are
    independent, except two empirical lengths from the same file, which are drawn as whole rows.
    """
    name: OptionalName = ""  # results/workload-<name> of `infersim workload describe`
    description: str = ""
    classes: tuple[RequestClass, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> "WorkloadSpec":
        problem = _workload_problem(self)
        if problem:
            raise ValueError(problem)
        return self


def _count_problem(arrival: Any, num_requests: int | None, duration: float | None) -> str | None:
    """How many requests a stream makes: trace -> its window; offline, closed loop -> num_requests."""
    if isinstance(arrival, TraceArrivals):
        return "a trace takes window.duration, not duration" if duration is not None else None
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
        elif isinstance(arrival, (OfflineArrivals, TraceArrivals)):
            continue
        else:
            span, how = n / limits.mean_rate(arrival), f"at {limits.mean_rate(arrival):.3g} /s"
        if span > MAX_SECONDS:
            return f"workload: {n} requests {how} span {span:.3g} s of simulated time; {SPAN_RULE}"
    return None


def _workload_problem(w: WorkloadSpec) -> str | None:
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


# ---------------------------------------------------------------- scenario

class PoolSpec(Frozen):
    """The parallelism of one pool of replicas (prefill or decode) under disaggregation."""
    tensor_parallel: int = Field(default=1, ge=1)
    pipeline_parallel: int = Field(default=1, ge=1)
    replicas: int = Field(default=1, ge=1)


class DisaggregationSpec(Frozen):
    """Prefill and decode on separate replicas (Splitwise, DistServe): the prefill pool's chips come first,
    the decode pool's after them; each request's KV-cache moves between them over the fabric."""
    prefill: PoolSpec
    decode: PoolSpec


class DeploymentSpec(Frozen):
    """How the model is laid onto the cluster. Unset dtypes follow weights_dtype."""
    tensor_parallel: int = Field(default=1, ge=1)
    pipeline_parallel: int = Field(default=1, ge=1)
    expert_parallel: int = Field(default=1, ge=1)  # 1, or = tensor_parallel: experts sharded over the TP group
    micro_batches: int | None = Field(default=None, ge=1)  # per iteration with pipeline parallelism; None: pp
    # in_flight: micro-batches stay in the pipeline from one iteration to the next (vLLM's virtual engines,
    # TensorRT-LLM); flush: each iteration fills and drains it (GPipe-style)
    pipeline_schedule: Literal["in_flight", "flush"] = "in_flight"
    replicas: int = Field(default=1, ge=1)
    placement: Literal["packed", "strided"] = "packed"  # replica r on chips r*n.. (packed) or r, r+R, ..
    weights_dtype: DType = "bf16"
    kv_dtype: DType | None = None
    compute_dtype: DType | None = None
    memory_utilization: Fraction = 0.9  # share of each chip's memory the engine may use (vLLM's default)
    weight_streaming: bool = False  # weights too big for the fast tier stream from a larger, slower one
    disaggregated: DisaggregationSpec | None = None

    @model_validator(mode="after")
    def _one_place_for_parallelism(self) -> "DeploymentSpec":
        if self.disaggregated and (self.tensor_parallel, self.pipeline_parallel, self.replicas) != (1, 1, 1):
            raise ValueError("with disaggregated pools, set tensor_parallel, pipeline_parallel and replicas under "
                             "disaggregated.prefill and disaggregated.decode, not at the top")
        return self
    kv_block_tokens: int = Field(default=16, ge=1)


class ContinuousBatcher(Frozen):
    """Iteration-level batching (Orca/vLLM): requests join and leave between iterations.

    With `chunked_prefill`, long prompts are split to fill the token budget left by decodes (Sarathi);
    without it a prompt is prefilled whole and must fit the budget. `kv_policy` and `preemption`: see
    serving/batcher.py; swapping needs host links in the topology (`host:`).
    """
    kind: Literal["continuous"] = "continuous"
    max_batch_size: int = Field(default=256, ge=1)
    max_batched_tokens: int = Field(default=8192, ge=1)
    chunked_prefill: bool = True
    kv_policy: Literal["reserve", "paged"] = "reserve"  # reserve all output blocks up front, or grow (vLLM)
    preemption: Literal["recompute", "swap"] = "recompute"  # paged only: what a preempted request does
    priority: Literal["decode_first", "prefill_first"] | None = None  # None: decode first iff chunked

    @model_validator(mode="after")
    def _budget_holds_batch(self) -> "ContinuousBatcher":
        if self.max_batched_tokens < self.max_batch_size:
            raise ValueError(f"max_batched_tokens ({self.max_batched_tokens}) must be >= max_batch_size "
                             f"({self.max_batch_size}): every running request decodes one token per iteration")
        return self


class StaticBatcher(Frozen):
    """Request-level (static) batching, as FasterTransformer served: a batch is admitted only when the
    replica is empty, prefilled at once, and decoded until its last request finishes; requests that arrive
    meanwhile wait for the whole batch. It starts when `max_batch_size` requests wait or the oldest has
    waited `max_wait`."""
    kind: Literal["static"]
    max_batch_size: int = Field(default=32, ge=1)
    max_wait: Seconds = 0.0
    # fixed for static batching (same names as the continuous batcher's, so the scheduler reads one shape)
    max_batched_tokens: Literal[2**31] = 2**31
    chunked_prefill: Literal[False] = False
    kv_policy: Literal["reserve"] = "reserve"
    preemption: Literal["recompute"] = "recompute"
    priority: Literal["prefill_first"] = "prefill_first"


Batcher = Annotated[Union[ContinuousBatcher, StaticBatcher], Field(discriminator="kind")]


class RoundRobin(Frozen):
    """Replica i gets requests i, i + n, i + 2n, ... (serving/router.py describes every router)."""
    kind: Literal["round_robin"] = "round_robin"


class LeastOutstandingTokens(Frozen):
    """The replica with the fewest prompt + output tokens of requests routed to it and not yet finished."""
    kind: Literal["least_outstanding_tokens"]


class ShortestQueue(Frozen):
    """The replica with the fewest requests waiting or running."""
    kind: Literal["shortest_queue"]


class Affinity(Frozen):
    """A session (closed-loop user) or a prefix (its first `prefix_blocks` hashes) sticks to one replica,
    unless that replica's queue exceeds the shortest by more than `max_queue_gap` requests and more than
    `max_queue_ratio` times; then, and without a key, least outstanding tokens."""
    kind: Literal["affinity"]
    prefix_blocks: int = Field(default=2, ge=1)
    max_queue_gap: int = Field(default=64, ge=0)
    max_queue_ratio: float = Field(default=1.5, ge=1)


RouterSpec = Annotated[Union[RoundRobin, LeastOutstandingTokens, ShortestQueue, Affinity],
                       Field(discriminator="kind")]


class SpeculativeSpec(Frozen):
    """Speculative decoding: each decode step drafts `tokens` tokens and verifies them in one pass of the
    target model; each draft token is accepted with probability `acceptance` until the first rejection,
    and the verification adds one token of its own. `draft_model`: a catalog model or config.json that
    drafts, on the same chips; without one, multi-token-prediction heads draft at the cost of one target
    layer per token (DeepSeek-V3's MTP module)."""
    tokens: int = Field(ge=1, le=16)
    acceptance: float = Field(ge=0, lt=1)
    draft_model: str | None = None


class ServingSpec(Frozen):
    """How replicas serve: the batcher of each, the router across them, and a default SLO for requests
    whose class (or workload) sets none."""
    batcher: Batcher = ContinuousBatcher()
    router: RouterSpec = RoundRobin()
    slo: SloSpec | None = None
    prefix_caching: bool = False  # reuse cached prompt prefixes; needs a workload with block hashes (Mooncake)
    speculative: SpeculativeSpec | None = None


class CostSpec(Frozen):
    """Turns chip prices and energy into money. Rented chips pay `rent_usd_per_hour` (power included);
    bought chips are amortised linearly and pay for their energy times the data centre's PUE."""
    amortization_years: float = Field(default=4.0, gt=0)
    usd_per_kwh: float = Field(default=0.08, ge=0)
    pue: float = Field(default=1.2, ge=1)
    prefer: Literal["rent", "purchase"] = "purchase"


class SimSpec(Frozen):
    max_time: Seconds | None = None  # stop the simulation here; unfinished requests count as in flight
    allow_huge: bool = False  # run even when the estimate exceeds the machine's memory or a day (limits.py)
    collectives: Literal["iteration", "layer"] = "iteration"  # flows per iteration (fast) or per layer
    link_buckets: int = Field(default=100, ge=1, le=10_000)  # time buckets of links.parquet
    # commit decode iterations that nothing can interrupt without an event each (same results; false: one
    # event per iteration, for checking)
    run_ahead: bool = True
    # processes simulating independent replica groups of one large run (replica_groups.py); same results
    workers: int = Field(default=1, ge=1, le=256)


class ScenarioSpec(Frozen):
    """A runnable scenario: model + cluster + deployment + serving + workload. One whose run would obviously
    exhaust the machine's memory or last more than a day is refused (config/limits.py) unless sim.allow_huge."""
    name: SafeName
    description: str = ""
    seed: int = Field(default=0, ge=0)
    model: str
    cluster: TopologySpec
    deployment: DeploymentSpec = DeploymentSpec()
    serving: ServingSpec = ServingSpec()
    workload: WorkloadSpec
    cost: CostSpec = CostSpec()
    sim: SimSpec = SimSpec()

    @model_validator(mode="after")
    def _within_limits(self) -> "ScenarioSpec":
        problem = limits.scenario_problem(self) or span_problem(self.workload)
        if problem:
            raise ValueError(problem)
        return self


# ---------------------------------------------------------------- sweeps

class ParetoSpec(Frozen):
    """Two columns of the sweep table that trade off, both better when larger (default: tokens/s each user
    sees against tokens/s each chip delivers)."""
    x: str = "interactivity.tokens_per_s_per_user"
    y: str = "throughput.output_tokens_per_s_per_chip"


MAX_SWEEP_POINTS = 10_000


class SweepSpec(Frozen):
    """A sweep file: a base scenario and axes over its dotted keys (the keys `infersim run --set` takes).

    Points are the product of the `axes` and the `zip` groups, in file order, the last varying fastest; the
    keys of one zip group advance together. With `seeds: spawn` point i runs with a seed spawned from the root
    seed by its index; with `seeds: shared` every point runs with the root seed (common random numbers).
    """
    name: OptionalName = ""  # results/<name> by default
    description: str = ""
    base: str  # the base scenario file, relative to the sweep file
    seed: int | None = Field(default=None, ge=0)  # root seed; None: the base scenario's seed
    seeds: Literal["spawn", "shared"] = "spawn"
    overrides: tuple[str, ...] = ()  # dotted.key=value applied to every point, as with --set
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    zip: tuple[dict[str, Annotated[list[Any], Field(min_length=1)]], ...] = ()
    x_axis: str | None = None  # the axis the metric plots use as x; None: the first
    metrics: tuple[PlotName, ...] = ("throughput.output_tokens_per_s_per_chip", "tpot_s.p50", "ttft_s.p99")
    pareto: ParetoSpec = ParetoSpec()
    allow_huge: bool = False  # more than MAX_SWEEP_POINTS points

    @model_validator(mode="before")
    @classmethod
    def _not_too_many(cls, data: Any) -> Any:
        """Refuse an absurd grid before expanding or validating it (10 axes of 100 values are 10^20 points)."""
        if isinstance(data, dict) and data.get("allow_huge") is not True:
            groups = [*(data.get("axes") or {}).values()] if isinstance(data.get("axes"), dict) else []
            if isinstance(data.get("zip"), list):
                groups += [next(iter(g.values()), []) for g in data["zip"] if isinstance(g, dict) and g]
            points = math.prod(len(values) for values in groups if isinstance(values, list))
            if points > MAX_SWEEP_POINTS:
                raise ValueError(f"axes: {points:.3g} points; allowed: up to {MAX_SWEEP_POINTS} (at ~1 s each, "
                                 f"more would take days); set allow_huge: true to run them anyway")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "SweepSpec":
        seen = list(self.axes)
        seeds = [("axes.seed", self.axes.get("seed", []))]
        seeds += [(f"zip.{i}.seed", group["seed"]) for i, group in enumerate(self.zip) if "seed" in group]
        for where, values in seeds:
            bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0]
            if bad:
                raise ValueError(f"{where}: seeds must be integers >= 0, got {brief(bad[0])}")
        for i, group in enumerate(self.zip):
            lengths = {key: len(values) for key, values in group.items()}
            if not lengths:
                raise ValueError(f"zip.{i}: an empty group; give it keys with lists of values")
            if len(set(lengths.values())) > 1:
                listed = ", ".join(f"{key} has {n}" for key, n in lengths.items())
                raise ValueError(f"zip.{i}: zipped keys need lists of equal length; {listed}")
            twice = [key for key in group if key in seen]
            if twice:
                raise ValueError(f"zip.{i}: {twice[0]} is already an axis")
            seen += list(group)
        if self.x_axis is not None and self.x_axis not in seen:
            raise ValueError(f"x_axis: {brief(self.x_axis)} is not one of the axes: {', '.join(seen) or 'none'}")
        return self


# ---------------------------------------------------------------- comparisons

class CompareDesign(Frozen):
    """One cluster design of a comparison: a topology (name, path or mapping) and how the model sits on it.
    `serving` replaces the comparison's default serving for this design only."""
    name: SafeName  # part of its scenarios' names
    description: str = ""
    cluster: str | dict[str, Any]  # validated as a topology when the design's scenarios are built
    deployment: DeploymentSpec = DeploymentSpec()
    serving: ServingSpec | None = None


class CompareSpec(Frozen):
    """A comparison file: one model and workload over several cluster designs, each swept over concurrency.

    Every (design, concurrency) point is a scenario whose workload arrival becomes closed_loop with
    `concurrency` x replicas users (each waits `think_time` between its requests) and
    max(requests_per_user x users, min_requests) requests, so each design is measured at the same load per
    replica. All points share `seed` (common random numbers: the same prompts and answers everywhere).
    """
    name: SafeName  # results/compare-<name> by default
    description: str = ""
    seed: int = Field(default=0, ge=0)
    model: str
    workload: str | dict[str, Any]  # a workloads/ name or path, or an inline workload
    concurrency: tuple[Annotated[int, Field(ge=1)], ...] = Field(min_length=1)
    requests_per_user: int = Field(default=4, ge=1)
    min_requests: int = Field(default=16, ge=1)
    think_time: Seconds = 0.0
    serving: ServingSpec = ServingSpec()
    cost: CostSpec = CostSpec()
    sim: SimSpec = SimSpec()
    designs: tuple[CompareDesign, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "CompareSpec":
        names = [d.name for d in self.designs]
        if len(set(names)) < len(names):
            raise ValueError(f"design names must be unique, got {names}")
        if len(set(self.concurrency)) < len(self.concurrency):
            raise ValueError(f"concurrency values must be unique, got {list(self.concurrency)}")
        return self
