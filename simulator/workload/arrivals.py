"""Synthetic workloads: arrival times and prompt/output lengths as numpy arrays, from one seed.

Poisson arrivals are exact (exponential gaps, never clipped). Closed-loop workloads have no arrival times
up front: the engine releases a user's next request when its previous one finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.config.schema import (ClosedLoopArrivals, FixedLength, Lengths, LognormalLength,
                                     PoissonArrivals, UniformLength, WorkloadSpec)


@dataclass(frozen=True)
class Requests:
    """Every request of a run, indexed by request id. Arrival times are NaN for closed-loop workloads."""
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    closed_loop_users: int = 0
    think_time_s: float = 0.0

    def __len__(self) -> int:
        return len(self.prompt_tokens)


def sample_lengths(spec: Lengths, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(spec, FixedLength):
        return np.full(n, spec.value, dtype=np.int64)
    if isinstance(spec, UniformLength):
        return rng.integers(spec.low, spec.high + 1, size=n, dtype=np.int64)
    if isinstance(spec, LognormalLength):
        mu = np.log(spec.mean) - spec.sigma**2 / 2.0  # so that the mean is spec.mean
        values = np.rint(rng.lognormal(mu, spec.sigma, size=n))
        return np.clip(values, 1, spec.max or np.iinfo(np.int64).max).astype(np.int64)
    raise TypeError(f"unknown length distribution {spec!r}")


def poisson_arrivals(rate_per_s: float, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.cumsum(rng.exponential(1.0 / rate_per_s, size=n))


def generate(spec: WorkloadSpec, seed: int) -> Requests:
    """The workload's requests; the same spec and seed always give the same arrays."""
    arrival_rng, prompt_rng, output_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    n = spec.num_requests
    prompts = sample_lengths(spec.prompt_tokens, n, prompt_rng)
    outputs = sample_lengths(spec.output_tokens, n, output_rng)
    if isinstance(spec.arrival, PoissonArrivals):
        return Requests(poisson_arrivals(spec.arrival.rate, n, arrival_rng), prompts, outputs)
    if isinstance(spec.arrival, ClosedLoopArrivals):
        return Requests(np.full(n, np.nan), prompts, outputs, closed_loop_users=spec.arrival.users,
                        think_time_s=spec.arrival.think_time)
    raise TypeError(f"unknown arrival process {spec.arrival!r}")
