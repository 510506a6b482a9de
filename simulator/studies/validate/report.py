"""What `infersim validate` writes: validation.csv (one row per case), report.md and a predicted-vs-measured
plot, plus the table and the summary line the CLI prints. Cases that miss are results, not errors."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simulator.config.load import find_dir, load_chip
from simulator.errors import ScenarioError
from simulator.results.outputs import claim, staged_folder
from simulator.studies.validate import coverage
from simulator.studies.validate.bounds import beats
from simulator.studies.validate.calibrate import read_cross_validation
from simulator.studies.validate.cases import read_cases
from simulator.studies.validate.html import write_validation_html
from simulator.studies.validate.predict import Outcome, simulate_all

_VALIDATION = find_dir("validation", Path(__file__).resolve().parent)
DEFAULT_CASES = (_VALIDATION or Path("validation")) / "calibration.csv"
FAMILY_ORDER = ("GPU NVIDIA", "GPU AMD", "TPU", "LPU", "wafer", "RDU")


def family(chip_id: str) -> str:
    """Hardware family of a chip: GPU <vendor>, TPU, LPU, wafer or RDU."""
    chip = load_chip(chip_id)
    return f"GPU {chip.vendor}" if chip.kind == "gpu" else {"tpu": "TPU", "lpu": "LPU", "rdu": "RDU"}.get(
        chip.kind, chip.kind)


def status(o: Outcome) -> str:
    if o.predicted is None:
        return "not simulated"
    return "within" if o.within else "miss"


def frame(outcomes: list[Outcome]) -> pd.DataFrame:
    """One row per case; the columns of validation.csv."""
    rows = []
    for o in outcomes:
        c = o.case
        rows.append({
            "case_id": c.case_id, "family": family(c.chip), "chip": c.chip, "model": c.model,
            "source_kind": c.source_kind, "mode": c.mode, "metric": c.metric, "statistic": o.statistic,
            "unit": c.unit, "measured": c.value, "predicted": o.predicted, "error": o.error,
            "abs_error": None if o.error is None else abs(o.error), "tolerance": c.tolerance,
            "within_tolerance": o.within, "status": status(o), "speed_of_light": o.bound,
            "measured_beats_light": beats(c, c.value, o.bound),
            "predicted_beats_light": beats(c, o.predicted, o.bound), "role": o.role,
            "bottleneck": _bottleneck(o), "compute_dtype": o.compute_dtype, "max_batch": o.max_batch,
            "num_requests": o.num_requests, "approximations": o.approximations,
            "not_simulated_reason": o.reason, "wall_s": round(o.wall_s, 3),
        })
    return pd.DataFrame(rows)


def _bottleneck(o: Outcome) -> str:
    """The resource with the largest share of the simulated busy time."""
    shares = {k: v for k, v in (o.shares or {}).items() if v is not None}
    return max(shares, key=shares.__getitem__) if shares else ""


@dataclass(frozen=True)
class Stats:
    cases: int
    simulated: int
    within: int
    median_abs_error: float | None
    max_abs_error: float | None


def stats(df: pd.DataFrame) -> Stats:
    errors = df["abs_error"].dropna().tolist()
    return Stats(len(df), len(errors), int(df["within_tolerance"].sum()),
                 statistics.median(errors) if errors else None, max(errors) if errors else None)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def summary_line(df: pd.DataFrame) -> str:
    s = stats(df)
    line = (f"{s.cases} cases: {s.within} within tolerance, {s.simulated - s.within} miss, "
            f"{s.cases - s.simulated} not simulated; median |error| {_pct(s.median_abs_error)}, "
            f"max {_pct(s.max_abs_error)}")
    # the figure to quote: each case predicted by coefficients fitted without it
    if "cross_validated_error" in df and df["cross_validated_error"].notna().any():
        cv = df["cross_validated_error"].astype(float)
        within = int((cv.abs() <= df["tolerance"] + 1e-12).sum())
        line += (f"; cross-validated (infersim calibrate): median |error| {_pct(float(cv.abs().median()))}, "
                 f"{within} within tolerance")
    flags = [f"{int(df[col].sum())} {what}" for col, what in (
        ("measured_beats_light", "measurements beat the speed of light"),
        ("predicted_beats_light", "predictions beat the speed of light (a bug)")) if df[col].any()]
    if "inside_band" in df:
        flags.append(coverage.coverage_line(df))
    return line + ("; " + ", ".join(flags) if flags else "")


def group_table(df: pd.DataFrame, column: str, order: list[str]) -> list[list[str]]:
    """Cases, simulated, within tolerance, median and max |error| per value of `column`."""
    rows = []
    for name in order:
        s = stats(df[df[column] == name])
        rows.append([name, str(s.cases), str(s.simulated), str(s.within), _pct(s.median_abs_error),
                     _pct(s.max_abs_error)])
    return rows


def _value(x: float | None) -> str:
    return "-" if x is None or x != x else f"{x:.4g}"


def table_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of the table the CLI prints."""
    columns = ["case", "measured", "predicted", "error", "tolerance", "within", "note"]
    rows = []
    for r in df.itertuples():
        note = (r.not_simulated_reason and f"not simulated: {r.not_simulated_reason}") or (
            r.approximations and f"approximated: {r.approximations}")
        if r.measured_beats_light:
            note = f"measurement beats the speed of light ({_value(r.speed_of_light)}) {note}"
        if r.predicted_beats_light:
            note = f"BUG: prediction beats the speed of light ({_value(r.speed_of_light)}) {note}"
        error = "-" if r.error is None or r.error != r.error else f"{r.error:+.1%}"
        rows.append([r.case_id, _value(r.measured), _value(r.predicted), error, f"{r.tolerance:.0%}",
                     {"within": "yes", "miss": "NO", "not simulated": "-"}[r.status], note.strip()])
    return columns, rows


def _markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)] + [
        "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]


def _role_order(role: str) -> tuple[bool, str]:
    return role != "fit", role


def markdown(df: pd.DataFrame, cases_file: str, plot: bool) -> str:
    lines = [f"# Validation against published measurements ({Path(cases_file).name})", "",
             summary_line(df) + ".", "",
             "Each case is simulated with the catalog's efficiencies (one set per chip, never per case); "
             "`error` is predicted / measured - 1. A case is within tolerance when |error| <= its tolerance. "
             "The speed of light is the best value physics allows the metric at nameplate bandwidth and peak "
             "(simulator/studies/validate/bounds.py).", "", "## By hardware family", ""]
    head = ["cases", "simulated", "within", "median abs error", "max abs error"]
    families = [f for f in FAMILY_ORDER if f in set(df["family"])]
    lines += _markdown_table(["family", *head], group_table(df, "family", families))
    lines += ["", "## By role", "", "`fit`: the rows `infersim calibrate` fits efficiencies on; `check`: the "
              "others (loose sources, not simulated, approximated, or mostly pipeline bubble).", ""]
    roles = sorted(set(df["role"]), key=_role_order)
    lines += _markdown_table(["role", *head], group_table(df, "role", roles))
    if "inside_band" in df:
        lines += ["", "## Parameter uncertainty", "", coverage.coverage_line(df) + ". Each case was simulated again in "
                  "draws of its chip family's coefficients (catalog/uncertainty.yaml); band_p10 / band_p90 in "
                  "validation.csv.", ""]
        lines += _markdown_table(*coverage.coverage_rows(df))
    columns, rows = table_rows(df)
    lines += ["", "## Cases", ""] + _markdown_table(columns, rows)
    approx = df[df["approximations"] != ""]
    if len(approx):
        lines += ["", "## Approximations", ""]
        lines += [f"- {r.case_id}: {r.approximations}" for r in approx.itertuples()]
    if plot:
        lines += ["", "## Predicted vs measured", "",
                  "![predicted vs measured](plots/predicted_vs_measured.png)"]
    return "\n".join(lines) + "\n"


def write_plot(df: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = df.dropna(subset=["predicted"])
    height = max(5.5, 0.16 * len(done) + 1.5)  # one readable row per case on the right
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, height), gridspec_kw={"width_ratios": [1, 1.3]})
    for name in FAMILY_ORDER:
        part = done[done["family"] == name]
        if len(part):
            left.scatter(part["measured"], part["predicted"], label=name, s=30)
    values = pd.concat([done["measured"], done["predicted"]])
    span = [values.min() / 2, values.max() * 2]
    left.plot(span, span, color="black", lw=1)
    for tol, style in ((0.15, "--"), (0.40, ":")):
        for k in (1 - tol, 1 + tol):
            left.plot(span, [x * k for x in span], color="grey", lw=0.8, ls=style)
    left.set_box_aspect(1)
    left.set(xscale="log", yscale="log", xlabel="measured (each case in its metric's unit)",
             ylabel="predicted (same unit)",
             title="predicted vs measured (lines: exact, ±15%, ±40%)")
    left.legend(fontsize=8)
    order = done.assign(ratio=done["predicted"] / done["measured"]).sort_values("ratio")
    rows = range(len(order))
    right.hlines(rows, 1 - order["tolerance"], 1 + order["tolerance"], color="lightgrey", lw=6)
    colors = ["tab:green" if w else "tab:red" for w in order["within_tolerance"]]
    right.scatter(order["ratio"], rows, c=colors, zorder=3)
    right.axvline(1, color="black", lw=0.8)
    right.set_yticks(list(rows), order["case_id"], fontsize=7)
    right.set_ylim(-0.7, len(order) - 0.3)
    right.set(xscale="log", xlabel="predicted / measured (grey: the case's tolerance)",
              title="per case (green: within tolerance)")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 0.8, not 8 x 10^-1
    right.xaxis.set_major_formatter(plain)
    right.xaxis.set_minor_formatter(plain)
    right.tick_params(axis="x", which="minor", labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def validate_file(cases_file: str | Path, out: Path, workers: int = 1, plots: bool = True,
                  uncertainty: int | None = None, families: set[str] | None = None, seed: int = 0,
                  skip: set[str] | None = None) -> pd.DataFrame:
    """Read the cases (ScenarioError when malformed), simulate them all, write validation.csv, report.md and
    the plot into `out`; return the table. `uncertainty` N: also each case in N parameter draws, its p10-p90
    band and whether the measurement is inside (coverage.py); `families`: only the cases of those
    uncertainty families (catalog/uncertainty.yaml); `skip`: case ids left out."""
    from simulator.config.uncertainty import load_uncertainty
    from simulator.studies.bands import check_draws

    check_draws(uncertainty)
    cases = read_cases(cases_file)
    if skip:
        unknown = sorted(skip - {c.case_id for c in cases})
        if unknown:
            raise ScenarioError("--skip", f"{', '.join(unknown)}: no such case in {cases_file}")
        cases = [c for c in cases if c.case_id not in skip]
    spread = load_uncertainty() if uncertainty is not None or families is not None else None
    if families is not None and spread is not None:
        known = {*spread.families, "uncalibrated"}
        if not families <= known:
            raise ScenarioError("--family", f"{', '.join(sorted(families - known))} is not one of: "
                                f"{', '.join(sorted(known))}")
        cases = [c for c in cases if spread.family_of(c.chip)[0] in families]
    with claim(out, NAMES):  # checked before simulating; one writer at a time
        outcomes = simulate_all(cases, workers=workers)
        df = frame(outcomes)
        cross = read_cross_validation(cases_file)
        if cross:
            df["cross_validated_error"] = [cross.get(case_id) for case_id in df["case_id"]]
        if uncertainty is not None and spread is not None:
            draws = coverage.draw_predictions(cases, outcomes, spread, uncertainty, seed, workers)
            df = coverage.with_bands(df, draws, spread)
        with staged_folder(out, NAMES) as folder:  # the previous folder or the new one, whole
            df.to_csv(folder / "validation.csv", index=False)
            plot = plots and df["predicted"].notna().any()
            if plot:
                write_plot(df, folder / "plots" / "predicted_vs_measured.png")
            (folder / "report.md").write_text(markdown(df, str(cases_file), plot), encoding="utf-8")
            if plots:
                write_html(folder / "report.html", df, str(cases_file))
    return df


NAMES = frozenset({"validation.csv", "report.md", "plots", "report.html"})  # what a validation's folder holds


def write_html(path: Path, df: pd.DataFrame, cases_file: str) -> None:
    families = [f for f in FAMILY_ORDER if f in set(df["family"])]
    write_validation_html(path, df, cases_file, summary_line(df), families, group_table(df, "family", families),
                          table_rows(df))


def rebuild(folder: Path) -> Path:
    """report.html of a validation folder from its validation.csv (`infersim report DIR`)."""
    df = pd.read_csv(folder / "validation.csv")
    for column in ("approximations", "not_simulated_reason"):
        df[column] = df[column].fillna("")
    path = folder / "report.html"
    write_html(path, df, str(folder / "validation.csv"))
    return path
