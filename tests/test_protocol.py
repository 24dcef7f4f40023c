"""Orientation (`steerlab.orientation`) and the protocol (`steerlab.protocol.evaluate_vector`) on the tiny model."""

from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.controls import null_band
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.orientation import orient
from steerlab.power import mde_paired
from steerlab.protocol import evaluate_vector
from steerlab.scale import strength_from_fraction, typical_norm
from steerlab.sites import ALL, Site
from steerlab.sweeps import run_serial
from steerlab.tasks import ChoiceTask, GenerationTask
from steerlab.vectors import Provenance, SteeringVector

QUESTIONS = ["Do you like {}?", "Is {} good?", "Would you pick {}?", "Should I try {}?"]
THINGS = ["tea", "rain", "maths", "jazz", "chess", "snow"]


def pairs(n, offset=0):
    """Yes/No pairs, the matching answer alternating, so every split is label-balanced."""
    out = []
    for i in range(offset, offset + n):
        q = QUESTIONS[i % 4].format(THINGS[i % 6]) + " " * (i // 24)
        yes = i % 2 == 0
        out.append(NS(prompt=q, positive="Yes" if yes else "No", negative="No" if yes else "Yes", meta={"id": i}))
    return out


def vector(lm, seed=0, layers=(0, 1)):
    g = torch.Generator().manual_seed(seed)
    dirs = {Site(L): torch.randn(lm.d_model, generator=g) for L in layers}
    return SteeringVector(dirs, Provenance(model=lm.name, d_model=lm.d_model, n_layers=lm.n_layers, method="rand"))


def p_mean(task, edits=()):
    df = task.evaluate(edits)
    return df[df.metric == "p_behaviour"].value.mean()


def test_orient_flips_a_vector_whose_sign_is_wrong_and_records_the_evidence(tiny):
    task = ChoiceTask.from_pairs(tiny, pairs(8))
    vec = vector(tiny)
    right = orient(tiny, vec, task, fraction=0.5, positions=ALL, progress=False)
    wrong = -right  # every site now lowers the metric at +s
    fixed = orient(tiny, wrong, task, fraction=0.5, positions=ALL, progress=False)
    scale = typical_norm(tiny, task.prompts, [Site(0), Site(1)])
    for site in (Site(0), Site(1)):
        evidence = fixed.provenance.extra["orientation"][str(site)]
        coeff = strength_from_fraction(0.5, scale[site], wrong[site])
        by_hand = p_mean(task, steer({site: wrong[site]}, coeff)) - p_mean(task, steer({site: wrong[site]}, -coeff))
        assert evidence["effect"] == pytest.approx(by_hand, abs=1e-6) and by_hand < 0
        assert evidence["flipped"] is True and evidence["n"] == 8 and evidence["strength"] == 0.5
        assert evidence["lo"] <= evidence["effect"] <= evidence["hi"]
        assert torch.equal(fixed[site], right[site])  # flipped back
        first = right.provenance.extra["orientation"][str(site)]  # the evidence on the vector as first given
        assert first["flipped"] == (not torch.equal(right[site], vec[site]))
        sign = 1 if first["flipped"] else -1  # wrong == vec where vec was flipped, else -vec
        assert first["effect"] == pytest.approx(sign * evidence["effect"], abs=1e-6)
    with pytest.raises(SteerlabError, match="exactly one of fraction"):
        orient(tiny, vec, task, fraction=0.5, coeff=2.0)


def counting_runner(calls):
    def runner(store, keys, compute, **kwargs):
        return run_serial(store, keys, lambda key: (calls.append(key), compute(key))[1], **kwargs)

    return runner


def test_evaluate_vector_summary_matches_the_rows(tiny, tmp_path):
    val, test = ChoiceTask.from_pairs(tiny, pairs(12)), ChoiceTask.from_pairs(tiny, pairs(12, offset=12))
    calls = []
    kwargs = dict(fractions=[-0.5, -0.25, 0, 0.25, 0.5], controls=3, out=tmp_path, progress=False)
    res = evaluate_vector(tiny, vector(tiny), val, test, runner=counting_runner(calls), **kwargs)
    s = res.summary
    for key in ("site", "strength", "orientation", "effect", "effect_ci", "null_band", "per_label", "mde", "n_test",
                "verdict", "n_val", "baseline", "metric", "selection", "positions"):  # fmt: skip
        assert key in s, key
    assert s["n_val"] == s["n_test"] == 12 and s["metric"] == "p_behaviour"
    assert len(calls) == 2 * 4 + 1 + (1 + 1 + 3)  # validation: 2 sites x 4 strengths + 0; test: 0, chosen, 3 random

    # the choice (a labelled task): the cell whose worst label moves most in the cell's own direction
    val_labels = res.labels[(res.labels.split == "val") & (res.labels.fraction != 0)]
    val_eff = res.effects[(res.effects.split == "val") & (res.effects.fraction != 0)].set_index(["layer", "fraction"])
    by_cell = val_labels.groupby(["layer", "fraction"]).effect
    way = np.sign(val_eff.effect)
    score = pd.Series(np.where(way.reindex(by_cell.min().index) > 0, by_cell.min(), -by_cell.max()),
                      index=by_cell.min().index).rename("score").reset_index()  # fmt: skip
    best = score.sort_values(["score", "layer"], ascending=[False, True]).iloc[0]
    assert (s["site"], s["strength"]) == (f"resid_post.{int(best.layer)}", best.fraction)
    assert s["selection"]["score"] == pytest.approx(best.score) and "minimum over labels" in s["selection"]["rule"]

    # the test numbers, recomputed from the rows
    t = res.results[(res.results.split == "test") & (res.results.metric == "p_behaviour")]
    base = t[t.fraction == 0].set_index("example_id").value
    steered = t[(t.fraction == s["strength"]) & (t.direction == "vector")].set_index("example_id").value
    diff = (steered - base).to_numpy()
    assert s["effect"] == pytest.approx(diff.mean(), abs=1e-9)
    assert s["mde"] == pytest.approx(mde_paired(12, float(np.std(diff, ddof=1))), abs=1e-12)
    shifts = [float((g.set_index("example_id").value - base).mean())
              for _, g in t[t.direction != "vector"].groupby("direction")]  # fmt: skip
    assert s["null_band"] == pytest.approx(list(null_band(shifts)), abs=1e-9)
    assert set(s["per_label"]) == {"Yes", "No"} and sum(v["n"] for v in s["per_label"].values()) == 12
    evidence = res.vector.provenance.extra["orientation"][s["site"]]
    assert s["orientation"]["effect"] == evidence["effect"] and s["orientation"]["split"] == "val"

    again = []  # a resumed run recomputes nothing and reports the same
    res2 = evaluate_vector(tiny, vector(tiny), val, test, runner=counting_runner(again), **kwargs)
    assert again == [] and res2.summary == s

    by_effect = evaluate_vector(tiny, vector(tiny), val, test, select="effect", sides="positive", **kwargs)
    val_eff = res.effects[(res.effects.split == "val") & (res.effects.fraction > 0)]  # the same validation cells
    top = val_eff.sort_values(["effect", "layer"], ascending=[False, True]).iloc[0]
    assert (by_effect.summary["site"], by_effect.summary["strength"]) == (f"resid_post.{top.layer}", top.fraction)
    both = evaluate_vector(tiny, vector(tiny), val, test, select="effect", **kwargs)
    every = res.effects[(res.effects.split == "val") & (res.effects.fraction != 0)]
    biggest = every.assign(size=every.effect.abs()).sort_values(["size", "layer"], ascending=[False, True]).iloc[0]
    assert both.summary["strength"] == biggest.fraction


def test_evaluate_vector_on_generations_has_no_labels(tiny):
    class Length:
        name = "length"

        def __call__(self, texts):
            return np.array([len(t) / 10 for t in texts], dtype=float)

    prompts = [f"Tell me about {t}." for t in THINGS]
    val = GenerationTask(tiny, prompts[:3], Length(), max_new_tokens=3)
    test = GenerationTask(tiny, prompts[3:], Length(), max_new_tokens=3)
    res = evaluate_vector(tiny, vector(tiny, layers=(1,)), val, test, fractions=[-0.5, 0, 0.5], positions=ALL,
                          controls=3, progress=False)  # fmt: skip
    assert "per_label" not in res.summary and res.labels is None
    assert res.summary["metric"] == "length" and res.summary["n_test"] == 3
    texts = res.results[res.results.split == "test"].text
    assert texts.map(type).eq(str).all()


def test_evaluate_vector_refuses_bad_options(tiny):
    task = ChoiceTask.from_pairs(tiny, pairs(4))
    with pytest.raises(SteerlabError, match="control_scope"):
        evaluate_vector(tiny, vector(tiny), task, task, control_scope="everywhere")
    with pytest.raises(SteerlabError, match="exactly one of fractions"):
        evaluate_vector(tiny, vector(tiny), task, task, coeffs=[-1, 1])
    with pytest.raises(SteerlabError, match="no \\+s/-s pair"):
        evaluate_vector(tiny, vector(tiny), task, task, fractions=None, coeffs=[0, 1, 2])


# ------------------------------------------------------------------------------------------ the real model


@pytest.mark.slow
def test_protocol_on_the_embedded_model(real, tmp_path):
    """SmolLM2 on a persona trait: template spans from its tokenizer, then the whole protocol, its numbers
    consistent with its rows."""
    from steerlab import data
    from steerlab.extraction import extract
    from steerlab.positions import prompt_spans
    from steerlab.sites import AFTER_INSTRUCTION
    from steerlab.tasks import answer_label
    from steerlab.verdicts import VERDICTS

    prompt = real.chat("Is the sky blue?")
    spans = prompt_spans(real.tokenizer, prompt)
    ids = real.tokenize(prompt).input_ids[0].tolist()
    text = {k: real.tokenizer.decode(ids[a:b]) for k, (a, b) in spans.items()}
    assert text == {"system": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                    "user": "Is the sky blue?", "assistant": "<|im_start|>assistant\n"}  # fmt: skip

    pairs = data.load_persona("psychopathy")
    train, val, test = data.stratified_split(pairs, (0.6, 0.2, 0.2), key=lambda p: answer_label(p.positive),
                                             balance=True)  # fmt: skip
    vec = extract(real, train[:120], [Site(12)], progress=False)
    res = evaluate_vector(real, vec, ChoiceTask.from_pairs(real, val[:48], batch_size=48),
                          ChoiceTask.from_pairs(real, test[:48], batch_size=48), positions=AFTER_INSTRUCTION,
                          fractions=[-0.5, -0.25, 0, 0.25, 0.5], controls=4, out=tmp_path, progress=False)  # fmt: skip
    s = res.summary
    assert s["positions_resolved"] == f"prompt[-{spans['assistant'][1] - spans['assistant'][0]}:]+generated"
    assert s["n_val"] == s["n_test"] == 48 and set(s["per_label"]) == {"Yes", "No"}
    assert s["verdict_label"] in VERDICTS and s["orientation"]["n"] == 48
    t = res.results[(res.results.split == "test") & (res.results.metric == "p_behaviour")]
    base = t[t.fraction == 0].set_index("example_id").value
    steered = t[(t.fraction == s["strength"]) & (t.direction == "vector")].set_index("example_id").value
    diff = (steered - base).to_numpy()
    assert s["effect"] == pytest.approx(diff.mean(), abs=1e-9)
    assert s["mde"] == pytest.approx(mde_paired(48, float(np.std(diff, ddof=1))), abs=1e-12)
    assert s["baseline"] == pytest.approx(base.mean(), abs=1e-9)
