"""The perplexity cost of steering (CAE, Hao et al. 2025, arXiv 2505.03189, findings 4 and 5).

The paper finds that adding a steering vector raises the model's perplexity on ordinary text, and
that larger models suffer less. `perplexity_cost` measures, for every site of a vector and every
strength, the perplexity of neutral text under the steered model and, on the same grid, the
behaviour effect on a `ChoiceTask`, so the two can be drawn on the same axes (the trade-off curve).
`at_matched_effect` reads the curve at a given effect, which is how two models of different size
are compared (`plot_cost_curve`, `plot_cost_tradeoff` in `steerlab.plotting`).

Example:
    >>> df = perplexity_cost(lm, vec.rescaled(norms, 1.0), [-1, 0, 0.5, 1], texts, task=task)  # doctest: +SKIP
    >>> at_matched_effect(df, effect=0.1)                                                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.metrics import perplexity_on
from steerlab.sites import ALL, Positions
from steerlab.tasks import ChoiceTask

logger = logging.getLogger(__name__)


def perplexity_cost(
    backend: Backend,
    vector,
    coeffs: Sequence[float],
    texts: Sequence[str],
    *,
    task: ChoiceTask | None = None,
    positions: Positions = ALL,
    task_positions: Positions | None = None,
    max_tokens: int = 128,
    batch_size: int = 8,
    progress: bool = True,
) -> pd.DataFrame:
    """Perplexity of ``texts`` and (optionally) the behaviour on ``task`` for every site x strength.

    Each site of ``vector`` is steered alone (``steer(vector, coeff, sites=[site])``), at
    ``positions`` for the text (default: every token, as the paper does) and at ``task_positions``
    (default: the same) for the task.

    Args:
        vector: a `SteeringVector` (or ``{Site: Tensor}``); express strengths relative to the
            residual norm by passing ``vector.rescaled(norms, 1.0)``, so ``coeff`` is that fraction.
        coeffs: strengths; include 0 for the unsteered reference.
        texts: neutral text (e.g. ``load_dataset("wikitext2")``); each cut to ``max_tokens`` tokens.
        task: a prepared choice evaluation (`ChoiceTask.from_pairs`), scored on the same grid.

    Returns:
        Tidy DataFrame ``layer, site, coeff, metric, value`` with metrics ``perplexity``,
        ``log_ppl_ratio`` (log of perplexity over the unsteered perplexity; 0 at strength 0) and,
        with a task, its mean metrics (``p_behaviour``, ``logit_diff``).
    """
    coeffs = [float(c) for c in coeffs]
    if not coeffs:
        raise SteerlabError("no strengths were given; pass e.g. coeffs=[-1, 0, 1]")
    directions = getattr(vector, "directions", vector)
    if not directions:
        raise SteerlabError("the vector has no sites")
    base_ppl = perplexity_on(backend, texts, max_tokens=max_tokens, batch_size=batch_size)
    rows = []
    grid = [(s, c) for s in sorted(directions, key=lambda s: s.order) for c in coeffs]
    for site, coeff in tqdm(grid, desc="perplexity cost", disable=not progress):

        def cell(metric: str, value: float, site=site, coeff=coeff) -> dict:
            return {"layer": site.layer, "site": str(site), "coeff": coeff, "metric": metric, "value": value}

        if coeff == 0.0:
            ppl = base_ppl
        else:
            edits = steer(directions, coeff, positions=positions, sites=[site])
            ppl = perplexity_on(backend, texts, edits=edits, max_tokens=max_tokens, batch_size=batch_size)
        rows += [cell("perplexity", ppl), cell("log_ppl_ratio", float(np.log(ppl / base_ppl)))]
        if task is not None:
            edits = steer(directions, coeff, positions=task_positions or positions, sites=[site]) if coeff else []
            means = task.evaluate(edits).groupby("metric").value.mean()
            rows += [cell(m, float(v)) for m, v in means.items()]
    return pd.DataFrame(rows)


def at_matched_effect(
    df: pd.DataFrame, effect: float, *, metric: str = "p_behaviour", cost: str = "perplexity", log_cost: bool = False
) -> pd.DataFrame:
    """For each layer, the strength at which the behaviour moves by ``effect`` from strength 0, and
    the cost there (linear interpolation along the measured strengths on the side of ``effect``'s sign).

    ``effect`` is a change in ``metric`` (e.g. ``+0.1`` in p(behaviour)); layers whose measured
    curve never reaches it get NaN. With ``log_cost`` the cost is interpolated geometrically (linear in
    its logarithm), which suits perplexity, since it grows roughly exponentially with strength.

    Returns:
        DataFrame ``layer, effect, coeff, cost_metric, cost`` (one row per layer).
    """
    missing = {"layer", "coeff", "metric", "value"} - set(df.columns)
    if missing:
        raise SteerlabError(f"at_matched_effect needs a perplexity_cost frame; columns {sorted(missing)} are missing")
    rows = []
    for layer, d in df.groupby("layer"):
        w = d.pivot_table(index="coeff", columns="metric", values="value").sort_index()
        if metric not in w or cost not in w or 0.0 not in w.index:
            raise SteerlabError(f"layer {layer}: need metrics {metric!r} and {cost!r} at strength 0; "
                                f"the frame has {list(w.columns)} at {list(w.index)}")  # fmt: skip
        side = w[w.index >= 0] if effect >= 0 else w[w.index <= 0].iloc[::-1]
        delta = (side[metric] - w.loc[0.0, metric]).to_numpy()
        coeff = cost_at = np.nan
        for i in range(1, len(side)):  # first crossing, walking away from strength 0
            lo, hi = delta[i - 1], delta[i]
            if (hi - effect) * (lo - effect) <= 0 and hi != lo:
                t = (effect - lo) / (hi - lo)
                coeff = side.index[i - 1] + t * (side.index[i] - side.index[i - 1])
                a, b = side[cost].iloc[i - 1], side[cost].iloc[i]
                cost_at = float(np.exp(np.log(a) + t * (np.log(b) - np.log(a)))) if log_cost else a + t * (b - a)
                break
        rows.append({"layer": layer, "effect": effect, "coeff": coeff, "cost_metric": cost, "cost": cost_at})
    return pd.DataFrame(rows)
