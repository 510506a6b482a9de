"""Numbers at the edge of float64 (1e308, 1e-320) in arrival processes and cost fields: refused in one line
by the bounds, or handled; never an OverflowError, a ZeroDivisionError or a summary that is not JSON."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from conftest import cli_error
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.load import validate
from simulator.config.workload import WorkloadSpec
from simulator.errors import ScenarioError
from simulator.workload.arrivals import generate

BIG, TINY = 1e308, 1e-320
ARRIVALS = [
    {"kind": "poisson", "rate": BIG},
    {"kind": "gamma", "rate": BIG, "cv": 100},
    {"kind": "gamma", "rate": 1, "cv": TINY},
    {"kind": "gamma", "rate": 1e300, "cv": 1e-300},
    {"kind": "on_off", "rate": BIG, "on_time": "1 s", "off_time": "1 s"},
    {"kind": "on_off", "rate": 1, "off_rate": BIG, "on_time": 1, "off_time": 1},
    {"kind": "on_off", "rate": 1e300, "on_time": 1e-300, "off_time": "1 s"},
    {"kind": "daily", "rate": BIG},
    {"kind": "daily", "rate": 1, "curve": [BIG, 1]},
    {"kind": "daily", "rate": 1, "curve": [BIG, BIG]},
    {"kind": "daily", "rate": 1, "curve": [TINY, 0]},
    {"kind": "daily", "rate": 1, "peak_to_trough": BIG},
    {"kind": "daily", "rate": 1, "period": 1e-300},
    {"kind": "daily", "rate": TINY},
]


def _workload(tmp_path, arrival, count) -> str:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump({"arrival": arrival, **count, "prompt_tokens": {"kind": "fixed", "value": 5},
                                    "output_tokens": {"kind": "fixed", "value": 5}}))
    return str(path)


@pytest.mark.parametrize("count", [{"num_requests": 5}, {"duration": "10 s"}])
@pytest.mark.parametrize("arrival", ARRIVALS)
def test_arrivals_at_the_edge_of_float(tmp_path, arrival, count):
    result = CliRunner().invoke(app, ["workload", "describe", _workload(tmp_path, arrival, count), "-o",
                                      str(tmp_path / "plots")])
    assert result.exit_code in (0, 2), repr(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


@pytest.mark.parametrize("cost, field", [({"amortization_years": TINY}, "cost.amortization_years"),
                                         ({"usd_per_kwh": BIG}, "cost.usd_per_kwh"),
                                         ({"pue": BIG}, "cost.pue"),
                                         ({"amortization_years": BIG}, "cost.amortization_years")])
def test_cost_fields_at_the_edge_of_float(write_scenario, cost, field):
    message = cli_error("run", write_scenario({"cost": cost, "workload.num_requests": 5}))
    assert f"{field}: must be " in message


def test_costs_within_the_bounds_are_finite_json(write_scenario, tmp_path):
    import json

    path = write_scenario({"cost": {"amortization_years": 0.01, "usd_per_kwh": 1e3, "pue": 10},
                           "workload.num_requests": 5})
    result = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / "o"), "--no-plots"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
    assert math.isfinite(summary["cost_usd_per_million_output_tokens"])


RATES = st.floats(1e-6, 1e6)  # (thinning a daily curve of extreme contrast is slow, not wrong: kept out)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(arrival=st.one_of(
    st.fixed_dictionaries({"kind": st.just("poisson"), "rate": RATES}),
    st.fixed_dictionaries({"kind": st.just("gamma"), "rate": RATES, "cv": st.floats(1e-3, 100)}),
    st.fixed_dictionaries({"kind": st.just("on_off"), "rate": RATES, "off_rate": st.floats(0, 1e9),
                           "on_time": st.floats(1e-6, 10), "off_time": st.floats(1e-6, 10)}),
    st.fixed_dictionaries({"kind": st.just("daily"), "rate": RATES, "period": st.floats(1e-3, 1e6),
                           "curve": st.lists(st.floats(0.01, 1e3), min_size=2, max_size=6)}),
    st.fixed_dictionaries({"kind": st.just("daily"), "rate": RATES, "peak_to_trough": st.floats(1, 1e3)})))
def test_any_arrival_within_the_bounds_gives_finite_ordered_times_or_one_error(arrival):
    """Property: within the validated bounds, five requests have finite, non-decreasing arrival times, or the
    spec is refused as a ScenarioError (never another exception)."""
    data = {"arrival": arrival, "num_requests": 5, "prompt_tokens": {"kind": "fixed", "value": 5},
            "output_tokens": {"kind": "fixed", "value": 5}}
    try:
        spec = validate(WorkloadSpec, data, "w.yaml")
    except ScenarioError:
        return
    times = generate(spec, 1).arrival_s
    assert len(times) == 5 and all(math.isfinite(t) for t in times) and bool((np.diff(times) >= 0).all())
