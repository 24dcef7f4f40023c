"""One-line verdicts on a steering effect: steering, an answer-token push, noise, or a test without power.

An effect (steered minus unsteered, with its interval over test items) is read against three
controls: the band of effects random directions of the same norm produce at the same site and
strength (`steerlab.controls.null_band`), the effect on each answer label separately (items whose
behaviour-matching answer is A/Yes versus B/No), and the test's minimum detectable effect
(`steerlab.power`). `verdict` applies these rules, in this order:

1. **underpowered**: fewer than 3 units, or no finite interval: no test is possible.
2. **answer-token push**: the labels' effects have opposite signs, and the disagreement is real: at
   least one label's interval excludes 0, or the overall interval does. Pushing the model towards one
   answer token raises the items whose matching answer is that token and lowers the others; that is
   not the behaviour moving.
3. **steers**: the interval excludes 0, the effect lies outside the random band, and every label
   moves with the same sign as the whole (Im & Li 2025 and Tan et al. 2024 warn that mean effects hide
   items steered the wrong way).
4. **within random band**: the effect lies inside the random band: a random direction of this norm
   does as much, so the vector's content is not shown to matter.
5. **no effect (MDE = x)**: the interval includes 0 and the test had power: its minimum detectable
   effect is finite and, when a ``reference`` effect (e.g. the paper's) is given, no larger than it.
6. **underpowered** otherwise: the test could not have found an effect of the size that matters.

Example:
    >>> verdict(0.12, (0.05, 0.19), null_band=(-0.04, 0.05), per_label={"A": 0.10, "B": 0.14}, mde=0.06).text
    'steers: +0.120 [+0.050, +0.190], outside the random band [-0.040, +0.050]; same sign on A +0.100, B +0.140'
    >>> verdict(0.01, (-0.03, 0.05), null_band=(-0.08, 0.08), mde=0.06).label
    'within random band'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from steerlab.errors import SteerlabError
from steerlab.stats import MIN_UNITS

__all__ = ["IN_BAND", "NO_EFFECT", "PUSH", "STEERS", "UNDERPOWERED", "VERDICTS", "Verdict", "verdict"]

STEERS = "steers"
PUSH = "answer-token push"
IN_BAND = "within random band"
NO_EFFECT = "no effect"
UNDERPOWERED = "underpowered"
VERDICTS: tuple[str, ...] = (STEERS, PUSH, IN_BAND, NO_EFFECT, UNDERPOWERED)

LabelEffect = float | Sequence[float]
"""A label's effect: a number, or ``(effect, lo, hi)`` with its interval."""


@dataclass(frozen=True)
class Verdict:
    """A verdict (``label``, one of `VERDICTS`), its one-line ``text``, and the numbers it was read from."""

    label: str
    text: str
    effect: float
    ci: tuple[float, float]
    null_band: tuple[float, float] | None = None
    per_label: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    mde: float = math.nan
    reference: float | None = None
    n: int | None = None

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists)."""
        return asdict(self)


def _f(x: float) -> str:
    return f"{x:+.3f}"


def _interval(x: Sequence[float] | None, name: str) -> tuple[float, float] | None:
    if x is None:
        return None
    try:
        lo, hi = (float(v) for v in x)
    except (TypeError, ValueError):
        raise SteerlabError(f"{name} must be a pair (lo, hi), got {x!r}") from None
    if lo > hi:
        raise SteerlabError(f"{name} has lo > hi: {(lo, hi)}; pass (lo, hi) in that order")
    return lo, hi


def _labels(per_label: Mapping[str, LabelEffect] | None) -> dict[str, tuple[float, float, float]]:
    out: dict[str, tuple[float, float, float]] = {}
    for name, value in (per_label or {}).items():
        if isinstance(value, int | float):
            out[str(name)] = (float(value), math.nan, math.nan)
            continue
        try:
            e, lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise SteerlabError(
                f"per_label[{name!r}] must be an effect or (effect, lo, hi), got {value!r}"
            ) from None
        out[str(name)] = (e, lo, hi)
    if len(out) == 1:
        raise SteerlabError(
            f"per_label has one label ({next(iter(out))!r}); a breakdown needs at least two (e.g. items whose "
            "matching answer is A and those where it is B), or pass None"
        )
    return out


def _excludes_zero(lo: float, hi: float) -> bool:
    return (lo > 0 or hi < 0) and not (math.isnan(lo) or math.isnan(hi))


def verdict(
    effect: float,
    ci: Sequence[float],
    *,
    mde: float,
    null_band: Sequence[float] | None = None,
    per_label: Mapping[str, LabelEffect] | None = None,
    reference: float | None = None,
    n: int | None = None,
) -> Verdict:
    """Classify one steering effect against its controls (see the module docstring for the rules).

    Args:
        effect: The effect on the test set (steered minus unsteered, after orientation).
        ci: Its two-sided interval ``(lo, hi)`` over test units.
        mde: The test's minimum detectable effect (`steerlab.power.mde_paired`); NaN if unknown.
        null_band: ``(lo, hi)`` of random directions at the same site and strength
            (`steerlab.controls.null_band`); None if no control was run (then "steers" rests on the
            interval and labels alone, and the text says so).
        per_label: Effect per answer label, ``{"A": 0.1, "B": -0.05}`` or with intervals
            ``{"A": (0.1, 0.02, 0.18), ...}``. Give intervals where you can: with bare numbers any
            opposite signs count as a disagreement. None for tasks without answer labels (generation).
        reference: The effect that matters (e.g. the paper's); an MDE above ``|reference|`` makes a
            null "underpowered".
        n: Number of test units; below 3 the verdict is "underpowered".

    Returns:
        A `Verdict`; ``str(v)`` is the one-line text.
    """
    effect = float(effect)
    if not math.isfinite(effect):
        raise SteerlabError(f"effect must be a finite number, got {effect!r}")
    lo, hi = _interval(ci, "ci")  # type: ignore[misc]
    band = _interval(null_band, "null_band")
    labels = _labels(per_label)
    mde = float(mde)
    ref = None if reference is None else abs(float(reference))

    def done(label: str, why: str) -> Verdict:
        head = f"no effect (MDE = {mde:.3f})" if label == NO_EFFECT else label
        return Verdict(label, f"{head}: {why}", effect, (lo, hi), band, labels, mde, reference, n)

    shown = f"{_f(effect)} [{_f(lo)}, {_f(hi)}]"
    band_text = f"the random band [{_f(band[0])}, {_f(band[1])}]" if band else "no random-direction control"
    power_text = f"MDE {mde:.3f}" + (f" vs reference {ref:.3f}" if ref is not None else "")

    if (n is not None and n < MIN_UNITS) or math.isnan(lo) or math.isnan(hi):
        units = f"{n} unit(s), fewer than {MIN_UNITS}" if n is not None and n < MIN_UNITS else "no interval"
        return done(UNDERPOWERED, f"{_f(effect)} from {units}: no test, described only")

    signs = {name: math.copysign(1, e) for name, (e, _, _) in labels.items() if e != 0}
    if len(set(signs.values())) > 1:
        moving = [name for name, (_, l_lo, l_hi) in labels.items() if _excludes_zero(l_lo, l_hi)]
        bare = all(math.isnan(l_lo) for _, l_lo, _ in labels.values())
        if bare or moving or _excludes_zero(lo, hi):
            parts = ", ".join(f"{name} {_f(e)}" for name, (e, _, _) in labels.items())
            return done(PUSH, f"the labels move in opposite directions ({parts}); overall {shown}")

    outside = band is None or not band[0] <= effect <= band[1]
    if _excludes_zero(lo, hi) and outside:
        same = ", ".join(f"{name} {_f(e)}" for name, (e, _, _) in labels.items())
        agree = f"; same sign on {same}" if labels else ""
        where = f"outside {band_text}" if band else f"with {band_text}"
        return done(STEERS, f"{shown}, {where}{agree}")
    if band is not None and not outside:
        return done(IN_BAND, f"{shown} inside {band_text} ({power_text})")
    if math.isfinite(mde) and (ref is None or mde <= ref):
        return done(NO_EFFECT, f"{shown} includes 0, {band_text}")
    return done(UNDERPOWERED, f"{shown} includes 0 and the test is too small ({power_text})")
