"""Positive controls (`steerlab.positive_controls`): the shipped data, rescoring, per-label bands, the margin;
and, on the real model, sentiment steering that must beat the random band clearly (and fails when zeroed)."""

import math

import numpy as np
import pandas as pd
import pytest

from steerlab import positive_controls as pc
from steerlab.controls import null_band
from steerlab.effects import cell_effects
from steerlab.errors import SteerlabError

# ------------------------------------------------------------------------------------------ the data


def test_the_shipped_sentences_are_balanced_text_label_files():
    for name in pc.CONTROLS:
        items = pc.sentences(name)
        labels = [it.label for it in items]
        assert labels.count(1) == labels.count(0) >= 20, name
        assert len({it.text for it in items}) == len(items), f"{name} repeats a sentence"
    topic = ("wedding", "bride", "groom", "married", "marriage", "vows", "engaged", "altar", "honeymoon", "husband")
    for it in pc.sentences("weddings"):
        assert any(w in it.text.lower() for w in topic) == (it.label == 1), it.text


def test_the_prompts_are_neutral_and_distinct():
    prompts = pc.prompts()
    assert len(prompts) == len(set(prompts)) >= 40
    words = {"wedding", "bride", "groom", "marriage", "love", "hate", "happy", "sad", "terrible", "wonderful"}
    assert not [p for p in prompts if words & set(p.lower().replace(".", " ").replace("?", " ").split())]


def test_prompt_split_is_disjoint_seeded_and_checked():
    val, test = pc.prompt_split(20, 40, seed=0)
    assert (len(val), len(test)) == (20, 40) and not set(val) & set(test)
    assert pc.prompt_split(20, 40, seed=0) == (val, test) and pc.prompt_split(20, 40, seed=1) != (val, test)
    with pytest.raises(SteerlabError, match="sum to at most the 60 prompts"):
        pc.prompt_split(30, 40)
    with pytest.raises(SteerlabError, match="unknown positive control 'love'"):
        pc.sentences("love")
    with pytest.raises(SteerlabError, match="valid: sentiment, weddings, prompts"):
        pc.path("nope")


# ------------------------------------------------------------------------------------------ frames


def generation_frame():
    """A hand-made generation sweep: base, the vector at +-0.25 and three random directions at 0.25."""
    rows = []
    texts = {("vector", 0.0): ["ab", "abc", "a"], ("vector", 0.25): ["abcd", "abcde", "abc"],
             ("vector", -0.25): ["", "a", ""]}  # fmt: skip
    texts |= {(f"random:{k}", 0.25): ["ab" + "x" * k, "abc", "a"] for k in range(3)}
    for (direction, fraction), cell in texts.items():
        for i, t in enumerate(cell):
            rows.append({"method": "caa", "seed": 0, "direction": direction, "layer": 3, "site": "resid_post",
                         "fraction": fraction, "coeff": 8 * fraction, "metric": "vader", "value": 0.0,
                         "example_id": i, "text": t})  # fmt: skip
    return pd.DataFrame(rows)


class Length:
    name = "length"

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return np.array([len(t) for t in texts], dtype=float)


def test_rescore_scores_each_distinct_text_once_and_keeps_the_cells():
    df, scorer = generation_frame(), Length()
    out = pc.rescore(df, scorer)
    assert list(out.value) == [len(t) for t in df.text] and set(out.metric) == {"length"}
    assert len(scorer.calls) == 1 and sorted(scorer.calls[0]) == sorted(set(df.text))
    eff = cell_effects(out, "length").set_index("fraction")
    assert eff.loc[0.25, "effect"] == pytest.approx(2.0) and eff.loc[-0.25, "effect"] == pytest.approx(-5 / 3)
    assert (eff.loc[0.25, "null_lo"], eff.loc[0.25, "null_hi"]) == pytest.approx(null_band([0.0, 1 / 3, 2 / 3]))


def test_rescore_refuses_frames_without_texts_or_with_several_metrics():
    df = generation_frame()
    with pytest.raises(SteerlabError, match="'text' column"):
        pc.rescore(df.drop(columns="text"), Length())
    with pytest.raises(SteerlabError, match="say which to rescore"):
        pc.rescore(pd.concat([df, df.assign(metric="other")]), Length())
    short = type("Short", (), {"name": "short", "__call__": lambda self, texts: [1.0]})()
    with pytest.raises(SteerlabError, match="returned 1 scores"):
        pc.rescore(df, short)


def test_example_texts_show_each_item_unsteered_steered_both_ways_and_random():
    out = pc.example_texts(generation_frame(), 0.25, prompts=["p0", "p1", "p2"], n=2)
    assert list(out.prompt) == ["p0"] * 4 + ["p1"] * 4
    assert list(out.cell[:4]) == ["unsteered", "vector +0.25", "vector -0.25", "random:0 +0.25"]
    assert list(out.text[:4]) == ["ab", "abcd", "", "ab"]
    with pytest.raises(SteerlabError, match="'text' column"):
        pc.example_texts(generation_frame().drop(columns="text"), 0.25)


def test_label_curves_give_each_label_its_own_band():
    rows = []
    labels = ["Yes", "No"] * 3

    def cell(direction, fraction, shift_yes, shift_no):
        for i, lab in enumerate(labels):
            v = 0.5 + 0.01 * i + (shift_yes if lab == "Yes" else shift_no)
            rows.append({"method": "caa", "seed": 0, "direction": direction, "layer": 2, "site": "resid_post",
                         "fraction": fraction, "coeff": fraction, "metric": "p_behaviour", "value": v,
                         "example_id": i, "label": lab})  # fmt: skip

    cell("vector", 0.0, 0, 0)
    cell("vector", 0.5, 0.2, -0.1)
    for k, (y, n) in enumerate([(0.1, -0.1), (0.12, -0.08), (0.08, -0.12)]):  # random directions push "Yes" too
        cell(f"random:{k}", 0.5, y, n)
    curves = pc.label_curves(pd.DataFrame(rows), "p_behaviour").set_index("label")
    assert curves.loc["Yes", "effect"] == pytest.approx(0.2) and curves.loc["No", "effect"] == pytest.approx(-0.1)
    assert (curves.loc["Yes", "null_lo"], curves.loc["Yes", "null_hi"]) == pytest.approx(null_band([0.1, 0.12, 0.08]))
    assert (curves.loc["No", "null_lo"], curves.loc["No", "null_hi"]) == pytest.approx(null_band([-0.1, -0.08, -0.12]))
    with pytest.raises(SteerlabError, match="needs answer labels"):
        pc.label_curves(generation_frame(), "vader")


@pytest.mark.parametrize(
    ("effect", "ci", "band", "expected"),
    [
        (0.8, (0.6, 1.0), (-0.2, 0.2), True),  # 0.6 beyond the edge, half the width is 0.2
        (-0.5, (-0.7, -0.3), (-0.2, 0.2), True),  # the other side
        (0.35, (0.25, 0.45), (-0.2, 0.2), False),  # beyond the edge by 0.15 < 0.2
        (0.8, (0.1, 1.5), (-0.2, 0.2), False),  # far enough, but the interval reaches into the band
        (0.0, (-0.1, 0.1), (-0.2, 0.2), False),  # inside
        (0.0, (0.0, 0.0), (-0.2, 0.2), False),  # a zeroed vector: exactly the unsteered texts
        (0.8, (0.6, 1.0), (math.nan, math.nan), False),  # no band: no pass
    ],
)
def test_clears_band(effect, ci, band, expected):
    assert pc.clears_band(effect, ci, band) is expected


# ------------------------------------------------------------------------------------------ the real model

N_VAL, N_TEST, TOKENS = 12, 24, 40
FRACTIONS = [-0.25, 0.0, 0.25]


@pytest.fixture(scope="module")
def sentiment_run(device):
    """The protocol on the sentiment control: layers at 10% and 20% of the depth (3 and 6 of SmolLM2's 30) on 12
    validation prompts, then the chosen cell and 8 random directions there on 24 test prompts (40 tokens each)."""
    from steerlab.extraction import extract_from_labels
    from steerlab.models import load_model
    from steerlab.protocol import evaluate_vector
    from steerlab.scorers import make_scorer
    from steerlab.sites import ALL
    from steerlab.tasks import GenerationTask

    lm = load_model(backend="nnsight", device=device, dtype="float32")
    layers = sorted({max(1, round(f * lm.n_layers)) for f in (0.1, 0.2)})
    vec, _ = extract_from_labels(lm, pc.sentences("sentiment"), layers, progress=False)
    val_prompts, test_prompts = pc.prompt_split(N_VAL, N_TEST, seed=0)
    vader = make_scorer("vader")
    val, test = (GenerationTask(lm, p, vader, max_new_tokens=TOKENS, batch_size=len(p))
                 for p in (val_prompts, test_prompts))  # fmt: skip
    res = evaluate_vector(lm, vec, val, test, fractions=FRACTIONS, positions=ALL, controls=8, progress=False)
    return res, test


@pytest.mark.slow
@pytest.mark.parametrize("zeroed", [False, True], ids=["vector", "zeroed"])
def test_sentiment_steering_beats_the_random_band_and_fails_when_zeroed(sentiment_run, zeroed):
    """The gate of the protocol: a known effect (ActAdd sentiment) must clear the band of 8 norm-matched random
    directions by half its width, with its interval outside it. The zeroed variant steers with the same site,
    coefficient and band but a zero vector (its texts are the unsteered ones) and must fail the same check."""
    from steerlab.effects import paired_effect
    from steerlab.interventions import steer
    from steerlab.sites import ALL

    res, test = sentiment_run
    s = res.summary
    assert s["metric"] == "vader" and s["n_test"] == N_TEST and s["orientation"]["split"] == "val"
    band = s["null_band"]
    assert band[1] - band[0] > 0  # 8 random directions that moved the texts
    if zeroed:
        rows = res.results[(res.results.split == "test") & (res.results.direction == "vector")]
        base = rows[rows.fraction == 0].set_index("example_id").value
        zero = res.vector.select([s["site"]]) * 0.0
        steered = test.evaluate(steer(zero, s["coeff"], positions=ALL)).set_index("example_id").value
        e = paired_effect(steered, base)
        effect, ci = e["effect"], (e["lo"], e["hi"])
        assert effect == 0.0  # greedy texts unchanged
    else:
        effect, ci = s["effect"], s["effect_ci"]
    shown = f"{effect:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] vs band [{band[0]:+.3f}, {band[1]:+.3f}]"
    what = "zeroed vector" if zeroed else "sentiment vector"
    assert pc.clears_band(effect, ci, band) is not zeroed, f"{what} at {s['site']} {s['strength']:+g}: {shown}"
