"""The random-direction null: what a direction with no meaning does at the same site and strength.

Adding any vector of residual-stream size disrupts a model, and a disrupted model drifts: towards
chance on multiple-choice tasks, towards one answer letter, towards other words in open-ended text.
So an effect counts as steering only if it lies outside the spread of effects that random directions
of the same norm produce at the same site and strength (Tan et al. 2024 and Im & Li 2025 compare
against random vectors in this spirit).

- `random_directions` draws ``k`` seeded random directions (uniform on the sphere) with the norm of a
  given vector; `random_like` does it for every site of a `SteeringVector`.
- `null_band` turns the ``k`` effects of those directions at one cell into a 95% band.

Example:
    >>> v = torch.tensor([3.0, 4.0, 0.0])
    >>> r = random_directions(v, k=2, seed=0)
    >>> r.shape, [round(float(x), 4) for x in r.norm(dim=1)]
    (torch.Size([2, 3]), [5.0, 5.0])
    >>> [round(x, 3) for x in null_band([-0.02, 0.01, 0.03, -0.01, 0.0, 0.02, -0.03, 0.01])]
    [-0.05, 0.052]
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from scipy import stats as sps
from torch import Tensor

from steerlab.errors import SteerlabError
from steerlab.sites import SITE_KINDS
from steerlab.stats import MIN_UNITS
from steerlab.vectors import SteeringVector

__all__ = ["DEFAULT_K", "null_band", "random_directions", "random_like"]

DEFAULT_K = 8
"""Random directions per cell: enough for a prediction band (7 degrees of freedom), cheap enough to run
at every (site, strength) cell."""


def _norm_of(vector: Tensor | float) -> tuple[float, int | None]:
    if isinstance(vector, Tensor):
        v = vector.detach().to("cpu", torch.float64)
        if v.ndim != 1:
            raise SteerlabError(f"vector must be 1-D [d_model], got shape {tuple(v.shape)}; pick one site's direction")
        if not torch.isfinite(v).all():
            raise SteerlabError("vector has NaN or inf entries; recompute it before drawing its null")
        return float(v.norm()), v.shape[0]
    return float(vector), None


def random_directions(
    vector: Float[Tensor, " d"], k: int = DEFAULT_K, seed: int = 0, *, stream: Sequence[int] = ()
) -> Float[Tensor, "k d"]:
    """``k`` random directions, uniform on the sphere, each with the norm of ``vector`` (a null control).

    Direction ``i`` is a standard normal draw from ``numpy.random.default_rng([seed, *stream, i])``,
    normalised in float64 and scaled to ``|vector|``. So it depends only on ``(seed, stream, i)`` and
    the width: the same on any machine and device, and the first ``j`` of ``k`` directions are the
    ``j`` directions drawn with ``k=j``. ``stream`` separates independent families (`random_like` passes
    the site), so two sites never share a direction.

    Args:
        vector: The steering direction to match, ``[d_model]`` (any device or dtype).
        k: Number of directions.
        seed: Seed of the family.
        stream: Extra integers mixed into each direction's seed.

    Returns:
        ``[k, d_model]`` float32 on the CPU; cast with ``.to(h.device, h.dtype)`` where used.

    Raises:
        SteerlabError: If ``vector`` is not 1-D and finite with a non-zero norm, or ``k < 1``.
    """
    norm, d = _norm_of(vector)
    if d is None:
        raise SteerlabError(f"vector must be a 1-D tensor, got {type(vector).__name__}")
    if norm == 0.0:
        raise SteerlabError("vector has norm 0, so there is no norm to match; a zero vector needs no null")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise SteerlabError(f"k must be a positive int (number of random directions), got {k!r}")
    rows = []
    for i in range(k):
        x = np.random.default_rng([int(seed), *map(int, stream), i]).standard_normal(d)
        rows.append(x * (norm / np.linalg.norm(x)))
    return torch.from_numpy(np.stack(rows)).to(torch.float32)


def random_like(vector: SteeringVector, k: int = DEFAULT_K, seed: int = 0) -> list[SteeringVector]:
    """``k`` random steering vectors with the sites and per-site norms of ``vector`` (a null control).

    Site ``s`` of vector ``i`` is `random_directions` ``(vector[s], k, seed, stream=(layer, kind))[i]``,
    so sites draw independently. Provenance copies the original's, with ``method`` set to
    ``"random(<method>, seed=S, i=I)"``.

    Example:
        >>> from steerlab.vectors import Provenance
        >>> v = SteeringVector({"resid_post.1": torch.ones(4)}, Provenance(model="tiny", d_model=4, method="caa"))
        >>> nulls = random_like(v, k=3)
        >>> len(nulls), nulls[0].provenance.method, round(nulls[2].norm()[nulls[2].sites[0]], 4)
        (3, 'random(caa, seed=0, i=0)', 2.0)
    """
    if not isinstance(vector, SteeringVector):
        raise SteerlabError(f"random_like needs a SteeringVector, got {type(vector).__name__}; for a tensor use "
                            "random_directions")  # fmt: skip
    per_site = {
        s: random_directions(v, k, seed, stream=(s.layer, SITE_KINDS.index(s.kind)))
        for s, v in vector.directions.items()
    }
    out = []
    for i in range(k):
        prov = dataclasses.replace(vector.provenance, method=f"random({vector.provenance.method}, seed={seed}, i={i})")
        out.append(SteeringVector({s: r[i] for s, r in per_site.items()}, prov))
    return out


def null_band(
    effects: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    method: Literal["prediction", "range"] = "prediction",
) -> tuple[float, float]:
    """The band of effects a random direction produces at one cell (Student 1908; prediction interval).

    ``method="prediction"`` (default): ``mean +- t_{(1+c)/2, k-1} * sd * sqrt(1 + 1/k)`` over the ``k``
    random directions' effects: the interval that holds the effect of one *more* random direction with
    probability ``confidence`` if the effects are roughly normal. That is the question a steering
    effect must answer ("could a random direction of this norm have done this?"), and with ``k = 8`` it
    is ``mean +- 2.51 sd``. The alternatives are worse at small ``k``: the empirical 2.5-97.5%
    percentiles of 8 values are about their min and max, which hold a new draw only ``(k-1)/(k+1)``
    = 78% of the time; ``mean +- t * sd / sqrt(k)`` is an interval for the *mean* random effect and
    is about three times too narrow. ``method="range"`` gives ``[min, max]`` for a descriptive plot.

    Args:
        effects: One effect per random direction, at the same site and strength as the steering
            vector's (e.g. steered minus unsteered mean metric).
        confidence: Coverage of the band.
        method: ``"prediction"`` or ``"range"``.

    Returns:
        ``(lo, hi)``; ``(nan, nan)`` with a warning for fewer than 3 effects (prediction band).

    Raises:
        SteerlabError: On an empty or non-finite list, a bad ``confidence`` or an unknown ``method``.
    """
    x = np.asarray(effects, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise SteerlabError(f"effects must be a non-empty 1-D list (one per random direction), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise SteerlabError(f"effects has NaN or inf at positions {np.flatnonzero(~np.isfinite(x))[:5].tolist()}; "
                            "rerun or drop those random directions")  # fmt: skip
    if not 0 < confidence < 1:
        raise SteerlabError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    if method == "range":
        return float(x.min()), float(x.max())
    if method != "prediction":
        raise SteerlabError(f"unknown method {method!r}; valid: 'prediction', 'range'")
    k = x.size
    if k < MIN_UNITS:
        warnings.warn(f"null_band: {k} random direction(s) is fewer than {MIN_UNITS}, so no band (NaN); "
                      f"use k >= {MIN_UNITS} (default {DEFAULT_K})", RuntimeWarning, stacklevel=2)  # fmt: skip
        return math.nan, math.nan
    half = float(sps.t.ppf(0.5 + confidence / 2, k - 1)) * float(x.std(ddof=1)) * math.sqrt(1 + 1 / k)
    return float(x.mean()) - half, float(x.mean()) + half
