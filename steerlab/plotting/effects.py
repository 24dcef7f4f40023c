"""Effects read against their controls: dose-response (or layer) curves with intervals and the random band.

Takes the tidy frames of `steerlab.effects.cell_effects` (one row per steered cell: ``effect``, ``lo``,
``hi``, ``null_lo``, ``null_hi``, ``fraction``/``coeff``, ``layer``) and of `steerlab.effects.label_effects`
or `steerlab.positive_controls.label_curves` (the same with a ``label`` column). The unsteered model is the
line at 0; each effect carries its paired 95% interval; the band of the norm-matched random directions
(`steerlab.controls.null_band`) is shaded where it was measured, so an effect inside it is visibly noise
(Tan et al. 2024 and Im & Li 2025 compare with random vectors in this spirit).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from steerlab.errors import SteerlabError
from steerlab.plotting.general import _axes, _check, _single_valued

__all__ = ["plot_effect_curve", "plot_label_curves"]

_X_LABELS = {"fraction": "strength (fraction of the typical token norm)", "coeff": "strength (coefficient)",
             "layer": "layer"}  # fmt: skip


def _x_column(effects: pd.DataFrame, x: str | None) -> str:
    if x is not None:
        return x
    return "fraction" if "fraction" in effects and effects["fraction"].notna().all() else "coeff"


def plot_effect_curve(
    effects: pd.DataFrame,
    x: str | None = None,
    ax: Axes | None = None,
    label: str | None = "vector",
    color: str | None = None,
    band: bool = True,
    ylabel: str = "effect vs unsteered (95% CI)",
) -> Axes:
    """A steering effect against strength (or layer) with its 95% intervals and the random band behind it.

    Args:
        effects: rows of `steerlab.effects.cell_effects` for one vector at one site (or, with ``x="layer"``,
            one strength): columns ``effect``, ``lo``, ``hi`` and ``x``; ``null_lo``/``null_hi`` for the band.
        x: the x column (default ``fraction`` when the frame has fractions, else ``coeff``).
        ax: Axes to draw on; a new figure if None.
        label: legend label of the vector's curve.
        color: its colour.
        band: shade the random band where it was measured (finite ``null_lo``/``null_hi``).
        ylabel: the y axis label.

    Returns:
        The Axes.

    Example:
        >>> e = pd.DataFrame({"fraction": [-0.2, 0.2], "effect": [-0.5, 0.4], "lo": [-0.7, 0.2], "hi": [-0.3, 0.6],
        ...                   "null_lo": [-0.1, -0.1], "null_hi": [0.1, 0.1]})
        >>> plot_effect_curve(e).get_xlabel()
        'strength (fraction of the typical token norm)'
    """
    x = _x_column(effects, x)
    _check(effects, [x, "effect", "lo", "hi"], "plot_effect_curve")
    # one curve: everything but x fixed (the coefficient follows the strength and the layer's norm)
    _single_valued(effects, [c for c in ("method", "seed", "site", "layer", "fraction", "label", "split") if c != x],
                   "plot_effect_curve")
    d = effects.sort_values(x)
    ax = _axes(ax)
    xs = d[x].to_numpy(dtype=float)
    if band and {"null_lo", "null_hi"} <= set(d.columns):
        b = d[np.isfinite(d["null_lo"].to_numpy(dtype=float))]
        if not b.empty:
            ax.fill_between(b[x].to_numpy(dtype=float), b["null_lo"].to_numpy(dtype=float),
                            b["null_hi"].to_numpy(dtype=float), color="grey", alpha=0.25, linewidth=0,
                            label="random directions (95% band)")  # fmt: skip
    y = d["effect"].to_numpy(dtype=float)
    err = np.vstack([y - d["lo"].to_numpy(dtype=float), d["hi"].to_numpy(dtype=float) - y])
    ax.errorbar(xs, y, yerr=np.nan_to_num(err), fmt="o-", capsize=3, markersize=4, color=color, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8, linestyle=":", label="unsteered")
    ax.set_xlabel(_X_LABELS.get(x, x))
    ax.set_ylabel(ylabel)
    return ax


def plot_label_curves(
    curves: pd.DataFrame, axes: Sequence[Axes] | None = None, x: str | None = None, ylabel: str | None = None
) -> list[Axes]:
    """One panel per answer label: the effect on that label's items with its interval and, where the frame
    has one (`steerlab.positive_controls.label_curves`), that label's own random band.

    An answer-token push shows as panels moving in opposite directions; steering moves every panel the same
    way, beyond its band.

    Args:
        curves: per-label effects with a ``label`` column (one vector, one site).
        axes: one Axes per label (default: a new row of panels sharing the y axis).
        x: the x column (default ``fraction`` or ``coeff``).
        ylabel: the y label of the first panel.

    Returns:
        The Axes, in label order.
    """
    import matplotlib.pyplot as plt

    _check(curves, ["label", "effect", "lo", "hi"], "plot_label_curves")
    labels = sorted(curves["label"].astype(str).unique())
    if axes is None:
        _, made = plt.subplots(1, len(labels), figsize=(3.6 * len(labels), 3.2), sharey=True, squeeze=False)
        axes = list(made[0])
    if len(axes) != len(labels):
        raise SteerlabError(f"plot_label_curves needs one Axes per label {labels}, got {len(axes)}")
    for ax, lab in zip(axes, labels, strict=True):
        part = curves[curves["label"].astype(str) == lab]
        n = int(part["n"].max()) if "n" in part else None
        plot_effect_curve(part.drop(columns="label"), x=x, ax=ax, label=f"label {lab}",
                          ylabel=ylabel if ax is axes[0] and ylabel else "")  # fmt: skip
        ax.set_title(f"items whose matching answer is {lab!r}" + (f" (n = {n})" if n else ""), fontsize=9)
    return list(axes)
