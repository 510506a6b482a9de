"""infersim: a discrete-event simulator of LLM inference clusters.

    from simulator import load_scenario, run, sweep
    result = run(load_scenario("scenarios/default.yaml"))
    result.summary["ttft_s"]["p99"]
    table = sweep("scenarios/sweeps/llama70b-batch-x-tp.yaml", "results/batch-x-tp").table

The names below are imported on first use (PEP 562), so that `import simulator.cli` (every `infersim`
command, `--help` included) does not pay for pandas, networkx and the engine before a command needs them.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.config.load import Scenario, load_scenario
    from simulator.results.run_result import RunResult
    from simulator.run import run
    from simulator.studies.sweep import SweepResult, sweep

_WHERE = {"Scenario": "simulator.config.load", "load_scenario": "simulator.config.load",
          "RunResult": "simulator.results.run_result",
          "SweepResult": "simulator.studies.sweep", "sweep": "simulator.studies.sweep"}

__all__ = ["RunResult", "Scenario", "SweepResult", "load_scenario", "run", "sweep"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


class _Package(ModuleType):
    """The package, whose `run` is always the function: importing the submodule simulator.run binds the
    package attribute `run` to that module (after __init__ ran, so __getattr__ never sees it); this keeps it
    the function, as an eager `from simulator.run import run` here used to."""

    @property
    def run(self) -> Any:
        return import_module("simulator.run").run

    @run.setter
    def run(self, value: Any) -> None:
        pass  # the import system binding the submodule; `import simulator.run` still finds it in sys.modules


sys.modules[__name__].__class__ = _Package
