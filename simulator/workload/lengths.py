"""Prompt and output lengths (tokens) from seeded streams: fixed, uniform, lognormal and empirical.

Empirical lengths are resampled with replacement from observed values: a trace file's column or a list.
Prompt and output are independent unless (a) `correlation` is set: a Gaussian copula, each length the
quantile of one of two normals with that correlation (the rank correlation of the lengths is then
6/pi * asin(rho / 2), within 0.02 of rho), or (b) both are empirical from the same file: whole rows are drawn,
which keeps the trace's own pairing of prompt and output.
"""

from __future__ import annotations

import math

import numpy as np

from simulator.config.fields import MAX_TOKENS
from simulator.config.workload import EmpiricalLength, FixedLength, Lengths, LognormalLength, UniformLength
from simulator.workload.tracefile import TraceRequests
from simulator.workload.traces import read_lengths

Cache = dict[tuple[str, str], TraceRequests]
_normal_cdf = np.vectorize(lambda z: 0.5 * math.erfc(-z / math.sqrt(2.0)), otypes=[np.float64])


def empirical_values(spec: EmpiricalLength, column: str, cache: Cache) -> np.ndarray:
    """The observed lengths: the inline values, or the trace's prompt or output column."""
    if spec.values is not None:
        return np.asarray(spec.values, dtype=np.int64)
    assert spec.format is not None and spec.path is not None  # the schema requires both
    data = read_lengths(spec.format, spec.path, cache)
    return data.prompt_tokens if column == "prompt" else data.output_tokens


def sample_lengths(spec: Lengths, n: int, rng: np.random.Generator, column: str = "prompt",
                   cache: Cache | None = None) -> np.ndarray:
    """n independent lengths; `column` says which trace column an empirical length resamples."""
    if isinstance(spec, FixedLength):
        return np.full(n, spec.value, dtype=np.int64)
    if isinstance(spec, UniformLength):
        return rng.integers(spec.low, spec.high + 1, size=n, dtype=np.int64)
    if isinstance(spec, LognormalLength):
        mu = np.log(spec.mean) - spec.sigma**2 / 2.0  # so that the mean is spec.mean
        values = np.rint(rng.lognormal(mu, spec.sigma, size=n))
        return np.clip(values, 1, spec.max or MAX_TOKENS).astype(np.int64)
    if isinstance(spec, EmpiricalLength):
        values = empirical_values(spec, column, {} if cache is None else cache)
        return values[rng.integers(0, len(values), size=n)]
    raise TypeError(f"unknown length distribution {spec!r}")


def quantile_lengths(spec: Lengths, z: np.ndarray, column: str, cache: Cache) -> np.ndarray:
    """The lengths at the standard-normal quantiles z (inverse CDF), for the copula."""
    if isinstance(spec, FixedLength):
        return np.full(len(z), spec.value, dtype=np.int64)
    if isinstance(spec, LognormalLength):
        mu = np.log(spec.mean) - spec.sigma**2 / 2.0
        values = np.rint(np.exp(mu + spec.sigma * z))
        return np.clip(values, 1, spec.max or MAX_TOKENS).astype(np.int64)
    u = _normal_cdf(z)
    if isinstance(spec, UniformLength):
        width = spec.high - spec.low + 1
        return spec.low + np.minimum(np.floor(u * width), width - 1).astype(np.int64)
    if isinstance(spec, EmpiricalLength):
        values = np.sort(empirical_values(spec, column, cache))
        return values[np.minimum(np.floor(u * len(values)).astype(np.int64), len(values) - 1)]
    raise TypeError(f"unknown length distribution {spec!r}")


def _shared_file(a: Lengths, b: Lengths) -> EmpiricalLength | None:
    """`a` when both lengths resample the same trace file (so whole rows can be drawn), else None."""
    if isinstance(a, EmpiricalLength) and isinstance(b, EmpiricalLength) and a.path is not None \
            and (a.format, a.path) == (b.format, b.path):
        return a
    return None


def sample_pair(prompt: Lengths | None, output: Lengths | None, n: int, correlation: float | None,
                rngs: tuple[np.random.Generator, np.random.Generator], cache: Cache,
                trace: TraceRequests | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output lengths of n requests; a side left None is taken from `trace` (its own lengths)."""
    prompt_rng, output_rng = rngs
    if prompt is None or output is None:
        assert trace is not None  # the schema requires lengths unless the stream is a trace
        return (trace.prompt_tokens if prompt is None else
                sample_lengths(prompt, n, prompt_rng, "prompt", cache),
                trace.output_tokens if output is None else
                sample_lengths(output, n, output_rng, "output", cache))
    if correlation is None:
        shared = _shared_file(prompt, output)
        if shared is not None and shared.format is not None and shared.path is not None:
            data = read_lengths(shared.format, shared.path, cache)
            rows = data.take(prompt_rng.integers(0, len(data), size=n))
            return rows.prompt_tokens, rows.output_tokens
        return (sample_lengths(prompt, n, prompt_rng, "prompt", cache),
                sample_lengths(output, n, output_rng, "output", cache))
    z_prompt = prompt_rng.standard_normal(n)
    z_output = correlation * z_prompt + math.sqrt(1.0 - correlation**2) * output_rng.standard_normal(n)
    return (quantile_lengths(prompt, z_prompt, "prompt", cache),
            quantile_lengths(output, z_output, "output", cache))
