"""Plots of one run, written as PNG files with matplotlib's Agg renderer.

Figures are made as `matplotlib.figure.Figure` objects, not through pyplot: nothing global (no backend to
select, no figure registry to close), and a run does not import pyplot's interactive machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.results.iteration_store import IterationStore


def write_plots(summary: dict[str, Any], requests: pd.DataFrame, iterations: IterationStore, links: pd.DataFrame,
                out: Path) -> None:
    """latency_cdf.png, timeline.png, breakdown.png and (when links carried traffic) links.png into `out`."""
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    req, it = requests, iterations
    done = req[req["status"] == "completed"]

    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, (column, label) in zip(axes, [("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "end-to-end")]):
        values = np.sort(done[column].dropna().to_numpy())
        if values.size:
            ax.plot(values, np.arange(1, values.size + 1) / values.size)
        ax.set_xlabel(f"{label} (s)")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary['scenario']}: latency CDFs")
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=110)

    fig = Figure(figsize=(10, 5.5))
    top, bottom = fig.subplots(2, 1, sharex=True)
    span = summary["sim"]["simulated_s"] or 1.0
    edges = np.linspace(0.0, span, 101)
    if len(it):
        counts, _ = np.histogram(it["start_s"] + it["duration_s"], bins=edges, weights=it["output_tokens"])
        top.step(edges[:-1], counts / np.diff(edges), where="post")
    top.set_ylabel("output tokens/s (per time bin)")
    top.grid(alpha=0.3)
    if len(it):
        bottom.plot(*_thinned(it["start_s"], it["batch_size"], span), lw=0.6)
    bottom.set_ylabel("batch size (requests)")
    bottom.set_xlabel("simulated time (s)")
    bottom.grid(alpha=0.3)
    fig.suptitle(f"{summary['scenario']}: throughput and batch size over time")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)

    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    share = {k: (v or 0.0) for k, v in summary["bottleneck_share"].items()}
    ax.bar(list(share), list(share.values()), color=["#4c72b0", "#dd8452", "#55a868", "#8c8c8c", "#c44e52"])
    ax.set_ylabel("share of busy time")
    ax.set_xlabel("resource bounding the time")
    ax.set_ylim(0, 1)
    ax.set_title("where the iterations' time went")
    fig.tight_layout()
    fig.savefig(out / "breakdown.png", dpi=110)

    if not links.empty:
        _link_heatmap(links, summary["sim"]["simulated_s"], out / "links.png")


def _thinned(t: np.ndarray, values: np.ndarray, span: float, most: int = 100_000, bins: int = 4_000):
    """A long run's series as its mean per time bin (a line of millions of points draws slowly, as a blur)."""
    if len(t) <= most:
        return t, values
    edges = np.linspace(0.0, span, bins + 1)
    which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    sums = np.bincount(which, weights=values, minlength=bins)
    keep = counts > 0
    return edges[:-1][keep], sums[keep] / counts[keep]


def _link_heatmap(links: pd.DataFrame, span_s: float, path: Path, most: int = 40) -> None:
    """Utilisation of the busiest links (rows) over time (columns)."""
    from matplotlib.figure import Figure

    table = links.pivot(index="link", columns="bucket_start_s", values="utilization")
    busiest = table.mean(axis=1).sort_values(ascending=False).index[:most]
    table = table.loc[busiest]
    fig = Figure(figsize=(11, 0.28 * len(table) + 1.6))
    ax = fig.subplots()
    image = ax.imshow(table.to_numpy(), aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest",
                      extent=(0, span_s, len(table), 0))
    ax.set_yticks(np.arange(len(table)) + 0.5, table.index, fontsize=7)
    ax.set_xlabel("simulated time (s)")
    ax.set_title(f"link utilisation (busiest {len(table)} of {links['link'].nunique()} links)")
    fig.colorbar(image, ax=ax, label="utilisation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
