"""`infersim compare`: one row per design x concurrency, physics-driven trends, failing designs reported."""

import pandas as pd
import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import ScenarioError
from simulator.studies.compare import compare, load_compare, points

H100 = str(REPO / "topologies" / "single-h100.yaml")
COLUMNS = ["design", "concurrency", "users", "status", "error", "chips", "tokens_per_s_per_user",
           "output_tokens_per_s", "output_tokens_per_s_per_chip", "output_tokens_per_s_per_kw",
           "output_tokens_per_usd", "cost_basis", "ttft_s.p50", "ttft_s.p99", "tpot_s.p50", "tpot_s.p99",
           "energy_j_per_output_token", "bottleneck"]


def tiny(**extra) -> dict:
    """Llama-3.1-8B on one H100 and on one H100 left only 10% of its memory (the weights do not fit)."""
    return {
        "name": "tiny", "seed": 2, "model": "llama-3.1-8b",
        "workload": {"prompt_tokens": {"kind": "fixed", "value": 128},
                     "output_tokens": {"kind": "fixed", "value": 24},
                     "arrival": {"kind": "poisson", "rate": "5 /s"}, "num_requests": 3},
        "concurrency": [1, 16], "requests_per_user": 2, "min_requests": 4,
        "designs": [{"name": "h100", "cluster": H100},
                    {"name": "h100-squeezed", "cluster": H100, "deployment": {"memory_utilization": 0.1}}],
        **extra,
    }


@pytest.fixture
def write_compare(tmp_path):
    def write(data: dict, name: str = "cmp.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path
    return write


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    path = folder / "cmp.yaml"
    path.write_text(yaml.safe_dump(tiny(), sort_keys=False))
    return compare(path, folder / "out", workers=1, png=True)


def test_the_table_has_one_row_per_point_and_the_documented_columns(result):
    for name in ("compare.parquet", "compare.csv", "report.md", "plots/pareto_per_chip.png",
                 "plots/pareto_per_dollar.png", "plots/pareto_per_kw.png"):
        assert (result.out / name).is_file(), name
    table = pd.read_parquet(result.out / "compare.parquet")
    assert list(table.columns[:4]) == COLUMNS[:4] and set(COLUMNS) <= set(table.columns)
    assert list(zip(table["design"], table["concurrency"])) == [
        ("h100", 1), ("h100", 16), ("h100-squeezed", 1), ("h100-squeezed", 16)]
    assert len(pd.read_csv(result.out / "compare.csv")) == 4
    assert "1 x h100-sxm: TP 1 x PP 1 (EP 1) x 1 replicas, weights bf16; cost basis: purchase+energy." in \
        (result.out / "report.md").read_text()


def test_derived_columns_follow_from_the_summary(result):
    ok = result.table[result.table["status"] == "ok"]
    assert (ok["users"] == ok["concurrency"]).all()  # one replica
    assert ok["requests.completed"].tolist() == [4, 32]  # max(2 x users, 4)
    assert ok["tokens_per_s_per_user"].tolist() == pytest.approx((1 / ok["tpot_s.p50"]).tolist())
    assert ok["output_tokens_per_s_per_kw"].tolist() == pytest.approx(
        (ok["throughput.output_tokens_per_s"] / ok["deployment.nameplate_power_kw"]).tolist())
    assert ok["output_tokens_per_usd"].tolist() == pytest.approx(
        (1e6 / ok["cost_usd_per_million_output_tokens"]).tolist())
    share = ok[[c for c in ok.columns if c.startswith("bottleneck_share.")]].fillna(0)
    assert ok["bottleneck"].tolist() == [c.split(".")[1] for c in share.idxmax(axis=1)]


def test_batching_trades_per_user_speed_for_throughput_per_chip(result):
    """An HBM GPU reads its weights once per step whatever the batch: more users share each read, so each
    gets its tokens a little later while the chip delivers many more."""
    h100 = result.table[result.table["design"] == "h100"].set_index("concurrency")
    assert h100.loc[16, "tokens_per_s_per_user"] < h100.loc[1, "tokens_per_s_per_user"]
    assert h100.loc[16, "output_tokens_per_s_per_chip"] > 8 * h100.loc[1, "output_tokens_per_s_per_chip"]
    assert h100.loc[16, "energy_j_per_output_token"] < h100.loc[1, "energy_j_per_output_token"]


def test_a_design_that_does_not_fit_is_reported_and_the_others_complete(result):
    squeezed = result.table[result.table["design"] == "h100-squeezed"]
    assert (squeezed["status"] == "error").all()
    assert squeezed["error"].iloc[0].startswith(
        "llama-3.1-8b weights at bf16 split over 1 chip need 16.06 GB, 8.59 GB available")
    assert squeezed["tokens_per_s_per_user"].isna().all()  # no invented numbers
    assert (result.table[result.table["design"] == "h100"]["status"] == "ok").all()
    report = (result.out / "report.md").read_text()
    assert "**does not run: llama-3.1-8b weights at bf16 split over 1 chip need 16.06 GB" in report


def test_calibrated_efficiencies_are_told_apart_from_assumed_family_defaults():
    from simulator.config.load import load_chip

    # fitted, or the fit of its silicon (groq-lpu: on its row and validation/sram-evidence.csv's, issue 16)
    for chip in ("h100-sxm", "b200", "tpu-v5e", "mi300x", "gb300", "groq-lpu"):
        assert load_chip(chip).efficiency.calibrated, chip
    # ASSUMED defaults, or start values a fit lost to out of sample (Ampere, CDNA4)
    for chip in ("cerebras-wse3", "tpu-v5p", "sambanova-sn40l", "mi355x", "a100-sxm-80gb"):
        assert not load_chip(chip).efficiency.calibrated, chip


def test_a_design_on_an_uncalibrated_chip_is_marked_in_the_table_and_the_report(result, write_compare,
                                                                               tmp_path):
    # the calibrated H100 design: the last column is true, no mark, no footnote
    assert result.table.columns[-1] == "efficiency_calibrated"
    assert result.table["efficiency_calibrated"].tolist() == [True] * 4
    assert "assumed family defaults" not in (result.out / "report.md").read_text()
    mi355x = {"name": "one-mi355x", "chip": "mi355x", "chips_per_node": 1}
    path = write_compare(tiny(concurrency=[1], designs=[{"name": "h100", "cluster": H100},
                                                        {"name": "mi355x", "cluster": mi355x}]))
    table = compare(path, tmp_path / "marked", workers=1, plots=False).table
    assert table["efficiency_calibrated"].tolist() == [True, False]
    assert list(pd.read_csv(tmp_path / "marked" / "compare.csv").columns)[-1] == "efficiency_calibrated"
    report = (tmp_path / "marked" / "report.md").read_text()
    assert "| mi355x \u2020 |" in report and "| h100 |" in report
    assert "\u2020 efficiencies: assumed family defaults, not calibrated" in report
    assert "Efficiencies of mi355x: assumed family defaults, not calibrated" in report


def test_an_invalid_compare_file_is_one_line_naming_the_design(write_compare):
    path = write_compare(tiny(designs=[{"name": "a", "cluster": H100},
                                       {"name": "b", "cluster": H100, "deployment": {"tensor_paralel": 2}}]))
    out = CliRunner().invoke(app, ["compare", str(path)])
    assert out.exit_code == 2
    assert out.stderr == (f"error: {path}: designs.1.deployment.tensor_paralel: unknown key; allowed: "
                          + ", ".join(sorted(_deployment_keys())) + "\n")


def _deployment_keys():
    from simulator.config.deployment import DeploymentSpec
    return DeploymentSpec.model_fields


def test_a_bad_cluster_in_a_design_is_reported_at_its_place(write_compare):
    bad = {"name": "x", "chip": "h100-sxm", "chips_per_node": 2, "nodes": 0}
    path = write_compare(tiny(designs=[{"name": "a", "cluster": H100}, {"name": "b", "cluster": bad}]))
    with pytest.raises(ScenarioError) as err:
        points(*load_compare(path)[:1], path)
    assert str(err.value) == f"{path}: designs.1.cluster.nodes: must be >= 1, got 0"


def test_missing_keys_and_duplicate_names_are_refused(write_compare):
    data = tiny()
    del data["concurrency"]
    with pytest.raises(ScenarioError) as err:
        load_compare(write_compare(data))
    assert str(err.value).endswith("cmp.yaml: concurrency: required key is missing")
    path = write_compare(tiny(designs=[{"name": "a", "cluster": H100}, {"name": "a", "cluster": H100}]))
    with pytest.raises(ScenarioError) as err:
        load_compare(path)
    assert str(err.value) == f"{path}: design names must be unique, got ['a', 'a']"


def test_set_changes_the_file_or_every_point_but_not_the_load(write_compare):
    path = write_compare(tiny())
    spec, rest = load_compare(path, ["concurrency=[2]", "workload.num_requests=5"])
    assert spec.concurrency == (2,) and rest == ["workload.num_requests=5"]
    first = points(spec, path, rest)[0].scenario.spec.workload
    assert (first.arrival.kind, first.arrival.users, first.num_requests) == ("closed_loop", 2, 5)
    with pytest.raises(ScenarioError, match="^--set: workload.arrival.users is set by the compare file"):
        load_compare(path, ["workload.arrival.users=3"])


def test_replicas_multiply_the_users(write_compare):
    data = tiny(designs=[{"name": "two", "cluster": str(REPO / "topologies" / "hgx-h100.yaml"),
                          "deployment": {"tensor_parallel": 4, "replicas": 2}}])
    path = write_compare(data)
    spec, rest = load_compare(path)
    made = [(p.concurrency, p.users, p.scenario.spec.workload.num_requests) for p in points(spec, path, rest)]
    assert made == [(1, 2, 4), (16, 32, 64)]


def test_cli_compare_runs_in_worker_processes(write_compare, tmp_path):
    path = write_compare(tiny(concurrency=[4]))
    out = CliRunner().invoke(app, ["compare", str(path), "-o", str(tmp_path / "o"), "--workers", "2",
                                   "--no-plots"])
    assert out.exit_code == 0, out.output
    assert "h100-squeezed: does not run: llama-3.1-8b weights at bf16" in out.stdout
    assert len(pd.read_csv(tmp_path / "o" / "compare.csv")) == 2


@pytest.mark.parametrize("path", sorted((REPO / "scenarios" / "compare").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_compare_files_load_every_point(path):
    spec, rest = load_compare(path)
    made = points(spec, path, rest)
    assert len(made) == len(spec.designs) * len(spec.concurrency)


@pytest.mark.slow
def test_the_shipped_sram_vs_hbm_comparison_shows_the_trade_off(tmp_path):
    """From the shipped designs, nothing hard-coded: at one user an SRAM design decodes faster than an HBM
    node (its weights are read from SRAM spread over many chips); with many users the HBM node delivers more
    tokens per chip, per kW and per dollar (it batches its weight reads on a few chips). ~15 s."""
    data = yaml.safe_load((REPO / "scenarios" / "compare" / "compare-sram-vs-hbm-llama70b.yaml").read_text())
    keep = {"groq-lpu-int8", "cerebras-cs3-bf16", "hgx-h100-fp8"}
    data["designs"] = [{**d, "cluster": str(REPO / "topologies" / f"{d['cluster']}.yaml")}
                       for d in data["designs"] if d["name"] in keep]
    data.update(concurrency=[1, 64], requests_per_user=1, min_requests=2)
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    table = compare(path, tmp_path / "out", workers=2, plots=False).table
    assert (table["status"] == "ok").all()
    row = table.set_index(["design", "concurrency"])
    hbm_one, hbm_many = row.loc[("hgx-h100-fp8", 1)], row.loc[("hgx-h100-fp8", 64)]
    for sram in ("groq-lpu-int8", "cerebras-cs3-bf16"):
        assert row.loc[(sram, 1), "tokens_per_s_per_user"] > 2 * hbm_one["tokens_per_s_per_user"]
        assert hbm_many["output_tokens_per_s_per_kw"] > row.loc[sram, "output_tokens_per_s_per_kw"].max()
    assert hbm_many["output_tokens_per_s_per_chip"] > 5 * row.loc["groq-lpu-int8", "output_tokens_per_s_per_chip"].max()
    assert hbm_many["output_tokens_per_usd"] > 2 * row.loc["cerebras-cs3-bf16", "output_tokens_per_usd"].max()
