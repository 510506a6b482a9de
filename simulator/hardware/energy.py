"""Energy of inference as the sum of its parts: a chip's power follows what it does, between idle and TDP.

Per chip, P = idle + kernel power while a kernel runs + arithmetic power + memory traffic power; links add
their own joules per byte per hop. The chip's dynamic envelope (TDP - idle) is split so that a chip running
compute-bound kernels at its achievable rate with its memory at nameplate bandwidth draws exactly TDP:

- memory traffic: bytes x 8 x the tier's energy_per_bit (catalog, with its source). At nameplate bandwidth
  that is `memory_peak_w` = bandwidth x 8 x energy_per_bit (H100: 3.35 TB/s x 31.2 pJ/B = 105 W).
- core: `core_w` = TDP - idle - memory_peak_w. Of it, `KERNEL_RESIDENT_SHARE` is drawn whenever a kernel is
  resident, compute- or memory-bound alike (clocks, warp schedulers, register files, caches and the on-chip
  network toggle while loads are in flight), and the rest in proportion to the arithmetic: for the time the
  FLOPs take at the achievable rate (roofline `compute_s` = FLOPs / (peak x efficiency.compute)).

A compute-bound step therefore draws idle + core_w + its memory traffic (close to TDP: measured dense-GEMM power
sits at the power limit), a memory-bound decode step idle + KERNEL_RESIDENT_SHARE x core_w + a little
arithmetic + memory traffic near memory_peak_w x efficiency.memory, and a chip between steps (scheduler and
launch overheads, waiting on the network, pipeline bubbles, no work) draws idle. Energy never falls below
idle x time and mean power never exceeds TDP (plus link energy, which the links spend).

The rest of the system draws constant power for the whole run (`system_energy`): each node's host (CPUs,
DRAM, fans), each scale-out NIC and each switch, at the scenario's `cost.host_w_per_node`, `cost.nic_w` and
`cost.switch_w` (0 unless given: no sourced figure exists), counted over the nodes the run uses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simulator.config.cluster import ChipSpec, TopologySpec

# Share of a chip's dynamic core power drawn by a resident kernel whatever its arithmetic intensity. ASSUMED
# 0.5: GPU power models attribute about half of the dynamic core power to parts that toggle with any running
# kernel (GPUWattch, Leng et al., ISCA 2013: constant and per-SM-active power vs execution units), and it puts
# a memory-bound H100 decode step near 60% of TDP, below prefill, as Splitwise (Patel et al., ISCA 2024)
# measured (token phase draws clearly less than the prompt phase). Not fitted to measured power.
KERNEL_RESIDENT_SHARE = 0.5


@dataclass(frozen=True)
class EnergyModel:
    idle_w: float
    tdp_w: float
    kernel_w: float                # core power drawn while any kernel is resident
    arithmetic_w: float            # core power drawn in proportion to the arithmetic's share of the time
    joules_per_memory_byte: float
    joules_per_stream_byte: float = 0.0  # the tier weights stream from, with weight streaming

    @property
    def core_w(self) -> float:
        return self.kernel_w + self.arithmetic_w

    @classmethod
    def build(cls, chip: ChipSpec, compute_dtype: str, tier: str,
              stream_tier: str | None = None) -> EnergyModel | None:
        """None when the catalog has no power figures for the chip (energy is then unknown, not zero)."""
        if chip.power is None or compute_dtype not in chip.compute.peak:
            return None

        def per_byte(name: str | None) -> float:
            return 8.0 * (next((t.energy_per_bit for t in chip.memory if t.tier == name), None) or 0.0)

        bandwidth = next((t.bandwidth or 0.0 for t in chip.memory if t.tier == tier), 0.0)
        memory_peak_w = bandwidth * per_byte(tier)
        core_w = max(chip.power.tdp - chip.power.idle - memory_peak_w, 0.0)
        return cls(chip.power.idle, chip.power.tdp, KERNEL_RESIDENT_SHARE * core_w,
                   (1.0 - KERNEL_RESIDENT_SHARE) * core_w, per_byte(tier), per_byte(stream_tier))


@dataclass(frozen=True)
class EnergyParts:
    """Joules by cause; `total_j` is their sum and nothing else. `compute_j` = kernel_j + arithmetic_j;
    `chips_j` is what the chips and links spend, host_j + nic_j + switch_j the rest of the system."""
    idle_j: float
    kernel_j: float
    arithmetic_j: float
    memory_j: float
    network_j: float
    host_j: float = 0.0
    nic_j: float = 0.0
    switch_j: float = 0.0

    @property
    def compute_j(self) -> float:
        return self.kernel_j + self.arithmetic_j

    @property
    def chips_j(self) -> float:
        return self.idle_j + self.kernel_j + self.arithmetic_j + self.memory_j + self.network_j

    @property
    def total_j(self) -> float:
        # chips first, in the same order as before the system parts existed: with them 0 the sum is bit-identical
        return self.chips_j + self.host_j + self.nic_j + self.switch_j

    @property
    def data_movement_share(self) -> float | None:
        """Share of the energy above idle spent moving bytes (memory and links) rather than computing."""
        dynamic = self.compute_j + self.memory_j + self.network_j
        return (self.memory_j + self.network_j) / dynamic if dynamic > 0 else None


def energy_parts(model: EnergyModel, chips: int, seconds: float, kernel_s: float, arithmetic_s: float,
                 memory_bytes: float, link_joules: float, stream_bytes: float = 0.0) -> EnergyParts:
    """Energy of `chips` chips over `seconds`, in which kernels were resident `kernel_s` chip-seconds (compute-
    and memory-bound roofline time) and the FLOPs took `arithmetic_s` chip-seconds at the achievable rate;
    they read/wrote `memory_bytes` (and streamed `stream_bytes` of weights from a slower tier) in all, and
    their traffic spent `link_joules` on links."""
    memory_j = memory_bytes * model.joules_per_memory_byte + stream_bytes * model.joules_per_stream_byte
    return EnergyParts(idle_j=chips * model.idle_w * seconds, kernel_j=model.kernel_w * kernel_s,
                       arithmetic_j=model.arithmetic_w * arithmetic_s, memory_j=memory_j, network_j=link_joules)


@dataclass(frozen=True)
class SystemCounts:
    """What draws power besides the chips in the nodes a run uses: hosts (one per node), scale-out NICs (one
    per chip port into the scale-out fabric) and switches (a node's scale-up switch, leaves and spines)."""
    nodes: int
    nics: int
    switches: int

    def watts(self, host_w_per_node: float, nic_w: float, switch_w: float) -> tuple[float, float, float]:
        """What the hosts, the NICs and the switches draw, each in all."""
        return host_w_per_node * self.nodes, nic_w * self.nics, switch_w * self.switches


def system_counts(topology: TopologySpec, nodes: int) -> SystemCounts:
    """Counts over the first `nodes` nodes, wired as hardware/topology.py wires them: a scale-up switch per
    node of kind switch with more than one chip; with a scale-out fabric between several nodes, one NIC per
    chip, and for leaf_spine a leaf per `nodes_per_leaf` nodes plus the spines once there are two leaves."""
    n = topology.chips_per_node
    up = topology.scaleup
    switches = nodes if up is not None and up.kind == "switch" and n > 1 else 0
    out = topology.scaleout
    nics = 0
    if out is not None and topology.nodes > 1:
        nics = nodes * n
        if out.kind == "leaf_spine":
            leaves = -(-nodes // out.nodes_per_leaf)
            switches += leaves + (out.spines if leaves > 1 else 0)
    return SystemCounts(nodes, nics, switches)


def system_energy(parts: EnergyParts, counts: SystemCounts, seconds: float, host_w_per_node: float, nic_w: float,
                  switch_w: float) -> EnergyParts:
    """`parts` with the rest of the system added: each component draws its power for the whole `seconds`."""
    host_w, nics_w, switches_w = counts.watts(host_w_per_node, nic_w, switch_w)
    return dataclasses.replace(parts, host_j=host_w * seconds, nic_j=nics_w * seconds, switch_j=switches_w * seconds)
