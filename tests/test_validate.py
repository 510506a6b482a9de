"""`infersim validate`: the case file's errors, the speed-of-light bounds, real cases end to end, the CLI."""

import csv
import io
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.load import load_chip
from simulator.errors import ScenarioError
from simulator.run import run
from simulator.studies.validate.bounds import beats, speed_of_light
from simulator.studies.validate.cases import COLUMNS, read_cases
from simulator.studies.validate.predict import build, marginal_rate, one_replica, simulate
from simulator.studies.validate.report import frame, summary_line, table_rows

CALIBRATION = REPO / "validation" / "calibration.csv"
GPTJ = {  # TRT05_A100x1_GPTJ_BS1_DECODE, shortened
    "case_id": "GPTJ_BS1", "model": "gpt-j-6b", "chip": "a100-sxm-80gb", "num_chips": "1", "tp": "1", "pp": "1",
    "ep": "1", "replicas": "1", "weights_dtype": "fp16", "kv_dtype": "fp16", "mode": "batch",
    "input_tokens": "128", "output_tokens": "128", "concurrency": "1", "rate_per_s": "",
    "metric": "output_tokens_per_s_per_user", "value": "111.0", "unit": "tokens/s", "tolerance": "0.15",
    "source_kind": "vendor-doc", "source": "TensorRT-LLM H100vsA100 blog", "notes": "batch 1",
}


def write_cases(path, rows, columns=COLUMNS):
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue())
    return path


def case(**changes):
    """GPTJ with some columns changed, read through the CSV reader."""
    with tempfile.TemporaryDirectory() as folder:
        return read_cases(write_cases(Path(folder) / "cases.csv", [{**GPTJ, **changes}]))[0]


# ---------------------------------------------------------------- malformed files: exact messages

@pytest.mark.parametrize("changes, message", [
    ({"tp": "x"}, "validation.csv: line 3: tp: 'x' is not an integer"),
    ({"mode": "burst"}, "validation.csv: line 3: mode: 'burst' is not one of: offline, concurrency, rate, batch"),
    ({"value": "-2"}, "validation.csv: line 3: value: must be a positive finite number, got '-2'"),
    ({"num_chips": "6", "tp": "2", "replicas": "4"},
     "validation.csv: line 3: num_chips: 6 != tp * pp * replicas = 8"),
    ({"concurrency": ""}, "validation.csv: line 3: concurrency: mode batch needs a concurrency"),
    ({"chip": "h999"}, "validation.csv: line 3: chip: 'h999' is not one of: "),
])
def test_a_malformed_row_names_file_line_and_column(tmp_path, monkeypatch, changes, message):
    monkeypatch.chdir(tmp_path)
    write_cases(tmp_path / "validation.csv", [GPTJ, {**GPTJ, "case_id": "SECOND", **changes}])
    with pytest.raises(ScenarioError) as exc:
        read_cases("validation.csv")
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_a_missing_column_and_a_duplicate_id_are_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cases(tmp_path / "validation.csv", [GPTJ], [c for c in COLUMNS if c != "tolerance"])
    with pytest.raises(ScenarioError, match=r"^validation.csv: line 1: missing column\(s\): tolerance$"):
        read_cases("validation.csv")
    write_cases(tmp_path / "validation.csv", [GPTJ, GPTJ])
    with pytest.raises(ScenarioError, match="^validation.csv: line 3: case_id: 'GPTJ_BS1' appears twice$"):
        read_cases("validation.csv")


def test_cli_exits_2_on_a_malformed_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cases(tmp_path / "validation.csv", [{**GPTJ, "tp": "x"}])
    result = CliRunner().invoke(app, ["validate", "validation.csv", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: validation.csv: line 2: tp: 'x' is not an integer"


def test_the_shipped_calibration_file_reads():
    cases = read_cases(CALIBRATION)
    assert len(cases) == 46 and len({c.case_id for c in cases}) == 46


# ---------------------------------------------------------------- speed of light

def test_a_measurement_faster_than_physics_is_flagged():
    """GPT-J at fp16 on one A100 reads 12.1 GB per token: at 2.04 TB/s no stream beats ~169 tokens/s, so a
    claimed 1,000 tokens/s is misdescribed (speculative decoding, a smaller precision...)."""
    fake = case(value="1000")
    chip = load_chip(fake.chip)
    bound = speed_of_light(fake, chip, "fp16")
    assert 150 < bound < 180
    assert beats(fake, 1000.0, bound) and not beats(fake, 111.0, bound)
    outcome = simulate(fake)
    assert outcome.predicted < bound  # the simulator never beats physics
    row = frame([outcome]).iloc[0]
    assert row["measured_beats_light"] and not row["predicted_beats_light"]
    assert "measurement beats the speed of light" in table_rows(frame([outcome]))[1][0][-1]
    assert "1 measurements beat the speed of light" in summary_line(frame([outcome]))


def test_latency_bounds_are_lower_bounds():
    ttft = case(metric="ttft_s", value="0.001", unit="s", tolerance="0.25", input_tokens="2048",
                output_tokens="1")
    bound = speed_of_light(ttft, load_chip(ttft.chip), "fp16")
    # 2 x 6B params x 2048 tokens at 312 TFLOP/s: at least ~80 ms
    assert 0.07 < bound < 0.1 and beats(ttft, 0.001, bound) and not beats(ttft, 0.2, bound)


# ---------------------------------------------------------------- cases the engine cannot express

def test_attention_data_parallel_moe_is_expressed_as_wide_expert_parallelism():
    """tp=1, ep=8 (MLPerf v5.1 DeepSeek-R1 on B200, TRT-LLM "DEP"): 8 attention data-parallel ranks, the
    experts spread over all 8 chips, the per-rank batch cap of the notes times 8."""
    dp = case(case_id="DSR1", model="deepseek-v3", chip="b200", num_chips="8", ep="8", weights_dtype="fp4",
              kv_dtype="fp8", mode="offline", concurrency="", metric="output_tokens_per_s",
              notes="engine max batch 512 per GPU")
    scenario, approximations = build(dp, load_chip("b200"))
    d = scenario.spec.deployment
    assert (d.tensor_parallel, d.data_parallel_attention, d.expert_parallel) == (1, 8, 8) and not approximations
    assert scenario.spec.serving.batcher.max_batch_size == 8 * 512


def test_an_expert_layout_the_engine_cannot_express_is_not_simulated_with_a_reason():
    odd = case(case_id="ODD", model="deepseek-v3", chip="b200", num_chips="3", tp="2", ep="3",
               weights_dtype="fp4", kv_dtype="fp8", mode="offline", concurrency="", metric="output_tokens_per_s")
    outcome = simulate(odd)
    assert outcome.predicted is None and outcome.role == "check (not simulated)"
    assert outcome.reason == ("ep=3 with tp=2 is not expressible (expert_parallel must divide tensor_parallel or "
                              "be a multiple of it)")


# ---------------------------------------------------------------- real cases end to end

def test_a_real_decode_case_runs_end_to_end():
    outcome = simulate(case())
    assert outcome.predicted is not None and outcome.role == "fit"
    assert outcome.shares["memory"] > 0.8  # batch-1 decode is bound by reading the weights


def test_offline_throughput_is_the_steady_state_and_one_replica_stands_for_all():
    """The marginal rate of 2 -> 4 batches equals that of 8 -> 16 (ramp and drain cancel), and 2 replicas
    deliver twice what one does (offline, no shared links)."""
    row = next(c for c in read_cases(CALIBRATION) if c.case_id == "TRTOV_H100x1_L31_8B_128_128")
    chip = load_chip(row.chip)
    runs = {w: run_case(row, chip, w) for w in (2, 4, 8, 16)}
    assert marginal_rate(row, runs[2], runs[4]) == pytest.approx(marginal_rate(row, runs[8], runs[16]), rel=0.01)
    pair = replace(row, num_chips=2, replicas=2)
    assert one_replica(pair).replicas == 1
    both = run_case(pair, chip, 2).summary["throughput"]["output_tokens_per_s"]
    single = run_case(one_replica(pair), chip, 2).summary["throughput"]["output_tokens_per_s"]
    assert both == pytest.approx(2 * single, rel=1e-6)


def run_case(row, chip, waves):
    return run(build(row, chip, waves)[0])


def test_validate_exits_0_when_cases_miss(tmp_path):
    within = {**GPTJ, "tolerance": "0.4"}  # the row as published (+25% on Ampere's start values), scored loosely
    cases = write_cases(tmp_path / "cases.csv", [within, {**GPTJ, "case_id": "WAY_OFF", "value": "20"}])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["validate", str(cases), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 cases: 1 within tolerance, 1 miss, 0 not simulated" in result.stdout
    table = pd.read_csv(out / "validation.csv")
    assert list(table["status"]) == ["within", "miss"]
    assert (out / "report.md").read_text().startswith("# Validation against published measurements (cases.csv)")
    assert (out / "plots" / "predicted_vs_measured.png").stat().st_size > 0


@pytest.mark.slow
def test_the_calibration_file_end_to_end(tmp_path):
    """The benchmark: every row. No prediction or measurement beats physics; every fitted row is within its
    tolerance except the known misses listed in validation/README.md."""
    result = CliRunner().invoke(app, ["validate", "-o", str(tmp_path), "--workers", "2", "--no-plots"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "validation.csv")
    assert not table["measured_beats_light"].any() and not table["predicted_beats_light"].any()
    fitted = table[table["role"] == "fit"]
    misses = set(fitted.loc[~fitted["within_tolerance"], "case_id"])
    assert misses <= {"MLP41_H100x8_MIXTRAL_OFFLINE", "MLP41_MI300Xx8_L2_70B_OFFLINE"}
    assert fitted["abs_error"].median() <= 0.10
