"""Measured serving runs (validation/vllm-h100/cases.csv): read, each experiment simulated with its staged load
and shared prefixes, per-stage statistics compared."""

import csv

import pandas as pd
import pytest
from conftest import REPO, cli_error

from simulator.studies.validate import serving_runs

CASES = REPO / "validation" / "vllm-h100" / "cases.csv"


def test_the_shipped_file_reads_into_its_experiments_and_values():
    experiments, measured = serving_runs.read(CASES)
    assert len(measured) == 203 and len(experiments) == 11
    e60 = next(e for e in experiments if e.model == "meta-llama/Llama-3.1-70B-Instruct")
    assert (e60.tp, e60.max_num_seqs, e60.system_prompts, e60.users_per_prompt) == (4, 128, 9, 5)
    assert e60.stages == ((2.5, 600.0), (6.0, 600.0))
    assert serving_runs.is_serving_runs(CASES)
    assert not serving_runs.is_serving_runs(REPO / "validation" / "calibration.csv")


@pytest.mark.parametrize("hf_id, catalog", [("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b"),
                                            ("meta-llama/Llama-2-7b-hf", "llama-2-7b"),
                                            ("Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
                                            ("mistralai/Mistral-Nemo-Instruct-2407", "mistral-nemo-12b"),
                                            ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama-4-scout-17b-16e"),
                                            ("RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic",
                                             "llama-4-scout-17b-16e"),
                                            ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", None)])
def test_hugging_face_ids_map_to_catalog_models(hf_id, catalog):
    assert serving_runs.catalog_model(hf_id) == catalog


def write_cases(path, rows):
    with open(CASES, newline="") as handle:
        header = next(csv.reader(handle))
    base = dict.fromkeys(header, "")
    base.update({"exp_id": "1", "experiment": "x", "model": "meta-llama/Llama-3.1-8B-Instruct", "tp": "1",
                 "precision": "BF16", "max_num_batched_tokens": "2048", "max_num_seqs": "64", "workload": "chat",
                 "system_prompt_len": "512", "question_len": "100", "output_len": "50",
                 "num_unique_system_prompts": "2", "num_users_per_system_prompt": "4", "multi_turn_chat": "True",
                 "quality_flag": "ok"})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        for row in rows:
            writer.writerow({**base, **row})


def value(stage, rate, metric, statistic, ms):
    return {"stage_index": str(stage), "stage_rate_rps": rate, "stage_duration_s": "20", "metric": metric,
            "statistic": statistic, "value_ms": str(ms)}


def test_each_stage_is_simulated_and_compared(tmp_path):
    path = tmp_path / "runs.csv"
    write_cases(path, [value(0, "2", "ttft", "mean", 30), value(1, "8", "ttft", "p90", 40),
                       value(1, "8", "e2e", "mean", 500), value(-1, "", "itl", "mean", 8),
                       value(-1, "", "e2e", "mean", 480), value(-1, "", "ttft", "mean", 35)])
    df = serving_runs.validate_file(path, tmp_path / "out", workers=1)
    assert df["predicted_ms"].notna().all() and (df["predicted_ms"] > 0).all()
    assert df["error"].to_numpy() == pytest.approx((df["predicted_ms"] / df["measured_ms"] - 1).to_numpy())
    whole = df[df["stage"] == -1].set_index("metric")["predicted_ms"]
    assert whole["itl"] == pytest.approx((whole["e2e"] - whole["ttft"]) / 49)  # a TPOT of means, as measured
    written = pd.read_csv(tmp_path / "out" / "validation.csv")
    assert written.columns[0] == "case_id"  # one row per input row: a case (a stage) and a statistic
    assert not written.duplicated(["case_id", "metric", "statistic"]).any()
    assert serving_runs.summary_line(df).startswith("6 of 6 values simulated, 6 scored (0 flagged")
    assert "ttft median |error|" in serving_runs.summary_line(df) and "(mean " in serving_runs.summary_line(df)
    assert len(written) == 6 and (tmp_path / "out" / "report.md").read_text().startswith("# Validation")


@pytest.mark.parametrize("means, produced", [
    ({"e2e": 480.0, "ttft": 35.0, "itl": 12.0}, 38),  # 1 + 445 / 12 = 38.08: the run stopped early
    ({"e2e": 480.0, "ttft": 35.0, "itl": 8.0}, 50),   # 56.6 > the 50 asked for: at most what was asked
    ({"e2e": 480.0, "ttft": 35.0}, 50),               # no ITL: the requested length
    ({"e2e": 480.0, "ttft": 35.0, "itl": 0.0}, 50),
])
def test_a_runs_produced_output_length_comes_from_its_mean_e2e_ttft_and_itl(means, produced):
    assert serving_runs.produced_output(50, means) == produced


def test_an_experiment_is_simulated_with_the_output_length_its_run_produced(tmp_path):
    """Llama-2-7B-hf's published runs stopped at 0.78 of the 247 tokens asked for; the simulation generates what
    the run generated, and its ITL divides by the same length."""
    experiments, _ = serving_runs.read(CASES)
    codegen = next(e for e in experiments if e.name.endswith("llama-2-7b-tp1-codegen:codegen"))
    assert (codegen.requested_output_tokens, codegen.output_tokens) == (247, 195)
    path = tmp_path / "runs.csv"
    write_cases(path, [value(-1, "", "itl", "mean", 12), value(-1, "", "e2e", "mean", 480),
                       value(-1, "", "ttft", "mean", 35), value(0, "2", "ttft", "mean", 30)])
    df = serving_runs.validate_file(path, tmp_path / "out", workers=1)
    whole = df[df["stage"] == -1].set_index("metric")["predicted_ms"]
    assert whole["itl"] == pytest.approx((whole["e2e"] - whole["ttft"]) / 37)


def test_an_experiment_the_catalog_cannot_express_is_reported_not_simulated(tmp_path):
    path = tmp_path / "runs.csv"
    write_cases(path, [{**value(0, "2", "ttft", "mean", 30), "model": "meta-llama/Llama-4-Maverick-17B-128E-Instruct"}])
    df = serving_runs.validate_file(path, tmp_path / "out")
    assert df["predicted_ms"].isna().all()
    assert df["note"].tolist() == ["model meta-llama/Llama-4-Maverick-17B-128E-Instruct is not in the catalog"]


def test_a_malformed_file_is_one_line_naming_the_line_and_column(tmp_path):
    path = tmp_path / "runs.csv"
    write_cases(path, [value(0, "2", "ttft", "mean", 30), value(0, "2", "ttft", "p90", "x")])
    assert cli_error("validate", path, "-o", tmp_path / "out") == (
        f"{path}: line 3: value_ms: 'x' is not a number")
    write_cases(path, [value(0, "2", "ttft", "median", 30)])
    assert cli_error("validate", path, "-o", tmp_path / "out") == (
        f"{path}: line 2: statistic: 'median' is not one of: mean, p90, p99")
