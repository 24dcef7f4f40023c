"""Tasks (`steerlab.tasks`) against hand computations, and `sweep` on any task."""

import math
from types import SimpleNamespace as NS

import numpy as np
import pytest
import torch

from steerlab.data import DataError
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.sites import AFTER_INSTRUCTION, LAST_PROMPT, Site
from steerlab.sweeps import SWEEP_COLUMNS, sweep
from steerlab.tasks import ChoiceTask, GenerationTask, PerplexityTask, Task, TextLoglikTask
from steerlab.vectors import Provenance, SteeringVector

TEXTS = ["what a lovely happy day", "such a sad gloomy night", "sunny and bright", "grey cold rain"]
LABELS = [1, 0, 1, 0]


def items(texts=TEXTS, labels=LABELS):
    return [NS(text=t, label=y, meta={"id": f"t{i}", "source": "mood.csv", "line": i + 2})
            for i, (t, y) in enumerate(zip(texts, labels, strict=True))]  # fmt: skip


def vector(lm):
    g = torch.Generator().manual_seed(0)
    dirs = {Site(L): torch.randn(lm.d_model, generator=g) for L in (0, 1)}
    return SteeringVector(dirs, Provenance(model=lm.name, d_model=lm.d_model, n_layers=lm.n_layers, method="rand"))


def hand_loglik(lm, text, edits=None):
    """Mean next-token log-likelihood of one text, from the backend's own token losses."""
    nll, mask = lm.token_losses([text], edits=edits)
    return -float(nll.sum() / mask.sum())


@pytest.mark.parametrize("edited", [False, True])
def test_text_loglik_task_equals_hand_computation(tiny, edited):
    edits = steer(vector(tiny), 2.0) if edited else ()
    df = TextLoglikTask.from_items(tiny, items(), batch_size=3).evaluate(edits)
    ref = [hand_loglik(tiny, t, edits or None) for t in TEXTS]
    rows = df[df.metric.isin(["loglik_pos", "loglik_neg"])]
    assert rows.example_id.tolist() == ["t0", "t1", "t2", "t3"]
    assert rows.metric.tolist() == ["loglik_pos", "loglik_neg", "loglik_pos", "loglik_neg"]
    assert rows.value.to_numpy() == pytest.approx(ref, abs=1e-5)
    gap = df[df.metric == "loglik_gap"]
    assert gap.example_id.tolist() == ["all"]
    assert gap.value.iloc[0] == pytest.approx((ref[0] + ref[2]) / 2 - (ref[1] + ref[3]) / 2, abs=1e-5)
    toward = df[df.metric == "loglik_toward"]  # the per-text target: its mean is the gap
    assert toward.value.to_numpy() == pytest.approx([2 * ref[0], -2 * ref[1], 2 * ref[2], -2 * ref[3]], abs=1e-5)
    assert toward.value.mean() == pytest.approx(gap.value.iloc[0], abs=1e-6)
    assert toward.label.tolist() == ["1", "0", "1", "0"]


def test_both_tasks_are_tasks(tiny):
    pairs = [NS(prompt="Is it?", positive="Yes", negative="No", meta={})]
    choice, loglik = ChoiceTask.from_pairs(tiny, pairs), TextLoglikTask.from_items(tiny, items())
    assert isinstance(choice, Task) and isinstance(loglik, Task)
    assert choice.can_reuse_prefix and not loglik.can_reuse_prefix
    assert loglik.metrics[0] == "loglik_toward"
    assert loglik.fingerprint() != TextLoglikTask.from_items(tiny, items(labels=[0, 1, 1, 0])).fingerprint()
    with pytest.raises(SteerlabError, match="no prefix to reuse"):
        loglik.evaluate(reuse_prefix=True)


def test_text_loglik_task_refuses_bad_input(tiny):
    with pytest.raises(DataError, match=r"mood.csv, record at 3: the text 'x' has fewer than 2 tokens"):
        TextLoglikTask.from_items(tiny, items(texts=["long enough", "x", "fine text", "also fine"]))
    with pytest.raises(SteerlabError, match="both present"):
        TextLoglikTask.from_items(tiny, items(labels=[1, 1, 1, 1]))
    with pytest.raises(SteerlabError, match="one of each"):
        TextLoglikTask(tiny, TEXTS, LABELS[:3], [0, 1, 2, 3])


def test_sweep_evaluates_a_text_task_and_resumes(tiny, tmp_path):
    task = TextLoglikTask.from_items(tiny, items(), batch_size=2)
    computed = []
    kwargs = dict(coeffs=[-2, 0, 2], out=tmp_path / "run", progress=False)
    df = sweep(tiny, {("caa", 3): vector(tiny)}, task, on_cell=computed.append, **kwargs)
    assert list(df.columns) == [*SWEEP_COLUMNS, "label"] and (tmp_path / "run" / "sweep.json").exists()
    assert len(computed) == 5  # the unsteered cell once, then 2 layers x 2 strengths
    steered = task.evaluate(steer({Site(1): vector(tiny)[Site(1)]}, 2.0))
    cell = df[(df.layer == 1) & (df.coeff == 2.0)]
    assert cell.value.to_numpy() == pytest.approx(steered.value.to_numpy(), abs=1e-6)
    assert set(cell.method) == {"caa"} and set(cell.seed) == {3}
    assert not cell.value.to_numpy() == pytest.approx(df[df.coeff == 0].value.to_numpy()[: len(cell)], abs=1e-3)

    again = []
    resumed = sweep(tiny, {("caa", 3): vector(tiny)}, task, on_cell=again.append, **kwargs)
    assert again == [] and resumed.value.to_numpy() == pytest.approx(df.value.to_numpy(), abs=1e-12)
    other = TextLoglikTask.from_items(tiny, items(labels=[0, 1, 0, 1]))
    with pytest.raises(SteerlabError, match="different task"):
        sweep(tiny, {("caa", 3): vector(tiny)}, other, **kwargs)


def test_sweep_does_not_reuse_a_prefix_the_task_cannot(tiny):
    """With last-token steering a text task runs full forwards; the last token predicts no scored token,
    so every cell equals the unsteered one."""
    task = TextLoglikTask.from_items(tiny, items())
    df = sweep(tiny, vector(tiny), task, coeffs=[0, 5], positions=LAST_PROMPT, progress=False)
    values = df.pivot_table(index=["layer", "example_id", "metric"], columns="coeff", values="value")
    assert values[5.0].to_numpy() == pytest.approx(values[0.0].to_numpy(), abs=1e-6)


# ------------------------------------------------------------------------------ choice, generation, perplexity

PAIRS = [NS(prompt=q, positive=a, negative=b, meta={"id": f"q{i}"})
         for i, (q, a, b) in enumerate([("Pick (A) or (B)?", "(A)", "(B)"), ("Is it so?", "Yes", "No"),
                                        ("Choose: (A) x (B) y", "(B)", "(A)"), ("Ok?", "No", "Yes")])]  # fmt: skip


def test_choice_rows_carry_the_matching_answer_as_label(tiny):
    df = ChoiceTask.from_pairs(tiny, PAIRS).evaluate()
    assert df[df.metric == "p_behaviour"].label.tolist() == ["A", "Yes", "B", "No"]


def test_mcq_rows_give_the_predicted_letter(tiny):
    items = [NS(question=f"q{i}", choices=("x", "y", "z"), answer=i % 3, meta={}) for i in range(4)]
    task = ChoiceTask.from_mcq(tiny, items)
    df = task.evaluate()
    logits = torch.cat(task.last_logits())
    preds = [float(logits[i, c].argmax()) for i, c in enumerate(task.candidates)]
    assert df[df.metric == "pred"].value.tolist() == preds
    acc = df[df.metric == "accuracy"].value.tolist()
    assert acc == [float(p == it.answer) for p, it in zip(preds, items, strict=True)]
    assert df[df.metric == "pred"].label.tolist() == ["A", "B", "C", "A"]


@pytest.mark.parametrize("positions", [AFTER_INSTRUCTION, LAST_PROMPT])
def test_prefix_reuse_before_the_steered_tail_gives_the_same_values(tiny, positions):
    """With the edit confined to the assistant header (or the last token), the prompt before it runs once and
    is reused; the values equal a full forward pass with the same edit."""
    task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=3)
    edits = steer(vector(tiny), 3.0, positions=positions)
    full = task.evaluate(edits)
    cached = task.evaluate(edits, reuse_prefix=True)
    assert cached.value.to_numpy() == pytest.approx(full.value.to_numpy(), abs=1e-5)
    assert not full.value.to_numpy() == pytest.approx(task.evaluate().value.to_numpy(), abs=1e-3)
    base = task.evaluate(reuse_prefix=True)  # unedited, on whichever prefix is cached
    assert base.value.to_numpy() == pytest.approx(task.evaluate().value.to_numpy(), abs=1e-5)
    with pytest.raises(SteerlabError, match="confined to the prompt's last tokens"):
        task.evaluate(steer(vector(tiny), 3.0), reuse_prefix=True)


class Length:
    name = "length"

    def __call__(self, texts):
        return np.array([len(t) for t in texts], dtype=float)


def test_generation_task_scores_the_steered_generations(tiny):
    prompts = ["Tell me a story.", "What is up?", "Say hello."]
    task = GenerationTask(tiny, prompts, Length(), max_new_tokens=5, batch_size=2)
    edits = steer(vector(tiny), 4.0)
    df = task.evaluate(edits)
    texts = tiny.generate([tiny.chat(p) for p in prompts], edits=edits, max_new_tokens=5)
    assert df.text.tolist() == texts and df.value.tolist() == [float(len(t)) for t in texts]
    assert df.metric.unique().tolist() == ["length"] and task.metrics == ("length",)
    assert task.norm_prompts() == [tiny.chat(p) for p in prompts]
    assert task.resolve_positions(AFTER_INSTRUCTION).kind == "span"
    with pytest.raises(SteerlabError, match="no prefix to reuse"):
        task.evaluate(reuse_prefix=True)
    with pytest.raises(SteerlabError, match="name and be callable"):
        GenerationTask(tiny, prompts, "vader")
    with pytest.raises(SteerlabError, match="one number per text"):
        GenerationTask(tiny, prompts, BadScorer(), max_new_tokens=2).evaluate()


class BadScorer:
    name = "bad"

    def __call__(self, texts):
        return np.zeros(len(texts) + 1)


def test_perplexity_task_equals_hand_computation(tiny):
    texts = ["what a lovely happy day", "grey cold rain"]
    task = PerplexityTask(tiny, texts, batch_size=1)
    edits = steer(vector(tiny), 2.0)
    df = task.evaluate(edits)
    per_text = [-hand_loglik(tiny, t, edits) for t in texts]
    assert df[df.metric == "nll"].value.to_numpy() == pytest.approx(per_text, abs=1e-5)
    nll, mask = zip(*(tiny.token_losses([t], edits=edits) for t in texts), strict=True)
    total = sum(float(n.sum()) for n in nll) / sum(int(m.sum()) for m in mask)
    assert df[df.metric == "perplexity"].value.iloc[0] == pytest.approx(math.exp(total), rel=1e-5)
    with pytest.raises(SteerlabError, match="no meaning here"):
        task.resolve_positions(AFTER_INSTRUCTION)
