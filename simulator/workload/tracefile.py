"""What every trace reader shares: the TraceRequests record, file opening and row parsing with line numbers.

Every problem in a trace file becomes one ScenarioError naming the file (relative to the working folder when
inside it), the line and the column: `workloads/traces/azure/code.csv: line 17: ContextTokens: 'abc' is not
an integer`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.config import files
from simulator.config.fields import MAX_TOKENS
from simulator.errors import ScenarioError, brief

MAX_ID = 2**63 - 1  # client ids and prefix hashes: any 64-bit integer


@dataclass(frozen=True)
class TraceRequests:
    """Requests taken from a trace, in arrival order; arrival_s is NaN for a lengths-only trace."""
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_hashes: tuple[tuple[int, ...], ...] | None = None

    def __len__(self) -> int:
        return len(self.prompt_tokens)

    def take(self, index: np.ndarray) -> TraceRequests:
        hashes = self.prefix_hashes
        if hashes is not None:
            hashes = tuple(hashes[i] for i in index.tolist())
        return TraceRequests(self.arrival_s[index], self.prompt_tokens[index], self.output_tokens[index],
                             hashes)


def shown_path(path: str | Path) -> str:
    """The path as a person wants to read it in an error: relative to the working folder when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_lines(path: str | Path) -> list[str]:
    """Every line of a text file (gunzipped when it ends in .gz); problems become one-line errors, a byte that
    is not UTF-8 with its line number."""
    return files.read_text(path, files.MAX_TRACE_BYTES, shown_path(path), "trace file").splitlines()


# ---------------------------------------------------------------- row parsing

def parse_int(text: Any, line: int, column: str, shown: str, maximum: int = MAX_TOKENS) -> int:
    """An integer cell from 0 to `maximum` (default: a token count), or a ScenarioError naming file, line and
    column."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ScenarioError(f"line {line}: {column}", f"{brief(text)} is not an integer", shown)
    try:
        value = int(text)
    except ValueError:  # not digits, or more digits than Python converts
        raise ScenarioError(f"line {line}: {column}", f"{brief(text)} is not an integer", shown) from None
    if value < 0:
        raise ScenarioError(f"line {line}: {column}", f"{brief(value)} is negative", shown)
    if value > maximum:
        raise ScenarioError(f"line {line}: {column}", f"{brief(value)} is too large; allowed: 0 to {maximum}",
                            shown)
    return value


def parse_float(text: Any, line: int, column: str, shown: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise ScenarioError(f"line {line}: {column}", f"{brief(text)} is not a number", shown) from None
    if not math.isfinite(value):
        raise ScenarioError(f"line {line}: {column}", f"{brief(text)} is not a finite number", shown)
    return value


def json_line(text: str, line: int, shown: str) -> Any:
    """One line of a JSON-lines file, or a ScenarioError naming the file and the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"line {line}", f"invalid JSON: {exc.msg}", shown) from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise ScenarioError(f"line {line}", f"invalid JSON: {str(exc).splitlines()[0]}", shown) from None
    except RecursionError:
        raise ScenarioError(f"line {line}", "invalid JSON: nested too deeply", shown) from None


def csv_rows(lines: list[str], columns: tuple[str, ...], shown: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, the named cells) of each data row of a plain CSV file (no quoted commas)."""
    if not lines or not lines[0].strip():
        raise ScenarioError("line 1", f"no header; expected a CSV header with the columns {', '.join(columns)}",
                            shown)
    header = [cell.strip() for cell in lines[0].split(",")]
    for column in columns:
        if column not in header:
            raise ScenarioError("line 1", f"the header has no column {column!r}; expected a CSV header with the "
                                f"columns {', '.join(columns)} (the line is not shown: it may hold anything)",
                                shown)
    where = [header.index(column) for column in columns]
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(header):
            raise ScenarioError(f"line {number}", f"{len(cells)} fields, the header has {len(header)}", shown)
        yield number, [cells[i].strip() for i in where]
