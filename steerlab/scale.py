"""Strengths as fractions of a site's typical token norm, so one grid means the same at every layer and model.

A raw coefficient means nothing across sites: SmolLM2-135M's residual stream has a median token
norm of about 102, 141 and 198 at layers 6, 12 and 18, and a mean-difference vector may have norm 1
or 30. So the protocol states a strength as a **fraction** ``f`` of the site's typical token norm
``T``: the added vector ``coeff * v`` has norm ``f * T``, that is ``coeff = f * T / |v|``
(`strength_from_fraction`; `fraction_from_strength` goes back).

``T`` must be robust to attention sinks. The first token of a sequence (and on chat prompts every
``<|im_start|>``) carries a huge norm: on SmolLM2 about 784 at layer 6 and about 25,000 at layers 12
and 18, against the medians above, so even the mean without position 0 (608 at layer 12) is no
scale. `typical_norm` is the **median** L2 norm over the prompts' non-padding tokens, leaving out
each sequence's first token and then every token whose norm exceeds ``sink_factor`` (10) times the
median of the rest.

Example:
    >>> T = typical_norm(lm, prompts, ["resid_post.6"])                            # doctest: +SKIP
    >>> coeffs = strength_from_fraction(DEFAULT_FRACTIONS, T[Site(6)], vec["resid_post.6"])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.errors import SteerlabError
from steerlab.sites import Site

if TYPE_CHECKING:
    from steerlab.backends.base import Backend

__all__ = [
    "DEFAULT_FRACTIONS",
    "SINK_FACTOR",
    "fraction_from_strength",
    "strength_from_fraction",
    "token_norms",
    "typical_norm",
]

DEFAULT_FRACTIONS: tuple[float, ...] = (-0.5, -0.25, -0.1, -0.05, 0.0, 0.05, 0.1, 0.25, 0.5)
"""Default strength grid, as fractions of the typical token norm: both signs, zero, small to large. On
SmolLM2-135M, open-ended text breaks (repetition, emoji) around +-0.5."""

SINK_FACTOR = 10.0
"""A token whose norm exceeds this many times the median is an attention sink and is left out."""


def token_norms(
    backend: Backend,
    prompts: Sequence[str],
    sites: Sequence[Site | str | int],
    *,
    batch_size: int = 16,
    sink_factor: float = SINK_FACTOR,
    progress: bool = False,
) -> pd.DataFrame:
    """L2 norm of every non-padding token's activation at each site, with attention sinks flagged.

    One forward pass per batch records all sites. ``position`` counts from each prompt's first real
    token (left padding does not shift it). ``sink`` is True for position 0 and for any token whose
    norm exceeds ``sink_factor`` times the site's median over the non-first tokens.

    Args:
        backend: A loaded model.
        prompts: Already formatted prompts (e.g. ``backend.chat(...)``), like the ones to be steered.
        sites: Sites to measure (a layer number means ``resid_post``).
        batch_size: Prompts per forward pass.
        sink_factor: Multiple of the median above which a token counts as a sink.
        progress: Show a tqdm bar.

    Returns:
        Tidy rows ``prompt`` (index into ``prompts``), ``position``, ``site`` (e.g. ``"resid_post.6"``),
        ``norm`` (float, computed in float32) and ``sink`` (bool).
    """
    if isinstance(prompts, str) or len(prompts) == 0:
        raise SteerlabError("prompts must be a non-empty list of strings (formatted as they will be steered)")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise SteerlabError(f"batch_size must be a positive int, got {batch_size!r}")
    if not (isinstance(sink_factor, int | float) and sink_factor > 1):
        raise SteerlabError(f"sink_factor must be a number > 1 (a multiple of the median), got {sink_factor!r}")
    resolved = [backend.site(s) for s in ([sites] if isinstance(sites, Site | str | int) else sites)]
    if not resolved:
        raise SteerlabError("no sites given; pass e.g. ['resid_post.6']")
    parts: list[pd.DataFrame] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="token norms", disable=not progress):
        batch = backend.tokenize(list(prompts[start : start + batch_size]))
        acts = backend.record(batch, resolved)
        mask = batch.attention_mask.bool().cpu()
        rows, cols = torch.nonzero(mask, as_tuple=True)
        position = (batch.position_ids.cpu())[rows, cols]
        for site in resolved:
            norms = acts[site].float().norm(dim=-1).cpu()[rows, cols]
            parts.append(
                pd.DataFrame({"prompt": (rows + start).numpy(), "position": position.numpy(), "site": str(site),
                              "norm": norms.double().numpy()})  # fmt: skip
            )
    df = pd.concat(parts, ignore_index=True)
    first = df["position"].to_numpy() == 0
    df["sink"] = first
    for _, idx in df.groupby("site", sort=False).groups.items():
        rest = ~first[idx]
        if rest.any():
            median = float(np.median(df.loc[idx[rest], "norm"]))
            df.loc[idx, "sink"] = first[idx] | (df.loc[idx, "norm"].to_numpy() > sink_factor * median)
    return df.sort_values(["site", "prompt", "position"], kind="stable").reset_index(drop=True)


def typical_norm(
    backend: Backend,
    prompts: Sequence[str],
    sites: Sequence[Site | str | int],
    *,
    batch_size: int = 16,
    sink_factor: float = SINK_FACTOR,
    progress: bool = False,
) -> dict[Site, float]:
    """The typical token norm at each site: the median over non-padding tokens, attention sinks left out.

    See the module docstring for why the median and why sinks are dropped; `token_norms` gives the
    per-token values behind it (useful for a plot of the sinks).

    Args:
        backend, prompts, sites, batch_size, sink_factor, progress: As in `token_norms`.

    Returns:
        ``{site: median norm}``, keyed by the resolved `Site` (negative layers counted from the end).

    Raises:
        SteerlabError: If a site has no token left (e.g. every prompt is one token long).
    """
    df = token_norms(
        backend, prompts, sites, batch_size=batch_size, sink_factor=sink_factor, progress=progress
    )
    out: dict[Site, float] = {}
    for site in dict.fromkeys(backend.site(s) for s in ([sites] if isinstance(sites, Site | str | int) else sites)):
        kept = df.loc[(df["site"] == str(site)) & ~df["sink"], "norm"]
        if kept.empty:
            raise SteerlabError(
                f"no token is left at {site} once each prompt's first token and the sinks are dropped; "
                "pass prompts of at least two tokens"
            )
        out[site] = float(np.median(kept.to_numpy()))
    return out


def _vector_norm(vector: Tensor | float) -> float:
    if isinstance(vector, Tensor):
        if vector.ndim != 1:
            raise SteerlabError(f"vector must be 1-D [d_model], got shape {tuple(vector.shape)}")
        norm = float(vector.detach().to("cpu", torch.float64).norm())
    else:
        norm = float(vector)
    if not (math.isfinite(norm) and norm > 0):
        raise SteerlabError(f"the vector's norm must be finite and > 0, got {norm}; a zero vector has no strength")
    return norm


def _check_typical(typical: float) -> float:
    typical = float(typical)
    if not (math.isfinite(typical) and typical > 0):
        raise SteerlabError(f"typical_norm must be finite and > 0, got {typical}; compute it with typical_norm()")
    return typical


def strength_from_fraction(
    fraction: float | Sequence[float] | np.ndarray, typical: float, vector: Tensor | float
) -> float | np.ndarray:
    """The coefficient that adds ``fraction * typical`` worth of norm: ``fraction * typical / |vector|``.

    Args:
        fraction: A fraction of the typical token norm, or several (e.g. `DEFAULT_FRACTIONS`).
        typical: The site's typical token norm (`typical_norm`).
        vector: The steering direction at that site (or its norm).

    Returns:
        A float for a scalar ``fraction``, else a float64 array of the same length.

    Example:
        >>> strength_from_fraction(0.25, 140.0, torch.tensor([3.0, 4.0]))
        7.0
    """
    scale = _check_typical(typical) / _vector_norm(vector)
    if np.ndim(fraction) == 0:
        return float(fraction) * scale
    return np.asarray(fraction, dtype=float) * scale


def fraction_from_strength(
    strength: float | Sequence[float] | np.ndarray, typical: float, vector: Tensor | float
) -> float | np.ndarray:
    """The inverse of `strength_from_fraction`: ``strength * |vector| / typical``.

    Example:
        >>> fraction_from_strength(7.0, 140.0, 5.0)
        0.25
    """
    scale = _vector_norm(vector) / _check_typical(typical)
    if np.ndim(strength) == 0:
        return float(strength) * scale
    return np.asarray(strength, dtype=float) * scale
