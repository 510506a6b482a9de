"""Command line: `infersim run`, `sweep`, `compare`, `slo-search`, `explain`, `validate`, `calibrate`, `report`,
`list`, `workload describe`, `sensitivity`. User mistakes: one line, exit 2."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from simulator.errors import InfersimError, one_line

# click's exception classes, wherever this typer keeps them (its own copy of click since 0.2x, else click's)
_CLICK = sys.modules[typer.BadParameter.__module__]


class OneLineErrors(TyperGroup):
    """The command group whose usage errors (a missing argument, `--seed nan`, `--workers 0`, an unknown
    option) are one `error:` line and exit 2, like every other user mistake, instead of typer's framed box."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            with terminate_as_interrupt():
                code = super().main(*args, **kwargs)
        except _CLICK.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `infersim`: the help, as before
                exc.show()
            else:
                typer.echo(f"error: {one_line(exc.format_message())}", err=True)
            sys.exit(2)
        except _CLICK.ClickException as exc:
            typer.echo(f"error: {one_line(exc.format_message())}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Simulate LLM inference clusters: latency, throughput, cost, energy, bottlenecks.")
console = Console(width=None if sys.stdout.isatty() else 160)  # never truncate piped tables


def fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def check_graphics(plots: bool, png: bool) -> None:
    """--png asks for PNG files, --no-plots for nothing graphical: both at once is a mistake."""
    if png and not plots:
        fail("--png and --no-plots contradict each other: --no-plots writes nothing graphical")


@app.command()
def run(
    scenario: Path | None = typer.Argument(None, help="Scenario YAML file (default: the shipped default scenario)."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Output folder (default results/<name>)."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Override the scenario's seed."),
    set_: list[str] = typer.Option([], "--set", help="Override a value: dotted.key=value (repeatable)."),
    what_if: list[str] = typer.Option([], "--what-if", help="Scale one physical resource: RESOURCE=FACTORx, e.g. "
                                      "hbm.bandwidth=2x, scaleout.latency=0.5x (repeatable; names: infersim "
                                      "sensitivity)."),
    plots: bool = typer.Option(True, "--plots/--no-plots",
                               help="Write report.html (interactive charts); --no-plots: nothing graphical."),
    png: bool = typer.Option(False, "--png", help="Also write the charts as PNG files (plots/)."),
    trace: bool = typer.Option(False, "--trace", help="Also write trace.json (Perfetto / Chrome trace events)."),
    trace_window: str | None = typer.Option(None, "--trace-window",
                                            help="Simulated seconds the trace covers, START:END (e.g. 10:60)."),
    trace_requests: int = typer.Option(10_000, "--trace-requests", min=1,
                                       help="Requests in the trace at most (every k-th by id beyond)."),
    trace_iterations: int = typer.Option(100_000, "--trace-iterations", min=1,
                                         help="Iterations in the trace at most (the window ends where reached)."),
    uncertainty: int | None = typer.Option(None, "--uncertainty", help="Also simulate N draws of the chip's "
                                           "coefficients (catalog/uncertainty.yaml): p10/p50/p90 bands."),
) -> None:
    """Simulate SCENARIO (default: the shipped scenarios/default.yaml) and write summary.json, parquet tables,
    report.md and report.html (and PNG plots with --png, trace.json with --trace)."""
    check_graphics(plots, png)
    from simulator.config.load import load_scenario
    from simulator.config.shipped import default_scenario
    from simulator.results.outputs import claim
    from simulator.results.report import headline
    from simulator.results.trace import TraceBounds
    from simulator.run import run as run_scenario
    from simulator.studies.bands import check_draws

    if scenario is None:
        scenario = default_scenario()
        if scenario is None:
            fail("no SCENARIO given and this installation ships no scenarios/default.yaml")
            return
    bounds = None
    if trace or trace_window is not None:
        try:
            bounds = TraceBounds.parse_window(trace_window or ":", max_requests=trace_requests,
                                              max_iterations=trace_iterations)
        except ValueError as exc:
            fail(f"--trace-window: {exc}")
            return
    try:
        check_draws(uncertainty)
        loaded = load_scenario(scenario, set_)
        if what_if:
            from simulator.config.resources import what_if as scaled

            loaded = load_scenario(scenario, [*set_, *(o for text in what_if for o in scaled(loaded, text))])
        out_dir = out or Path("results") / loaded.spec.name
        with claim(out_dir):  # checked before a long run, not after it; one writer at a time
            with watching(loaded.spec.workload.num_requests) as watch:
                result = run_scenario(loaded, seed=seed, watch=watch, will_write=True)
            if uncertainty is not None and not result.summary["sim"]["interrupted"]:
                from simulator.studies.bands import run_bands

                result.summary["uncertainty"] = run_bands(loaded, uncertainty, seed)
            result.write(out_dir, plots=plots, trace=bounds, png=png)
    except InfersimError as exc:
        fail(str(exc))
        return
    table = Table(title=f"{loaded.spec.name}: {result.model.name} on {result.plan.chips_total} x {loaded.chip.id}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in headline(result.summary):
        table.add_row(name, value)
    console.print(table)
    if loaded.chip_origin != "catalog":
        console.print(f"chip {loaded.chip.id} is not a catalog chip: {loaded.chip_origin}")
    if what_if:
        console.print(f"what if: {', '.join(what_if)} (the scenario's resources so scaled)")
    console.print(f"results in {out_dir}/")
    for warning in result.summary.get("warnings", ()):
        typer.echo(f"warning: {warning}", err=True)
    if result.summary["sim"]["interrupted"]:
        typer.echo(f"interrupted at {result.summary['sim']['simulated_s']:.4g} simulated s: the results are "
                   "partial (sim.interrupted in summary.json)", err=True)
        raise typer.Exit(130)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, `kill`, a container stopping) acts as Ctrl-C: the command unwinds, staging
    folders and spool files are removed, worker processes stopped; `run` first stops between two events and
    writes its partial results (`watching`)."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def watching(total: int | None) -> Iterator[Callable[[float, int], bool]]:
    """A `watch` for run(): a progress bar on a terminal, and Ctrl-C stops the run between two events so
    that its partial results are still written (a second Ctrl-C stops at once)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    stop: list[bool] = []

    def on_interrupt(signum, frame) -> None:
        if stop:
            raise KeyboardInterrupt
        stop.append(True)

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
        previous_term = signal.signal(signal.SIGTERM, on_interrupt)  # SIGTERM as Ctrl-C
    except ValueError:  # not the main thread: no Ctrl-C handling
        previous = previous_term = None
    bar = None
    if sys.stderr.isatty():
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=Console(stderr=True), transient=True)
        task = bar.add_task("simulating", total=total)
        bar.start()
    last = [0.0]

    def watch(now: float, done: int) -> bool:
        if bar is not None and time.monotonic() - last[0] > 0.2:
            last[0] = time.monotonic()
            bar.update(task, completed=done, description=f"simulated {now:,.0f} s")
        return bool(stop)

    try:
        yield watch
    finally:
        if bar is not None:
            bar.stop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)


@app.command()
def sweep(
    file: Path = typer.Argument(..., help="Sweep YAML file: a base scenario and axes over dotted keys."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Output folder (default results/<name>)."),
    backend: str = typer.Option("local", "--backend", help="local (processes) or ray."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Parallel runs (default: CPUs)."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster (default: a local one)."),
    set_: list[str] = typer.Option([], "--set", help="Override a base value: dotted.key=value (repeatable)."),
    plots: bool = typer.Option(True, "--plots/--no-plots",
                               help="Write report.html (interactive charts); --no-plots: nothing graphical."),
    png: bool = typer.Option(False, "--png", help="Also write the charts as PNG files (plots/)."),
    uncertainty: int | None = typer.Option(None, "--uncertainty", help="Also simulate N parameter draws per "
                                           "point: band.<metric>.p10/p50/p90 columns."),
) -> None:
    """Simulate the points of FILE not yet in the output folder; write sweep tables, report.md, report.html."""
    check_graphics(plots, png)
    from simulator.studies.sweep import sweep as run_sweep

    try:
        result = run_sweep(file, out, set_, backend, workers, address, plots, png=png, uncertainty=uncertainty)
    except InfersimError as exc:
        fail(str(exc))
        return
    counts = ", ".join(f"{result.count(s)} {s}" for s in ("ok", "error", "crash"))
    console.print(f"{len(result.table)} points: {counts}; simulated {result.computed}, the rest cached")
    console.print(f"results in {result.out}/")
    crashed = result.table[result.table["status"] == "crash"]
    if len(crashed):  # a bug, not a user mistake: exit 1, tracebacks in the point records
        typer.echo(f"{len(crashed)} points crashed (a bug), e.g.: {crashed['error'].iloc[0]}; tracebacks in "
                   f"{result.out}/points/{crashed['key'].iloc[0]}.json", err=True)
        raise typer.Exit(1)


@app.command()
def compare(
    file: Path = typer.Argument(..., help="Compare YAML file: one model and workload, several designs."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Output folder (default results/compare-<name>)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Parallel runs (default: CPUs)."),
    set_: list[str] = typer.Option([], "--set", help="Override a value: dotted.key=value (repeatable)."),
    plots: bool = typer.Option(True, "--plots/--no-plots",
                               help="Write report.html (interactive charts); --no-plots: nothing graphical."),
    png: bool = typer.Option(False, "--png", help="Also write the charts as PNG files (plots/)."),
    uncertainty: int | None = typer.Option(None, "--uncertainty", help="Also simulate N parameter draws: "
                                           "bands, P(A beats B), which conclusions are robust."),
) -> None:
    """Simulate every design of FILE at every concurrency; write the comparison table, report.md, report.html."""
    check_graphics(plots, png)
    from simulator.studies.compare import compare as run_compare
    from simulator.studies.compare_report import ASSUMED_NOTE, assumed, reason, summary_rows

    try:
        result = run_compare(file, out, set_, workers, plots, png, uncertainty)
    except InfersimError as exc:
        fail(str(exc))
        return
    header, rows = summary_rows(result.table, failed=False)
    table = Table(title=f"compare {result.spec.name}: {result.spec.model}")
    for column in header:
        table.add_column(column, justify="left" if column == "design" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if len(assumed(result.table)):
        console.print(ASSUMED_NOTE, soft_wrap=True)
    for design, points in result.table.groupby("design", sort=False):
        if reason(points):
            console.print(f"{design}: {reason(points)}", soft_wrap=True)
    for line in result.robustness[1:]:  # the conclusions (the first line says how the draws were made)
        if line.startswith(("robust", "NOT robust")):
            console.print(f"- {line}", soft_wrap=True)
    console.print(f"results in {result.out}/")
    if result.count("crash"):  # a bug, not a user mistake
        crashed = result.table[result.table["status"] == "crash"]
        typer.echo(f"{len(crashed)} points crashed (a bug), e.g.: {crashed['error'].iloc[0]}", err=True)
        raise typer.Exit(1)


@app.command()
def sensitivity(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    delta: float = typer.Option(0.2, "--delta", help="Relative move of each resource, 0 to 0.9 (0.2: +-20%)."),
    out: Path | None = typer.Option(None, "-o", "--out", help="Output folder (default results/sensitivity-<name>)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Parallel runs (default: CPUs)."),
    set_: list[str] = typer.Option([], "--set", help="Override a value: dotted.key=value (repeatable)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write report.html."),
) -> None:
    """Move each physical resource of SCENARIO (compute peak, memory tiers' bandwidth, links' bandwidth and
    latency, overheads) by +-delta, one at a time, and rank which moves TPOT, TTFT and throughput most."""
    from simulator.studies.sensitivity import sensitivity as run_sensitivity
    from simulator.studies.sensitivity_report import METRICS, ranking_words

    try:
        result = run_sensitivity(scenario, out, set_, delta, workers, plots)
    except InfersimError as exc:
        fail(str(exc))
        return
    table = Table(title=f"sensitivity of {result.name}: elasticity (% change of the metric per % change of "
                        f"the resource, +-{delta:.0%})")
    table.add_column("resource")
    for _, name, _, _ in METRICS:
        table.add_column(name, justify="right")
    for _, row in result.table.iterrows():
        table.add_row(row["resource"], *("n/a" if row[f"{key} elasticity"] is None
                                         or row[f"{key} elasticity"] != row[f"{key} elasticity"]
                                         else f"{row[f'{key} elasticity']:+.3f}" for key, *_ in METRICS))
    console.print(table)
    for line in ranking_words(result.table, delta):
        console.print(line, soft_wrap=True)
    failed = result.table[result.table["status"] != "ok"]
    for _, row in failed.iterrows():
        console.print(f"{row['resource']}: {row['status']}", soft_wrap=True)
    console.print(f"results in {result.out}/")


@app.command("slo-search")
def slo_search(
    scenario: Path = typer.Argument(..., help="Scenario YAML file with an open-loop arrival rate and SLOs."),
    target: float = typer.Option(0.9, "--target", help="SLO attainment a rate must reach (0-1]."),
    low: str | None = typer.Option(None, "--low", help="Lowest rate to try, e.g. '2 /s'."),
    high: str | None = typer.Option(None, "--high", help="Highest rate to try, e.g. '50 /s'."),
    max_runs: int = typer.Option(12, "--max-runs", min=1, help="Simulations at most."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Override the scenario's seed."),
    set_: list[str] = typer.Option([], "--set", help="Override a value: dotted.key=value (repeatable)."),
) -> None:
    """Bisect the arrival rate for the highest one whose SLO attainment reaches --target."""
    from simulator import units
    from simulator.studies.slo_search import max_rate_under_slo

    try:
        bounds = [None if v is None else units.parse_rate(v) for v in (low, high)]
    except ValueError as exc:
        fail(f"--low/--high: {exc}")
        return
    try:
        result = max_rate_under_slo(scenario, set_, target, bounds[0], bounds[1], max_runs=max_runs, seed=seed)
    except InfersimError as exc:
        fail(str(exc))
        return
    table = Table(title=f"{result.scenario}: SLO attainment against arrival rate (target {target:g})")
    for column in ("try", "rate (/s)", "attainment", "goodput (/s)", "TTFT p99 (ms)", "TPOT p99 (ms)",
                   "passes"):
        table.add_column(column, justify="right")
    def fmt(value, scale: float = 1.0, spec: str = ".4g") -> str:
        return "n/a" if value is None or value != value else f"{value * scale:{spec}}"

    for i, row in result.table.sort_values("rate_per_s", kind="stable").iterrows():
        table.add_row(str(i + 1), fmt(row.rate_per_s), fmt(row.attainment, spec=".3f"),
                      fmt(row.goodput_requests_per_s), fmt(row.ttft_p99_s, 1e3), fmt(row.tpot_p99_s, 1e3),
                      "yes" if row.passes else "no")
    console.print(table)
    if result.rate is None:
        console.print(f"no tried rate reaches attainment {target:g} (lowest tried fails)")
    else:
        above = "" if result.hi is None else f"; {result.hi:.4g} /s fails"
        console.print(f"max rate under SLO: {result.rate:.4g} /s ({result.status}{above})")


@app.command()
def explain(
    scenario: Path = typer.Argument(..., help="Scenario YAML file."),
    set_: list[str] = typer.Option([], "--set", help="Override a value: dotted.key=value (repeatable)."),
) -> None:
    """Print SCENARIO's plan without simulating: where bytes sit, KV room, maximum batch, speed of light."""
    from simulator.config.load import load_scenario
    from simulator.studies.explain import explain as explain_plan

    try:
        loaded = load_scenario(scenario, set_)
        rows = explain_plan(loaded)
    except InfersimError as exc:
        fail(str(exc))
        return
    table = Table(title=f"{loaded.spec.name}: {loaded.model_name} on {loaded.spec.cluster.name}")
    for column in ("", "item", "value"):
        table.add_column(column)
    for section, item, value in rows:
        table.add_row(section, item, value)
    console.print(table)


@app.command()
def validate(
    cases: Path | None = typer.Argument(None, help="Validation CSV (default validation/calibration.csv)."),
    out: Path = typer.Option(Path("results/validation"), "-o", "--out", help="Output folder."),
    workers: int = typer.Option(1, "--workers", min=1, help="Cases simulated in parallel processes."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the plot and report.html."),
    uncertainty: int | None = typer.Option(None, "--uncertainty", help="Also simulate N parameter draws per "
                                           "case: the share of measurements inside the p10-p90 band."),
    family: str | None = typer.Option(None, "--family", help="Only the cases of these chip families, "
                                      "comma-separated (catalog/uncertainty.yaml)."),
    skip: str | None = typer.Option(None, "--skip", help="Leave out these case ids, comma-separated."),
) -> None:
    """Simulate each published measurement in CASES and compare; exit 0 even when cases miss."""
    from simulator.studies.validate import report as validate_report
    from simulator.studies.validate import serving_runs

    staged = cases is not None and serving_runs.is_serving_runs(cases)
    try:
        if cases is not None and staged:
            if uncertainty is not None or family is not None or skip is not None:
                fail(f"--uncertainty, --family, --skip: {cases} holds serving runs; they are for a cases CSV")
            df = serving_runs.validate_file(cases, out, workers)
        else:
            df = validate_report.validate_file(cases or validate_report.DEFAULT_CASES, out, workers, plots,
                                               uncertainty, None if family is None else set(family.split(",")),
                                               skip=None if skip is None else set(skip.split(",")))
    except InfersimError as exc:
        fail(str(exc))
        return
    columns, rows = (serving_runs if staged else validate_report).table_rows(df)
    table = Table(title=f"validation: {cases or validate_report.DEFAULT_CASES}")
    for column in columns:
        table.add_column(column, justify="left" if column in ("case", "note") else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if "inside_band" in df:
        from simulator.studies.validate.coverage import coverage_rows

        columns, rows = coverage_rows(df)
        table = Table(title="measured inside the predicted p10-p90 band (parameter draws)")
        for column in columns:
            table.add_column(column, justify="left" if column == "family" else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"results in {out}/")
    console.print((serving_runs if staged else validate_report).summary_line(df))


def _shown(path: Path | None) -> str:
    """`path` relative to the working directory when it is inside it (what provenance texts quote)."""
    if path is None:
        return ""
    return str(path.resolve().relative_to(Path.cwd()) if path.resolve().is_relative_to(Path.cwd()) else path)


@app.command()
def calibrate(
    cases: Path | None = typer.Argument(None, help="Validation CSV (default validation/calibration.csv)."),
    folds: int = typer.Option(5, "--folds", min=2, help="Cross-validation folds within each family."),
    workers: int = typer.Option(2, "--workers", min=1, help="Cases simulated in parallel processes."),
    family: str | None = typer.Option(None, "--family",
                                      help="Fit only these families, comma-separated (Hopper,Blackwell,...)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the fit and its errors; leave the catalog."),
    bands_only: bool = typer.Option(False, "--bands-only", help="Only rewrite catalog/uncertainty.yaml from the "
                                    "cross-validated errors beside CASES (no refit)."),
    runs: Path | None = typer.Option(None, "--runs", help="Measured serving runs whose engine host time to fit "
                                     "(default: vllm-h100/cases.csv beside CASES, when there)."),
    no_runs: bool = typer.Option(False, "--no-runs", help="Fit the engines' host time on CASES alone."),
) -> None:
    """Fit each chip family's efficiencies on CASES, print in-sample and cross-validated errors, write the
    catalog (the fitted values and their provenance). A family whose chip has measured serving runs takes
    their engine's host time from them, judged leaving each run out."""
    from concurrent.futures import ProcessPoolExecutor

    from simulator.studies.validate import calibrate as cal
    from simulator.studies.validate.cases import read_cases
    from simulator.studies.validate.predict import simulate_all
    from simulator.studies.validate.report import DEFAULT_CASES
    from simulator.studies.validate.uncertainty import write_uncertainty

    path = cases or DEFAULT_CASES
    shown = _shown(path)
    cv_shown = str(cal.cross_validation_path(shown))
    if bands_only:
        try:
            console.print(f"parameter uncertainty: {write_uncertainty(path, shown=cv_shown)}")
        except InfersimError as exc:
            fail(str(exc))
        return
    only = None if family is None else set(family.split(","))
    if only is not None and not only <= set(cal.FAMILIES):
        unknown = ", ".join(repr(f) for f in sorted(only - set(cal.FAMILIES)))
        fail(f"--family: {unknown} is not one of: {', '.join(cal.FAMILIES)}")
    runs_path = None if no_runs else runs or (path.parent / "vllm-h100" / "cases.csv")
    try:
        rows = read_cases(path)
        run_values = cal.run_values(runs_path) if runs_path is not None and (runs or runs_path.is_file()) else []
    except InfersimError as exc:
        fail(str(exc))
        return
    with ProcessPoolExecutor(workers) as pool:
        outcomes = simulate_all(rows, workers=1)
        fits, scored = cal.calibrate(rows, outcomes, cal.simulator_predict(pool), folds, only,
                                     log=console.print, runs=run_values, runs_source=_shown(runs_path))
    for title, (columns, table_rows) in (("cases", cal.case_rows(scored)), ("errors", cal.summary_rows(scored))):
        table = Table(title=f"calibration {title}: {path}")
        for column in columns:
            table.add_column(column, justify="left" if column in ("case", "family", "role", "group") else "right")
        for row in table_rows:
            table.add_row(*row)
        console.print(table)
    if not dry_run:
        cal.write_catalog(fits, scored, rows, str(shown))
        # what validate quotes as cross-validated; one family refitted replaces only its cases' rows
        console.print(f"cross-validated errors: {cal.write_cross_validation(scored, path, family is not None)}")
        console.print(f"parameter uncertainty: {write_uncertainty(path, shown=cv_shown)}")
        console.print(f"catalog written: {', '.join(fits) or 'nothing fitted'}")


@app.command()
def init(folder: Path = typer.Argument(..., help="New folder for the starter set.")) -> None:
    """Copy the shipped topologies/, workloads/ (with their traces) and scenarios/ into FOLDER to edit; names
    in it then resolve to your copies when you run from FOLDER or its scenarios."""
    from simulator.config.shipped import copy_starter

    try:
        copied = copy_starter(folder)
    except InfersimError as exc:
        fail(str(exc))
        return
    console.print(f"copied {copied} files into {folder}/; try: cd {folder} && infersim run scenarios/default.yaml")


@app.command()
def report(
    folder: Path = typer.Argument(..., help="A results folder: of a run, a sweep, a comparison or a validation."),
    trace: bool = typer.Option(False, "--trace", help="A run's folder: also rebuild trace.json (default bounds)."),
) -> None:
    """Rebuild FOLDER/report.html (one self-contained page, charts inline) from the tables in FOLDER."""
    kinds = {"summary.json": "run", "sweep.parquet": "sweep", "compare.parquet": "comparison",
             "validation.csv": "validation"}
    kind = next((k for name, k in kinds.items() if (folder / name).is_file()), None)
    if kind is None:
        fail(f"{folder}: not a results folder (none of: {', '.join(kinds)})")
    if trace and kind != "run":
        fail(f"--trace: {folder} holds a {kind}, not a run (a trace is of one run)")
    try:
        path = _rebuild(kind, folder)
        if trace:
            from simulator.results.run_html import from_folder
            from simulator.results.trace import BREAKDOWN, TRACE_NAME, write_trace

            columns = ("replica", "start_s", "duration_s", "prefill_tokens", "decode_tokens", "batch_size", "chips",
                       *(c for c, _ in BREAKDOWN))
            write_trace(folder / TRACE_NAME, *from_folder(folder, columns))
            console.print(f"trace: {folder / TRACE_NAME}")
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{folder}: cannot rebuild the {kind} report: {exc}")
        return
    console.print(f"{kind} report: {path}")


def _rebuild(kind: str | None, folder: Path) -> Path:
    if kind == "run":
        from simulator.results.run_html import HTML_NAME, from_folder, memory_from_folder, write_run_html

        write_run_html(folder / HTML_NAME, *from_folder(folder), memory=memory_from_folder(folder))
        return folder / HTML_NAME
    if kind == "sweep":
        from simulator.studies import sweep_html

        return sweep_html.rebuild(folder)
    if kind == "comparison":
        from simulator.studies import compare_html

        return compare_html.rebuild(folder)
    from simulator.studies.validate import report as validate_report

    return validate_report.rebuild(folder)


@app.command("list")
def list_(what: str = typer.Argument(..., help="chips, models or topologies"),
          files: list[Path] = typer.Argument(None, help="chips: chip YAMLs or scenarios whose chips to add")
          ) -> None:
    """Print the catalog's chips or models, or the topologies/ folder, as a table; `list chips FILE...` adds
    the chips of chip YAMLs or scenarios, each with where it came from."""
    tables = {"chips": _chip_rows, "models": _model_rows, "topologies": _topology_rows}
    if what not in tables:
        fail(f"list: {what!r} is not one of: {', '.join(tables)}")
    if files and what != "chips":
        fail(f"list {what}: takes no files; allowed: list chips FILE...")
    try:
        title, columns, rows = _chip_rows(files or []) if what == "chips" else tables[what]()
    except InfersimError as exc:
        fail(str(exc))
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("id", "name", "chip", "vendor", "origin") else "right",
                         overflow="fold" if column == "origin" else "ellipsis")  # a path is shown whole
    for row in rows:
        table.add_row(*row)
    console.print(table)


Rows = tuple[str, list[str], list[list[str]]]  # `infersim list`: title, columns, rows


def _g(value: float | None, scale: float, digits: int = 4) -> str:
    return "" if value is None else f"{value / scale:.{digits}g}"


def _chip_rows(files: list[Path] | None = None) -> Rows:
    from simulator.config.load import chip_ids, load_chip

    rows = []
    for chip_id in chip_ids():
        c = load_chip(chip_id)
        peak = c.compute.peak
        top = c.memory[0]
        rows.append([c.id, c.name, c.kind, _g(peak.get("bf16"), 1e12), _g(peak.get("fp8"), 1e12),
                     f"{top.tier} {top.capacity / 1e9:.4g}", _g(top.bandwidth, 1e12),
                     _g(c.scaleup.bandwidth_per_dir if c.scaleup else None, 1e9),
                     _g(c.power.tdp, 1.0) if c.power else "none", _price(c), "catalog"])
    for path in files or []:
        c, origin = _user_chip(path)
        peak, top = c.compute.peak, c.memory[0]
        rows.append([c.id, c.name, c.kind, _g(peak.get("bf16"), 1e12), _g(peak.get("fp8"), 1e12),
                     f"{top.tier} {top.capacity / 1e9:.4g}", _g(top.bandwidth, 1e12),
                     _g(c.scaleup.bandwidth_per_dir if c.scaleup else None, 1e9),
                     _g(c.power.tdp, 1.0) if c.power else "none", _price(c), origin])
    columns = ["id", "name", "kind", "bf16 TFLOP/s", "fp8 TFLOP/s", "memory GB", "TB/s", "scale-up GB/s/dir",
               "TDP W", "price (USD; rent USD/h)", "origin"]
    return "chips (dense peaks)", columns, rows


def _user_chip(path: Path) -> tuple[Any, str]:
    """A chip YAML (its path is the origin) or a scenario (its chip: catalog, a chip YAML, or inline)."""
    from simulator.config.load import load_scenario, read_yaml
    from simulator.config.user_chip import resolve_chip

    data = read_yaml(path)
    if isinstance(data, dict) and ("compute" in data or "extends" in data):
        return resolve_chip(str(path), Path.cwd(), str(path), "chip")
    scenario = load_scenario(path)
    return scenario.chip, scenario.chip_origin


def _price(chip: Any) -> str:
    """The catalog price as `infersim list chips` shows it: purchase, rent, or none (its source says why)."""
    price = chip.price
    parts = [] if price is None else [f"{price.purchase_usd:,.0f}" if price.purchase_usd else "",
                                      f"{price.rent_usd_per_hour:g}/h" if price.rent_usd_per_hour else ""]
    return "; ".join(p for p in parts if p) or "none"


def _model_rows() -> Rows:
    from simulator.config.load import load_model_config, model_ids
    from simulator.hardware.model import model_shape

    rows = []
    for model_id in model_ids():
        name, config = load_model_config(model_id, Path.cwd(), "catalog")
        m = model_shape(name, config)
        rows.append([m.name, f"{m.total_params / 1e9:.1f}", f"{m.active_params / 1e9:.1f}", str(m.n_layers),
                     str(m.d_model), f"{m.n_heads}/{m.n_kv_heads}", m.attention,
                     f"{m.kv_bytes_per_token('bf16') / 1e3:.0f}", str(m.max_context or "")])
    columns = ["id", "params B", "active B", "layers", "d_model", "heads/kv", "attention", "KV kB/token bf16",
               "max context"]
    return "models", columns, rows


def _topology_rows() -> Rows:
    from simulator.config.cluster import TopologySpec
    from simulator.config.load import find_dir, read_yaml, validate

    folder = find_dir("topologies", Path.cwd())
    rows = []
    for path in sorted(folder.glob("*.yaml")) if folder else []:
        t = validate(TopologySpec, read_yaml(path), str(path))
        rows.append([t.name, t.chip, str(t.nodes), str(t.chips_per_node), str(t.nodes * t.chips_per_node)])
    return f"topologies ({folder or 'no topologies/ folder found'})", ["id", "chip", "nodes", "chips/node",
                                                                        "chips"], rows


workload_app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, help="Inspect workloads: statistics and plots.")
app.add_typer(workload_app, name="workload")


@workload_app.command("describe")
def workload_describe(
    file: Path = typer.Argument(..., help="Workload YAML, or a scenario YAML (its workload)."),
    out: Path | None = typer.Option(None, "-o", "--out",
                                       help="Plot folder (default results/workload-<name>)."),
    seed: int | None = typer.Option(None, "--seed", min=0, help="Seed (default: the scenario's, else 0)."),
) -> None:
    """Print a workload's rate, inter-arrival CV and length percentiles (per class) and plot them."""
    from simulator.config.load import load_workload
    from simulator.workload import describe
    from simulator.workload.arrivals import generate

    try:
        spec, file_seed, name = load_workload(file)
        requests = generate(spec, file_seed if seed is None else seed)
    except InfersimError as exc:
        fail(str(exc))
        return
    columns, rows = describe.table(describe.describe(requests))
    table = Table(title=f"workload {name}")
    for column in columns:
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    from simulator.results.outputs import staged_folder

    target = out or Path("results") / f"workload-{name}"
    try:
        with staged_folder(target, describe.PLOT_NAMES) as folder:
            written = [target / p.name for p in describe.write_plots(requests, folder, name)]
    except InfersimError as exc:
        fail(str(exc))
        return
    console.print(f"plots: {', '.join(str(p) for p in written)}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
