"""The validation's report.html: the summary line, errors by hardware family, predicted against measured
(log-log, a colour per family, lines at exact, +-15% and +-40%), each case's predicted / measured ratio against
its tolerance, and the cases table (validate/report.py writes it; `infersim report DIR` rebuilds it from
validation.csv)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator.results import html
from simulator.studies.validate.coverage import coverage_rows


def write_validation_html(path: Path, df: pd.DataFrame, cases_file: str, summary: str, families: list[str],
                          family_rows: list[list[str]], cases: tuple[list[str], list[list[str]]]) -> None:
    """`summary`, `family_rows` and `cases` (columns, rows) as report.py words them for report.md and the CLI;
    `families` in the order to colour them."""
    done = df.dropna(subset=["predicted"])
    parts = [html.paragraph(summary + ".", "lead"),
             html.paragraph("Each case is simulated with the catalog's efficiencies (one set per chip, never per "
                            "case); error = predicted / measured - 1; a case is within tolerance when |error| <= "
                            "its tolerance.", "note"),
             html.heading("By hardware family")]
    parts.append(html.table(["family", "cases", "simulated", "within", "median abs error", "max abs error"],
                            family_rows))
    if "inside_band" in df:  # validate --uncertainty: the p10-p90 coverage per family
        parts += [html.heading("Measured inside the predicted p10-p90 band"), html.table(*coverage_rows(df))]
    if len(done):
        parts += [html.heading("Predicted against measured"), html.figure(scatter(done, families), height=560),
                  html.figure(ratios(done), height=max(420, 120 + 16 * len(done)))]
    parts += [html.heading("Cases"), html.table(*cases)]
    html.write(path, f"Validation against published measurements ({Path(cases_file).name})", parts)


def scatter(done: pd.DataFrame, families: list[str]) -> html.Figure:
    data = []
    for family in families:
        part = done[done["family"] == family]
        if len(part):
            data.append({"type": "scatter", "mode": "markers", "name": family,
                         "x": part["measured"].astype(float).tolist(), "y": part["predicted"].astype(float).tolist(),
                         "text": [f"{c} ({m}, {u})" for c, m, u in zip(part["case_id"], part["metric"], part["unit"])],
                         "marker": {"size": 9},
                         "hovertemplate": "%{text}<br>measured %{x:.4g}<br>predicted %{y:.4g}<extra></extra>"})
    values = pd.concat([done["measured"], done["predicted"]]).astype(float)
    lo, hi = float(values.min()) / 2, float(values.max()) * 2
    for k, dash, name in ((1.0, "solid", "exact"), (0.85, "dash", "±15%"), (1.15, "dash", "+15%"),
                          (0.6, "dot", "±40%"), (1.4, "dot", "+40%")):
        data.append({"type": "scatter", "mode": "lines", "name": name, "x": [lo, hi], "y": [lo * k, hi * k],
                     "line": {"color": "black" if k == 1 else "#999", "dash": dash, "width": 1},
                     "hoverinfo": "skip", "showlegend": k in (1.0, 0.85, 0.6)})
    return {"data": data, "layout": {
        "title": html.title("Predicted against measured (lines: exact, +-15%, +-40%)"),
        "xaxis": html.axis("measured (each case in its metric's unit: tokens/s, s, ...)", type="log"),
        "yaxis": html.axis("predicted (same unit)", type="log")}}


def ratios(done: pd.DataFrame) -> html.Figure:
    order = done.assign(ratio=done["predicted"].astype(float) / done["measured"].astype(float)).sort_values("ratio")
    cases = order["case_id"].tolist()
    within = order["within_tolerance"].astype(bool)
    data = [{"type": "bar", "orientation": "h", "y": cases, "x": (2 * order["tolerance"]).tolist(),
             "base": (1 - order["tolerance"]).tolist(), "marker": {"color": "#e3e3e3"}, "name": "tolerance",
             "hoverinfo": "skip"},
            {"type": "scatter", "mode": "markers", "y": cases, "x": order["ratio"].tolist(),
             "name": "predicted / measured",
             "marker": {"size": 9, "color": ["#2ca02c" if w else "#d62728" for w in within]},
             "hovertemplate": "%{y}: predicted / measured = %{x:.3f}<extra></extra>"}]
    return {"data": data, "layout": {
        "title": html.title("Each case: predicted / measured (grey: its tolerance; green within, red a miss)"),
        "xaxis": html.axis("predicted / measured", type="log"),
        "yaxis": html.axis("case", type="category", tickfont={"size": 10}, automargin=True),
        "barmode": "overlay", "showlegend": False,
        "shapes": [{"type": "line", "x0": 1, "x1": 1, "yref": "paper", "y0": 0, "y1": 1,
                    "line": {"color": "black", "width": 1}}]}}
