"""`infersim calibrate`: the fit recovers coefficients that generated the cases, and cross-validation holds
each case out of its own fit."""

from dataclasses import replace

import pytest
from conftest import REPO

from simulator.studies.validate import calibrate as cal
from simulator.studies.validate.cases import read_cases

PEAK, BANDWIDTH = 1e15, 3e12  # a chip's nameplate compute (FLOP/s) and memory bandwidth (bytes/s)
TRUTH = {"compute": 0.5, "memory": 0.7, "layer_overhead": 10e-6, "moe_layer_overhead": 60e-6,
         "step_overhead": 300e-6}
# synthetic cases: (FLOPs, bytes, layers, MoE layers) of one step, each dominated by a different term
STEPS = {"compute-bound": (4e12, 1e9, 32, 0), "memory-bound": (1e10, 6e10, 32, 0), "step-bound": (1e8, 1e7, 1, 0),
         "layer-bound": (1e8, 1e7, 120, 0), "moe-bound": (1e8, 1e7, 24, 24), "mixed": (2e12, 3e10, 61, 58)}


def step_s(name: str, p: dict[str, float]) -> float:
    """The engine's roofline on a closed form: max(FLOPs / (peak c), bytes / (bw m)) + overheads."""
    flops, nbytes, layers, moe = STEPS[name]
    return (max(flops / (PEAK * p["compute"]), nbytes / (BANDWIDTH * p["memory"])) + p["step_overhead"]
            + layers * p["layer_overhead"] + moe * p["moe_layer_overhead"])


def synthetic_cases():
    template = read_cases(REPO / "validation" / "calibration.csv")[1]
    return [replace(template, case_id=name, metric="tpot_s", value=step_s(name, TRUTH), tolerance=0.15)
            for name in STEPS]


def closed_form(calls: list[int]) -> cal.Predict:
    def predict(cases, params):
        calls.append(len(cases))
        return [step_s(c.case_id, params) for c in cases]
    return predict


def test_the_fit_recovers_the_coefficients_that_generated_the_cases():
    cases, calls = synthetic_cases(), []
    fitted = cal.fit(cases, closed_form(calls))
    assert {name: fitted.params[name] for name in TRUTH} == pytest.approx(TRUTH)
    assert "moe-bound" in fitted.fitted_on["moe_layer_overhead"]  # fitted only on the cases it moves
    assert not {"compute-bound", "memory-bound", "step-bound"} & set(fitted.fitted_on["moe_layer_overhead"])
    assert fitted.fitted_on["compute"] == ["compute-bound"]
    assert cal.loss(cases, fitted.params, closed_form(calls)) < 1e-9


def test_cross_validation_never_fits_a_case_on_itself(monkeypatch):
    cases, fitted_on = synthetic_cases(), []
    real_fit = cal.fit

    def recording_fit(batch, predict, start=None, weighted=False):
        fitted_on.append({c.case_id for c in batch})
        return real_fit(batch, predict, start, weighted)

    monkeypatch.setattr(cal, "fit", recording_fit)
    folds = cal.folds_of(cases, 3)
    assert sorted(c.case_id for fold in folds for c in fold) == sorted(STEPS)
    errors = cal.cross_validate(cases, 3, closed_form([]))
    assert set(errors) == set(STEPS)
    # one fit per fold, each on every case but that fold's
    assert sorted(map(sorted, fitted_on)) == sorted(sorted(set(STEPS) - {c.case_id for c in f}) for f in folds)
    # leave one out: a coefficient that only the held-out case moves falls back to its start value, and the
    # case misses by what that costs (in sample both fit exactly)
    alone = cal.cross_validate([c for c in cases if c.case_id != "mixed"], 5, closed_form([]))
    assert alone["compute-bound"] == pytest.approx(step_s("compute-bound", {**TRUTH, "compute": 0.7})
                                                   / step_s("compute-bound", TRUTH) - 1, rel=1e-6)
    assert abs(alone["moe-bound"]) > 0.1


def test_summary_rows_put_cross_validated_error_beside_in_sample():
    case = synthetic_cases()[0]
    scored = [cal.Scored(case, "Hopper", "fit", 0.01, 0.2), cal.Scored(case, "Hopper", "fit", -0.03, -0.05)]
    columns, rows = cal.summary_rows(scored)
    overall = dict(zip(columns, rows[-1]))
    assert overall["median |err| in sample"] == "2.0%"
    assert overall["median |err| cross-validated"] == "12.5%"
    assert overall["within tolerance (cross-validated)"] == "50%"


def test_validate_quotes_the_cross_validated_errors_calibrate_left(tmp_path):
    import pandas as pd

    from simulator.studies.validate.report import summary_line

    cases_file = tmp_path / "cases.csv"
    one, two = synthetic_cases()[:2]
    path = cal.write_cross_validation([cal.Scored(one, "Hopper", "fit", 0.01, 0.2),
                                       cal.Scored(two, "Hopper", "fit", 0.02, None)], cases_file)
    assert path == tmp_path / "cases.cv.csv"
    assert cal.read_cross_validation(cases_file) == {one.case_id: pytest.approx(0.2), two.case_id: None}
    df = pd.DataFrame({"abs_error": [0.01, 0.02], "within_tolerance": [True, True], "tolerance": [0.15, 0.15],
                       "measured_beats_light": [False, False], "predicted_beats_light": [False, False],
                       "cross_validated_error": [0.2, None]})
    assert summary_line(df).endswith("; cross-validated (infersim calibrate): median |error| 20.0%, "
                                     "0 within tolerance")
    path.write_text("not,the,format\n1,2,3\n")
    assert cal.read_cross_validation(cases_file) == {}  # a foreign file is ignored, not misread


def test_calibrate_refuses_an_unknown_family_and_a_malformed_file_in_one_line(tmp_path):
    from conftest import cli_error

    assert cli_error("calibrate", "--family", "Volta", "--dry-run") == (
        "--family: 'Volta' is not one of: Hopper, Blackwell, Ampere, CDNA3, CDNA4, TPU, LPU, Wafer, RDU")
    bad = tmp_path / "cases.csv"
    bad.write_text("case_id\nX\n")
    assert cli_error("calibrate", bad, "--dry-run").startswith(f"{bad}: ")
    runs = tmp_path / "runs.csv"
    runs.write_text("exp_id,stage_index\n1,0\n")
    assert cli_error("calibrate", "--runs", runs, "--dry-run").startswith(f"{runs}: header: missing columns")
    assert cli_error("calibrate", "--runs", tmp_path / "none.csv", "--dry-run").startswith(f"{tmp_path / 'none.csv'}")


def test_a_case_the_start_values_miss_by_more_than_3x_is_not_fitted_on():
    """No efficiency within its bounds bridges a factor of 3: such a case stays a check instead of bending
    the family's coefficients towards itself."""
    cases = synthetic_cases()
    far = replace(cases[0], case_id="far", value=cases[0].value * 4)
    near = replace(cases[1], case_id="near", value=cases[1].value * 2.5)
    chosen, beyond = cal.within_reach([far, near], [cases[0].value, cases[1].value])
    assert [c.case_id for c in chosen] == ["near"] and [c.case_id for c in beyond] == ["far"]
    assert cal.within_reach([far], [None]) == ([], [far])  # not simulated: never fitted on


def test_a_fit_that_predicts_held_out_cases_worse_than_its_start_values_is_not_kept():
    """Model selection out of sample: the family's coefficients are written only when they beat, cross-
    validated, the start values they were fitted from (which no case was fitted on)."""
    from types import SimpleNamespace

    def run(cases):
        outcomes = [SimpleNamespace(case=c, role="fit", error=None) for c in cases]
        fits, scored = cal.calibrate(cases, outcomes, closed_form([]), 3, {"Hopper"}, log=lambda _: None)
        return fits["Hopper"], {s.role for s in scored}

    fitted, roles = run(synthetic_cases())  # generated by other coefficients: the fit generalises
    assert fitted.params["compute"] == pytest.approx(TRUTH["compute"], abs=0.03) and roles == {"fit"}
    start = cal.start_for(synthetic_cases())
    exact = [replace(c, value=step_s(c.case_id, start)) for c in synthetic_cases()]  # START is already right
    kept, roles = run(exact)
    assert kept.params == start and roles == {cal.START_KEPT}


def test_an_engine_named_by_fewer_cases_gets_its_own_host_time_per_step_and_the_fit_recovers_it(monkeypatch):
    """Cases of two engines on one family: the most named engine's step time is the family's step_overhead;
    the other engine's extra host time per step is its own parameter, recovered from cases it generated."""
    extra = 12e-3  # a step dispatched from Python without overlap (the JetStream-PyTorch rows' order)
    cases = synthetic_cases()
    for name in ("memory-bound", "layer-bound"):  # the same steps served by the other engine
        monkeypatch.setitem(STEPS, f"jetstream {name}", STEPS[name])
    cases += [replace(cases[0], case_id=f"jetstream {name}", notes="JetStream-PyTorch",
                                         value=step_s(name, TRUTH) + extra) for name in ("memory-bound", "layer-bound")]
    start = cal.start_for(cases)
    assert [k for k in start if k.startswith("engine_step_overhead:")] == ["engine_step_overhead:jetstream"]

    def predict(batch, params):
        return [step_s(c.case_id, params) + (params["engine_step_overhead:jetstream"]
                                             if c.case_id.startswith("jetstream") else 0.0) for c in batch]
    fitted = cal.fit(cases, predict)
    assert fitted.params["engine_step_overhead:jetstream"] == pytest.approx(extra)
    assert {name: fitted.params[name] for name in TRUTH} == pytest.approx(TRUTH)
    chip = cal.with_efficiency(cal.load_chip("tpu-v5e"), fitted.params)
    assert chip.efficiency.engine_step_overhead["jetstream"] == pytest.approx(extra)
    assert cal.render(fitted.params)["engine_step_overhead"] == "{jetstream: 12000 us}"


RUN_TRUTH = {"sequence_overhead:vllm": 20e-6, "engine_step_overhead:vllm": 2e-3}


def run_ms(value: "cal.RunValue", p: dict[str, float]) -> float:
    """A closed form of a serving run's stage mean: a fixed time plus the engine's host time per step and per
    sequence of the stage's batch (10 x its index + 1 sequences; TTFT: two steps)."""
    batch = 10 * value.stage + 1 + len(value.experiment.name) % 7
    steps = 2 if value.metric == "ttft" else 1
    host = p["engine_step_overhead:vllm"] + batch * p["sequence_overhead:vllm"]
    return 5.0 + 1e3 * steps * host


def test_an_engines_host_time_is_recovered_from_serving_runs_holding_each_run_out_together(monkeypatch):
    runs = cal.run_values(REPO / "validation" / "vllm-h100" / "cases.csv")
    assert {r.metric for r in runs} == {"ttft", "itl"} and all(r.stage >= 0 for r in runs)
    truth = [replace(r, value=run_ms(r, RUN_TRUTH)) for r in runs]
    held_out = []
    real_fit = cal.fit

    def recording_fit(batch, predict, start=None, weighted=False):
        held_out.append({r.experiment.name for r in truth} - {r.experiment.name for r in batch})
        return real_fit(batch, predict, start, weighted)

    monkeypatch.setattr(cal, "fit", recording_fit)
    fitted = cal.fit_runs(truth, lambda values, p: [run_ms(v, p) for v in values], "runs.csv", lambda _: None)
    assert fitted.params == pytest.approx(RUN_TRUTH)
    assert "leaving each run out" in fitted.runs and "runs.csv" in fitted.runs
    # the full fit, then one fit per experiment without all of that experiment's stage means
    assert held_out[0] == set() and sorted(map(sorted, held_out[1:])) == sorted([e] for e in
                                                                                {r.experiment.name for r in truth})
