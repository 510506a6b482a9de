"""`infersim validate --uncertainty N`: each case predicted in N draws of its chip family's coefficients
(catalog/uncertainty.yaml), and how often the measurement falls inside the predicted p10-p90 band.

An honest band holds the measured value about 80% of the time: much less and the spread is too narrow for
what the coefficients really miss out of sample, much more and it is wider than the evidence. The share is
reported per family (config/uncertainty.py's families) and overall, nothing tuned per case.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from simulator.config.load import load_chip
from simulator.config.uncertainty import UncertaintySpec, draw_factors, perturbed_chip
from simulator.studies.validate.cases import Case
from simulator.studies.validate.predict import Outcome, serving_engine, simulate_jobs


def draw_predictions(cases: Sequence[Case], outcomes: Sequence[Outcome], spec: UncertaintySpec, draws: int,
                     seed: int, workers: int) -> dict[str, list[float | None]]:
    """case id -> its prediction in each draw (None where a draw does not run), for the simulated cases."""
    jobs = []
    for case, outcome in zip(cases, outcomes):
        if outcome.predicted is None:
            continue
        chip, engine = load_chip(case.chip), serving_engine(case)
        jobs += [(case, perturbed_chip(chip, engine, f)) for f in draw_factors(spec, case.chip, engine, seed, draws)]
    out: dict[str, list[float | None]] = {}
    for (case, _), result in zip(jobs, simulate_jobs(jobs, workers)):
        out.setdefault(case.case_id, []).append(result.predicted)
    return out


def with_bands(df: pd.DataFrame, predictions: dict[str, list[float | None]], spec: UncertaintySpec) -> pd.DataFrame:
    """validation.csv's band columns: the uncertainty family, p10/p50/p90 of the draws, measured inside."""
    df = df.copy()
    df["uncertainty_family"] = [spec.family_of(chip)[0] for chip in df["chip"]]
    bands = {k: np.percentile(v, (10, 50, 90)) if (v := [p for p in values if p is not None]) else None
             for k, values in predictions.items()}
    for i, name in enumerate(("band_p10", "band_p50", "band_p90")):
        df[name] = [None if bands.get(c) is None else float(bands[c][i]) for c in df["case_id"]]  # type: ignore[index]
    inside = [None if lo is None or lo != lo else bool(lo <= m <= hi)
              for lo, hi, m in zip(df["band_p10"], df["band_p90"], df["measured"])]
    df["inside_band"] = pd.array(inside, dtype="boolean")
    return df


def coverage_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Per uncertainty family and overall: cases with a band, inside it, the share, the median band width."""
    rows = []
    groups = [(name, df[df["uncertainty_family"] == name]) for name in dict.fromkeys(df["uncertainty_family"])]
    for name, part in [*groups, ("all", df)]:
        banded = part.dropna(subset=["band_p10"])
        if banded.empty:
            continue
        inside = int(banded["inside_band"].sum())
        width = (banded["band_p90"] / banded["band_p10"]).median()
        rows.append([name, str(len(banded)), str(inside), f"{inside / len(banded):.0%}", f"{width:.2f}x"])
    return ["family", "cases with a band", "measured inside p10-p90", "share", "median p90/p10"], rows


def coverage_line(df: pd.DataFrame) -> str:
    banded = df.dropna(subset=["band_p10"])
    if banded.empty:
        return "no case has a band"
    inside = int(banded["inside_band"].sum())
    return (f"measured inside the predicted p10-p90 band: {inside} of {len(banded)} cases ({inside / len(banded):.0%}; "
            "an honest band holds about 80%)")
