"""Figures of Painless Activation Steering (PAS; Cui & Chen 2025): site comparison and sample-size curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from steerlab.plotting.general import _axes, _check

__all__ = ["plot_pas_sample_size", "plot_pas_sites"]


def plot_pas_sites(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """PAS site comparison (Cui & Chen 2025): mean Δ test accuracy with 95% CI per write site and read
    switch, one marker series per method.

    Takes `steerlab.pipelines.pas.summarize(results, by=("kind", "read", "method"))`.
    """
    _check(table, ["kind", "read", "method", "delta", "ci_low", "ci_high"], "plot_pas_sites")
    ax = _axes(ax)
    configs = list(dict.fromkeys(table.kind + " / read " + table.read))
    methods = list(dict.fromkeys(table.method))
    for j, m in enumerate(methods):
        sub = table[table.method == m]
        x = np.array([configs.index(c) for c in sub.kind + " / read " + sub.read]) + 0.15 * (j - (len(methods) - 1) / 2)
        d = sub.delta.to_numpy(float)
        err = np.nan_to_num(np.vstack([d - sub.ci_low.to_numpy(float), sub.ci_high.to_numpy(float) - d]))
        ax.errorbar(x, d, yerr=err, fmt="o", capsize=3, label=m)
    ax.set_xticks(range(len(configs)), configs, rotation=30, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("Δ test accuracy (95% CI)")
    ax.legend(title="method")
    return ax


def plot_pas_sample_size(results: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """PAS Figures 6-8 (Cui & Chen 2025): Δ test accuracy against training size (log2 axis), one line per
    method with a 95% CI band over seeds. Takes per-seed PAS results with a ``train_size`` column."""
    _check(results, ["train_size", "delta", "method"], "plot_pas_sample_size")
    ax = _axes(ax)
    data = results.dropna(subset=["delta"])
    sns.lineplot(data=data, x="train_size", y="delta", hue="method", marker="o", errorbar=("ci", 95), ax=ax, seed=0)
    sizes = sorted(data.train_size.unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(int(s)) for s in sizes])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("training items")
    ax.set_ylabel("Δ test accuracy (steered - unsteered)")
    return ax
