"""Files of the studies made of many runs: sweeps (a base scenario and axes over its dotted keys) and
comparisons (one model and workload over several cluster designs)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from simulator.config.deployment import DeploymentSpec
from simulator.config.fields import Frozen, OptionalName, PlotName, SafeName, Seconds
from simulator.config.scenario import CostSpec, SimSpec
from simulator.config.serving import ServingSpec
from simulator.errors import brief


class ParetoSpec(Frozen):
    """Two columns of the sweep table that trade off, both better when larger (default: tokens/s each user
    sees against tokens/s each chip delivers)."""
    x: str = "interactivity.tokens_per_s_per_user"
    y: str = "throughput.output_tokens_per_s_per_chip"


MAX_SWEEP_POINTS = 10_000


class SweepSpec(Frozen):
    """A sweep file: a base scenario and axes over its dotted keys (the keys `infersim run --set` takes).

    Points are the product of the `axes` and the `zip` groups, in file order, the last varying fastest; the
    keys of one zip group advance together. With `seeds: spawn` point i runs with a seed spawned from the root
    seed by its index; with `seeds: shared` every point runs with the root seed (common random numbers).
    """
    name: OptionalName = ""  # results/<name> by default
    description: str = ""
    base: str  # the base scenario file, relative to the sweep file
    seed: int | None = Field(default=None, ge=0)  # root seed; None: the base scenario's seed
    seeds: Literal["spawn", "shared"] = "spawn"
    overrides: tuple[str, ...] = ()  # dotted.key=value applied to every point, as with --set
    axes: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    zip: tuple[dict[str, Annotated[list[Any], Field(min_length=1)]], ...] = ()
    x_axis: str | None = None  # the axis the metric plots use as x; None: the first
    metrics: tuple[PlotName, ...] = ("throughput.output_tokens_per_s_per_chip", "tpot_s.p50", "ttft_s.p99")
    pareto: ParetoSpec = ParetoSpec()
    allow_huge: bool = False  # more than MAX_SWEEP_POINTS points

    @model_validator(mode="before")
    @classmethod
    def _not_too_many(cls, data: Any) -> Any:
        """Refuse an absurd grid before expanding or validating it (10 axes of 100 values are 10^20 points)."""
        if isinstance(data, dict) and data.get("allow_huge") is not True:
            groups = [*(data.get("axes") or {}).values()] if isinstance(data.get("axes"), dict) else []
            if isinstance(data.get("zip"), list):
                groups += [next(iter(g.values()), []) for g in data["zip"] if isinstance(g, dict) and g]
            points = math.prod(len(values) for values in groups if isinstance(values, list))
            if points > MAX_SWEEP_POINTS:
                raise ValueError(f"axes: {points:.3g} points; allowed: up to {MAX_SWEEP_POINTS} (at ~1 s each, "
                                 f"more would take days); set allow_huge: true to run them anyway")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        seen = list(self.axes)
        seeds = [("axes.seed", self.axes.get("seed", []))]
        seeds += [(f"zip.{i}.seed", group["seed"]) for i, group in enumerate(self.zip) if "seed" in group]
        for where, values in seeds:
            bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0]
            if bad:
                raise ValueError(f"{where}: seeds must be integers >= 0, got {brief(bad[0])}")
        for i, group in enumerate(self.zip):
            lengths = {key: len(values) for key, values in group.items()}
            if not lengths:
                raise ValueError(f"zip.{i}: an empty group; give it keys with lists of values")
            if len(set(lengths.values())) > 1:
                listed = ", ".join(f"{key} has {n}" for key, n in lengths.items())
                raise ValueError(f"zip.{i}: zipped keys need lists of equal length; {listed}")
            twice = [key for key in group if key in seen]
            if twice:
                raise ValueError(f"zip.{i}: {twice[0]} is already an axis")
            seen += list(group)
        if self.x_axis is not None and self.x_axis not in seen:
            raise ValueError(f"x_axis: {brief(self.x_axis)} is not one of the axes: {', '.join(seen) or 'none'}")
        return self


# ---------------------------------------------------------------- comparisons

class CompareDesign(Frozen):
    """One cluster design of a comparison: a topology (name, path or mapping) and how the model sits on it.
    `serving` replaces the comparison's default serving for this design only."""
    name: SafeName  # part of its scenarios' names
    description: str = ""
    cluster: str | dict[str, Any]  # validated as a topology when the design's scenarios are built
    deployment: DeploymentSpec = DeploymentSpec()
    serving: ServingSpec | None = None


class CompareSpec(Frozen):
    """A comparison file: one model and workload over several cluster designs, each swept over concurrency.

    Every (design, concurrency) point is a scenario whose workload arrival becomes closed_loop with
    `concurrency` x replicas users (each waits `think_time` between its requests) and
    max(requests_per_user x users, min_requests) requests, so each design is measured at the same load per
    replica. All points share `seed` (common random numbers: the same prompts and answers everywhere).
    """
    name: SafeName  # results/compare-<name> by default
    description: str = ""
    seed: int = Field(default=0, ge=0)
    model: str
    workload: str | dict[str, Any]  # a workloads/ name or path, or an inline workload
    concurrency: tuple[Annotated[int, Field(ge=1)], ...] = Field(min_length=1)
    requests_per_user: int = Field(default=4, ge=1)
    min_requests: int = Field(default=16, ge=1)
    think_time: Seconds = 0.0
    serving: ServingSpec = ServingSpec()
    cost: CostSpec = CostSpec()
    sim: SimSpec = SimSpec()
    designs: tuple[CompareDesign, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CompareSpec:
        names = [d.name for d in self.designs]
        if len(set(names)) < len(names):
            raise ValueError(f"design names must be unique, got {names}")
        if len(set(self.concurrency)) < len(self.concurrency):
            raise ValueError(f"concurrency values must be unique, got {list(self.concurrency)}")
        return self
