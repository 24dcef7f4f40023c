"""Orientation: sign a vector so that a positive strength raises the target metric, on validation data only.

A mean-difference vector points from the negative to the positive examples where it was *read*; whether
adding it raises the metric where it is *written* is an empirical question, and on SmolLM2 the answer is
often no (persona vectors read at the answer token lower p(behaviour) at layers 12-18). So each site of a
vector is evaluated at ``+s`` and ``-s`` on validation items, and flipped if ``metric(+s) < metric(-s)``.
Each site is oriented on its own, as a layer sweep steers it on its own. The evidence (the effect of
``+s`` over ``-s`` with its paired 95% interval, the item count, whether the interval excludes 0, flipped
or not) goes into the vector's provenance, ``extra["orientation"][site]``.

Never orient on test data: the sign is a fitted parameter, and the test set must not have chosen it.

Example:
    >>> vec = orient(lm, vec, ChoiceTask.from_pairs(lm, val_pairs), fraction=0.25,   # doctest: +SKIP
    ...              positions=AFTER_INSTRUCTION)
    >>> vec.provenance.extra["orientation"]["resid_post.12"]["flipped"]              # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from steerlab.effects import CELL, metric_rows, paired_effect, strength_column
from steerlab.errors import SteerlabError
from steerlab.sites import ALL, Positions, Site
from steerlab.sweeps import sweep
from steerlab.vectors import SteeringVector

if TYPE_CHECKING:
    from steerlab.backends.base import Backend
    from steerlab.tasks import Task

__all__ = ["Orientation", "apply_orientation", "orient", "orientation_evidence"]


@dataclasses.dataclass(frozen=True)
class Orientation:
    """The validation evidence for one site's sign: ``metric(+s) - metric(-s)`` of the vector as it was given.

    ``flipped`` is True when that effect is negative (the vector is negated); ``confident`` when its
    interval excludes 0 (otherwise the sign is a coin toss on this data, and is kept as the estimate says).
    """

    site: str
    metric: str
    strength: float
    unit: str
    effect: float
    lo: float
    hi: float
    n: int
    flipped: bool
    confident: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in dataclasses.asdict(self).items()}


def orientation_evidence(df: pd.DataFrame, metric: str, strength: float) -> dict[Site, Orientation]:
    """Per site, the effect of ``+strength`` over ``-strength`` in a sweep of the (unoriented) vector.

    Args:
        df: a `steerlab.sweeps.sweep` frame holding both strengths (fractions or coefficients, the sweep's unit).
        metric: the target metric.
        strength: the positive strength compared with its negative.
    """
    d = metric_rows(df, metric)
    d = d[d.direction == "vector"]
    x = strength_column(d)
    s = abs(float(strength))
    out = {}
    for key, g in d.groupby(list(CELL), sort=False):
        plus, minus = g[g[x] == s], g[g[x] == -s]
        if plus.empty or minus.empty:
            where = dict(zip(CELL, key, strict=True))
            raise SteerlabError(f"the sweep has no rows at {x} +{s:g} and -{s:g} for {where}; sweep both signs of the "
                                "orientation strength")  # fmt: skip
        e = paired_effect(plus.set_index("example_id").value, minus.set_index("example_id").value)
        site = Site(int(key[3]), str(key[2]))
        confident = (e["lo"] > 0 or e["hi"] < 0) if math.isfinite(e["lo"]) else False
        out[site] = Orientation(str(site), metric, s, x, e["effect"], e["lo"], e["hi"], e["n"], e["effect"] < 0,
                                bool(confident))  # fmt: skip
    return out


def apply_orientation(vector: SteeringVector, evidence: Mapping[Site, Orientation]) -> SteeringVector:
    """``vector`` with every flipped site negated and the evidence in ``provenance.extra["orientation"]``.

    Sites without evidence are kept as they are (and have no entry).
    """
    dirs = {s: (-v if s in evidence and evidence[s].flipped else v) for s, v in vector.directions.items()}
    record = {**vector.provenance.extra.get("orientation", {}), **{str(s): e.to_dict() for s, e in evidence.items()}}
    prov = dataclasses.replace(vector.provenance, extra={**vector.provenance.extra, "orientation": record})
    return SteeringVector(dirs, prov)


def orient(
    backend: Backend,
    vector: SteeringVector,
    val_task: Task,
    *,
    fraction: float | None = 0.25,
    coeff: float | None = None,
    sites: Sequence[Site | str | int] | None = None,
    positions: Positions = ALL,
    scale: Mapping[Site, float] | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> SteeringVector:
    """The vector signed, site by site, so that a positive strength raises ``val_task``'s target metric.

    Runs ``val_task`` at ``+s`` and ``-s`` at each site through `steerlab.sweeps.sweep` (resumable with
    ``out``) and applies `orientation_evidence`.

    Args:
        backend: the model.
        vector: the vector to orient.
        val_task: a validation task (never the test task).
        fraction: ``s`` as a fraction of each site's typical token norm (default 0.25).
        coeff: ``s`` as a raw coefficient instead (pass ``fraction=None``).
        sites: the sites to orient (default: all of the vector's).
        positions, scale, out, progress: as in `steerlab.sweeps.sweep`.
    """
    if (fraction is None) == (coeff is None):
        raise SteerlabError("orient takes exactly one of fraction (of the typical norm) and coeff (raw); "
                            "e.g. fraction=0.25, or fraction=None, coeff=4.0")  # fmt: skip
    s = abs(float(fraction if fraction is not None else coeff))
    if s == 0 or not math.isfinite(s):
        raise SteerlabError(f"the orientation strength must be finite and nonzero, got {s}")
    grid = {"fractions": [-s, s]} if fraction is not None else {"coeffs": [-s, s]}
    df = sweep(backend, vector, val_task, sites=sites, positions=positions, scale=scale, out=out, progress=progress,
               **grid)  # fmt: skip
    return apply_orientation(vector, orientation_evidence(df, val_task.metrics[0], s))
