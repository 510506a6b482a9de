"""infersim: a discrete-event simulator of LLM inference clusters.

    from simulator import load_scenario, run
    result = run(load_scenario("scenarios/default.yaml"))
    result.summary["ttft_s"]["p99"]
"""

from simulator.config.load import Scenario, load_scenario
from simulator.run import RunResult, run

__all__ = ["Scenario", "RunResult", "load_scenario", "run"]
