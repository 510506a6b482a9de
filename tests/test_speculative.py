"""Speculative decoding: expected yield per step from its closed form, and its cost-benefit on TPOT."""

import numpy as np
import pytest
from conftest import REPO, cli_error

from simulator import load_scenario, run
from simulator.errors import ScenarioError
from simulator.serving.speculation import Speculation


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
    assert good["requests"]["completed"] == 16


def deepseek(overrides):
    path = REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml"
    base = ["model=deepseek-v3", "cluster=hgx-h200", "workload.arrival={kind: closed_loop, users: 4}",
            "workload.num_requests=8", "workload.output_tokens={kind: fixed, value: 200}",
            "workload.prompt_tokens={kind: fixed, value: 512}"]
    return run(load_scenario(path, base + overrides)).summary


def test_mtp_heads_draft_for_a_model_that_has_them():
    plain = deepseek([])["tpot_s"]["p50"]
    mtp = deepseek(["serving.speculative.tokens=1", "serving.speculative.acceptance=0.7"])
    assert mtp["tpot_s"]["p50"] < plain  # one MTP layer drafts for 1.7 tokens per step
    # one MTP layer of DeepSeek-V3's 61 drafts: a small share of the step
    assert 0 < mtp["speculative"]["draft_share"] < 0.05


def test_mtp_without_mtp_heads_is_refused_in_one_line(write_scenario):
    path = write_scenario({"serving.speculative": {"tokens": 1, "acceptance": 0.7}})
    assert cli_error("run", path) == (
        f"{path}: serving.speculative.draft_model: is not set, so multi-token-prediction heads would draft, but "
        "model llama-3.1-8b has none (its config.json has no num_nextn_predict_layers); allowed: a draft_model, "
        "or a model with MTP heads (e.g. deepseek-v3)")


@pytest.mark.parametrize("k, a", [(4, 0.8), (2, 0.5)])
def test_the_summary_reports_acceptance_and_where_decode_time_went(k, a):
    s = tpot(["serving.speculative.draft_model=llama-3.1-8b", f"serving.speculative.tokens={k}",
              f"serving.speculative.acceptance={a}"])
    sp = s["speculative"]
    # a draft token is accepted with probability a once the previous one was: of k drafted per step,
    # a (1 - a^k) / (1 - a) are accepted on average
    expected = a * (1 - a**k) / (k * (1 - a))
    assert sp["expected_acceptance_rate"] == pytest.approx(expected)
    steps = sp["drafted_tokens"] / k
    sd = np.sqrt(1 / (4 * steps))  # accepted / k per step lies in [0, 1]: variance at most 1/4 per step
    assert sp["acceptance_rate"] == pytest.approx(expected, abs=4 * sd)
    assert sp["accepted_tokens"] == round(sp["acceptance_rate"] * sp["drafted_tokens"])
    # 16 requests x 399 decode tokens, each step yields accepted drafts + 1 (the last step's overshoot aside)
    assert sp["measured_tokens_per_step"] == pytest.approx(16 * 399 / steps)
    assert sp["measured_tokens_per_step"] <= sp["tokens_per_step"] * 1.02
    assert 0 < sp["draft_s_per_step"] < sp["verify_s_per_step"]  # an 8B draft for a 70B target


def test_draft_and_verify_time_add_up_to_the_decode_iterations():
    result = run(load_scenario(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml", [
        "workload.arrival={kind: closed_loop, users: 4}", "workload.num_requests=8",
        "workload.output_tokens={kind: fixed, value: 100}", "serving.speculative.draft_model=llama-3.1-8b",
        "serving.speculative.tokens=3", "serving.speculative.acceptance=0.6"]))
    sp, it = result.summary["speculative"], result.iterations
    decode = it[it["decode_tokens"] > 0]
    assert sp["draft_s"] + sp["verify_s"] == pytest.approx(decode["duration_s"].sum(), rel=1e-9)
    assert sp["draft_s_per_step"] == pytest.approx(sp["draft_s"] / len(decode))
    req = result.requests
    assert (req["drafted_tokens"] > 0).all() and (req["accepted_tokens"] <= req["drafted_tokens"]).all()


def test_speculation_needs_reserve_kv_and_no_pipeline(write_scenario):
    path = write_scenario({"serving.speculative": {"tokens": 2, "acceptance": 0.5},
                           "serving.batcher.kv_policy": "paged"})
    with pytest.raises(ScenarioError, match="serving.speculative: is modelled with pipeline_parallel 1 and "
                                            "kv_policy reserve"):
        run(load_scenario(path))
