"""What every study made of many runs shares: one simulation as a point's outcome record, worker processes
that never outlive the study, its summary as dotted columns, files written atomically, and the Pareto front
of two columns.

An outcome never raises, so one bad point cannot stop a study: an InfersimError (a model that does not fit,
a TP degree that does not divide the heads) is what the input gives, status "error"; any other exception is
a bug, status "crash", with its traceback. Each record carries the infersim version that made it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
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


def in_processes(call: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int,
                 preload: str = "simulator.studies.points") -> Iterator[tuple[int, Future]]:
    """(index into `jobs`, its finished future) as `call(*job)` finishes in `workers` processes. The workers
    never outlive the study: on any exit of the loop (an error, Ctrl-C, SIGTERM) the pending jobs are
    cancelled and the workers stop now, not after their current job; if this process is killed (even
    SIGKILL), each worker sees its pipe close and exits."""
    context = _mp_context(preload)
    alive, alive_w = context.Pipe(duplex=False)  # only this process holds alive_w
    pool = ProcessPoolExecutor(max_workers=max(1, min(workers, len(jobs))), mp_context=context,
                               initializer=_exit_with_parent, initargs=(alive,))
    finished = False
    try:
        futures = {pool.submit(call, *job): i for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            yield futures[future], future
        finished = True
    finally:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
        pool.shutdown(wait=finished, cancel_futures=True)
        alive_w.close()
        if not finished:
            for process in processes:  # reap them: no zombie, no orphan
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
                    process.join()


def _exit_with_parent(alive: Any) -> None:
    """Worker initializer: exit when the study process is gone (even SIGKILLed), never idle as an orphan;
    Ctrl-C at the terminal reaches the whole process group, and only the study decides what to do with it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        try:
            alive.recv()  # nothing is ever sent: this returns or raises only at the parent's end
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _mp_context(preload: str) -> Any:
    """forkserver, preloaded with the study: workers start fast, never fork a threaded parent, and inherit
    none of its file descriptors (so the `alive` pipe sees EOF when the parent dies)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])
    return context


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
