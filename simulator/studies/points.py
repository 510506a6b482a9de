"""What every study made of many runs shares: one simulation as a point's outcome record, its summary as
dotted columns, files written atomically, and the Pareto front of two columns.

An outcome never raises, so one bad point cannot stop a study: an InfersimError (a model that does not fit,
a TP degree that does not divide the heads) is what the input gives, status "error"; any other exception is
a bug, status "crash", with its traceback. Each record carries the infersim version that made it.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from simulator.config.load import Scenario
from simulator.errors import InfersimError
from simulator.results.summary import summary_json
from simulator.run import run

FINAL = ("ok", "error")  # statuses a re-run keeps; "crash" is simulated again


def _version() -> str:
    try:
        return metadata.version("infersim")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()


def simulate(scenario: Scenario, seed: int) -> dict[str, Any]:
    """Run one point and return its outcome; never raises, so that one bad point cannot stop a sweep."""
    try:
        summary = run(scenario, seed=seed).summary
        return {"status": "ok", "error": None, "summary": json.loads(summary_json(summary)),
                "infersim": VERSION}
    except InfersimError as exc:
        return failed("error", str(exc))
    except Exception as exc:  # a bug: recorded with its traceback, retried on the next run
        return failed("crash", f"{type(exc).__name__}: {exc}", traceback.format_exc())


def failed(status: str, message: str, trace: str | None = None) -> dict[str, Any]:
    outcome = {"status": status, "error": message.strip().splitlines()[0] if message.strip() else status,
               "summary": None, "infersim": VERSION}
    if trace:
        outcome["traceback"] = trace
    return outcome


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary file and rename it, so a killed run never leaves a half-written file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'ttft_s': {'p99': 1.0}} -> {'ttft_s.p99': 1.0}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats on both x and y (both larger-is-better)."""
    order = np.lexsort((-y, -x))  # by x descending, ties by y descending
    mask = np.zeros(len(x), dtype=bool)
    best = -np.inf
    for i in order:
        if y[i] > best:
            mask[i], best = True, y[i]
    return mask


def front_rows(ok: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The rows on the Pareto front of columns x and y (rows missing either are left out)."""
    rows = ok.dropna(subset=[x, y])
    return rows[pareto_front(rows[x].to_numpy(float), rows[y].to_numpy(float))]
