"""What `infersim sensitivity` writes beside sensitivity.csv: report.md (the ranking in words and as a table)
and report.html (the same table and a tornado chart per metric: each resource's % change of the metric at
x (1 - delta) and x (1 + delta), the largest on top)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from simulator.results import html
from simulator.studies.points import atomic_write

METRICS = (("tpot_s.p50", "TPOT p50", 1e3, "ms"), ("ttft_s.p50", "TTFT p50", 1e3, "ms"),
           ("throughput.output_tokens_per_s", "output tokens/s", 1.0, "tokens/s"))


def ranking_words(table: pd.DataFrame, delta: float) -> list[str]:
    """One sentence per metric: the resource that moves it most, and by how much."""
    lines = []
    for key, name, _, _ in METRICS:
        column = f"{key} elasticity"
        moved = table.dropna(subset=[column])
        moved = moved[moved[column] != 0]
        if moved.empty:
            lines.append(f"{name}: no resource moved it by +-{delta:.0%}.")
            continue
        top = moved.loc[moved[column].abs().idxmax()]
        lines.append(f"{name} moves most with {top['what']} ({top['resource']}): elasticity {top[column]:+.2f} "
                     f"(1% more {top['resource']} -> {top[column]:+.2f}% {name}).")
    return lines


def rows(table: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = ["resource", "what", *[f"elasticity of {name}" for _, name, _, _ in METRICS], "status"]
    body = [[r["resource"], r["what"], *[r[f"{key} elasticity"] for key, _, _, _ in METRICS], r["status"]]
            for _, r in table.iterrows()]
    return header, body


def tornado(table: pd.DataFrame, key: str, name: str, base: float | None, delta: float) -> html.Figure:
    """Horizontal bars of the metric's % change at the low and the high factor, largest |change| on top."""
    low, high = table[f"{key} low"], table[f"{key} high"]
    change_low = ((low / base - 1) * 100).fillna(0.0) if base else low * 0
    change_high = ((high / base - 1) * 100).fillna(0.0) if base else high * 0
    order = (change_low.abs().combine(change_high.abs(), max)).sort_values(kind="stable").index
    names = [table.at[i, "resource"] for i in order]
    data = [{"type": "bar", "orientation": "h", "name": f"x {1 - delta:g}", "y": names,
             "x": [float(change_low[i]) for i in order], "marker": {"color": "#c44e52"},
             "hovertemplate": "%{y} x " + f"{1 - delta:g}" + ": %{x:+.2f}%<extra></extra>"},
            {"type": "bar", "orientation": "h", "name": f"x {1 + delta:g}", "y": names,
             "x": [float(change_high[i]) for i in order], "marker": {"color": "#4c72b0"},
             "hovertemplate": "%{y} x " + f"{1 + delta:g}" + ": %{x:+.2f}%<extra></extra>"}]
    layout = {"title": html.title(f"{name}: % change when one resource moves by +-{delta:.0%}"),
              "barmode": "overlay", "xaxis": html.axis(f"change of {name} (%)"),
              "yaxis": html.axis("resource"), "legend": {"orientation": "h", "y": 1.1, "x": 1, "xanchor": "right"}}
    return {"data": data, "layout": layout}


def _scaled(value: float | None, scale: float) -> float | None:
    return None if value is None else value * scale


def write(folder: Path, name: str, delta: float, baseline: dict[str, float | None], table: pd.DataFrame,
          plots: bool) -> None:
    header, body = rows(table)
    words = ranking_words(table, delta)
    base_text = ", ".join(f"{label} {html.cell(_scaled(baseline[key], scale))} {unit}"
                          for key, label, scale, unit in METRICS)
    md = [f"# sensitivity of {name} (each resource x {1 - delta:g} and x {1 + delta:g})", "",
          f"Baseline: {base_text}.", "", *[f"- {w}" for w in words], "",
          "Elasticity: % change of the metric per % change of the resource (central difference).", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(html.cell(v, 3) for v in row) + " |" for row in body]
    atomic_write(folder / "report.md", lambda p: p.write_text("\n".join(md) + "\n", encoding="utf-8"))
    if not plots:
        return
    parts = [html.paragraph(f"Baseline: {base_text}.", "lead"), *[html.paragraph(w) for w in words],
             html.heading("Elasticities"), html.table(header, body),
             html.paragraph("Elasticity: % change of the metric per % change of the resource, "
                            "(m+ - m-) / (2 delta m0). Every run has the same seed, so only the hardware changes.",
                            "note")]
    for key, label, _, _ in METRICS:
        parts += [html.heading(label), html.figure(tornado(table, key, label, baseline[key], delta),
                                                   height=160 + 28 * max(1, len(table)))]
    atomic_write(folder / "report.html",
                 lambda p: html.write(p, f"sensitivity of {name}", parts))
