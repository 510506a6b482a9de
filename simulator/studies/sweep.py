"""Sweeps: one base scenario, axes over its dotted keys, many independent simulations, one table.

A sweep file (`SweepSpec`) expands into points, the product of its axes and zipped groups. Each point is the
base scenario loaded with the same overrides `infersim run --set` takes, so any dotted key can be an axis,
`cluster` and `model` included. Points run in local processes (default) or as Ray tasks; each finished point
is written atomically to OUT/points/<key>.json, where the key hashes the resolved scenario, the point's seed
and the infersim version. A re-run reads those records and simulates only the points without one, so a
killed sweep loses nothing it had finished. The key does not see code edits that keep the version number:
after such edits use a fresh output folder.

Failures: an InfersimError (a model that does not fit, a TP degree that does not divide the heads) is what
the input gives, so it is a result: status "error", cached like a success, not retried. Any other exception
is a bug: status "crash", its traceback kept in the record, simulated again on the next run. Neither stops
the other points. Points whose scenarios resolve identically are simulated once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from simulator.config.load import Scenario, is_file, load_scenario, parse_override, read_yaml, validate
from simulator.config.studies import SweepSpec
from simulator.errors import InfersimError, ScenarioError, brief, brief_text
from simulator.results.outputs import claim, staged_folder
from simulator.studies import sweep_report
from simulator.studies.bands import HEADLINE, bands, check_draws, draw_scenarios
from simulator.studies.points import FINAL, VERSION, atomic_write, failed, flatten, in_processes, simulate
from simulator.studies.sweep_report import INTERACTIVITY


@dataclass(frozen=True)
class Point:
    """One point of a sweep: its index in expansion order, its value on every axis, its seed."""
    index: int
    values: dict[str, Any]
    seed: int

    def overrides(self) -> list[str]:
        """The axis values as `--set` strings, written by YAML's own dumper so each reads back exactly
        (JSON would write 1e-06, which YAML 1.1 reads as a string)."""
        return [f"{key}={_yaml_value(value)}" for key, value in self.values.items()]


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("\n...").strip()


@dataclass(frozen=True)
class Job:
    """A point with its resolved scenario and cache key, or the error that kept it from resolving."""
    point: Point
    scenario: Scenario | None
    key: str | None
    error: str | None = None


@dataclass(frozen=True)
class SweepResult:
    """The sweep table (one row per point, expansion order) and how many points this call simulated."""
    spec: SweepSpec
    file: Path
    out: Path
    table: pd.DataFrame
    computed: int

    def count(self, status: str) -> int:
        return int((self.table["status"] == status).sum())


# ---------------------------------------------------------------- expansion

def load_sweep(path: str | Path) -> tuple[SweepSpec, Path]:
    """Read and validate a sweep file; returns it with the path of its base scenario."""
    path = Path(path)
    spec: SweepSpec = validate(SweepSpec, read_yaml(path), str(path))
    for i, text in enumerate(spec.overrides):
        try:
            parse_override(text)
        except ScenarioError as exc:  # the sweep file's own overrides, not a --set
            raise ScenarioError(f"overrides.{i}", exc.problem, str(path)) from None
    base = Path(spec.base) if Path(spec.base).is_absolute() else path.resolve().parent / spec.base
    if not is_file(base):
        raise ScenarioError("base", f"{brief(spec.base)} is not a scenario file (no {brief_text(str(base))})",
                            str(path))
    return spec, base


def axis_keys(spec: SweepSpec) -> list[str]:
    return [*spec.axes, *(key for group in spec.zip for key in group)]


def expand(spec: SweepSpec, root_seed: int) -> list[Point]:
    """Every point of the sweep in order: the product of the axes, then the zip groups, the last fastest."""
    dims = [[{key: value} for value in values] for key, values in spec.axes.items()]
    dims += [[dict(zip(group, row, strict=True)) for row in zip(*group.values(), strict=True)]
             for group in spec.zip]
    points = []
    for index, parts in enumerate(itertools.product(*dims)):
        values = {key: value for part in parts for key, value in part.items()}
        points.append(Point(index, values, _seed(spec, root_seed, index, values)))
    return points


def point_seed(root_seed: int, index: int) -> int:
    """The seed of point `index`: the index-th child of SeedSequence(root), as `.spawn()` numbers them."""
    return int(np.random.SeedSequence(root_seed, spawn_key=(index,)).generate_state(1)[0])


def _seed(spec: SweepSpec, root_seed: int, index: int, values: dict[str, Any]) -> int:
    if "seed" in values:  # seed is an axis: replications
        return int(values["seed"])
    return root_seed if spec.seeds == "shared" else point_seed(root_seed, index)


def point_key(scenario: Scenario, seed: int) -> str:
    """Cache key of a point: everything its result depends on (scenario, model, chip, seed, version)."""
    parts = [scenario.spec.model_dump_json(), scenario.model_name,
             json.dumps(scenario.model_config, sort_keys=True), scenario.chip.model_dump_json(), str(seed),
             VERSION]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def resolve(file: Path, base: Path, points: Sequence[Point], common: Sequence[str]) -> list[Job]:
    """Load each point's scenario; one that does not load is an error row, unless none loads at all."""
    jobs = []
    for point in points:
        try:
            scenario = load_scenario(base, [*common, *point.overrides()])
        except InfersimError as exc:
            jobs.append(Job(point, None, None, str(exc)))
            continue
        jobs.append(Job(point, scenario, point_key(scenario, point.seed)))
    if jobs and all(job.error for job in jobs):
        raise ScenarioError("", f"no point of the sweep loads; the first: {jobs[0].error}", str(file))
    return jobs


def _check_overrides(spec: SweepSpec, file: Path, overrides: Sequence[str]) -> None:
    """A --set on an axis key would be silently replaced by the axis values: refuse it."""
    keys = axis_keys(spec)
    for text in overrides:
        key = text.partition("=")[0].strip()
        if key in keys:
            raise ScenarioError("--set", f"{key} is an axis of {file}; change its values there")


def _save(points_dir: Path, job: Job, outcome: dict[str, Any]) -> dict[str, Any]:
    """Write a point's record atomically; return it as a later run will read it back."""
    if outcome.get("infersim") != VERSION:
        outcome = failed("crash", f"the worker runs infersim {outcome.get('infersim')}, this is {VERSION}")
    record = {"key": job.key, "index": job.point.index, "values": job.point.values, "seed": job.point.seed,
              **outcome}
    text = json.dumps(record, indent=1, default=str) + "\n"
    atomic_write(points_dir / f"{job.key}.json", lambda p: p.write_text(text, encoding="utf-8"))
    return json.loads(text)


def _cached(points_dir: Path, key: str) -> dict[str, Any] | None:
    try:
        record = json.loads((points_dir / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("key") == key and record.get("status") in FINAL else None


# ---------------------------------------------------------------- backends

Backend = Callable[[list[Job], int, "str | None"], Iterator[tuple[Job, dict[str, Any]]]]


def _scenario(job: Job) -> Scenario:
    """The scenario of a job a backend runs: only jobs with a key are run, and those resolved."""
    assert job.scenario is not None
    return job.scenario


def _local(jobs: list[Job], workers: int, address: str | None) -> Iterator[tuple[Job, dict[str, Any]]]:
    """Local processes; one worker runs in this process (no pickling, easy to debug)."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield job, simulate(_scenario(job), job.point.seed)
        return
    for index, future in in_processes(simulate, [(_scenario(job), job.point.seed) for job in jobs], workers,
                                      "simulator.studies.sweep"):
        yield jobs[index], _outcome(future)


def _outcome(future: Future) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # the worker process died (killed, out of memory)
        return failed("crash", f"worker failed: {type(exc).__name__}: {exc}")


def _ray(jobs: list[Job], workers: int, address: str | None) -> Iterator[tuple[Job, dict[str, Any]]]:
    """One Ray task per point, on the cluster at `address` or on a local Ray instance of `workers` CPUs."""
    if not jobs:  # all cached: no need to start Ray
        return
    if address:
        check_ray_address(address)
    try:
        import ray
    except ImportError:
        raise ScenarioError("", "ray is not installed: pip install -e '.[ray]'") from None
    started = not ray.is_initialized()
    if started:
        _ray_init(ray, workers, address)
    task = ray.remote(num_cpus=1, max_retries=0)(simulate)
    pending = {task.remote(_scenario(job), job.point.seed): job for job in jobs}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                outcome = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                outcome = failed("crash", f"ray task failed: {type(exc).__name__}: {exc}")
            yield job, outcome
    finally:
        for ref in pending:
            ray.cancel(ref)
        if started:
            ray.shutdown()


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # simulator/, shipped to a Ray cluster's nodes


def _ray_init(ray: Any, workers: int, address: str | None) -> None:
    """Join a cluster, shipping this simulator package so its nodes run this code; or start a local one."""
    import logging

    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                     runtime_env={"py_modules": [str(PACKAGE_DIR)]})
        else:
            ray.init(address="local", num_cpus=workers, include_dashboard=False,  # never a running cluster
                     logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # connection refused, bad address: a user problem
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ScenarioError("--address" if address else "", f"cannot start Ray: {problem}") from None


RAY_ADDRESS_RULE = "host:port (port 1-65535), ray://host:port, or auto"
CONNECT_TIMEOUT_S = 5.0


def check_ray_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, not after Ray's minute of retries: the address must be well formed and its port must
    answer (`auto` is left to Ray: it finds a cluster started on this machine)."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ScenarioError("--address", f"{brief(address)} is not an address; allowed: {RAY_ADDRESS_RULE}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, UnicodeError) as exc:  # refused, unknown host, no route, timed out; an IDNA error
        problem = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ScenarioError("--address", f"{brief(address)} does not answer within {timeout_s:g} s: "
                            f"{problem}") from None


BACKENDS: dict[str, Backend] = {"local": _local, "ray": _ray}


@contextmanager
def _progress(total: int, done: int, failed: int, show: bool | None) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (points done, failed, ETA); off when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("failed {task.fields[failed]}"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=console,
                   disable=not (console.is_terminal if show is None else show))
    with bar:
        task = bar.add_task("sweep", total=total, completed=done, failed=failed)

        def tick(points: int, failures: int) -> None:
            nonlocal failed
            failed += failures
            bar.update(task, advance=points, failed=failed)

        yield tick


# ---------------------------------------------------------------- the table

def _cell(value: Any) -> Any:
    """Axis values that are mappings or lists (an inline cluster) become JSON text in the table."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def tabulate(jobs: Sequence[Job], records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per point in expansion order: axes, seed, status, error, key, then the summary metrics."""
    rows = []
    for job in jobs:
        record: dict[str, Any] = (records[job.key] if job.key
                                  else {"status": "error", "error": job.error, "summary": None})
        row = {key: _cell(value) for key, value in job.point.values.items()}
        row.update(seed=job.point.seed, status=record["status"], error=record["error"], key=job.key)
        summary = record.get("summary")
        if summary:
            tpot = (summary.get("tpot_s") or {}).get("p50")
            row[INTERACTIVITY] = 1.0 / tpot if tpot else None
            row.update({k: v for k, v in flatten(summary).items() if k != "seed"})
        rows.append(row)
    return pd.DataFrame(rows)


def with_bands(table: pd.DataFrame, draws: list[list[Job]], records: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The table with `band.<metric>.p10/p50/p90` of each point's draws (headline metrics and tok/s/user)."""
    columns: dict[str, list[float | None]] = {}
    for i, per_point in enumerate(draws):
        summaries = [{**s, "interactivity": {"tokens_per_s_per_user": 1.0 / tpot if tpot else None}}
                     for j in per_point if j.key and records.get(j.key, {}).get("status") == "ok"
                     for s in [records[j.key]["summary"]] for tpot in [(s.get("tpot_s") or {}).get("p50")]]
        found = bands(summaries, (*HEADLINE, INTERACTIVITY)) if summaries else {}
        for key in (*HEADLINE, INTERACTIVITY):
            for q in ("p10", "p50", "p90"):
                columns.setdefault(f"band.{key}.{q}", [None] * len(draws))[i] = (found.get(key) or {}).get(q)
    return table.assign(**{k: v for k, v in columns.items() if any(x is not None for x in v)})


# ---------------------------------------------------------------- the sweep

def sweep(file: str | Path, out: str | Path | None = None, overrides: Sequence[str] = (),
          backend: str = "local", workers: int | None = None, address: str | None = None,
          plots: bool = True, progress: bool | None = None, png: bool = False,
          uncertainty: int | None = None) -> SweepResult:
    """Simulate every point of the sweep FILE not yet in OUT/points/, then write OUT/sweep.parquet,
    sweep.csv, report.md and report.html (with `png` also plots/). `overrides` (--set) apply to every point's
    base scenario. `uncertainty` N: also each point in N parameter draws seeded by the sweep's root seed
    (studies/bands.py), cached in OUT/points/ like any point; the table gets `band.<metric>.p10/p50/p90`
    columns."""
    file = Path(file)
    check_draws(uncertainty)
    if backend not in BACKENDS:
        raise ScenarioError("--backend", f"{backend!r} is not one of: {', '.join(BACKENDS)}")
    spec, base = load_sweep(file)
    _check_overrides(spec, file, overrides)
    common = [*spec.overrides, *overrides]
    root_seed = spec.seed if spec.seed is not None else load_scenario(base, common).spec.seed
    jobs = resolve(file, base, expand(spec, root_seed), common)
    draws = [] if uncertainty is None else draw_jobs(jobs, uncertainty, root_seed)
    out = Path(out) if out is not None else Path("results") / (spec.name or file.stem)
    with claim(out, sweep_report.NAMES):  # checked before simulating; one writer at a time
        return _sweep(spec, file, jobs, out, backend, workers, address, plots, progress, draws, png)


def draw_jobs(jobs: Sequence[Job], n: int, seed: int) -> list[list[Job]]:
    """Each resolved point's N parameter draws as jobs of their own (draws seeded by the root seed, so two
    points of one chip family are paired); a draw that changes nothing has the point's own key."""
    from simulator.config.uncertainty import load_uncertainty

    spec = load_uncertainty()
    out: list[list[Job]] = []
    for job in jobs:
        if job.scenario is None:
            out.append([])
            continue
        scenarios = draw_scenarios(job.scenario, n, spec, seed)
        out.append([Job(Point(job.point.index, {**job.point.values, "draw": d}, job.point.seed), s,
                        point_key(s, job.point.seed)) for d, s in enumerate(scenarios)])
    return out


def _sweep(spec: SweepSpec, file: Path, jobs: list[Job], out: Path, backend: str, workers: int | None,
           address: str | None, plots: bool, progress: bool | None, draws: list[list[Job]],
           png: bool = False) -> SweepResult:
    points_dir = out / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    every = [*jobs, *(d for per_point in draws for d in per_point)]
    records = {job.key: r for job in every if job.key and (r := _cached(points_dir, job.key)) is not None}
    pending = {job.key: job for job in every if job.key and job.key not in records}
    todo = list(pending.values())
    share = Counter(job.key for job in every if job.key)
    waiting = sum(share[key] for key in pending)
    failed = sum(1 for job in every
                 if job.error or (job.key is not None and records.get(job.key, {}).get("status", "ok") != "ok"))
    with _progress(len(every), len(every) - waiting, failed, progress) as tick:
        for job, outcome in BACKENDS[backend](todo, workers or os.cpu_count() or 1, address):
            assert job.key is not None  # only jobs with a key are run
            records[job.key] = _save(points_dir, job, outcome)
            tick(share[job.key], share[job.key] * (outcome["status"] != "ok"))
    table = tabulate(jobs, records)
    if draws:
        table = with_bands(table, draws, records)
    with staged_folder(out, sweep_report.NAMES, keep=("points",)) as folder:  # the old report or the new, whole
        sweep_report.write(folder, spec, file, table, axis_keys(spec), plots, png)
    return SweepResult(spec, file, out, table, len(todo))
