"""`infersim calibrate`: fit each chip family's efficiency coefficients on a cases file, judged out of sample.

Method (small and explainable on purpose):
- Cases: the rows `Outcome.role` calls "fit": measured tightly (MLPerf, vendor documentation, papers,
  first-party benchmark runs scored at 25% or better), simulated without an approximation, not mostly
  pipeline bubble. Vendor claims and third-party runs over public APIs are checks, never fitted on.
- Families: chips that share silicon and software stack share one parameter set (Hopper: H100 and H200;
  Blackwell: B200 and GB200). A chip with no case inherits its family's fit when it is the same silicon
  (GB300 <- Blackwell, MI325X <- MI300X); every other chip keeps its ASSUMED defaults, said so in its source.
- Parameters (`PARAMETERS`): compute and memory efficiency, the experts' grouped-GEMM efficiency relative to
  the dense GEMMs' (only MoE cases move it, so MoE physics the model lacks cannot drag the dense
  efficiencies down), per-layer, per-MoE-layer and per-step overheads, and, for each serving
  engine the family's cases name, its host time per sequence per step
  (`sequence_overhead:<engine>`, starting from the engine profile's default); where the cases name several
  engines, the host time per step each engine but the most named one adds (`engine_step_overhead:<engine>`:
  the family's step_overhead is the most named engine's); each on a grid within physical bounds.
  `collective` is not fitted: no case separates it from the compute efficiency and the overheads, so it
  keeps NCCL's typical ~0.8.
- Which case fits which parameter: only the cases whose prediction it moves (elasticity
  |d log predicted / d log parameter| >= 0.3 at the start), so a compute-bound case cannot drag the memory
  efficiency down to make up for something else. A parameter no case moves keeps its start value.
- Loss: mean |log(predicted / measured)| (robust to the scale of each metric, symmetric in too fast and too
  slow). Search: coordinate descent on the grids, each coordinate walking from its current value to the
  neighbouring grid values while the loss strictly falls; passes until nothing moves (at most `PASSES`).
- Judged out of sample: k-fold cross-validation within each family (folds = every k-th case by id; leave one
  out when a family has k cases or fewer). Each held-out case is predicted with the coefficients fitted on
  the other folds; a family left with no case to fit on predicts it with the start values. The report puts
  that cross-validated error beside the in-sample one; checks are out of sample by construction.
- Serving runs (`--runs`, validation/vllm-h100 by default): a family whose chip has measured serving runs
  fits its coefficients on its cases with the runs' engine host time held at the catalog's, then that host
  time (per sequence, per step) on the runs' stage means (TTFT, ITL) with the family's fit, judged leaving
  each run out; the catalog's host time is kept when it predicts held-out runs better. Each stage is simulated
  at most RUN_STAGE_S long in the trials (its means settle); `validate` simulates the runs whole.
"""

from __future__ import annotations

import csv
import datetime
import math
import re
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from simulator.config.cluster import PER_ENGINE, ChipSpec, per_engine, with_efficiency
from simulator.config.load import (
    CATALOG_DIR,
    chip_ids,
    engine_step_overhead_s,
    load_chip,
    load_engine,
    sequence_overhead_s,
)
from simulator.studies.validate import serving_runs
from simulator.studies.validate.cases import Case
from simulator.studies.validate.predict import Outcome, serving_engine, simulate


@dataclass(frozen=True)
class Family:
    """Chips fitted together on their cases, chips of the same silicon that inherit the fit, and whether the
    family's only evidence is loose (vendor claims, third-party API runs): then every simulated case is
    fitted on, weighted by 1 / its tolerance, starting from the chip's catalog values."""
    chips: tuple[str, ...]
    heirs: tuple[str, ...] = ()
    loose: bool = False


FAMILIES = {
    "Hopper": Family(("h100-sxm", "h200-sxm")),
    "Blackwell": Family(("b200", "gb200"), ("gb300",)),
    "Ampere": Family(("a100-sxm-80gb",)),
    "CDNA3": Family(("mi300x",), ("mi325x",)),
    "CDNA4": Family(("mi355x",)),
    # one compiler stack (XLA) and MXU design across generations, a few cases each
    "TPU": Family(("tpu-v4", "tpu-v5e", "tpu-v6e"), loose=True),
    "LPU": Family(("groq-lpu",), loose=True),
    "Wafer": Family(("cerebras-wse3",), loose=True),
    "RDU": Family(("sambanova-sn40l",), loose=True),
}
START = {"compute": 0.70, "memory": 0.85, "grouped_gemm": 1.0, "layer_overhead": 8e-6, "moe_layer_overhead": 30e-6,
         "step_overhead": 200e-6}
PARAMETERS = {  # name: (grid, elasticity probe factor)
    "compute": ([round(0.3 + 0.025 * i, 3) for i in range(27)], 0.8),  # 0.3 .. 0.95
    # >= 0.6: streaming kernels reach 80-90% of nameplate HBM bandwidth on these GPUs, decode kernels 60-85%;
    # a fit that wants less is missing a latency term, which must not be absorbed as slow memory
    "memory": ([round(0.6 + 0.025 * i, 3) for i in range(15)], 0.8),  # 0.6 .. 0.95
    # the experts' grouped GEMMs against the dense GEMMs of the same chip: 0.4 .. 1 (moves MoE cases only)
    "grouped_gemm": ([round(0.4 + 0.05 * i, 3) for i in range(13)], 0.8),
    "layer_overhead": ([x * 1e-6 for x in (0, 1, 2, 4, 6, 8, 10, 15, 20, 30, 40, 50)], 2.0),
    "moe_layer_overhead": ([x * 1e-6 for x in (0, 10, 20, 30, 40, 60, 80, 100, 150, 200, 300)], 2.0),
    "step_overhead": ([x * 1e-6 for x in (0, 10, 20, 50, 100, 150, 200, 300, 400, 600, 800, 1000, 1500, 2000)],
                      2.0),
    # a wafer's effective core-to-core hop (mesh.hop_latency): 1 to 30 cycles at ~1 GHz
    "mesh.hop_latency": ([x * 1e-9 for x in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)], 2.0),
}
SEQUENCE_GRID = [x * 1e-6 for x in (0, 1, 2, 5, 10, 15, 20, 30, 40, 60, 80, 100)]
# an engine's own host time per step: 0 (overlapped) to tens of ms (a step dispatched from Python, unoverlapped)
ENGINE_STEP_GRID = [x * 1e-3 for x in (0, 0.1, 0.2, 0.5, 1, 2, 3, 5, 7, 10, 12, 15, 20, 25, 30)]
PASSES = 4
ELASTICITY = 0.3  # a case fits a parameter when its prediction moves >= 0.3% per 1% of the parameter

Params = dict[str, float]


@dataclass(frozen=True)
class RunValue:
    """A stage mean of a measured serving run (serving_runs.py), as calibrate fits an engine's host time on it."""
    case_id: str  # run:experiment:stage:metric
    experiment: serving_runs.Experiment
    stage: int
    metric: str  # ttft or itl: the E2E mean is TTFT + (output - 1) x ITL, no further evidence
    value: float  # ms
    tolerance: float = 0.2
    engine: str = serving_runs.ENGINE
    chip: str = serving_runs.CHIP


Fittable = Case | RunValue
Predict = Callable[[Sequence[Fittable], Params], list[float | None]]


def engine_parameter(engine: str, field: str = "sequence_overhead") -> str:
    return f"{field}:{engine}"


def start_for(cases: Sequence[Fittable], chip: ChipSpec | None = None) -> Params:
    """START (or, for a loose family, `chip`'s catalog values), each engine the cases name at its profile's
    default host time per sequence, and every engine but the most named at its profile's host time per step;
    a chip with a core mesh adds its hop latency."""
    named = [c.engine if isinstance(c, RunValue) else serving_engine(c) for c in cases]
    engines = sorted(set(named))
    most = max(engines, key=lambda e: (named.count(e), e)) if engines else None
    start = dict(START) if chip is None else {name: float(getattr(chip.efficiency, name)) for name in START}
    if chip is not None and chip.mesh is not None:
        start["mesh.hop_latency"] = chip.mesh.hop_latency
    return {**start, **{engine_parameter(e): load_engine(e).sequence_overhead for e in engines},
            **{engine_parameter(e, "engine_step_overhead"): load_engine(e).step_overhead
               for e in engines if e != most}}


def grid_of(name: str) -> tuple[list[float], float]:
    if name.startswith("engine_step_overhead:"):
        return ENGINE_STEP_GRID, 2.0
    return PARAMETERS.get(name, (SEQUENCE_GRID, 2.0))


def simulator_predict(pool: Executor) -> Predict:
    """Predictions of the engine itself: every case simulated on its chip with the trial coefficients; a
    serving run's stage means from one simulation of its experiment, each stage at most RUN_STAGE_S long."""
    catalog: dict[str, ChipSpec] = {}  # each chip read once, not once per case per trial

    def chip_of(chip_id: str, params: Params) -> ChipSpec:
        return with_efficiency(catalog.get(chip_id) or catalog.setdefault(chip_id, load_chip(chip_id)), params)

    def predict(cases: Sequence[Fittable], params: Params) -> list[float | None]:
        rows = [c for c in cases if isinstance(c, Case)]
        predicted = dict(zip([c.case_id for c in rows], [o.predicted for o in pool.map(
            simulate, rows, [chip_of(c.chip, params) for c in rows])]))
        runs = list({c.experiment.name: c for c in cases if isinstance(c, RunValue)}.values())
        means = pool.map(partial(serving_runs.predict, max_stage_s=RUN_STAGE_S), [r.experiment for r in runs],
                         [chip_of(r.chip, params) for r in runs])
        stage_means = dict(zip([r.experiment.name for r in runs], [m for m, _ in means]))
        for c in cases:
            if isinstance(c, RunValue):
                predicted[c.case_id] = stage_means[c.experiment.name].get((c.stage, c.metric, "mean"))
        return [predicted[c.case_id] for c in cases]
    return predict


def log_error(predicted: float | None, measured: float) -> float:
    return abs(math.log(predicted / measured)) if predicted and predicted > 0 else math.inf


def loss(cases: Sequence[Fittable], params: Params, predict: Predict, weighted: bool = False) -> float:
    """Mean |log error|; `weighted`: each case counts 1 / its tolerance (a 40% vendor claim a third as much
    as a 15% MLPerf result)."""
    errors = [log_error(p, c.value) for c, p in zip(cases, predict(cases, params))]
    if not weighted:
        return statistics.fmean(errors)
    weights = [1.0 / c.tolerance for c in cases]
    return sum(w * e for w, e in zip(weights, errors)) / sum(weights)


@dataclass(frozen=True)
class Fit:
    params: Params
    fitted_on: dict[str, list[str]]  # parameter -> the case ids it was fitted on (empty: kept at START)
    runs: str = ""  # how the engine's host time was fitted on serving runs, for the provenance ("": it was not)


def fit(cases: Sequence[Fittable], predict: Predict, start: Params | None = None, weighted: bool = False) -> Fit:
    """Coordinate descent from `start` (default: `start_for(cases)`), each parameter on the cases it moves."""
    start = start or start_for(cases)
    base = predict(cases, start)
    own: dict[str, list[Fittable]] = {}
    for name in start:
        grid, factor = grid_of(name)
        # a parameter starting at 0 has no relative step: probed at its grid's middle, held to a doubling's bar
        probed = predict(cases, {**start, name: start[name] * factor if start[name] else grid[len(grid) // 2]})
        own[name] = [c for c, b, m in zip(cases, base, probed)
                     if b and m and abs(math.log(m / b)) / abs(math.log(factor)) >= ELASTICITY]
    params = dict(start)
    for _ in range(PASSES):
        moved_any = False
        for name in start:
            if own[name]:
                params, moved = _descend(params, name, grid_of(name)[0], own[name], predict, weighted)
                moved_any |= moved
        if not moved_any:
            break
    return Fit(params, {name: [c.case_id for c in cs] for name, cs in own.items()})


def _descend(params: Params, name: str, grid: list[float], cases: list[Fittable],
             predict: Predict, weighted: bool = False) -> tuple[Params, bool]:
    """Walk `name` along its grid from the nearest value while the loss strictly falls."""
    i = min(range(len(grid)), key=lambda j: abs(grid[j] - params[name]))
    best = loss(cases, {**params, name: grid[i]}, predict, weighted)
    start = i
    for step in (1, -1):
        while 0 <= i + step < len(grid):
            trial = loss(cases, {**params, name: grid[i + step]}, predict, weighted)
            if trial >= best - 1e-4:
                break
            i, best = i + step, trial
        if i != start:
            break  # improved going up: no need to look down
    return {**params, name: grid[i]}, grid[i] != params[name]


@dataclass(frozen=True)
class Scored:
    """One case: its fit family (or the hardware group of a chip no family fits), whether it was fitted on,
    and its error in sample and out of sample."""
    case: Case
    family: str
    role: str
    in_sample: float | None   # relative error with the coefficients fitted on every fit case
    out_of_sample: float | None  # with the coefficients fitted without it (its fold left out)


def folds_of(cases: Sequence[Fittable], k: int) -> list[list[Fittable]]:
    ordered = sorted(cases, key=lambda c: c.case_id)
    k = max(1, min(k, len(ordered)))
    return [ordered[i::k] for i in range(k)]


def cross_validate(cases: Sequence[Fittable], k: int, predict: Predict, start: Params | None = None,
                   weighted: bool = False, group: Callable[[Fittable], str] | None = None) -> dict[str, float | None]:
    """Each case's relative error predicted by the coefficients fitted, from `start` (default START), on the
    other folds (k folds by id, or one per `group`: a serving run's stage means are held out together); a fold
    with nothing left to fit on is predicted with the start values."""
    errors: dict[str, float | None] = {}
    folds = folds_of(cases, k) if group is None else \
        [[c for c in cases if group(c) == g] for g in sorted({group(c) for c in cases})]
    for fold in folds:
        rest = [c for c in cases if c not in fold]
        params = fit(rest, predict, start, weighted).params if rest else (start or start_for(fold))
        for case, p in zip(fold, predict(fold, params)):
            errors[case.case_id] = None if p is None else p / case.value - 1.0
    return errors


REACH = 3.0  # a case the start values miss by more than this factor is not fitted on
BEYOND_REACH = "check (beyond reach)"
START_KEPT = "check (start values kept)"  # the family's fit lost to its start values out of sample


def within_reach(cases: Sequence[Case], predicted: Sequence[float | None]) -> tuple[list[Case], list[Case]]:
    """(cases to fit on, cases the start values miss by more than REACH). Efficiencies and overheads move a
    prediction by tens of percent within their physical bounds; a case off by 3x or more misses physics
    the model does not have (a p99 latency under queueing, a layout or precision the source does not
    state), and fitting on it would bend every coefficient of the family towards that one case. It stays a
    check, out of sample, reported with its error."""
    near = [c for c, p in zip(cases, predicted) if log_error(p, c.value) <= math.log(REACH)]
    return near, [c for c in cases if c not in near]


def family_of(chip: str) -> str | None:
    return next((name for name, f in FAMILIES.items() if chip in f.chips), None)


RUN_STAGE_S = 150.0  # calibrate simulates each load stage of a serving run at most this long: its means settle


def run_values(path: str | Path) -> list[RunValue]:
    """The trusted stage means (TTFT and ITL) of a file of measured serving runs."""
    experiments, measured = serving_runs.read(path)
    by_name = {e.name: e for e in experiments}
    return [RunValue(f"run:{m.experiment}:{m.stage}:{m.metric}", by_name[m.experiment], m.stage, m.metric, m.value_ms)
            for m in measured if m.trusted and m.stage >= 0 and m.statistic == "mean" and m.metric in ("ttft", "itl")]


def engine_start(runs: Sequence[RunValue]) -> Params:
    """The runs' engine host time per sequence and per step on their chip, as the catalog has it."""
    chip, engine = load_chip(runs[0].chip), runs[0].engine
    return {engine_parameter(engine): sequence_overhead_s(chip, engine),
            engine_parameter(engine, "engine_step_overhead"): engine_step_overhead_s(chip, engine)}


def fit_runs(runs: Sequence[RunValue], predict: Predict, source: str, log: Callable[[str], None]) -> Fit:
    """The serving engine's host time per sequence and per step on the runs' chip, fitted on the runs' stage
    means (every other coefficient as `predict` has it) and judged leaving each run out; the start values (the
    catalog's) are kept when they predict held-out runs better."""
    engine, start = runs[0].engine, engine_start(runs)
    full = fit(runs, predict, start)
    cv = cross_validate(runs, 0, predict, start, group=lambda r: r.experiment.name if isinstance(r, RunValue)
                        else r.case_id)
    at_start = [None if p is None else p / r.value - 1.0 for r, p in zip(runs, predict(runs, start))]
    errors = {metric: [cv[r.case_id] for r in runs if r.metric == metric] for metric in ("ttft", "itl")}
    experiments = len({r.experiment.name for r in runs})
    if _median(list(cv.values())) >= _median(at_start):
        log(f"  {engine} serving runs: kept the catalog's host time (leaving each run out, median |err| "
            f"{_median(list(cv.values())):.1%} against {_median(at_start):.1%})")
        return Fit(start, {name: [] for name in start}, "")
    in_sample = [None if p is None else p / r.value - 1.0 for r, p in zip(runs, predict(runs, full.params))]
    text = (f"{', '.join(start)} fitted on the {len(runs)} stage means (TTFT, ITL) of {experiments} {engine} "
            f"serving runs of {source} (each stage simulated at most {RUN_STAGE_S:.0f} s): median |err| "
            f"{_median(in_sample):.1%} in sample, {_median(list(cv.values())):.1%} leaving each run out (TTFT "
            f"{_median(errors['ttft']):.1%}, ITL {_median(errors['itl']):.1%})")
    log(f"  {describe_engine(full.params)}: {text}")
    return Fit(full.params, full.fitted_on, text)


def calibrate(cases: Sequence[Case], outcomes: Sequence[Outcome], predict: Predict, folds: int = 5,
              only: set[str] | None = None, log: Callable[[str], None] = print, runs: Sequence[RunValue] = (),
              runs_source: str = "") -> tuple[dict[str, Fit], list[Scored]]:
    """Fit every family (or those in `only`) and cross-validate it -> (fits, every case scored). A family
    whose chip has measured serving `runs` fits its coefficients on its cases with the runs' engine host time
    held at the catalog's, then that host time on the runs with its fitted coefficients (`fit_runs`)."""
    roles = {o.case.case_id: o.role for o in outcomes}
    fits: dict[str, Fit] = {}
    scored: list[Scored] = []
    for name, family in FAMILIES.items():
        if only is not None and name not in only:
            continue
        chips, heirs = family.chips, family.heirs
        mine = [c for c in cases if c.chip in chips + heirs]  # an heir's cases: checks, with the family's fit
        fittable = ("fit", "check (source)") if family.loose else ("fit",)
        candidates = [c for c in mine if c.chip in chips and roles[c.case_id] in fittable]
        start = start_for(candidates, load_chip(chips[0])) if family.loose else start_for(candidates)
        my_runs = [r for r in runs if r.chip in chips]
        engine_held = engine_start(my_runs) if my_runs else {}  # the runs fit it, after the cases
        start = {k: v for k, v in start.items() if k not in engine_held}

        def held(cs: Sequence[Fittable], params: Params, engine: Params = engine_held) -> list[float | None]:
            """`predict` with the runs' engine host time held."""
            return predict(cs, {**params, **engine})

        chosen, beyond = within_reach(candidates, held(candidates, start))
        roles.update({c.case_id: BEYOND_REACH for c in beyond})
        if not chosen:
            log(f"{name}: no case to fit on; catalog left as it is")
            continue
        log(f"{name} ({', '.join(chips)}): fitting on {len(chosen)} cases"
            + (f" ({len(beyond)} beyond reach: {', '.join(c.case_id for c in beyond)})" if beyond else ""))
        full = fit(chosen, held, start, family.loose)
        log(f"  {describe(full.params)}")
        cv = cross_validate(chosen, folds, held, start, family.loose)
        at_start = [None if p is None else p / c.value - 1.0 for c, p in zip(chosen, held(chosen, start))]
        kept = _median(list(cv.values())) >= _median(at_start)
        if kept:  # the fit predicts held-out cases worse than the start values it was fitted from
            log(f"  kept the start values: cross-validated median |err| {_median(list(cv.values())):.1%} against "
                f"{_median(at_start):.1%} with the start values, which no case was fitted on")
            full = Fit(start, {name: [] for name in start})
            cv = dict(zip([c.case_id for c in chosen], at_start))
        if my_runs:
            def on_fit(cs: Sequence[Fittable], params: Params, fitted: Params = full.params) -> list[float | None]:
                """`predict` with the family's fitted coefficients under the trial host time."""
                return predict(cs, {**fitted, **params})
            engine = fit_runs(my_runs, on_fit, runs_source, log)
            full = Fit({**full.params, **engine.params}, {**full.fitted_on, **engine.fitted_on}, engine.runs)
        fits[name] = full
        in_sample = dict(zip([c.case_id for c in mine], predict(mine, full.params)))
        for case in mine:
            p = in_sample[case.case_id]
            error = None if p is None else p / case.value - 1.0
            out = cv.get(case.case_id, error)  # a check was never fitted on: out of sample already
            role = (START_KEPT if kept else "fit") if case in chosen else roles[case.case_id] \
                if roles[case.case_id] != "fit" else "check (inherits)"
            scored.append(Scored(case, name, role, error, out))
    if only is None:  # chips no family fits: their catalog values, out of sample by construction
        fitted = {chip for f in FAMILIES.values() for chip in f.chips + f.heirs}
        scored.extend(Scored(o.case, hardware_group(o.case.chip),
                             "check (chip not calibrated)" if o.role == "fit" else o.role, o.error, o.error)
                      for o in outcomes if o.case.chip not in fitted)
    return fits, scored


def hardware_group(chip_id: str) -> str:
    """The group a summary reports a chip in: NVIDIA, AMD, TPU, or LPU/wafer/RDU."""
    chip = load_chip(chip_id)
    return chip.vendor if chip.kind == "gpu" else "TPU" if chip.kind == "tpu" else "LPU/wafer/RDU"


GROUP_OF_FAMILY = {"Hopper": "NVIDIA", "Blackwell": "NVIDIA", "Ampere": "NVIDIA", "CDNA3": "AMD", "CDNA4": "AMD",
                   "TPU": "TPU", "LPU": "LPU/wafer/RDU", "Wafer": "LPU/wafer/RDU", "RDU": "LPU/wafer/RDU"}


def describe_engine(p: Params) -> str:
    return ", ".join([*(f"{e} {v * 1e6:.0f} us/sequence" for e, v in per_engine(p, "sequence_overhead").items()),
                      *(f"{e} +{v * 1e3:.1f} ms/step" for e, v in per_engine(p, "engine_step_overhead").items())])


def describe(p: Params) -> str:
    engines = "".join(f", {e} {v * 1e6:.0f} us/sequence" for e, v in per_engine(p, "sequence_overhead").items())
    engines += "".join(f", {e} +{v * 1e3:.1f} ms/step" for e, v in per_engine(p, "engine_step_overhead").items())
    mesh = f", mesh hop {p['mesh.hop_latency'] * 1e9:.0f} ns" if "mesh.hop_latency" in p else ""
    return (f"compute {p['compute']:.3f}, memory {p['memory']:.3f}, grouped GEMM {p['grouped_gemm']:.2f}, "
            f"layer {p['layer_overhead'] * 1e6:.0f} us, "
            f"MoE layer {p['moe_layer_overhead'] * 1e6:.0f} us, step {p['step_overhead'] * 1e6:.0f} us" + mesh
            + engines)


# ---------------------------------------------------------------- the catalog

def render(params: Params) -> dict[str, str]:
    texts = {field: ", ".join(f"{e}: {v * 1e6:.0f} us" for e, v in sorted(per_engine(params, field).items()))
             for field in PER_ENGINE}
    return {**{name: f"{round(params[name], 3):g}" for name in ("compute", "memory", "grouped_gemm")},
            **{name: f"{params[name] * 1e6:.0f} us" for name in ("layer_overhead", "moe_layer_overhead",
                                                                 "step_overhead")},
            **{field: "{" + text + "}" for field, text in texts.items() if text}}


def provenance(family: str, fit_: Fit, scored: Sequence[Scored], cases_file: str) -> str:
    """The `source:` of a fitted efficiency block: when, on which cases, which parameter, how well."""
    run_fitted = {name for name, ids in fit_.fitted_on.items() if ids and ids[0].startswith("run:")}
    fitted = "; ".join(f"{name} on {', '.join(ids)}" for name, ids in fit_.fitted_on.items()
                       if ids and name not in run_fitted)
    kept = [name for name, ids in fit_.fitted_on.items() if not ids]
    if not fitted:
        tried = [s for s in scored if s.family == family and s.role == START_KEPT]
        return (f"{'ASSUMED family defaults' if FAMILIES[family].loose else 'START values'}, kept by infersim "
                f"calibrate on {datetime.date.today().isoformat()}: fitted on the {len(tried)} {family} cases of "
                f"{cases_file}, the coefficients predicted held-out cases worse (cross-validated) than these "
                f"values, which no case was fitted on (median |err| {_median([s.in_sample for s in tried]):.1%}).")
    mine = [s for s in scored if s.family == family and s.role == "fit"]
    cv, ins = _median([s.out_of_sample for s in mine]), _median([s.in_sample for s in mine])
    loose = FAMILIES[family].loose
    return (f"fitted by infersim calibrate on {datetime.date.today().isoformat()} from {len(mine)} {family} "
            f"cases of {cases_file}" + (" (vendor claims and API runs included, each weighted by 1 / its "
                                        "tolerance)" if loose else "") + f": {fitted}. "
            + (f"Kept at the start values (no case moves them): {', '.join(kept)}. " if kept else "")
            + (f"{fit_.runs}. " if fit_.runs else "")
            + f"Median |err| {ins:.1%} in sample, {cv:.1%} cross-validated. collective not fitted (no case "
            "separates it from compute and the overheads)"
            + (": kept at its catalog value." if loose else ": NCCL's typical 0.8, applied to every link."))


def write_efficiency(chip_id: str, values: dict[str, str], source: str) -> None:
    """Rewrite the values and the source of a chip YAML's `efficiency:` block, keeping every comment."""
    write_block(chip_id, "efficiency", values, source)


def write_block(chip_id: str, block: str, values: dict[str, str], source: str | None) -> None:
    """Rewrite values (and the source, unless None) of a top-level block of a chip YAML, keeping comments."""
    path = CATALOG_DIR / "chips" / f"{chip_id}.yaml"
    lines = path.read_text(encoding="utf-8").split("\n")
    start = lines.index(f"{block}:")
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i].startswith("  ")), len(lines))
    keys = {m.group(1) for line in lines[start + 1:end] if (m := re.match(r"^  (\w+): ", line))}
    for name in [k for k in values if k not in keys]:  # a new key goes before the block's source
        at = next(i for i in range(start + 1, end) if lines[i].startswith("  source: "))
        lines.insert(at, f"  {name}: {values[name]}")
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith("  "):
            break
        m = re.match(r"^(  (\w+): )(.*?)(\s+#.*)?$", lines[i])
        if m and m.group(2) in values:
            head, comment = f"{m.group(1)}{values[m.group(2)]}", (m.group(4) or "").lstrip()
            column = len(m.group(0)) - len(comment)  # keep the comment where it was
            lines[i] = head + (" " * max(1, column - len(head)) + comment if comment else "")
        elif m and m.group(2) == "source" and source is not None:
            lines[i] = m.group(1) + '"' + source.replace('"', "'") + '"'
    path.write_text("\n".join(lines), encoding="utf-8")


def write_catalog(fits: dict[str, Fit], scored: Sequence[Scored], cases: Sequence[Case], cases_file: str) -> None:
    """Fitted families into their chips (and heirs); every other chip's source says it is not calibrated."""
    for family, fit_ in fits.items():
        chips, heirs = FAMILIES[family].chips, FAMILIES[family].heirs
        source = provenance(family, fit_, scored, cases_file)
        for chip in chips:
            write_efficiency(chip, render(fit_.params), source)
            if "mesh.hop_latency" in fit_.params:
                write_block(chip, "mesh", {"hop_latency": f"{fit_.params['mesh.hop_latency'] * 1e9:.0f} ns"},
                            None)
        for chip in heirs:
            write_efficiency(chip, render(fit_.params), "not fitted (no case for this chip): copied from the "
                             f"{family} fit, same silicon. {source}")
    fitted = {chip for family in fits for chip in FAMILIES[family].chips + FAMILIES[family].heirs}
    for chip in sorted(set(chip_ids()) - fitted - {c for f in FAMILIES.values() for c in f.chips + f.heirs}):
        path = CATALOG_DIR / "chips" / f"{chip}.yaml"
        old = re.search(r'^  source: "(.*)"$', path.read_text(encoding="utf-8").split("efficiency:")[1], re.M)
        base = re.split(r"; not yet calibrated|\. Not calibrated", old.group(1) if old else "ASSUMED")[0].rstrip(".")
        checks = [c.case_id for c in cases if c.chip == chip]
        write_efficiency(chip, {}, f"{base}. Not calibrated: {cases_file} has no case to fit on that the engine "
                         "simulates for this chip" + (f" (checks only: {', '.join(checks)})" if checks else "") + ".")


# ---------------------------------------------------------------- the cross-validated errors, for validate

CV_COLUMNS = ("case_id", "family", "role", "in_sample_error", "cross_validated_error", "tolerance")


def cross_validation_path(cases_file: str | Path) -> Path:
    """Where calibrate leaves each case's errors, beside its cases file (validation/calibration.cv.csv)."""
    path = Path(cases_file)
    return path.with_name(f"{path.stem}.cv.csv")


def write_cross_validation(scored: Sequence[Scored], cases_file: str | Path, merge: bool = False) -> Path:
    """Each scored case's errors beside its cases file; `merge` (one family refitted) replaces only the rows
    of the cases scored now and keeps the others from the last run."""
    path = cross_validation_path(cases_file)
    rows = {s.case.case_id: [s.case.case_id, s.family, s.role,
                             "" if s.in_sample is None else f"{s.in_sample:.6f}",
                             "" if s.out_of_sample is None else f"{s.out_of_sample:.6f}", str(s.case.tolerance)]
            for s in scored}
    if merge and path.is_file():
        with path.open(newline="", encoding="utf-8") as f:
            kept = list(csv.reader(f))[1:]
        rows = {**{r[0]: r for r in kept}, **rows}
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CV_COLUMNS)
        writer.writerows(rows.values())
    return path


def read_cross_validation(cases_file: str | Path) -> dict[str, float | None]:
    """case id -> cross-validated relative error, from the last `infersim calibrate` on this cases file ({}
    when it has not run, or its file is not the format calibrate writes)."""
    path = cross_validation_path(cases_file)
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or tuple(rows[0]) != CV_COLUMNS:
        return {}
    try:
        return {r["case_id"]: float(r["cross_validated_error"]) if r["cross_validated_error"] else None
                for r in rows}
    except ValueError:
        return {}


# ---------------------------------------------------------------- the report

def _median(values: Sequence[float | None]) -> float:
    finite = [abs(v) for v in values if v is not None]
    return statistics.median(finite) if finite else math.nan


def _within(scored: Sequence[Scored], attribute: str) -> float:
    values = [(getattr(s, attribute), s.case.tolerance) for s in scored]
    return statistics.fmean(v is not None and abs(v) <= t + 1e-12 for v, t in values) if values else math.nan


def summary_rows(scored: Sequence[Scored]) -> tuple[list[str], list[list[str]]]:
    """Per family, per metric and overall: cases, median |err| in sample and cross-validated, share within."""
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        if s.family in FAMILIES:
            groups.setdefault(f"family {s.family}", []).append(s)
    for s in scored:
        groups.setdefault(f"group {GROUP_OF_FAMILY.get(s.family, s.family)}", []).append(s)
    for s in scored:
        groups.setdefault(f"metric {s.case.metric}", []).append(s)
    groups["all"] = list(scored)
    rows = []
    for name, members in groups.items():
        fitted = [s for s in members if s.role == "fit"]
        rows.append([name, str(len(members)), str(len(fitted)), f"{_median([s.in_sample for s in members]):.1%}",
                     f"{_median([s.out_of_sample for s in members]):.1%}",
                     f"{_within(members, 'out_of_sample'):.0%}"])
    return ["group", "cases", "fitted", "median |err| in sample", "median |err| cross-validated",
            "within tolerance (cross-validated)"], rows


def case_rows(scored: Sequence[Scored]) -> tuple[list[str], list[list[str]]]:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:+.1%}"
    return (["case", "family", "role", "in sample", "cross-validated", "tolerance"],
            [[s.case.case_id, s.family, s.role, pct(s.in_sample), pct(s.out_of_sample), f"{s.case.tolerance:.0%}"]
             for s in scored])
