"""Figures from tidy steering results: ``plot_*(df, ax=None) -> Axes`` and `save_figure`.

Every ``plot_*`` function draws on ``ax`` (or a new figure's axes), labels its axes and returns the
Axes; nothing is shown. Inputs are the tidy frames of `steerlab.sweeps` and `steerlab.stats`
(columns ``layer, site, coeff, method, seed, metric, value``). Choose a backend in your own script
or notebook; this module does not.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from steerlab.errors import SteerlabError
from steerlab.stats import anti_steerable_fraction

logger = logging.getLogger(__name__)

__all__ = [
    "plot_delta_bars",
    "plot_layer_heatmap",
    "plot_metric_vs_coeff",
    "plot_metric_vs_layer",
    "plot_steerability",
    "save_figure",
]

FIGURES_ENV = "STEERLAB_FIGURES"
"""Environment variable naming the default folder of `save_figure`."""


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    return ax


def _check(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise SteerlabError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise SteerlabError(f"{what} got an empty DataFrame: nothing to plot; check the filters applied before it")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SteerlabError(f"{what} needs columns {missing}, which are missing; the frame has {list(df.columns)}")


def _one_metric(df: pd.DataFrame, metric: str | None, what: str) -> tuple[pd.DataFrame, str]:
    """Restrict ``df`` to one metric; return it and the axis label."""
    if "metric" not in df.columns:
        return df, metric or "value"
    present = sorted(df["metric"].dropna().unique().tolist())
    if metric is None:
        if len(present) > 1:
            raise SteerlabError(f"{what}: the frame has {len(present)} metrics {present}; pick one with metric=...")
        return df, present[0] if present else "value"
    if metric not in present:
        raise SteerlabError(f"{what}: metric {metric!r} is not in the frame; it has {present}")
    return df[df["metric"] == metric], metric


def _single_valued(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    for col in columns:
        if col in df.columns and df[col].nunique(dropna=True) > 1:
            vals = sorted(df[col].dropna().unique().tolist(), key=str)
            raise SteerlabError(
                f"{what} would average over {len(vals)} values of {col!r} {vals[:8]}; "
                f"filter first, e.g. df[df[{col!r}] == {vals[0]!r}]"
            )


def _seed_means(df: pd.DataFrame, keys: Sequence[str], value: str) -> pd.DataFrame:
    """One value per (keys, seed), so bands reflect spread across seeds, not across examples."""
    keys = [k for k in dict.fromkeys([*keys, "seed"]) if k in df.columns]
    return df.groupby(keys, dropna=False)[value].mean().reset_index()


def plot_layer_heatmap(
    df: pd.DataFrame, metric: str | None = None, ax: Axes | None = None, value: str = "value"
) -> Axes:
    """Layer x strength heatmap of the mean metric, as in the layer sweeps of CAA (Rimsky et al. 2024).

    Needs columns ``layer``, ``coeff`` and ``value``; averages over seeds and examples. With several
    metrics, pick one with ``metric``; several methods or sites raise (filter first).

    Args:
        df: Tidy sweep frame.
        metric: The metric to show (needed when ``df`` has several).
        ax: Axes to draw on; a new figure if None.
        value: Column holding the numbers.

    Returns:
        The Axes.

    Example:
        >>> df = pd.DataFrame({"layer": [0, 0, 1, 1], "coeff": [-1, 1] * 2, "value": [0.1, 0.4, 0.2, 0.9]})
        >>> plot_layer_heatmap(df).get_xlabel()
        'steering strength (coeff)'
    """
    _check(df, ["layer", "coeff", value], "plot_layer_heatmap")
    df, label = _one_metric(df, metric, "plot_layer_heatmap")
    _single_valued(df, ["method", "site"], "plot_layer_heatmap")
    grid = df.pivot_table(index="layer", columns="coeff", values=value, aggfunc="mean").sort_index(ascending=False)
    ax = _axes(ax)
    sns.heatmap(grid, ax=ax, cmap="viridis", cbar_kws={"label": f"mean {label}"})
    ax.set_xlabel("steering strength (coeff)")
    ax.set_ylabel("layer")
    ax.set_title(label)
    return ax


def plot_metric_vs_coeff(
    df: pd.DataFrame, hue: str | None = "method", ax: Axes | None = None, metric: str | None = None
) -> Axes:
    """Metric against steering strength with 95% bootstrap CI bands across seeds (Rimsky et al. 2024).

    Rows are first averaged to one value per (hue, coeff, seed), so the band shows seed-to-seed spread.
    Several methods, sites or layers not shown by ``hue`` raise (filter first).

    Args:
        df: Tidy frame with ``coeff`` and ``value`` (and ``seed``, ``hue``).
        hue: Column giving one line per value (None for one line).
        ax: Axes to draw on; a new figure if None.
        metric: The metric to show (needed when ``df`` has several).

    Returns:
        The Axes.

    Example:
        >>> df = pd.DataFrame({"method": "caa", "seed": [0, 1] * 2, "coeff": [0, 0, 1, 1],
        ...                    "value": [0.1, 0.2, 0.5, 0.6]})
        >>> plot_metric_vs_coeff(df).get_xlabel()
        'steering strength (coeff)'
    """
    return _line(df, "coeff", "steering strength (coeff)", hue, ax, metric, "plot_metric_vs_coeff")


def plot_metric_vs_layer(
    df: pd.DataFrame, hue: str | None = "coeff", ax: Axes | None = None, metric: str | None = None
) -> Axes:
    """Metric against layer, one line per strength, with 95% CI bands (Rimsky et al. 2024).

    As `plot_metric_vs_coeff`, with ``layer`` on the x axis.

    Args:
        df: Tidy frame with ``layer`` and ``value`` (and ``seed``, ``hue``).
        hue: Column giving one line per value (None for one line).
        ax: Axes to draw on; a new figure if None.
        metric: The metric to show (needed when ``df`` has several).

    Returns:
        The Axes.

    Example:
        >>> df = pd.DataFrame({"coeff": 1.0, "seed": [0, 1] * 2, "layer": [0, 0, 1, 1],
        ...                    "value": [0.1, 0.2, 0.5, 0.6]})
        >>> plot_metric_vs_layer(df).get_xlabel()
        'layer'
    """
    return _line(df, "layer", "layer", hue, ax, metric, "plot_metric_vs_layer")


def _line(df, x: str, xlabel: str, hue, ax, metric, what: str) -> Axes:
    _check(df, [x, "value"] + ([hue] if hue else []), what)
    df, label = _one_metric(df, metric, what)
    _single_valued(df, [c for c in ("method", "site", "layer", "coeff") if c not in (x, hue)], what)
    data = _seed_means(df, [x] + ([hue] if hue else []), "value")
    ax = _axes(ax)
    palette = "viridis" if hue and pd.api.types.is_numeric_dtype(data[hue]) else None
    sns.lineplot(data=data, x=x, y="value", hue=hue, errorbar=("ci", 95), marker="o", ax=ax, palette=palette, seed=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label)
    return ax


def plot_steerability(slopes_df: pd.DataFrame | pd.Series, ax: Axes | None = None) -> Axes:
    """Distribution of per-example steerability slopes (Tan et al. 2024), anti-steerable fraction in the title.

    Args:
        slopes_df: The output of `steerlab.stats.steerability` (column ``slope``) or a Series of slopes.
        ax: Axes to draw on; a new figure if None.

    Returns:
        The Axes.

    Example:
        >>> plot_steerability(pd.DataFrame({"slope": [0.5, 1.0, -0.2, 0.8]})).get_xlabel()
        'steerability (slope of metric vs coeff)'
    """
    if isinstance(slopes_df, pd.Series):
        slopes_df = slopes_df.rename("slope").to_frame()
    _check(slopes_df, ["slope"], "plot_steerability")
    slopes = slopes_df["slope"].to_numpy(dtype=float)
    frac = anti_steerable_fraction(slopes)
    ax = _axes(ax)
    sns.histplot(x=slopes, kde=len(slopes) > 2 and float(np.std(slopes)) > 0, ax=ax)
    ax.axvline(0.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("steerability (slope of metric vs coeff)")
    ax.set_ylabel("examples")
    ax.set_title(f"anti-steerable: {frac:.0%} of {len(slopes)} examples")
    return ax


def plot_delta_bars(table: pd.DataFrame, ax: Axes | None = None, x: str | None = None, hue: str | None = None) -> Axes:
    """Bar chart of the steering effect with CI error bars, one bar per (x, hue) (Figure 1-style).

    Takes the output of `steerlab.stats.delta_table` (columns ``delta``, ``ci_low``, ``ci_high``);
    there must be one row per bar, so filter out extra layers or strengths first.

    Args:
        table: Effect table.
        ax: Axes to draw on; a new figure if None.
        x: Column along the x axis (default ``task`` if present, else ``method``, ``layer``, ``coeff``).
        hue: Column for bars side by side (default ``method`` if present and not ``x``; None for one bar).

    Returns:
        The Axes.

    Example:
        >>> t = pd.DataFrame({"task": ["a", "b"], "method": "caa", "delta": [0.2, 0.1],
        ...                   "ci_low": [0.1, -0.05], "ci_high": [0.3, 0.25]})
        >>> plot_delta_bars(t).get_ylabel()
        'Δ vs unsteered (95% CI)'
    """
    _check(table, ["delta", "ci_low", "ci_high"], "plot_delta_bars")
    if x is None:
        x = next((c for c in ("task", "method", "layer", "coeff") if c in table.columns), None)
        if x is None:
            raise SteerlabError("plot_delta_bars: pass x=<column> naming the bars (no task/method/layer/coeff column)")
    if hue is None and "method" in table.columns and x != "method":
        hue = "method"
    _check(table, [x] + ([hue] if hue else []), "plot_delta_bars")
    keys = [x] + ([hue] if hue else [])
    dup = table.duplicated(keys)
    if dup.any():
        raise SteerlabError(
            f"plot_delta_bars needs one row per {keys}, but {int(dup.sum())} rows repeat; filter the other "
            "columns (e.g. one layer and coeff) or pass x=/hue= covering them"
        )
    xs = list(dict.fromkeys(table[x].tolist()))
    hues = list(dict.fromkeys(table[hue].tolist())) if hue else [None]
    width = 0.8 / len(hues)
    ax = _axes(ax)
    colors = sns.color_palette(n_colors=len(hues))
    for j, h in enumerate(hues):
        sub = table if h is None else table[table[hue] == h]
        pos = {v: i for i, v in enumerate(xs)}
        idx = np.array([pos[v] for v in sub[x]], dtype=float) + (j - (len(hues) - 1) / 2) * width
        d = sub["delta"].to_numpy(dtype=float)
        err = np.vstack([d - sub["ci_low"].to_numpy(dtype=float), sub["ci_high"].to_numpy(dtype=float) - d])
        ax.bar(
            idx,
            d,
            width=width,
            yerr=np.nan_to_num(err),
            capsize=3,
            color=colors[j],
            label=None if h is None else str(h),
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_xlabel(x)
    ax.set_ylabel("Δ vs unsteered (95% CI)")
    if hue:
        ax.legend(title=hue)
    return ax


def save_figure(fig: Figure, name: str, folder: str | os.PathLike | None = None) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` (150 dpi) and ``<folder>/<name>.pdf``.

    Args:
        fig: The figure (e.g. ``ax.figure``).
        name: File stem, without extension or folders, e.g. ``"fig1_caa_layers"``.
        folder: Target folder; default ``$STEERLAB_FIGURES`` if set, else ``figures/`` under the
            current directory. Created if missing.

    Returns:
        The two paths written, png first.

    Example:
        >>> ax = plot_steerability(pd.DataFrame({"slope": [0.5, -0.1]}))
        >>> paths = save_figure(ax.figure, "steerability", folder=tempfile.mkdtemp())  # doctest: +SKIP
        >>> [p.suffix for p in paths]  # doctest: +SKIP
        ['.png', '.pdf']
    """
    if not isinstance(fig, Figure):
        raise SteerlabError(f"save_figure needs a matplotlib Figure, got {type(fig).__name__}; pass ax.figure")
    if not name or Path(name).name != name or name in (".", ".."):
        raise SteerlabError(
            f"figure name {name!r} must be a plain file stem like 'fig1_layers'; pass folder= for the folder"
        )
    if Path(name).suffix.lower() in (".png", ".pdf"):
        raise SteerlabError(
            f"figure name {name!r} has an extension; give the stem only, both .png and .pdf are written"
        )
    if folder is None:
        folder = os.environ.get(FIGURES_ENV) or Path.cwd() / "figures"
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    logger.info("saved figure %s (png, pdf)", out / name)
    return paths


# --------------------------------------------------------------------------- PAS


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


# --------------------------------------------------------------------------- SAAS


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


# --------------------------------------------------------------------------- CAE robustness


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


# --------------------------------------------------------------------------- SAE latents


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
