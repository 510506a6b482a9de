"""A user's own chip: a chip YAML path or an inline mapping, `extends:` a catalog chip with overrides, chip
fields through --set; validated like catalog chips, recorded in the summary."""

import pytest
import yaml
from conftest import cli_error

from simulator import load_scenario, run
from simulator.errors import ScenarioError

H100_WITH_HBM3E = {"extends": "h100-sxm", "id": "h100-hbm3e", "name": "H100 with HBM3e",
                   "memory": [{"tier": "hbm", "capacity": "141 GB", "bandwidth": "4.8 TB/s",
                               "energy_per_bit": "3.9 pJ", "source": "ASSUMED: H200 memory on H100 silicon"}]}


def without(summary, *keys):
    return {k: v for k, v in summary.items() if k not in ("sim", *keys)}


def test_a_chip_extending_another_with_only_its_price_changed_changes_only_the_cost(write_scenario, tmp_path):
    chip = tmp_path / "chip.yaml"
    chip.write_text(yaml.safe_dump({"extends": "h100-sxm", "id": "h100-dear",
                                    "price": {"purchase_usd": 60000, "source": "ASSUMED"}}))
    base = run(load_scenario(write_scenario())).summary
    mine = run(load_scenario(write_scenario({"cluster": {"name": "one", "chip": "chip.yaml", "nodes": 1,
                                                         "chips_per_node": 1}}, name="mine.yaml"))).summary
    assert mine["chip"] == "h100-dear" and mine["chip_origin"] == str(chip)
    assert "chip_origin" not in base
    changed = ("chip", "chip_origin", "cost_usd", "cost_usd_per_million_output_tokens", "cost")
    assert without(mine, *changed) == without(base, *changed)
    assert mine["cost_usd"] > base["cost_usd"]


def test_a_faster_memory_speeds_up_a_memory_bound_run(write_scenario):
    base = run(load_scenario(write_scenario())).summary
    inline = yaml.safe_dump(H100_WITH_HBM3E, default_flow_style=True).strip()
    mine = run(load_scenario(write_scenario(), [f"cluster.chip={inline}"])).summary
    assert mine["chip"] == "h100-hbm3e" and mine["chip_origin"].startswith("inline in ")
    assert mine["tpot_s"]["p50"] < base["tpot_s"]["p50"]


def test_chip_fields_through_set(write_scenario):
    path = write_scenario()
    scenario = load_scenario(path, ["cluster.chip.efficiency.compute=0.5", "cluster.chip.power.tdp=650 W"])
    assert scenario.chip.id == "h100-sxm-modified" and scenario.chip.efficiency.compute == 0.5
    assert scenario.chip.power.tdp == 650 and scenario.chip.power.idle == 70  # the rest inherited
    assert scenario.chip_origin == f"inline in {path}"


def test_a_misspelt_chip_field_names_the_file_the_field_and_the_allowed_keys(write_scenario, tmp_path):
    chip = tmp_path / "bad.yaml"
    chip.write_text("extends: h100-sxm\npower: {tdp: 700 W, idel: 70 W, source: x}\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(write_scenario(), [f"cluster.chip={chip}"])
    assert str(err.value) == f"{chip}: power.idel: unknown key; allowed: idle, source, tdp"
    path = write_scenario()
    assert cli_error("run", path, "--set", "cluster.chip.efficency.compute=0.5").startswith(
        f"{path}: cluster.chip.efficency: unknown key; allowed: compute, efficiency, host_link, id, kind, memory")
    assert cli_error("run", path, "--set", "cluster.chip.extends=no-such").startswith(
        f"{path}: cluster.chip.extends: 'no-such' is not a catalog chip (a100-sxm-80gb, ")


@pytest.mark.parametrize("chip_id", __import__("simulator.config.load", fromlist=["chip_ids"]).chip_ids())
def test_every_catalog_chip_has_power_figures_or_says_why_not(chip_id):
    from simulator.config.load import load_chip

    chip = load_chip(chip_id)
    assert (chip.power is None) == (chip.no_power is not None)
    assert chip.no_power is None or chip.no_power.startswith("NONE: ")


def test_power_given_to_a_chip_without_replaces_its_reason_and_both_at_once_are_refused(write_scenario, tmp_path):
    chip = tmp_path / "v5e.yaml"
    chip.write_text(yaml.safe_dump({"extends": "tpu-v5e", "id": "v5e-powered",
                                    "power": {"tdp": "200 W", "idle": "60 W", "source": "ASSUMED"}}))
    from simulator.config.user_chip import resolve_chip

    resolved, origin = resolve_chip(str(chip), tmp_path, "s.yaml", "cluster.chip")
    assert resolved.power is not None and resolved.no_power is None and origin == str(chip)
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump({"extends": "tpu-v5e", "id": "both", "no_power": "NONE: x",
                                    "power": {"tdp": "200 W", "idle": "60 W", "source": "ASSUMED"}}))
    with pytest.raises(ScenarioError, match="no_power: given beside power; allowed: one of them"):
        resolve_chip(str(both), tmp_path, "s.yaml", "cluster.chip")


def test_list_chips_says_where_each_chip_came_from(write_scenario, tmp_path):
    from typer.testing import CliRunner

    from simulator.cli import app

    chip = tmp_path / "c.yaml"
    chip.write_text(yaml.safe_dump(H100_WITH_HBM3E))
    inline = write_scenario({"cluster": {"name": "one", "chip": {"extends": "h100-sxm", "id": "h100-inline"},
                                         "chips_per_node": 1}}, name="inline.yaml")
    result = CliRunner().invoke(app, ["list", "chips", str(chip), str(inline)])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in result.stdout.splitlines()
            if line.count("│") > 5}
    assert rows["h100-sxm"] == "catalog" and rows["tpu-v5e"] == "catalog"
    flat = "".join(line.split("│")[-2].strip() for line in result.stdout.splitlines() if line.count("│") > 5)
    assert f"catalog{chip}" in flat and f"inlinein{inline}" in flat.replace(" ", "")  # paths folded, never cut
    assert "list models: takes no files" in cli_error("list", "models", str(chip))
