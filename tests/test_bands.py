"""Bands from parameter uncertainty (`--uncertainty N`): draws of the chip family's coefficients, p10/p50/p90,
paired comparisons, and catalog/uncertainty.yaml derived from calibrate's cross-validated residuals."""

import json
import math

import pandas as pd
import pytest
import yaml
from conftest import REPO
from typer.testing import CliRunner

from simulator.cli import app
from simulator.config.load import load_scenario
from simulator.config.uncertainty import COEFFICIENTS, FamilyUncertainty, UncertaintySpec, load_uncertainty
from simulator.run import run
from simulator.studies import bands
from simulator.studies.compare import compare
from simulator.studies.compare_bands import ranking
from simulator.studies.validate.calibrate import START_KEPT
from simulator.studies.validate.uncertainty import SIGMA_SCALE, derive, read_residuals


def spread(sigma: float) -> UncertaintySpec:
    family = FamilyUncertainty(chips=("h100-sxm", "h200-sxm"), basis="fitted", cases=3,
                               sigma=dict.fromkeys(COEFFICIENTS, sigma), source="test")
    return UncertaintySpec(source="test", method="test", families={"Hopper": family},
                           uncalibrated=family.model_copy(update={"chips": ("none",)}))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("bands") / "s.yaml"
    data = yaml.safe_load((REPO / "scenarios" / "default.yaml").read_text())
    data["workload"]["num_requests"] = 40
    path.write_text(yaml.safe_dump(data))
    return load_scenario(path)


def band_of(scenario, sigma: float, draws: int) -> dict:
    summaries = [run(s).summary for s in bands.draw_scenarios(scenario, draws, spread(sigma))]
    return bands.bands(summaries)


def test_zero_width_distributions_collapse_the_bands_onto_the_point_estimate(small):
    point = bands.bands([run(small).summary])
    collapsed = band_of(small, 0.0, 3)
    for key, band in collapsed.items():
        assert band["p10"] == band["p50"] == band["p90"] == point[key]["p50"], key  # identical, not close


def test_a_wider_distribution_gives_a_wider_band(small):
    narrow, wide = band_of(small, 0.05, 6), band_of(small, 0.4, 6)
    for key in ("tpot_s.p50", "e2e_s.p50"):
        assert wide[key]["p90"] - wide[key]["p10"] > 2 * (narrow[key]["p90"] - narrow[key]["p10"]) > 0


def test_draws_are_common_within_a_family_and_independent_across_families():
    spec = load_uncertainty()
    from simulator.config.uncertainty import draw_factors

    h100 = draw_factors(spec, "h100-sxm", "vllm", 7, 4)
    assert h100 == draw_factors(spec, "h200-sxm", "vllm", 7, 4)  # one family: the same draws (paired)
    assert h100 != draw_factors(spec, "b200", "vllm", 7, 4)
    assert h100 != draw_factors(spec, "h100-sxm", "vllm", 8, 4)


def test_the_same_seed_gives_byte_identical_bands(tmp_path, write_scenario):
    path = write_scenario({"workload.num_requests": 20})
    texts = []
    for name in ("a", "b"):
        result = CliRunner().invoke(app, ["run", str(path), "-o", str(tmp_path / name), "--no-plots",
                                          "--uncertainty", "3"])
        assert result.exit_code == 0, result.output
        texts.append(json.dumps(json.loads((tmp_path / name / "summary.json").read_text())["uncertainty"]))
    assert texts[0] == texts[1] and '"draws": 3' in texts[0]
    assert "TPOT p50 p10 / p50 / p90 (ms)" in result.output


@pytest.mark.parametrize("value", ["0", "1", "-3", "x", "10001"])
@pytest.mark.parametrize("command", ["run", "compare", "sweep", "validate"])
def test_bad_uncertainty_values_are_one_line_and_exit_2(command, value, tmp_path, write_scenario):
    target = {"run": str(write_scenario()), "compare": str(REPO / "scenarios" / "compare" /
                                                           "compare-moe-mixtral.yaml"),
              "sweep": str(REPO / "scenarios" / "sweeps" / "llama70b-tp-split.yaml"),
              "validate": str(REPO / "validation" / "calibration.csv")}[command]
    result = CliRunner().invoke(app, [command, target, "-o", str(tmp_path / "out"), "--uncertainty", value])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "uncertainty" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_design_dominated_in_every_draw_loses_with_probability_one(tmp_path):
    """H200 and H100 are one family, so each draw gives both the same coefficients; the H200 has 43% more
    memory bandwidth and the same compute: a memory-bound decode is faster on it in every draw."""
    data = {"name": "paired", "seed": 3, "model": "llama-3.1-8b",
            "workload": {"prompt_tokens": {"kind": "fixed", "value": 64},
                         "output_tokens": {"kind": "fixed", "value": 16},
                         "arrival": {"kind": "poisson", "rate": "5 /s"}, "num_requests": 3},
            "concurrency": [1, 8], "requests_per_user": 1, "min_requests": 2,
            "designs": [{"name": "h100", "cluster": str(REPO / "topologies" / "single-h100.yaml")},
                        {"name": "h200", "cluster": str(REPO / "topologies" / "single-h200.yaml")}]}
    path = tmp_path / "cmp.yaml"
    path.write_text(yaml.safe_dump(data))
    result = compare(path, tmp_path / "out", workers=1, plots=False, uncertainty=4)
    ranks = pd.read_csv(result.out / "ranking.csv")
    user = ranks[(ranks.metric == "tokens_per_s_per_user") & (ranks.design_a == "h200")]
    assert len(user) == 2 and (user["p_a_beats_b"] == 1.0).all() and (user["draws"] == 4).all()
    mirror = ranks[(ranks.metric == "tokens_per_s_per_user") & (ranks.design_a == "h100")]
    assert (mirror["p_a_beats_b"] == 0.0).all()
    band = result.table["band.tokens_per_s_per_user.p10"]
    assert band.notna().all() and (result.table["band.tokens_per_s_per_user.p90"] >= band).all()
    report = (result.out / "report.md").read_text()
    assert "- robust: h200 has the best tokens/s per user at concurrency 1: it beats h100 (runner-up) in 100% " \
           "of draws." in report


def test_ranking_counts_ties_as_half_and_skips_draws_a_design_missed():
    draws = pd.DataFrame({"draw": [0, 0, 1, 1, 2], "design": ["a", "b", "a", "b", "a"], "concurrency": 1,
                          "status": "ok", "tokens_per_s_per_user": [2.0, 1.0, 1.0, 1.0, 5.0]})
    row = ranking(draws).query("design_a == 'a' and metric == 'tokens_per_s_per_user'").iloc[0]
    assert row["p_a_beats_b"] == 0.75 and row["draws"] == 2


def test_the_shipped_uncertainty_file_is_what_the_cross_validated_errors_give():
    """`infersim calibrate --bands-only` regenerates it; the shipped file must not drift from the csv."""
    cv = REPO / "validation" / "calibration.cv.csv"
    derived = derive(read_residuals(cv), "validation/calibration.cv.csv")
    shipped = load_uncertainty()
    for name, family in shipped.families.items():
        assert family.sigma == derived["families"][name]["sigma"], name  # type: ignore[index]
        assert family.basis == derived["families"][name]["basis"], name  # type: ignore[index]


def test_families_not_fitted_carry_at_least_twice_the_pooled_width(tmp_path):
    cv = tmp_path / "c.cv.csv"
    rows = ["case_id,family,role,in_sample_error,cross_validated_error,tolerance",
            "a,Hopper,fit,0.1,0.1,0.15", "b,Hopper,fit,-0.1,-0.1,0.15",
            f"c,CDNA4,{START_KEPT},0.01,0.01,0.15", "d,RDU,check (beyond reach),-0.9,-0.9,0.4"]
    cv.write_text("\n".join(rows) + "\n")
    data = derive(read_residuals(cv), "c.cv.csv")
    families = data["families"]
    assert families["Hopper"]["basis"] == "fitted"
    assert families["CDNA4"]["basis"] == "start values kept"
    assert families["CDNA4"]["sigma"]["compute"] >= 2 * families["Hopper"]["sigma"]["compute"] * 0.99
    assert families["RDU"]["cases"] == 0 and families["RDU"]["basis"] == "not calibrated"  # beyond reach left out
    assert families["Hopper"]["sigma"]["compute"] == pytest.approx(  # the only fitted family: its RMS, scaled
        SIGMA_SCALE * math.sqrt((math.log(1.1) ** 2 + math.log(0.9) ** 2) / 2), abs=1e-4)


def test_a_sweep_with_draws_has_band_columns_and_a_rerun_reuses_every_cached_draw(tmp_path, write_scenario):
    import importlib

    sweep_mod = importlib.import_module("simulator.studies.sweep")
    base = write_scenario({"workload.num_requests": 20}, name="base.yaml")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": base.name, "seed": 1,
                                    "axes": {"serving.batcher.max_batch_size": [4, 32]}}))
    first = sweep_mod.sweep(path, tmp_path / "out", workers=1, plots=False, uncertainty=3)
    assert first.computed == 2 + 2 * 3
    low, high = first.table["band.tpot_s.p50.p10"], first.table["band.tpot_s.p50.p90"]
    assert low.notna().all() and (high > low).all()
    again = sweep_mod.sweep(path, tmp_path / "out", workers=1, plots=False, uncertainty=3)
    assert again.computed == 0
    pd.testing.assert_frame_equal(again.table, first.table)
    plain = sweep_mod.sweep(path, tmp_path / "plain", workers=1, plots=False)
    assert not [c for c in plain.table.columns if c.startswith("band.")]


def test_validate_names_an_unknown_family_or_skipped_case_in_one_line(tmp_path):
    cases = str(REPO / "validation" / "calibration.csv")
    for option, value, words in (("--family", "Hoper", "--family: Hoper is not one of"),
                                 ("--skip", "NOPE", "--skip: NOPE: no such case")):
        result = CliRunner().invoke(app, ["validate", cases, "-o", str(tmp_path / "v"), option, value])
        assert result.exit_code == 2 and result.output.count("\n") == 1 and words in result.output, result.output
