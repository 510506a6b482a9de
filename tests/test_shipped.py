"""The shipped topologies, workloads and scenarios resolve by name from any folder; `infersim run` with no
argument runs the embedded default scenario; a named workload takes later --set keys."""

import json
import tomllib

from conftest import REPO, cli_error
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.load import load_scenario_dict
from simulator.config.shipped import default_scenario, shipped_dir


def test_the_shipped_folders_are_found_from_the_package():
    assert shipped_dir("topologies") == REPO / "topologies"
    assert shipped_dir("workloads") == REPO / "workloads"
    assert default_scenario() == REPO / "scenarios" / "default.yaml"


def test_names_resolve_from_an_empty_folder_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scenario = load_scenario_dict({"name": "x", "model": "llama-3.1-8b", "cluster": "hgx-h100",
                                   "workload": "sharegpt-poisson"}, "inline", tmp_path,
                                  ["workload.num_requests=50"])
    assert scenario.chip.id == "h100-sxm" and scenario.spec.cluster.chips_per_node == 8
    assert scenario.spec.workload.num_requests == 50
    assert scenario.origins["cluster"] == str(REPO / "topologies" / "hgx-h100.yaml")


def test_run_with_no_argument_runs_the_default_scenario_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--no-plots", "--set", "workload.num_requests=40", "-o", "out"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["scenario"] == "default" and summary["requests"]["arrived"] == 40


def test_a_named_workload_takes_later_set_keys(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["run", "--no-plots", "--set", "workload=sharegpt-poisson", "--set",
                                      "workload.num_requests=30", "-o", "out"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["requests"]["arrived"] == 30
    assert not list(tmp_path.glob("results"))  # nothing written outside the output folder


def test_an_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    message = cli_error("run", "--set", "workload=no-such-workload")
    assert message.startswith(f"{REPO / 'scenarios' / 'default.yaml'}: workload: 'no-such-workload' is not one of: ")
    assert "sharegpt-poisson" in message


def test_init_copies_an_editable_starter_set_that_runs(tmp_path, monkeypatch):
    result = CliRunner().invoke(app, ["init", str(tmp_path / "mine")])
    assert result.exit_code == 0, result.output
    for folder in ("topologies", "workloads", "scenarios"):
        shipped = sorted(p.relative_to(REPO / folder) for p in (REPO / folder).rglob("*") if p.is_file())
        assert sorted(p.relative_to(tmp_path / "mine" / folder)
                      for p in (tmp_path / "mine" / folder).rglob("*") if p.is_file()) == shipped
    # the copy is what names resolve to from inside it
    (tmp_path / "mine" / "topologies" / "single-h100.yaml").write_text(
        "name: single-h200-here\nchip: h200-sxm\nnodes: 1\nchips_per_node: 1\n")
    monkeypatch.chdir(tmp_path / "mine")
    scenario = load_scenario_dict({"name": "x", "model": "llama-3.1-8b", "cluster": "single-h100",
                                   "workload": "chat-poisson"}, "inline", tmp_path / "mine")
    assert scenario.chip.id == "h200-sxm"
    assert cli_error("init", tmp_path / "mine") == f"{tmp_path / 'mine'}: exists and is not an empty folder; " \
        "allowed: a new or empty folder"


def test_link_fields_of_a_named_topology_set_after_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scenario = load_scenario_dict({"name": "x", "model": "llama-3.1-8b", "cluster": "single-h100",
                                   "workload": "chat-poisson"}, "inline", tmp_path,
                                  ["cluster=hgx-h100", "cluster.scaleup.bandwidth_per_dir=100 GB/s",
                                   "cluster.scaleup.energy_per_bit=2 pJ"])
    assert scenario.spec.cluster.chips_per_node == 8
    assert scenario.spec.cluster.scaleup.bandwidth_per_dir == 100e9
    assert scenario.spec.cluster.scaleup.energy_per_bit == 2e-12
    assert "cluster" not in scenario.origins  # its values are the scenario's now: errors name the scenario


def test_every_shipped_folder_is_in_the_wheel():
    """pyproject's data-files must list every folder of the shipped data (a new trace folder included)."""
    data_files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    folders = {str(p.relative_to(REPO)) for name in ("topologies", "workloads", "scenarios")
               for p in [REPO / name, *(REPO / name).rglob("*")] if p.is_dir() and p.name != "__pycache__"}
    assert {target.removeprefix("share/infersim/") for target in data_files} == folders
    assert all(globs == [f"{target.removeprefix('share/infersim/')}/*.*"] for target, globs in data_files.items())
