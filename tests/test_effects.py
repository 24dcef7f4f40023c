"""Cell effects (`steerlab.effects`): exact oracles on hand-made sweep frames."""

import math

import numpy as np
import pandas as pd
import pytest

from steerlab.controls import null_band
from steerlab.effects import cell_effects, label_effects, letter_distribution, toward_chance
from steerlab.errors import SteerlabError
from steerlab.power import mde_paired
from steerlab.stats import mean_ci

BASE = np.array([0.40, 0.50, 0.60, 0.45, 0.55, 0.50])
STEERED = np.array([0.50, 0.62, 0.66, 0.50, 0.70, 0.58])
LABELS = ["Yes", "No", "Yes", "No", "Yes", "No"]
RANDOM = [0.01, -0.02, 0.015, 0.0, -0.01]  # each random direction's shift, the same on every item


def frame():
    rows = []

    def cell(direction, fraction, values):
        for i, (v, y) in enumerate(zip(values, LABELS, strict=True)):
            rows.append({"method": "caa", "seed": 0, "direction": direction, "layer": 3, "site": "resid_post",
                         "fraction": fraction, "coeff": 10 * fraction, "metric": "p", "value": v, "example_id": i,
                         "label": y})  # fmt: skip

    cell("vector", 0.0, BASE)
    cell("vector", 0.25, STEERED)
    for k, shift in enumerate(RANDOM):
        cell(f"random:{k}", 0.25, BASE + shift)
    return pd.DataFrame(rows)


def test_cell_effect_interval_band_mde_and_verdict():
    eff = cell_effects(frame(), "p")
    assert len(eff) == 1
    row = eff.iloc[0]
    diff = STEERED - BASE
    mean, lo, hi = mean_ci(diff)
    assert (row.effect, row.lo, row.hi) == pytest.approx((mean, lo, hi), abs=1e-12)
    assert row.sd == pytest.approx(diff.std(ddof=1), abs=1e-12) and row.n == 6
    assert row.mde == pytest.approx(mde_paired(6, diff.std(ddof=1)), abs=1e-12)
    assert (row.null_lo, row.null_hi) == pytest.approx(null_band(RANDOM), abs=1e-12)
    assert row.k_controls == 5 and row.fraction == 0.25 and row.coeff == 2.5
    assert row.base == pytest.approx(BASE.mean()) and row.steered == pytest.approx(STEERED.mean())
    assert row.verdict == "steers" and "same sign on No" in row.verdict_text


def test_opposite_labels_are_an_answer_token_push():
    df = frame()
    yes = (df.label == "Yes") & (df.direction == "vector") & (df.fraction == 0.25)
    df.loc[yes, "value"] = df.loc[yes, "value"] - 0.3  # Yes items fall, No items rise
    assert cell_effects(df, "p").iloc[0].verdict == "answer-token push"


def test_without_controls_there_is_no_band():
    df = frame()
    row = cell_effects(df[~df.direction.str.startswith("random")], "p").iloc[0]
    assert row.k_controls == 0 and math.isnan(row.null_lo) and row.verdict == "steers"


def test_label_effects_are_the_paired_means_per_label():
    eff = label_effects(frame(), "p").set_index("label")
    diff = STEERED - BASE
    for label in ("Yes", "No"):
        pick = [i for i, y in enumerate(LABELS) if y == label]
        assert eff.loc[label, "effect"] == pytest.approx(diff[pick].mean(), abs=1e-12)
        assert eff.loc[label, "n"] == 3


def test_a_sweep_without_its_unsteered_cell_is_refused():
    df = frame()
    with pytest.raises(SteerlabError, match="no unsteered rows"):
        cell_effects(df[df.fraction != 0.0], "p")
    with pytest.raises(SteerlabError, match="no rows for metric"):
        cell_effects(df, "accuracy")


def test_letter_distribution_counts_predictions():
    rows = [{"method": "m", "seed": 0, "direction": "vector", "layer": 1, "site": "resid_post", "fraction": f,
             "coeff": f, "metric": "pred", "value": v, "example_id": i}
            for f, preds in ((0.0, [0, 1, 2, 0]), (0.5, [0, 0, 0, 1])) for i, v in enumerate(preds)]  # fmt: skip
    dist = letter_distribution(pd.DataFrame(rows), n_options=4)
    base = dist[dist.fraction == 0.0].set_index("letter").share.to_dict()
    steered = dist[dist.fraction == 0.5].set_index("letter").share.to_dict()
    assert base == {"A": 0.5, "B": 0.25, "C": 0.25, "D": 0.0}
    assert steered == {"A": 0.75, "B": 0.25, "C": 0.0, "D": 0.0}


def test_toward_chance_finds_a_push_to_chance():
    base = np.array([0.10, 0.20, 0.30, 0.40, 0.50])
    f = pd.DataFrame({"base": base, "chance": 0.25, "delta": -0.8 * (base - 0.25)})  # each task moves 80% of the way
    fit = toward_chance(f)
    assert fit["slope"] == pytest.approx(-0.8) and fit["r"] == pytest.approx(-1.0) and fit["n"] == 5
    assert math.isnan(toward_chance(f.iloc[:2])["slope"])
