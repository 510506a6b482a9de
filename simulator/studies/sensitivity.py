"""`infersim sensitivity`: which physical resource moves the result most. Each resource of the scenario
(config/resources.py) is scaled by (1 - delta) and (1 + delta), one at a time, and the run simulated again
with the same seed (the same requests: only the hardware changes). A metric's elasticity to a resource is
the central difference of logs, (m+ - m-) / (2 delta m0): the % change of the metric per % change of the
resource (-1: TPOT halves when the bandwidth doubles, a run wholly bound by it; 0: the resource does not
matter). With delta 0 every run is the baseline and every elasticity is 0.

Runs in local worker processes (studies/points.py), deterministic: the table is the same for any --workers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.config.load import Scenario, load_scenario
from simulator.config.resources import Resource, resources
from simulator.errors import InfersimError, ScenarioError
from simulator.results.outputs import claim, staged_folder
from simulator.studies import sensitivity_report
from simulator.studies.bands import simulate_all
from simulator.studies.points import atomic_write
from simulator.studies.sensitivity_report import METRICS

NAMES = ("sensitivity.csv", "report.md", "report.html")
MAX_DELTA = 0.9


@dataclass(frozen=True)
class SensitivityResult:
    name: str
    out: Path
    delta: float
    baseline: dict[str, float | None]
    table: pd.DataFrame  # a row per resource, sorted by its largest |elasticity|


def metric(summary: dict[str, Any] | None, dotted: str) -> float | None:
    node: Any = summary
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return float(node) if isinstance(node, (int, float)) else None


def elasticity(low: float | None, high: float | None, base: float | None, delta: float) -> float | None:
    """(high - low) / (2 delta base); 0 when the runs agree (delta 0 included), None without a value."""
    if low is None or high is None or base is None:
        return None
    if high == low:
        return 0.0
    if delta == 0 or base == 0:
        return None  # runs that should be identical differ: shown as missing, never as a number
    return (high - low) / (2.0 * delta * base)


def sensitivity(file: str | Path, out: str | Path | None = None, overrides: Sequence[str] = (),
                delta: float = 0.2, workers: int | None = None, plots: bool = True) -> SensitivityResult:
    """Simulate FILE once as given and twice per resource (x (1 - delta), x (1 + delta)); write
    OUT/sensitivity.csv, report.md and report.html (a tornado chart per metric)."""
    if not 0 <= delta <= MAX_DELTA or not math.isfinite(delta):
        raise ScenarioError("--delta", f"must be between 0 and {MAX_DELTA}, got {delta:g}")
    file = Path(file)
    base = load_scenario(file, list(overrides))
    found = resources(base)
    jobs: list[Scenario] = [base]
    jobs += [load_scenario(file, [*overrides, *resource.overrides(factor)])
             for resource in found for factor in (1.0 - delta, 1.0 + delta)]
    out = Path(out) if out is not None else Path("results") / f"sensitivity-{base.spec.name}"
    with claim(out, NAMES):
        outcomes = _run(jobs, workers or os.cpu_count() or 1)
        table, baseline = _table(found, outcomes, delta)
        with staged_folder(out, NAMES) as folder:
            atomic_write(folder / "sensitivity.csv", lambda p: table.to_csv(p, index=False))
            sensitivity_report.write(folder, base.spec.name, delta, baseline, table, plots)
    return SensitivityResult(base.spec.name, out, delta, baseline, table)


def _run(jobs: list[Scenario], workers: int) -> list[dict[str, Any]]:
    """Each job's outcome in job order (a worker that died: a crash outcome, the study goes on)."""
    outcomes = dict(simulate_all(jobs, workers, "simulator.studies.sensitivity"))
    return [outcomes[i] for i in range(len(jobs))]


def _table(found: list[Resource], outcomes: list[dict[str, Any]], delta: float
           ) -> tuple[pd.DataFrame, dict[str, float | None]]:
    if outcomes[0]["status"] != "ok":
        raise InfersimError(f"the scenario as given did not run: {outcomes[0]['error']}")
    base = outcomes[0]["summary"]
    baseline = {key: metric(base, key) for key, *_ in METRICS}
    rows = []
    for i, resource in enumerate(found):
        low, high = outcomes[1 + 2 * i], outcomes[2 + 2 * i]
        row: dict[str, Any] = {"resource": resource.name, "what": resource.words,
                               "fields": "; ".join(k for k, _ in resource.fields),
                               "value": resource.fields[0][1], "more_is_faster": resource.more_is_faster,
                               "status": "ok" if low["status"] == high["status"] == "ok" else
                               (low.get("error") if low["status"] != "ok" else high.get("error"))}
        for key, *_ in METRICS:
            lo, hi = metric(low.get("summary"), key), metric(high.get("summary"), key)
            row[f"{key} low"], row[f"{key} high"] = lo, hi
            row[f"{key} elasticity"] = elasticity(lo, hi, baseline[key], delta)
        rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        size = table[[f"{k} elasticity" for k, *_ in METRICS]].abs().max(axis=1).fillna(0.0)
        table = table.assign(_rank=size).sort_values("_rank", ascending=False, kind="stable").drop(columns="_rank")
    return table.reset_index(drop=True), baseline
