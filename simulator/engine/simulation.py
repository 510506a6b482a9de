"""Stage (5) of a run, the engine's one entry: a prepared deployment and its requests, simulated.

The cluster's SimPy actors are built in a fresh environment and run until every request is done (or
`sim.max_time`, or `watch` asks to stop), in this process or, when its replicas cannot influence each other,
as independent replica groups in several processes whose records are merged (replica_groups.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy

from simulator.config.load import Scenario
from simulator.engine import replica_groups
from simulator.engine.cluster import Cluster
from simulator.hardware.prepare import Prepared
from simulator.workload.arrivals import Requests


@dataclass(frozen=True)
class Simulation:
    """A finished simulation: the cluster with its records, the simulated span, whether it was interrupted,
    how many replica groups ran in parallel processes (1: one process) and, when one process ran although
    several were asked, why."""
    cluster: Cluster
    span_s: float
    interrupted: bool
    groups: int
    why_one_process: str


def simulate(scenario: Scenario, prepared: Prepared, requests: Requests,
             watch: Callable[[float, int], bool] | None = None) -> Simulation:
    """Simulate `requests` on the prepared deployment and check the run's conservation invariants."""
    spec = scenario.spec
    env = simpy.Environment()
    cluster = Cluster(env, spec, prepared.model, prepared.pools, prepared.graph, requests, prepared.drafter,
                      scenario.chip.efficiency.collective)
    groups, why_not = replica_groups.split(cluster, spec.sim.workers)
    if groups:
        span, interrupted = replica_groups.simulate(scenario, cluster, groups, watch)
    else:
        interrupted = cluster.run(spec.sim.max_time, watch)
        span = env.now
    cluster.check(span)
    return Simulation(cluster, span, interrupted, max(1, len(groups)), why_not)
