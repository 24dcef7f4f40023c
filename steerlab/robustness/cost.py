"""The perplexity cost of steering (CAE, Hao et al. 2025, arXiv 2505.03189, findings 4 and 5).

The paper finds that adding a steering vector raises the model's perplexity on ordinary text, and that
larger models suffer less. The cost is measured by a sweep (`steerlab.sweeps.sweep`) of a
`steerlab.tasks.PerplexityTask` over sites and strengths, with random directions of the same norm;
`perplexity_effects` reads it: the effect on each text's mean token negative log-likelihood (for texts cut
to the same number of tokens, its mean over texts is the log of the perplexity ratio) with interval, random
band and MDE, and the perplexity ratio with the random directions' band. `tradeoff_table` joins it to the
behaviour effects of the same cells (`steerlab.effects.cell_effects` of a `ChoiceTask` sweep), and
`at_matched_effect` reads the trade-off curve at a given behaviour effect, one way to compare models.

Example:
    >>> task = PerplexityTask(lm, texts, max_tokens=64)                                  # doctest: +SKIP
    >>> df = sweep(lm, vec, task, fractions=[-0.5, 0, 0.5], controls=8)                 # doctest: +SKIP
    >>> perplexity_effects(df)[["layer", "fraction", "ppl_ratio", "ratio_null_hi"]]     # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from steerlab.controls import null_band
from steerlab.effects import CELL, cell_effects, strength_column
from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

__all__ = ["at_matched_effect", "perplexity_effects", "tradeoff_table"]


def perplexity_effects(df: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Per steered cell of a `PerplexityTask` sweep: the NLL effect and the perplexity ratio, each with its band.

    Returns:
        `steerlab.effects.cell_effects` of metric ``nll`` (effect = mean over texts of the change in mean token
        NLL, with interval, random band ``null_lo/null_hi``, MDE, verdict) plus ``perplexity`` (token-weighted,
        of the cell), ``base_perplexity`` (unsteered), ``ppl_ratio`` and ``ratio_null_lo/ratio_null_hi``: the
        prediction band of the random directions' ratios (in log space; NaN with fewer than 3 directions).
    """
    need = {"metric", "value", "example_id", "direction"}
    if not need <= set(df.columns) or "perplexity" not in set(df.metric):
        raise SteerlabError("perplexity_effects reads a sweep of a PerplexityTask (rows with metric 'perplexity')")
    eff = cell_effects(df, "nll", confidence=confidence)
    x = strength_column(df)
    ppl = df[(df.metric == "perplexity") & (df.example_id.astype(str) == "all")]
    rows = []
    for key, g in ppl.groupby(list(CELL), sort=False):
        base = g[(g[x] == 0) & (g.direction == "vector")].value
        if base.empty:
            raise SteerlabError(f"cell {dict(zip(CELL, key, strict=True))} has no unsteered perplexity (strength 0)")
        base = float(base.iloc[0])
        for s, c in g[g[x] != 0].groupby(x):
            vec = c[c.direction == "vector"].value
            rnd = np.log(c[c.direction != "vector"].value.to_numpy(dtype=float) / base)
            band = null_band(rnd, confidence) if len(rnd) >= 3 else (math.nan, math.nan)
            rows.append({**dict(zip(CELL, key, strict=True)), x: float(s), "perplexity": float(vec.iloc[0]),
                         "base_perplexity": base, "ppl_ratio": float(vec.iloc[0]) / base,
                         "ratio_null_lo": math.exp(band[0]), "ratio_null_hi": math.exp(band[1])})  # fmt: skip
    return eff.merge(pd.DataFrame(rows), on=[*CELL, x], how="left")


def tradeoff_table(behaviour: pd.DataFrame, cost: pd.DataFrame) -> pd.DataFrame:
    """Behaviour effects (`cell_effects` of a choice sweep) beside the perplexity cost (`perplexity_effects`) of
    the same vector at the same site and strength; one row per (layer, strength) the two sweeps share, with
    a row at strength 0 (effect 0, ratio 1). Columns ``layer, site, fraction, effect, lo, hi, null_lo, null_hi,
    ppl_ratio, ratio_null_lo, ratio_null_hi``."""
    x = strength_column(behaviour)
    keys = ["layer", "site", x]
    b = behaviour[[*keys, "effect", "lo", "hi", "null_lo", "null_hi"]]
    c = cost[[*keys, "ppl_ratio", "ratio_null_lo", "ratio_null_hi"]]
    out = b.merge(c, on=keys, how="inner")
    if out.empty:
        raise SteerlabError("the behaviour and cost sweeps share no (layer, site, strength); sweep the same grid")
    zero = out[["layer", "site"]].drop_duplicates().assign(**{x: 0.0, "effect": 0.0, "lo": 0.0, "hi": 0.0,
                                                                "ppl_ratio": 1.0})  # fmt: skip
    return pd.concat([out, zero], ignore_index=True).sort_values(["layer", x], ignore_index=True)


def at_matched_effect(
    table: pd.DataFrame, effect: float, *, x: str = "fraction", y: str = "effect", cost: str = "ppl_ratio",
    log_cost: bool = True,
) -> pd.DataFrame:  # fmt: skip
    """For each layer, the strength at which the behaviour effect first reaches ``effect``, walking away from 0 on
    the side where it does (interpolating linearly between measured strengths), and the cost there.

    ``table`` has ``layer``, ``x`` (0 included), ``y`` (the behaviour effect, 0 at strength 0) and ``cost``
    (e.g. `tradeoff_table`). Layers whose measured curve never reaches ``effect`` get NaN. With ``log_cost`` the
    cost is interpolated geometrically (linear in its logarithm), which suits perplexity.

    Returns:
        DataFrame ``layer, effect, strength, cost_metric, cost`` (one row per layer).
    """
    missing = {"layer", x, y, cost} - set(table.columns)
    if missing:
        raise SteerlabError(f"at_matched_effect needs columns {sorted(missing)}; the table has {list(table.columns)}")
    rows = []
    for layer, d in table.groupby("layer"):
        w = d.set_index(x).sort_index()
        if 0.0 not in w.index:
            raise SteerlabError(f"layer {layer}: the table has no strength 0 (the unsteered reference)")
        best = (math.nan, math.nan)
        for side in (w[w.index >= 0], w[w.index <= 0].iloc[::-1]):  # away from 0, each way
            delta, values = (side[y] - w.loc[0.0, y]).to_numpy(), side[cost].to_numpy(dtype=float)
            for i in range(1, len(side)):
                lo, hi = delta[i - 1], delta[i]
                if (hi - effect) * (lo - effect) <= 0 and hi != lo:
                    t = (effect - lo) / (hi - lo)
                    at = side.index[i - 1] + t * (side.index[i] - side.index[i - 1])
                    a, b = values[i - 1], values[i]
                    c = float(np.exp(np.log(a) + t * (np.log(b) - np.log(a)))) if log_cost else a + t * (b - a)
                    if math.isnan(best[0]) or abs(at) < abs(best[0]):
                        best = (at, c)
                    break
        rows.append({"layer": layer, "effect": effect, "strength": best[0], "cost_metric": cost, "cost": best[1]})
    return pd.DataFrame(rows)
