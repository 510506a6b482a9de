"""A comparison under parameter uncertainty (`compare --uncertainty N`): bands per point, the probability that
one design beats another, whether the Pareto fronts survive, and which conclusions are robust, in words.

Draws are paired (studies/bands.py): draw d of every design uses the same normals for a family's
coefficients, so two designs of one family (H100 fp8 against H100 bf16) move together and their difference
is not blurred by noise they share, while different families draw independently. P(A beats B) at a
concurrency and metric is the share of draws, among those where both ran, in which A is strictly better
(ties count half). A conclusion is called robust when it holds in at least ROBUST of the draws.
"""

from __future__ import annotations

import pandas as pd

from simulator.studies.points import pareto_front

X = "tokens_per_s_per_user"
ROBUST = 0.9
RANKED = {  # column -> (words, larger is better)
    "output_tokens_per_s_per_kw": ("tokens/s per kW", True),
    "output_tokens_per_usd": ("tokens per USD", True),
    "output_tokens_per_s_per_chip": ("tokens/s per chip", True),
    X: ("tokens/s per user", True),
    "ttft_s.p50": ("TTFT p50", False),
    "tpot_s.p50": ("TPOT p50", False),
    "energy_j_per_output_token": ("energy per token", False),
}
FRONTS = ("output_tokens_per_s_per_chip", "output_tokens_per_s_per_kw", "output_tokens_per_usd")


def with_bands(table: pd.DataFrame, draws: pd.DataFrame) -> pd.DataFrame:
    """The comparison table with `band.<column>.p10/p50/p90` over the draws of each point."""
    ok = numeric(draws[draws["status"] == "ok"])
    out = table.copy()
    for column in RANKED:
        if column not in ok or ok[column].isna().all():
            continue
        q = ok.groupby(["design", "concurrency"])[column].quantile([0.1, 0.5, 0.9]).unstack()
        for level, name in ((0.1, "p10"), (0.5, "p50"), (0.9, "p90")):
            values = dict(q[level].items()) if level in q else {}
            out[f"band.{column}.{name}"] = [values.get((d, c)) for d, c in zip(out["design"], out["concurrency"])]
    return out


def numeric(draws: pd.DataFrame) -> pd.DataFrame:
    """The ranked columns as floats (a metric no design has, e.g. power, is all None: NaN here)."""
    return draws.assign(**{c: pd.to_numeric(draws[c], errors="coerce") for c in RANKED if c in draws})


def _better(a: float, b: float, larger: bool) -> float:
    if a == b:
        return 0.5
    return float((a > b) if larger else (a < b))


def ranking(draws: pd.DataFrame) -> pd.DataFrame:
    """P(A beats B) per metric and concurrency, for every ordered pair of designs that ran in common draws."""
    ok = numeric(draws[draws["status"] == "ok"])
    rows = []
    for column, (_, larger) in RANKED.items():
        if column not in ok:
            continue
        for concurrency, at in ok.groupby("concurrency"):
            wide = at.pivot_table(index="draw", columns="design", values=column, aggfunc="first")
            designs = list(dict.fromkeys(at["design"]))
            for a in designs:
                for b in designs:
                    if a == b or a not in wide or b not in wide:
                        continue
                    pair = wide[[a, b]].dropna()
                    if pair.empty:
                        continue
                    wins = [_better(x, y, larger) for x, y in zip(pair[a], pair[b])]
                    rows.append({"metric": column, "concurrency": concurrency, "design_a": a, "design_b": b,
                                 "p_a_beats_b": sum(wins) / len(wins), "draws": len(wins)})
    return pd.DataFrame(rows, columns=["metric", "concurrency", "design_a", "design_b", "p_a_beats_b", "draws"])


def front_survival(table: pd.DataFrame, draws: pd.DataFrame, column: str) -> tuple[float, dict[str, float]]:
    """(share of draws whose Pareto front of `column` against tok/s/user is the point estimate's, and for
    each point on that front the share of draws it stays on the front)."""
    def members(rows: pd.DataFrame) -> set[str]:
        rows = rows.dropna(subset=[X, column])
        if rows.empty:
            return set()
        mask = pareto_front(rows[X].to_numpy(float), rows[column].to_numpy(float))
        return {f"{d} c={c}" for d, c in zip(rows["design"][mask], rows["concurrency"][mask])}

    point = members(table[table["status"] == "ok"])
    ok = numeric(draws[draws["status"] == "ok"])
    fronts = [members(rows) for _, rows in ok.groupby("draw")]
    if not fronts or not point:
        return float("nan"), {}
    same = sum(f == point for f in fronts) / len(fronts)
    return same, {m: sum(m in f for f in fronts) / len(fronts) for m in sorted(point)}


def sentences(table: pd.DataFrame, draws: pd.DataFrame, ranks: pd.DataFrame) -> list[str]:
    """Each metric's point-estimate winner at each concurrency, how often it wins, and against the
    runner-up; then each Pareto front's survival. Robust (>= ROBUST) and not robust said in so many words."""
    ok = table[table["status"] == "ok"]
    out = []
    for column, (words, larger) in RANKED.items():
        if column not in ok or column in ("ttft_s.p50", "tpot_s.p50"):
            continue
        for concurrency, at in ok.dropna(subset=[column]).groupby("concurrency"):
            if len(at) < 2:
                continue
            order = at.sort_values(column, ascending=not larger)
            best, second = order["design"].iloc[0], order["design"].iloc[1]
            p = ranks[(ranks.metric == column) & (ranks.concurrency == concurrency) & (ranks.design_a == best)]
            if p.empty:
                continue
            weakest = p.loc[p["p_a_beats_b"].idxmin()]
            worst = float(weakest["p_a_beats_b"])
            runner = p[p.design_b == second]["p_a_beats_b"]
            verdict = "robust" if worst >= ROBUST else "NOT robust"
            others = ("" if len(p) == 1 else f", every other design in at least {worst:.0%}" if
                      weakest["design_b"] == second or worst >= ROBUST else
                      f", but {weakest['design_b']} in only {worst:.0%}")
            out.append(f"{verdict}: {best} has the best {words} at concurrency {concurrency}: it beats "
                       f"{second} (runner-up) in {float(runner.iloc[0]) if len(runner) else float('nan'):.0%} of "
                       f"draws{others}.")
    for column in FRONTS:
        same, stay = front_survival(table, draws, column)
        if not stay:
            continue
        shaky = [f"{m} ({s:.0%})" for m, s in stay.items() if s < ROBUST]
        out.append(f"{'robust' if same >= ROBUST else 'NOT robust'}: the Pareto front of {RANKED[column][0]} "
                   f"against tokens/s per user is exactly the point estimate's in {same:.0%} of draws; "
                   + (f"members that drop off in more than {1 - ROBUST:.0%} of draws: {', '.join(shaky)}."
                      if shaky else f"every member stays on it in at least {ROBUST:.0%}."))
    return out
