"""infersim: a discrete-event simulator of LLM inference clusters.

    from simulator import load_scenario, run, sweep
    result = run(load_scenario("scenarios/default.yaml"))
    result.summary["ttft_s"]["p99"]
    table = sweep("scenarios/sweeps/llama70b-batch-x-tp.yaml", "results/batch-x-tp").table
"""

from simulator.config.load import Scenario, load_scenario
from simulator.results.run_result import RunResult
from simulator.run import run
from simulator.studies.sweep import SweepResult, sweep

__all__ = ["RunResult", "Scenario", "SweepResult", "load_scenario", "run", "sweep"]
