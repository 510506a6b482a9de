"""Energy and cost: the sum of their parts, each part from its closed form."""

import pytest
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.load import load_chip
from simulator.hardware.energy import EnergyModel, energy_parts


def test_a_chip_computing_at_peak_draws_exactly_its_tdp():
    chip = load_chip("h100-sxm")
    model = EnergyModel.build(chip, "bf16", "hbm")
    seconds = 2.0
    parts = energy_parts(model, chips=1, seconds=seconds, flops=chip.compute.peak["bf16"] * seconds,
                         memory_bytes=0.0, link_joules=0.0)
    assert parts.total_j == pytest.approx(chip.power.tdp * seconds)
    # fp8 FLOPs cost half: twice the peak for the same power envelope
    fp8 = EnergyModel.build(chip, "fp8", "hbm")
    assert fp8.joules_per_flop == pytest.approx(model.joules_per_flop / 2, rel=1e-3)
    assert model.joules_per_memory_byte == pytest.approx(8 * 3.9e-12)


def test_run_energy_is_the_sum_of_idle_compute_memory_and_network():
    result = run(load_scenario(REPO / "scenarios" / "llama70b-hgx-h100-fp8.yaml", ["workload.num_requests=80"]))
    s, it, links = result.summary, result.iterations, result.links
    e = s["energy"]
    assert s["energy_j"] == pytest.approx(e["idle_j"] + e["compute_j"] + e["memory_j"] + e["network_j"])
    chip = load_chip("h100-sxm")
    span = s["sim"]["simulated_s"]
    assert e["idle_j"] == pytest.approx(8 * chip.power.idle * span)
    per_flop = (chip.power.tdp - chip.power.idle) / chip.compute.peak["fp8"]
    assert e["compute_j"] == pytest.approx(it["flops_per_chip"].sum() * 8 * per_flop)
    assert e["memory_j"] == pytest.approx(it["memory_bytes_per_chip"].sum() * 8 * 8 * 3.9e-12)
    assert e["network_j"] == pytest.approx(links["bytes"].sum() * 8 * 5.5e-12)
    assert 0 < e["data_movement_share"] < 1
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
