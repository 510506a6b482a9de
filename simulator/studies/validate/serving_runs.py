"""Measured serving runs with staged load and shared prefixes (validation/vllm-h100/cases.csv): each experiment
simulated once, its TTFT, E2E and ITL per load stage compared with what vLLM measured.

The file has one row per measured value (format in validation/vllm-h100/README.md). Rows of one experiment and
workload share their setting: model, TP, vLLM's max_num_seqs and max_num_batched_tokens, and an inference-perf
`shared_prefix` workload (N system prompts x M users, question and answer lengths, multi-turn chat) in
Poisson stages of a rate and a duration. The scenario: the model on `tp` H100 SXM of an HGX node, continuous
batching with chunked prefill, paged KV-cache, prefix caching on (vLLM's default), and that workload with
`workload.shared_prefix` and `arrival: {kind: stages}`. Stage s's statistics are over the requests that arrived
during it and completed; stage -1 is the whole run; ITL is, as measured, (mean E2E - mean TTFT) / (output - 1).

Output lengths: `output_len` is what a request asks for (max_tokens); a run's requests may stop earlier (at the
end-of-sequence token: Llama-2-7B-hf's runs produced 0.78 of it on average, the instruct models 0.98-1.0). The
mean a run produced is in its published means, since the derived ITL is (mean E2E - mean TTFT) / (mean output
- 1): each experiment is simulated with that produced mean, 1 + (E2E - TTFT) / ITL of its whole run, rounded
and at most `output_len`; without those three means, with `output_len`. It describes the workload (what the
server generated), not the hardware, and the predicted ITL divides by the same length.

Conversations: inference-perf appends every answer to the user's context for the whole run, which would grow
Llama-3.1-70B's 45 contexts to ~78k tokens each, 3.5M tokens against vLLM's 484k of KV-cache: nothing could stay
cached, yet the measured TTFT stays near 50 ms. So the runs cannot have kept whole conversations; a user's
conversation is taken to last CONVERSATION_TURNS turns (1, which of 1, 2, 5 and unbounded fits the measured
latencies of the Llama-3.1-70B experiment best: a choice made on the validation data, so not a validated one).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.config import files
from simulator.config.cluster import ChipSpec
from simulator.config.load import find_dir, load_scenario_dict, model_ids
from simulator.errors import InfersimError, ScenarioError, brief
from simulator.results.outputs import claim, staged_folder
from simulator.run import run
from simulator.studies.points import in_processes

# where `cluster: hgx-h100` resolves (the repository's topologies/)
_BASE = (find_dir("topologies", Path(__file__).resolve().parent) or Path("topologies")).parent
CONVERSATION_TURNS = 1  # see the module docstring
CHIP, ENGINE = "h100-sxm", "vllm"  # what the runs ran on: the chip of `cluster: hgx-h100`, vLLM
REQUIRED = ("exp_id", "experiment", "model", "tp", "precision", "max_num_batched_tokens", "max_num_seqs",
            "workload", "stage_index", "stage_rate_rps", "stage_duration_s", "system_prompt_len", "question_len",
            "output_len", "num_unique_system_prompts", "num_users_per_system_prompt", "multi_turn_chat", "metric",
            "statistic", "value_ms", "quality_flag")
METRICS = ("ttft", "e2e", "itl")
STATISTICS = {"mean": None, "p90": 0.9, "p99": 0.99}


def is_serving_runs(path: str | Path) -> bool:
    """Is `path` a file of measured serving runs (its header names exp_id and stage_index)?"""
    try:  # the one bounded reader: a device, FIFO or huge file is the validation reader's one-line error
        text = files.read_text(path, files.MAX_CSV_BYTES, what="validation CSV")
    except ScenarioError:
        return False
    header = next(csv.reader(io.StringIO(text.partition("\n")[0])), [])
    return "exp_id" in header and "stage_index" in header


@dataclass(frozen=True)
class Measured:
    """One measured value: its row's case id, experiment (with its workload), stage, metric, statistic, ms."""
    case_id: str
    experiment: str
    stage: int
    metric: str
    statistic: str
    value_ms: float
    trusted: bool


@dataclass(frozen=True)
class Experiment:
    """The setting the rows of one experiment share, and its load stages (rate /s, duration s) in order."""
    name: str
    model: str
    tp: int
    fp8: bool
    max_num_seqs: int
    max_num_batched_tokens: int
    system_prompts: int
    users_per_prompt: int
    system_prompt_tokens: int
    question_tokens: int
    output_tokens: int  # the mean a run produced (see the module docstring), at most requested_output_tokens
    multi_turn: bool
    stages: tuple[tuple[float, float], ...]
    requested_output_tokens: int = 0  # output_len: a request's max_tokens


def produced_output(requested: int, means: dict[str, float]) -> int:
    """The mean output length a run produced, from its mean E2E, TTFT and derived ITL (ms) when all three are
    there and give a length in [1, requested]; else `requested`."""
    if not {"e2e", "ttft", "itl"} <= set(means) or means["itl"] <= 0:
        return requested
    produced = 1.0 + (means["e2e"] - means["ttft"]) / means["itl"]
    return max(1, min(requested, round(produced))) if math.isfinite(produced) else requested


def _number(row: dict[str, str], column: str, line: int, file: str) -> float:
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise ScenarioError(f"line {line}: {column}", f"{brief(row[column])} is not a number", file) from None
    if not math.isfinite(value) or value < 0:
        raise ScenarioError(f"line {line}: {column}", f"{value:g} is not a finite number >= 0", file)
    return value


def read(path: str | Path) -> tuple[list[Experiment], list[Measured]]:
    """The experiments and measured values of the file; a malformed row is one ScenarioError with its line."""
    file = str(path)
    text = files.read_text(path, files.MAX_CSV_BYTES, file, "validation CSV")
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ScenarioError("header", f"missing columns: {', '.join(missing)}", file)
    rows: list[Measured] = []
    stages: dict[str, dict[int, tuple[float, float]]] = {}
    settings: dict[str, tuple[dict[str, str], int]] = {}
    whole_run_means: dict[str, dict[str, float]] = {}  # experiment -> metric -> its whole run's mean (ms)
    for line, row in enumerate(reader, start=2):
        name = f"{row['experiment']}:{row['workload']}"
        stage = int(_number(row, "stage_index", line, file)) if row["stage_index"] != "-1" else -1
        for column, allowed in (("metric", METRICS), ("statistic", tuple(STATISTICS))):
            if row[column] not in allowed:
                raise ScenarioError(f"line {line}: {column}", f"{brief(row[column])} is not one of: "
                                    f"{', '.join(allowed)}", file)
        case_id = row.get("case_id") or f"{name}:stage{stage}"
        trusted = row["quality_flag"] in ("ok", "derived_tpot_of_means")
        rows.append(Measured(case_id, name, stage, row["metric"], row["statistic"],
                             _number(row, "value_ms", line, file), trusted))
        if stage == -1 and row["statistic"] == "mean" and trusted:
            whole_run_means.setdefault(name, {})[row["metric"]] = rows[-1].value_ms
        if stage >= 0:
            stages.setdefault(name, {})[stage] = (_number(row, "stage_rate_rps", line, file),
                                                  _number(row, "stage_duration_s", line, file))
        settings.setdefault(name, (row, line))
    experiments = [_experiment(name, row, line, file, stages.get(name, {}), whole_run_means.get(name, {}))
                   for name, (row, line) in settings.items()]
    return experiments, rows


def _experiment(name: str, row: dict[str, str], line: int, file: str,
                stages: dict[int, tuple[float, float]], means: dict[str, float]) -> Experiment:
    def integer(column: str) -> int:
        return int(_number(row, column, line, file))

    requested = integer("output_len")
    return Experiment(name, row["model"], integer("tp"), row["precision"].lower() == "fp8", integer("max_num_seqs"),
                      integer("max_num_batched_tokens"), integer("num_unique_system_prompts"),
                      integer("num_users_per_system_prompt"), integer("system_prompt_len"), integer("question_len"),
                      produced_output(requested, means), row["multi_turn_chat"].strip().lower() == "true",
                      tuple(stages[s] for s in sorted(stages)), requested)


RENAMED = {"mistral-nemo-instruct-2407": "mistral-nemo-12b",  # checkpoints named by date, not by size
           "llama-4-scout-17b-16e-instruct-fp8-dynamic": "llama-4-scout-17b-16e"}  # a quantised copy


def catalog_model(hf_id: str) -> str | None:
    """The catalog model a Hugging Face id names (meta-llama/Llama-3.1-70B-Instruct -> llama-3.1-70b)."""
    name = hf_id.split("/")[-1].lower()
    name = RENAMED.get(name, name)
    for suffix in ("-instruct", "-hf", "-chat"):
        name = name.removesuffix(suffix)
    return name if name in model_ids() else None


def scenario_data(e: Experiment, model: str, max_stage_s: float | None = None) -> dict[str, Any]:
    """The experiment as a scenario; `max_stage_s` shortens every stage to at most that long (calibrate's
    trials: stage means settle within a minute or two of a stage)."""
    dtype = "fp8" if e.fp8 else "bf16"
    return {
        "name": "vllm-h100", "seed": 1, "model": model, "cluster": "hgx-h100",
        "deployment": {"tensor_parallel": e.tp, "weights_dtype": dtype, "kv_dtype": "bf16"},
        "serving": {"engine": ENGINE, "batcher": {"kind": "continuous", "max_batch_size": e.max_num_seqs,
                                "max_batched_tokens": max(e.max_num_batched_tokens, e.max_num_seqs),
                                "chunked_prefill": True, "kv_policy": "paged"},
                    "prefix_caching": True},
        "workload": {
            "arrival": {"kind": "stages", "stages": [{"rate": f"{r} /s", "duration": f"{d} s"}
                                                     for r, d in stages(e, max_stage_s)]},
            "prompt_tokens": {"kind": "fixed", "value": e.question_tokens},
            "output_tokens": {"kind": "fixed", "value": e.output_tokens},
            "shared_prefix": {"system_prompts": e.system_prompts, "users_per_prompt": e.users_per_prompt,
                              "system_prompt_tokens": e.system_prompt_tokens,
                              "turns": CONVERSATION_TURNS if e.multi_turn else 1}}}


def stages(e: Experiment, max_stage_s: float | None = None) -> list[tuple[float, float]]:
    """The experiment's (rate, duration) stages, each at most `max_stage_s` long."""
    return [(rate, duration if max_stage_s is None else min(duration, max_stage_s)) for rate, duration in e.stages]


def predict(e: Experiment, chip: ChipSpec | None = None,
            max_stage_s: float | None = None) -> tuple[dict[tuple[int, str, str], float], str]:
    """{(stage, metric, statistic): predicted ms} of one experiment, or ({}, why it was not simulated); on `chip`
    (default: the catalog's), each stage at most `max_stage_s` long (default: as measured)."""
    model = catalog_model(e.model)
    if model is None:
        return {}, f"model {e.model} is not in the catalog"
    if not e.stages:
        return {}, "no load stage given"
    try:
        scenario = load_scenario_dict(scenario_data(e, model, max_stage_s), "validation/vllm-h100", _BASE)
        result = run(scenario if chip is None else replace(scenario, chip=chip))
    except InfersimError as exc:
        return {}, str(exc)
    req = result.requests[result.requests["status"] == "completed"]
    ends = [0.0]
    for _, duration in stages(e, max_stage_s):
        ends.append(ends[-1] + duration)
    predicted = {}
    for stage in [-1, *range(len(e.stages))]:
        rows = req if stage < 0 else req[(req["arrival_s"] >= ends[stage]) & (req["arrival_s"] < ends[stage + 1])]
        for metric in ("ttft", "e2e"):
            values = rows[f"{metric}_s"] * 1e3
            for stat, q in STATISTICS.items():
                predicted[(stage, metric, stat)] = float(values.mean() if q is None else values.quantile(q))
        itl = (predicted[(stage, "e2e", "mean")] - predicted[(stage, "ttft", "mean")]) / max(e.output_tokens - 1, 1)
        predicted[(stage, "itl", "mean")] = itl
    return predicted, ""


def compare(experiments: Sequence[Experiment], measured: Sequence[Measured], workers: int = 1) -> pd.DataFrame:
    """One row per measured value: measured and predicted ms, error (predicted / measured - 1), note."""
    if workers > 1:  # workers that never outlive the study (Ctrl-C, SIGTERM, a killed parent)
        outcomes = {experiments[i].name: future.result()
                    for i, future in in_processes(predict, [(e,) for e in experiments], workers)}
    else:
        outcomes = {e.name: predict(e) for e in experiments}
    rows = []
    for m in measured:
        predicted, why = outcomes[m.experiment]
        value = predicted.get((m.stage, m.metric, m.statistic))
        note = why or ("" if m.trusted else "measured value flagged untrustworthy (quality_flag)")
        rows.append({"case_id": m.case_id, "experiment": m.experiment, "stage": m.stage, "metric": m.metric,
                     "statistic": m.statistic,
                     "measured_ms": m.value_ms, "predicted_ms": value,
                     "error": None if value is None or not m.value_ms else value / m.value_ms - 1.0,
                     "trusted": m.trusted, "note": note})
    return pd.DataFrame(rows)


def summary_line(df: pd.DataFrame) -> str:
    """How many values were simulated and scored, and the median |error| per metric and statistic (scored:
    simulated and not flagged untrustworthy)."""
    simulated = df[df["error"].notna()]
    scored = simulated[simulated["trusted"]]
    parts = [f"{len(simulated)} of {len(df)} values simulated, {len(scored)} scored "
             f"({len(simulated) - len(scored)} flagged untrustworthy)"]
    for metric in METRICS:
        errors = scored.loc[scored["metric"] == metric]
        if len(errors):
            by_statistic = ", ".join(f"{s} {100 * e.abs().median():.1f}%"
                                     for s, e in errors.groupby("statistic", sort=False)["error"])
            parts.append(f"{metric} median |error| {100 * errors['error'].abs().median():.1f}% ({by_statistic})")
    return "; ".join(parts)


def markdown(df: pd.DataFrame, cases_file: str) -> str:
    lines = [f"# Validation: {cases_file}", "", summary_line(df) + ".", "",
             f"Conversations last {CONVERSATION_TURNS} turn(s) (see simulator/studies/validate/serving_runs.py).", "",
             "| case | stage | metric | statistic | measured (ms) | predicted (ms) | error | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        predicted = "" if r.predicted_ms is None or pd.isna(r.predicted_ms) else f"{r.predicted_ms:.4g}"
        error = "" if r.error is None or pd.isna(r.error) else f"{100 * r.error:+.1f}%"
        lines.append(f"| {r.case_id} | {r.stage} | {r.metric} | {r.statistic} | {r.measured_ms:.4g} | "
                     f"{predicted} | {error} | {r.note} |")
    return "\n".join(lines) + "\n"


def validate_file(cases_file: str | Path, out: Path, workers: int = 1) -> pd.DataFrame:
    """Simulate every experiment of the file, write validation.csv and report.md into `out`."""
    experiments, measured = read(cases_file)
    with claim(out, NAMES):  # checked before simulating; one writer at a time
        df = compare(experiments, measured, workers)
        with staged_folder(out, NAMES) as folder:  # the previous folder or the new one, whole
            df.to_csv(folder / "validation.csv", index=False)
            (folder / "report.md").write_text(markdown(df, str(cases_file)), encoding="utf-8")
    return df


NAMES = frozenset({"validation.csv", "report.md"})  # what a serving-runs validation's folder holds


def table_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """The CLI's table: one row per simulated value."""
    columns = ["experiment", "stage", "metric", "stat", "measured ms", "predicted ms", "error"]
    rows = [[r.experiment, str(r.stage), r.metric, r.statistic, f"{r.measured_ms:.4g}", f"{r.predicted_ms:.4g}",
             f"{100 * r.error:+.1f}%"] for r in df[df["error"].notna()].itertuples()]
    return columns, rows
