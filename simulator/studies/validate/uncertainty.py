"""catalog/uncertainty.yaml from the cross-validated residuals `infersim calibrate` leaves in
validation/calibration.cv.csv: how wide each family's coefficients are drawn (config/uncertainty.py).

Method (one rule for every family, no per-case tuning):
- A family's residuals are log(1 + cross-validated error) of its cases: each predicted by coefficients
  fitted without it (or by the start values, which no case was fitted on), so they measure how far the
  coefficients miss out of sample. Cases "beyond reach" (missed by 3x or more at the start: physics the
  model lacks, e.g. a p99 under queueing) and cases not simulated are left out: no coefficient spread can
  stand in for missing physics, and `validate --uncertainty` shows them outside their bands.
- Width: the root mean square of the residuals (bias included), shrunk towards the pooled RMS of every
  fitted family by PRIOR_CASES pseudo-cases, so a family with two cases is not trusted to 5% on two numbers.
- A family whose fit was not kept (start values kept), a loose family (vendor claims, API runs), and a chip
  no family covers carry at least WIDE_FACTOR x the pooled width: their coefficients are assumed, and the
  file says so in `basis`.
- Every coefficient of a family (compute, memory, collective, the overheads, each engine's host time per
  sequence, a wafer's mesh hop) gets that width, times SIGMA_SCALE, as the sigma of a lognormal around its
  catalog value. The residual is of an output; a coefficient moves an output by less than its own spread
  (elasticities below one, efficiencies capped at nameplate, time spent in links and pipeline bubbles that
  no coefficient scales). SIGMA_SCALE undoes that on average: with SIGMA_SCALE 1 the predicted p10-p90
  bands of the 44 simulated rows of validation/calibration.csv (10 draws) had a median log width 0.63 of
  the 2 x 1.28 sigma a lognormal output of that sigma would have, so SIGMA_SCALE = 1 / 0.63 = 1.6. One
  constant for every family, measured once (numbers in the issue 17 note); not a per-case knob.
"""

from __future__ import annotations

import csv
import datetime
import math
from pathlib import Path

import yaml

from simulator.config.load import chip_ids
from simulator.config.uncertainty import COEFFICIENTS, UNCERTAINTY_PATH
from simulator.errors import ScenarioError
from simulator.studies.validate.calibrate import BEYOND_REACH, CV_COLUMNS, FAMILIES, START_KEPT, cross_validation_path

PRIOR_CASES = 2.0
WIDE_FACTOR = 2.0
SIGMA_SCALE = 1.6  # 1 / the measured median transfer of a coefficient's spread to an output's (above)
METHOD = (f"lognormal per coefficient, sigma = {SIGMA_SCALE:g} (1 / the median transfer of a coefficient's spread to "
          "an output's, measured by validate --uncertainty) x the RMS of the family's log(1 + cross-validated "
          f"error), shrunk towards the pooled RMS of the fitted families by {PRIOR_CASES:g} pseudo-cases; families "
          f"not fitted (start values kept, loose evidence) and chips in no family at least {WIDE_FACTOR:g} x the "
          "pooled RMS; cases beyond reach and not simulated left out (studies/validate/uncertainty.py)")


def read_residuals(cv_file: Path) -> dict[str, list[tuple[str, float]]]:
    """family -> [(role, log residual)] of the cases whose cross-validated error is known."""
    try:
        with cv_file.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ScenarioError("", f"cannot read the cross-validated errors: {exc.strerror}", str(cv_file)) from None
    if not rows or tuple(rows[0]) != CV_COLUMNS:
        raise ScenarioError("", f"not a file infersim calibrate writes (columns: {', '.join(CV_COLUMNS)})",
                            str(cv_file))
    out: dict[str, list[tuple[str, float]]] = {}
    for i, r in enumerate(rows, start=2):
        if not r["cross_validated_error"] or r["role"] == BEYOND_REACH:
            continue
        try:
            error = float(r["cross_validated_error"])
        except ValueError:
            raise ScenarioError(f"line {i}: cross_validated_error", f"{r['cross_validated_error']!r} is not a "
                                "number", str(cv_file)) from None
        if not error > -1 or not math.isfinite(error):
            raise ScenarioError(f"line {i}: cross_validated_error", f"{error} is not above -1", str(cv_file))
        out.setdefault(r["family"], []).append((r["role"], math.log1p(error)))
    return out


def _rms(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0


def basis_of(name: str, roles: list[str]) -> str:
    if FAMILIES[name].loose:
        return "loose evidence"
    return "start values kept" if START_KEPT in roles or "fit" not in roles else "fitted"


def derive(residuals: dict[str, list[tuple[str, float]]], cv_name: str) -> dict[str, object]:
    """The uncertainty.yaml mapping of these residuals."""
    fitted = {n: rs for n, rs in residuals.items() if n in FAMILIES and basis_of(n, [r for r, _ in rs]) == "fitted"}
    pooled = _rms([v for rs in fitted.values() for _, v in rs]) or 0.3
    wide = WIDE_FACTOR * pooled
    today = datetime.date.today().isoformat()
    families: dict[str, object] = {}
    for name, family in FAMILIES.items():
        rs = residuals.get(name, [])
        basis = basis_of(name, [r for r, _ in rs]) if rs else "not calibrated"
        rms = _rms([v for _, v in rs])
        shrunk = math.sqrt((len(rs) * rms**2 + PRIOR_CASES * pooled**2) / (len(rs) + PRIOR_CASES))
        sigma = SIGMA_SCALE * (shrunk if basis == "fitted" else max(shrunk, wide))
        why = ("fitted coefficients" if basis == "fitted" else
               f"{basis}: at least {WIDE_FACTOR:g} x the pooled width, the coefficients are not validated")
        families[name] = {
            "chips": list(family.chips + family.heirs), "basis": basis, "cases": len(rs),
            "sigma": {c: round(sigma, 4) for c in _coefficients(name)},
            "source": f"{len(rs)} cross-validated residuals of {cv_name} (RMS of log error {rms:.3f}); {why}",
        }
    covered = {c for f in FAMILIES.values() for c in f.chips + f.heirs}
    return {
        "source": f"derived by infersim calibrate on {today} from {cv_name}; pooled RMS of the fitted families' "
                  f"log errors {pooled:.3f}",
        "method": METHOD,
        "families": families,
        "uncalibrated": {
            "chips": sorted(set(chip_ids()) - covered) or ["none"], "basis": "not calibrated", "cases": 0,
            "sigma": {c: round(SIGMA_SCALE * wide, 4) for c in COEFFICIENTS},
            "source": f"no family, no case: {WIDE_FACTOR:g} x the pooled width (also any user chip)"},
    }


def _coefficients(family: str) -> list[str]:
    return [c for c in COEFFICIENTS if c != "mesh.hop_latency" or family == "Wafer"]


def write_uncertainty(cases_file: str | Path, out: Path = UNCERTAINTY_PATH, shown: str | None = None) -> Path:
    """Regenerate `out` from the cross-validated errors beside `cases_file`, without refitting."""
    cv_file = cross_validation_path(cases_file)
    data = derive(read_residuals(cv_file), shown or cv_file.name)
    head = ("# How far each chip family's calibrated coefficients can be trusted (config/uncertainty.py).\n"
            "# Written by `infersim calibrate` (and `infersim calibrate --bands-only`, from the cross-validated\n"
            "# errors without refitting); edit by hand only to try a what-if.\n")
    out.write_text(head + yaml.safe_dump(data, sort_keys=False, width=110), encoding="utf-8")
    return out
