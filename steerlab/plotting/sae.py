"""Figures of SAE-latent steering (AxBench, Wu et al. 2025): a vector's top latents.

The methods' test effects beside the random band and their cost against strength are drawn with the shared
`steerlab.plotting.plot_cell_effects` and `steerlab.plotting.plot_dose_response`.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from steerlab.plotting.general import _axes, _check

__all__ = ["plot_latent_scores"]


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
