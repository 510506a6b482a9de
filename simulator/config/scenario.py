"""A whole scenario (`ScenarioSpec`): its sections put together, and the two small sections of its own,
`cost:` (prices and energy into money) and `sim:` (how the simulation runs). A scenario that would exhaust the
machine is refused here (config/limits.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from simulator.config import limits
from simulator.config.cluster import TopologySpec
from simulator.config.deployment import DeploymentSpec
from simulator.config.fields import Frozen, SafeName, Seconds
from simulator.config.serving import ServingSpec
from simulator.config.workload import WorkloadSpec, span_problem


class CostSpec(Frozen):
    """Turns chip prices and energy into money. Rented chips pay a rate per chip-hour (power included);
    bought chips are amortised linearly and pay for their energy times the data centre's PUE.
    `chip_price_usd` / `rent_usd_per_chip_hour` replace the catalog chip's figures; `prefer` picks the basis
    (auto: purchase when priced and powered, else rent; rent or purchase: that one or a one-line error,
    config/cost.py)."""
    # bounded so that every cost stays a finite number (1e-320 years or 1e308 $/kWh made JSON's inf)
    amortization_years: float = Field(default=4.0, ge=0.01, le=100)
    usd_per_kwh: float = Field(default=0.08, ge=0, le=1e3)
    pue: float = Field(default=1.2, ge=1, le=10)
    prefer: Literal["auto", "rent", "purchase"] = "auto"
    chip_price_usd: float | None = Field(default=None, gt=0, le=1e9)
    rent_usd_per_chip_hour: float | None = Field(default=None, gt=0, le=1e6)
    # the rest of the system when bought (rent includes it): per node the server, host CPUs, DRAM, NICs and
    # in-node switches, amortised with the chips; per rack per year the facility's share (space, power and
    # cooling provisioning, top-of-rack and spine ports). No default figure is sourced: 0 unless given.
    node_usd: float = Field(default=0.0, ge=0, le=1e9)
    facility_usd_per_rack_year: float = Field(default=0.0, ge=0, le=1e9)
    # the rest of the system's power, drawn for the whole run and added to the energy (hardware/energy.py): per
    # node the host (CPUs, DRAM, fans), per scale-out NIC, per switch (scale-up, leaf, spine). No default
    # figure is sourced (shared/data has no host, NIC or switch power): 0 unless given.
    host_w_per_node: float = Field(default=0.0, ge=0, le=1e6)
    nic_w: float = Field(default=0.0, ge=0, le=1e6)
    switch_w: float = Field(default=0.0, ge=0, le=1e6)


class SimSpec(Frozen):
    max_time: Seconds | None = None  # stop the simulation here; unfinished requests count as in flight
    allow_huge: bool = False  # run even when the estimate exceeds the machine's memory or a day (limits.py)
    collectives: Literal["iteration", "layer"] = "iteration"  # flows per iteration (fast) or per layer
    link_buckets: int = Field(default=100, ge=1, le=10_000)  # time buckets of links.parquet
    # commit decode iterations that nothing can interrupt without an event each (same results; false: one
    # event per iteration, for checking)
    run_ahead: bool = True
    # processes simulating independent replica groups of one large run (engine/replica_groups.py); same results
    workers: int = Field(default=1, ge=1, le=256)


class ScenarioSpec(Frozen):
    """A runnable scenario: model + cluster + deployment + serving + workload. One whose run would obviously
    exhaust the machine's memory or last more than a day is refused (config/limits.py) unless sim.allow_huge."""
    name: SafeName
    description: str = ""
    seed: int = Field(default=0, ge=0)
    model: str
    cluster: TopologySpec
    deployment: DeploymentSpec = DeploymentSpec()
    serving: ServingSpec = ServingSpec()
    workload: WorkloadSpec
    cost: CostSpec = CostSpec()
    sim: SimSpec = SimSpec()

    @model_validator(mode="after")
    def _within_limits(self) -> ScenarioSpec:
        problem = limits.scenario_problem(self) or span_problem(self.workload)
        if problem:
            raise ValueError(problem)
        return self
