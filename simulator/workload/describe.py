"""Statistics and plots of a workload's requests: check that a synthetic workload matches a trace.

Definitions: rate = (n - 1) / (last arrival - first arrival); inter-arrival CV = std / mean of the gaps
between consecutive arrivals (1 for Poisson, above 1 bursty); peak = the most arrivals in any one-second
bin. Lengths: mean and the 50th, 90th and 99th percentiles (numpy's linear interpolation). Closed-loop
workloads have no arrival times before the run, so only their lengths are described.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.workload.arrivals import Requests

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class WorkloadStats:
    """Summary of one set of requests (a whole workload or one class). Times in seconds, lengths in tokens."""
    label: str
    requests: int
    span_s: float
    rate_per_s: float
    iat_mean_s: float
    iat_cv: float
    peak_per_s: int
    prompt: dict[str, float]
    output: dict[str, float]


def _lengths(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {"mean": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}}
    return {"mean": float(values.mean()), **{f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES}}


def stats(label: str, arrival_s: np.ndarray, prompt: np.ndarray, output: np.ndarray) -> WorkloadStats:
    t = np.sort(arrival_s[~np.isnan(arrival_s)])
    gaps = np.diff(t)
    span = float(t[-1] - t[0]) if len(t) else math.nan
    mean_gap = float(gaps.mean()) if len(gaps) else math.nan
    cv = float(gaps.std() / mean_gap) if len(gaps) and mean_gap > 0 else math.nan
    peak = int(np.bincount(np.floor(t - t[0]).astype(np.int64)).max()) if len(t) else 0
    rate = (len(t) - 1) / span if span > 0 else math.nan
    return WorkloadStats(label, len(prompt), span, rate, mean_gap, cv, peak, _lengths(prompt),
                         _lengths(output))


def describe(requests: Requests) -> list[WorkloadStats]:
    """The whole workload, then each class when there are several."""
    result = [stats("all", requests.arrival_s, requests.prompt_tokens, requests.output_tokens)]
    if len(requests.class_names) > 1:
        for i, name in enumerate(requests.class_names):
            rows = requests.class_id == i
            result.append(stats(name, requests.arrival_s[rows], requests.prompt_tokens[rows],
                                requests.output_tokens[rows]))
    return result


def _num(value: float, digits: int = 3) -> str:
    return "-" if not math.isfinite(value) else f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"


def table(rows: list[WorkloadStats]) -> tuple[list[str], list[list[str]]]:
    """Column names and formatted rows for a table of WorkloadStats."""
    columns = ["class", "requests", "span (s)", "rate (/s)", "IAT CV", "peak (/s)",
               "prompt mean / p50 / p90 / p99", "output mean / p50 / p90 / p99"]

    def lengths(d: dict[str, float]) -> str:
        return " / ".join(_num(d[k], 4) for k in ("mean", "p50", "p90", "p99"))

    return columns, [[s.label, str(s.requests), _num(s.span_s, 4), _num(s.rate_per_s), _num(s.iat_cv),
                      str(s.peak_per_s or "-"), lengths(s.prompt), lengths(s.output)] for s in rows]


PLOT_NAMES = frozenset({"arrivals.png", "interarrival.png", "lengths.png"})  # what write_plots may write


def write_plots(requests: Requests, out: Path, title: str) -> list[Path]:
    """arrivals.png (arrivals per second over time), interarrival.png (the share of gaps longer than x,
    against the exponential of the same mean) and lengths.png (prompt and output histograms) in `out`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    t = requests.arrival_s
    if len(t) and not np.isnan(t).all():
        for name, draw in (("arrivals.png", _plot_rate), ("interarrival.png", _plot_gaps)):
            fig, ax = plt.subplots(figsize=(9, 3.6))
            draw(ax, requests)
            ax.set_title(title)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(out / name, dpi=110)
            plt.close(fig)
            written.append(out / name)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    columns = ((requests.prompt_tokens, "prompt"), (requests.output_tokens, "output"))
    for ax, (values, label) in zip(axes, columns):
        if len(values):
            low = max(int(values.min()), 1)
            bins = np.geomspace(low, max(int(values.max()), low + 1), 50)
            ax.hist(values, bins=bins, color="#4c72b0")
            ax.set_xscale("log")
        ax.set_xlabel(f"{label} tokens")
        ax.set_ylabel("requests")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out / "lengths.png", dpi=110)
    plt.close(fig)
    return [*written, out / "lengths.png"]


def _plot_rate(ax, requests: Requests) -> None:
    t = requests.arrival_s
    span = max(float(np.nanmax(t)), 1.0)
    width = 1.0 if span <= 3600 else 60.0
    edges = np.arange(0.0, span + width, width)
    for i, name in enumerate(requests.class_names):
        counts, _ = np.histogram(t[requests.class_id == i], bins=edges)
        ax.step(edges[:-1], counts / width, where="post", lw=0.8, label=name)
    if len(requests.class_names) > 1:
        ax.legend()
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"arrivals per second ({width:g} s bins)")


def _plot_gaps(ax, requests: Requests) -> None:
    """Survival function P(gap > x) on log-log axes: a bursty trace lies far above the Poisson curve at long
    gaps and has many more tiny ones; a histogram hides both tails."""
    gaps = np.sort(np.diff(np.sort(requests.arrival_s)))
    positive = gaps[gaps > 0]
    if not len(positive):
        ax.text(0.5, 0.5, "every request arrives at the same time", ha="center", transform=ax.transAxes)
        return
    survival = 1.0 - np.arange(len(gaps)) / len(gaps)
    ax.step(gaps[gaps > 0], survival[gaps > 0], where="post", color="#4c72b0",
            label=f"this workload ({len(gaps) - len(positive)} zero gaps)")
    xs = np.geomspace(positive[0], positive[-1], 200)
    ax.plot(xs, np.exp(-xs / gaps.mean()), color="#c44e52", label="exponential, same mean (Poisson)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(0.5 / len(gaps), 1.5)
    ax.set_xlabel("inter-arrival time x (s)")
    ax.set_ylabel("share of gaps longer than x")
    ax.legend()
