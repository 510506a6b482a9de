"""Speculative decoding's figures for summary.json: how often drafts were accepted, and where decode time went
(drafting against verifying).

- acceptance_rate: drafted tokens the target accepted / tokens drafted (what engines report), over the requests
  that finished (each request's steps are sampled when it starts decoding: `serving/speculation.py`).
  configured_acceptance is the per-token probability a the scenario set (a draft token is accepted with it
  once the previous one was); with k tokens drafted per step the expected acceptance rate is
  a (1 - a^k) / (k (1 - a)) (expected_acceptance_rate), and a step yields (1 - a^(k+1)) / (1 - a) tokens
  (tokens_per_step); measured_tokens_per_step: the completed requests' decode tokens over their decode steps.
- draft_s: the drafter's time in every decode iteration (k decode passes of the draft model, or k MTP layers),
  recomputed from each iteration's batch shape (its decode context read back as whole tokens); verify_s: the
  rest of those iterations, the target's pass that scores the drafts (with any prefill chunk batched with it).
  Both are summed over replicas (replica-seconds); *_per_step are their means per decode iteration.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from simulator.config.serving import SpeculativeSpec
from simulator.hardware.roofline import BatchShape, Drafter
from simulator.results.iteration_store import IterationStore


def speculation_summary(spec: SpeculativeSpec, drafter: Drafter, req: pd.DataFrame,
                        iterations: IterationStore) -> dict[str, Any]:
    a, k = spec.acceptance, spec.tokens
    done = req[(req["status"] == "completed") & (req["drafted_tokens"] > 0)]
    drafted, accepted = int(done["drafted_tokens"].sum()), int(done["accepted_tokens"].sum())
    steps = drafted / spec.tokens  # every decode step drafts `tokens` tokens
    draft_s = verify_s = 0.0
    decode_steps = 0
    for part in iterations.chunks(["duration_s", "decode_tokens", "decode_context_tokens"]):
        for duration, tokens, context in zip(part["duration_s"].tolist(), part["decode_tokens"].tolist(),
                                             part["decode_context_tokens"].tolist()):
            if tokens <= 0:
                continue
            draft = drafter.cost(BatchShape(0, 0, 0, tokens, context, tokens)).roofline_s
            draft_s += draft
            verify_s += max(duration - draft, 0.0)
            decode_steps += 1
    return {
        "tokens": spec.tokens,
        "configured_acceptance": spec.acceptance,
        "acceptance_rate": accepted / drafted if drafted else None,
        "expected_acceptance_rate": a * (1 - a**k) / (k * (1 - a)),
        "tokens_per_step": (1 - a ** (k + 1)) / (1 - a),
        "measured_tokens_per_step": float((done["output_tokens"] - 1).sum()) / steps if steps else None,
        "drafted_tokens": drafted,
        "accepted_tokens": accepted,
        "draft_s": draft_s,
        "verify_s": verify_s,
        "draft_s_per_step": draft_s / decode_steps if decode_steps else None,
        "verify_s_per_step": verify_s / decode_steps if decode_steps else None,
        "draft_share": draft_s / (draft_s + verify_s) if draft_s + verify_s > 0 else None,
    }
