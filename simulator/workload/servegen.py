"""ServeGen (Alibaba Cloud Model Studio) client pools -> requests.

A ServeGen folder holds per-client statistics, not per-request rows (Xiang et al., arXiv:2505.09999):
- trace.csv[.gz]: `client_id,window_start_s,rate_rps,cv,iat_dist,iat_shape,iat_scale`, one row per client per
  window (600 s): the mean rate, and a scipy fit of the gaps (`Gamma`: gamma(a=shape, scale); `Weibull`:
  weibull_min(c=shape, scale); empty: no traffic).
- dataset.jsonl[.gz]: one line per client, `{"client_id": n, "windows": {start_s: {field: "{tokens: p}"}}}`;
  each field is a Python-literal dict, read with ast.literal_eval (never eval), valid from its start on.
Requests are drawn the way ServeGen's own generator does: in each client window, rate x window arrivals
(stochastically rounded) with gaps from the fitted distribution, rescaled to fill the window, so that both the
window's rate and its burstiness hold; lengths from the client's distributions for that time. Prompt tokens
are `input_tokens`, or for multimodal pools `text_tokens` plus `image_count` draws of `image_tokens`.
Clients without length distributions are skipped (the public release lacks some dataset files).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator.config import limits
from simulator.config.fields import MAX_TOKENS
from simulator.config.load import is_dir, is_file
from simulator.config.workload import TraceWindow
from simulator.errors import ScenarioError, brief
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

TRACE_COLUMNS = ("client_id", "window_start_s", "rate_rps", "cv", "iat_dist", "iat_shape", "iat_scale")
DEFAULT_WINDOW_S = 600.0
MAX_CLIENT_RATE = 1e6  # requests per second of one client: beyond it a row is a typo, not a workload
_CLIENT = re.compile(r'\s*\{\s*"client_id"\s*:\s*(\d{1,19})\b')  # a peek, before parsing the line
Pdf = tuple[np.ndarray, np.ndarray]  # (token counts, cumulative probabilities)


@dataclass(frozen=True)
class ClientWindow:
    """One client's traffic in one window: mean rate and the fitted gap distribution."""
    client: int
    start_s: float
    rate_per_s: float
    dist: str
    shape: float
    scale: float


def _find(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if is_file(folder / name):
            return folder / name
    raise ScenarioError("", f"has no {stem} nor {stem}.gz (a servegen path is a folder with trace.csv and "
                        "dataset.jsonl)", shown_path(folder))


def read_windows(path: Path) -> tuple[list[ClientWindow], list[float]]:
    """The client windows with traffic, and every window start in the file (sorted, distinct)."""
    shown = shown_path(path)
    windows, starts = [], set()
    for line, cells in csv_rows(read_lines(path), TRACE_COLUMNS, shown):
        client = parse_int(cells[0], line, "client_id", shown, MAX_ID)
        start = parse_float(cells[1], line, "window_start_s", shown)
        rate = parse_float(cells[2], line, "rate_rps", shown)
        if not 0 <= rate <= MAX_CLIENT_RATE:
            raise ScenarioError(f"line {line}: rate_rps", f"{rate:g} is out of range; allowed: 0 to "
                                f"{MAX_CLIENT_RATE:g} requests per second", shown)
        if cells[4] not in ("", "Gamma", "Weibull"):
            raise ScenarioError(f"line {line}: iat_dist",
                                f"{brief(cells[4])} is not one of: Gamma, Weibull (or empty)", shown)
        shape = parse_float(cells[5], line, "iat_shape", shown)
        scale = parse_float(cells[6], line, "iat_scale", shown)
        starts.add(start)
        if cells[4] and rate > 0:
            windows.append(ClientWindow(client, start, rate, cells[4], shape, scale))
    if not starts:
        raise ScenarioError("", "holds no windows", shown)
    return windows, sorted(starts)


def _pdf(text: object, line: int, where: str, shown: str) -> Pdf:
    try:
        table = ast.literal_eval(text) if isinstance(text, str) else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        table = None
    if not isinstance(table, dict) or not table or not all(
            isinstance(k, int) and 0 <= k <= MAX_TOKENS and isinstance(p, (int, float)) and 0 <= p < math.inf
            for k, p in table.items()):
        raise ScenarioError(f"line {line}: {where}", "is not a Python dict literal of {tokens: probability}; "
                            f"allowed: tokens 0 to {MAX_TOKENS}, probabilities finite and >= 0", shown)
    tokens = np.fromiter(table.keys(), dtype=np.int64, count=len(table))
    cdf = np.cumsum(np.fromiter(table.values(), dtype=np.float64, count=len(table)))
    if cdf[-1] <= 0:
        raise ScenarioError(f"line {line}: {where}", "has no positive probability", shown)
    return tokens, cdf / cdf[-1]


def _client_pdfs(row: dict, starts: set[float], line: int, shown: str) -> dict[float, dict[str, Pdf]]:
    """For each wanted trace window start: the client's length distributions in force then."""
    windows = row.get("windows")
    if not isinstance(windows, dict):
        raise ScenarioError(f"line {line}: windows", "must be a JSON object keyed by window start", shown)
    keyed = sorted((parse_float(k, line, "windows", shown), k) for k in windows)
    parsed: dict[str, dict[str, Pdf]] = {}
    found = {}
    for start in starts:
        key = next((k for s, k in reversed(keyed) if s <= start), None)
        if key is None or not isinstance(windows[key], dict):
            continue
        if key not in parsed:
            fields = windows[key]
            parsed[key] = {name: _pdf(fields[name], line, f"windows.{key}.{name}", shown) for name in
                           ("input_tokens", "text_tokens", "image_tokens", "image_count", "output_tokens")
                           if name in fields}
            fields_found = parsed[key].keys()
            if "output_tokens" not in fields_found or not {"input_tokens", "text_tokens"} & fields_found:
                raise ScenarioError(f"line {line}: windows.{key}", "needs output_tokens and input_tokens (or "
                                    "text_tokens)", shown)
        found[start] = parsed[key]
    return found


def read_pdfs(path: Path, wanted: dict[int, set[float]]) -> dict[tuple[int, float], dict[str, Pdf]]:
    """(client, window start) -> length distributions, parsing only the clients and windows wanted."""
    shown = shown_path(path)
    pdfs = {}
    for line, text in enumerate(read_lines(path), start=1):
        peek = _CLIENT.match(text)
        if not text.strip() or (peek and int(peek.group(1)) not in wanted):
            continue
        row = json_line(text, line, shown)
        if not isinstance(row, dict) or "client_id" not in row:
            raise ScenarioError(f"line {line}", "must be a JSON object with client_id and windows", shown)
        client = parse_int(row["client_id"], line, "client_id", shown, MAX_ID)
        for start, found in _client_pdfs(row, wanted.get(client, set()), line, shown).items():
            pdfs[(client, start)] = found
    return pdfs


def _draw(pdf: Pdf, n: int, rng: np.random.Generator) -> np.ndarray:
    tokens, cdf = pdf
    return tokens[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(tokens) - 1)]


def _lengths(pdfs: dict[str, Pdf], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if "input_tokens" in pdfs:
        prompt = _draw(pdfs["input_tokens"], n, rng)
    else:
        prompt = _draw(pdfs["text_tokens"], n, rng)
        if "image_tokens" in pdfs and "image_count" in pdfs:
            images = _draw(pdfs["image_count"], n, rng)
            draws = _draw(pdfs["image_tokens"], int(images.sum()), rng)
            prompt = prompt + np.bincount(np.repeat(np.arange(n), images), weights=draws, minlength=n).astype(
                np.int64)
    return np.maximum(prompt, 1), np.maximum(_draw(pdfs["output_tokens"], n, rng), 1)


def _arrivals(w: ClientWindow, size_s: float, rng: np.random.Generator) -> np.ndarray:
    """rate x size arrivals in the window, gaps shaped by the fit and rescaled to fill the window."""
    count = math.floor(w.rate_per_s * size_s + rng.random())
    if count == 0:
        return np.empty(0)
    if w.shape > 0 and w.scale > 0:
        gaps = rng.gamma(w.shape, w.scale, count + 1) if w.dist == "Gamma" else w.scale * rng.weibull(w.shape,
                                                                                                    count + 1)
    else:
        gaps = rng.exponential(1.0, count + 1)  # no usable fit: Poisson
    total = gaps.sum()
    if not (total > 0 and math.isfinite(total)):
        gaps, total = np.ones(count + 1), count + 1.0
    return w.start_s + np.cumsum(gaps[:count]) * (size_s / total)


def sample(folder: str, span: TraceWindow, rng: np.random.Generator) -> TraceRequests:
    """Requests drawn from a ServeGen folder within `span` (from its first window); t = 0 at span start."""
    root = Path(folder)
    shown = shown_path(root)
    if not is_dir(root):
        problem = "is a file, not a servegen folder" if is_file(root) else \
            "folder not found (a servegen path is a folder with trace.csv and dataset.jsonl)"
        raise ScenarioError("", problem, shown)
    windows, starts = read_windows(_find(root, "trace.csv"))
    size = min(np.diff(starts), default=DEFAULT_WINDOW_S)
    lo = starts[0] + span.start
    hi = lo + span.duration if span.duration is not None else starts[-1] + size
    active = sorted((w for w in windows if w.start_s < hi and w.start_s + size > lo),
                    key=lambda w: (w.start_s, w.client))
    wanted: dict[int, set[float]] = {}
    for w in active:
        wanted.setdefault(w.client, set()).add(w.start_s)
    drawn = sum(w.rate_per_s * size for w in active)
    if drawn > limits.MAX_DRAWN_REQUESTS:
        raise ScenarioError("window", f"its client windows draw {drawn:.3g} requests; allowed: up to "
                            f"{limits.MAX_DRAWN_REQUESTS:.0e} (a narrower window, or lower rate_rps)", shown)
    pdfs = read_pdfs(_find(root, "dataset.jsonl"), wanted)
    times, prompts, outputs = [np.empty(0)], [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for w in active:
        if (w.client, w.start_s) in pdfs:
            t = _arrivals(w, size, rng)
            prompt, output = _lengths(pdfs[(w.client, w.start_s)], len(t), rng)
            times.append(t)
            prompts.append(prompt)
            outputs.append(output)
    t = np.concatenate(times)
    keep = np.flatnonzero((t >= lo) & (t < hi))
    if not len(keep):
        raise ScenarioError("window", "holds no requests from clients with length distributions", shown)
    keep = keep[np.argsort(t[keep], kind="stable")]
    return TraceRequests(t[keep] - lo, np.concatenate(prompts)[keep], np.concatenate(outputs)[keep])
