"""How far each chip family's calibrated coefficients can be trusted: `catalog/uncertainty.yaml` read and
drawn from.

Each family (chips that share one fitted `efficiency:` block) carries a lognormal spread per coefficient:
`log(drawn / catalog value) ~ Normal(0, sigma)`. The widths come from the family's cross-validated
residuals (`infersim calibrate`, studies/validate/uncertainty.py); families whose fit was not kept, loose
families and chips no family covers carry a wide spread, and the file says which is which.

A draw is physics, not a fudge on outputs: it changes the chip's efficiencies (compute, memory, collective,
the experts' grouped GEMMs; capped at 1: nothing runs above nameplate), its per-layer, per-MoE-layer, per-step
and per-sequence overheads (the engine's host time per sequence and per step), and a wafer's mesh hop
latency; the engine then simulates that chip as any other. Draws are common random numbers: draw d of a
family's coefficient is the d-th normal of a generator seeded by (seed, family, coefficient), so two designs
of one family share their draws and different families are independent, and the same seed always gives the
same draws.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from simulator.config.cluster import ChipSpec, with_efficiency
from simulator.config.fields import Frozen
from simulator.config.load import CATALOG_DIR, engine_step_overhead_s, read_yaml, sequence_overhead_s, validate
from simulator.errors import ScenarioError

UNCERTAINTY_PATH = CATALOG_DIR / "uncertainty.yaml"
EFFICIENCIES = ("compute", "memory", "collective", "grouped_gemm")  # fractions (of nameplate): capped at 1
OVERHEADS = ("layer_overhead", "moe_layer_overhead", "step_overhead")
SEQUENCE = "sequence_overhead"  # per serving engine: one draw per (family, engine)
ENGINE_STEP = "engine_step_overhead"  # per serving engine, as SEQUENCE (0 stays 0: no spread creates a cost)
MESH = "mesh.hop_latency"
COEFFICIENTS = (*EFFICIENCIES, *OVERHEADS, SEQUENCE, ENGINE_STEP, MESH)
Sigma = float  # the standard deviation of log(drawn / catalog value)


class FamilyUncertainty(Frozen):
    """One family's spread: which chips, on what evidence, how wide per coefficient."""
    chips: tuple[str, ...] = Field(min_length=1)
    basis: Literal["fitted", "start values kept", "loose evidence", "not calibrated"]
    cases: int = Field(ge=0)  # residuals the width was derived from
    sigma: dict[str, Sigma]  # coefficient -> spread of its log
    source: str

    def spread(self, coefficient: str) -> float:
        return float(self.sigma.get(coefficient, 0.0))


class UncertaintySpec(Frozen):
    """The catalog's parameter uncertainty: every family, and the spread of a chip no family covers."""
    source: str
    method: str
    families: dict[str, FamilyUncertainty]
    uncalibrated: FamilyUncertainty  # its `chips` are those known to have no family

    def family_of(self, chip_id: str) -> tuple[str, FamilyUncertainty]:
        """(family name, its spread); a chip in no family (a user's chip too) is "uncalibrated"."""
        for name, family in self.families.items():
            if chip_id in family.chips:
                return name, family
        return "uncalibrated", self.uncalibrated


def load_uncertainty(path: Path = UNCERTAINTY_PATH) -> UncertaintySpec:
    spec: UncertaintySpec = validate(UncertaintySpec, read_yaml(path), str(path))
    for name, family in [*spec.families.items(), ("uncalibrated", spec.uncalibrated)]:
        bad = sorted(set(family.sigma) - set(COEFFICIENTS))
        if bad or any(not (0 <= s < 5) or math.isnan(s) for s in family.sigma.values()):
            raise ScenarioError(f"families.{name}.sigma", f"coefficients among {', '.join(COEFFICIENTS)}, each "
                                "0 <= sigma < 5", str(path))
    return spec


def normals(seed: int, family: str, coefficient: str, draws: int) -> np.ndarray:
    """The standard normals of one family's coefficient, draw by draw: common to every design of the family
    and independent of every other family and coefficient (a stable hash of the names, not Python's)."""
    key = [seed, zlib.crc32(family.encode()), zlib.crc32(coefficient.encode())]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key))).standard_normal(draws)


Factors = dict[str, float]  # coefficient (or "sequence_overhead:<engine>") -> multiplier of its catalog value


def draw_factors(spec: UncertaintySpec, chip_id: str, engine: str, seed: int, draws: int) -> list[Factors]:
    """Each draw's multipliers for the coefficients of `chip_id`'s family (exp(sigma z); exactly 1.0 where
    sigma is 0)."""
    name, family = spec.family_of(chip_id)
    if name == "uncalibrated":  # chips in no family share nothing: each draws on its own
        name = f"uncalibrated:{chip_id}"
    keys = [*EFFICIENCIES, *OVERHEADS, MESH, f"{SEQUENCE}:{engine}", f"{ENGINE_STEP}:{engine}"]
    columns = {}
    for key in keys:
        sigma = family.spread(key.partition(":")[0])
        z = normals(seed, name, key, draws)
        columns[key] = [1.0 if sigma == 0 else float(math.exp(sigma * v)) for v in z]
    return [{key: columns[key][d] for key in keys} for d in range(draws)]


def perturbed_chip(chip: ChipSpec, engine: str, factors: Factors) -> ChipSpec:
    """`chip` with its coefficients multiplied by one draw's factors; efficiencies capped at 1. Factors of
    exactly 1 leave every value bit for bit as it was."""
    e = chip.efficiency
    params = {k: min(1.0, getattr(e, k) * factors[k]) for k in EFFICIENCIES}
    params.update({k: getattr(e, k) * factors[k] for k in OVERHEADS})
    params[f"{SEQUENCE}:{engine}"] = sequence_overhead_s(chip, engine) * factors[f"{SEQUENCE}:{engine}"]
    params[f"{ENGINE_STEP}:{engine}"] = engine_step_overhead_s(chip, engine) * factors[f"{ENGINE_STEP}:{engine}"]
    if chip.mesh is not None:
        params[MESH] = chip.mesh.hop_latency * factors[MESH]
    return with_efficiency(chip, params)
