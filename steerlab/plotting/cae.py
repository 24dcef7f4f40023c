"""Figures of the robustness study of contrastive activation steering (CAE, Hao et al. 2025): ID vs OOD
effects, sample-size curves, adversarial success and perplexity cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from steerlab.errors import SteerlabError
from steerlab.plotting.general import _axes, _check, _one_metric

__all__ = ["plot_attack_success", "plot_cost_curve", "plot_cost_tradeoff", "plot_id_ood", "plot_sample_size"]


def plot_id_ood(effects: pd.DataFrame, ax: Axes | None = None, group: str = "behaviour", value: str = "effect") -> Axes:
    """Steering effect with 95% CI per prompt form (``id`` first), grouped by ``group`` (CAE finding 1).

    ``effects`` is `steerlab.robustness.id_ood_effects` output with a ``group`` column added; ``value``
    is ``"effect"`` (columns effect, lo, hi) or ``"dz"`` (the standardised effect: dz, dz_lo, dz_hi).
    """
    _check(effects, ["form", value, f"{value}_lo" if value != "effect" else "lo", group], "plot_id_ood")
    lo_col, hi_col = ("lo", "hi") if value == "effect" else (f"{value}_lo", f"{value}_hi")
    effects = effects.rename(columns={value: "_v", lo_col: "_lo", hi_col: "_hi"})
    ax = _axes(ax)
    forms = list(dict.fromkeys(["id", *effects.form]))
    forms = [f for f in forms if f in set(effects.form)]
    groups = list(dict.fromkeys(effects[group]))
    width = 0.8 / len(forms)
    for i, form in enumerate(forms):
        d = effects[effects.form == form].set_index(group).reindex(groups)
        x = np.arange(len(groups)) + (i - (len(forms) - 1) / 2) * width
        err = np.vstack([d._v - d._lo, d._hi - d._v])
        ax.bar(x, d._v, width, yerr=err, capsize=2, label=form)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    ax.set_ylabel("effect: score(+s) - score(-s)" if value == "effect" else "standardised effect (mean/sd)")
    ax.legend(title="form", fontsize=8)
    return ax


def plot_sample_size(
    df: pd.DataFrame, fit: dict | None = None, ax: Axes | None = None, metric: str | None = None
) -> Axes:
    """Metric against the number of pairs (mean and 10-90% range over draws, log x), with a saturating fit and its
    knee (CAE finding 2). ``df`` is `steerlab.robustness.sample_size_study` output; ``fit`` from `fit_saturation`."""
    _check(df, ["n_pairs", "value"], "plot_sample_size")
    df, label = _one_metric(df, metric, "plot_sample_size")
    ax = _axes(ax)
    g = df.groupby("n_pairs").value
    stats = pd.DataFrame({"mean": g.mean(), "lo": g.quantile(0.1), "hi": g.quantile(0.9)})
    ax.fill_between(stats.index, stats.lo, stats.hi, alpha=0.25, label="10-90% of draws")
    ax.plot(stats.index, stats["mean"], "o", markersize=4, label="mean over draws")
    if fit is not None:
        from steerlab.robustness.sample_size import saturation_curve

        n = np.geomspace(max(1.0, float(stats.index.min())), float(stats.index.max()), 200)
        ax.plot(n, saturation_curve(fit, n), "-", color="black", linewidth=1, label=f"fit ({fit['model']})")
        ax.axvline(float(fit["knee"]), color="grey", linestyle="--", linewidth=1,
                   label=f"knee ({fit['level']:.0%}): {float(fit['knee']):.0f}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("number of contrast pairs")
    ax.set_ylabel(label)
    ax.legend(fontsize=8)
    return ax


def plot_attack_success(curve: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Fraction of prompts whose steered behaviour is reversed by each search step, one line per method
    (CAE finding 3; ``curve`` from `steerlab.robustness.success_by_step`)."""
    _check(curve, ["method", "step", "success_rate"], "plot_attack_success")
    ax = _axes(ax)
    for method, d in curve.groupby("method"):
        ax.step(d.step, d.success_rate, where="post", label=method)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("search step")
    ax.set_ylabel("success rate (behaviour reversed)")
    ax.legend(fontsize=8)
    return ax


def plot_cost_curve(df: pd.DataFrame, ax: Axes | None = None, metric: str = "perplexity", hue: str = "layer") -> Axes:
    """A `steerlab.robustness.perplexity_cost` metric against strength, one line per ``hue`` (CAE finding 4)."""
    _check(df, ["coeff", "metric", "value", hue], "plot_cost_curve")
    d = df[df.metric == metric]
    if d.empty:
        raise SteerlabError(
            f"plot_cost_curve: no rows with metric {metric!r}; metrics present: {sorted(set(df.metric))}"
        )
    ax = _axes(ax)
    for key, g in d.groupby(hue):
        g = g.groupby("coeff").value.mean()
        ax.plot(g.index, g.values, "o-", markersize=3, label=f"{hue} {key}")
    ax.set_xlabel("strength (fraction of residual norm)")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    return ax


def plot_cost_tradeoff(
    df: pd.DataFrame, ax: Axes | None = None, effect: str = "p_behaviour", cost: str = "perplexity",
    hue: str = "layer",
) -> Axes:  # fmt: skip
    """Cost against behaviour along the strength grid (each ``hue`` a path through its strengths): the
    trade-off curve of CAE findings 4-5. ``df`` from `steerlab.robustness.perplexity_cost`."""
    _check(df, ["coeff", "metric", "value", hue], "plot_cost_tradeoff")
    ax = _axes(ax)
    for key, g in df.groupby(hue):
        w = g.pivot_table(index="coeff", columns="metric", values="value").sort_index()
        if effect not in w or cost not in w:
            raise SteerlabError(f"plot_cost_tradeoff needs metrics {effect!r} and {cost!r}; got {list(w.columns)}")
        ax.plot(w[effect], w[cost], "o-", markersize=3, label=f"{hue} {key}")
    ax.set_xlabel(effect)
    ax.set_ylabel(cost)
    ax.legend(fontsize=7)
    return ax
