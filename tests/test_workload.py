"""Synthetic workloads: arrival processes against their parameters, lengths, classes, determinism, errors."""

import math

import numpy as np
import pytest
from conftest import REPO, cli_error

from simulator.config.workload import WorkloadSpec
from simulator.workload.arrivals import daily_rate, generate
from simulator.workload.traces import read_trace

N = 100_000
CODE = str(REPO / "workloads" / "traces" / "azure" / "code.csv")
FIXED = {"prompt_tokens": {"kind": "fixed", "value": 100}, "output_tokens": {"kind": "fixed", "value": 10}}


def workload(**fields) -> WorkloadSpec:
    return WorkloadSpec.model_validate({**FIXED, **fields})


def gamma_cv_standard_error(cv: float, n: int) -> float:
    """Delta method for the sample CV of gamma gaps (shape k = 1/cv^2): skewness 2 cv, kurtosis 3 + 6 cv^2."""
    kurtosis, skewness = 3 + 6 * cv**2, 2 * cv
    return math.sqrt(cv**2 * ((kurtosis - 1) / 4 - skewness * cv + cv**2) / n)


@pytest.mark.parametrize("arrival, cv", [({"kind": "poisson", "rate": "8 /s"}, 1.0),
                                         ({"kind": "gamma", "rate": "8 /s", "cv": 3.0}, 3.0),
                                         ({"kind": "gamma", "rate": "8 /s", "cv": 0.5}, 0.5)])
def test_inter_arrival_mean_and_cv_match_the_parameters(arrival, cv):
    gaps = np.diff(generate(workload(arrival=arrival, num_requests=N + 1), seed=11).arrival_s)
    assert len(gaps) == N
    mean_se = cv / 8 / math.sqrt(N)
    assert abs(gaps.mean() - 1 / 8) < 4 * mean_se
    assert abs(gaps.std() / gaps.mean() - cv) < 4 * gamma_cv_standard_error(cv, N)
    assert gaps.min() >= 0


def test_a_single_poisson_class_draws_exactly_what_it_always_drew():
    """Keeps every older scenario's golden summary: stream 0 for arrivals, 1 and 2 for lengths."""
    spec = workload(arrival={"kind": "poisson", "rate": "4 /s"}, num_requests=500,
                    prompt_tokens={"kind": "lognormal", "mean": 1000, "sigma": 0.8})
    arrival_rng, prompt_rng, _ = (np.random.default_rng(s) for s in np.random.SeedSequence(9).spawn(3))
    r = generate(spec, 9)
    assert np.array_equal(r.arrival_s, np.cumsum(arrival_rng.exponential(1 / 4, size=500)))
    mu = np.log(1000) - 0.8**2 / 2
    assert np.array_equal(r.prompt_tokens, np.clip(np.rint(prompt_rng.lognormal(mu, 0.8, 500)), 1, None))
    assert r.class_names == ("default",) and not r.class_id.any() and r.prefix_hashes is None


def test_same_seed_same_requests_other_seed_other_requests():
    spec = WorkloadSpec.model_validate({
        "duration": "60 s",
        "classes": [
            {"name": "replay", "num_requests": 300,
             "arrival": {"kind": "trace", "format": "azure", "path": CODE, "resample": True}},
            {"name": "chat", "arrival": {"kind": "gamma", "rate": "3 /s", "cv": 2},
             "prompt_tokens": {"kind": "empirical", "format": "azure", "path": CODE},
             "output_tokens": {"kind": "lognormal", "mean": 200, "sigma": 1}, "correlation": 0.5}]})
    a, b, c = generate(spec, 5), generate(spec, 5), generate(spec, 6)
    for field in ("arrival_s", "prompt_tokens", "output_tokens", "class_id"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert not np.array_equal(a.arrival_s[:50], c.arrival_s[:50])


def test_offline_puts_every_request_at_time_zero():
    r = generate(workload(arrival={"kind": "offline"}, num_requests=64), 0)
    assert len(r) == 64 and not r.arrival_s.any() and r.closed_loop_users == 0


def test_closed_loop_has_no_arrival_times_and_keeps_its_users():
    spec = workload(arrival={"kind": "closed_loop", "users": 8, "think_time": "2 s"}, num_requests=40)
    r = generate(spec, 0)
    assert np.isnan(r.arrival_s).all() and r.closed_loop_users == 8 and r.think_time_s == 2.0


def test_duration_bounds_the_arrivals_and_sets_their_number():
    t = generate(workload(arrival={"kind": "poisson", "rate": "50 /s"}, duration="200 s"), 2).arrival_s
    assert t.max() < 200 and abs(len(t) - 10_000) < 4 * math.sqrt(10_000)


def test_on_off_bursts_arrive_only_while_on_at_the_mean_rate():
    spec = workload(arrival={"kind": "on_off", "rate": "20 /s", "on_time": "2 s", "off_time": "8 s",
                             "durations": "fixed"}, duration="2000 s")
    t = generate(spec, 3).arrival_s
    assert (np.mod(t, 10.0) < 2.0).all()  # nothing in the 8 s off periods
    expected = 20 * 2 / 10 * 2000  # mean rate 4 /s
    assert abs(len(t) - expected) < 4 * math.sqrt(expected)
    random = workload(arrival={"kind": "on_off", "rate": "20 /s", "on_time": "2 s", "off_time": "8 s"},
                      num_requests=20_000)
    gaps = np.diff(generate(random, 3).arrival_s)
    assert gaps.std() / gaps.mean() > 2  # bursty
    assert 1 / gaps.mean() == pytest.approx(4.0, rel=0.1)  # exponential periods: ~1,000 cycles, ~3% error


def test_daily_curve_peak_and_trough_rates_hold():
    spec = workload(arrival={"kind": "daily", "rate": "2 /s", "period": "1 h", "peak_to_trough": 4,
                             "peak_at": "30 min"}, duration="10 h")
    t = generate(spec, 4).arrival_s
    phase = np.mod(t, 3600)
    peak = np.sum(np.abs(phase - 1800) < 60)  # two minutes around the peak, 10 days
    trough = np.sum((phase < 60) | (phase > 3540))
    assert peak / trough == pytest.approx(4.0, rel=0.15)
    assert len(t) / 36_000 == pytest.approx(2.0, rel=0.03)


def test_daily_curve_points_are_joined_linearly_and_zero_means_no_traffic():
    arrival = {"kind": "daily", "rate": "3 /s", "period": "400 s", "curve": [1, 0, 0, 1]}
    assert daily_rate(WorkloadSpec.model_validate({**FIXED, "arrival": arrival, "duration": 1}).arrival,
                      np.array([0.0, 50.0, 150.0, 350.0])) == pytest.approx([6.0, 3.0, 0.0, 6.0])
    t = generate(workload(arrival=arrival, duration="4000 s"), 1).arrival_s
    assert not np.any((np.mod(t, 400) > 100) & (np.mod(t, 400) < 200))
    assert len(t) == pytest.approx(12_000, rel=0.05)


def test_empirical_lengths_resample_the_given_values():
    spec = workload(arrival={"kind": "offline"}, num_requests=40_000,
                    prompt_tokens={"kind": "empirical", "values": [10, 10, 10, 400]})
    prompt = generate(spec, 0).prompt_tokens
    assert set(prompt.tolist()) == {10, 400}
    assert np.mean(prompt == 400) == pytest.approx(0.25, abs=4 * math.sqrt(0.25 * 0.75 / 40_000))


def test_empirical_lengths_from_one_file_keep_the_traces_pairs():
    trace = read_trace("azure", CODE)
    pairs = set(zip(trace.prompt_tokens.tolist(), trace.output_tokens.tolist()))
    spec = workload(arrival={"kind": "offline"}, num_requests=2000,
                    prompt_tokens={"kind": "empirical", "format": "azure", "path": CODE},
                    output_tokens={"kind": "empirical", "format": "azure", "path": CODE})
    r = generate(spec, 0)
    assert set(zip(r.prompt_tokens.tolist(), r.output_tokens.tolist())) <= pairs


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


@pytest.mark.parametrize("rho", [0.8, 0.0, -0.5])
def test_correlation_couples_prompt_and_output_lengths(rho):
    spec = workload(arrival={"kind": "offline"}, num_requests=20_000, correlation=rho,
                    prompt_tokens={"kind": "lognormal", "mean": 2000, "sigma": 1.0},
                    output_tokens={"kind": "uniform", "low": 1, "high": 100_000})
    r = generate(spec, 8)
    expected = 6 / math.pi * math.asin(rho / 2)
    assert spearman(r.prompt_tokens, r.output_tokens) == pytest.approx(expected, abs=0.02)
    assert r.prompt_tokens.mean() == pytest.approx(2000, rel=0.05)  # the marginals stay as given
    assert r.output_tokens.min() >= 1 and r.output_tokens.max() <= 100_000


def test_weighted_classes_split_the_shared_stream_with_their_own_lengths():
    spec = WorkloadSpec.model_validate({
        "arrival": {"kind": "poisson", "rate": "10 /s"}, "num_requests": 10_000,
        "prompt_tokens": {"kind": "fixed", "value": 500}, "output_tokens": {"kind": "fixed", "value": 50},
        "classes": [{"name": "chat", "weight": 3}, {"name": "code", "weight": 1,
                                                    "prompt_tokens": {"kind": "fixed", "value": 7000},
                                                    "slo": {"ttft": "300 ms"}}]})
    r = generate(spec, 1)
    assert r.class_names == ("chat", "code") and len(r) == 10_000
    assert np.all(np.diff(r.arrival_s) >= 0)
    code = r.class_id == 1
    assert code.mean() == pytest.approx(0.25, abs=4 * math.sqrt(0.25 * 0.75 / 10_000))
    assert (r.prompt_tokens[code] == 7000).all() and (r.prompt_tokens[~code] == 500).all()
    assert (r.output_tokens == 50).all()
    assert spec.classes[1].slo.ttft == 0.3


def test_classes_with_their_own_arrivals_merge_in_time_order():
    spec = WorkloadSpec.model_validate({
        **FIXED, "duration": "100 s",
        "classes": [{"name": "steady", "arrival": {"kind": "poisson", "rate": "5 /s"}},
                    {"name": "batch", "arrival": {"kind": "offline"}, "num_requests": 30,
                     "output_tokens": {"kind": "fixed", "value": 900}}]})
    r = generate(spec, 2)
    assert np.all(np.diff(r.arrival_s) >= 0)
    batch = r.class_id == 1
    assert batch.sum() == 30 and (r.arrival_s[batch] == 0).all() and (r.output_tokens[batch] == 900).all()
    assert abs((~batch).sum() - 500) < 4 * math.sqrt(500) and r.arrival_s.max() < 100


# ---------------------------------------------------------------- user mistakes: one line, exact text



@pytest.mark.parametrize("overrides, expected", [
    ({"workload.arrival": {"kind": "gamma", "rate": "2 /s"}},
     "{f}: workload.arrival.cv: required key is missing"),
    ({"workload.arrival": {"kind": "on_off", "rate": 5, "on_time": "1 s", "off": "9 s"}},  # YAML: off = false
     "{f}: workload.arrival.off_time: required key is missing"),
    ({"workload.num_requests": None, "workload.duration": None},
     "{f}: workload: poisson arrivals need num_requests or duration (one of them)"),
    ({"workload.output_tokens": None},
     "{f}: workload: needs output_tokens (only a trace brings its own lengths)"),
    ({"workload.prompt_tokens": {"kind": "empirical", "path": "x.csv"}},
     "{f}: workload.prompt_tokens: path needs a format: azure, mooncake, burstgpt or sharegpt"),
    ({"workload.arrival": {"kind": "trace", "format": "sharegpt", "path": "x.csv"}},
     "{f}: workload.arrival.format: 'sharegpt' is not one of: azure, burstgpt, mooncake, servegen"),
    ({"workload.arrival": {"kind": "trace", "format": "azure", "path": "x.csv", "rate": 2, "time_scale": 2}},
     "{f}: workload.arrival: give time_scale or rate, not both"),
    ({"workload.arrival": {"kind": "daily", "rate": 2, "period": "1 h", "peak_at": "2 h"}},
     "{f}: workload.arrival: peak_at (7200 s) must be < period (3600 s)"),
    ({"workload.classes": [{"name": "a", "weight": 1, "arrival": {"kind": "offline"}}]},
     "{f}: workload: class 'a' needs a weight (a share of the workload's arrival) or its own arrival, "
     "not both"),
    ({"workload.classes": [{"name": "a", "arrival": {"kind": "offline"}}]},
     "{f}: workload: the workload's arrival is shared by classes with a weight, and no class has one"),
    ({"workload.arrival": {"kind": "trace", "format": "azure", "path": "missing.csv"}},
     "{d}/missing.csv: file not found"),
])
def test_workload_mistakes(write_scenario, overrides, expected):
    path = write_scenario(overrides)
    assert cli_error("run", path, "-o", path.parent / "out") == expected.format(f=path, d=path.parent)


def test_stages_run_back_to_back_each_at_its_own_poisson_rate():
    spec = WorkloadSpec.model_validate({
        "arrival": {"kind": "stages", "stages": [{"rate": "20 /s", "duration": "500 s"},
                                                 {"rate": "50 /s", "duration": "200 s"}]},
        "prompt_tokens": {"kind": "fixed", "value": 10}, "output_tokens": {"kind": "fixed", "value": 5}})
    t = generate(spec, 4).arrival_s
    first, second = t[t < 500], t[t >= 500]
    assert t.max() < 700 and np.all(np.diff(t) >= 0)
    # counts are Poisson: within 4 standard deviations of rate x duration
    assert abs(len(first) - 10_000) < 4 * 100 and abs(len(second) - 10_000) < 4 * 100
    gaps = np.diff(second)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, abs=0.05)  # exponential gaps: CV 1


def test_stages_take_no_request_count(write_scenario):
    path = write_scenario({"workload.arrival": {"kind": "stages", "stages": [{"rate": "1 /s", "duration": "5 s"}]}})
    assert cli_error("run", path).endswith(
        "s.yaml: workload: stages arrivals last their stages' durations: no num_requests or duration")
