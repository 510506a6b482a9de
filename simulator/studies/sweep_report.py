"""A sweep's results: one tidy table (sweep.parquet, sweep.csv), metric plots, the Pareto front, report.md.

The table has one row per point, in expansion order (never completion order, so that backends and resumed
runs give identical tables): the axis values under their dotted keys, seed, status (ok, error, crash),
error, key (the points/<key>.json record), `interactivity.tokens_per_s_per_user` (1 / tpot_s.p50, the
decode speed one user sees), then every summary metric flattened with dotted names (ttft_s.p99,
throughput.output_tokens_per_s, ...). Only `sim.wall_s` differs between two runs of the same sweep.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from simulator.errors import ScenarioError
from simulator.results.labels import label, short
from simulator.studies.points import atomic_write, front_rows
from simulator.studies.sweep_html import write_sweep_html

if TYPE_CHECKING:
    from simulator.config.studies import SweepSpec

INTERACTIVITY = "interactivity.tokens_per_s_per_user"


def _for_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix types (e.g. an axis of numbers and names) are written as text."""
    out = df.copy()
    for column in out.columns:
        kinds = {type(v) for v in out[column].dropna()}
        if pd.api.types.is_object_dtype(out[column]) and len(kinds) > 1:
            out[column] = out[column].map(lambda v: None if v is None else str(v))
    return out


# ---------------------------------------------------------------- files

NAMES = frozenset({"points", "sweep.parquet", "sweep.csv", "report.md", "plots"})  # what a sweep's folder holds


def write(out: Path, spec: SweepSpec, file: Path, df: pd.DataFrame, axes: list[str], plots: bool,
          png: bool = False) -> None:
    """sweep.parquet and sweep.csv first (so a plotting problem loses nothing), then report.md and, with
    `plots`, report.html (and with `png` the PNG plots/ too)."""
    atomic_write(out / "sweep.parquet", lambda p: _for_parquet(df).to_parquet(p, index=False))
    atomic_write(out / "sweep.csv", lambda p: df.to_csv(p, index=False))
    ok = df[df["status"] == "ok"]
    metrics = list(spec.metrics)
    if len(ok):
        _check_columns(df, file, [(f"metrics.{i}", m) for i, m in enumerate(metrics)]
                       + [("pareto.x", spec.pareto.x), ("pareto.y", spec.pareto.y)])
    pictures = _plots(out / "plots", spec, ok, axes) if plots and png and len(ok) else []
    text = markdown(spec, file, df, axes, pictures)
    atomic_write(out / "report.md", lambda p: p.write_text(text, encoding="utf-8"))
    if plots:
        atomic_write(out / "report.html", lambda p: write_sweep_html(
            p, spec.name or file.stem, spec.description, df, axes, list(spec.metrics), spec.x_axis,
            (spec.pareto.x, spec.pareto.y), [list(g) for g in spec.zip]))


def _check_columns(df: pd.DataFrame, file: Path, wanted: list[tuple[str, str]]) -> None:
    for field, name in wanted:
        if name not in df.columns:
            known = ", ".join(c for c in df.columns if "." in c and not c.startswith("utilization.links."))
            raise ScenarioError(field, f"{name!r} is not a column of the sweep table; columns: {known}",
                                str(file))


def _plots(folder: Path, spec: SweepSpec, ok: pd.DataFrame, axes: list[str]) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    if axes:
        x = spec.x_axis or axes[0]
        partners = next((list(g) for g in spec.zip if x in g), [x])
        groups = [a for a in axes if a not in partners]
        for metric in spec.metrics:
            fig = _metric_figure(plt, ok, x, groups, metric)
            names.append(_save(plt, fig, folder, f"{metric}.png"))
    names.append(_save(plt, _pareto_figure(plt, ok, spec, axes), folder, "pareto.png"))
    return names


def _save(plt: Any, fig: Any, folder: Path, name: str) -> str:
    fig.tight_layout()
    atomic_write(folder / name, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return name


def _metric_figure(plt: Any, ok: pd.DataFrame, x: str, groups: list[str], metric: str) -> Any:
    """`metric` against axis `x`, one line per combination of the other axes."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    numeric = pd.api.types.is_numeric_dtype(ok[x])
    order = list(dict.fromkeys(ok[x]))
    for values, rows in (ok.groupby(groups, sort=False, dropna=False) if groups else [((), ok)]):
        rows = rows.sort_values(x) if numeric else rows
        xs = rows[x] if numeric else [order.index(v) for v in rows[x]]
        values = values if isinstance(values, tuple) else (values,)
        name = ", ".join(f"{short(g)} = {v}" for g, v in zip(groups, values, strict=True))
        ax.plot(xs, rows[metric] * label(metric).scale, marker="o", label=name)
    if numeric and len(order) and min(order) > 0 and max(order) / min(order) >= 16:
        ax.set_xscale("log")
        ax.minorticks_off()
    if not numeric or len(order) <= 12:
        ax.set_xticks(order if numeric else range(len(order)), [str(v) for v in order])
    ax.set_xlabel(label(x).text)
    ax.set_ylabel(label(metric).text)
    ax.set_title(f"{short(metric)} against {short(x)}")
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=8)
    return fig


def _pareto_figure(plt: Any, ok: pd.DataFrame, spec: SweepSpec, axes: list[str]) -> Any:
    """Every point in grey, the front in red and numbered; the numbers' axis values in a key beside the plot
    (labels written on the plot overlapped wherever the front bunches up)."""
    x, y = spec.pareto.x, spec.pareto.y
    lx, ly = label(x), label(y)
    front = front_rows(ok, x, y).sort_values(x)
    fig, (ax, key) = plt.subplots(1, 2, figsize=(10, 4.8), gridspec_kw={"width_ratios": [2.2, 1]})
    ax.scatter(ok[x] * lx.scale, ok[y] * ly.scale, color="0.6", s=18, label="points")
    ax.plot(front[x] * lx.scale, front[y] * ly.scale, color="tab:red", marker="o", label="Pareto front")
    for i, (_, row) in enumerate(front.iterrows(), start=1):
        ax.annotate(str(i), (row[x] * lx.scale, row[y] * ly.scale), fontsize=7, xytext=(3, 3),
                    textcoords="offset points", color="tab:red")
    ax.set_title(f"Pareto front: {short(y)} against {short(x)}", fontsize=10)
    ax.set_xlabel(lx.text)
    ax.set_ylabel(ly.text)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    key.axis("off")
    lines = [f"{i}: " + ", ".join(f"{short(a)} {row[a]}" for a in axes) for i, (_, row) in
             enumerate(front.iterrows(), start=1)]
    shown = lines[:40] + ([f"... {len(lines) - 40} more in report.md"] if len(lines) > 40 else [])
    key.text(0, 1, "front points\n" + "\n".join(shown), va="top", ha="left", fontsize=7, family="monospace",
             transform=key.transAxes)
    return fig


# ---------------------------------------------------------------- report.md

def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _md_table(df: pd.DataFrame, columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for _, row in df.iterrows()]
    return lines


def markdown(spec: SweepSpec, file: Path, df: pd.DataFrame, axes: list[str], pictures: list[str]) -> str:
    counts = df["status"].value_counts()
    lines = [f"# Sweep {spec.name or file.stem}", ""]
    if spec.description.strip():
        lines += [spec.description.strip(), ""]
    lines += [f"Base scenario `{spec.base}`; {len(df)} points over {', '.join(axes) or 'no axis'}; seeds "
              f"{spec.seeds} from root {spec.seed if spec.seed is not None else 'of the base scenario'}. "
              f"ok {counts.get('ok', 0)}, error {counts.get('error', 0)}, crash {counts.get('crash', 0)}. "
              "Every metric of every point: `sweep.parquet`, `sweep.csv`.", ""]
    ok = df[df["status"] == "ok"]
    shown = [c for c in dict.fromkeys([*spec.metrics, spec.pareto.x, spec.pareto.y]) if c in df.columns]
    if len(ok):
        lines += ["## Results", ""] + _md_table(ok, [*axes, *shown]) + [""]
        rows = front_rows(ok, spec.pareto.x, spec.pareto.y)
        lines += [f"## Pareto front: {spec.pareto.y} against {spec.pareto.x}", ""]
        lines += _md_table(rows.sort_values(spec.pareto.x), [*axes, spec.pareto.x, spec.pareto.y]) + [""]
    failed = df[df["status"] != "ok"]
    if len(failed):
        lines += ["## Failed points", ""] + _md_table(failed, [*axes, "status", "error"]) + [""]
    if pictures:
        lines += ["## Plots", ""] + [f"![{name[:-4]}](plots/{name})\n" for name in pictures]
    return "\n".join(lines)
