"""A sweep's report.html: each metric against the x axis (a line per combination of the other axes), the
Pareto front (hover a point for its axis values; the front numbered, its key in a table), the results table
with human column names, and the failed points. `infersim report DIR` rebuilds it from sweep.parquet (axes: the
columns before `seed`; metrics: the sweep file's when written by the sweep, the defaults when rebuilt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from simulator.results import html
from simulator.results.labels import label, short
from simulator.studies.points import front_rows

DEFAULT_METRICS = ("throughput.output_tokens_per_s_per_chip", "tpot_s.p50", "ttft_s.p99")
DEFAULT_PARETO = ("interactivity.tokens_per_s_per_user", "throughput.output_tokens_per_s_per_chip")


def axes_of(df: pd.DataFrame) -> list[str]:
    """The axis columns of a sweep table: those before `seed`."""
    columns = list(df.columns)
    return columns[:columns.index("seed")] if "seed" in columns else []


def write_sweep_html(path: Path, name: str, description: str, df: pd.DataFrame, axes: list[str],
                     metrics: list[str], x_axis: str | None, pareto: tuple[str, str], zip_groups: list[list[str]]
                     ) -> None:
    ok = df[df["status"] == "ok"]
    counts = df["status"].value_counts()
    parts = [html.paragraph(description.strip())] if description.strip() else []
    parts.append(html.paragraph(
        f"{len(df)} points over {', '.join(short(a) for a in axes) or 'no axis'}: ok {counts.get('ok', 0)}, "
        f"error {counts.get('error', 0)}, crash {counts.get('crash', 0)}. Every metric of every point: "
        "sweep.parquet, sweep.csv.", "lead"))
    metrics = [m for m in metrics if m in df.columns]
    if len(ok) and axes:
        x = x_axis or axes[0]
        partners = next((list(g) for g in zip_groups if x in g), [x])
        groups = [a for a in axes if a not in partners]
        parts.append(html.heading("Metrics"))
        parts += [html.figure(metric_figure(ok, x, groups, m), height=420) for m in metrics]
    if len(ok) and all(c in df.columns for c in pareto):
        parts += [html.heading("Pareto front"), html.figure(pareto_figure(ok, axes, *pareto), height=480)]
        best = front_rows(ok, *pareto).sort_values(pareto[0])
        parts.append(html.table(["#", *(label(a).text for a in axes), *(label(c).text for c in pareto)],
                                [[i, *(r[a] for a in axes), *(r[c] * label(c).scale for c in pareto)]
                                 for i, (_, r) in enumerate(best.iterrows(), start=1)]))
    if len(ok):
        shown = [*axes, *dict.fromkeys([*metrics, *pareto])]
        shown = [c for c in shown if c in df.columns]
        parts += [html.heading("Results"), html.table(
            [label(c).text for c in shown],
            [[_scaled(r[c], c) for c in shown] for _, r in ok.iterrows()])]
    failed = df[df["status"] != "ok"]
    if len(failed):
        parts += [html.heading("Failed points"), html.table(
            [*(label(a).text for a in axes), "status", "error"],
            [[*(r[a] for a in axes), r["status"], r["error"]] for _, r in failed.iterrows()])]
    html.write(path, f"Sweep {name}", parts)


def _scaled(value: Any, column: str) -> Any:
    return value * label(column).scale if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def metric_figure(ok: pd.DataFrame, x: str, groups: list[str], metric: str) -> html.Figure:
    numeric = pd.api.types.is_numeric_dtype(ok[x])
    y_label = label(metric)
    data = []
    for key, rows in (ok.groupby(groups, sort=False, dropna=False) if groups else [((), ok)]):
        rows = rows.sort_values(x) if numeric else rows
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{short(g)} = {v}" for g, v in zip(groups, key, strict=True)) or y_label.text
        data.append({"type": "scatter", "mode": "lines+markers", "name": name,
                     "x": [v if numeric else str(v) for v in rows[x]],
                     "y": (rows[metric].astype(float) * y_label.scale).tolist(),
                     "hovertemplate": f"{short(x)} = %{{x}}<br>{y_label.text}: %{{y:.4g}}<extra>{name}</extra>"})
    values = pd.to_numeric(ok[x], errors="coerce").dropna() if numeric else pd.Series(dtype=float)
    wide = len(values) and values.min() > 0 and values.max() / values.min() >= 16
    x_axis = html.axis(label(x).text, type="log" if wide else "-" if numeric else "category")
    distinct = sorted(set(values.tolist()))
    if numeric and len(distinct) <= 12:  # ticks at the swept values, not at 2 and 5 of each decade
        x_axis.update(tickvals=distinct, ticktext=[f"{v:g}" for v in distinct])
    return {"data": data, "layout": {"title": html.title(f"{y_label.text.split(' (')[0]} against {short(x)}"),
                                     "xaxis": x_axis, "yaxis": html.axis(y_label.text),
                                     "showlegend": bool(groups)}}


def pareto_figure(ok: pd.DataFrame, axes: list[str], x: str, y: str) -> html.Figure:
    lx, ly = label(x), label(y)
    names = [" / ".join(f"{short(a)} = {r[a]}" for a in axes) for _, r in ok.iterrows()]
    best = front_rows(ok, x, y).sort_values(x)
    best_names = [" / ".join(f"{short(a)} = {r[a]}" for a in axes) for _, r in best.iterrows()]
    data = [{"type": "scatter", "mode": "markers", "name": "points", "x": (ok[x] * lx.scale).tolist(),
             "y": (ok[y] * ly.scale).tolist(), "text": names, "marker": {"color": "#999", "size": 7},
             "hovertemplate": "%{text}<br>%{x:.4g}, %{y:.4g}<extra>point</extra>"},
            {"type": "scatter", "mode": "lines+markers+text", "name": "Pareto front",
             "x": (best[x] * lx.scale).tolist(), "y": (best[y] * ly.scale).tolist(), "customdata": best_names,
             "text": [str(i) for i in range(1, len(best) + 1)], "textposition": "top right",
             "marker": {"color": "#d62728", "size": 9}, "line": {"color": "#d62728"},
             "hovertemplate": "#%{text}: %{customdata}<br>%{x:.4g}, %{y:.4g}<extra>Pareto front</extra>"}]
    return {"data": data, "layout": {"title": html.title(f"Pareto front: {ly.text.split(' (')[0]} against "
                                                         f"{lx.text.split(' (')[0]} (numbers: the table below)"),
                                     "xaxis": html.axis(lx.text), "yaxis": html.axis(ly.text)}}


def rebuild(folder: Path) -> Path:
    """report.html of a sweep folder from its sweep.parquet (default metrics and Pareto axes)."""
    df = pd.read_parquet(folder / "sweep.parquet")
    path = folder / "report.html"
    write_sweep_html(path, folder.name, "", df, axes_of(df), list(DEFAULT_METRICS), None, DEFAULT_PARETO, [])
    return path
