"""Tests for steerlab.methods.bipo: the loss against its formula, log-likelihoods against an independent
oracle (`Backend.token_losses`), and training on the tiny model judged by behaviour, not by the log."""

import json
import math
import random
import re
import time
from types import SimpleNamespace

import pytest
import torch

from steerlab import interventions
from steerlab.errors import SteerlabError
from steerlab.methods import bipo
from steerlab.methods.bipo import bipo_loss, completion_logprobs, convergence, encode_pairs, train_bipo
from steerlab.prompts import encode, pair_prompts
from steerlab.sites import Site

CAA_REFUSAL = "/work/shared/data/caa/datasets/generate/refusal/generate_dataset.json"


def pair(prompt, positive="x", negative="y"):
    return SimpleNamespace(prompt=prompt, positive=positive, negative=negative)


TRAIN = [pair(p) for p in ("ab", "cd", "ef", "gh", "ij", "kl", "mn", "op")]
HELD_OUT = [pair(p) for p in ("qr", "st", "uv", "wz", "hello", "A1")]
SITE = Site(0)
FAST = dict(epochs=6, lr=5e-2, beta=1.0, batch_size=4, progress=False)

_trained: dict = {}


def trained(lm):
    """One training run per backend, shared by the tests that only read its result."""
    if lm.kind not in _trained:
        state = {k: t.clone() for k, t in lm.model.state_dict().items()}
        _trained[lm.kind] = (*train_bipo(lm, TRAIN, SITE, **FAST), state)
    return _trained[lm.kind]


@pytest.fixture(autouse=True)
def one_thread(request):
    """The tiny model runs 10-40x faster on one thread when other jobs share the two cores."""
    threads = torch.get_num_threads()
    if "real" not in request.fixturenames:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def preferences(lm, pairs, edits=None):
    """Per pair, log p(positive) - log p(negative), from `encode` + `token_losses` (not bipo's own code)."""
    prompts = pair_prompts(lm, pairs)
    enc = encode(lm, prompts + prompts, [p.positive for p in pairs] + [p.negative for p in pairs])
    nll, _ = lm.token_losses(enc.batch, edits=edits)
    logp = -(nll * enc.completion_mask[:, 1:]).sum(dim=1)
    return logp[: len(pairs)] - logp[len(pairs) :]


def preference(lm, pairs, edits=None):
    """Mean over pairs of log p(positive) - log p(negative)."""
    return float(preferences(lm, pairs, edits).mean())


def preference_acc(lm, pairs):
    return float((preferences(lm, pairs) > 0).float().mean())


# ---------------------------------------------------------------------------------------------- pieces


def test_bipo_loss_matches_formula():
    lp_pos, lp_neg = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -0.5])
    ref_pos, ref_neg = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -1.0])
    d = torch.tensor([1.0, -1.0])
    beta = 0.5
    expected = [
        -math.log(1 / (1 + math.exp(-beta * 1 * ((-1 + 2) - (-3 + 2))))),
        -math.log(1 / (1 + math.exp(-beta * -1 * ((-2 + 2) - (-0.5 + 1))))),
    ]
    torch.testing.assert_close(bipo_loss(lp_pos, lp_neg, ref_pos, ref_neg, d, beta), torch.tensor(expected))
    z = torch.zeros(3)
    torch.testing.assert_close(bipo_loss(z, z, z, z, torch.ones(3), 0.1), torch.full((3,), math.log(2)))


def test_completion_logprobs_match_token_losses(tiny):
    pairs = [pair("ab", "xyz", "q"), pair("a longer prompt", "k", "mnop")]
    enc = encode_pairs(tiny, pairs)
    got = completion_logprobs(tiny, enc)
    assert got.shape == (4,) and got.dtype == torch.float32
    expected = []
    for p in pairs:  # one text at a time, tokenized whole (the tiny tokenizer is per character)
        prompt = pair_prompts(tiny, [p])[0]
        for completion in (p.positive, p.negative):
            nll, _ = tiny.token_losses(prompt + completion)
            n_prompt = len(tiny.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            expected.append(-float(nll[0, n_prompt - 1 :].sum()))
    expected = expected[0::2] + expected[1::2]  # positives first, then negatives
    torch.testing.assert_close(got, torch.tensor(expected, device=got.device), rtol=1e-5, atol=1e-4)


def test_max_completion_tokens_truncates(tiny):
    pairs = [pair("ab", "xyz", "q")]
    full = encode_pairs(tiny, pairs)
    cut = encode_pairs(tiny, pairs, max_completion_tokens=1)
    assert cut.batch.input_ids.shape[1] == full.prompt_end + 1
    assert cut.completion_mask.sum() == 2  # one token each for the positive and the negative row


# ---------------------------------------------------------------------------------------------- training


def test_steers_both_ways_on_held_out_prompts(tiny):
    v, log, _ = trained(tiny)
    assert v.shape == (tiny.d_model,) and v.dtype == torch.float32 and v.device.type == "cpu"
    base = preferences(tiny, HELD_OUT)
    plus = preferences(tiny, HELD_OUT, interventions.add(SITE, v, 1.0))
    minus = preferences(tiny, HELD_OUT, interventions.add(SITE, v, -1.0))
    assert (base < 0).any()  # the random model does not already prefer "x" everywhere
    assert (plus > base).all() and (minus < base).all(), (base, plus, minus)
    assert float((plus - base).mean()) > 1.0 and float((base - minus).mean()) > 1.0
    assert (plus > 0).all()  # +v makes every held-out prompt prefer the positive completion


def test_backends_learn_the_same_vector(tiny_pair):
    tl, nn = tiny_pair
    v_tl, log_tl = train_bipo(tl, TRAIN[:4], SITE, epochs=2, lr=5e-2, batch_size=2, progress=False)
    v_nn, log_nn = train_bipo(nn, TRAIN[:4], SITE, epochs=2, lr=5e-2, batch_size=2, progress=False)
    torch.testing.assert_close(v_tl, v_nn, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.tensor(log_tl["loss"]), torch.tensor(log_nn["loss"]), rtol=1e-4, atol=1e-5)


def test_loss_decreases(tiny):
    _, log, _ = trained(tiny)
    assert list(log.columns[:3]) == ["step", "epoch", "loss"]
    assert len(log) == FAST["epochs"] * 2 and log["step"].tolist() == list(range(1, len(log) + 1))
    assert log["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-4)  # v starts at zero
    assert log["loss"].iloc[-2:].mean() < log["loss"].iloc[:2].mean() - 0.1
    assert (log["v_norm"].diff().iloc[1:5] > 0).all()


def test_only_the_vector_is_trained(tiny):
    _, _, before = trained(tiny)
    after = tiny.model.state_dict()
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        assert torch.equal(tensor, after[name]), name
    assert all(p.grad is None for p in tiny.model.parameters())
    assert tiny.n_hooks() == 0


def test_same_seed_same_vector(tiny):
    kw = dict(epochs=2, lr=5e-2, batch_size=2, progress=False)
    v1, log1 = train_bipo(tiny, TRAIN[:4], SITE, seed=3, **kw)
    v2, log2 = train_bipo(tiny, TRAIN[:4], SITE, seed=3, **kw)
    v3, _ = train_bipo(tiny, TRAIN[:4], SITE, seed=4, **kw)
    assert torch.equal(v1, v2)
    assert log1["loss"].tolist() == log2["loss"].tolist()
    assert not torch.equal(v1, v3)


def test_validation_log(tiny):
    init = torch.zeros(tiny.d_model)
    v, log = train_bipo(tiny, TRAIN[:4], "resid_post.-1", epochs=2, lr=5e-2, batch_size=4, val_pairs=HELD_OUT[:3],
                        init=init, signs="batch", progress=False)  # fmt: skip
    assert torch.equal(init, torch.zeros(tiny.d_model))  # the caller's tensor is not trained in place
    val_rows = log.dropna(subset=["val_acc"])
    assert val_rows["epoch"].tolist() == [1, 2]
    assert set(log["sign"]) <= {-1.0, 1.0}  # one d per batch
    before = log.attrs["val_before"]
    assert before["val_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert before["val_shift"] == pytest.approx(0.0, abs=1e-4)
    assert before["val_acc"] == preference_acc(tiny, HELD_OUT[:3])
    last = val_rows.iloc[-1]
    assert last["val_shift"] > 0 > last["val_shift_neg"]
    assert last["val_loss"] < math.log(2)
    # without init the metrics before training are derived from the reference pass, not measured again
    _, log_none = train_bipo(tiny, TRAIN[:4], "resid_post.-1", epochs=1, val_pairs=HELD_OUT[:3], progress=False)
    assert log_none.attrs["val_before"] == pytest.approx(before, abs=1e-5)


def test_shared_first_token_gives_no_signal(tiny):
    """Truncated to one token, ``"xa"`` and ``"xb"`` are the same completion: the loss stays log 2 and v
    only drifts on rounding noise (training on ``TRAIN`` reaches a norm of about 1.6)."""
    pairs = [pair("ab", "xa", "xb"), pair("cd", "xc", "xd")]
    v, log = train_bipo(tiny, pairs, SITE, epochs=2, max_completion_tokens=1, progress=False)
    assert float(v.norm()) < 0.05  # rounding noise under Adam: 0.003-0.013 seen on different CPUs
    assert log["loss"].tolist() == pytest.approx([math.log(2)] * len(log), abs=1e-6)
    assert log.attrs["converged"] is False


# ---------------------------------------------------------------------------------------------- convergence


def test_convergence_rules():
    log2 = math.log(2)
    flat = [log2, 0.5, 0.3, 0.3, 0.3, 0.3]
    c = convergence(flat, window=2)
    assert c["converged"] and c["rel_change"] == 0.0 and c["last_loss"] == pytest.approx(0.3)
    # change measured against the drop from log 2: 0.3 -> 0.29 is 0.01 / (log 2 - 0.29) = 2.5%
    c = convergence([log2, 0.5, 0.3, 0.3, 0.29, 0.29], window=2)
    assert not c["converged"] and c["rel_change"] == pytest.approx(0.01 / (log2 - 0.29))
    assert convergence([log2, 0.5, 0.3, 0.3, 0.29, 0.29], window=2, tol=0.03)["converged"]
    # flat at log 2 is stuck, not converged; too few steps cannot be judged
    assert "never left log 2" in convergence([log2] * 8, window=2)["reason"]
    c = convergence([log2, 0.6], window=2)
    assert not c["converged"] and "too few steps" in c["reason"] and math.isnan(c["rel_change"])


def test_a_two_step_run_is_reported_as_not_converged(tiny, caplog):
    # the SAAS notebooks' setting: 8 pairs, 1 epoch, batch 4 = 2 steps, loss barely below log 2
    with caplog.at_level("WARNING", logger="steerlab.methods.bipo"):
        _, log = train_bipo(tiny, TRAIN, SITE, epochs=1, progress=False)
    assert len(log) == 2 and log.attrs["converged"] is False
    assert "too few steps" in log.attrs["convergence"]["reason"]
    assert any("did not converge in 2 steps" in r.message for r in caplog.records)


def test_trains_until_converged_and_stops(tiny, caplog):
    with caplog.at_level("WARNING", logger="steerlab.methods.bipo"):
        _, log = train_bipo(tiny, TRAIN, SITE, epochs=40, lr=5e-2, beta=1.0, batch_size=4, progress=False)
    status = log.attrs["convergence"]
    assert log.attrs["converged"] is True and status["reason"].startswith("converged")
    assert 16 <= len(log) < 80  # stopped early, after at least two windows of 8 steps
    assert status == convergence(log["loss"], window=8)  # judged on the log itself
    assert status["last_loss"] < 0.2
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    # the same budget without early stopping runs every epoch and is judged at the end
    _, full = train_bipo(tiny, TRAIN, SITE, epochs=25, lr=5e-2, beta=1.0, batch_size=4, tol=None, progress=False)
    assert len(full) == 50 and isinstance(full.attrs["converged"], bool)


def test_budget_spent_while_still_moving_and_max_steps(tiny, caplog):
    with caplog.at_level("WARNING", logger="steerlab.methods.bipo"):
        _, log = train_bipo(tiny, TRAIN, SITE, epochs=20, beta=0.1, batch_size=4, progress=False)
    assert len(log) == 40 and log.attrs["converged"] is False
    assert log.attrs["convergence"]["reason"].startswith("still moving")
    assert any("did not converge in 40 steps" in r.message for r in caplog.records)
    _, capped = train_bipo(tiny, TRAIN, SITE, epochs=20, max_steps=5, progress=False)
    assert len(capped) == 5 and capped["epoch"].tolist() == [1, 1, 2, 2, 3]


# ---------------------------------------------------------------------------------------------- errors


def test_errors(tiny):
    with pytest.raises(SteerlabError, match="empty"):
        train_bipo(tiny, [], SITE)
    with pytest.raises(SteerlabError, match="out of range"):
        train_bipo(tiny, TRAIN, 5)
    with pytest.raises(SteerlabError, match="no string negative"):
        train_bipo(tiny, [SimpleNamespace(prompt="ab", positive="x")], SITE)
    with pytest.raises(SteerlabError, match="empty completion"):
        train_bipo(tiny, [pair("ab", "x", "")], SITE)
    with pytest.raises(SteerlabError, match="val_pairs is empty"):
        train_bipo(tiny, TRAIN, SITE, val_pairs=[])
    with pytest.raises(SteerlabError, match="epochs"):
        train_bipo(tiny, TRAIN, SITE, epochs=0)
    with pytest.raises(SteerlabError, match="lr"):
        train_bipo(tiny, TRAIN, SITE, lr=float("nan"))
    with pytest.raises(SteerlabError, match="signs"):
        train_bipo(tiny, TRAIN, SITE, signs="example")
    with pytest.raises(SteerlabError, match=r"shape \(32,\)"):
        train_bipo(tiny, TRAIN, SITE, init=torch.zeros(7))
    with pytest.raises(SteerlabError, match="tol must be in"):
        train_bipo(tiny, TRAIN, SITE, tol=1.5)
    with pytest.raises(SteerlabError, match="max_steps"):
        train_bipo(tiny, TRAIN, SITE, max_steps=0)


def test_non_finite_training_suggests_lower_lr(tiny, monkeypatch):
    with pytest.raises(SteerlabError, match="vector became non-finite .* lower lr"):
        train_bipo(tiny, TRAIN[:2], SITE, lr=1e10, epochs=3, batch_size=1, progress=False)

    def overflowing(backend, enc, *, edits=None, grad=False):  # as a float16 model overflowing would
        out = completion_logprobs(backend, enc, edits=edits, grad=grad)
        return out * float("nan") if grad else out

    monkeypatch.setattr(bipo, "completion_logprobs", overflowing)
    with pytest.raises(SteerlabError, match="loss became nan at step 1 .* lower lr"):
        train_bipo(tiny, TRAIN[:2], SITE, progress=False)
    monkeypatch.undo()
    with pytest.raises(SteerlabError, match="vector became non-finite .* smaller init"):
        train_bipo(tiny, TRAIN[:2], SITE, init=torch.full((tiny.d_model,), 3e38), epochs=1, progress=False)


# ---------------------------------------------------------------------------------------------- real model


def refusal_pairs():
    """CAA refusal items as free-form pairs (the paper's format): the question, then the text of the
    behaviour-matching choice as the positive completion and the other choice's text as the negative."""
    with open(CAA_REFUSAL) as f:
        items = json.load(f)
    pairs = []
    for item in items:
        question, a, b = re.match(r"(?s)(.*?)\n\nChoices:\n\(A\) (.*?)\n\(B\) (.*)$", item["question"]).groups()
        pairs.append(pair(question, a, b) if item["answer_matching_behavior"] == "(A)" else pair(question, b, a))
    random.Random(0).shuffle(pairs)
    return pairs


@pytest.mark.slow
def test_refusal_pairs_on_real_model(backend_kind, request):
    """20 refusal pairs, one epoch with the defaults: runs in minutes and moves held-out preference both ways.

    Runs on the first backend only (the tiny-model tests show both backends learn the same vector).
    """
    if backend_kind != request.config.getoption("--backend").split(",")[0]:
        pytest.skip("the real-model BiPO run is done on the first backend only")
    real = request.getfixturevalue("real")
    pairs = refusal_pairs()
    train, held_out = pairs[:20], pairs[300:316]
    start = time.perf_counter()
    v, log = train_bipo(real, train, 12, epochs=1, progress=False)
    seconds = time.perf_counter() - start
    base = preferences(real, held_out)
    plus = preferences(real, held_out, interventions.add(Site(12), v, 1.0))
    minus = preferences(real, held_out, interventions.add(Site(12), v, -1.0))
    print(
        f"BiPO refusal on {real.kind}, 20 pairs x 1 epoch: {seconds:.0f} s, |v| {float(v.norm()):.2f}; held-out "
        f"log p(refusal) - log p(other), mean over 16 pairs: {float(base.mean()):+.2f} unsteered, "
        f"shift {float((plus - base).mean()):+.2f} with +v, {float((minus - base).mean()):+.2f} with -v"
    )
    assert seconds < 1200
    assert float((plus - base).mean()) > 0 > float((minus - base).mean())
    assert float((plus - base > 0).float().mean()) >= 0.75
