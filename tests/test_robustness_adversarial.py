"""Adversarial search: embeddings match resid_pre.0, GCG's accepted swaps lower the exact loss it reports."""

from types import SimpleNamespace

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.robustness.adversarial import (
    attack_loss,
    attack_target,
    evolutionary_search,
    gcg_search,
    input_cross_entropy,
    success_by_step,
)
from steerlab.sites import Site

PAIR = SimpleNamespace(prompt="Is the sky green?", positive="Yes", negative="No", meta={})


def test_input_embeddings_are_resid_pre_0(tiny):
    ids = tiny.tokenize("Hello!")
    got = tiny.record(ids, [Site(0, "resid_pre")])[Site(0, "resid_pre")][0]
    assert torch.allclose(tiny.input_embeddings()[ids.input_ids[0]], got, atol=1e-6)


def test_target_ids_rebuild_the_scored_prompt(tiny):
    from steerlab.prompts import choice_setup

    adv = torch.tensor([tiny.tokenizer("x", add_special_tokens=False)["input_ids"]])
    for where, question in (("suffix", "Is the sky green? x"), ("prefix", "x Is the sky green?")):
        t = attack_target(tiny, PAIR, where=where)
        prompt, ids = choice_setup(tiny, question, ["Yes", "No"])
        assert t.ids(adv)[0].tolist() == tiny.tokenize(prompt).input_ids[0].tolist()  # char tokenizer: exact
        assert [t.pos_id, t.neg_id] == ids


def test_gcg_accepted_swaps_lower_the_reported_exact_loss(tiny):
    edits = steer({Site(1): torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))}, 2.0)
    t = attack_target(tiny, PAIR)
    hist = gcg_search(tiny, t, edits, n_tokens=4, max_steps=6, top_k=8, n_candidates=16, progress=False)
    assert hist.step.tolist()[0] == 0 and len(hist) == 7
    assert hist.accepted.any()
    losses = hist.loss.to_numpy()
    assert (losses[1:] <= losses[:-1]).all()
    for _, row in hist.iterrows():  # the reported loss is the exact loss of the reported tokens
        loss, p = attack_loss(tiny, t, torch.tensor([row.adv_ids]), edits)
        assert float(loss[0]) == pytest.approx(row.loss, abs=1e-5)
        assert float(p[0]) == pytest.approx(row.p_behaviour, abs=1e-6)
    acc = hist[hist.accepted]
    prev = hist.loss.shift(1)[hist.accepted]
    assert (acc.loss < prev).all()
    changed = [sum(a != b for a, b in zip(x, y, strict=True))
               for x, y in zip(hist.adv_ids[:-1], hist.adv_ids[1:], strict=True)]  # fmt: skip
    assert set(changed) <= {0, 1}  # one coordinate at a time


def test_gcg_gradient_points_downhill(tiny):
    """The linearised loss change of the best-gradient swap predicts the sign of the exact change on average."""
    from steerlab.robustness.adversarial import _gradient

    edits = steer({Site(1): torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(1))}, 2.0)
    t = attack_target(tiny, PAIR)
    adv = torch.full((3,), tiny.tokenizer("!", add_special_tokens=False)["input_ids"][0])
    grad = _gradient(tiny, t, adv, edits, tiny.input_embeddings().detach())
    base, _ = attack_loss(tiny, t, adv.unsqueeze(0), edits)
    best = grad.argmin(dim=1)
    worst = grad.argmax(dim=1)
    down, up = [], []
    for pos in range(3):
        for tok, out in ((best, down), (worst, up)):
            a = adv.clone()
            a[pos] = tok[pos]
            out.append(float(attack_loss(tiny, t, a.unsqueeze(0), edits)[0][0] - base[0]))
    assert sum(down) < sum(up)


def test_evolutionary_search_and_success_curve(tiny):
    edits = steer({Site(1): torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))}, 2.0)
    t = attack_target(tiny, PAIR)
    hist = evolutionary_search(tiny, t, edits, n_tokens=3, population=6, elite=2, max_steps=3, progress=False,
                               allowed=torch.arange(3, 60))  # fmt: skip
    assert (hist.fitness.diff().dropna() <= 1e-9).all()  # elitism: the best never gets worse
    row = hist.iloc[-1]
    ce = input_cross_entropy(tiny, t, torch.tensor([row.adv_ids]))
    assert float(ce[0]) == pytest.approx(row.cross_entropy, abs=1e-5)
    assert row.fitness == pytest.approx(row.loss + 0.1 * row.cross_entropy, abs=1e-5)
    both = hist.assign(prompt_id=0)
    curve = success_by_step(both)
    assert curve.success_rate.is_monotonic_increasing


@pytest.mark.slow
def test_gemma_input_embeddings_carry_the_embedding_scale(backend_kind):
    """Gemma multiplies embeddings by sqrt(d_model) in forward: input_embeddings must include it (both backends)."""
    from steerlab.models import load_model

    lm = load_model("gemma-3-270m", backend=backend_kind)
    ids = lm.tokenize("The cat sat.")
    got = lm.record(ids, [Site(0, "resid_pre")])[Site(0, "resid_pre")][0]
    want = lm.input_embeddings()[ids.input_ids[0]]
    assert torch.allclose(want, got, rtol=1e-4, atol=1e-4 * float(got.abs().max()))


def test_gcg_gradient_is_taken_on_the_embeddings_device():
    """The one-hot tokens are built where the embeddings live ("meta" stands in for a GPU: mixing it with
    CPU tensors raises as CUDA does)."""
    from steerlab.robustness.adversarial import AttackTarget, _gradient
    from steerlab.sites import ForwardOutput

    embed = torch.randn(10, 4, device="meta")

    class MetaModel:  # resid_pre.0 (after the edits) read out through the embeddings
        device = torch.device("meta")

        def forward(self, batch, edits, grad):
            h = torch.zeros(*batch.input_ids.shape, 4, device="meta")
            for edit in edits:
                h = edit.fn(h)
            return ForwardOutput(h @ embed.T)

    target = AttackTarget(before=[1, 2], after=[3], pos_id=4, neg_id=5)
    grad = _gradient(MetaModel(), target, torch.tensor([6, 7]), [], embed)
    assert (grad.shape, grad.device.type) == ((2, 10), "meta")


def test_adversarial_text_goes_where_the_search_put_its_tokens(tiny):
    from steerlab.data import ContrastPair
    from steerlab.prompts import choice_setup
    from steerlab.robustness.adversarial import with_adversarial_text
    from steerlab.tasks import ChoiceTask

    pair = ContrastPair("Is the sky green?", "Yes", "No", {"behaviour": "x"})
    text = "zq"  # (the tiny character tokenizer's decode spaces characters out: use the text itself)
    adv = torch.tensor([tiny.tokenizer(text, add_special_tokens=False)["input_ids"]])
    for where in ("suffix", "prefix"):
        t = attack_target(tiny, pair, where=where)
        moved = with_adversarial_text(pair, text, where=where, example_id="7:gcg")
        assert moved.meta["id"] == "7:gcg" and moved.meta["adversarial"] == text
        prompt, _ = choice_setup(tiny, moved.prompt, [moved.positive, moved.negative])
        assert tiny.tokenize(prompt).input_ids[0].tolist() == t.ids(adv)[0].tolist()  # char tokenizer: exact
        task = ChoiceTask.from_pairs(tiny, [moved])
        p = task.evaluate().query("metric == 'p_behaviour'").value.iloc[0]
        assert p == pytest.approx(float(attack_loss(tiny, t, adv)[1][0]), abs=1e-5)
    with pytest.raises(SteerlabError, match="prefix"):
        with_adversarial_text(pair, "x", where="middle")
