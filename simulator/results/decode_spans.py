"""Steady decode spans: the decode iterations of one batch between two changes of its composition, as one
record instead of one row each.

Between an admission, a finish, a preemption or a prefill chunk, a batch of decodes changes only by each
context growing one token a step, so each iteration's roofline is a function of the step index.
engine/run_ahead.py times a whole span at once with `span_times` (numpy, element by element the float
operations of one iteration after the other; the clock's additions as a sequential cumulative sum) and
records it as a `DecodeSpan`; the iteration store (iteration_store.py) turns pending spans into the very
rows one event per iteration records (`span_rows`, all pending spans at once) only when it orders its rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DecodeSpan(NamedTuple):
    """Iterations of one replica with the same decode batch, one after the other from `start_s`."""
    replica: int
    start_s: float
    ends: np.ndarray  # each iteration's end (s)
    context: float  # the first iteration's decode context (an integral number of tokens); + decode_tokens a step
    terms: tuple  # StepCostModel.decode_terms of the batch
    coll_s: float  # the TP collectives of one iteration
    xfer_s: float  # the send to the next stage
    send_latency_s: float
    network_bytes_per_chip: float
    chips: int
    prefill_tokens: float
    decode_tokens: float
    output_tokens: float
    batch_size: int
    kv_blocks: int  # KV blocks used after the first iteration
    grown: tuple[int, ...]  # for each block taken during the span: the first iteration that counts it
    last_kv_blocks: int  # the last iteration's blocks when it finished requests (it frees theirs), else -1


def span_times(terms: tuple, coll_s: float | np.ndarray, xfer_s: float | np.ndarray,
               send_latency_s: float | np.ndarray, context: np.ndarray):
    """(decode FLOPs, KV bytes, their compute and memory times, compute-bound and memory-bound time, duration)
    of steady decode iterations at `context` (arrays): StepCostModel.cost's operations, in its order."""
    _, _, gcb, gmb, _, per_pair, tp, tokens, kv_per_token, peak, bw, _, _, ov = terms
    decode = per_pair * context / tp
    kv = (context + tokens) * kv_per_token
    dc, dm = decode / peak, kv / bw
    cb = gcb + np.where(dc >= dm, dc, 0.0)
    mb = gmb + np.where(dm > dc, dm, 0.0)
    duration = cb + mb + ov + coll_s + xfer_s + send_latency_s
    return decode, kv, dc, dm, cb, mb, duration


def span_columns(spans: list[DecodeSpan]) -> dict[str, np.ndarray | float]:
    """Every iteration of `spans` (span by span) as the iteration store's columns, each value exactly as
    one event per iteration records it."""
    lengths = np.array([len(s.ends) for s in spans])
    total = int(lengths.sum())
    first = np.cumsum(lengths) - lengths  # each span's first row
    per_row = lambda values: np.repeat(np.asarray(values, dtype=np.float64), lengths)  # noqa: E731
    index = np.arange(total) - np.repeat(first, lengths)
    context = per_row([s.context for s in spans]) + index * per_row([s.decode_tokens for s in spans])
    terms = [per_row(column) for column in zip(*(s.terms for s in spans))]
    gemm, gc, _, _, gm, _, _, _, _, _, _, resident, streamed, ov = terms
    coll, xfer, latency = (per_row([getattr(s, name) for s in spans]) for name in ("coll_s", "xfer_s",
                                                                                  "send_latency_s"))
    decode, kv, dc, dm, cb, mb, _ = span_times(tuple(terms), coll, xfer, latency, context)
    ends = np.concatenate([s.ends for s in spans])
    starts = np.empty(total)
    starts[1:] = ends[:-1]
    starts[first] = [s.start_s for s in spans]
    duration = ends - starts  # as recorded after an event: the clock's difference
    net = coll + xfer + latency
    idle = duration - (cb + mb + ov + net)
    blocks = np.zeros(total, dtype=np.int64)
    for s, at in zip(spans, first.tolist()):
        for i in s.grown:
            blocks[at + i] += 1
    blocks = np.cumsum(blocks)  # blocks taken so far, less those of earlier spans, plus the span's first count
    blocks += np.repeat(np.array([s.kv_blocks for s in spans]) - _before(blocks, first), lengths)
    last = first + lengths - 1
    finished = np.array([s.last_kv_blocks for s in spans])
    blocks[last[finished >= 0]] = finished[finished >= 0]
    return {name: column for name, column in (
                         ("replica", per_row([s.replica for s in spans])), ("start_s", starts),
                         ("duration_s", duration), ("compute_s", gc + dc), ("memory_s", gm + dm),
                         ("compute_bound_s", cb), ("memory_bound_s", mb), ("network_s", net),
                         ("overhead_s", ov), ("bubble_s", np.where(0.0 > idle, 0.0, idle)),  # max(idle, 0.0)
                         ("flops_per_chip", gemm + decode), ("memory_bytes_per_chip", resident + kv),
                         ("stream_bytes_per_chip", streamed),
                         ("network_bytes_per_chip", per_row([s.network_bytes_per_chip for s in spans])),
                         ("swap_bytes_per_chip", 0.0), ("chips", per_row([s.chips for s in spans])),
                         ("prefill_tokens", per_row([s.prefill_tokens for s in spans])),
                         ("decode_tokens", per_row([s.decode_tokens for s in spans])),
                         ("output_tokens", per_row([s.output_tokens for s in spans])),
                         ("batch_size", per_row([s.batch_size for s in spans])),
                         ("decode_context_tokens", context), ("kv_blocks_used", blocks))}


def _before(cumulative: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The cumulative count before each span's first row."""
    return np.where(first > 0, cumulative[np.maximum(first - 1, 0)], 0)
