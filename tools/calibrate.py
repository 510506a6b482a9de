"""Fit each chip family's efficiencies on the calibration cases and write them into the catalog.

    python tools/calibrate.py [CASES.csv] [--dry-run] [--workers 2]

Method (small and explainable on purpose):
- Cases: the rows of validation/calibration.csv measured by MLPerf, vendor documentation or papers, that the
  engine simulates without an approximation. Vendor claims and benchmark-repo rows (loose tolerances) are
  never fitted on: they are checks, reported by `infersim validate`.
- Families: chips that share silicon and software stack share one parameter set (Hopper: H100 and H200,
  same GH100 die; Blackwell: B200 and GB200). A chip with no case inherits its family's fit when it is the
  same silicon (GB300 <- Blackwell, MI325X <- MI300X); every other chip keeps its ASSUMED family defaults.
- Parameters: compute and memory efficiency, per-layer and per-step overheads, within physical bounds
  (efficiencies in (0.3, 0.95], 0..50 us per layer, 0..2 ms per step). `collective` (the achievable share
  of a link's bandwidth, which the engine applies to every link) is not fitted: no case separates it from
  the compute efficiency and the overheads, so it keeps NCCL's typical ~0.8.
- Cases more than 20% of whose simulated busy time is pipeline bubble are not fitted on: a bubble that large
  says the engine's pipeline schedule, not a chip's efficiency, decides the prediction (with micro-batches
  kept in flight, `deployment.pipeline_schedule: in_flight`, TensorRT-LLM's pipelined 405B cases have little
  and are fitted on). They remain checks in `infersim validate`.
- Which case fits which parameter: a parameter is fitted only on the cases whose prediction it moves, those
  with an elasticity |d log(predicted) / d log(parameter)| >= 0.3 at the defaults. A compute-bound case
  therefore cannot drag the memory efficiency down to make up for something else (the roofline takes
  max(compute, memory) over a whole iteration, which is optimistic when both matter), and a parameter no
  case moves keeps its default, said so in the catalog's source.
- Search: block coordinate descent over fixed grids, starting from the GPU family defaults: each parameter in
  turn takes the grid value that minimises the mean |log(predicted / measured)| over its cases, moving only
  for a strict improvement. Three passes. Never one value per case.
"""

from __future__ import annotations

import argparse
import datetime
import math
import re
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simulator.config.cluster import ChipSpec  # noqa: E402
from simulator.config.load import CATALOG_DIR, chip_ids, load_chip  # noqa: E402
from simulator.studies.validate.cases import Case, read_cases  # noqa: E402
from simulator.studies.validate.predict import simulate  # noqa: E402

FAMILIES = {  # name: (chips fitted on their cases, chips that inherit the fit)
    "Hopper": (("h100-sxm", "h200-sxm"), ()),
    "Blackwell": (("b200", "gb200"), ("gb300",)),
    "Ampere": (("a100-sxm-80gb",), ()),
    "CDNA3": (("mi300x",), ("mi325x",)),
}
START = {"compute": 0.70, "memory": 0.85, "layer_overhead": 8e-6, "step_overhead": 200e-6}
GRID = {
    "compute": [round(0.325 + 0.025 * i, 3) for i in range(26)],  # 0.325 .. 0.95
    "memory": [round(0.325 + 0.025 * i, 3) for i in range(26)],
    "layer_overhead": [x * 1e-6 for x in (0, 2, 4, 6, 8, 10, 15, 20, 30, 40, 50)],
    "step_overhead": [x * 1e-6 for x in (0, 50, 100, 150, 200, 300, 400, 600, 800, 1000, 1500, 2000)],
}
PASSES = 3
ELASTICITY = 0.3   # a case fits a parameter when its prediction moves >= 0.3% per 1% of the parameter
PROBE = {"compute": 0.8, "memory": 0.8, "layer_overhead": 2.0, "step_overhead": 2.0}  # elasticity probes


def with_efficiency(chip: ChipSpec, params: dict[str, float]) -> ChipSpec:
    return chip.model_copy(update={"efficiency": chip.efficiency.model_copy(update=params)})


def predictions(cases: list[Case], params: dict[str, float], pool: ProcessPoolExecutor) -> list[float | None]:
    chips = [with_efficiency(load_chip(c.chip), params) for c in cases]
    return [o.predicted for o in pool.map(simulate, cases, chips)]


def mean_log_error(cases: list[Case], params: dict[str, float], pool: ProcessPoolExecutor) -> float:
    predicted = predictions(cases, params, pool)
    return statistics.fmean(abs(math.log(p / c.value)) if p else math.inf for c, p in zip(cases, predicted))


def sensitive_cases(cases: list[Case], pool: ProcessPoolExecutor) -> dict[str, list[Case]]:
    """For each parameter, the cases whose prediction it moves (elasticity >= ELASTICITY at START)."""
    base = predictions(cases, START, pool)
    chosen: dict[str, list[Case]] = {}
    for name, factor in PROBE.items():
        moved = predictions(cases, {**START, name: START[name] * factor}, pool)
        elastic = [abs(math.log(m / b)) / abs(math.log(factor)) for b, m in zip(base, moved)]
        chosen[name] = [c for c, e in zip(cases, elastic) if e >= ELASTICITY]
        print(f"  {name}: " + ", ".join(f"{c.case_id} {e:.2f}" for c, e in zip(cases, elastic) if e >= 0.05))
    return chosen


def fit(cases: list[Case], pool: ProcessPoolExecutor) -> tuple[dict[str, float], dict[str, list[Case]]]:
    """Block coordinate descent over GRID from START -> (parameters, the cases each was fitted on)."""
    params = dict(START)
    by_param = sensitive_cases(cases, pool)
    for _ in range(PASSES):
        moved = False
        for name, values in GRID.items():
            own = by_param[name]
            if not own:
                continue
            best = mean_log_error(own, params, pool)
            for value in values:
                trial = {**params, name: value}
                score = mean_log_error(own, trial, pool)
                if score < best - 1e-4:
                    params, best, moved = trial, score, True
        print(f"  pass: {describe(params)}", flush=True)
        if not moved:
            break
    return params, by_param


def describe(p: dict[str, float]) -> str:
    return (f"compute {p['compute']:.3f}, memory {p['memory']:.3f}, "
            f"layer {p['layer_overhead'] * 1e6:.0f} us, step {p['step_overhead'] * 1e6:.0f} us")


def fit_cases(cases: list[Case], chips: tuple[str, ...]) -> list[Case]:
    """The family's cases whose role is "fit" (see Outcome.role); the others stay checks in the report."""
    chosen = []
    for case in (c for c in cases if c.chip in chips):
        role = simulate(case).role
        if role == "fit":
            chosen.append(case)
        else:
            print(f"  not fitted on {case.case_id}: {role}")
    return chosen


def render(params: dict[str, float]) -> dict[str, str]:
    return {"compute": f"{params['compute']:.3f}".rstrip("0"),
            "memory": f"{params['memory']:.3f}".rstrip("0"),
            "layer_overhead": f"{params['layer_overhead'] * 1e6:.0f} us",
            "step_overhead": f"{params['step_overhead'] * 1e6:.0f} us"}


def provenance(family: str, chosen: list[Case], by_param: dict[str, list[Case]],
               errors: tuple[float, float]) -> str:
    """The `source:` of a fitted efficiency block: when, on which cases, which parameter, how well."""
    fitted = "; ".join(f"{name} on {', '.join(c.case_id for c in cases)}"
                       for name, cases in by_param.items() if cases)
    kept = [name for name, cases in by_param.items() if not cases]
    today = datetime.date.today().isoformat()
    return (f"fitted by tools/calibrate.py on {today} from {len(chosen)} {family} cases of "
            f"validation/calibration.csv: {fitted}. "
            + (f"Kept at the GPU defaults (no case moves them): {', '.join(kept)}. " if kept else "")
            + f"Median |err| {errors[1]:.1%} (at the defaults {errors[0]:.1%}). collective not fitted (no case "
            "separates it from compute and the overheads): kept at NCCL's typical 0.8, which the engine "
            "applies to every link.")


def write_efficiency(chip_id: str, values: dict[str, str], source: str) -> None:
    """Rewrite the values and the source of a chip YAML's `efficiency:` block, keeping every comment."""
    path = CATALOG_DIR / "chips" / f"{chip_id}.yaml"
    lines = path.read_text(encoding="utf-8").split("\n")
    start = lines.index("efficiency:")
    for i in range(start + 1, len(lines)):
        if not lines[i].startswith("  "):
            break
        m = re.match(r"^(  (\w+): )(.*?)(\s+#.*)?$", lines[i])
        if m and m.group(2) in values:
            head, comment = f"{m.group(1)}{values[m.group(2)]}", (m.group(4) or "").lstrip()
            column = len(m.group(0)) - len(comment)  # keep the comment where it was
            lines[i] = head + (" " * max(1, column - len(head)) + comment if comment else "")
        elif m and m.group(2) == "source":
            lines[i] = m.group(1) + '"' + source.replace('"', "'") + '"'
    path.write_text("\n".join(lines), encoding="utf-8")


def note_uncalibrated(cases: list[Case]) -> None:
    """Say in the source of every chip outside the families that its efficiencies are ASSUMED defaults, and
    which cases (checks only) exist for it."""
    fitted = {chip for chips, heirs in FAMILIES.values() for chip in chips + heirs}
    for chip in sorted(set(chip_ids()) - fitted):
        path = CATALOG_DIR / "chips" / f"{chip}.yaml"
        old = re.search(r'^  source: "(.*)"$', path.read_text(encoding="utf-8").split("efficiency:")[1], re.M)
        base = re.split(r"; not yet calibrated|\. Not calibrated", old.group(1))[0].rstrip(".")
        checks = [c.case_id for c in cases if c.chip == chip]
        write_efficiency(chip, {}, f"{base}. Not calibrated: validation/calibration.csv has no MLPerf, "
                         "vendor-doc or paper case the engine simulates for this chip"
                         + (f" (checks only: {', '.join(checks)})" if checks else "") + ".")


def relative_errors(cases: list[Case], params: dict[str, float], pool: ProcessPoolExecutor) -> list[float]:
    return [p / c.value - 1 if p else math.inf for c, p in zip(cases, predictions(cases, params, pool))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="?", default=str(REPO / "validation" / "calibration.csv"))
    parser.add_argument("--dry-run", action="store_true", help="print the fit, do not write the catalog")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--family", choices=list(FAMILIES), help="fit only this family")
    args = parser.parse_args()
    cases = read_cases(args.cases)
    if not args.dry_run:
        note_uncalibrated(cases)
    with ProcessPoolExecutor(args.workers) as pool:
        for family, (chips, heirs) in FAMILIES.items():
            if args.family and family != args.family:
                continue
            chosen = fit_cases(cases, chips)
            if not chosen:
                print(f"{family}: no case to fit; catalog left as it is")
                continue
            print(f"{family} ({', '.join(chips)}): {len(chosen)} cases; elasticities >= 0.05:", flush=True)
            before = relative_errors(chosen, START, pool)
            params, by_param = fit(chosen, pool)
            after = relative_errors(chosen, params, pool)
            for case, b, a in zip(chosen, before, after):
                print(f"  {case.case_id:36s} error {b:+7.1%} -> {a:+7.1%}  (tolerance {case.tolerance:.0%})")
            medians = (statistics.median(map(abs, before)), statistics.median(map(abs, after)))
            print(f"  {family}: {describe(params)}; median |err| {medians[0]:.1%} -> {medians[1]:.1%}")
            source = provenance(family, chosen, by_param, medians)
            if args.dry_run:
                continue
            for chip in chips:
                write_efficiency(chip, render(params), source)
            for chip in heirs:
                write_efficiency(chip, render(params), f"not fitted (no case for this chip): copied from the "
                                 f"{family} fit, same silicon. {source}")


if __name__ == "__main__":
    main()
