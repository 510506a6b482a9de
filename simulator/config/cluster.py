"""The `cluster:` section and the chips it is made of: catalog chips (compute peaks, memory tiers, fabrics
and ports, power, price, calibrated efficiencies) and topologies (nodes, scale-up and scale-out fabrics,
host memory behind PCIe). Every quantity holds SI floats after validation."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from simulator import units
from simulator.config.fields import Bandwidth, Bytes, DType, FlopRate, Fraction, Frozen, Seconds, Watts


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

    @model_validator(mode="after")
    def _idle_within_tdp(self) -> PowerSpec:
        if self.idle > self.tdp:
            raise ValueError(f"idle: {self.idle:g} W is above tdp ({self.tdp:g} W); allowed: 0 to tdp")
        return self


class PriceSpec(Frozen):
    purchase_usd: float | None = Field(default=None, gt=0, le=1e9)
    rent_usd_per_hour: float | None = Field(default=None, gt=0, le=1e6)
    source: str


class EfficiencySpec(Frozen):
    """Achievable fractions of peak and fixed per-iteration costs; one set per chip, never per scenario."""
    compute: Fraction
    memory: Fraction
    collective: Fraction
    layer_overhead: Seconds      # kernel launches and synchronisation per transformer layer per iteration
    moe_layer_overhead: Seconds  # and more per MoE layer: router, top-k, token permutation, grouped GEMMs
    # the fraction of the dense GEMMs' achieved rates (FLOP/s and bytes/s) the routed experts' grouped GEMMs
    # reach: one small GEMM per expert, a few tokens each, tiles padded and experts scheduled by an index
    # (vLLM's fused_moe, CUTLASS grouped GEMM); 1 = as efficient as a dense GEMM (the default until fitted)
    grouped_gemm: Fraction = 1.0
    step_overhead: Seconds
    # per serving engine: host time per sequence that yields a token per step, fitted on this chip family's
    # cases; an engine not listed takes its catalog profile's default (catalog/engines/<id>.yaml)
    sequence_overhead: dict[str, Seconds] = Field(default_factory=dict)
    # per serving engine: host time per step an engine adds on top of step_overhead (a stack that dispatches
    # each step from Python without overlapping it), fitted where this family's cases name several engines;
    # an engine not listed takes its profile's default
    engine_step_overhead: dict[str, Seconds] = Field(default_factory=dict)
    source: str

    @property
    def calibrated(self) -> bool:
        """Fitted on published measurements by `infersim calibrate` (for this chip, or copied from the fit of
        the same silicon), as its `source:` says; False: ASSUMED family defaults."""
        return "fitted by " in self.source and not self.source.startswith("ASSUMED")


class EngineSpec(Frozen):
    """A serving engine's profile (catalog/engines/<id>.yaml): its host-side cost per sequence per step, per
    step beyond the chip's own step overhead, and its front end's latency."""
    id: str
    name: str
    sequence_overhead: Seconds
    step_overhead: Seconds = 0.0
    # a request's way between the client and the scheduler, both ways, off the GPU's path: HTTP, chat template
    # and tokenisation, IPC to the engine core, detokenisation and streaming back; added to the TTFT and E2E a
    # client measures (0: benchmarks that call the engine in process)
    frontend_latency: Seconds = 0.0
    source: str


class MeshSpec(Frozen):
    """A wafer's on-chip 2D mesh of small cores, each with its own SRAM (the "PLMR" device model of WaferLLM,
    OSDI'25): a layer's weights stay on the cores of its region, and every matrix-vector product of decode
    sends the activation across that region and reduces the partial sums back, hop by hop."""
    cores: int = Field(ge=1)
    core_memory: Bytes          # SRAM per core
    hop_latency: Seconds        # one core-to-core hop, routing and the receiving core's handling included
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
    no_power: str | None = None  # without `power`: why no figures are given ("NONE: <what was searched>")
    price: PriceSpec | None = None
    mesh: MeshSpec | None = None  # wafers: the on-chip mesh of cores that bounds a layer's decode latency
    efficiency: EfficiencySpec

    @model_validator(mode="after")
    def _power_or_why_not(self) -> ChipSpec:
        if self.power is not None and self.no_power is not None:
            raise ValueError("no_power: given beside power; allowed: one of them")
        return self


# ---------------------------------------------------------------- topologies

class ScaleUpFabric(Frozen):
    """How the chips inside one node talk.

    switch: every chip has one port of `bandwidth_per_dir` into a non-blocking switch (NVSwitch), so any pair
      talks at the full port bandwidth. mesh: a direct link of `bandwidth_per_dir` between every pair
      (AMD Infinity Fabric: 7 links per GPU), so one pair gets one link. torus: links between neighbours of a
      `dims` grid, wrapped around when `wraparound` (TPU ICI); `bandwidth_per_dir` is per link.
    `in_switch_reduction`: the switch itself sums what the chips send it (NVLink SHARP, "NVLS": third-generation
      NVSwitch and later, i.e. HGX H100/H200, B200, NVL72; not the A100's second generation), so an all-reduce
      can go up once and come down once (collectives.nvls_allreduce). Only for `kind: switch`.
    """
    kind: Literal["switch", "mesh", "torus"] = "switch"
    in_switch_reduction: bool = False
    bandwidth_per_dir: Bandwidth | None = None  # None: the chip's scale-up port (switch) or link bandwidth
    dims: tuple[Annotated[int, Field(ge=1)], ...] | None = None
    wraparound: bool = True
    hop_latency: Seconds
    energy_per_bit: Annotated[float, BeforeValidator(units.parse_joules), Field(ge=0)] | None = None
    source: str

    @model_validator(mode="after")
    def _dims_for_a_torus(self) -> ScaleUpFabric:
        if self.dims is not None and self.kind != "torus":
            raise ValueError(f"dims: only a torus has dims; this scaleup is kind {self.kind!r}")
        return self


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
    def _consistent(self) -> TopologySpec:
        if self.scaleup and self.scaleup.kind == "torus":
            dims = self.scaleup.dims or ()
            if not dims or math.prod(dims) != self.chips_per_node:
                raise ValueError(f"scaleup.dims {list(dims)} must multiply to chips_per_node "
                                 f"({self.chips_per_node})")
        if self.scaleup and self.scaleup.in_switch_reduction and self.scaleup.kind != "switch":
            raise ValueError(f"scaleup.in_switch_reduction needs kind: switch, not {self.scaleup.kind}")
        if self.nodes > 1 and self.scaleout is None:
            raise ValueError(f"{self.nodes} nodes need a scaleout fabric between them")
        if self.scaleout and self.scaleout.kind == "leaf_spine" and self.nodes > self.scaleout.nodes_per_leaf \
                and self.scaleout.uplink_bandwidth_per_dir is None:
            raise ValueError("scaleout.uplink_bandwidth_per_dir is needed when nodes span several leaves")
        return self


PER_ENGINE = ("sequence_overhead", "engine_step_overhead")  # efficiency fields keyed by serving engine


def per_engine(params: dict[str, float], field: str) -> dict[str, float]:
    """engine -> value of the `<field>:<engine>` entries of `params`."""
    return {k.split(":", 1)[1]: v for k, v in params.items() if k.startswith(field + ":")}


def with_efficiency(chip: ChipSpec, params: dict[str, float]) -> ChipSpec:
    """`chip` with efficiency coefficients replaced: plain names (`compute`, `step_overhead`, ...),
    `<field>:<engine>` for the per-engine ones (merged over the chip's) and `mesh.hop_latency` (a wafer's).
    How calibrate tries coefficients and how parameter draws perturb them."""
    scalars = {k: v for k, v in params.items() if ":" not in k and "." not in k}
    eff = chip.efficiency
    update = {**scalars, **{field: {**getattr(eff, field), **per_engine(params, field)} for field in PER_ENGINE}}
    chip = chip.model_copy(update={"efficiency": chip.efficiency.model_copy(update=update)})
    if chip.mesh is not None and "mesh.hop_latency" in params:
        chip = chip.model_copy(update={"mesh": chip.mesh.model_copy(
            update={"hop_latency": params["mesh.hop_latency"]})})
    return chip
