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
