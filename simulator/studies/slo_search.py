"""The highest arrival rate a cluster serves within its SLOs: bisection over `workload.arrival.rate`.

Each point is a whole run of the scenario with `workload.arrival.rate=r` (same seed, so the same requests
arrive, only closer together or further apart); it passes when its SLO attainment (simulator/results/slo.py) is at
least `target`. The search brackets the answer between a passing rate `lo` and a failing rate `hi`: given
bounds are tried first, a missing one is found by halving or doubling from the other (or from the
scenario's rate), then the bracket is halved until hi / lo - 1 <= rel_tol or `max_runs` runs are spent.
Every tried rate ends up <= lo or >= hi, so no tried rate lies between them: the answer (lo) passes and the
next higher tried rate (hi) fails. Attainment need not be monotone in the rate (a run is one sample); the
answer is a rate that passes with a failing one just above it, not a proof that all lower rates pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from simulator.config.load import Scenario, load_scenario
from simulator.config.workload import ClosedLoopArrivals, OfflineArrivals, TraceArrivals
from simulator.errors import ScenarioError
from simulator.results.slo import targets
from simulator.run import run
from simulator.workload.arrivals import generate

RATE_KEY = "workload.arrival.rate"
COLUMNS = ("rate_per_s", "attainment", "goodput_requests_per_s", "ttft_p99_s", "tpot_p99_s", "passes")


@dataclass(frozen=True)
class SearchResult:
    """`rate`: the highest tried rate that passes (None if none did); `hi`: the lowest that fails (None if
    none did: then `rate` is only a lower bound). `table`: one row per run, in the order tried."""
    scenario: str
    target: float
    rate: float | None
    hi: float | None
    table: pd.DataFrame

    @property
    def status(self) -> str:
        if self.rate is None:
            return "no tried rate meets the target"
        if self.hi is None:
            return "every tried rate meets the target: the answer is a lower bound"
        return "bracketed"


def base_rate(scenario: Scenario) -> float:
    """The open-loop rate the search starts from; a ScenarioError if the workload has no rate to vary."""
    spec, file = scenario.spec, scenario.file
    arrival = spec.workload.arrival
    if arrival is None:
        raise ScenarioError(RATE_KEY, "slo-search varies the workload's shared arrival rate, but its classes "
                            "have their own arrivals", file)
    if isinstance(arrival, (ClosedLoopArrivals, OfflineArrivals)):
        raise ScenarioError(RATE_KEY, f"slo-search varies an open-loop arrival rate, but workload.arrival is "
                            f"{arrival.kind}; allowed: daily, gamma, on_off, poisson, trace", file)
    if isinstance(arrival, TraceArrivals) and arrival.time_scale is not None:
        raise ScenarioError(RATE_KEY, "slo-search sets the trace's rate, which excludes its time_scale; "
                            "remove workload.arrival.time_scale", file)
    names = [c.name for c in spec.workload.classes or ()] or ["default"]
    if all(t == (None, None) for t in targets(spec, names)):
        raise ScenarioError("serving.slo", "slo-search needs latency targets: set serving.slo (ttft, tpot) "
                            "or the workload's slo", file)
    rate = getattr(arrival, "rate", None)
    if rate is not None:
        return float(rate)
    t = generate(spec.workload, spec.seed).arrival_s  # a trace replayed at its own pace
    return (len(t) - 1) / float(t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 1.0


def max_rate_under_slo(path: str | Path, overrides: Sequence[str] = (), target: float = 0.9,
                       low: float | None = None, high: float | None = None, max_runs: int = 12,
                       rel_tol: float = 0.02, seed: int | None = None,
                       on_run: Callable[[dict], None] | None = None) -> SearchResult:
    """Bisection over the arrival rate for the highest rate whose SLO attainment is >= target."""
    if not 0 < target <= 1:
        raise ScenarioError("--target", f"must be in (0, 1], got {target}")
    if low is not None and high is not None and not 0 < low < high:
        raise ScenarioError("--low", f"must be > 0 and below --high ({high:g}), got {low:g}")
    scenario = load_scenario(path, list(overrides))
    start = base_rate(scenario)
    rows: list[dict] = []

    def passes(rate: float) -> bool:
        s = run(load_scenario(path, [*overrides, f"{RATE_KEY}={rate!r}"]), seed=seed).summary
        row = {"rate_per_s": rate, "attainment": s["slo"]["attainment"],
               "goodput_requests_per_s": s["slo"]["goodput_requests_per_s"],
               "ttft_p99_s": s["ttft_s"]["p99"], "tpot_p99_s": s["tpot_s"]["p99"]}
        row["passes"] = row["attainment"] is not None and row["attainment"] >= target
        rows.append(row)
        if on_run is not None:
            on_run(row)
        return row["passes"]

    lo = hi = None
    if low is not None:
        if not passes(low):
            return _result(scenario, target, None, low, rows)
        lo = low
    if high is not None:
        if passes(high):
            return _result(scenario, target, high, None, rows)
        hi = high
    rate = hi / 2 if hi is not None else (lo * 2 if lo is not None else _round(start))
    while (lo is None or hi is None) and len(rows) < max_runs:  # find the missing end of the bracket
        if passes(rate):
            lo, rate = rate, _round(rate * 2)
        else:
            hi, rate = rate, _round(rate / 2)
    while lo is not None and hi is not None and hi / lo - 1 > rel_tol and len(rows) < max_runs:
        mid = _round((lo + hi) / 2)
        if not lo < mid < hi:
            break
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return _result(scenario, target, lo, hi, rows)


def _round(rate: float) -> float:
    """Rates with 4 significant digits: readable in the table and in the override."""
    return float(f"{rate:.4g}") if rate > 0 and math.isfinite(rate) else rate


def _result(scenario: Scenario, target: float, lo: float | None, hi: float | None,
            rows: list[dict]) -> SearchResult:
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return SearchResult(scenario.spec.name, target, lo, hi, table)
