"""Speculative decoding: expected yield per step from its closed form, and its cost-benefit on TPOT."""

import numpy as np
import pytest
from conftest import REPO

from simulator import load_scenario, run
from simulator.errors import ScenarioError
from simulator.serving.batcher import Speculation


@pytest.mark.parametrize("k, a", [(4, 0.8), (2, 0.5), (6, 0.0)])
def test_sampled_steps_match_the_closed_form_yield(k, a):
    spec = Speculation(k, a, np.random.default_rng(0))
    assert spec.expected_tokens == pytest.approx((1 - a ** (k + 1)) / (1 - a))
    remaining = 2000
    steps = np.array([spec.steps(remaining) for _ in range(400)])
    # renewal theory: steps to produce n tokens ~ n / E[yield] (plus under one step of overshoot)
    assert steps.mean() == pytest.approx(remaining / spec.expected_tokens, rel=0.02)
    assert spec.steps(1) == 1 and spec.steps(0) == 0


def tpot(overrides):
    path = REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml"
    base = ["workload.arrival={kind: closed_loop, users: 4}", "workload.num_requests=16",
            "workload.output_tokens={kind: fixed, value: 400}"]
    return run(load_scenario(path, base + overrides)).summary


def test_speculation_pays_off_with_high_acceptance_and_costs_with_none():
    plain = tpot([])["tpot_s"]["p50"]
    draft = ["serving.speculative.draft_model=llama-3.1-8b", "serving.speculative.tokens=4"]
    good = tpot(draft + ["serving.speculative.acceptance=0.8"])
    useless = tpot(draft + ["serving.speculative.acceptance=0.0"])
    assert good["tpot_s"]["p50"] < 0.6 * plain  # 3.36 tokens per step for ~1.5x the step cost
    assert useless["tpot_s"]["p50"] > plain  # one token per step, and the draft and verify costs on top
    mtp = tpot(["serving.speculative.tokens=1", "serving.speculative.acceptance=0.7"])["tpot_s"]["p50"]
    assert mtp < plain  # one MTP layer drafts for 1.7 tokens per step
    assert good["requests"]["completed"] == 16


def test_speculation_needs_reserve_kv_and_no_pipeline(write_scenario):
    path = write_scenario({"serving.speculative": {"tokens": 2, "acceptance": 0.5},
                           "serving.batcher.kv_policy": "paged"})
    with pytest.raises(ScenarioError, match="serving.speculative: is modelled with pipeline_parallel 1 and "
                                            "kv_policy reserve"):
        run(load_scenario(path))
