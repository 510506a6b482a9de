"""Cost basis: catalog prices with their sources, scenario overrides, and an explicit `cost.prefer` that never
falls back silently."""

import pytest
from conftest import REPO

from simulator import load_scenario, run
from simulator.config.cost import cost_basis
from simulator.config.load import chip_ids, load_chip
from simulator.config.scenario import CostSpec
from simulator.errors import ScenarioError


@pytest.mark.parametrize("chip_id", chip_ids())
def test_every_catalog_chip_has_a_price_or_says_why_not(chip_id):
    price = load_chip(chip_id).price
    assert price is not None, f"{chip_id}: no price block"
    has_number = price.purchase_usd is not None or price.rent_usd_per_hour is not None
    assert has_number or price.source.startswith("NONE: "), price.source
    basis = cost_basis(CostSpec(), load_chip(chip_id))
    assert (basis.basis is None) == (basis.reason is not None)


def test_scenario_prices_override_the_catalog_and_are_recorded(write_scenario):
    s = run(load_scenario(write_scenario({"cost.chip_price_usd": 60000}))).summary
    base = run(load_scenario(write_scenario())).summary
    assert s["cost"]["basis"] == "purchase" and s["cost"]["chip_price_source"] == "scenario cost.chip_price_usd"
    assert base["cost"]["chip_price_source"].startswith("catalog chip h100-sxm price (huggingface.co")
    span = s["sim"]["simulated_s"]
    assert s["energy_j"] == base["energy_j"]
    # doubling the price adds exactly one more amortised chip price
    assert s["cost_usd"] - base["cost_usd"] == pytest.approx(30000 * span / (4 * 365 * 24 * 3600))


def test_rent_is_per_chip_hour_and_recorded(write_scenario):
    s = run(load_scenario(write_scenario({"cost.prefer": "rent", "cost.rent_usd_per_chip_hour": 3.6}))).summary
    assert s["cost"]["basis"] == "rent" and s["cost"]["rent_source"] == "scenario cost.rent_usd_per_chip_hour"
    assert s["cost_usd"] == pytest.approx(1 * 3.6 * s["sim"]["simulated_s"] / 3600)


def test_prefer_rent_without_a_rate_is_one_line_not_a_fallback(write_scenario):
    path = write_scenario({"cost.prefer": "rent"})  # the H100 has a purchase price only
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value) == (f"{path}: cost.prefer: 'rent' but chip h100-sxm has no rental rate; "
                              "set cost.rent_usd_per_chip_hour")


def test_prefer_purchase_without_a_price_is_refused(write_scenario):
    path = write_scenario({"cluster": str(REPO / "topologies" / "tpu-v5p-64.yaml"), "deployment.tensor_parallel": 4,
                           "cost.prefer": "purchase"})
    with pytest.raises(ScenarioError, match="cost.prefer: 'purchase' but chip tpu-v5p has no purchase price"):
        load_scenario(path)


def test_a_chip_without_a_price_has_no_cost_and_says_why():
    basis = cost_basis(CostSpec(), load_chip("b200"))
    assert basis.basis is None and basis.reason.startswith("NONE: shared/data/catalog/chips.csv")
    priced = cost_basis(CostSpec(chip_price_usd=40000), load_chip("b200"))
    assert priced.basis == "purchase" and priced.purchase_usd == 40000


def test_system_capex_adds_nodes_and_racks_to_a_bought_cluster(write_scenario):
    base = run(load_scenario(write_scenario())).summary
    s = run(load_scenario(write_scenario({"cost.node_usd": 100000, "cost.facility_usd_per_rack_year": 50000}))).summary
    span, year = s["sim"]["simulated_s"], 365 * 24 * 3600
    parts = s["cost"]["parts_usd"]
    assert parts["nodes"] == pytest.approx(100000 * span / (4 * year))  # one node, amortised over 4 years
    assert parts["facility"] == pytest.approx(50000 * span / year)       # no nodes_per_rack: one rack
    assert s["cost_usd"] == pytest.approx(sum(parts.values()))
    assert s["cost_usd"] - base["cost_usd"] == pytest.approx(parts["nodes"] + parts["facility"])
    assert base["cost"]["parts_usd"]["nodes"] == 0 and base["cost"]["parts_usd"]["facility"] == 0
    rented = run(load_scenario(write_scenario({"cost.node_usd": 100000, "cost.prefer": "rent",
                                               "cost.rent_usd_per_chip_hour": 2}))).summary
    assert list(rented["cost"]["parts_usd"]) == ["rent"]  # a rental rate includes the system
