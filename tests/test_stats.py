"""Tests for steerlab.stats against scipy and hand-computed oracles."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from steerlab.errors import SteerlabError
from steerlab.stats import (
    anti_steerable_fraction,
    delta_table,
    effect_ci,
    holm,
    mean_ci,
    paired_test,
    pooled_test,
    steerability,
)

# ---------------------------------------------------------------------------------------------- paired_test


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_test_matches_scipy(alternative, seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(0.5, 0.1, size=12)
    steered = base + rng.normal(0.05, 0.1, size=12)
    r = paired_test(steered, base, alternative=alternative)
    ref = sps.ttest_rel(steered, base, alternative=alternative)
    assert r["t"] == pytest.approx(ref.statistic)
    assert r["p"] == pytest.approx(ref.pvalue)
    assert r["n"] == 12
    assert r["delta"] == pytest.approx(np.mean(steered - base))
    assert r["sd"] == pytest.approx(np.std(steered - base, ddof=1))
    lo, hi = ref.confidence_interval(0.95) if alternative == "two-sided" else (None, None)
    if lo is not None:
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi))
    assert r["ci_low"] < r["delta"] < r["ci_high"]


def test_paired_test_one_pair_warns_and_returns_nan():
    with pytest.warns(RuntimeWarning, match="only one"):
        r = paired_test([0.7], [0.5])
    assert r["n"] == 1 and r["delta"] == pytest.approx(0.2)
    assert all(math.isnan(r[k]) for k in ("sd", "t", "p", "ci_low", "ci_high"))


def test_paired_test_zero_variance():
    with pytest.warns(RuntimeWarning, match="zero variance"):
        r = paired_test([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert r["t"] == math.inf and r["p"] == 0.0
    assert r["ci_low"] == pytest.approx(0.1) and r["ci_high"] == pytest.approx(0.1)
    with pytest.warns(RuntimeWarning):
        r = paired_test([0.5, 0.5], [0.5, 0.5])
    assert math.isnan(r["t"]) and math.isnan(r["p"]) and r["delta"] == 0.0
    with pytest.warns(RuntimeWarning):
        assert paired_test([0.4, 0.4, 0.4], [0.5, 0.5, 0.5])["p"] == 1.0


def test_paired_test_two_pairs_gives_no_p_value():
    with pytest.warns(RuntimeWarning, match="fewer than 3 units"):
        r = paired_test([0.7, 0.9], [0.5, 0.6])
    assert math.isnan(r["t"]) and math.isnan(r["p"]) and r["n"] == 2
    # the mean and the (wide, one degree of freedom) interval are still reported
    ref = sps.t.interval(0.95, 1, loc=0.25, scale=sps.sem([0.2, 0.3]))
    assert r["delta"] == pytest.approx(0.25) and (r["ci_low"], r["ci_high"]) == pytest.approx(ref)


def test_paired_test_errors():
    with pytest.raises(SteerlabError, match="one base value per steered value"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(SteerlabError, match="non-finite"):
        paired_test([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(SteerlabError, match="empty"):
        paired_test([], [])
    with pytest.raises(SteerlabError, match="alternative"):
        paired_test([1.0, 2.0], [0.0, 0.0], alternative="bigger")


# ---------------------------------------------------------------------------------------------- mean_ci


def test_mean_ci_matches_t_interval_and_contains_mean():
    x = np.array([0.2, 0.5, 0.3, 0.9, 0.4])
    m, lo, hi = mean_ci(x)
    ref = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert m == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx(ref)
    assert lo < m < hi
    _, lo99, hi99 = mean_ci(x, confidence=0.99)
    assert lo99 < lo and hi < hi99


def test_mean_ci_single_value():
    with pytest.warns(RuntimeWarning):
        m, lo, hi = mean_ci([3.0])
    assert m == 3.0 and math.isnan(lo) and math.isnan(hi)


# ---------------------------------------------------------------------------------------------- delta_table


def sweep_frame(effects=(("caa", 0.2), ("pca", 0.0)), tasks=("syc", "refusal"), seeds=5, per_layer_base=True):
    """Tidy frame: base at coeff 0 (repeated per method and layer), steered at coeff 1 with known effects."""
    effects = dict(effects)
    rng = np.random.default_rng(0)
    rows = []
    for task in tasks:
        for seed in range(seeds):
            base = 0.5 + 0.05 * rng.normal()
            for method, eff in effects.items():
                for layer in (3, 5) if per_layer_base else (3,):
                    rows.append(
                        dict(
                            task=task,
                            category="persona",
                            method=method,
                            layer=layer,
                            site="resid_post",
                            coeff=0.0,
                            seed=seed,
                            metric="p",
                            value=base,
                        )
                    )
                for layer in (3, 5):
                    noise = 0.01 * rng.normal()
                    rows.append(
                        dict(
                            task=task,
                            category="persona",
                            method=method,
                            layer=layer,
                            site="resid_post",
                            coeff=1.0,
                            seed=seed,
                            metric="p",
                            value=base + eff * (layer == 3) + noise,
                        )
                    )
    return pd.DataFrame(rows)


def test_delta_table_recovers_effects_and_matches_paired_test():
    df = sweep_frame()
    t = delta_table(df)
    assert list(t.columns) == [
        "task",
        "category",
        "method",
        "site",
        "layer",
        "coeff",
        "metric",
        "base_mean",
        "steered_mean",
        "delta",
        "sd",
        "n",
        "t",
        "p",
        "ci_low",
        "ci_high",
    ]
    assert len(t) == 2 * 2 * 2  # task x method x layer
    assert (t["n"] == 5).all() and (t["coeff"] == 1.0).all()
    row = t[(t.task == "syc") & (t.method == "caa") & (t.layer == 3)].iloc[0]
    assert row["delta"] == pytest.approx(0.2, abs=0.02) and row["p"] < 1e-3
    assert row["ci_low"] < row["delta"] < row["ci_high"]
    null = t[(t.method == "pca")]
    assert (null["delta"].abs() < 0.03).all()
    # same numbers as paired_test on the per-seed values
    s = df[(df.task == "syc") & (df.method == "caa") & (df.layer == 3)].sort_values("seed")
    ref = paired_test(s[s.coeff == 1]["value"].to_numpy(), s[s.coeff == 0]["value"].to_numpy())
    for k in ("delta", "sd", "t", "p", "ci_low", "ci_high"):
        assert row[k] == pytest.approx(ref[k])


def test_delta_table_shared_baseline_without_layer():
    # baseline run once per seed (layer NaN, method "none"): it serves every method and layer
    df = sweep_frame(per_layer_base=False)
    df = df[df.coeff != 0]
    base = sweep_frame(per_layer_base=False)
    base = base[(base.coeff == 0) & (base.method == "caa")].assign(method="none", layer=np.nan)
    t = delta_table(pd.concat([df, base]), by=["task", "method", "layer"])
    assert len(t) == 8 and (t["n"] == 5).all()
    assert t.set_index(["task", "method", "layer"]).loc[("syc", "caa", 3), "delta"] == pytest.approx(0.2, abs=0.02)


def test_delta_table_baseline_method_and_examples():
    rows = []
    for seed in range(3):
        for ex in range(4):
            rows.append(dict(method="prompting", seed=seed, example_id=ex, metric="acc", value=0.5 + 0.01 * ex))
            rows.append(dict(method="caa", seed=seed, example_id=ex, metric="acc", value=0.6 + 0.01 * ex + 0.01 * seed))
    df = pd.DataFrame(rows)
    per_seed = delta_table(df, by=["method", "metric"], baseline={"method": "prompting"})
    assert per_seed.iloc[0]["n"] == 3 and per_seed.iloc[0]["delta"] == pytest.approx(0.11)
    per_ex = delta_table(df, by=["method", "metric"], baseline={"method": "prompting"}, pair_on=["seed", "example_id"])
    assert per_ex.iloc[0]["n"] == 12


def test_delta_table_errors():
    df = sweep_frame()
    with pytest.raises(SteerlabError, match="no baseline rows"):
        delta_table(df[df.coeff != 0])
    with pytest.raises(SteerlabError, match="no steered rows"):
        delta_table(df[df.coeff == 0])
    with pytest.raises(SteerlabError, match=r"\[.seed.\], which are missing"):
        delta_table(df.drop(columns="seed"))
    with pytest.raises(SteerlabError, match="empty"):
        delta_table(df.iloc[:0])
    shifted = df.copy()
    shifted.loc[shifted.coeff == 0, "seed"] += 100
    with pytest.raises(SteerlabError, match="same seeds"):
        delta_table(shifted)


# ---------------------------------------------------------------------------------------------- pooled_test


def test_pooled_test_pools_task_deltas_and_stouffer():
    df = sweep_frame(tasks=("syc", "refusal", "power"))
    pooled = pooled_test(df[df.layer == 3])
    assert set(pooled.columns) >= {"category", "method", "n_tasks", "delta", "p", "stouffer_z", "stouffer_p"}
    caa = pooled[pooled.method == "caa"].iloc[0]
    assert caa["n_tasks"] == 3 and caa["n"] == 15
    # pooled numbers equal a one-sample test on all (task, seed) deltas
    sub = df[(df.layer == 3) & (df.method == "caa")]
    deltas = (
        sub[sub.coeff == 1].set_index(["task", "seed"])["value"]
        - sub[sub.coeff == 0].set_index(["task", "seed"])["value"]
    )
    ref = sps.ttest_1samp(deltas.to_numpy(), 0.0, alternative="greater")
    assert caa["t"] == pytest.approx(ref.statistic) and caa["p"] == pytest.approx(ref.pvalue)
    # Stouffer from the per-task p-values
    per_task = delta_table(df[(df.layer == 3) & (df.method == "caa")])
    ref_z = sps.combine_pvalues(per_task["p"].to_numpy(), method="stouffer")
    assert caa["stouffer_p"] == pytest.approx(ref_z.pvalue)
    assert caa["stouffer_z"] == pytest.approx(ref_z.statistic)
    # tasks as units: a one-sample test over the per-task mean deltas
    ref_task = sps.ttest_1samp(deltas.groupby(level="task").mean().to_numpy(), 0.0, alternative="greater")
    assert caa["task_t"] == pytest.approx(ref_task.statistic) and caa["task_p"] == pytest.approx(ref_task.pvalue)


def test_pooled_test_needs_task_and_group():
    with pytest.raises(SteerlabError, match="category"):
        pooled_test(sweep_frame().drop(columns="category"))


# ---------------------------------------------------------------------------------------------- steerability


def test_steerability_recovers_linear_slopes_exactly():
    slopes = {0: 2.0, 1: -0.5, 2: 0.0, 3: 1.25}
    rows = [
        dict(method="caa", example_id=ex, coeff=c, value=3.0 + s * c)
        for ex, s in slopes.items()
        for c in (-2.0, -1.0, 0.0, 1.0, 2.0)
    ]
    out = steerability(pd.DataFrame(rows))
    assert list(out.columns) == ["method", "example_id", "slope", "intercept", "n_points"]
    assert out["slope"].tolist() == pytest.approx(list(slopes.values()), abs=1e-12)
    assert out["intercept"].tolist() == pytest.approx([3.0] * 4)
    assert (out["n_points"] == 5).all()
    assert anti_steerable_fraction(out) == 0.25


def test_steerability_matches_linregress_on_noisy_data():
    rng = np.random.default_rng(0)
    c = np.repeat([[0.0, 0.5, 1.0, 2.0]], 3, axis=0).ravel()
    ex = np.repeat([0, 1, 2], 4)
    v = rng.normal(size=c.size)
    out = steerability(pd.DataFrame({"example_id": ex, "coeff": c, "value": v}))
    for i in range(3):
        assert out["slope"][i] == pytest.approx(sps.linregress(c[ex == i], v[ex == i]).slope)


def test_steerability_errors():
    with pytest.raises(SteerlabError, match="two distinct"):
        steerability(pd.DataFrame({"example_id": [0, 0, 1, 1], "coeff": [1.0, 1.0, 0.0, 1.0], "value": [1, 2, 3, 4]}))
    with pytest.raises(SteerlabError, match="example_id"):
        steerability(pd.DataFrame({"coeff": [0.0, 1.0], "value": [1.0, 2.0]}))


def test_anti_steerable_fraction():
    assert anti_steerable_fraction([1.0, -0.1, -2.0, 0.0]) == 0.5
    assert anti_steerable_fraction(pd.Series([0.3, 0.2])) == 0.0
    with pytest.raises(SteerlabError, match="empty"):
        anti_steerable_fraction([])


def test_effect_ci_is_the_paired_difference_of_high_and_low_per_group():
    rng = np.random.default_rng(0)
    rows = []
    for layer, shift in [(3, 0.2), (5, -0.1)]:
        for i in range(20):
            base = rng.normal()
            for coeff, value in [(-1.0, base), (0.0, base + 1.0), (1.0, base + shift + 0.01 * rng.normal())]:
                rows.append({"layer": layer, "example_id": i, "coeff": coeff, "value": value})
    df = pd.DataFrame(rows)
    out = effect_ci(df).set_index("layer")
    for layer, shift in [(3, 0.2), (5, -0.1)]:
        d = df[df.layer == layer].pivot(index="example_id", columns="coeff", values="value")
        diff = (d[1.0] - d[-1.0]).to_numpy()
        lo, hi = sps.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=sps.sem(diff))
        assert out.loc[layer, "effect"] == pytest.approx(diff.mean())
        assert (out.loc[layer, "lo"], out.loc[layer, "hi"]) == pytest.approx((lo, hi))
        assert out.loc[layer, "lo"] < shift < out.loc[layer, "hi"]
        assert out.loc[layer, "sd"] == pytest.approx(diff.std(ddof=1))
        assert out.loc[layer, "n"] == 20
    assert list(effect_ci(df.iloc[::-1]).layer) == [5, 3]  # groups in order of appearance
    with pytest.raises(SteerlabError, match="no rows at coeff"):
        effect_ci(df, high=2.0)


# ---------------------------------------------------------------------------------------------- holm


def test_holm_hand_computed():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> max so far 0.06)
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.02]), [0.02])


def test_holm_nan_is_left_out_of_the_family():
    out = holm([0.01, float("nan"), 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(0).uniform(0, 0.2, size=12)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])


def test_holm_errors():
    with pytest.raises(SteerlabError, match=r"\[0, 1\]"):
        holm([0.1, 1.5])
    with pytest.raises(SteerlabError, match="1-D"):
        holm([[0.1, 0.2]])


def test_pooled_test_two_tasks_gives_no_task_p():
    df = sweep_frame(tasks=("a", "b"))
    r = pooled_test(df).iloc[0]
    assert int(r["n_tasks"]) == 2 and math.isnan(r["task_p"]) and math.isnan(r["task_t"])
    assert r["p"] < 0.05  # the pooled test over tasks x seeds (n = 10) still runs
