"""Paired tests, confidence intervals and steerability for steering results across seeds.

The unit of replication is a seed (or an example): a steered run and an unsteered run that share
the seed are a pair, and tests are on the per-pair differences ``delta = steered - base``. Tests are
one-sided (``alternative="greater"``: steering raises the metric) unless asked otherwise; confidence
intervals are always two-sided t-intervals of the mean. No p-value comes from fewer than ``MIN_UNITS``
(3) units: with two, the mean and interval are reported and ``t`` and ``p`` are NaN (with a warning).
`holm` corrects a family of p-values for multiple comparisons; power and the minimum detectable
effect are in `steerlab.power`.

Tidy frames follow the house columns ``layer, site, coeff, method, seed, metric, value`` (plus
``example_id``, ``task``, ``category`` where relevant). By default an unsteered row is one with
``coeff == 0``; see `delta_table`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

__all__ = [
    "MIN_UNITS",
    "anti_steerable_fraction",
    "delta_table",
    "effect_ci",
    "holm",
    "mean_ci",
    "paired_test",
    "pooled_test",
    "steerability",
]

Alternative = Literal["greater", "less", "two-sided"]
_ALTERNATIVES = ("greater", "less", "two-sided")
_GROUP_COLUMNS = ("task", "category", "method", "site", "layer", "coeff", "metric")
_TEST_COLUMNS = ["delta", "sd", "n", "t", "p", "ci_low", "ci_high"]
MIN_UNITS = 3
"""Fewest units (seeds, items, tasks) a test is run on: with two, one degree of freedom makes any p-value
hinge on a single difference, so it is not computed."""


# ----------------------------------------------------------------------------------------------
# basic tests


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise SteerlabError(f"{name} must be 1-D (one value per seed or example), got shape {arr.shape}")
    if arr.size == 0:
        raise SteerlabError(f"{name} is empty: it needs at least one value")
    if not np.isfinite(arr).all():
        where = np.flatnonzero(~np.isfinite(arr))[:5].tolist()
        raise SteerlabError(
            f"{name} has non-finite values at positions {where}; drop the failed runs from both sides first"
        )
    return arr


def _t_p(t: float, df: int, alternative: str) -> float:
    if math.isnan(t):
        return math.nan
    if alternative == "greater":
        return float(sps.t.sf(t, df))
    if alternative == "less":
        return float(sps.t.cdf(t, df))
    return float(min(1.0, 2 * sps.t.sf(abs(t), df)))


def _one_sample(delta: np.ndarray, alternative: str, confidence: float) -> dict[str, float]:
    """t-test of ``mean(delta) = 0`` plus a two-sided t-interval; handles n=1 and zero variance."""
    if alternative not in _ALTERNATIVES:
        raise SteerlabError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if not 0 < confidence < 1:
        raise SteerlabError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    n = int(delta.size)
    mean = float(delta.mean())
    if n == 1:
        warnings.warn(
            "only one paired value: the p-value and confidence interval are NaN; run more seeds",
            RuntimeWarning,
            stacklevel=3,
        )
        return {
            "delta": mean,
            "sd": math.nan,
            "n": 1,
            "t": math.nan,
            "p": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
        }
    sd = float(delta.std(ddof=1))
    # values that are all equal can leave a rounding-level sd: treat it as exactly zero
    if sd <= 1e-12 * max(1.0, float(np.abs(delta).max())):
        sd = 0.0
    if sd == 0.0:
        warnings.warn(
            f"all {n} paired differences are equal ({mean:g}): zero variance, so t is infinite "
            "(or NaN if they are all zero) and the interval has zero width",
            RuntimeWarning,
            stacklevel=3,
        )
        t = math.nan if mean == 0 else math.copysign(math.inf, mean)
        half = 0.0
    else:
        se = sd / math.sqrt(n)
        t = mean / se
        half = float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * se
    if n < MIN_UNITS:
        warnings.warn(
            f"only {n} paired values: no t or p-value from fewer than {MIN_UNITS} units (NaN); the mean and "
            "interval are descriptive; run more seeds or items",
            RuntimeWarning,
            stacklevel=3,
        )
        t = math.nan
    return {
        "delta": mean,
        "sd": sd,
        "n": n,
        "t": t,
        "p": _t_p(t, n - 1, alternative),
        "ci_low": mean - half,
        "ci_high": mean + half,
    }


def paired_test(
    steered: Sequence[float] | np.ndarray,
    base: Sequence[float] | np.ndarray,
    alternative: Alternative = "greater",
    confidence: float = 0.95,
) -> dict[str, float]:
    """Paired t-test that steering moves a metric (Student 1908; as ``scipy.stats.ttest_rel``).

    ``steered[i]`` and ``base[i]`` must come from the same seed (or example). The test is on
    ``delta = steered - base``; with the default ``alternative="greater"`` a small ``p`` means the
    steered runs score higher. The interval is the two-sided ``confidence`` t-interval of the mean
    delta. With one pair, ``sd``, ``t``, ``p`` and the interval are NaN; with two (fewer than
    ``MIN_UNITS``), ``t`` and ``p`` are NaN; both with a ``RuntimeWarning``.
    With zero variance, ``t`` is ``+-inf`` (NaN if every delta is 0), ``p`` follows from it and the
    interval collapses to the mean (also with a warning).

    Args:
        steered: Metric values with steering, one per seed or example.
        base: Metric values without steering, same order and length.
        alternative: ``"greater"`` (steered > base), ``"less"`` or ``"two-sided"``.
        confidence: Level of the confidence interval.

    Returns:
        A dict with ``delta`` (mean difference), ``sd``, ``n``, ``t``, ``p``, ``ci_low``, ``ci_high``.

    Example:
        >>> r = paired_test([0.9, 0.8, 0.85], [0.5, 0.55, 0.5])
        >>> round(r["delta"], 3), r["n"], r["p"] < 0.01
        (0.333, 3, True)
    """
    s, b = _as_1d(steered, "steered"), _as_1d(base, "base")
    if s.shape != b.shape:
        raise SteerlabError(
            f"steered has {s.size} values but base has {b.size}: a paired test needs one base value "
            "per steered value, from the same seed or example"
        )
    return _one_sample(s - b, alternative, confidence)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t confidence interval (Student 1908).

    With one value the bounds are NaN (with a ``RuntimeWarning``).

    Args:
        values: Values, one per seed (or example).
        confidence: Level of the interval.

    Returns:
        ``(mean, lo, hi)``.

    Example:
        >>> m, lo, hi = mean_ci([1.0, 2.0, 3.0])
        >>> m, round(lo, 3), round(hi, 3)
        (2.0, -0.484, 4.484)
    """
    r = _one_sample(_as_1d(values, "values"), "two-sided", confidence)
    return r["delta"], r["ci_low"], r["ci_high"]


def effect_ci(
    df: pd.DataFrame, *, low: float = -1.0, high: float = 1.0, by: Sequence[str] = ("layer",), confidence: float = 0.95
) -> pd.DataFrame:
    """Steering effect ``value(high) - value(low)`` per group, with a paired t-interval over examples.

    Args:
        df: tidy sweep rows of one metric (``coeff``, ``example_id``, ``value`` and the ``by`` columns).
        low, high: the two strengths compared (CAA's -1 and +1 by default).
        by: grouping columns, e.g. ``("method", "layer")``; groups keep their order of appearance.

    Returns:
        One row per group with both strengths: the ``by`` columns, ``effect``, ``lo``, ``hi``, ``sd`` (of
        the paired differences; NaN below 2 examples) and ``n`` (examples with both strengths).
    """
    _require(df, [*by, "coeff", "example_id", "value"], "effect_ci")
    if "metric" in df and df.metric.nunique() > 1:
        raise SteerlabError(f"effect_ci needs one metric, got {sorted(df.metric.unique())}; filter df first")
    missing = {low, high} - set(df.coeff.unique())
    if missing:
        present = sorted(df.coeff.unique())
        raise SteerlabError(f"effect_ci: no rows at coeff {sorted(missing)}; strengths present: {present}")
    rows = []
    for key, g in df.groupby(list(by), sort=False):
        wide = g.pivot_table(index="example_id", columns="coeff", values="value")
        if low not in wide or high not in wide:
            continue
        v = (wide[high] - wide[low]).dropna().to_numpy()
        if not len(v):
            continue
        mean, lo, hi = mean_ci(v, confidence) if len(v) > 1 else (float(v.mean()), np.nan, np.nan)
        sd = float(np.std(v, ddof=1)) if len(v) > 1 else np.nan
        rows.append({**dict(zip(by, key, strict=True)), "effect": mean, "lo": lo, "hi": hi, "sd": sd, "n": len(v)})
    return pd.DataFrame(rows, columns=[*by, "effect", "lo", "hi", "sd", "n"])


def holm(pvalues: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    """Holm's step-down adjusted p-values for a family of tests (Holm 1979).

    With the ``m`` p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of the ``i``-th is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where it is below ``alpha`` controls the
    family-wise error rate at ``alpha`` under any dependence between the tests. Use it where a claim
    picks a winner among several comparisons (methods, layers, tasks). NaN p-values (tests not run,
    e.g. on fewer than ``MIN_UNITS`` units) stay NaN and do not count towards ``m``.

    Args:
        pvalues: The family's p-values, in any order.

    Returns:
        The adjusted p-values, float64, in the input order.

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise SteerlabError(f"holm needs a 1-D list of p-values, got shape {p.shape}")
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise SteerlabError(f"p-values must lie in [0, 1], got {p[ok][(p[ok] < 0) | (p[ok] > 1)][:5].tolist()}")
    out = np.full(p.shape, np.nan)
    order = np.flatnonzero(ok)[np.argsort(p[ok], kind="stable")]
    m = order.size
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


# ----------------------------------------------------------------------------------------------
# tidy tables


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise SteerlabError(f"{what} needs a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise SteerlabError(f"{what} got an empty DataFrame; it needs rows with columns {list(columns)}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SteerlabError(f"{what} needs columns {missing}, which are missing; the frame has {list(df.columns)}")


def _paired_units(
    df: pd.DataFrame,
    by: Sequence[str],
    baseline: Mapping[str, Any],
    pair_on: Sequence[str],
    match_on: Sequence[str],
    what: str,
) -> pd.DataFrame:
    """One row per (group, match, unit): columns ``by + match_on + pair_on + [steered, base, delta]``."""
    _require(df, [*by, *pair_on, *match_on, *baseline, "value"], what)
    is_base = np.ones(len(df), dtype=bool)
    for col, val in baseline.items():
        is_base &= (df[col] == val).to_numpy()
    if not is_base.any():
        seen = {c: sorted(df[c].dropna().unique().tolist())[:10] for c in baseline}
        raise SteerlabError(
            f"no baseline rows match {dict(baseline)} (values present: {seen}); include unsteered runs "
            "(coeff == 0) or pass baseline={column: value} naming your baseline rows"
        )
    if is_base.all():
        raise SteerlabError(f"every row matches the baseline {dict(baseline)}: there are no steered rows to compare")
    keys = list(dict.fromkeys([*match_on, *pair_on]))
    # duplicates of a baseline unit (e.g. coeff 0 repeated for every layer of a sweep) are averaged
    base = df[is_base].groupby(keys, dropna=False)["value"].mean().rename("base").reset_index()
    steered_keys = list(dict.fromkeys([*by, *match_on, *pair_on]))
    steered = df[~is_base].groupby(steered_keys, dropna=False)["value"].mean().rename("steered").reset_index()
    merged = steered.merge(base, on=keys, how="left")
    unmatched = merged["base"].isna()
    if unmatched.all():
        raise SteerlabError(
            f"no steered row has a baseline row with the same {keys}; the baseline must be run for the "
            "same seeds (and tasks, metrics); pass match_on= to match on fewer columns"
        )
    if unmatched.any():
        logger.warning(
            "%d steered unit(s) have no baseline with the same %s and are dropped", int(unmatched.sum()), keys
        )
        merged = merged[~unmatched]
    merged["delta"] = merged["steered"] - merged["base"]
    return merged


def _defaults(df: pd.DataFrame, by, baseline, pair_on, match_on):
    baseline = {"coeff": 0.0} if baseline is None else dict(baseline)
    by = [c for c in _GROUP_COLUMNS if c in df.columns] if by is None else list(by)
    pair_on = ["seed"] if pair_on is None else list(pair_on)
    if match_on is None:
        match_on = [c for c in ("task", "category", "metric") if c in df.columns and c not in baseline]
    return by, baseline, pair_on, list(match_on)


def delta_table(
    df: pd.DataFrame,
    by: Sequence[str] | None = None,
    baseline: Mapping[str, Any] | None = None,
    pair_on: Sequence[str] | None = None,
    match_on: Sequence[str] | None = None,
    alternative: Alternative = "greater",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per-group steering effect with a paired test against the unsteered baseline (as `paired_test`).

    Expected columns: ``value``, the ``pair_on`` columns (default ``seed``), the ``baseline`` columns
    (default ``coeff``), and the grouping columns ``by`` (default: whichever of ``task, category,
    method, site, layer, coeff, metric`` are present).

    - Baseline rows are those where every ``baseline`` column equals its value (default
      ``{"coeff": 0.0}``: unsteered runs; ``{"method": "prompting"}`` compares against a baseline
      method). All other rows are steered.
    - Each steered row is matched to the baseline row with the same ``match_on`` (default: ``task``,
      ``category``, ``metric`` where present) and ``pair_on`` values. The unsteered model does not
      depend on method, layer, site or strength, so one baseline run per seed serves them all;
      repeated baseline rows for a unit (coeff 0 at every layer of a sweep) are averaged.
    - Values are first averaged within each (group, ``pair_on``) unit, so per-example rows become one
      value per seed; pass ``pair_on=("seed", "example_id")`` to test over examples instead.
    - A group pools the units of every ``match_on`` value it does not split on (``by`` without
      ``task`` pools the tasks' per-seed deltas, as `pooled_test` does).
    - Steered units with no baseline are dropped with a logged warning.

    Args:
        df: Tidy results frame.
        by: Columns that define one comparison (one output row).
        baseline: ``{column: value}`` selecting the baseline rows.
        pair_on: Columns identifying the unit of pairing (the test's ``n``).
        match_on: Extra columns a baseline row must share with a steered row.
        alternative: Direction of the test, as in `paired_test` (default: steering raises the metric).
        confidence: Level of the two-sided interval.

    Returns:
        One row per group: the ``by`` columns, then ``base_mean``, ``steered_mean``, ``delta``, ``sd``,
        ``n``, ``t``, ``p``, ``ci_low``, ``ci_high``.

    Example:
        >>> df = pd.DataFrame({
        ...     "task": "sycophancy", "method": "caa", "metric": "p_behaviour", "seed": [0, 1, 2] * 2,
        ...     "coeff": [0.0] * 3 + [4.0] * 3, "value": [0.30, 0.35, 0.32, 0.61, 0.70, 0.62]})
        >>> t = delta_table(df)
        >>> t[["task", "method", "coeff", "delta", "n"]].round(3).to_dict("records")
        [{'task': 'sycophancy', 'method': 'caa', 'coeff': 4.0, 'delta': 0.32, 'n': 3}]
    """
    by, baseline, pair_on, match_on = _defaults(df, by, baseline, pair_on, match_on)
    units = _paired_units(df, by, baseline, pair_on, match_on, "delta_table")
    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key, grp in units.groupby(by, dropna=False, sort=True) if by else [((), units)]:
            key = key if isinstance(key, tuple) else (key,)
            res = _one_sample(grp["delta"].to_numpy(dtype=float), alternative, confidence)
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "base_mean": float(grp["base"].mean()),
                    "steered_mean": float(grp["steered"].mean()),
                    **res,
                }
            )
    for msg in {str(w.message) for w in caught}:
        logger.warning("delta_table: %s", msg)
    return pd.DataFrame(rows, columns=[*by, "base_mean", "steered_mean", *_TEST_COLUMNS])


def pooled_test(
    df: pd.DataFrame,
    group_col: str = "category",
    by: Sequence[str] | None = None,
    baseline: Mapping[str, Any] | None = None,
    pair_on: Sequence[str] | None = None,
    alternative: Alternative = "greater",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Pooled test of the steering effect across the tasks of a category, plus Stouffer's z (Stouffer 1949).

    Input is the tidy frame of `delta_table` with a ``task`` column and a ``group_col`` column
    (default ``category``, e.g. ``"persona"`` for several persona tasks). Two views per group:

    - pooled: the per-(task, seed) deltas of all tasks in the group are put together and tested with
      a one-sample t-test (``n`` = tasks x seeds). This treats tasks as exchangeable, so tasks whose
      metric has a larger spread weigh more.
    - Stouffer: each task's one-sided p-value from `delta_table` becomes ``z_i = Phi^-1(1 - p_i)``
      and ``Z = sum(z_i) / sqrt(k)``; ``stouffer_p`` is its one-sided p (NaN if any task's p is NaN).
    - tasks as units: a one-sample t-test over the ``k`` per-task mean deltas (``task_t``, ``task_p``;
      NaN below three tasks, `MIN_UNITS`). The conservative view when seeds are not independent, e.g.
      random splits that reuse the same items (as PAS's 15 seeds do): tasks are then the only
      independent units.

    Args:
        df: Tidy results frame with ``task``, ``group_col``, ``seed``, ``value`` and the baseline column.
        group_col: Column naming the group of tasks to pool.
        by: Other columns that split the pooled comparison (default: whichever of ``method, site,
            layer, coeff, metric`` are present); ``group_col`` is always added.
        baseline: As in `delta_table`.
        pair_on: As in `delta_table`.
        alternative: Direction of both views (Stouffer supports ``"greater"`` and ``"less"``).
        confidence: Level of the pooled interval.

    Returns:
        One row per group: ``group_col`` and the ``by`` columns, then ``n_tasks``, ``delta``, ``sd``,
        ``n``, ``t``, ``p``, ``ci_low``, ``ci_high``, ``stouffer_z``, ``stouffer_p``, ``task_t``, ``task_p``.

    Example:
        >>> rows = [dict(category="persona", task=t, method="caa", metric="acc", seed=s, coeff=c,
        ...              value=0.5 + (0.1 + 0.01 * s) * c)
        ...         for t in "ab" for s in range(3) for c in (0.0, 1.0)]
        >>> r = pooled_test(pd.DataFrame(rows)).iloc[0]
        >>> int(r["n_tasks"]), int(r["n"]), round(float(r["delta"]), 3), bool(r["p"] < 0.01)
        (2, 6, 0.11, True)
    """
    if alternative == "two-sided":
        raise SteerlabError("pooled_test is one-sided: use alternative='greater' or 'less'")
    _require(df, ["task", group_col], "pooled_test")
    if by is None:
        by = [c for c in ("method", "site", "layer", "coeff", "metric") if c in df.columns and c != group_col]
    outer = [group_col, *[c for c in by if c not in (group_col, "task")]]
    b, baseline, pair_on, match_on = _defaults(df, [*outer, "task"], baseline, pair_on, None)
    units = _paired_units(df, b, baseline, pair_on, match_on, "pooled_test")
    per_task = delta_table(
        df, by=b, baseline=baseline, pair_on=pair_on, match_on=match_on, alternative=alternative, confidence=confidence
    )
    rows = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key, grp in units.groupby(outer, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            sel = np.ones(len(per_task), dtype=bool)
            for col, val in zip(outer, key, strict=True):
                sel &= (per_task[col] == val).to_numpy() | (per_task[col].isna() & pd.isna(val)).to_numpy()
            ps = per_task.loc[sel, "p"].to_numpy(dtype=float)
            if np.isnan(ps).any():
                z = zp = math.nan
            else:
                zs = sps.norm.isf(ps) if alternative == "greater" else sps.norm.ppf(ps)
                z = float(np.sum(zs) / math.sqrt(len(zs)))
                zp = float(sps.norm.sf(z)) if alternative == "greater" else float(sps.norm.cdf(z))
            res = _one_sample(grp["delta"].to_numpy(dtype=float), alternative, confidence)
            means = grp.groupby("task")["delta"].mean().to_numpy(dtype=float)
            by_task = _one_sample(means, alternative, confidence) if len(means) > 1 else {"t": math.nan, "p": math.nan}
            rows.append(
                {
                    **dict(zip(outer, key, strict=True)),
                    "n_tasks": int(grp["task"].nunique()),
                    **res,
                    "stouffer_z": z,
                    "stouffer_p": zp,
                    "task_t": by_task["t"],
                    "task_p": by_task["p"],
                }
            )
    for msg in {str(w.message) for w in caught}:
        logger.warning("pooled_test: %s", msg)
    return pd.DataFrame(
        rows, columns=[*outer, "n_tasks", *_TEST_COLUMNS, "stouffer_z", "stouffer_p", "task_t", "task_p"]
    )


# ----------------------------------------------------------------------------------------------
# steerability


def steerability(df: pd.DataFrame, by: Sequence[str] | None = None, x: str = "coeff") -> pd.DataFrame:
    """Per-example steerability: least-squares slope of the metric against strength (Tan et al. 2024).

    "Analyzing the generalization and reliability of steering vectors" measures, for each example,
    how fast the behaviour moves with the steering multiplier; a negative slope means steering
    pushes that example the wrong way ("anti-steerable").

    Args:
        df: Tidy frame with ``example_id``, ``coeff`` (or ``x``) and ``value``; every example needs at
            least two distinct strengths.
        by: Group columns kept in the output (default: whichever of ``task, category, method, site,
            layer, metric, seed`` are present); one slope per (group, example).
        x: Column holding the strength.

    Returns:
        One row per (group, example): the ``by`` columns, ``example_id``, ``slope``, ``intercept``
        and ``n_points``.

    Example:
        >>> df = pd.DataFrame({"example_id": [0, 0, 1, 1], "coeff": [0.0, 2.0] * 2, "value": [1, 3, 1, 0]})
        >>> steerability(df)["slope"].tolist()
        [1.0, -0.5]
    """
    _require(df, ["example_id", x, "value"], "steerability")
    if by is None:
        by = [c for c in ("task", "category", "method", "site", "layer", "metric", "seed") if c in df.columns]
    keys = [*by, "example_id"]
    _require(df, keys, "steerability")
    d = df[[*keys, x, "value"]].copy()
    d[x] = d[x].astype(float)
    d["value"] = d["value"].astype(float)
    if not np.isfinite(d[[x, "value"]].to_numpy()).all():
        raise SteerlabError(f"steerability needs finite {x} and value; drop the rows with NaN or inf first")
    g = d.groupby(keys, dropna=False, sort=True)
    dx = d[x] - g[x].transform("mean")
    dy = d["value"] - g["value"].transform("mean")
    parts = pd.DataFrame(
        {"sxy": dx * dy, "sxx": dx * dx, "mx": g[x].transform("mean"), "my": g["value"].transform("mean")}
    )
    for k in keys:
        parts[k] = d[k]
    agg = parts.groupby(keys, dropna=False, sort=True).agg(
        sxy=("sxy", "sum"), sxx=("sxx", "sum"), mx=("mx", "first"), my=("my", "first"), n_points=("sxy", "size")
    )
    flat = agg["sxx"] <= 1e-12 * (1.0 + agg["mx"].abs()) ** 2
    if flat.any():
        bad = agg.index[flat][:5].tolist()
        raise SteerlabError(
            f"{int(flat.sum())} example(s) were run at a single strength, so no slope exists (e.g. {bad}); "
            f"each example needs at least two distinct values of {x!r}"
        )
    agg["slope"] = agg["sxy"] / agg["sxx"]
    agg["intercept"] = agg["my"] - agg["slope"] * agg["mx"]
    out = agg.reset_index()[[*keys, "slope", "intercept", "n_points"]]
    out["n_points"] = out["n_points"].astype(int)
    return out


def anti_steerable_fraction(slopes: pd.DataFrame | pd.Series | Sequence[float] | np.ndarray) -> float:
    """Fraction of examples whose steerability slope is negative (Tan et al. 2024).

    Args:
        slopes: The output of `steerability` (its ``slope`` column is used) or the slopes themselves.

    Returns:
        The fraction in ``[0, 1]``.

    Example:
        >>> anti_steerable_fraction([1.0, -0.5, 2.0, 0.0])
        0.25
    """
    if isinstance(slopes, pd.DataFrame):
        _require(slopes, ["slope"], "anti_steerable_fraction")
        slopes = slopes["slope"]
    arr = _as_1d(slopes, "slopes")
    return float(np.mean(arr < 0))
