"""Pydantic models of every input file: chips, topologies, workloads and scenarios.

All models are frozen and forbid unknown keys, so a misspelt key is an error, not a silent default. Quantity
fields accept strings with units ("80 GiB", "3.35 TB/s") and hold SI floats after validation. Each policy
family is a union discriminated on `kind:`; that union is the only lookup table.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from simulator import units

DType = Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]

Bytes = Annotated[float, BeforeValidator(units.parse_bytes), Field(gt=0)]
Bandwidth = Annotated[float, BeforeValidator(units.parse_bandwidth), Field(gt=0)]
FlopRate = Annotated[float, BeforeValidator(units.parse_flops), Field(gt=0)]
Seconds = Annotated[float, BeforeValidator(units.parse_seconds), Field(ge=0)]
Rate = Annotated[float, BeforeValidator(units.parse_rate), Field(gt=0)]
Watts = Annotated[float, BeforeValidator(units.parse_watts), Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
    value: int = Field(ge=1)


class UniformLength(Frozen):
    kind: Literal["uniform"]
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "UniformLength":
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self


class LognormalLength(Frozen):
    """Lognormal with the given mean (tokens) and sigma of the underlying normal; clipped to [1, max]."""
    kind: Literal["lognormal"]
    mean: float = Field(gt=0)
    sigma: float = Field(gt=0, le=5)
    max: int | None = Field(default=None, ge=1)


Lengths = Annotated[Union[FixedLength, UniformLength, LognormalLength], Field(discriminator="kind")]


class PoissonArrivals(Frozen):
    kind: Literal["poisson"]
    rate: Rate


class ClosedLoopArrivals(Frozen):
    """N users; each sends its next request `think_time` after its previous one finished."""
    kind: Literal["closed_loop"]
    users: int = Field(ge=1)
    think_time: Seconds = 0.0


Arrivals = Annotated[Union[PoissonArrivals, ClosedLoopArrivals], Field(discriminator="kind")]


class WorkloadSpec(Frozen):
    name: str = ""
    description: str = ""
    arrival: Arrivals
    prompt_tokens: Lengths
    output_tokens: Lengths
    num_requests: int = Field(ge=1)


# ---------------------------------------------------------------- scenario

class DeploymentSpec(Frozen):
    """How the model is laid onto the cluster. Unset dtypes follow weights_dtype."""
    tensor_parallel: int = Field(default=1, ge=1)
    pipeline_parallel: int = Field(default=1, ge=1)
    expert_parallel: int = Field(default=1, ge=1)  # 1, or = tensor_parallel: experts sharded over the TP group
    micro_batches: int | None = Field(default=None, ge=1)  # per iteration with pipeline parallelism; None: pp
    replicas: int = Field(default=1, ge=1)
    placement: Literal["packed", "strided"] = "packed"  # replica r on chips r*n.. (packed) or r, r+R, ..
    weights_dtype: DType = "bf16"
    kv_dtype: DType | None = None
    compute_dtype: DType | None = None
    memory_utilization: Fraction = 0.9  # share of each chip's memory the engine may use (vLLM's default)
    kv_block_tokens: int = Field(default=16, ge=1)


class ContinuousBatcher(Frozen):
    """Iteration-level batching (Orca/vLLM): requests join and leave between iterations.

    With `chunked_prefill`, long prompts are split to fill the token budget left by decodes (Sarathi);
    without it a prompt is prefilled whole and must fit the budget.
    """
    kind: Literal["continuous"] = "continuous"
    max_batch_size: int = Field(default=256, ge=1)
    max_batched_tokens: int = Field(default=8192, ge=1)
    chunked_prefill: bool = True

    @model_validator(mode="after")
    def _budget_holds_batch(self) -> "ContinuousBatcher":
        if self.max_batched_tokens < self.max_batch_size:
            raise ValueError(f"max_batched_tokens ({self.max_batched_tokens}) must be >= max_batch_size "
                             f"({self.max_batch_size}): every running request decodes one token per iteration")
        return self


class ServingSpec(Frozen):
    batcher: ContinuousBatcher = ContinuousBatcher()


class CostSpec(Frozen):
    """Turns chip prices and energy into money. Rented chips pay `rent_usd_per_hour` (power included);
    bought chips are amortised linearly and pay for their energy times the data centre's PUE."""
    amortization_years: float = Field(default=4.0, gt=0)
    usd_per_kwh: float = Field(default=0.08, ge=0)
    pue: float = Field(default=1.2, ge=1)
    prefer: Literal["rent", "purchase"] = "purchase"


class SimSpec(Frozen):
    max_time: Seconds | None = None  # stop the simulation here; unfinished requests count as in flight
    collectives: Literal["iteration", "layer"] = "iteration"  # flows per iteration (fast) or per layer
    link_buckets: int = Field(default=100, ge=1, le=10_000)  # time buckets of links.parquet


class ScenarioSpec(Frozen):
    """A runnable scenario: model + cluster + deployment + serving + workload."""
    name: str
    description: str = ""
    seed: int = Field(default=0, ge=0)
    model: str
    cluster: TopologySpec
    deployment: DeploymentSpec = DeploymentSpec()
    serving: ServingSpec = ServingSpec()
    workload: WorkloadSpec
    cost: CostSpec = CostSpec()
    sim: SimSpec = SimSpec()
