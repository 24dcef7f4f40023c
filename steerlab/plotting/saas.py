"""Figures of SAAS (instance-semantic attribution for activation steering, anonymous ACL submission) under the
protocol: each method's test effect beside its random band (Table 1), per answer label, dose-response curves
with the band (Figure 4), and effects against layer or temperature (Figures 5-6).

Inputs are `steerlab.effects.cell_effects` / `label_effects` frames (``effect``, ``lo``, ``hi`` and, where
random directions ran, ``null_lo`` / ``null_hi``), e.g. `steerlab.pipelines.saas_compare.Comparison.effects`.
Effects are steered minus unsteered, so the line at 0 is the unsteered model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from steerlab.plotting.general import _axes, _check

__all__ = ["plot_saas_effect", "plot_saas_labels", "plot_saas_methods"]

BAND = "0.85"  # colour of the random band


def _zero(ax: Axes, ylabel: str) -> None:
    ax.axhline(0, color="black", linewidth=0.8, label="unsteered")
    ax.set_ylabel(ylabel, fontsize=9)


def plot_saas_methods(effects: pd.DataFrame, ax: Axes | None = None, *, label: str = "", order=None) -> Axes:
    """SAAS Table 1 under the protocol: each method's test effect with its 95% interval (points) beside the
    band of random directions at the same site and strength (grey bars).

    ``effects`` has one row per method: ``method``, ``effect``, ``lo``, ``hi`` (and ``null_lo``,
    ``null_hi``). ``order`` fixes the methods' order; ``label`` goes into the title.
    """
    _check(effects, ["method", "effect", "lo", "hi"], "plot_saas_methods")
    ax = _axes(ax)
    d = effects.set_index("method").loc[list(order) if order is not None else list(dict.fromkeys(effects.method))]
    x = np.arange(len(d))
    if {"null_lo", "null_hi"} <= set(d.columns):
        ok = d.null_lo.notna().to_numpy()
        ax.bar(x[ok], (d.null_hi - d.null_lo)[ok], 0.6, bottom=d.null_lo[ok], color=BAND, label="random band")
    ax.errorbar(x, d.effect, yerr=[d.effect - d.lo, d.hi - d.effect], fmt="o", capsize=3, color="C0",
                label="effect, 95% CI")  # fmt: skip
    _zero(ax, "effect on test (steered - unsteered)")
    ax.set_xticks(x, list(d.index), rotation=35, ha="right")
    if label:
        ax.set_title(label, fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_saas_labels(labels: pd.DataFrame, ax: Axes | None = None, *, label: str = "", order=None) -> Axes:
    """Each method's test effect per answer label (items whose behaviour-matching answer is that label),
    with 95% intervals: labels moving in opposite directions are an answer-token push, not steering.

    ``labels`` has ``method``, ``label``, ``effect``, ``lo``, ``hi`` (one row per method and label).
    """
    _check(labels, ["method", "label", "effect", "lo", "hi"], "plot_saas_labels")
    ax = _axes(ax)
    methods = list(order) if order is not None else list(dict.fromkeys(labels.method))
    names = sorted(labels.label.astype(str).unique())
    width = 0.7 / max(len(names), 1)
    for k, name in enumerate(names):
        d = labels[labels.label.astype(str) == name].set_index("method").reindex(methods)
        x = np.arange(len(methods)) + (k - (len(names) - 1) / 2) * width
        ax.errorbar(x, d.effect, yerr=[d.effect - d.lo, d.hi - d.effect], fmt="o", capsize=2, label=f"answer {name}")
    _zero(ax, "effect on test, per label")
    ax.set_xticks(np.arange(len(methods)), methods, rotation=35, ha="right")
    if label:
        ax.set_title(label, fontsize=9)
    ax.legend(fontsize=7)
    return ax


def plot_saas_effect(df: pd.DataFrame, x: str, ax: Axes | None = None, *, hue: str = "method") -> Axes:
    """Effect against ``x`` (``layer``, ``tau``, ...) per ``hue``, with 95% intervals as error bars.

    ``df`` has ``x``, ``hue``, ``effect``, ``lo``, ``hi`` (one row per point), e.g. validation cells of
    `steerlab.pipelines.saas_compare.Comparison.val_effects`. A non-numeric or infinite ``x`` (a temperature
    of ``inf``: uniform weights) is drawn as evenly spaced categories in sorted order.
    """
    _check(df, [x, hue, "effect", "lo", "hi"], "plot_saas_effect")
    ax = _axes(ax)
    values = pd.to_numeric(df[x], errors="coerce")
    numeric = bool(values.notna().all() and np.isfinite(values).all())
    ticks = sorted(df[x].unique(), key=lambda v: (float(v) if pd.notna(pd.to_numeric(v, errors="coerce")) else 1e300,
                                                   str(v)))  # fmt: skip
    where = dict(zip(ticks, ticks if numeric else range(len(ticks)), strict=True))
    span = float(np.ptp([float(where[t]) for t in ticks])) or 1.0
    for k, (name, d) in enumerate(df.groupby(hue, sort=False)):
        pos = np.array([float(where[v]) for v in d[x]]) + (k - (df[hue].nunique() - 1) / 2) * 0.03 * span
        order = np.argsort(pos)
        d = d.iloc[order]
        ax.errorbar(pos[order], d.effect, yerr=[d.effect - d.lo, d.hi - d.effect], marker="o", capsize=2,
                    label=str(name))  # fmt: skip
    if not numeric:
        ax.set_xticks(range(len(ticks)), [f"{t:g}" if isinstance(t, float) else str(t) for t in ticks])
    _zero(ax, "effect (steered - unsteered)")
    ax.set_xlabel(x)
    ax.legend(fontsize=7)
    return ax
