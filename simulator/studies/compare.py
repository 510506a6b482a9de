"""Compare cluster designs: one model and workload over several designs, each swept over concurrency.

A compare file (`CompareSpec`) lists designs (a topology and a deployment). Each (design, concurrency) point
is a scenario built from the file, validated by the same loader as a scenario file, whose workload arrival is
replaced by `concurrency` closed-loop users per replica: every design is measured at the same load per
replica, from one user (the decode speed a single user can get) to many (the throughput batching buys). The
points run in local processes; a design that cannot run (does not fit, no compute peak for its dtype, a TP
degree the heads do not divide) becomes rows with status "error" and its reason, and the others go on.
Nothing here knows about SRAM or HBM: every difference in the table comes from the catalog and the physics.

Derived columns (the rest of each row is the run's summary, flattened with dotted names):
- tokens_per_s_per_user = 1 / tpot_s.p50: the decode speed one user sees.
- output_tokens_per_s_per_kw = output tokens/s over the chips' nameplate power (TDP x chips); n/a without a
  power figure. output_tokens_per_usd = 1e6 / cost_usd_per_million_output_tokens, on `cost_basis`: rent per
  chip-hour, or purchase amortised plus energy (results/summary.py); n/a without a price.
- bottleneck: the largest share of busy time in summary.bottleneck_share (compute, memory, network,
  overhead, bubble).
- efficiency_calibrated (the last column): whether the chip's efficiencies were fitted on published
  measurements (catalog `efficiency.source`, EfficiencySpec.calibrated); False: assumed family defaults,
  so the design's magnitudes are not validated (the report marks it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from simulator.config.cost import cost_basis as chip_cost_basis
from simulator.config.load import (
    Scenario,
    apply_override,
    load_scenario_dict,
    parse_override,
    read_yaml,
    validate,
)
from simulator.config.scenario import ScenarioSpec
from simulator.config.studies import CompareDesign, CompareSpec
from simulator.errors import ScenarioError
from simulator.results.outputs import claim, staged_folder
from simulator.studies import bands, compare_bands, compare_report
from simulator.studies.compare_html import write_compare_html
from simulator.studies.points import flatten, in_processes, simulate

COMPARE_ONLY = set(CompareSpec.model_fields) - set(ScenarioSpec.model_fields)  # --set keys of the file itself
SET_BY_COMPARE = ("workload.arrival", "deployment.replicas")  # --set cannot change these: they set the load
DESIGN_KEYS = ("cluster", "deployment", "serving")  # scenario keys that come from a design


@dataclass(frozen=True)
class Point:
    """One design at one concurrency: its scenario, ready to simulate."""
    design: CompareDesign
    concurrency: int
    users: int
    scenario: Scenario


@dataclass(frozen=True)
class CompareResult:
    """The comparison table (one row per design x concurrency, file order) and where it was written."""
    spec: CompareSpec
    file: Path
    out: Path
    table: pd.DataFrame
    robustness: list[str] = field(default_factory=list)  # with parameter draws: how robust, in words

    def count(self, status: str) -> int:
        return int((self.table["status"] == status).sum())


# ---------------------------------------------------------------- the file -> points

def load_compare(path: str | Path, overrides: Sequence[str] = ()) -> tuple[CompareSpec, list[str]]:
    """Read and validate a compare file. `--set` keys of the file itself (concurrency, requests_per_user, ...)
    change it here; the others are returned, to be applied to every point's scenario."""
    path = Path(path)
    data = read_yaml(path)
    rest = []
    for text in overrides:
        keys, value = parse_override(text)
        dotted = ".".join(keys)
        if any(dotted == k or dotted.startswith(k + ".") for k in SET_BY_COMPARE):
            raise ScenarioError("--set", f"{dotted} is set by the compare file (concurrency, designs); "
                                         "change it there")
        if keys[0] in COMPARE_ONLY:
            apply_override(data, keys, value)
        else:
            rest.append(text)
    return validate(CompareSpec, data, str(path)), rest


def scenario_data(spec: CompareSpec, design: CompareDesign) -> dict[str, Any]:
    """The scenario mapping of a design, as if written in a scenario file next to the compare file."""
    return {
        "name": f"{spec.name}-{design.name}",
        "description": design.description or spec.description,
        "seed": spec.seed,
        "model": spec.model,
        "cluster": design.cluster,
        "deployment": design.deployment.model_dump(exclude_unset=True),
        "serving": (design.serving or spec.serving).model_dump(),
        "workload": spec.workload,
        "cost": spec.cost.model_dump(exclude_unset=True),
        "sim": spec.sim.model_dump(exclude_unset=True),
    }


def load_overrides(spec: CompareSpec, users: int) -> list[str]:
    """`users` closed-loop users and enough requests for several rounds each (a short steady state)."""
    arrival = {"kind": "closed_loop", "users": users, "think_time": spec.think_time}
    requests = max(spec.requests_per_user * users, spec.min_requests)
    flow = yaml.safe_dump(arrival, default_flow_style=True, width=10**9).strip()
    return [f"workload.arrival={flow}", f"workload.num_requests={requests}", "workload.duration=null"]


def points(spec: CompareSpec, file: Path, overrides: Sequence[str] = ()) -> list[Point]:
    """Every (design, concurrency) point in file order, each scenario validated before anything runs, so a
    typo in the file fails at once instead of after an hour of simulation."""
    out = []
    for index, design in enumerate(spec.designs):
        data = scenario_data(spec, design)
        for concurrency in spec.concurrency:
            users = concurrency * design.deployment.replicas
            extra = [*load_overrides(spec, users), *overrides]
            try:
                scenario = load_scenario_dict(data, str(file), file.resolve().parent, extra)
            except ScenarioError as exc:
                raise _in_design(exc, index, str(file)) from None
            out.append(Point(design, concurrency, users, scenario))
    return out


def _in_design(exc: ScenarioError, index: int, file: str) -> ScenarioError:
    """A problem in a design's part of the scenario is reported at its place in the compare file."""
    if exc.file == file and exc.field.partition(".")[0] in DESIGN_KEYS:
        return ScenarioError(f"designs.{index}.{exc.field}", exc.problem, file)
    return exc


# ---------------------------------------------------------------- running

def run_points(todo: Sequence[Point], workers: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index into `todo`, outcome) as points finish. `simulate` never raises: an input the physics refuses
    is an "error" outcome, a bug a "crash" one, and neither stops the other points."""
    if workers <= 1 or len(todo) <= 1:
        for i, point in enumerate(todo):
            yield i, simulate(point.scenario, point.scenario.spec.seed)
        return
    order = sorted(range(len(todo)), key=lambda i: _cost(todo[i]), reverse=True)  # no long run starts last
    jobs = [(todo[i].scenario, todo[i].scenario.spec.seed) for i in order]
    for index, future in in_processes(simulate, jobs, workers, "simulator.studies.compare"):
        yield order[index], _outcome(future)


def _cost(point: Point) -> tuple[int, int]:
    """A rough rank of a point's wall time: chips per replica (stages and flows per step), then users."""
    d = point.scenario.spec.deployment
    return d.tensor_parallel * d.pipeline_parallel, point.users


def _outcome(future: Any) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:
        return {"status": "crash", "error": f"worker failed: {type(exc).__name__}: {exc}", "summary": None}


# ---------------------------------------------------------------- the table

def row(point: Point, outcome: dict[str, Any]) -> dict[str, Any]:
    """One table row: the point, its status, the derived columns, then every summary metric."""
    d = point.scenario.spec.deployment
    out: dict[str, Any] = {
        "design": point.design.name, "concurrency": point.concurrency, "users": point.users,
        "status": outcome["status"], "error": _reason(outcome.get("error"), point.scenario.file),
        "chip": point.scenario.chip.id,
        "chips": d.tensor_parallel * d.pipeline_parallel * d.replicas, "tensor_parallel": d.tensor_parallel,
        "pipeline_parallel": d.pipeline_parallel, "expert_parallel": d.expert_parallel,
        "replicas": d.replicas,
        "weights_dtype": d.weights_dtype, "cost_basis": cost_basis(point.scenario),
    }
    summary = outcome.get("summary")
    if summary:
        out.update(derived(summary))
        out.update({k: v for k, v in flatten(summary).items()
                    if not k.startswith("utilization.links.") and k not in out})
    return out


def _reason(error: str | None, file: str) -> str | None:
    """The run's one-line error without the compare file's name, which every row would repeat."""
    return error.removeprefix(f"{file}: ") if error else None


def derived(s: dict[str, Any]) -> dict[str, Any]:
    """The comparison's own columns, computed from one summary; None where an input is missing."""
    tpot, rate = s["tpot_s"]["p50"], s["throughput"]["output_tokens_per_s"]
    kw = (s.get("deployment") or {}).get("nameplate_power_kw")
    usd = s.get("cost_usd_per_million_output_tokens")
    share = {k: v for k, v in s["bottleneck_share"].items() if v is not None}
    return {
        "chips": s["chips"],
        "tokens_per_s_per_user": 1.0 / tpot if tpot else None,
        "output_tokens_per_s": rate,
        "output_tokens_per_s_per_chip": s["throughput"]["output_tokens_per_s_per_chip"],
        "output_tokens_per_s_per_kw": rate / kw if kw and rate is not None else None,
        "output_tokens_per_usd": 1e6 / usd if usd else None,
        "ttft_s.p50": s["ttft_s"]["p50"], "ttft_s.p99": s["ttft_s"]["p99"],
        "tpot_s.p50": tpot, "tpot_s.p99": s["tpot_s"]["p99"],
        "energy_j_per_output_token": s["energy_j_per_output_token"],
        "bottleneck": max(share, key=share.__getitem__) if share else None,
    }


def cost_basis(scenario: Scenario) -> str | None:
    """What a dollar pays for in this design's cost (config/cost.py): rent, purchase + energy, none."""
    basis = chip_cost_basis(scenario.spec.cost, scenario.chip).basis
    return "purchase+energy" if basis == "purchase" else basis


# ---------------------------------------------------------------- the comparison

def compare(file: str | Path, out: str | Path | None = None, overrides: Sequence[str] = (),
            workers: int | None = None, plots: bool = True, png: bool = False,
            uncertainty: int | None = None) -> CompareResult:
    """Simulate every point of the compare FILE and write OUT/compare.parquet, compare.csv, report.md and
    report.html (with `png` also plots/pareto_per_{chip,dollar,kw}.png; default OUT: results/compare-<name>).
    `uncertainty` N: also every point in N parameter draws (paired across designs, studies/bands.py):
    bands in the table, compare_draws.parquet, ranking.csv, and which conclusions are robust."""
    file = Path(file)
    bands.check_draws(uncertainty)
    spec, rest = load_compare(file, overrides)
    todo = points(spec, file, rest)
    out = Path(out) if out is not None else Path("results") / f"compare-{spec.name}"
    with claim(out, compare_report.NAMES):  # checked before simulating; one writer at a time
        outcomes: dict[int, dict[str, Any]] = dict(run_points(todo, workers or os.cpu_count() or 1))
        table = pd.DataFrame([row(p, outcomes[i]) for i, p in enumerate(todo)])
        table["efficiency_calibrated"] = [p.scenario.chip.efficiency.calibrated for p in todo]
        draws = None if uncertainty is None else run_draws(spec, todo, outcomes, uncertainty, workers)
        if draws is not None:
            table = compare_bands.with_bands(table, draws)
        with staged_folder(out, compare_report.NAMES) as folder:  # a re-run replaces the folder as a whole
            words = compare_report.write(folder, spec, file, table, plots, png, draws)
            if plots:
                write_compare_html(folder / "report.html", spec.name, spec.model, spec.description, table, draws,
                                   words)
    return CompareResult(spec, file, out, table, words)


def run_draws(spec: CompareSpec, todo: Sequence[Point], outcomes: dict[int, dict[str, Any]], n: int,
              workers: int | None) -> pd.DataFrame:
    """Every point that ran, in `n` parameter draws seeded by the file's seed: one row per (point, draw)."""
    from simulator.config.uncertainty import load_uncertainty

    uncertainty = load_uncertainty()
    jobs = [(p, d, s) for i, p in enumerate(todo) if outcomes[i]["status"] == "ok"
            for d, s in enumerate(bands.draw_scenarios(p.scenario, n, uncertainty, spec.seed))]
    done = dict(bands.simulate_all([s for _, _, s in jobs], workers or os.cpu_count() or 1,
                                   "simulator.studies.compare"))
    rows = [{"draw": d, **row(p, done[i])} for i, (p, d, _) in enumerate(jobs)]
    columns = ["draw", "design", "concurrency", "status", *compare_bands.RANKED]
    return pd.DataFrame(rows).reindex(columns=columns)
