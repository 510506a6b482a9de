"""Energy and cost: the sum of their parts, each part from its closed form."""

import pytest
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.load import load_chip
from simulator.hardware.energy import KERNEL_RESIDENT_SHARE, EnergyModel, energy_parts


def test_a_chip_busy_all_the_time_draws_tdp_and_an_idle_one_idle_power():
    chip = load_chip("h100-sxm")
    model = EnergyModel.build(chip, "bf16", "hbm")
    hbm = chip.memory[0]
    seconds = 2.0
    # compute-bound kernels all the time, memory at nameplate bandwidth: exactly TDP
    busy = energy_parts(model, chips=1, seconds=seconds, kernel_s=seconds, arithmetic_s=seconds,
                        memory_bytes=hbm.bandwidth * seconds, link_joules=0.0)
    assert busy.total_j == pytest.approx(chip.power.tdp * seconds)
    # memory traffic at nameplate bandwidth costs bandwidth x 8 x energy_per_bit (3.35 TB/s x 31.2 pJ/B)
    assert busy.memory_j / seconds == pytest.approx(3.35e12 * 8 * 3.9e-12)
    idle = energy_parts(model, chips=1, seconds=seconds, kernel_s=0.0, arithmetic_s=0.0, memory_bytes=0.0,
                        link_joules=0.0)
    assert idle.total_j == pytest.approx(chip.power.idle * seconds)
    # a memory-bound kernel (no arithmetic) draws the resident share of the core, between idle and TDP
    decode = energy_parts(model, chips=1, seconds=seconds, kernel_s=seconds, arithmetic_s=0.0,
                          memory_bytes=0.725 * hbm.bandwidth * seconds, link_joules=0.0)
    assert chip.power.idle * seconds < decode.total_j < busy.total_j
    assert decode.kernel_j == pytest.approx(KERNEL_RESIDENT_SHARE * model.core_w * seconds)


@pytest.mark.parametrize("busy_share", [0.0, 0.3, 1.0])
def test_energy_never_below_idle_nor_mean_power_above_tdp(busy_share):
    chip = load_chip("b200")
    model = EnergyModel.build(chip, "fp8", "hbm")
    chips, seconds = 8, 3.0
    kernel_s = busy_share * chips * seconds
    parts = energy_parts(model, chips, seconds, kernel_s=kernel_s, arithmetic_s=kernel_s / 2,
                         memory_bytes=chip.memory[0].bandwidth * kernel_s, link_joules=0.0)
    assert chips * chip.power.idle * seconds <= parts.total_j <= chips * chip.power.tdp * seconds * (1 + 1e-12)


def test_a_prefill_saturated_h100_draws_near_tdp_and_an_idle_run_idle_power(write_scenario):
    prefill = write_scenario({"workload": {"arrival": {"kind": "closed_loop", "users": 16, "think_time": "0 s"},
                                           "prompt_tokens": {"kind": "fixed", "value": 4096},
                                           "output_tokens": {"kind": "fixed", "value": 1}, "num_requests": 100}},
                             name="prefill.yaml")
    s = run(load_scenario(prefill)).summary
    assert s["bottleneck_share"]["compute"] > 0.95
    assert 0.8 * 700 <= s["energy"]["mean_power_w"] <= 700
    quiet = write_scenario({"workload": {"arrival": {"kind": "poisson", "rate": "0.05 /s"},
                                         "prompt_tokens": {"kind": "fixed", "value": 128},
                                         "output_tokens": {"kind": "fixed", "value": 16}, "num_requests": 5}},
                           name="quiet.yaml")
    q = run(load_scenario(quiet)).summary
    assert q["energy"]["kernel_busy_share"] < 0.01
    assert 70 <= q["energy"]["mean_power_w"] < 1.05 * 70


def test_run_energy_is_the_sum_of_idle_compute_memory_and_network():
    result = run(load_scenario(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml", ["workload.num_requests=80"]))
    s, it, links = result.summary, result.iterations, result.links
    e = s["energy"]
    assert s["energy_j"] == pytest.approx(e["idle_j"] + e["compute_j"] + e["memory_j"] + e["network_j"])
    assert e["compute_j"] == pytest.approx(e["kernel_j"] + e["arithmetic_j"])
    chip = load_chip("h100-sxm")
    span = s["sim"]["simulated_s"]
    assert e["idle_j"] == pytest.approx(8 * chip.power.idle * span)
    core_w = chip.power.tdp - chip.power.idle - 3.35e12 * 8 * 3.9e-12
    kernel_s = ((it["compute_bound_s"] + it["memory_bound_s"]) * it["chips"]).sum()
    assert e["kernel_j"] == pytest.approx(KERNEL_RESIDENT_SHARE * core_w * kernel_s)
    assert e["arithmetic_j"] == pytest.approx((1 - KERNEL_RESIDENT_SHARE) * core_w * (it["compute_s"] * 8).sum())
    assert e["memory_j"] == pytest.approx(it["memory_bytes_per_chip"].sum() * 8 * 8 * 3.9e-12)
    assert e["network_j"] == pytest.approx(links["bytes"].sum() * 8 * 5.5e-12)
    assert 0 < e["data_movement_share"] < 1
    assert 8 * chip.power.idle <= e["mean_power_w"] <= 8 * chip.power.tdp
    assert s["energy_j_per_output_token"] == pytest.approx(s["energy_j"] / (it["output_tokens"].sum()))
    assert s["deployment"]["nameplate_power_kw"] == pytest.approx(8 * 0.7)


def test_energy_is_unknown_not_zero_without_power_figures(write_scenario):
    # TPU v5p: Google publishes no TDP, so the catalog has no power block
    path = write_scenario({"model": "llama-3.1-8b", "cluster": str(REPO / "topologies" / "tpu-v5p-64.yaml"),
                           "deployment.tensor_parallel": 4, "workload.num_requests": 20})
    s = run(load_scenario(path)).summary
    assert s["energy_j"] is None and s["energy"] is None and s["energy_j_per_output_token"] is None
    assert s["cost_usd_per_million_output_tokens"] is not None  # rented by the hour: cost without energy


def test_cost_rent_versus_purchase(write_scenario):
    s = run(load_scenario(write_scenario())).summary
    span = s["sim"]["simulated_s"]
    chip = load_chip("h100-sxm")
    capital = chip.price.purchase_usd * span / (4 * 365 * 24 * 3600)
    assert s["cost_usd"] == pytest.approx(capital + s["energy_j"] * 1.2 * 0.08 / 3.6e6)


@pytest.mark.parametrize("topology, nodes, expected", [
    ("single-h100", 1, (1, 0, 0)),
    ("hgx-h100", 1, (1, 0, 1)),                # one NVSwitch domain, no scale-out fabric
    ("hgx-h100-x2-ndr400", 2, (2, 16, 3)),     # 2 node switches + 1 leaf; a NIC per GPU
    ("h100-4x8-ndr400", 4, (4, 32, 8)),        # 4 node switches + 2 leaves + 2 spines
    ("h100-4x8-ndr400", 2, (2, 16, 3)),        # a run on two nodes: one leaf, no spine in its path
    ("tpu-v5e-256", 1, (1, 0, 0)),             # a torus has no switch
])
def test_system_components_are_counted_as_the_topology_wires_them(topology, nodes, expected):
    import yaml

    from simulator.config.cluster import TopologySpec
    from simulator.hardware.energy import system_counts
    spec = TopologySpec.model_validate(yaml.safe_load((REPO / "topologies" / f"{topology}.yaml").read_text()))
    c = system_counts(spec, nodes)
    assert (c.nodes, c.nics, c.switches) == expected


def test_host_nic_and_switch_power_is_drawn_for_the_whole_run_and_adds_to_energy_and_its_cost(write_scenario):
    base_cfg = {"cluster": str(REPO / "topologies" / "hgx-h100-x2-ndr400.yaml"), "deployment.tensor_parallel": 8,
                "deployment.replicas": 2, "workload.num_requests": 60}
    base = run(load_scenario(write_scenario(base_cfg, name="base.yaml"))).summary
    host_w, nic_w, switch_w = 800.0, 25.0, 1500.0
    result = run(load_scenario(write_scenario({**base_cfg, "cost.host_w_per_node": host_w, "cost.nic_w": nic_w,
                                               "cost.switch_w": switch_w}, name="system.yaml")))
    s, e, span = result.summary, result.summary["energy"], result.summary["sim"]["simulated_s"]
    assert span == base["sim"]["simulated_s"] and s["deployment"]["nodes"] == 2
    assert e["components"] == {"nodes": 2, "nics": 16, "switches": 3}
    assert e["host_j"] == host_w * 2 * span  # P x N x T, exactly
    assert e["nic_j"] == nic_w * 16 * span
    assert e["switch_j"] == switch_w * 3 * span
    for part in ("idle_j", "kernel_j", "arithmetic_j", "memory_j", "network_j", "mean_power_w_per_chip"):
        assert e[part] == base["energy"][part]  # the chips' own parts do not move
    parts = [e[k] for k in ("idle_j", "kernel_j", "arithmetic_j", "memory_j", "network_j", "host_j", "nic_j",
                            "switch_j")]
    assert s["energy_j"] == pytest.approx(sum(parts), rel=1e-12)
    assert s["energy_j"] - base["energy_j"] == pytest.approx((host_w * 2 + nic_w * 16 + switch_w * 3) * span)
    out_tokens = float(result.requests.loc[result.requests["status"] == "completed", "output_tokens"].sum())
    per_token = e["j_per_output_token"]
    assert per_token["host"] == pytest.approx(e["host_j"] / out_tokens)
    assert sum(per_token.values()) == pytest.approx(s["energy_j_per_output_token"])
    assert s["cost"]["parts_usd"]["energy"] == pytest.approx(s["energy_j"] * 1.2 * 0.08 / 3.6e6)  # x PUE
    assert s["deployment"]["nameplate_power_kw"] == pytest.approx(
        (16 * 700 + host_w * 2 + nic_w * 16 + switch_w * 3) / 1e3)
    from simulator.results.report import headline
    line = dict(headline(s))["energy per output token (J)"]
    assert "host" in line and "nics" in line and "switches" in line
    assert dict(headline(base))["energy per output token (J)"] == f"{base['energy_j_per_output_token']:.3g}"


@pytest.mark.parametrize("key, value, allowed", [("host_w_per_node", -1, "must be >= 0"),
                                                  ("nic_w", "lots", "valid number"),
                                                  ("switch_w", 1e7, "must be <= 1000000")])
def test_bad_system_power_is_one_line_naming_file_and_field(write_scenario, tmp_path, key, value, allowed):
    from conftest import cli_error
    path = write_scenario({f"cost.{key}": value})
    line = cli_error("run", path, "-o", tmp_path / "out")
    assert line.startswith(f"{path}: cost.{key}: ") and allowed in line, line
