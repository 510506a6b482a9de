"""SLO attainment and goodput against a hand computation, the inter-token latency distribution, and the
search for the highest rate under an SLO."""

import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from simulator import load_scenario, run
from simulator.cli import app
from simulator.errors import ScenarioError
from simulator.results.slo import itl_samples, weighted_stats
from simulator.studies.slo_search import max_rate_under_slo

TWO_CLASSES = {
    "workload.classes": [{"name": "a", "weight": 1, "slo": {"ttft": "30 ms"}}, {"name": "b", "weight": 1}],
    "serving.slo": {"ttft": "45 ms", "tpot": "12 ms"},  # a inherits tpot; b takes both
}


def test_attainment_and_goodput_match_a_hand_computation(write_scenario, tmp_path):
    result = run(load_scenario(write_scenario(TWO_CLASSES)))
    result.write(tmp_path / "out", plots=False)
    req = pd.read_parquet(tmp_path / "out" / "requests.parquet")
    limits = {"a": (0.030, 0.012), "b": (0.045, 0.012)}
    met = np.array([status == "completed" and ttft <= limits[cls][0]
                    and (math.isnan(tpot) or tpot <= limits[cls][1])
                    for status, cls, ttft, tpot in zip(req["status"], req["class"], req["ttft_s"],
                                                       req["tpot_s"])])
    assert (req["meets_slo"].to_numpy() == met).all()
    assert 0.2 < met.mean() < 0.95  # the targets bite: some requests meet them, some do not
    s, span = result.summary["slo"], result.summary["sim"]["simulated_s"]
    assert s["met"] == met.sum()
    assert s["attainment"] == met.sum() / 300
    assert s["goodput_requests_per_s"] == met.sum() / span
    for name, (ttft, tpot) in limits.items():
        mine = (req["class"] == name).to_numpy()
        c = s["per_class"][name]
        assert (c["ttft_target_s"], c["tpot_target_s"]) == pytest.approx((ttft, tpot), rel=1e-12)
        assert c["arrived"] == c["completed"] == mine.sum()
        assert c["attainment"] == (met & mine).sum() / mine.sum()
        assert c["goodput_requests_per_s"] == (met & mine).sum() / span
        assert c["ttft_s"]["p99"] == pytest.approx(np.percentile(req.loc[mine, "ttft_s"], 99), rel=1e-12)


def test_without_targets_every_completed_request_meets_its_slo(write_scenario):
    result = run(load_scenario(write_scenario(), ["sim.max_time=5 s"]))
    req, s = result.requests, result.summary
    assert (req["meets_slo"] == (req["status"] == "completed")).all()
    assert s["slo"]["attainment"] == s["requests"]["completed"] / s["requests"]["arrived"] < 1
    assert s["slo"]["per_class"]["default"]["ttft_target_s"] is None


def test_weighted_percentiles_equal_percentiles_of_the_repeated_values():
    rng = np.random.default_rng(0)
    values, weights = rng.exponential(size=200), rng.integers(0, 50, size=200)
    expanded = np.repeat(values, weights)
    stats = weighted_stats(values, weights)
    assert stats["mean"] == pytest.approx(expanded.mean(), rel=1e-12)
    for q in (50, 90, 99):
        assert stats[f"p{q}"] == pytest.approx(np.percentile(expanded, q), rel=1e-12)
    assert weighted_stats([], []) == {"mean": None, "p50": None, "p90": None, "p99": None}


def test_itl_with_chunked_prefill_is_iteration_durations_weighted_by_decode_tokens(write_scenario):
    result = run(load_scenario(write_scenario()))
    it, itl = result.iterations, result.summary["itl_s"]
    expanded = np.repeat(it["duration_s"].to_numpy(), it["decode_tokens"].to_numpy())
    assert itl["mean"] == pytest.approx(expanded.mean(), rel=1e-9)
    for q in (50, 90, 99):
        assert itl[f"p{q}"] == pytest.approx(np.percentile(expanded, q), rel=1e-9)


@pytest.mark.parametrize("chunked", [True, False])
def test_inter_token_gaps_add_up_to_every_requests_decode_time(write_scenario, chunked):
    # every token after the first follows another, so the gaps of all decode tokens sum to
    # sum(finish - first token); without chunked prefill that includes decodes paused by prefill iterations
    path = write_scenario({"workload.output_tokens": {"kind": "uniform", "low": 2, "high": 200},
                           "serving.batcher.chunked_prefill": chunked})
    result = run(load_scenario(path))
    req = result.requests
    gaps, weights = itl_samples(result.iterations)
    assert weights.sum() == (req["output_tokens"] - 1).sum()
    assert (gaps * weights).sum() == pytest.approx((req["finish_s"] - req["first_token_s"]).sum(), rel=1e-9)
    paused = (gaps > result.iterations["duration_s"].max() * 1.0001).any()
    assert paused != chunked  # only prefill-only iterations make a gap longer than any one iteration


# ---------------------------------------------------------------- max rate under SLO

def test_rate_search_brackets_the_answer(write_scenario):
    path = write_scenario({"serving.slo": {"ttft": "80 ms", "tpot": "12 ms"}})
    result = max_rate_under_slo(path, target=0.9, max_runs=12)
    table = result.table
    assert 3 <= len(table) <= 12 and result.status == "bracketed"
    at = table[table["rate_per_s"] == result.rate].iloc[0]
    assert at["attainment"] >= 0.9 and at["passes"]
    above = table[table["rate_per_s"] > result.rate]
    nxt = above.loc[above["rate_per_s"].idxmin()]
    assert nxt["rate_per_s"] == result.hi and nxt["attainment"] < 0.9
    assert (table["passes"] == (table["attainment"] >= 0.9)).all()
    assert result.hi / result.rate - 1 <= 0.02 or len(table) == 12
    again = max_rate_under_slo(path, target=0.9, max_runs=12)
    assert again.table.equals(table)  # deterministic


def test_rate_search_with_bounds_that_both_pass_or_fail(write_scenario):
    path = write_scenario({"serving.slo": {"ttft": "80 ms", "tpot": "12 ms"}})
    easy = max_rate_under_slo(path, low=1, high=2)
    assert (easy.rate, easy.hi, len(easy.table)) == (2, None, 2)
    hard = max_rate_under_slo(path, low=500, high=1000)
    assert (hard.rate, hard.hi, len(hard.table)) == (None, 500, 1)


def test_rate_search_refuses_a_closed_loop_scenario(write_scenario):
    path = write_scenario({"workload.arrival": {"kind": "closed_loop", "users": 8},
                           "serving.slo": {"ttft": "80 ms"}})
    message = (f"{path}: workload.arrival.rate: slo-search varies an open-loop arrival rate, but "
               "workload.arrival is closed_loop; allowed: daily, gamma, on_off, poisson, trace")
    with pytest.raises(ScenarioError) as err:
        max_rate_under_slo(path)
    assert str(err.value) == message
    cli = CliRunner().invoke(app, ["slo-search", str(path)])
    assert cli.exit_code == 2 and cli.stderr == f"error: {message}\n"


def test_rate_search_needs_targets(write_scenario):
    with pytest.raises(ScenarioError, match="slo-search needs latency targets"):
        max_rate_under_slo(write_scenario())


def test_cli_prints_the_tried_rates_and_the_answer(write_scenario):
    path = write_scenario({"serving.slo": {"ttft": "80 ms", "tpot": "12 ms"}})
    cli = CliRunner().invoke(app, ["slo-search", str(path), "--low", "10 /s", "--high", "80/s",
                                   "--max-runs", "5"])
    assert cli.exit_code == 0, cli.output
    assert "TTFT p99 (ms)" in cli.stdout and "max rate under SLO: " in cli.stdout
