"""Validation cases: one published, measured result per row of a CSV file, read into frozen `Case`s.

The format is defined in validation/README.md (columns, modes, tolerance rule). Any problem in the file is a
ScenarioError naming the file, the line and the column: `calibration.csv: line 7: tp: 'x' is not an
integer`, so `infersim validate` exits 2 on a malformed file before simulating anything.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.config import files
from simulator.config.fields import MAX_TOKENS, DType, safe_name
from simulator.config.load import chip_ids, model_ids
from simulator.errors import ScenarioError, brief

COLUMNS = ("case_id", "model", "chip", "num_chips", "tp", "pp", "ep", "replicas", "weights_dtype", "kv_dtype",
           "mode", "input_tokens", "output_tokens", "concurrency", "rate_per_s", "metric", "value", "unit",
           "tolerance", "source_kind", "source", "notes")
DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
MODES = ("offline", "concurrency", "rate", "batch")
METRICS = ("output_tokens_per_s", "output_tokens_per_s_per_user", "ttft_s", "tpot_s", "e2e_s", "mfu",
           "requests_per_s")
LATENCY_METRICS = ("ttft_s", "tpot_s", "e2e_s")  # lower is better; every other metric: higher is better
SOURCE_KINDS = ("mlperf", "vendor-doc", "paper", "benchmark-repo", "vendor-claim")


@dataclass(frozen=True)
class Case:
    """One measured result and the setting it was measured in (lengths are per-request means)."""
    case_id: str
    model: str
    chip: str
    num_chips: int
    tp: int
    pp: int
    ep: int
    replicas: int
    weights_dtype: DType
    kv_dtype: DType
    mode: str
    input_tokens: int
    output_tokens: int
    concurrency: int | None
    rate_per_s: float | None
    metric: str
    value: float
    unit: str
    tolerance: float
    source_kind: str
    source: str
    notes: str

    @property
    def chips_per_replica(self) -> int:
        return max(self.tp, self.ep) * self.pp

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LATENCY_METRICS


MAX_CHIPS = 100_000  # chips, and each parallelism degree, of one measured system
MAX_CONCURRENCY = 1_000_000  # users or batch size of one measurement
MAX_RATE_PER_S = 1e6


def _integer(maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{brief(text)} is not an integer") from None
        if not 1 <= value <= maximum:
            raise ValueError(f"must be from 1 to {maximum}, got {brief(value)}")
        return value
    return parse


def _number(maximum: float = math.inf) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{brief(text)} is not a number") from None
        if not 0 < value < math.inf:
            raise ValueError(f"must be a positive finite number, got {brief(text)}")
        if value > maximum:
            raise ValueError(f"must be at most {maximum:g}, got {brief(text)}")
        return value
    return parse


def _one_of(choices) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{brief(text)} is not one of: {', '.join(choices)}")
        return text
    return check


def _case_id(text: str) -> str:
    """A case id names the case's scenario, so it follows the rule for names (config/fields.py)."""
    if not text:
        raise ValueError("must not be empty")
    try:
        return safe_name(text)
    except ValueError as exc:
        raise ValueError(str(exc).replace("cannot name an output folder", "cannot name a scenario")) from None


def _parsers() -> dict[str, Callable[[str], object]]:
    ints = {name: _integer(MAX_CHIPS) for name in ("num_chips", "tp", "pp", "ep", "replicas")}
    ints |= {name: _integer(MAX_TOKENS) for name in ("input_tokens", "output_tokens")}
    return {**ints, "concurrency": _integer(MAX_CONCURRENCY), "rate_per_s": _number(MAX_RATE_PER_S),
            "value": _number(), "tolerance": _number(),
            "weights_dtype": _one_of(DTYPES), "kv_dtype": _one_of(DTYPES), "mode": _one_of(MODES),
            "metric": _one_of(METRICS), "source_kind": _one_of(SOURCE_KINDS), "model": _one_of(model_ids()),
            "chip": _one_of(chip_ids()), "case_id": _case_id}


OPTIONAL = ("concurrency", "rate_per_s", "unit", "source", "notes")


def _row_problem(c: Case) -> tuple[str, str] | None:
    """A row whose fields disagree with each other: (column, problem)."""
    if c.mode in ("concurrency", "batch") and c.concurrency is None:
        return "concurrency", f"mode {c.mode} needs a concurrency"
    if c.mode == "rate" and c.rate_per_s is None:
        return "rate_per_s", "mode rate needs a rate_per_s"
    if c.num_chips != c.chips_per_replica * c.replicas:
        how = "max(tp, ep) * pp * replicas" if c.ep > 1 else "tp * pp * replicas"
        return "num_chips", f"{c.num_chips} != {how} = {c.chips_per_replica * c.replicas}"
    if c.tolerance >= 1:
        return "tolerance", f"a relative tolerance must be < 1, got {c.tolerance}"
    return None


def read_cases(path: str | Path) -> list[Case]:
    """Every row of a validation CSV as a Case; the first problem is a one-line ScenarioError."""
    file = str(path)
    text = files.read_text(path, files.MAX_CSV_BYTES, file, "validation CSV")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        cases = _read_rows(reader, file)
    except csv.Error as exc:  # a giant field, a NUL in a field
        raise ScenarioError(f"line {reader.line_num + 1}", f"not a readable CSV row: {exc}", file) from None
    if not cases:
        raise ScenarioError("", "no cases (a header and no rows)", file)
    return cases


def _read_rows(reader: csv.DictReader, file: str) -> list[Case]:
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ScenarioError("line 1", f"missing column(s): {', '.join(missing)}", file)
    parsers = _parsers()
    cases, seen = [], set()
    for row in reader:
        line = reader.line_num
        if None in row:
            raise ScenarioError(f"line {line}", f"{len(header) + len(row[None])} fields, the header has "
                                f"{len(header)}", file)
        case = _parse_row(row, parsers, f"line {line}", file)
        if case.case_id in seen:
            raise ScenarioError(f"line {line}: case_id", f"{brief(case.case_id)} appears twice", file)
        seen.add(case.case_id)
        cases.append(case)
    return cases


def _parse_row(row: dict, parsers: dict, where: str, file: str) -> Case:
    values: dict[str, Any] = {}
    for column in COLUMNS:
        text = (row.get(column) or "").strip()
        if not text and column in OPTIONAL:
            values[column] = None if column in ("concurrency", "rate_per_s") else ""
            continue
        try:
            values[column] = parsers.get(column, str)(text)
        except ValueError as exc:
            raise ScenarioError(f"{where}: {column}", str(exc), file) from None
    case = Case(**values)
    problem = _row_problem(case)
    if problem:
        raise ScenarioError(f"{where}: {problem[0]}", problem[1], file)
    return case
