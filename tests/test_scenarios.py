"""Every shipped scenario runs and reproduces its golden summary; the CLI writes the documented outputs."""

import json

import pandas as pd
import pytest
from conftest import REPO
from golden_update import GOLDEN, stable_summary
from typer.testing import CliRunner

from simulator import load_scenario, run
from simulator.cli import app

SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))


def _close(a, b, path=""):
    """Equal up to float rounding (1e-9 relative), so that a different libm cannot fail the test."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-15), path
    else:
        assert a == b, path


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenario_matches_its_golden_summary(path):
    golden = GOLDEN / f"{path.stem}.json"
    assert golden.exists(), f"no golden summary for {path.name}: run python tests/golden_update.py"
    summary = json.loads(json.dumps(stable_summary(run(load_scenario(path)).summary)))
    _close(summary, json.loads(golden.read_text()))
    assert summary["requests"]["dropped"] == 0 and summary["requests"]["in_flight"] == 0


def test_cli_run_writes_the_output_contract(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(REPO / "scenarios" / "default.yaml"), "-o", str(out),
                                      "--set", "workload.num_requests=200"])
    assert result.exit_code == 0, result.output
    assert "TTFT p50 / p99 (ms)" in result.stdout
    for name in ("summary.json", "requests.parquet", "iterations.parquet", "links.parquet", "memory.parquet",
                 "report.md", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / "plots").exists()  # PNG files only with --png
    assert "[report.html](report.html)" in (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    for key in ("scenario", "seed", "requests", "ttft_s", "tpot_s", "e2e_s", "queue_s", "throughput",
                "utilization", "bottleneck_share", "bottleneck", "energy_j_per_output_token",
                "cost_usd_per_million_output_tokens", "chips", "sim"):
        assert key in summary, key
    assert set(summary["sim"]) >= {"wall_s", "events", "simulated_s"}
    requests = pd.read_parquet(out / "requests.parquet")
    assert len(requests) == 200 == summary["requests"]["completed"]
    assert not list(out.glob(".*.tmp"))


def test_cli_list_prints_every_chip_and_model():
    runner = CliRunner()
    chips = runner.invoke(app, ["list", "chips"])
    models = runner.invoke(app, ["list", "models"])
    topologies = runner.invoke(app, ["list", "topologies"])
    assert chips.exit_code == models.exit_code == topologies.exit_code == 0
    for chip in ("h100-sxm", "groq-lpu", "tpu-v5p", "cerebras-wse3", "mi300x"):
        assert chip in chips.stdout
    for model in ("llama-3.1-405b", "deepseek-v3", "gpt-oss-120b", "palm-540b"):
        assert model in models.stdout
    assert "hgx-h100" in topologies.stdout


def test_model_can_be_any_hf_config_path(write_scenario, tmp_path):
    config = (REPO / "simulator" / "catalog" / "models" / "llama-3.1-8b.json").read_text()
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    result = run(load_scenario(write_scenario({"model": str(folder / "config.json")})))
    assert result.model.name == "my-model"
    assert result.summary["requests"]["completed"] == 300


def test_cli_run_png_adds_the_plots_and_no_plots_writes_nothing_graphical(tmp_path):
    base = ["run", str(REPO / "scenarios" / "default.yaml"), "--set", "workload.num_requests=50"]
    assert CliRunner().invoke(app, [*base, "-o", str(tmp_path / "png"), "--png"]).exit_code == 0
    for name in ("report.html", "plots/latency_cdf.png", "plots/timeline.png", "plots/breakdown.png"):
        assert (tmp_path / "png" / name).is_file(), name
    assert "![latency CDFs](plots/latency_cdf.png)" in (tmp_path / "png" / "report.md").read_text()
    assert CliRunner().invoke(app, [*base, "-o", str(tmp_path / "none"), "--no-plots"]).exit_code == 0
    assert not (tmp_path / "none" / "plots").exists() and not (tmp_path / "none" / "report.html").exists()
    both = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "both"), "--png", "--no-plots"])
    assert both.exit_code == 2 and both.stderr == ("error: --png and --no-plots contradict each other: "
                                                   "--no-plots writes nothing graphical\n")
    assert not (tmp_path / "both").exists()
