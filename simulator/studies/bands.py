"""Bands from parameter uncertainty: a scenario re-simulated with N draws of its chip family's coefficients
(catalog/uncertainty.yaml, config/uncertainty.py), and p10/p50/p90 of the headline metrics over the draws.

The workload is the same in every draw (the scenario's seed, common random numbers), so only the model
varies. Draw d of a family's coefficient depends only on (the scenario's seed, the family, the coefficient,
d): designs of one family share it (paired comparisons), different families are independent, and the same
seed gives byte-identical bands. Shared by `run`, `compare`, `sweep` and `validate` (as points.py is).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from simulator.config.load import Scenario
from simulator.config.uncertainty import (
    UNCERTAINTY_PATH,
    UncertaintySpec,
    draw_factors,
    load_uncertainty,
    perturbed_chip,
)
from simulator.errors import ScenarioError
from simulator.studies.points import flatten, in_processes, simulate

MAX_DRAWS = 10_000
QUANTILES = (10, 50, 90)
HEADLINE = ("ttft_s.p50", "ttft_s.p99", "tpot_s.p50", "tpot_s.p99", "e2e_s.p50", "e2e_s.p99",
            "throughput.output_tokens_per_s", "throughput.output_tokens_per_s_per_chip",
            "energy_j_per_output_token", "cost_usd_per_million_output_tokens")


def check_draws(draws: int | None) -> None:
    """--uncertainty N: a whole number of draws from 2 to MAX_DRAWS (one draw has no band)."""
    if draws is not None and not 2 <= draws <= MAX_DRAWS:
        raise ScenarioError("--uncertainty", f"{draws} draws: allowed: a whole number from 2 to {MAX_DRAWS}")


def draw_scenarios(scenario: Scenario, draws: int, spec: UncertaintySpec | None = None,
                   seed: int | None = None) -> list[Scenario]:
    """The scenario once per draw, its chip's coefficients drawn from its family's spread; the workload (and
    its seed) untouched. `seed` (default the scenario's) seeds the draws."""
    spec = spec or load_uncertainty()
    engine = scenario.spec.serving.engine
    seed = scenario.spec.seed if seed is None else seed
    return [replace(scenario, chip=perturbed_chip(scenario.chip, engine, f))
            for f in draw_factors(spec, scenario.chip.id, engine, seed, draws)]


def simulate_all(scenarios: Sequence[Scenario], workers: int, preload: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, outcome) of every scenario at its own seed, in `workers` local processes."""
    if workers <= 1 or len(scenarios) <= 1:
        for i, s in enumerate(scenarios):
            yield i, simulate(s, s.spec.seed)
        return
    for index, future in in_processes(simulate, [(s, s.spec.seed) for s in scenarios], workers, preload):
        try:
            yield index, future.result()
        except Exception as exc:  # a worker that died: a crash outcome, as points.simulate would give
            yield index, {"status": "crash", "error": f"worker failed: {type(exc).__name__}: {exc}",
                          "summary": None}


def quantiles(values: Sequence[float | None]) -> dict[str, float | None]:
    """p10, p50, p90 of the finite values (numpy's linear interpolation); None when there is none."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return {f"p{q}": None for q in QUANTILES}
    return {f"p{q}": float(v) for q, v in zip(QUANTILES, np.percentile(finite, QUANTILES))}


def bands(summaries: Sequence[dict[str, Any]], keys: Sequence[str] = HEADLINE) -> dict[str, dict[str, float | None]]:
    """p10/p50/p90 over the draws of each dotted key present in the summaries."""
    flat = [flatten(s) for s in summaries]
    return {key: quantiles([f.get(key) for f in flat]) for key in keys if any(key in f for f in flat)}


def describe_spread(spec: UncertaintySpec, chip_id: str) -> dict[str, Any]:
    """What a band was drawn from, for summary.json: the family, its basis and widths, and the file."""
    name, family = spec.family_of(chip_id)
    return {"family": name, "basis": family.basis, "cases": family.cases, "sigma": dict(family.sigma),
            "file": UNCERTAINTY_PATH.name, "source": spec.source}


def run_bands(scenario: Scenario, draws: int, seed: int | None = None) -> dict[str, Any]:
    """summary.json's `uncertainty` block: `scenario` (at `seed`, default its own) re-simulated with `draws`
    parameter draws, in as many local processes as there are cores."""
    if seed is not None:
        scenario = replace(scenario, spec=scenario.spec.model_copy(update={"seed": seed}))
    spec = load_uncertainty()
    outcomes = dict(simulate_all(draw_scenarios(scenario, draws, spec), os.cpu_count() or 1,
                                 "simulator.studies.bands"))
    return uncertainty_block(scenario, draws, [outcomes[i] for i in range(draws)], spec)


def uncertainty_block(scenario: Scenario, draws: int, outcomes: Sequence[dict[str, Any]],
                      spec: UncertaintySpec) -> dict[str, Any]:
    """summary.json: uncertainty: draws, how many ran, the spread drawn from, and the bands."""
    ok = [o["summary"] for o in outcomes if o["status"] == "ok"]
    errors = sorted({o["error"] for o in outcomes if o["status"] != "ok"})
    block: dict[str, Any] = {"draws": draws, "draws_ok": len(ok), "seed": scenario.spec.seed,
                             "parameters": describe_spread(spec, scenario.chip.id), "bands": bands(ok)}
    if errors:
        block["draw_errors"] = errors
    return block
