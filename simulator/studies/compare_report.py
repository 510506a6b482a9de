"""A comparison's outputs: compare.parquet and compare.csv, Pareto plots, report.md with a table per design.

The Pareto plots put the decode speed one user sees (tokens/s per user) on x and what the operator gets
(output tokens/s per chip, per kW of nameplate power, output tokens per dollar) on y: one line per design
through its concurrency values, and a ring around the points no other point beats on both axes. A design
whose chip's efficiencies are assumed family defaults, not calibrated (`efficiency_calibrated` false), is
marked with a dagger in the tables and the plot legends, and footnoted.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from simulator.studies import compare_bands
from simulator.studies.points import atomic_write, pareto_front

if TYPE_CHECKING:
    from simulator.config.studies import CompareSpec

X = "tokens_per_s_per_user"
ASSUMED = "\u2020"  # dagger: the design's chip has uncalibrated (assumed) efficiencies
ASSUMED_NOTE = (f"{ASSUMED} efficiencies: assumed family defaults, not calibrated on measurements (the chip's "
                "catalog `efficiency.source`): the marked designs' magnitudes are not validated.")
PARETO = {  # plot file -> (column, axis label)
    "pareto_per_chip.png": ("output_tokens_per_s_per_chip", "output tokens/s per chip"),
    "pareto_per_dollar.png": ("output_tokens_per_usd", "output tokens per USD"),
    "pareto_per_kw.png": ("output_tokens_per_s_per_kw", "output tokens/s per kW (nameplate)"),
}
COLUMNS = {  # report column -> (table column, scale)
    "concurrency": ("concurrency", 1), "tok/s/user": (X, 1), "tok/s total": ("output_tokens_per_s", 1),
    "tok/s/chip": ("output_tokens_per_s_per_chip", 1), "tok/s/kW": ("output_tokens_per_s_per_kw", 1),
    "tokens/USD": ("output_tokens_per_usd", 1), "TTFT p50 ms": ("ttft_s.p50", 1e3),
    "TTFT p99 ms": ("ttft_s.p99", 1e3), "TPOT p50 ms": ("tpot_s.p50", 1e3),
    "TPOT p99 ms": ("tpot_s.p99", 1e3), "J/token": ("energy_j_per_output_token", 1),
    "mean batch": ("batch.mean", 1), "bottleneck": ("bottleneck", 1),
}


# what a comparison's folder holds
NAMES = frozenset({"compare.parquet", "compare.csv", "report.md", "plots", "report.html", "compare_draws.parquet",
                   "ranking.csv"})


def write(out: Path, spec: CompareSpec, file: Path, df: pd.DataFrame, plots: bool, png: bool = False,
          draws: pd.DataFrame | None = None) -> list[str]:
    """Tables first (so a plotting problem loses nothing), then report.md (and with `plots` and `png` the PNG
    plots/); with parameter draws, also compare_draws.parquet and ranking.csv. Returns the words on how
    robust the conclusions are (`uncertainty_lines`; none without draws)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "compare.parquet", lambda p: df.to_parquet(p, index=False))
    atomic_write(out / "compare.csv", lambda p: df.to_csv(p, index=False))
    words: list[str] = []
    if draws is not None:
        ranks = compare_bands.ranking(draws)
        atomic_write(out / "compare_draws.parquet", lambda p: draws.to_parquet(p, index=False))
        atomic_write(out / "ranking.csv", lambda p: ranks.to_csv(p, index=False))
        words = uncertainty_lines(df, draws, ranks)
    ok = df[df["status"] == "ok"]
    pictures = _plots(out / "plots", ok, list(dict.fromkeys(df["design"]))) if plots and png and len(ok) else []
    text = markdown(spec, file, df, pictures, words)
    atomic_write(out / "report.md", lambda p: p.write_text(text, encoding="utf-8"))
    return words


# ---------------------------------------------------------------- plots

def _plots(folder: Path, ok: pd.DataFrame, designs: list[str]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, (column, label) in PARETO.items():
        fig = _pareto_figure(plt, ok, designs, column, label)
        fig.tight_layout()
        atomic_write(folder / name, partial(fig.savefig, dpi=110, format="png"))
        plt.close(fig)
        names.append(name)
    return names


def front(ok: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows no other row beats on both tokens/s per user and `column` (rows missing either left out)."""
    rows = ok.dropna(subset=[X, column])
    return rows[pareto_front(rows[X].to_numpy(float), rows[column].to_numpy(float))] if len(rows) else rows


def _pareto_figure(plt: Any, ok: pd.DataFrame, designs: list[str], column: str, label: str) -> Any:
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab20" if len(designs) > 10 else "tab10")
    missing: list[str] = []
    failed: list[str] = []
    for i, design in enumerate(designs):
        rows = ok[ok["design"] == design].dropna(subset=[X, column]).sort_values("concurrency")
        if rows.empty:
            (missing if (ok["design"] == design).any() else failed).append(design)
            continue
        ax.plot(rows[X], rows[column], marker="osD^v"[i % 5], ms=4, color=colors(i % colors.N),
                label=labelled(design, rows))
        for _, r in rows.iterrows():
            ax.annotate(str(r["concurrency"]), (r[X], r[column]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    best = front(ok, column)
    ax.scatter(best[X], best[column], s=110, facecolors="none", edgecolors="black", linewidths=1.2,
               label="Pareto-optimal", zorder=3)
    _log_if_wide(ax, ok, column)
    ax.set_xlabel("tokens/s per user (1 / TPOT p50)")
    ax.set_ylabel(label)
    notes = [f"{label} against per-user speed; labels: concurrency per replica"]
    notes += [f"n/a (no figure in the catalog): {', '.join(missing)}"] if missing else []
    notes += [f"did not run: {', '.join(failed)}"] if failed else []
    notes += [f"{ASSUMED}: efficiencies assumed, not calibrated"] if not assumed(ok).empty else []
    ax.set_title("\n".join(notes), fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    return fig


def _log_if_wide(ax: Any, ok: pd.DataFrame, column: str) -> None:
    """Log axes when values span more than a decade, as they do between one user and hundreds."""
    for values, setter in ((ok[X], ax.set_xscale), (ok[column], ax.set_yscale)):
        v = pd.to_numeric(values, errors="coerce").dropna()
        v = v[v > 0]
        if len(v) and v.max() / v.min() > 10:
            setter("log")


# ---------------------------------------------------------------- report.md

def fmt(value: Any, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value * scale
        return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"
    return str(value)


def assumed(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of designs whose chip's efficiencies are assumed defaults (none when the column is absent)."""
    if "efficiency_calibrated" not in df:
        return df.iloc[0:0]
    return df[df["efficiency_calibrated"].eq(False)]


def labelled(design: str, rows: pd.DataFrame) -> str:
    """The design's name, with the dagger when its efficiencies are not calibrated."""
    return f"{design} {ASSUMED}" if len(assumed(rows)) else design


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def failure(status: str, error: Any) -> str:
    """An input the physics refuses 'does not run'; a crash is a bug in infersim and says so."""
    return f"does not run: {error}" if status == "error" else f"crashed (a bug in infersim): {error}"


def reason(rows: pd.DataFrame) -> str | None:
    """Why a design has no result at all (its first point's one-line error), or None when some point ran."""
    if (rows["status"] == "ok").any():
        return None
    return failure(rows["status"].iloc[0], rows["error"].iloc[0])


def summary_rows(df: pd.DataFrame, failed: bool = True) -> tuple[list[str], list[list[str]]]:
    """One line per design: per-user speed at the lowest and highest concurrency that ran, and what the
    operator gets at the highest. Designs without a result are left out unless `failed`."""
    header = ["design", "chips", "tok/s/user (lowest c)", "tok/s/user (highest c)", "tok/s/chip", "tok/s/kW",
              "tokens/USD", "J/token", "bottleneck (lowest -> highest c)"]
    lines = []
    for design, rows in df.groupby("design", sort=False):
        why = reason(rows)
        if why:
            if failed:
                lines.append([labelled(design, rows), fmt(rows["chips"].iloc[0]), why] + [""] * (len(header) - 3))
            continue
        ran = rows[rows["status"] == "ok"].sort_values("concurrency")
        low, high = ran.iloc[0], ran.iloc[-1]
        lines.append([labelled(design, rows), fmt(high["chips"]), f"{fmt(low[X])} (c={low['concurrency']})",
                      f"{fmt(high[X])} (c={high['concurrency']})", fmt(high["output_tokens_per_s_per_chip"]),
                      fmt(high["output_tokens_per_s_per_kw"]), fmt(high["output_tokens_per_usd"]),
                      fmt(high["energy_j_per_output_token"]), f"{low['bottleneck']} -> {high['bottleneck']}"])
    return header, lines


def _design_section(design: str, rows: pd.DataFrame, spec: CompareSpec) -> list[str]:
    first = rows.iloc[0]
    about = next(d.description for d in spec.designs if d.name == design).strip()
    plan = (f"{first['chips']} x {first['chip']}: TP {first['tensor_parallel']} x PP "
            f"{first['pipeline_parallel']} (EP {first['expert_parallel']}) x {first['replicas']} replicas, "
            f"weights {first['weights_dtype']}; cost basis: "
            f"{first['cost_basis'] if isinstance(first['cost_basis'], str) else 'n/a (no price or power)'}.")
    if len(assumed(rows)):
        plan += (f" {ASSUMED} Efficiencies of {first['chip']}: assumed family defaults, not calibrated; these "
                 "magnitudes are not validated against measurements.")
    lines = [f"## {design}", ""] + ([about, ""] if about else []) + [plan, ""]
    why = reason(rows)
    if why:
        return lines + [f"**{why}**", ""]
    body = []
    for _, r in rows.iterrows():
        if r["status"] != "ok":
            body.append([str(r["concurrency"]), failure(r["status"], r["error"])] + [""] * (len(COLUMNS) - 2))
            continue
        body.append([fmt(r.get(col), scale) for col, scale in COLUMNS.values()])
    return lines + _table(list(COLUMNS), body) + [""]


LEGEND = ("tok/s/user = 1 / TPOT p50 (the decode speed one user sees). tok/s/chip counts a wafer as one "
          "chip. tok/s/kW: output tokens/s over the chips' nameplate power (TDP). tokens/USD = 1e6 / cost "
          "per million output tokens, on the design's cost basis (rent per chip-hour, or purchase amortised "
          "plus energy: compare bases with care). n/a: the catalog has no figure (power, price) for that "
          "chip. bottleneck: the largest share of busy time.")


def uncertainty_lines(df: pd.DataFrame, draws: pd.DataFrame, ranks: pd.DataFrame) -> list[str]:
    """The paragraph that says how the draws were made, then one sentence per conclusion."""
    n = int(draws["draw"].max()) + 1 if len(draws) else 0
    return [f"Every point that ran was simulated again in {n} draws of its chip family's coefficients "
            "(catalog/uncertainty.yaml; the same requests in every draw, designs of one family paired, families "
            f"independent). A conclusion is robust when it holds in at least {compare_bands.ROBUST:.0%} of draws; "
            "P(A beats B) for every pair, metric and concurrency: ranking.csv; bands (band.<column>.p10/p50/p90): "
            "compare.parquet.", *compare_bands.sentences(df, draws, ranks)]


def markdown(spec: CompareSpec, file: Path, df: pd.DataFrame, pictures: list[str],
             uncertainty: list[str] | None = None) -> str:
    workload = spec.workload if isinstance(spec.workload, str) else spec.workload.get("name") or "inline"
    lines = [f"# Compare {spec.name}", ""]
    if spec.description.strip():
        lines += [spec.description.strip(), ""]
    lines += [(f"Model `{spec.model}`, workload `{workload}` as closed-loop users (think time "
               f"{spec.think_time:g} s): concurrency {', '.join(map(str, spec.concurrency))} users per "
               f"replica, {spec.requests_per_user} requests per user (at least {spec.min_requests}); seed "
               f"{spec.seed}, the same requests for every design. File `{file}`; every metric of every "
               "point: `compare.parquet`, `compare.csv`."), "", LEGEND, "", "## Summary", "",
              "Per-user speed at the lowest and highest concurrency that ran; the others at the highest.", ""]
    lines += _table(*summary_rows(df)) + [""]
    if len(assumed(df)):
        lines += [ASSUMED_NOTE, ""]
    if uncertainty:
        lines += ["## How robust the conclusions are", "", uncertainty[0], ""] + [f"- {s}" for s in uncertainty[1:]]
        lines += [""]
    for design, rows in df.groupby("design", sort=False):
        lines += _design_section(design, rows, spec)
    if pictures:
        lines += ["## Pareto plots", ""]
        for name in pictures:
            column, label = PARETO[name]
            best = front(df[df["status"] == "ok"], column).sort_values(X)
            points = "; ".join(f"{labelled(r['design'], best.loc[[i]])} c={r['concurrency']}"
                               for i, r in best.iterrows()) or "none"
            lines += [f"![{label}](plots/{name})", "",
                      f"Pareto-optimal ({label} against tok/s/user): {points}.", ""]
    return "\n".join(lines) + "\n"
