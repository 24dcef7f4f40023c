"""Figures of SAE-latent steering: a vector's top latents, and steering against fluency per method
(AxBench-style, Wu et al. 2025).
"""

from __future__ import annotations

import matplotlib.ticker
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from steerlab.errors import SteerlabError
from steerlab.plotting.general import _axes, _check

__all__ = ["plot_latent_scores", "plot_steering_tradeoff"]


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


def plot_steering_tradeoff(
    df: pd.DataFrame, metric: str = "p_behaviour", ax: Axes | None = None, hue: str = "method"
) -> Axes:
    """Behaviour (mean ``metric``) against perplexity along each method's strength grid: AxBench-style
    steering against fluency, all methods on one pair of axes. ``df`` from `steerlab.sae.compare_methods`;
    the largest positive strength of each method is marked with a filled circle, the most negative with an x."""
    _check(df, ["coeff", "metric", "value", hue], "plot_steering_tradeoff")
    ax = _axes(ax)
    for key, g in df.groupby(hue):  # sorted, as seaborn orders hues, so colours match plot_metric_vs_coeff
        w = g.pivot_table(index="coeff", columns="metric", values="value").sort_index()
        if metric not in w or "perplexity" not in w:
            raise SteerlabError(f"plot_steering_tradeoff needs metrics {metric!r} and 'perplexity'; got {list(w)}")
        (line,) = ax.plot(w["perplexity"], w[metric], "-", marker=".", label=str(key))
        ax.plot(w["perplexity"].iloc[-1], w[metric].iloc[-1], "o", color=line.get_color())
        ax.plot(w["perplexity"].iloc[0], w[metric].iloc[0], "x", color=line.get_color())
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("perplexity of held-out text (edit at every position, log scale)")
    ax.set_ylabel(f"mean {metric}")
    ax.legend(fontsize=7)
    return ax
