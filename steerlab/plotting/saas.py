"""Figures of SAAS (instance-semantic attribution for activation steering, anonymous ACL submission):
per-method bars at alpha = -1 and +1, and effect curves against layer or tau.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from steerlab.plotting.general import _axes, _check

__all__ = ["plot_saas_effect", "plot_saas_methods"]


def plot_saas_methods(table: pd.DataFrame, ax: Axes | None = None, *, label: str = "") -> Axes:
    """SAAS Table 1 as bars: mean p(behaviour) per method at alpha = -1 and +1, error bars = sd over splits.

    ``table`` has one row per (method, split) with columns ``method``, ``p_minus``, ``p_plus`` (and
    ``base`` rows with ``p_minus == p_plus`` = the unsteered p). ``label`` is added to the title (e.g.
    "hand-written sub-behaviours").
    """
    _check(table, ["method", "p_minus", "p_plus"], "plot_saas_methods")
    ax = _axes(ax)
    order = list(dict.fromkeys(table.method))
    g = table.groupby("method")[["p_minus", "p_plus"]]
    mean, sd = g.mean().loc[order], g.std().loc[order].fillna(0.0)
    x = np.arange(len(order))
    for k, (col, name) in enumerate([("p_minus", "alpha = -1"), ("p_plus", "alpha = +1")]):
        ax.bar(x + (k - 0.5) * 0.38, mean[col], 0.38, yerr=sd[col], label=name, capsize=2)
    ax.axhline(0.5, color="grey", linewidth=0.6, linestyle=":")
    ax.set_xticks(x, order, rotation=35, ha="right")
    ax.set_ylabel("p(behaviour) on test")
    if label:
        ax.set_title(label, fontsize=9)
    ax.legend(fontsize=8)
    return ax


def plot_saas_effect(df: pd.DataFrame, x: str, ax: Axes | None = None, *, hue: str = "method") -> Axes:
    """Steering effect p(+1) - p(-1) against ``x`` (``layer``, ``tau``, ...): mean over splits, 95% CI band.

    ``df`` has columns ``x``, ``hue``, ``split`` and ``effect`` (e.g. `steerlab.pipelines.saas.effects`).
    """
    _check(df, [x, hue, "effect"], "plot_saas_effect")
    ax = _axes(ax)
    sns.lineplot(data=df, x=x, y="effect", hue=hue, marker="o", errorbar=("ci", 95), ax=ax)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("effect: p(+1) - p(-1)")
    return ax
