"""Real traces -> requests: readers for the Azure LLM inference 2023, Mooncake FAST'25, BurstGPT and
ShareGPT-lengths files, and replay (window, first n or resample, dither, time scale). ServeGen folders:
servegen.py.

Formats (files may be gzip-compressed, `.gz`):
- azure: CSV `TIMESTAMP,ContextTokens,GeneratedTokens`; wall-clock `YYYY-MM-DD HH:MM:SS.fffffff`, no zone.
- mooncake: JSON lines `{"timestamp": ms from trace start, "input_length", "output_length", "hash_ids"}`;
  hash_ids name 512-token prefix blocks and are carried through as `prefix_hashes`.
- burstgpt: CSV `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type` (BurstGPT, KDD'25,
  github.com/HPMLL/BurstGPT; its newer files add `Session ID` and `Elapsed time`, read past); Timestamp in
  seconds from midnight of the first day. Rows with `Response tokens` 0 are the service's failures: they are
  replayed (as 1 output token, below); the `BurstGPT_without_fails_*` files leave them out.
- sharegpt: CSV with `num_prefill_tokens,num_decode_tokens` (lengths only, no arrival times).
Times are seconds from the trace's first request; lengths are tokens, and a length of 0 counts as 1 (the
engine needs a token to prefill and one to generate). A malformed row is one ScenarioError naming the file
and its line; nothing is skipped silently.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np

from simulator.config.fields import MAX_SECONDS, SPAN_RULE
from simulator.config.workload import TraceArrivals, TraceWindow
from simulator.errors import ScenarioError, brief
from simulator.workload import servegen
from simulator.workload.tracefile import (
    MAX_ID,
    TraceRequests,
    csv_rows,
    json_line,
    parse_float,
    parse_int,
    read_lines,
    shown_path,
)

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
SHAREGPT_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")
BURSTGPT_COLUMNS = ("Timestamp", "Request tokens", "Response tokens")
_EPOCH = datetime(1970, 1, 1)


def _azure_time(text: str, line: int, shown: str) -> tuple[int, float]:
    """'2023-11-16 18:17:03.9799600' -> (whole seconds since 1970, fraction); 100 ns digits kept exactly."""
    whole, _, fraction = text.partition(".")
    try:
        stamp = datetime.fromisoformat(whole.replace(" ", "T", 1))
        if stamp.tzinfo is not None or (fraction and not fraction.isdigit()):
            raise ValueError(text)
    except ValueError:
        raise ScenarioError(f"line {line}: TIMESTAMP", f"{brief(text)} is not a time like "
                            "'2023-11-16 18:17:03.9799600'", shown) from None
    return int((stamp - _EPOCH).total_seconds()), float(f"0.{fraction or 0}")


# ---------------------------------------------------------------- readers

def _lengths(prompt: list[int], output: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return (np.maximum(np.asarray(prompt, dtype=np.int64), 1),
            np.maximum(np.asarray(output, dtype=np.int64), 1))


def _read_azure(lines: list[str], shown: str) -> TraceRequests:
    seconds, fractions, prompt, output = [], [], [], []
    for line, (stamp, context, generated) in csv_rows(lines, AZURE_COLUMNS, shown):
        whole, fraction = _azure_time(stamp, line, shown)
        seconds.append(whole)
        fractions.append(fraction)
        prompt.append(parse_int(context, line, "ContextTokens", shown))
        output.append(parse_int(generated, line, "GeneratedTokens", shown))
    whole_s = np.asarray(seconds, dtype=np.int64)
    t = (whole_s - (whole_s[0] if len(whole_s) else 0)).astype(np.float64) + np.asarray(fractions)
    return TraceRequests(t, *_lengths(prompt, output))


def _read_mooncake(lines: list[str], shown: str) -> TraceRequests:
    times, prompt, output, hashes = [], [], [], []
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        row = json_line(text, line, shown)
        if not isinstance(row, dict):
            raise ScenarioError(f"line {line}", f"must be a JSON object, got {type(row).__name__}", shown)
        for key in ("timestamp", "input_length", "output_length"):
            if key not in row:
                raise ScenarioError(f"line {line}", f"missing key {key!r}", shown)
        times.append(parse_float(row["timestamp"], line, "timestamp", shown) / 1000.0)
        prompt.append(parse_int(row["input_length"], line, "input_length", shown))
        output.append(parse_int(row["output_length"], line, "output_length", shown))
        ids = row.get("hash_ids", [])
        if not isinstance(ids, list):
            raise ScenarioError(f"line {line}: hash_ids", f"must be a list of integers, got {brief(ids)}", shown)
        hashes.append(tuple(parse_int(h, line, "hash_ids", shown, MAX_ID) for h in ids))
    return TraceRequests(np.asarray(times, dtype=np.float64), *_lengths(prompt, output), tuple(hashes))


def _read_burstgpt(lines: list[str], shown: str) -> TraceRequests:
    times, prompt, output = [], [], []
    for line, (stamp, request, response) in csv_rows(lines, BURSTGPT_COLUMNS, shown):
        times.append(parse_float(stamp, line, "Timestamp", shown))
        prompt.append(parse_int(request, line, "Request tokens", shown))
        output.append(parse_int(response, line, "Response tokens", shown))
    return TraceRequests(np.asarray(times, dtype=np.float64), *_lengths(prompt, output))


def _read_sharegpt(lines: list[str], shown: str) -> TraceRequests:
    prompt, output = [], []
    for line, (prefill, decode) in csv_rows(lines, SHAREGPT_COLUMNS, shown):
        prompt.append(parse_int(prefill, line, SHAREGPT_COLUMNS[0], shown))
        output.append(parse_int(decode, line, SHAREGPT_COLUMNS[1], shown))
    return TraceRequests(np.full(len(prompt), np.nan), *_lengths(prompt, output))


_READERS = {"azure": _read_azure, "mooncake": _read_mooncake, "burstgpt": _read_burstgpt, "sharegpt": _read_sharegpt}


def read_trace(fmt: str, path: str | Path) -> TraceRequests:
    """A whole trace file as requests in arrival order (stable: file order among equal times)."""
    shown = shown_path(path)
    data = _READERS[fmt](read_lines(path), shown)
    if not len(data):
        raise ScenarioError("", "holds no requests", shown)
    if not np.isnan(data.arrival_s).any() and np.any(np.diff(data.arrival_s) < 0):
        data = data.take(np.argsort(data.arrival_s, kind="stable"))
    return replace(data, arrival_s=data.arrival_s - data.arrival_s[0])


# ---------------------------------------------------------------- replay

def window(data: TraceRequests, span: TraceWindow, shown: str) -> TraceRequests:
    """The requests in [start, start + duration), with t = 0 at `start`."""
    t = data.arrival_s
    end = math.inf if span.duration is None else span.start + span.duration
    keep = np.flatnonzero((t >= span.start) & (t < end))
    if not len(keep):
        raise ScenarioError("window", f"holds no requests: the trace spans {t[-1]:.1f} s from its first "
                            "request", shown)
    kept = data.take(keep)
    return replace(kept, arrival_s=kept.arrival_s - span.start)


def resample(data: TraceRequests, n: int, rng: np.random.Generator, shown: str) -> TraceRequests:
    """n requests: gaps drawn with replacement from the trace's gaps, rows (lengths, hashes) likewise."""
    if len(data) < 2:
        raise ScenarioError("resample", "needs at least 2 requests in the trace window", shown)
    gaps = rng.choice(np.diff(data.arrival_s), size=n - 1)
    rows = data.take(rng.integers(0, len(data), size=n))
    return replace(rows, arrival_s=np.concatenate([[0.0], np.cumsum(gaps)]))


def dither(data: TraceRequests, spread_s: float, rng: np.random.Generator) -> TraceRequests:
    """Move each arrival later by a uniform amount in [0, spread_s): undoes timestamps quantised to a grid."""
    t = data.arrival_s + rng.uniform(0.0, spread_s, size=len(data))
    order = np.argsort(t, kind="stable")
    return replace(data.take(order), arrival_s=t[order])


def mean_rate(arrival_s: np.ndarray) -> float:
    """Requests per second between the first and the last arrival: (n - 1) / span; NaN if undefined."""
    t = arrival_s[~np.isnan(arrival_s)]
    span = float(t.max() - t.min()) if len(t) else 0.0
    return (len(t) - 1) / span if span > 0 else math.nan


def time_scaled(data: TraceRequests, spec: TraceArrivals, shown: str) -> TraceRequests:
    """Arrivals divided by spec.time_scale, or by the factor that gives spec.rate."""
    factor = spec.time_scale
    if spec.rate is not None:
        natural = mean_rate(data.arrival_s)
        if not math.isfinite(natural):
            raise ScenarioError("rate", "cannot scale a trace window whose requests all arrive at one "
                                "instant", shown)
        factor = spec.rate / natural
    return data if factor is None else replace(data, arrival_s=data.arrival_s / factor)


def replay(spec: TraceArrivals, n: int | None, rng: np.random.Generator) -> TraceRequests:
    """The trace's requests after window, first n or resample, dither and time scale (in that order)."""
    shown = shown_path(spec.path)
    if spec.format == "servegen":
        data = servegen.sample(spec.path, spec.window, rng)
    else:
        data = window(read_trace(spec.format, spec.path), spec.window, shown)
    if spec.resample:
        data = resample(data, n or len(data), rng, shown)
    elif n is not None:
        if n > len(data):
            raise ScenarioError("num_requests", f"{n}, but the trace window holds {len(data)} requests; ask "
                                "for fewer or set resample: true", shown)
        data = data.take(np.arange(n))
    if spec.dither > 0:
        data = dither(data, spec.dither, rng)
    data = time_scaled(data, spec, shown)
    span = float(data.arrival_s[-1]) if len(data) else 0.0
    if span > MAX_SECONDS:
        raise ScenarioError("time_scale" if spec.time_scale is not None else "rate" if spec.rate is not None else "",
                            f"the replayed requests span {span:.3g} s of simulated time; {SPAN_RULE}", shown)
    return data


def read_lengths(fmt: str, path: str, cache: dict[tuple[str, str], TraceRequests]) -> TraceRequests:
    """A trace's rows for empirical lengths, read once per generate() call."""
    key = (fmt, os.path.abspath(path))
    if key not in cache:
        cache[key] = read_trace(fmt, path)
    return cache[key]
