"""Speculative decoding's yield per request: how many decode steps it takes, and how many drafted tokens the
target accepted, sampled once when a request starts decoding."""

from __future__ import annotations

import numpy as np


class Speculation:
    """Speculative decoding's yield: each step drafts k tokens, accepted one by one with probability a
    until the first rejection, plus the token the verification itself produces, so a step yields
    min(G, k + 1) tokens with G geometric; the mean is (1 - a^(k+1)) / (1 - a) (Leviathan et al., 2023)."""

    def __init__(self, tokens: int, acceptance: float, rng: np.random.Generator):
        self.tokens, self.acceptance, self.rng = tokens, acceptance, rng
        self.expected_tokens = (1 - acceptance ** (tokens + 1)) / (1 - acceptance)

    def plan(self, remaining: int) -> tuple[int, int]:
        """(decode steps one request needs for `remaining` tokens, drafted tokens the target accepted over
        them: every step's yield but its own verified token, the last step's counted whole, as an engine
        counts it before the request stops at its length)."""
        if remaining <= 0:
            return 0, 0
        draws = np.minimum(self.rng.geometric(1 - self.acceptance, size=remaining), self.tokens + 1)
        steps = int(np.searchsorted(np.cumsum(draws), remaining) + 1)
        return steps, int(draws[:steps].sum()) - steps

    def steps(self, remaining: int) -> int:
        """Decode steps one request needs for `remaining` tokens."""
        return self.plan(remaining)[0]
