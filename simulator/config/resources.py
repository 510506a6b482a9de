"""The physical resources of a scenario as `--set` overrides that scale them: the chip's compute peak, each
memory tier's bandwidth, each link class's bandwidth and latency, the per-step, per-layer and per-sequence
overheads. `infersim sensitivity` moves each by +-X%; `infersim run --what-if hbm.bandwidth=2x` moves one.

A resource is named as the user would say it (`hbm.bandwidth`, `scaleout.latency`, `step_overhead`) and
resolves to the catalog or topology field it scales, wherever the scenario takes it from (a topology's
scale-up bandwidth, or the chip's port when the topology leaves it to the chip).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.config.load import Scenario, sequence_overhead_s
from simulator.errors import ScenarioError, brief

MOE_KEYS = ("num_local_experts", "n_routed_experts", "num_experts", "moe_num_experts")


@dataclass(frozen=True)
class Resource:
    """One physical resource: its name, what it is in words, and the fields (dotted key, SI value) it scales
    together (a compute peak is one value per dtype)."""
    name: str
    words: str
    fields: tuple[tuple[str, float], ...]
    more_is_faster: bool  # a bandwidth or peak: more is faster; a latency or overhead: more is slower

    def overrides(self, factor: float) -> list[str]:
        """`--set` texts that multiply every field of this resource by `factor` (SI floats, exact repr)."""
        return [f"{key}={value * factor!r}" for key, value in self.fields]


def resources(scenario: Scenario) -> list[Resource]:
    """Every resource the scenario has, in a fixed order: compute, memory tiers fastest first, links
    (scale-up, scale-out, host), then overheads."""
    chip, cluster = scenario.chip, scenario.spec.cluster
    out = [Resource("compute", f"{chip.name} compute peak",
                    tuple((f"cluster.chip.compute.peak.{d}", v) for d, v in sorted(chip.compute.peak.items())), True)]
    out += [Resource(f"{m.tier}.bandwidth", f"{m.tier.upper()} bandwidth",
                     ((f"cluster.chip.memory.{m.tier}.bandwidth", m.bandwidth),), True)
            for m in chip.memory if m.bandwidth is not None]
    if chip.mesh is not None:
        out.append(Resource("mesh.latency", "wafer core-to-core hop latency",
                            (("cluster.chip.mesh.hop_latency", chip.mesh.hop_latency),), False))
    up = cluster.scaleup
    if up is not None and cluster.chips_per_node > 1:
        port = chip.scaleup and (chip.scaleup.bandwidth_per_dir if up.kind == "switch"
                                 else chip.scaleup.link_bandwidth_per_dir)
        key = "cluster.chip.scaleup." + ("bandwidth_per_dir" if up.kind == "switch" else "link_bandwidth_per_dir")
        bandwidth = (("cluster.scaleup.bandwidth_per_dir", up.bandwidth_per_dir) if up.bandwidth_per_dir
                     else (key, port) if port else None)
        if bandwidth is not None:
            out.append(Resource("scaleup.bandwidth", f"scale-up ({up.kind}) link bandwidth", (bandwidth,), True))
        out.append(Resource("scaleup.latency", "scale-up hop latency",
                            (("cluster.scaleup.hop_latency", up.hop_latency),), False))
    down = cluster.scaleout
    if down is not None and cluster.nodes > 1:
        out.append(Resource("scaleout.bandwidth", "scale-out NIC bandwidth",
                            (("cluster.scaleout.nic_bandwidth_per_dir", down.nic_bandwidth_per_dir),), True))
        if down.uplink_bandwidth_per_dir is not None and cluster.nodes > down.nodes_per_leaf:
            out.append(Resource("scaleout.uplink.bandwidth", "leaf-to-spine uplink bandwidth",
                                (("cluster.scaleout.uplink_bandwidth_per_dir", down.uplink_bandwidth_per_dir),), True))
        out.append(Resource("scaleout.latency", "scale-out hop latency",
                            (("cluster.scaleout.hop_latency", down.hop_latency),), False))
    if cluster.host is not None:
        out.append(Resource("host.bandwidth", "host (PCIe) link bandwidth",
                            (("cluster.host.bandwidth_per_dir", cluster.host.bandwidth_per_dir),), True))
    eff = chip.efficiency
    out += [Resource("step_overhead", "fixed time per step", (("cluster.chip.efficiency.step_overhead",
                                                               eff.step_overhead),), False),
            Resource("layer_overhead", "fixed time per layer per step",
                     (("cluster.chip.efficiency.layer_overhead", eff.layer_overhead),), False)]
    if any(scenario.model_config.get(k) for k in MOE_KEYS):
        out.append(Resource("moe_layer_overhead", "fixed time per MoE layer per step",
                            (("cluster.chip.efficiency.moe_layer_overhead", eff.moe_layer_overhead),), False))
    engine = scenario.spec.serving.engine
    out.append(Resource("sequence_overhead", f"host time per sequence per step ({engine})",
                        ((f"cluster.chip.efficiency.sequence_overhead.{engine}",
                          sequence_overhead_s(chip, engine)),), False))
    return [r for r in out if all(value > 0 for _, value in r.fields)]  # a zero cannot be scaled


WHAT_IF = re.compile(r"^\s*([a-z_.]+)\s*=\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*x\s*$")


def what_if(scenario: Scenario, text: str) -> list[str]:
    """'hbm.bandwidth=2x' -> the `--set` overrides that make the scenario's HBM twice as fast (a factor
    multiplies the resource's value: 2x bandwidth, 0.5x latency)."""
    have = {r.name: r for r in resources(scenario)}
    match = WHAT_IF.match(text)
    if match is None:
        raise ScenarioError("--what-if", f"{brief(text)} must look like RESOURCE=FACTORx (e.g. hbm.bandwidth=2x); "
                            f"resources: {', '.join(have)}")
    name, factor = match.group(1), float(match.group(2))
    if name not in have:
        raise ScenarioError("--what-if", f"{brief(name)} is not a resource of this scenario; allowed: "
                            f"{', '.join(have)}")
    if not 0 < factor <= 1e6:
        raise ScenarioError("--what-if", f"{name}: factor must be > 0 and <= 1e6, got {factor:g}")
    return have[name].overrides(factor)
