"""Figures of SAE-latent steering: a vector's top latents, each method's test effect beside the random band,
and the fluency cost per method against strength (AxBench-style, Wu et al. 2025).
"""

from __future__ import annotations

import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from steerlab.errors import SteerlabError
from steerlab.plotting.general import _axes, _check

__all__ = ["plot_cost_dose_response", "plot_latent_scores", "plot_method_effects"]


def plot_latent_scores(df: pd.DataFrame, ax: Axes | None = None, top: int = 8) -> Axes:
    """Scores of a vector's top SAE latents, one group of bars per decomposition method (decoder cosine,
    encoding of the vector, encoded positive-negative difference). ``df`` from `steerlab.sae.decompose`;
    scores are divided by each method's largest absolute score so the methods share one axis."""
    _check(df, ["method", "rank", "latent", "score"], "plot_latent_scores")
    d = df[df["rank"] <= top].copy()
    d["relative score"] = d.score / d.groupby("method").score.transform(lambda s: s.abs().max())
    d["latent"] = d.latent.astype(str)
    ax = _axes(ax)
    methods = sorted(d.method.unique())  # one order for the bars and their labels
    sns.barplot(d, x="rank", y="relative score", hue="method", hue_order=methods, ax=ax)
    rows = d.assign(order=d.method.map(methods.index)).sort_values(["order", "rank"])
    for patch, (_, row) in zip(ax.patches, rows.iterrows(), strict=False):
        ax.annotate(row.latent, (patch.get_x() + patch.get_width() / 2, patch.get_height()), ha="center",
                    va="bottom" if patch.get_height() >= 0 else "top", fontsize=5, rotation=90)  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlabel("rank of latent (index above each bar)")
    ax.set_ylabel("score / max |score|")
    return ax


def plot_method_effects(
    effects: pd.DataFrame, labels: pd.DataFrame | None = None, ax: Axes | None = None, metric: str = "p_behaviour"
) -> Axes:
    """Each method's test effect at its own chosen strength, with its 95% interval (black), the 95% band of
    random directions of the same norm at that strength (grey), and the effect on each answer label (markers):
    a forest plot of `steerlab.sae.compare_methods` (``Comparison.effects`` and ``.labels``)."""
    _check(effects, ["method", "fraction", "effect", "lo", "hi", "null_lo", "null_hi"], "plot_method_effects")
    ax = _axes(ax)
    methods = list(dict.fromkeys(effects.method))
    for y, (_, row) in enumerate(effects.set_index("method").loc[methods].iterrows()):
        if np.isfinite(row.null_lo) and np.isfinite(row.null_hi):
            ax.barh(y, row.null_hi - row.null_lo, left=row.null_lo, height=0.6, color="0.85", zorder=0,
                    label="random directions, 95% band" if y == 0 else None)  # fmt: skip
        ax.errorbar(row.effect, y, xerr=[[row.effect - row.lo], [row.hi - row.effect]], fmt="o", color="black",
                    capsize=3, label="effect, 95% CI" if y == 0 else None)  # fmt: skip
        ax.annotate(f"{row.fraction:+g} x norm", (1.0, y), xycoords=("axes fraction", "data"), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=6)  # fmt: skip
    if labels is not None and not labels.empty:
        _check(labels, ["method", "label", "effect"], "plot_method_effects (labels)")
        for marker, (label, g) in zip("^vsD", labels.groupby("label"), strict=False):
            g = g[g.method.isin(methods)]
            ax.plot(g.effect, [methods.index(m) for m in g.method], marker, markersize=4, alpha=0.7, linestyle="",
                    label=f"items whose answer is {label}")  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_yticks(range(len(methods)), methods)
    ax.invert_yaxis()
    ax.set_xlabel(f"test effect on {metric} (steered - unsteered)")
    ax.legend(fontsize=6, loc="best")
    return ax


def plot_cost_dose_response(cost: pd.DataFrame, metric: str = "perplexity", ax: Axes | None = None) -> Axes:
    """A cost metric against strength, one line per method, the range of the random directions of the same norm
    shaded where they ran, and the unsteered value as a dotted line. ``cost``: ``Comparison.cost`` (a
    `steerlab.sweeps.sweep` frame; aggregate rows such as ``perplexity`` are read as they are, per-item
    metrics are averaged)."""
    _check(cost, ["method", "direction", "fraction", "metric", "value"], "plot_cost_dose_response")
    d = cost[cost.metric == metric]
    if d.empty:
        present = sorted(set(cost.metric))
        raise SteerlabError(f"plot_cost_dose_response: no rows of {metric!r}; metrics present: {present}")
    ax = _axes(ax)
    vec = d[d.direction == "vector"]
    for method, g in vec.groupby("method", sort=False):
        m = g.groupby("fraction").value.mean()
        ax.plot(m.index, m.values, "o-", markersize=3, label=str(method))
    random = d[d.direction != "vector"]
    if len(random):
        per = random.groupby(["fraction", "direction"]).value.mean().groupby("fraction")
        lo, hi = per.min(), per.max()
        ax.fill_between(lo.index, lo.values, hi.values, color="0.8", alpha=0.6, zorder=0,
                        label=f"random directions ({random.direction.nunique()}), range")  # fmt: skip
    base = vec[vec.fraction == 0].value
    if len(base):
        ax.axhline(float(base.mean()), color="grey", linestyle=":", linewidth=1, label="unsteered")
    if metric == "perplexity":
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("strength (fraction of the typical token norm)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=6)
    return ax
