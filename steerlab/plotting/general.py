"""General plots of tidy steering results: layer heatmaps, metric curves, steerability and effect bars.

Every ``plot_*`` function draws on ``ax`` (or a new figure's axes), labels its axes and returns the
Axes; nothing is shown. The private helpers here (`_axes`, `_check`, `_one_metric`) are shared by the
paper-specific modules of this package.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from steerlab.errors import SteerlabError
from steerlab.stats import anti_steerable_fraction

__all__ = [
    "plot_delta_bars",
    "plot_layer_heatmap",
    "plot_metric_vs_coeff",
    "plot_metric_vs_layer",
    "plot_steerability",
]


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
