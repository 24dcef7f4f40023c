"""Figures of the robustness study of contrastive activation steering (CAE, Hao et al. 2025): effects beside
their random bands (ID and OOD, per label, per adversarial condition), dose-response curves, sample-size curves,
adversarial success and the perplexity trade-off.

The effect frames are `steerlab.effects.cell_effects` / `label_effects` output (columns ``effect, lo, hi`` and,
where random directions ran, ``null_lo, null_hi``). Every plot draws the unsteered reference: an effect of 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from steerlab.errors import SteerlabError
from steerlab.plotting.general import _axes, _check

__all__ = ["plot_attack_success", "plot_cell_effects", "plot_cost_tradeoff", "plot_dose_response",
           "plot_sample_size"]  # fmt: skip

BAND = {"color": "0.6", "alpha": 0.35}
UNSTEERED = {"color": "black", "linewidth": 0.8}


def _band(d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    if "null_lo" not in d or "null_hi" not in d:
        return None
    lo, hi = d["null_lo"].to_numpy(dtype=float), d["null_hi"].to_numpy(dtype=float)
    return (lo, hi) if np.isfinite(lo).any() else None


def plot_cell_effects(
    effects: pd.DataFrame, x: str = "behaviour", *, hue: str | None = None, ax: Axes | None = None,
    ylabel: str = "effect (steered - unsteered)",
) -> Axes:  # fmt: skip
    """One effect per ``x`` category (dodged by ``hue``) with its 95% interval and, as a grey box behind it, the band
    of random directions of the same norm at the same cell; the line at 0 is the unsteered model.

    ``effects``: columns ``x``, ``effect``, ``lo``, ``hi`` (and ``hue``, ``null_lo``, ``null_hi`` when present),
    e.g. `cell_effects` rows with a behaviour column, or `label_effects` rows with ``hue="label"``.
    """
    _check(effects, [x, "effect", "lo", "hi", *([hue] if hue else [])], "plot_cell_effects")
    ax = _axes(ax)
    cats = list(dict.fromkeys(effects[x]))
    hues = list(dict.fromkeys(effects[hue])) if hue else [None]
    width = 0.8 / len(hues)
    banded = False
    for i, h in enumerate(hues):
        d = effects if h is None else effects[effects[hue] == h]
        d = d.set_index(x).reindex(cats)
        pos = np.arange(len(cats)) + (i - (len(hues) - 1) / 2) * width
        band = _band(d)
        if band is not None:
            for p, lo, hi in zip(pos, *band, strict=True):
                if math.isfinite(lo):
                    ax.add_patch(_box(p - width * 0.45, lo, width * 0.9, hi - lo))
                    banded = True
        err = np.vstack([d.effect - d.lo, d.hi - d.effect])
        ax.errorbar(pos, d.effect, yerr=err, fmt="o", capsize=3, markersize=4, label=None if h is None else str(h))
    ax.axhline(0, **UNSTEERED, label="unsteered")
    if banded:
        ax.add_patch(_box(0, 0, 0, 0, label="random directions (95% band)"))
    ax.set_xticks(range(len(cats)), [str(c) for c in cats], rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, title=hue)
    return ax


def _box(x: float, y: float, w: float, h: float, label: str | None = None):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, linewidth=0, label=label, **BAND)


def plot_dose_response(
    effects: pd.DataFrame, *, x: str = "fraction", hue: str = "layer", ax: Axes | None = None,
    ylabel: str = "effect (steered - unsteered)",
) -> Axes:  # fmt: skip
    """Effect against strength, one line per ``hue``, with 95% intervals; where random directions ran, their band
    at that strength as a grey bar (one per ``hue`` value, slightly offset); 0 is the unsteered model."""
    _check(effects, [x, hue, "effect", "lo", "hi"], "plot_dose_response")
    ax = _axes(ax)
    keys = list(dict.fromkeys(effects[hue]))
    span = float(np.ptp(effects[x].to_numpy(dtype=float))) or 1.0
    banded = False
    for i, key in enumerate(keys):
        d = effects[effects[hue] == key].sort_values(x)
        shift = (i - (len(keys) - 1) / 2) * 0.012 * span
        band = _band(d)
        if band is not None:
            ok = np.isfinite(band[0])
            ax.vlines(d[x].to_numpy()[ok] + shift, band[0][ok], band[1][ok], linewidth=6, **BAND)
            banded = banded or bool(ok.any())
        err = np.vstack([d.effect - d.lo, d.hi - d.effect])
        ax.errorbar(d[x] + shift, d.effect, yerr=err, fmt="o-", capsize=2, markersize=3, label=f"{hue} {key}")
    ax.axhline(0, **UNSTEERED, label="unsteered")
    if banded:
        ax.vlines([], [], [], linewidth=6, label="random directions (95% band)", **BAND)
    ax.set_xlabel("strength (fraction of the typical token norm)" if x == "fraction" else x)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    return ax


def plot_sample_size(
    df: pd.DataFrame, fit: dict | None = None, *, y: str = "value", band: tuple[float, float] | None = None,
    reference: float | None = 0.0, ax: Axes | None = None, ylabel: str | None = None,
) -> Axes:  # fmt: skip
    """``y`` against the number of pairs (every draw as a dot, the mean per size as a line, log x), with a saturating
    fit and its knee (CAE finding 2).

    ``df``: `sample_size_study` rows of one metric, or `sample_size_effects` (``y="effect"``); ``fit`` from
    `fit_saturation`; ``band``: the random directions' band (e.g. at the whole pool's cell), drawn across the plot;
    ``reference``: a horizontal line (0: the unsteered model, for effects; None: none).
    """
    _check(df, ["n_pairs", y], "plot_sample_size")
    if "metric" in df and df["metric"].nunique() > 1:
        raise SteerlabError(f"plot_sample_size: the frame has metrics {sorted(set(df.metric))}; pass one")
    ax = _axes(ax)
    if band is not None and all(math.isfinite(b) for b in band):
        ax.axhspan(band[0], band[1], label="random directions (95% band)", **BAND)
    if reference is not None:
        ax.axhline(reference, **UNSTEERED, label="unsteered" if reference == 0 else f"reference {reference:g}")
    ax.plot(df.n_pairs, df[y], "o", markersize=3, alpha=0.5, label="one draw")
    means = df.groupby("n_pairs")[y].mean()
    ax.plot(means.index, means.values, "-", linewidth=1.5, label="mean over draws")
    if fit is not None:
        from steerlab.robustness.sample_size import saturation_curve

        n = np.geomspace(max(1.0, float(means.index.min())), float(means.index.max()), 200)
        ax.plot(n, saturation_curve(fit, n), "--", color="black", linewidth=1, label=f"fit ({fit['model']})")
        knee = float(fit["knee"])
        if math.isfinite(knee) and knee > 0:
            ax.axvline(knee, color="grey", linestyle=":", linewidth=1, label=f"knee ({fit['level']:.0%}): {knee:.0f}")
    ax.set_xscale("log")
    ax.set_xlabel("number of contrast pairs")
    ax.set_ylabel(ylabel or (str(df["metric"].iloc[0]) if "metric" in df else y))
    ax.legend(fontsize=7)
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


def plot_cost_tradeoff(table: pd.DataFrame, ax: Axes | None = None, hue: str = "layer") -> Axes:
    """Perplexity ratio (log y) against the behaviour effect along the strength grid, one path per ``hue`` through
    its strengths from the unsteered point (0, 1): the trade-off of CAE findings 4-5. ``table`` from
    `steerlab.robustness.tradeoff_table`."""
    _check(table, ["fraction", "effect", "ppl_ratio", hue], "plot_cost_tradeoff")
    ax = _axes(ax)
    for key, d in table.groupby(hue):
        d = d.sort_values("fraction")
        ax.plot(d.effect, d.ppl_ratio, "o-", markersize=3, label=f"{hue} {key}")
        for _, r in d[d.fraction != 0].iterrows():
            ax.annotate(f"{r.fraction:+g}", (r.effect, r.ppl_ratio), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")  # fmt: skip
    ax.plot([0], [1], "ks", markersize=4, label="unsteered")
    ax.set_yscale("log")
    ax.set_xlabel("behaviour effect (steered - unsteered)")
    ax.set_ylabel("perplexity ratio (steered / unsteered)")
    ax.legend(fontsize=7)
    return ax
