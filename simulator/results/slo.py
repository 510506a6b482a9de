"""Latency targets (SLOs), attainment and goodput, and the inter-token latency distribution of a run.

A request's targets come from its class's `slo`, else the workload's `slo`, else the scenario's
`serving.slo`, field by field (a class may set only ttft and inherit tpot). A request meets its SLO when it
completed with ttft_s <= ttft and tpot_s <= tpot; an unset target is not checked, and a request with one
output token has no TPOT, so only its TTFT is. Dropped requests, and requests still in flight when the run
stopped, do not meet it. attainment = requests that met / requests that arrived; goodput = requests that met
per second of the simulated span (the span throughput uses).

Inter-token latency (ITL): a decode iteration gives every decoding request one token, delivered when the
iteration ends; the gap since that request's previous token is the time since the end of the replica's
previous decode iteration, except for a request whose prefill completed in a prefill-only iteration in
between (its first token came then). So the run's ITL distribution is built from iterations.parquet alone:
each decode iteration contributes its decode tokens at the gap since the previous decode iteration, less the
requests that joined from prefill-only iterations since, each counted at the gap since its own iteration.
With chunked prefill every iteration carries every decoding request and the gaps are the iteration
durations, weighted by decode tokens; without it, prefill-only iterations pause the decodes and the pauses
show in the tail. Approximations: a request swapped back in after a preemption, or handed to a decode
replica (disaggregation), counts as continuing from that replica's previous decode iteration, and a request
with one output token counts as a joiner (off by 0.2% of the decode time on the shipped disaggregated
scenario; exact, as tests check, without preemptions, hand-offs and one-token requests).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from simulator.config.scenario import ScenarioSpec
from simulator.config.workload import SloSpec

Targets = tuple[float | None, float | None]  # (ttft_s, tpot_s), None: not checked


def targets(spec: ScenarioSpec, class_names: Sequence[str]) -> list[Targets]:
    """(ttft, tpot) targets of each class, in class_names order."""
    w = spec.workload
    by_name = {c.name: c.slo for c in w.classes or ()}
    layers = [w.slo, spec.serving.slo]
    out = []
    for name in class_names:
        specs: list[SloSpec | None] = [by_name.get(name), *layers]
        ttft = next((s.ttft for s in specs if s is not None and s.ttft is not None), None)
        tpot = next((s.tpot for s in specs if s is not None and s.tpot is not None), None)
        out.append((ttft, tpot))
    return out


def meets(req: pd.DataFrame, class_targets: Sequence[Targets]) -> np.ndarray:
    """Whether each request (a row of requests.parquet; `class` is categorical) met its class's targets."""
    ok = (req["status"] == "completed").to_numpy()
    codes = req["class"].cat.codes.to_numpy()
    ttft, tpot = req["ttft_s"].to_numpy(), req["tpot_s"].to_numpy()
    inf = math.inf
    ttft_limit = np.array([inf if t is None else t for t, _ in class_targets])[codes]
    tpot_limit = np.array([inf if p is None else p for _, p in class_targets])[codes]
    with np.errstate(invalid="ignore"):
        return ok & (ttft <= ttft_limit) & ~(tpot > tpot_limit)  # no TPOT (one output token): not checked


def weighted_stats(values: Any, weights: Any = None) -> dict[str, float | None]:
    """mean, p50, p90, p99 of values, each counted `weights` times (integers): the same numbers as
    np.percentile(np.repeat(values, weights)) with linear interpolation, without building the repeat."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones(len(v), dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    keep = (w > 0) & ~np.isnan(v)
    v, w = v[keep], w[keep]
    if v.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    n = int(cum[-1])
    out: dict[str, float | None] = {"mean": float(np.dot(v, w) / n)}
    for q in (50, 90, 99):
        h = (n - 1) * q / 100.0
        lo = math.floor(h)
        a, b = v[np.searchsorted(cum, [lo, min(lo + 1, n - 1)], side="right")]
        out[f"p{q}"] = float(a + (h - lo) * (b - a))
    return out


def itl_samples(iterations) -> tuple[np.ndarray, np.ndarray]:
    """(gaps in seconds, decode tokens at that gap) of a run's iterations (a DataFrame or an IterationStore;
    see the module docstring). Rows are in time order; columns are read one at a time (a long run's are
    large)."""
    replica = np.asarray(iterations["replica"])
    order = np.argsort(replica, kind="stable") if len(replica) and np.any(replica != replica[0]) else None

    def column(name: str) -> np.ndarray:  # grouped by replica, in time order within each
        values = np.asarray(iterations[name])
        return values if order is None else values[order]

    if order is not None:
        replica = replica[order]
    bounds = np.flatnonzero(np.diff(replica)) + 1
    del replica
    lows, highs = np.r_[0, bounds], np.r_[bounds, len(order) if order is not None else len(iterations)]
    duration = column("duration_s")
    end = column("start_s") + duration
    dec_all = column("decode_tokens")
    first_decode = [np.flatnonzero(dec_all[lo:hi] > 0)[:1] for lo, hi in zip(lows, highs)]
    first_duration = [duration[lo:hi][d] for (lo, hi), d in zip(zip(lows, highs), first_decode)]
    del duration
    joins_all = column("output_tokens") - dec_all  # prefills completed (each gave a token)
    gaps, weights = [], []
    for (lo, hi), head in zip(zip(lows, highs), first_duration):
        dec, joins, ends = dec_all[lo:hi], joins_all[lo:hi], end[lo:hi]
        d = np.flatnonzero(dec > 0)
        if d.size == 0:
            continue
        since = np.empty(d.size)
        since[0] = head[0]  # the replica's first decode: nobody decoded before
        since[1:] = ends[d[1:]] - ends[d[:-1]]
        solo = np.flatnonzero((dec == 0) & (joins > 0))  # prefill-only iterations with requests joining
        nxt = np.searchsorted(d, solo)  # the decode iteration each joiner's next token comes from
        solo, nxt = solo[nxt < d.size], nxt[nxt < d.size]
        joined = np.bincount(nxt, weights=joins[solo], minlength=d.size)
        gaps += [since, ends[d[nxt]] - ends[solo]]
        weights += [np.maximum(dec[d] - joined, 0), joins[solo]]
    if not gaps:
        return np.empty(0), np.empty(0, dtype=np.int64)
    return np.concatenate(gaps), np.concatenate(weights).astype(np.int64)


def itl_stats(iterations) -> dict[str, float | None]:
    """Inter-token latency over every decode token of the run: mean and weighted percentiles."""
    return weighted_stats(*itl_samples(iterations))


def summary(req: pd.DataFrame, class_targets: Sequence[Targets], span_s: float) -> dict[str, Any]:
    """summary.json's `slo` block: overall and per class attainment and goodput, with the targets checked."""
    arrived = (req["status"] != "not_arrived").to_numpy()
    met = req["meets_slo"].to_numpy()
    codes = req["class"].cat.codes.to_numpy()
    done = (req["status"] == "completed").to_numpy()
    per_class = {}
    for i, name in enumerate(req["class"].cat.categories):
        mine = codes == i
        ttft, tpot = class_targets[i]
        per_class[str(name)] = {
            "ttft_target_s": ttft, "tpot_target_s": tpot,
            "arrived": int((arrived & mine).sum()), "completed": int((done & mine).sum()),
            "met": int((met & mine).sum()),
            "attainment": _share(int((met & mine).sum()), int((arrived & mine).sum())),
            "goodput_requests_per_s": _share(int((met & mine).sum()), span_s),
            "ttft_s": weighted_stats(req["ttft_s"].to_numpy()[done & mine]),
            "tpot_s": weighted_stats(req["tpot_s"].to_numpy()[done & mine]),
        }
    return {"attainment": _share(int(met.sum()), int(arrived.sum())),
            "goodput_requests_per_s": _share(int(met.sum()), span_s),
            "met": int(met.sum()), "per_class": per_class}


def _share(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None
