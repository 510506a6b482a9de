"""A comparison's report.html: the summary table, the three Pareto charts (tokens/s per chip, per kW, per
dollar against tokens/s per user; a line per design through its concurrencies, Pareto-optimal points ringed,
hover for the numbers) and every point's row. `infersim report DIR` rebuilds it from compare.parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator.results import html
from simulator.studies.compare_bands import ranking
from simulator.studies.compare_report import (
    ASSUMED_NOTE,
    COLUMNS,
    LEGEND,
    PARETO,
    X,
    assumed,
    failure,
    fmt,
    front,
    labelled,
    summary_rows,
    uncertainty_lines,
)

_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


def write_compare_html(path: Path, name: str, model: str, description: str, df: pd.DataFrame,
                       draws: pd.DataFrame | None = None, words: list[str] | None = None) -> None:
    """The page; `words` on how robust the conclusions are, when already worded (else from `draws`)."""
    ok = df[df["status"] == "ok"]
    parts = [html.paragraph(description.strip())] if description.strip() else []
    parts += [html.paragraph(f"Model {model}: {df['design'].nunique()} designs at concurrencies "
                             f"{', '.join(str(c) for c in sorted(set(df['concurrency'])))} (closed-loop users per "
                             "replica). Every metric of every point: compare.parquet, compare.csv.", "lead"),
              html.paragraph(LEGEND, "note"), html.heading("Summary")]
    header, rows = summary_rows(df)
    parts.append(html.table(header, rows))
    if len(assumed(df)):
        parts.append(html.paragraph(ASSUMED_NOTE, "note"))
    if draws is not None:
        words = words or uncertainty_lines(df, draws, ranking(draws))
        parts += [html.heading("How robust the conclusions are"), html.paragraph(words[0], "note")]
        parts += [html.paragraph(line) for line in words[1:]]
    if len(ok):
        parts.append(html.heading("Pareto charts"))
        parts += [html.figure(pareto_figure(ok, column, axis_label), height=480)
                  for column, axis_label in PARETO.values()]
    parts.append(html.heading("Every point"))
    body = []
    for _, r in df.iterrows():
        if r["status"] != "ok":
            body.append([r["design"], r["concurrency"], failure(r["status"], r["error"])]
                        + [""] * (len(COLUMNS) - 2))
            continue
        body.append([labelled(r["design"], df.loc[[r.name]]), *(fmt(r.get(c), s) for c, s in COLUMNS.values())])
    parts.append(html.table(["design", *COLUMNS], body))
    html.write(path, f"Compare {name}", parts)


def pareto_figure(ok: pd.DataFrame, column: str, axis_label: str) -> html.Figure:
    data = []
    for i, design in enumerate(dict.fromkeys(ok["design"])):
        rows = ok[ok["design"] == design].dropna(subset=[X, column]).sort_values("concurrency")
        if rows.empty:
            continue
        data.append({"type": "scatter", "mode": "lines+markers+text", "name": labelled(design, rows),
                     "x": rows[X].astype(float).tolist(), "y": rows[column].astype(float).tolist(),
                     "text": [str(c) for c in rows["concurrency"]], "textposition": "top center",
                     "textfont": {"size": 9}, "line": {"color": _COLORS[i % len(_COLORS)]},
                     "hovertemplate": (f"{design}<br>concurrency %{{text}}<br>%{{x:.4g}} tokens/s per user<br>"
                                       f"%{{y:.4g}} {axis_label}<extra></extra>")})
    best = front(ok, column)
    data.append({"type": "scatter", "mode": "markers", "name": "Pareto-optimal", "x": best[X].astype(float).tolist(),
                 "y": best[column].astype(float).tolist(), "hoverinfo": "skip",
                 "marker": {"size": 16, "color": "rgba(0,0,0,0)", "line": {"color": "black", "width": 1.5}}})
    layout = {"title": html.title(f"{axis_label} against tokens/s per user (labels: concurrency per replica)"),
              "xaxis": html.axis("tokens/s per user (1 / TPOT p50)", type=_scale(ok[X])),
              "yaxis": html.axis(axis_label, type=_scale(ok[column]))}
    return {"data": data, "layout": layout}


def _scale(values: pd.Series) -> str:
    """Log when the values span more than a decade, as they do between one user and hundreds."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    v = v[v > 0]
    return "log" if len(v) and v.max() / v.min() > 10 else "linear"


def rebuild(folder: Path) -> Path:
    df = pd.read_parquet(folder / "compare.parquet")
    model = str(df["model"].iloc[0]) if "model" in df.columns and len(df) else "?"
    path = folder / "report.html"
    draws = pd.read_parquet(folder / "compare_draws.parquet") if (folder / "compare_draws.parquet").is_file() else None
    write_compare_html(path, folder.name.removeprefix("compare-"), model, "", df, draws)
    return path
