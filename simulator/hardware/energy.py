"""Energy of inference as the sum of its parts: idle power over time, joules per FLOP, per byte read from a
memory tier, and per byte per link hop.

Per-FLOP energy is derived from the chip's power envelope: a chip at TDP running dense GEMM at peak spends
(TDP - idle) on arithmetic, so one FLOP at the compute dtype costs (TDP - idle) / peak(dtype). Memory and
link energies per bit come from the catalog and the topology (each with its source); a link without one
counts as free and the summary says how many such links carried traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.config.cluster import ChipSpec


@dataclass(frozen=True)
class EnergyModel:
    idle_w: float
    tdp_w: float
    joules_per_flop: float
    joules_per_memory_byte: float
    joules_per_stream_byte: float = 0.0  # the tier weights stream from, with weight streaming

    @classmethod
    def build(cls, chip: ChipSpec, compute_dtype: str, tier: str,
              stream_tier: str | None = None) -> EnergyModel | None:
        """None when the catalog has no power figures for the chip (energy is then unknown, not zero)."""
        if chip.power is None or compute_dtype not in chip.compute.peak:
            return None

        def per_byte(name: str | None) -> float:
            return 8.0 * (next((t.energy_per_bit for t in chip.memory if t.tier == name), None) or 0.0)

        dynamic = max(chip.power.tdp - chip.power.idle, 0.0)
        return cls(chip.power.idle, chip.power.tdp, dynamic / chip.compute.peak[compute_dtype], per_byte(tier),
                   per_byte(stream_tier))


@dataclass(frozen=True)
class EnergyParts:
    """Joules by cause; `total_j` is their sum and nothing else."""
    idle_j: float
    compute_j: float
    memory_j: float
    network_j: float

    @property
    def total_j(self) -> float:
        return self.idle_j + self.compute_j + self.memory_j + self.network_j

    @property
    def data_movement_share(self) -> float | None:
        """Share of the energy above idle spent moving bytes (memory and links) rather than computing."""
        dynamic = self.compute_j + self.memory_j + self.network_j
        return (self.memory_j + self.network_j) / dynamic if dynamic > 0 else None


def energy_parts(model: EnergyModel, chips: int, seconds: float, flops: float, memory_bytes: float,
                 link_joules: float, stream_bytes: float = 0.0) -> EnergyParts:
    """Energy of `chips` chips over `seconds` that did `flops` and read/wrote `memory_bytes` (and streamed
    `stream_bytes` of weights from a slower tier) in all, plus the joules their traffic spent on links."""
    memory_j = memory_bytes * model.joules_per_memory_byte + stream_bytes * model.joules_per_stream_byte
    return EnergyParts(idle_j=chips * model.idle_w * seconds, compute_j=flops * model.joules_per_flop,
                       memory_j=memory_j, network_j=link_joules)
