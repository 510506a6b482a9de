"""A sweep's results: one tidy table (sweep.parquet, sweep.csv), metric plots, the Pareto front, report.md.

The table has one row per point, in expansion order (never completion order, so that backends and resumed
runs give identical tables): the axis values under their dotted keys, seed, status (ok, error, crash),
error, key (the points/<key>.json record), `interactivity.tokens_per_s_per_user` (1 / tpot_s.p50, the
decode speed one user sees), then every summary metric flattened with dotted names (ttft_s.p99,
throughput.output_tokens_per_s, ...). Only `sim.wall_s` differs between two runs of the same sweep.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from simulator.errors import ScenarioError

if TYPE_CHECKING:
    from simulator.config.schema import SweepSpec
    from simulator.sweep import Job

INTERACTIVITY = "interactivity.tokens_per_s_per_user"


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary file and rename it, so a killed run never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'ttft_s': {'p99': 1.0}} -> {'ttft_s.p99': 1.0}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _cell(value: Any) -> Any:
    """Axis values that are mappings or lists (an inline cluster) become JSON text in the table."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def table(jobs: Sequence["Job"], records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per point in expansion order: axes, seed, status, error, key, then the summary metrics."""
    rows = []
    for job in jobs:
        record = records[job.key] if job.key else {"status": "error", "error": job.error, "summary": None}
        row = {key: _cell(value) for key, value in job.point.values.items()}
        row.update(seed=job.point.seed, status=record["status"], error=record["error"], key=job.key)
        summary = record.get("summary")
        if summary:
            tpot = (summary.get("tpot_s") or {}).get("p50")
            row[INTERACTIVITY] = 1.0 / tpot if tpot else None
            row.update({k: v for k, v in flatten(summary).items() if k != "seed"})
        rows.append(row)
    return pd.DataFrame(rows)


def _for_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns that mix types (e.g. an axis of numbers and names) are written as text."""
    out = df.copy()
    for column in out.columns:
        kinds = {type(v) for v in out[column].dropna()}
        if pd.api.types.is_object_dtype(out[column]) and len(kinds) > 1:
            out[column] = out[column].map(lambda v: None if v is None else str(v))
    return out


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both x and y (both larger-is-better)."""
    order = np.lexsort((-y, -x))  # by x descending, ties by y descending
    mask = np.zeros(len(x), dtype=bool)
    best = -np.inf
    for i in order:
        if y[i] > best:
            mask[i], best = True, y[i]
    return mask


def front_rows(ok: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows on the Pareto front of columns x and y (rows missing either are left out)."""
    rows = ok.dropna(subset=[x, y])
    return rows[pareto_front(rows[x].to_numpy(float), rows[y].to_numpy(float))]


# ---------------------------------------------------------------- files

def write(out: Path, spec: "SweepSpec", file: Path, df: pd.DataFrame, axes: list[str], plots: bool) -> None:
    """sweep.parquet and sweep.csv first (so a plotting problem loses nothing), then plots/ and report.md."""
    atomic_write(out / "sweep.parquet", lambda p: _for_parquet(df).to_parquet(p, index=False))
    atomic_write(out / "sweep.csv", lambda p: df.to_csv(p, index=False))
    ok = df[df["status"] == "ok"]
    metrics = list(spec.metrics)
    if len(ok):
        _check_columns(df, file, [(f"metrics.{i}", m) for i, m in enumerate(metrics)]
                       + [("pareto.x", spec.pareto.x), ("pareto.y", spec.pareto.y)])
    pictures = _plots(out / "plots", spec, ok, axes) if plots and len(ok) else []
    text = markdown(spec, file, df, axes, pictures)
    atomic_write(out / "report.md", lambda p: p.write_text(text, encoding="utf-8"))


def _check_columns(df: pd.DataFrame, file: Path, wanted: list[tuple[str, str]]) -> None:
    for field, name in wanted:
        if name not in df.columns:
            known = ", ".join(c for c in df.columns if "." in c and not c.startswith("utilization.links."))
            raise ScenarioError(field, f"{name!r} is not a column of the sweep table; columns: {known}",
                                str(file))


def _plots(folder: Path, spec: "SweepSpec", ok: pd.DataFrame, axes: list[str]) -> list[str]:
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
    for label, rows in (ok.groupby(groups, sort=False, dropna=False) if groups else [((), ok)]):
        rows = rows.sort_values(x) if numeric else rows
        xs = rows[x] if numeric else [order.index(v) for v in rows[x]]
        label = label if isinstance(label, tuple) else (label,)
        name = ", ".join(f"{_short(g)}={v}" for g, v in zip(groups, label, strict=True))
        ax.plot(xs, rows[metric], marker="o", label=name)
    if numeric and len(order) and min(order) > 0 and max(order) / min(order) >= 16:
        ax.set_xscale("log")
        ax.minorticks_off()
    if not numeric or len(order) <= 12:
        ax.set_xticks(order if numeric else range(len(order)), [str(v) for v in order])
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if groups:
        ax.legend(fontsize=8)
    return fig


def _pareto_figure(plt: Any, ok: pd.DataFrame, spec: "SweepSpec", axes: list[str]) -> Any:
    fig, ax = plt.subplots(figsize=(7, 4.6))
    x, y = spec.pareto.x, spec.pareto.y
    ax.scatter(ok[x], ok[y], color="0.6", s=18, label="points")
    front = front_rows(ok, x, y).sort_values(x)
    ax.plot(front[x], front[y], color="tab:red", marker="o", label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(" / ".join(str(row[a]) for a in axes), (row[x], row[y]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    if axes:
        ax.set_title("front labelled " + " / ".join(_short(a) for a in axes), fontsize=9)
    ax.set_xlabel(spec.pareto.x)
    ax.set_ylabel(spec.pareto.y)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


# ---------------------------------------------------------------- report.md

def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _md_table(df: pd.DataFrame, columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in columns) + " |" for _, row in df.iterrows()]
    return lines


def markdown(spec: "SweepSpec", file: Path, df: pd.DataFrame, axes: list[str], pictures: list[str]) -> str:
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
