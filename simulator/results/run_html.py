"""A run's report.html: the headline table, the bottleneck in plain words, and interactive charts of what the
PNG plots show (latency CDFs, throughput and batch size over time, where the busy time went, link
utilisation, memory tiers' bandwidth use). Built from the run's own tables, so `infersim report DIR` rebuilds it from a results folder.

Long runs stay light: a CDF is drawn through at most 1,000 quantiles, series over time as means over at most
2,000 time bins, the link heatmap over the 40 busiest links and at most 400 time columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.results import html
from simulator.results.report import bottleneck_words, headline
from simulator.results.trace import Columns

HTML_NAME = "report.html"
CDF_POINTS, TIME_BINS, LINK_ROWS, LINK_COLUMNS = 1_000, 2_000, 40, 400
LATENCIES = (("ttft_s", "time to first token (TTFT)", 1e3, "ms"), ("tpot_s", "time per output token (TPOT)", 1e3,
             "ms"), ("e2e_s", "end-to-end latency", 1.0, "s"))
RESOURCES = {"compute": "#4c72b0", "memory": "#dd8452", "network": "#55a868", "overhead": "#8c8c8c",
             "bubble": "#c44e52"}


def page_title(summary: dict[str, Any]) -> str:
    return f"{summary['scenario']}: {summary['model']} on {summary['chips']} x {summary['chip']}"


def write_run_html(path: Path, summary: dict[str, Any], requests: pd.DataFrame, iterations: Columns,
                   links: pd.DataFrame, description: str = "", memory: pd.DataFrame | None = None) -> None:
    html.write(path, page_title(summary), parts(summary, requests, iterations, links, description, memory))


def parts(s: dict[str, Any], requests: pd.DataFrame, it: Columns, links: pd.DataFrame,
          description: str, memory: pd.DataFrame | None = None) -> list[str]:
    plan = s.get("plan", {})
    out = [html.paragraph(description.strip())] if description.strip() else []
    if s["sim"].get("interrupted"):
        out.append(html.paragraph(f"Interrupted at {s['sim']['simulated_s']:.4g} simulated seconds: a partial "
                                  "result (requests not done by then count as in flight).", "lead"))
    out.append(html.paragraph(bottleneck_words(s), "lead"))
    if plan:
        out.append(html.paragraph(
            f"Seed {s['seed']}. Tensor parallel {plan['tensor_parallel']} x pipeline {plan['pipeline_parallel']} "
            f"(expert parallel {plan['expert_parallel']}) x {plan['replicas']} replicas; weights "
            f"{plan['weights_dtype']}, KV-cache {plan['kv_dtype']} in {plan['memory_tier']}, "
            f"{plan['weight_bytes_per_chip'] / 1e9:.1f} GB of weights per chip.", "note"))
    out += [html.heading("Headline"), html.table(["metric", "value"], [list(row) for row in headline(s)])]
    out += [html.heading("Latency"), html.table(
        ["metric", "mean", "p50", "p90", "p99"],
        [[name, *(None if s[key][q] is None else s[key][q] * scale for q in ("mean", "p50", "p90", "p99"))]
         for key, name, scale in (("ttft_s", "TTFT (ms)", 1e3), ("tpot_s", "TPOT (ms)", 1e3),
                                  ("itl_s", "inter-token latency (ms)", 1e3), ("queue_s", "queueing (ms)", 1e3),
                                  ("e2e_s", "end-to-end (s)", 1.0)) if key in s])]
    out.append(html.figure(latency_cdfs(s, requests), height=380))
    out += [html.heading("Over time"), html.figure(over_time(s, it), height=520)]
    out += [html.heading("Where the busy time went"), html.figure(breakdown(s), height=360)]
    if memory is not None and not memory.empty:
        out += [html.heading("Memory tiers"), html.figure(memory_over_time(memory), height=360)]
    if not links.empty:
        out += [html.heading("Links"), html.figure(link_heatmap(s, links), height=min(1200, 160 + 18 * min(
            LINK_ROWS, links["link"].nunique())))]
    out.append(html.paragraph("Every number: summary.json (definitions in simulator/results/summary.py), "
                              "requests.parquet, iterations.parquet, links.parquet. Timeline: infersim run --trace.",
                              "note"))
    return out


def cdf(values: np.ndarray, most: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(value, fraction of requests at or below it), through at most `most` quantiles."""
    values = np.sort(values[np.isfinite(values)])
    if values.size <= most:
        return values, np.arange(1, values.size + 1) / max(values.size, 1)
    fractions = np.linspace(1 / values.size, 1.0, most)
    return np.quantile(values, fractions, method="inverted_cdf"), fractions


def latency_cdfs(s: dict[str, Any], requests: pd.DataFrame) -> html.Figure:
    done = requests[requests["status"] == "completed"]
    data, layout = [], {"title": html.title("Latency distributions (CDF over completed requests)"),
                        "showlegend": False}
    for i, (column, name, scale, unit) in enumerate(LATENCIES, start=1):
        x, y = cdf(done[column].to_numpy(dtype=np.float64))
        data.append({"type": "scatter", "mode": "lines", "name": name, "x": (x * scale).tolist(), "y": y.tolist(),
                     "xaxis": f"x{i}", "yaxis": f"y{i}",
                     "hovertemplate": f"{name}: %{{x:.4g}} {unit}<br>fraction of requests: %{{y:.3f}}<extra></extra>"})
        lo, hi = (i - 1) / 3 + 0.04, i / 3 - 0.02
        layout[f"xaxis{i}"] = html.axis(f"{name} ({unit})", domain=[lo, hi], anchor=f"y{i}")
        layout[f"yaxis{i}"] = html.axis("fraction of requests" if i == 1 else "", anchor=f"x{i}", range=[0, 1.02])
    return {"data": data, "layout": layout}


def _binned(t: np.ndarray, values: np.ndarray, span: float, bins: int, mean: bool) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0.0, span, bins + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    sums = np.bincount(which, weights=values, minlength=bins)
    if not mean:
        return edges[:-1], sums / np.diff(edges)
    counts = np.bincount(which, minlength=bins)
    keep = counts > 0
    return edges[:-1][keep], sums[keep] / counts[keep]


def over_time(s: dict[str, Any], it: Columns) -> html.Figure:
    """Output tokens/s (per time bin) above, batch size (mean per bin, or every iteration) below."""
    span = float(s["sim"]["simulated_s"] or 1.0)
    data: list[dict[str, Any]] = []
    if len(it):
        start, duration = np.asarray(it["start_s"]), np.asarray(it["duration_s"])
        bins = int(min(TIME_BINS, max(20, len(it) // 20)))
        tx, rate = _binned(start + duration, np.asarray(it["output_tokens"], dtype=np.float64), span, bins, False)
        data.append({"type": "scatter", "mode": "lines", "line": {"shape": "hv"}, "name": "output tokens/s",
                     "x": tx.tolist(), "y": rate.tolist(), "xaxis": "x", "yaxis": "y",
                     "hovertemplate": "t = %{x:.4g} s<br>%{y:.4g} output tokens/s<extra></extra>"})
        batch = np.asarray(it["batch_size"], dtype=np.float64)
        if len(it) <= TIME_BINS:
            bx, by = start, batch
        else:
            bx, by = _binned(start, batch, span, TIME_BINS, True)
        data.append({"type": "scatter", "mode": "lines", "name": "batch size", "x": np.asarray(bx).tolist(),
                     "y": np.asarray(by).tolist(), "xaxis": "x", "yaxis": "y2", "line": {"width": 1},
                     "hovertemplate": "t = %{x:.4g} s<br>batch size %{y:.3g}<extra></extra>"})
    layout = {"title": html.title("Throughput and batch size over simulated time"),
              "xaxis": html.axis("simulated time (s)", anchor="y2"),
              "yaxis": html.axis("output tokens/s", domain=[0.55, 1.0]),
              "yaxis2": html.axis("batch size (requests, mean per bin)", domain=[0.0, 0.42], anchor="x"),
              "legend": {"orientation": "h", "y": 1.08, "x": 1, "xanchor": "right"}}
    return {"data": data, "layout": layout}


def breakdown(s: dict[str, Any]) -> html.Figure:
    share = {k: (v or 0.0) for k, v in s["bottleneck_share"].items()}
    data = [{"type": "bar", "x": list(share), "y": list(share.values()),
             "marker": {"color": [RESOURCES.get(k, "#999") for k in share]},
             "text": [f"{v:.1%}" for v in share.values()], "textposition": "outside",
             "hovertemplate": "%{x}: %{y:.1%} of busy time<extra></extra>"}]
    layout = {"title": html.title("Where the iterations' busy time went"),
              "xaxis": html.axis("resource bounding the time"),
              "yaxis": html.axis("share of busy time", range=[0, 1.1], tickformat=".0%"), "showlegend": False}
    return {"data": data, "layout": layout}


def link_heatmap(s: dict[str, Any], links: pd.DataFrame) -> html.Figure:
    table = links.pivot(index="link", columns="bucket_start_s", values="utilization")
    busiest = table.mean(axis=1).sort_values(ascending=False).index[:LINK_ROWS]
    table = table.loc[busiest]
    values, times = table.to_numpy(), table.columns.to_numpy(dtype=np.float64)
    if values.shape[1] > LINK_COLUMNS:  # mean over groups of adjacent buckets
        groups = np.array_split(np.arange(values.shape[1]), LINK_COLUMNS)
        values = np.stack([values[:, g].mean(axis=1) for g in groups], axis=1)
        times = np.array([times[g[0]] for g in groups])
    data = [{"type": "heatmap", "z": np.round(values, 5).tolist(), "x": times.tolist(), "y": list(table.index),
             "zmin": 0, "zmax": 1, "colorscale": "Viridis", "colorbar": {"title": {"text": "utilisation"}},
             "hovertemplate": "%{y}<br>t = %{x:.4g} s<br>utilisation %{z:.1%}<extra></extra>"}]
    layout = {"title": html.title(f"Link utilisation over time (busiest {len(table)} of "
                                  f"{links['link'].nunique()} links)"),
              "xaxis": html.axis("simulated time (s)"), "yaxis": html.axis("link", autorange="reversed")}
    return {"data": data, "layout": layout}


def memory_over_time(memory: pd.DataFrame) -> html.Figure:
    """Each tier's share of its achievable bandwidth per time bucket (memory.parquet), one line per tier."""
    data = []
    for tier, rows in memory.groupby("tier", sort=False):
        role = rows["role"].iloc[0]
        name = f"{str(tier).upper()}" + (" (streamed weights)" if role == "streamed" else "")
        data.append({"type": "scatter", "mode": "lines", "line": {"shape": "hv"}, "name": name,
                     "x": rows["bucket_start_s"].tolist(), "y": np.round(rows["utilization"], 5).tolist(),
                     "hovertemplate": f"{name}<br>t = %{{x:.4g}} s<br>%{{y:.1%}} of achievable bandwidth"
                                      "<extra></extra>"})
    layout = {"title": html.title("Memory tiers: bandwidth used over time (all chips)"),
              "xaxis": html.axis("simulated time (s)"),
              "yaxis": html.axis("share of achievable bandwidth", range=[0, 1.05], tickformat=".0%"),
              "legend": {"orientation": "h", "y": 1.1, "x": 1, "xanchor": "right"}}
    return {"data": data, "layout": layout}


def memory_from_folder(folder: Path) -> pd.DataFrame | None:
    """memory.parquet of a results folder, or None for a folder written before it existed."""
    path = folder / "memory.parquet"
    return pd.read_parquet(path) if path.is_file() else None


PAGE_COLUMNS = ("start_s", "duration_s", "output_tokens", "batch_size")  # of iterations.parquet, for the page


def from_folder(folder: Path, columns: tuple[str, ...] = PAGE_COLUMNS
                ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, requests, iterations with `columns` only: a long run's table is large, links) of a run's
    results folder, for `infersim report`."""
    import json

    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    requests = pd.read_parquet(folder / "requests.parquet")
    iterations = pd.read_parquet(folder / "iterations.parquet", columns=list(columns))
    links = pd.read_parquet(folder / "links.parquet")
    return summary, requests, iterations, links
