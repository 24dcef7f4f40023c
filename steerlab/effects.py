"""Effects of a sweep's cells with everything needed to read them: interval, random band, labels, power, verdict.

A cell's **effect** is the mean over items of (metric steered - metric unsteered), paired by item, with a
two-sided t-interval (Student 1908). Beside it: the **random band** (`steerlab.controls.null_band` over the
effects of the cell's random directions, same site, strength and norm), the **per-label** effects (items
whose behaviour-matching answer is A/Yes vs B/No, or by correct letter), the **minimum detectable effect**
at 80% power for the cell's item count and spread (`steerlab.power.mde_paired`) and the **verdict**
(`steerlab.verdicts.verdict`: steers / answer-token push / within random band / no effect / underpowered).

For multiple-choice accuracy two diagnostics of disruption rather than steering: `letter_distribution`
(how the predicted letters shift) and `toward_chance` (whether accuracy changes follow the distance from
chance, as a push towards random answering would: a negative slope of the change on ``base - chance``).

Inputs are `steerlab.sweeps.sweep` frames (rows with ``example_id == "all"`` are aggregates and are left
out). A sweep's strengths are its fractions when it has them, else its coefficients.

Example:
    >>> eff = cell_effects(df, "p_behaviour")                                         # doctest: +SKIP
    >>> eff[["layer", "fraction", "effect", "lo", "hi", "null_lo", "null_hi", "mde", "verdict"]]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from steerlab.controls import null_band
from steerlab.errors import SteerlabError
from steerlab.power import mde_paired
from steerlab.prompts import LETTERS
from steerlab.stats import mean_ci
from steerlab.verdicts import verdict

__all__ = ["CELL", "cell_effects", "chance_shift", "label_effects", "letter_distribution", "metric_rows",
           "paired_effect", "strength_column", "toward_chance"]  # fmt: skip

CELL = ("method", "seed", "site", "layer")
"""Columns that, with the strength, name a cell of one vector."""


def strength_column(df: pd.DataFrame) -> str:
    """``"fraction"`` for a sweep of fractions of the typical norm, else ``"coeff"``."""
    return "fraction" if "fraction" in df and df["fraction"].notna().all() else "coeff"


def metric_rows(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The per-item rows of ``metric`` (aggregate ``"all"`` rows dropped), with a ``direction`` column."""
    if metric not in set(df.metric):
        raise SteerlabError(f"no rows for metric {metric!r}; metrics present: {sorted(df.metric.unique())}")
    d = df[(df.metric == metric) & (df.example_id.astype(str) != "all")]
    if "direction" not in d:
        d = d.assign(direction="vector")
    return d


def paired_effect(steered: pd.Series, base: pd.Series, confidence: float = 0.95) -> dict[str, float]:
    """Mean of ``steered - base`` over the items both have (Series indexed by example_id), its t-interval,
    the sd of the differences and their number. Intervals are NaN below two items."""
    diff = (steered - base.reindex(steered.index)).dropna().to_numpy(dtype=float)
    n = len(diff)
    if n == 0:
        return {"effect": math.nan, "lo": math.nan, "hi": math.nan, "sd": math.nan, "n": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, lo, hi = mean_ci(diff, confidence) if n > 1 else (float(diff.mean()), math.nan, math.nan)
    sd = float(np.std(diff, ddof=1)) if n > 1 else math.nan
    return {"effect": float(mean), "lo": float(lo), "hi": float(hi), "sd": sd, "n": n}


def _mde(n: int, sd: float, power: float) -> float:
    if n < 3 or not math.isfinite(sd):
        return math.nan
    return mde_paired(n, sd, power=power)


def cell_effects(
    df: pd.DataFrame,
    metric: str,
    *,
    confidence: float = 0.95,
    power: float = 0.8,
    reference: float | None = None,
) -> pd.DataFrame:
    """One row per steered cell of the vector(s): effect, interval, random band, MDE and verdict.

    Args:
        df: a `steerlab.sweeps.sweep` frame with the unsteered cell (strength 0).
        metric: the metric to read (e.g. ``task.metrics[0]``).
        confidence: level of the intervals and of the random band.
        power: power at which the minimum detectable effect is computed.
        reference: an effect that matters (e.g. a paper's); an MDE above it makes a null "underpowered".

    Returns:
        Columns ``method, seed, site, layer, fraction, coeff, n, base, steered, effect, lo, hi, sd, mde,
        k_controls, null_lo, null_hi, verdict, verdict_text`` (the band is NaN without at least 3 random
        directions; the verdict then judges without a band).
    """
    d = metric_rows(df, metric)
    x = strength_column(d)
    out = []
    labelled = "label" in d and d["label"].astype(str).str.len().gt(0).any()
    for key, g in d.groupby(list(CELL), sort=False):
        base_rows = g[(g[x] == 0) & (g.direction == "vector")]
        if base_rows.empty:
            raise SteerlabError(f"cell {dict(zip(CELL, key, strict=True))} has no unsteered rows (strength 0); sweep "
                                "with 0 among the strengths")  # fmt: skip
        base = base_rows.set_index("example_id").value
        labels = base_rows.set_index("example_id")["label"].astype(str) if labelled else None
        for _, s in g[(g[x] != 0)].groupby(x, sort=True):
            vec = s[s.direction == "vector"].set_index("example_id").value
            if vec.empty:
                continue
            e = paired_effect(vec, base, confidence)
            rnd = [float((r.set_index("example_id").value - base).mean()) for _, r in
                   s[s.direction != "vector"].groupby("direction", sort=False)]  # fmt: skip
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                band = null_band(rnd, confidence) if len(rnd) >= 3 else (math.nan, math.nan)
            per_label = {}
            if labels is not None:
                for name, ids in labels.groupby(labels).groups.items():
                    le = paired_effect(vec.reindex(ids).dropna(), base, confidence)
                    per_label[str(name)] = (le["effect"], le["lo"], le["hi"])
            mde = _mde(e["n"], e["sd"], power)
            finite_band = band if all(math.isfinite(b) for b in band) else None
            v = verdict(e["effect"], (e["lo"], e["hi"]), mde=mde, null_band=finite_band,
                        per_label=per_label if len(per_label) > 1 else None, reference=reference, n=e["n"])  # fmt: skip
            out.append({
                **dict(zip(CELL, key, strict=True)),
                "fraction": float(s["fraction"].iloc[0]) if "fraction" in s else math.nan,
                "coeff": float(s[s.direction == "vector"]["coeff"].iloc[0]),
                "n": e["n"], "base": float(base.mean()), "steered": float(vec.mean()),
                "effect": e["effect"], "lo": e["lo"], "hi": e["hi"], "sd": e["sd"], "mde": mde,
                "k_controls": len(rnd), "null_lo": band[0], "null_hi": band[1],
                "verdict": v.label, "verdict_text": v.text,
            })  # fmt: skip
    return pd.DataFrame(out)


def label_effects(df: pd.DataFrame, metric: str, *, confidence: float = 0.95) -> pd.DataFrame:
    """The effect of each steered cell of the vector(s), per answer label (items whose behaviour-matching or
    correct answer is that label). Columns ``method, seed, site, layer, fraction, coeff, label, n, effect,
    lo, hi``. An answer-token push shows as labels moving in opposite directions."""
    d = metric_rows(df, metric)
    if "label" not in d:
        raise SteerlabError("the sweep has no label column: its task gives no answer labels (e.g. generation)")
    x = strength_column(d)
    d = d[d.direction == "vector"].assign(label=d["label"].astype(str))
    out = []
    for key, g in d.groupby(list(CELL), sort=False):
        base = g[g[x] == 0].set_index("example_id")
        for _, s in g[g[x] != 0].groupby(x, sort=True):
            steered = s.set_index("example_id")
            for label, ids in base.groupby("label").groups.items():
                e = paired_effect(steered.value.reindex(ids).dropna(), base.value, confidence)
                out.append({**dict(zip(CELL, key, strict=True)), "fraction": float(s["fraction"].iloc[0]),
                            "coeff": float(s["coeff"].iloc[0]), "label": label, "n": e["n"], "effect": e["effect"],
                            "lo": e["lo"], "hi": e["hi"]})  # fmt: skip
    return pd.DataFrame(out)


def letter_distribution(df: pd.DataFrame, *, n_options: int | None = None) -> pd.DataFrame:
    """Share of each predicted answer letter per cell (MCQ, from the ``pred`` rows of a `ChoiceTask`).

    Columns ``method, seed, site, layer, fraction, coeff, direction, letter, share, n``. Letters never
    predicted get share 0 when ``n_options`` is given. A steering vector that only disrupts tends to
    pile predictions onto one letter, or to spread them towards uniform.
    """
    d = metric_rows(df, "pred")
    cols = [*CELL, "fraction", "coeff", "direction"]
    out = []
    for key, g in d.groupby(cols, sort=False, dropna=False):
        counts = g.value.astype(int).value_counts()
        letters = range(n_options) if n_options else sorted(counts.index)
        for k in letters:
            out.append({**dict(zip(cols, key, strict=True)), "letter": LETTERS[k],
                        "share": float(counts.get(k, 0)) / len(g), "n": len(g)})  # fmt: skip
    return pd.DataFrame(out)


def toward_chance(
    frame: pd.DataFrame, *, base: str = "base", chance: str = "chance", delta: str = "delta"
) -> dict[str, float]:
    """Does the change in accuracy follow the distance from chance? (a regression-to-chance diagnostic)

    Regresses ``delta`` (steered - unsteered accuracy) on ``base - chance`` over the rows (e.g. one row per
    task, or per task x cell). A direction that pushes answers towards random gives a negative slope near
    -1 (tasks above chance lose, tasks below gain) whatever its content; steering gives no such relation.

    Returns:
        ``{"slope", "intercept", "r", "p", "n"}`` (NaN below 3 rows or with no spread in ``base - chance``).

    Example:
        >>> f = pd.DataFrame({"base": [0.2, 0.25, 0.35, 0.4], "chance": 0.25, "delta": [0.04, 0.0, -0.08, -0.1]})
        >>> round(toward_chance(f)["slope"], 2)
        -0.72
    """
    for col in (base, chance, delta):
        if col not in frame:
            raise SteerlabError(f"toward_chance needs a column {col!r}; columns: {list(frame.columns)}")
    x = (frame[base] - frame[chance]).to_numpy(dtype=float)
    y = frame[delta].to_numpy(dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return {"slope": math.nan, "intercept": math.nan, "r": math.nan, "p": math.nan, "n": len(x)}
    fit = sps.linregress(x, y)
    return {"slope": float(fit.slope), "intercept": float(fit.intercept), "r": float(fit.rvalue),
            "p": float(fit.pvalue), "n": len(x)}  # fmt: skip


def chance_shift(base: float, steered: float, chance: float) -> dict[str, float | bool]:
    """One task's accuracy against chance: distances before and after, and whether steering moved it towards chance."""
    return {"chance": chance, "base_minus_chance": base - chance, "steered_minus_chance": steered - chance,
            "towards_chance": abs(steered - chance) < abs(base - chance)}  # fmt: skip
