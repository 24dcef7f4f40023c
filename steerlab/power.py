"""Statistical power: the smallest effect a test of a given size would detect (Cohen 1988).

A null result says something only together with the effect the test could have found. This module
gives the **minimum detectable effect** (MDE): the true effect that a test of ``n`` units detects
with probability ``power`` (default 80%) at level ``alpha`` (default 0.05, two-sided).

- `mde_paired`: a paired mean difference (steered minus unsteered on the same items or seeds), as
  tested by `steerlab.stats.paired_test`. Exact, from the noncentral t distribution: the one-sample
  t statistic of ``n`` differences with mean ``delta`` and sd ``sd`` follows a noncentral t with
  ``n - 1`` degrees of freedom and noncentrality ``delta * sqrt(n) / sd``. Binary outcomes on the same
  items (right/wrong, steered and not) are paired too: pass the sd of the per-item differences, which
  lie in ``{-1, 0, 1}``.
- `mde_proportions`: a difference between two independent proportions (``n`` units each), for
  planning before per-item differences exist, from the normal approximation of the two-proportion
  z-test (Fleiss, Levin & Paik 2003, eq. 4.14, without continuity correction).

No test is run on fewer than ``MIN_UNITS`` (3) units (see `steerlab.stats`), so below that the MDE is
NaN, with a warning.

Example:
    >>> round(mde_paired(100, sd=0.3), 4)          # a 100-item test set, per-item differences of sd 0.3
    0.0849
    >>> round(mde_proportions(100, 0.5), 4)        # two groups of 100 at a 50% base rate
    0.1932
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

from scipy import optimize
from scipy import stats as sps

from steerlab.errors import SteerlabError
from steerlab.stats import MIN_UNITS

__all__ = ["mde_paired", "mde_proportions", "power_paired", "power_proportions"]

Sided = Literal["two-sided", "greater"]
Direction = Literal["up", "down", "either"]


def _check(n: int, alpha: float, power: float | None = None, alternative: str = "two-sided") -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SteerlabError(f"n must be a positive int (the number of units), got {n!r}")
    if not 0 < alpha < 1:
        raise SteerlabError(f"alpha must be in (0, 1), e.g. 0.05; got {alpha!r}")
    if power is not None and not alpha < power < 1:
        raise SteerlabError(f"power must be in (alpha, 1) = ({alpha}, 1), e.g. 0.8; got {power!r}")
    if alternative not in ("two-sided", "greater"):
        raise SteerlabError(
            f"alternative must be 'two-sided' or 'greater', got {alternative!r}; for a test that the metric "
            "falls, flip the sign of the effect"
        )


def _too_few(n: int, what: str) -> bool:
    if n < MIN_UNITS:
        warnings.warn(
            f"{what}: {n} unit(s) is fewer than {MIN_UNITS}, so no test is run and there is no minimum "
            "detectable effect (NaN); report the values descriptively",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
    return False


def power_paired(effect: float, n: int, sd: float, *, alpha: float = 0.05, alternative: Sided = "two-sided") -> float:
    """Power of the one-sample (paired) t-test to detect a true mean difference ``effect`` (Student 1908).

    Args:
        effect: The true mean of the paired differences (in the metric's units).
        n: Number of pairs (items or seeds); NaN below 3 (with a warning).
        sd: Standard deviation of the paired differences.
        alpha: Level of the test.
        alternative: ``"two-sided"`` or ``"greater"`` (the test asks whether the metric rises).

    Returns:
        The probability of rejecting ``mean = 0``, from the noncentral t distribution.

    Example:
        >>> round(power_paired(0.5, 34, 1.0), 3)     # Cohen's d = 0.5 needs n = 34 for 80% (two-sided)
        0.808
    """
    _check(n, alpha, alternative=alternative)
    if not (math.isfinite(sd) and sd >= 0):
        raise SteerlabError(f"sd must be a finite number >= 0, got {sd!r}")
    if _too_few(n, "power_paired"):
        return math.nan
    if sd == 0:
        return 1.0 if effect != 0 else alpha
    df, nc = n - 1, effect * math.sqrt(n) / sd
    if alternative == "greater":
        return float(sps.nct.sf(sps.t.isf(alpha, df), df, nc))
    crit = sps.t.isf(alpha / 2, df)
    return float(sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc))


def mde_paired(
    n: int, sd: float, *, alpha: float = 0.05, power: float = 0.8, alternative: Sided = "two-sided"
) -> float:
    """Minimum detectable mean difference of a paired t-test of ``n`` units (Cohen 1988, ch. 2).

    The positive effect at which `power_paired` equals ``power``, solved exactly (Brent's method on the
    noncentral t power). For large ``n`` it approaches ``(z_{1-alpha/2} + z_power) * sd / sqrt(n)``
    (2.80 sd / sqrt(n) at the defaults). Two-sided power is symmetric in the effect's sign, so the
    same MDE holds for a fall.

    Args:
        n: Number of pairs (items or seeds).
        sd: Standard deviation of the per-unit differences (``paired_test``'s ``sd``).
        alpha: Level of the test.
        power: Required probability of detection.
        alternative: ``"two-sided"`` (as the protocol's intervals) or ``"greater"``.

    Returns:
        The MDE in the metric's units; 0 if ``sd`` is 0; NaN below 3 units (with a warning).

    Example:
        >>> round(mde_paired(34, 1.0), 3)
        0.495
    """
    _check(n, alpha, power, alternative)
    if not (math.isfinite(sd) and sd >= 0):
        raise SteerlabError(f"sd must be a finite number >= 0 (the sd of the paired differences), got {sd!r}")
    if _too_few(n, "mde_paired"):
        return math.nan
    if sd == 0:
        return 0.0
    # in units of sd, then scaled: the power depends on effect / sd only
    z = sps.norm.isf(alpha / 2 if alternative == "two-sided" else alpha) + sps.norm.ppf(power)
    hi = 2 * z / math.sqrt(n)
    while power_paired(hi, n, 1.0, alpha=alpha, alternative=alternative) < power:
        hi *= 2
    d = optimize.brentq(
        lambda e: power_paired(e, n, 1.0, alpha=alpha, alternative=alternative) - power, 0.0, hi, xtol=1e-12
    )
    return float(d * sd)


def power_proportions(p0: float, p1: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided two-proportion z-test with ``n`` units per group (Fleiss et al. 2003).

    Normal approximation: the test statistic uses the pooled variance under the null,
    ``2 * pbar * (1 - pbar) / n`` with ``pbar = (p0 + p1) / 2``, and has variance
    ``(p0 (1 - p0) + p1 (1 - p1)) / n`` under the alternative; the far tail is neglected.

    Example:
        >>> round(power_proportions(0.5, 0.6, 388), 3)
        0.801
    """
    _check(n, alpha)
    for name, p in (("p0", p0), ("p1", p1)):
        if not 0 <= p <= 1:
            raise SteerlabError(f"{name} must be a proportion in [0, 1], got {p!r}")
    pbar = (p0 + p1) / 2
    null_sd = math.sqrt(2 * pbar * (1 - pbar))
    alt_sd = math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))
    if alt_sd == 0:
        return 1.0 if p0 != p1 else 0.0
    return float(sps.norm.cdf((abs(p1 - p0) * math.sqrt(n) - sps.norm.isf(alpha / 2) * null_sd) / alt_sd))


def mde_proportions(
    n: int, p0: float, *, alpha: float = 0.05, power: float = 0.8, direction: Direction = "either"
) -> float:
    """Minimum detectable difference between two independent proportions, ``n`` units each (Fleiss et al. 2003).

    Solves `power_proportions` ``(p0, p0 +- delta, n) = power`` for ``delta``. The answer depends on
    the direction: a move towards 0.5 raises the variance, so it must be larger to be seen than a move
    of the same size towards 0 or 1, and near 0 or 1 there may be no room at all. ``direction="up"`` gives the
    detectable rise, ``"down"`` the detectable fall, and ``"either"`` the larger of the two (an
    effect that big is detected whichever way it goes: the figure to quote beside a null). When no
    change in a direction reaches the power (e.g. a rise from 0.95 with 10 units), that MDE is
    ``inf``.

    The approximation is a little conservative: simulated two-proportion z-tests at the returned MDE
    reject 80-83% of the time for ``n`` from 20 to 400. For the same items scored with and without
    steering, prefer `mde_paired` with the sd of the
    per-item differences: pairing removes the items' own variation, so this formula is conservative.

    Args:
        n: Units per group.
        p0: The baseline proportion (e.g. the unsteered accuracy).
        alpha: Level of the two-sided test.
        power: Required probability of detection.
        direction: ``"up"``, ``"down"`` or ``"either"``.

    Returns:
        The MDE as a difference of proportions (``inf`` if unreachable); NaN below 3 units.

    Example:
        >>> round(mde_proportions(388, 0.5, direction="up"), 4)   # 50% vs 60% needs 388 a group
        0.0999
    """
    _check(n, alpha, power)
    if not 0 <= p0 <= 1:
        raise SteerlabError(f"p0 must be a proportion in [0, 1], got {p0!r}")
    if direction not in ("up", "down", "either"):
        raise SteerlabError(f"direction must be 'up', 'down' or 'either', got {direction!r}")
    if _too_few(n, "mde_proportions"):
        return math.nan

    def one_way(sign: int) -> float:
        room = 1 - p0 if sign > 0 else p0
        if room == 0 or power_proportions(p0, p0 + sign * room, n, alpha=alpha) < power:
            return math.inf
        f = lambda d: power_proportions(p0, p0 + sign * d, n, alpha=alpha) - power
        return float(optimize.brentq(f, 0.0, room, xtol=1e-12))

    if direction == "up":
        return one_way(1)
    if direction == "down":
        return one_way(-1)
    return max(one_way(1), one_way(-1))
