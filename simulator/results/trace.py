"""A run as a Chrome/Perfetto trace-event JSON file (`trace.json`, opens in ui.perfetto.dev or chrome://tracing).

What it holds, all from the run's own tables (so `infersim report DIR --trace` rebuilds the same file):
- one process per replica: its iterations as slices (named by what they ran: prefill, decode or both), each
  with its breakdown as child slices (compute-bound, memory-bound, overhead, network wait, bubble; per chip,
  averaged over the pipeline stages as `iterations.parquet` records it, laid end to end in that fixed order:
  the shares of the iteration's time, not the order kernels ran in) and its numbers as arguments;
- one process "requests", a track per request: the request's span from arrival to finish, holding its queue
  (arrival to admission), prefill (admission to first token) and decode (first token to finish) spans;
- one process "links": a counter per link, its utilisation per time bucket of `links.parquet`.

Times are kept in whole nanoseconds (the simulated seconds rounded once) and written as microseconds with
three decimals, so children nest in their parents exactly and every timestamp is within half a nanosecond
of the table's. Long runs are bounded: a window of simulated time, at most `max_requests` requests (every
k-th by id when more arrive in the window) and at most `max_iterations` iterations (the window's end is cut
where that many have started); what was kept is written in `otherData`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

TRACE_NAME = "trace.json"
BREAKDOWN = (("compute_bound_s", "compute-bound"), ("memory_bound_s", "memory-bound"), ("overhead_s", "overhead"),
             ("network_s", "network wait"), ("bubble_s", "bubble"))
REQUESTS_PID, LINKS_PID, FIRST_REPLICA_PID = 1, 2, 10


class Columns(Protocol):
    """Iterations by column: an IterationStore or a DataFrame read from iterations.parquet."""
    def __getitem__(self, name: str) -> Any: ...
    def __len__(self) -> int: ...


@dataclass(frozen=True)
class TraceBounds:
    """What a trace keeps of a long run: a window of simulated seconds and counts."""
    start_s: float = 0.0
    end_s: float = math.inf
    max_requests: int = 10_000
    max_iterations: int = 100_000

    @classmethod
    def parse_window(cls, text: str, **counts: int) -> TraceBounds:
        """'START:END' in simulated seconds, either side may be empty ('30:', ':60'); ValueError otherwise."""
        if text.count(":") != 1:
            raise ValueError(f"{text!r} is not START:END in simulated seconds (e.g. 10:60, 10:, :60)")
        lo, hi = (part.strip() for part in text.split(":"))
        try:
            start, end = float(lo) if lo else 0.0, float(hi) if hi else math.inf
        except ValueError:
            raise ValueError(f"{text!r} is not START:END in simulated seconds (e.g. 10:60, 10:, :60)") from None
        if not (start >= 0 and end > start):
            raise ValueError(f"{text!r}: the window needs 0 <= START < END")
        return cls(start, end, **counts)


def _ns(seconds: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64)


def _us(ns: int) -> str:
    """Integer nanoseconds as microseconds, exactly, for the JSON text."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1000}.{ns % 1000:03d}"


class _Writer:
    """Events as JSON text, one a line (cheaper than building dicts for json.dumps, and exact for times)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def meta(self, pid: int, tid: int, kind: str, name: str, sort: int | None = None) -> None:
        self.lines.append(f'{{"ph":"M","ts":0,"pid":{pid},"tid":{tid},"name":"{kind}","args":{{"name":'
                          f'{json.dumps(name)}}}}}')
        if sort is not None:
            what = "process_sort_index" if kind == "process_name" else "thread_sort_index"
            self.lines.append(f'{{"ph":"M","ts":0,"pid":{pid},"tid":{tid},"name":"{what}",'
                              f'"args":{{"sort_index":{sort}}}}}')

    def span(self, pid: int, tid: int, name: str, start_ns: int, end_ns: int, args: str = "") -> None:
        extra = f',"args":{args}' if args else ""
        self.lines.append(f'{{"ph":"X","name":"{name}","ts":{_us(start_ns)},"dur":{_us(end_ns - start_ns)},'
                          f'"pid":{pid},"tid":{tid}{extra}}}')

    def counter(self, pid: int, name: str, at_ns: int, value: float) -> None:
        self.lines.append(f'{{"ph":"C","name":{json.dumps(name)},"ts":{_us(at_ns)},"pid":{pid},"tid":0,'
                          f'"args":{{"utilisation":{value:.6g}}}}}')


def trace_text(summary: dict[str, Any], requests: pd.DataFrame, iterations: Columns, links: pd.DataFrame,
               bounds: TraceBounds = TraceBounds()) -> str:
    """The whole trace file's text (JSON object format: traceEvents, displayTimeUnit, otherData)."""
    out = _Writer()
    span_s = float(summary["sim"]["simulated_s"] or 0.0)
    start_s, end_s = bounds.start_s, min(bounds.end_s, span_s) if span_s > 0 else bounds.end_s
    end_s, iterations_kept, iterations_in_window = _iterations(out, iterations, start_s, end_s, bounds)
    requests_kept, requests_in_window = _requests(out, requests, start_s, end_s, bounds.max_requests)
    links_kept = _links(out, links, start_s, end_s)
    other = {"scenario": summary["scenario"], "model": summary["model"], "chip": summary["chip"],
             "seed": summary["seed"], "simulated_s": span_s, "window_s": [start_s, end_s],
             "requests_in_window": requests_in_window, "requests_shown": requests_kept,
             "iterations_in_window": iterations_in_window, "iterations_shown": iterations_kept,
             "links_shown": links_kept,
             "note": "iteration breakdown children: shares of the iteration's time per chip (stage average), "
                     "in a fixed order, not the order kernels ran in"}
    return ('{"displayTimeUnit":"ms","otherData":' + json.dumps(other, allow_nan=False)
            + ',"traceEvents":[\n' + ",\n".join(out.lines) + "\n]}\n")


def write_trace(path: Path, summary: dict[str, Any], requests: pd.DataFrame, iterations: Columns,
                links: pd.DataFrame, bounds: TraceBounds = TraceBounds()) -> None:
    path.write_text(trace_text(summary, requests, iterations, links, bounds), encoding="utf-8")


def _iterations(out: _Writer, it: Columns, start_s: float, end_s: float,
                bounds: TraceBounds) -> tuple[float, int, int]:
    """Slices of the iterations starting in the window; returns (window end, shown, in window)."""
    if not len(it):
        return end_s, 0, 0
    start = np.asarray(it["start_s"], dtype=np.float64)
    inside = np.flatnonzero((start >= start_s) & (start < end_s))
    in_window = int(inside.size)
    if inside.size > bounds.max_iterations:
        inside = inside[np.argsort(start[inside], kind="stable")[:bounds.max_iterations]]
        end_s = float(start[inside].max())  # cut where the budget ran out, so what is shown is complete
        inside = inside[start[inside] < end_s]
    inside = np.sort(inside)
    replica = np.asarray(it["replica"])[inside].astype(np.int64)
    t0 = _ns(start[inside])
    t1 = np.maximum(_ns(start[inside] + np.asarray(it["duration_s"], dtype=np.float64)[inside]), t0 + 1)
    by_start = np.lexsort((t0, replica))  # an end rounded past the replica's next start is cut there
    following = np.r_[t0[by_start][1:], np.iinfo(np.int64).max]
    following[np.r_[replica[by_start][1:] != replica[by_start][:-1], True]] = np.iinfo(np.int64).max
    t1[by_start] = np.maximum(np.minimum(t1[by_start], following), t0[by_start] + 1)
    parts = np.stack([np.asarray(it[c], dtype=np.float64)[inside] for c, _ in BREAKDOWN], axis=1)
    prefill = np.asarray(it["prefill_tokens"])[inside].astype(np.int64)
    decode = np.asarray(it["decode_tokens"])[inside].astype(np.int64)
    batch = np.asarray(it["batch_size"])[inside].astype(np.int64)
    chips = np.asarray(it["chips"])[inside].astype(np.int64)
    for r in np.unique(replica).tolist():
        out.meta(FIRST_REPLICA_PID + r, 0, "process_name", f"replica {r}", sort=FIRST_REPLICA_PID + r)
        out.meta(FIRST_REPLICA_PID + r, 1, "thread_name", "iterations (per chip, stage average)")
    for i in range(inside.size):
        pid = FIRST_REPLICA_PID + int(replica[i])
        a, b = int(t0[i]), int(t1[i])
        p, d = int(prefill[i]), int(decode[i])
        name = "prefill + decode" if p and d else "prefill" if p else "decode" if d else "idle step"
        shares = parts[i]
        args = (f'{{"batch_size":{int(batch[i])},"prefill_tokens":{p},"decode_tokens":{d},"chips":{int(chips[i])},'
                + ",".join(f'"{label} (ms)":{value * 1e3:.6g}' for (_, label), value in zip(BREAKDOWN, shares))
                + "}")
        out.span(pid, 1, name, a, b, args)
        total = float(shares.sum())
        scale = (b - a) / 1e9 / total if total > (b - a) / 1e9 and total > 0 else 1.0
        at, acc = a, 0.0
        for (_, label), value in zip(BREAKDOWN, shares):
            if value <= 0:
                continue
            acc += value * scale
            nxt = min(b, a + round(acc * 1e9))
            if nxt > at:
                out.span(pid, 1, label, at, nxt)
            at = nxt
    return end_s, int(inside.size), in_window


def _requests(out: _Writer, req: pd.DataFrame, start_s: float, end_s: float, most: int) -> tuple[int, int]:
    """A track per request arriving in the window (every k-th by id past `most`); returns (shown, in window)."""
    arrival = req["arrival_s"].to_numpy(dtype=np.float64)
    inside = np.flatnonzero((arrival >= start_s) & (arrival < end_s))
    in_window = int(inside.size)
    if inside.size > most:
        inside = inside[:: math.ceil(inside.size / most)]
    out.meta(REQUESTS_PID, 0, "process_name", "requests", sort=REQUESTS_PID)
    times = [_ns(req[c].to_numpy(dtype=np.float64)[inside])
             for c in ("arrival_s", "admit_s", "first_token_s", "finish_s")]
    known = [np.isfinite(req[c].to_numpy(dtype=np.float64)[inside])
             for c in ("arrival_s", "admit_s", "first_token_s", "finish_s")]
    rid = req["request_id"].to_numpy()[inside]
    status = req["status"].astype(str).to_numpy()[inside]
    prompt = req["prompt_tokens"].to_numpy()[inside]
    output = req["output_tokens"].to_numpy()[inside]
    last_ns = int(np.rint(end_s * 1e9)) if math.isfinite(end_s) else None
    for i in range(inside.size):
        tid = int(rid[i]) + 1  # tid 0 is the process's own track
        out.meta(REQUESTS_PID, tid, "thread_name", f"request {int(rid[i])}", sort=tid)
        marks = [int(t[i]) if k[i] else None for t, k in zip(times, known)]
        arrive, admit, first, finish = int(times[0][i]), marks[1], marks[2], marks[3]
        end = finish if finish is not None else max([m for m in marks if m is not None] + [last_ns or arrive])
        args = (f'{{"status":"{status[i]}","prompt_tokens":{int(prompt[i])},"output_tokens":{int(output[i])}}}')
        out.span(REQUESTS_PID, tid, f"request {int(rid[i])}", arrive, max(end, arrive), args)
        for name, a, b in (("queue", arrive, admit if admit is not None else end),
                           ("prefill", admit, first if first is not None else end),
                           ("decode", first, finish)):
            if a is not None and b is not None and b > a:
                out.span(REQUESTS_PID, tid, name, a, min(b, end))
    return int(inside.size), in_window


def _links(out: _Writer, links: pd.DataFrame, start_s: float, end_s: float) -> int:
    """A counter per link: its utilisation over each bucket starting in the window, and 0 after the last."""
    if links.empty:
        return 0
    out.meta(LINKS_PID, 0, "process_name", "links (utilisation)", sort=LINKS_PID)
    shown = 0
    for link, rows in links.groupby("link", sort=True):
        rows = rows[(rows["bucket_start_s"] >= start_s) & (rows["bucket_start_s"] < end_s)]
        if rows.empty or not (rows["utilization"] > 0).any():
            continue
        shown += 1
        starts = _ns(rows["bucket_start_s"].to_numpy())
        for at, value in zip(starts.tolist(), rows["utilization"].to_numpy().tolist()):
            out.counter(LINKS_PID, str(link), at, value)
        out.counter(LINKS_PID, str(link), int(starts[-1] + _ns(rows["bucket_s"].to_numpy()[-1:])[0]), 0.0)
    return shown
