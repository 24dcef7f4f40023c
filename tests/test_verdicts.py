"""Tests for steerlab.verdicts: each rule, its order, and the one-line text."""

import json
import math

import pytest

from steerlab.errors import SteerlabError
from steerlab.verdicts import IN_BAND, NO_EFFECT, PUSH, STEERS, UNDERPOWERED, VERDICTS, verdict

BAND = (-0.04, 0.05)


def test_steers_needs_interval_band_and_same_sign():
    v = verdict(0.12, (0.05, 0.19), null_band=BAND, per_label={"A": (0.1, 0.02, 0.18), "B": 0.14}, mde=0.06, n=100)
    assert v.label == STEERS and str(v) == v.text
    assert v.text.startswith("steers: +0.120 [+0.050, +0.190], outside the random band [-0.040, +0.050]")
    # a negative oriented effect also steers (the vector moves the metric down)
    assert verdict(-0.2, (-0.3, -0.1), null_band=BAND, per_label={"A": -0.1, "B": -0.3}, mde=0.06).label == STEERS
    # no control run: steers on the interval alone, and says so
    v = verdict(0.12, (0.05, 0.19), mde=0.06)
    assert v.label == STEERS and "no random-direction control" in v.text


def test_answer_token_push():
    # both halves clearly move, in opposite directions: the overall effect may even be small
    v = verdict(0.01, (-0.03, 0.05), null_band=BAND, per_label={"A": (0.2, 0.1, 0.3), "B": (-0.18, -0.3, -0.1)},
                mde=0.06)  # fmt: skip
    assert v.label == PUSH and "A +0.200, B -0.180" in v.text
    # one half moves, the other goes the other way within noise: still not steering
    v = verdict(0.1, (0.02, 0.18), null_band=BAND, per_label={"A": (0.2, 0.1, 0.3), "B": (-0.01, -0.1, 0.08)},
                mde=0.06)  # fmt: skip
    assert v.label == PUSH
    # bare numbers of opposite sign count as a disagreement
    assert verdict(0.1, (0.02, 0.18), null_band=BAND, per_label={"A": 0.2, "B": -0.01}, mde=0.06).label == PUSH


def test_opposite_signs_within_noise_are_not_a_push():
    # nothing moves: halves of opposite sign are noise, and the test had power
    v = verdict(0.01, (-0.03, 0.05), null_band=(-0.01, 0.005), per_label={"A": (0.03, -0.05, 0.1),
                "B": (-0.01, -0.08, 0.06)}, mde=0.06)  # fmt: skip
    assert v.label == NO_EFFECT and v.text.startswith("no effect (MDE = 0.060): ")


def test_within_random_band_even_when_significant():
    v = verdict(0.04, (0.01, 0.07), null_band=(-0.08, 0.08), per_label={"A": 0.03, "B": 0.05}, mde=0.03)
    assert v.label == IN_BAND and "inside the random band [-0.080, +0.080]" in v.text and "MDE 0.030" in v.text
    # the band's edge counts as inside
    assert verdict(0.08, (0.01, 0.15), null_band=(-0.08, 0.08), mde=0.03).label == IN_BAND


def test_no_effect_versus_underpowered():
    ci = (-0.02, 0.1)
    assert verdict(0.04, ci, null_band=BAND, mde=0.08).label == IN_BAND  # the band is checked before power
    # outside the band but the interval includes 0: the MDE decides
    assert verdict(0.06, ci, null_band=BAND, mde=0.08).label == NO_EFFECT
    assert verdict(0.06, ci, null_band=BAND, mde=0.08, reference=0.1).label == NO_EFFECT
    v = verdict(0.06, ci, null_band=BAND, mde=0.25, reference=0.1)
    assert v.label == UNDERPOWERED and "MDE 0.250 vs reference 0.100" in v.text
    assert verdict(0.06, ci, null_band=BAND, mde=math.nan).label == UNDERPOWERED


def test_too_few_units_is_underpowered_first():
    v = verdict(0.5, (0.4, 0.6), null_band=BAND, mde=0.1, n=2)
    assert v.label == UNDERPOWERED and "fewer than 3" in v.text
    assert verdict(0.5, (math.nan, math.nan), mde=0.1).label == UNDERPOWERED


def test_to_dict_is_json_ready_and_labels_are_listed():
    v = verdict(0.12, (0.05, 0.19), null_band=BAND, per_label={"A": 0.1, "B": 0.14}, mde=0.06, n=100)
    d = json.loads(json.dumps(v.to_dict()))
    assert d["label"] == STEERS and d["ci"] == [0.05, 0.19] and d["null_band"] == [-0.04, 0.05] and d["n"] == 100
    assert set(VERDICTS) == {STEERS, PUSH, IN_BAND, NO_EFFECT, UNDERPOWERED}


def test_errors():
    with pytest.raises(SteerlabError, match="lo > hi"):
        verdict(0.1, (0.2, 0.0), mde=0.1)
    with pytest.raises(SteerlabError, match="pair"):
        verdict(0.1, (0.2,), mde=0.1)
    with pytest.raises(SteerlabError, match="one label"):
        verdict(0.1, (0.0, 0.2), per_label={"A": 0.1}, mde=0.1)
    with pytest.raises(SteerlabError, match="effect, lo, hi"):
        verdict(0.1, (0.0, 0.2), per_label={"A": (0.1, 0.2), "B": 0.1}, mde=0.1)
    with pytest.raises(SteerlabError, match="finite"):
        verdict(math.nan, (0.0, 0.2), mde=0.1)
