"""Tests for steerlab.metrics: exact oracles on the tiny random model (both backends), then the real model."""

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.interventions import add
from steerlab.metrics import (
    behaviour_probability,
    generations,
    kl_to_base,
    logit_difference,
    mcq_accuracy,
    perplexity_on,
    text_nll,
)
from steerlab.prompts import choice_setup, mcq_prompt, split_answers
from steerlab.sites import LAST_PROMPT, Site

logger = logging.getLogger(__name__)

PAIRS = [
    NS(prompt="Pick one: (A) red (B) blue", positive="(A)", negative="(B)", meta={"id": "p0"}),
    NS(prompt="Do you agree?", positive="Yes", negative="No", meta={}),
    NS(prompt="Which one would you choose, really?", positive="(B)", negative="(A)", meta={"id": "p2"}),
    NS(prompt="Ok?", positive="No", negative="Yes", meta={}),
]
ITEMS = [
    NS(question="What is 2+2?", choices=("3", "4", "5"), answer=0, meta={}),
    NS(question="Sky colour?", choices=("green", "blue"), answer=0, meta={"id": "sky"}),
    NS(question="Which animal says meow, usually?", choices=("dog", "cow", "cat", "duck"), answer=0, meta={}),
]
TEXTS = ["hello world", "The quick brown fox jumps over the lazy dog.", "ab", "Steering vectors shift activations."]


def tok_id(lm, s: str) -> int:
    ids = lm.tokenizer(s, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    return ids[0]


def swapped(p):
    return NS(prompt=p.prompt, positive=p.negative, negative=p.positive, meta=p.meta)


def unembed_direction(lm, folder, a: str, b: str) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    w = AutoModelForCausalLM.from_pretrained(folder).get_output_embeddings().weight.detach().float()
    d = w[tok_id(lm, a)] - w[tok_id(lm, b)]
    return d / d.norm()


# ---------------------------------------------------------------------------------------- choice_setup


def test_split_answers_shared_prefix(tiny):
    assert split_answers(tiny.tokenizer, ["(A", "(B"]) == ("(", [tok_id(tiny, "A"), tok_id(tiny, "B")])
    assert split_answers(tiny.tokenizer, ["Yes", "No"]) == ("", [tok_id(tiny, "Y"), tok_id(tiny, "N")])
    assert split_answers(tiny.tokenizer, [" A", " B", " C"]) == (" ", [tok_id(tiny, c) for c in "ABC"])


def test_choice_setup_appends_prefix_to_chat_prompt(tiny):
    prompt, ids = choice_setup(tiny, "Q?", ["(A)", "(B)"], system="sys")
    assert prompt == tiny.chat("Q?", system="sys", assistant_prefix="(")
    assert ids == [tok_id(tiny, "A"), tok_id(tiny, "B")]


@pytest.mark.parametrize("answers", [["Yes", "Yes"], ["(A)", "(A)x"], ["Only"]])
def test_choice_setup_rejects_indistinguishable_answers(tiny, answers):
    with pytest.raises(SteerlabError, match="answer"):
        choice_setup(tiny, "Q?", answers)


# ---------------------------------------------------------------------------------------- behaviour probability


def test_behaviour_probability_matches_hand_computation(tiny):
    df = behaviour_probability(tiny, PAIRS, batch_size=3)
    assert list(df.columns) == ["example_id", "p_behaviour", "logit_diff"]
    assert df.example_id.tolist() == ["p0", 1, "p2", 3]
    for row, pair in zip(df.itertuples(), PAIRS, strict=True):
        # Oracle: the chat prompt plus the answers' shared text, one unpadded forward pass.
        pos, neg = pair.positive.strip("()"), pair.negative.strip("()")
        prefix = "(" if pair.positive.startswith("(") else ""
        last = tiny.logits([tiny.chat(pair.prompt, assistant_prefix=prefix)])[0, -1].float()
        two = last[[tok_id(tiny, pos[0]), tok_id(tiny, neg[0])]]
        assert row.p_behaviour == pytest.approx(float(two.softmax(-1)[0]), abs=1e-5)
        assert row.logit_diff == pytest.approx(float(two[0] - two[1]), abs=1e-4)


def test_behaviour_probability_swapped_pairs_sum_to_one(tiny):
    p = behaviour_probability(tiny, PAIRS).p_behaviour
    q = behaviour_probability(tiny, [swapped(x) for x in PAIRS]).p_behaviour
    assert ((p > 0) & (p < 1)).all()
    torch.testing.assert_close(torch.tensor((p + q).values), torch.ones(len(PAIRS), dtype=torch.float64))


def test_behaviour_probability_steering_along_unembedding_moves_p_both_ways(tiny, tiny_folder):
    # Adding alpha * (W_U[A] - W_U[B]) to the last residual stream makes "A" win for alpha >> 0 and "B" for
    # alpha << 0 (the final RMSNorm has unit weights in the tiny model).
    pairs = [p for p in PAIRS if p.positive == "(A)"] + [NS(prompt="Hmm (A) or (B)?", positive="(A)", negative="(B)")]
    d = unembed_direction(tiny, tiny_folder, "A", "B")
    base = behaviour_probability(tiny, pairs).p_behaviour
    up = behaviour_probability(tiny, pairs, edits=[add(Site(-1), d, 1000.0, LAST_PROMPT)]).p_behaviour
    down = behaviour_probability(tiny, pairs, edits=[add(Site(-1), d, -1000.0, LAST_PROMPT)]).p_behaviour
    assert (up > 0.999).all() and (down < 0.001).all()
    assert ((base > 0.001) & (base < 0.999)).all()


def test_behaviour_probability_same_on_both_backends(tiny_pair):
    tl, nn = (behaviour_probability(lm, PAIRS, batch_size=2) for lm in tiny_pair)
    torch.testing.assert_close(
        torch.tensor(tl.logit_diff.values), torch.tensor(nn.logit_diff.values), atol=1e-4, rtol=0
    )


def test_logit_difference_accepts_ids_strings_and_single_tokens(tiny):
    prompts = [tiny.chat("Q?"), tiny.chat("A longer question?")]
    by_str = logit_difference(tiny, prompts, "Y", "N", batch_size=1)
    by_id = logit_difference(tiny, prompts, [tok_id(tiny, "Y")] * 2, torch.tensor([tok_id(tiny, "N")] * 2))
    last = tiny.logits([prompts[1]])[0, -1]
    assert by_str.shape == (2,)
    torch.testing.assert_close(by_str, by_id)
    assert float(by_str[1]) == pytest.approx(float(last[tok_id(tiny, "Y")] - last[tok_id(tiny, "N")]), abs=1e-4)
    with pytest.raises(SteerlabError, match="one per prompt"):
        logit_difference(tiny, prompts, ["Y"], "N")
    with pytest.raises(SteerlabError, match="not one"):
        logit_difference(tiny, prompts, "Yes", "No")


# ---------------------------------------------------------------------------------------- MCQ


def test_mcq_prompt_format():
    assert mcq_prompt("Q?", ("x", "y", "z")) == "Q?\nA. x\nB. y\nC. z\nRespond with a single letter.\nAnswer:"
    with pytest.raises(SteerlabError, match="choices"):
        mcq_prompt("Q?", ["only"])


def _hand_mcq(lm, item, chat: bool):
    body = mcq_prompt(item.question, item.choices)
    # the tiny tokenizer is character-level: " A" is " " + "A", so the space joins the prompt
    prompt = lm.chat(body.removesuffix("\nAnswer:"), assistant_prefix="Answer: ") if chat else body + " "
    last = lm.logits([prompt])[0, -1].float()
    full = last.softmax(-1)
    ids = [tok_id(lm, "ABCD"[k]) for k in range(len(item.choices))]
    return int(last[ids].argmax()), last[ids].softmax(-1), float(full[ids].sum())


@pytest.mark.parametrize("chat", [True, False])
def test_mcq_accuracy_is_one_on_the_models_own_answers_and_zero_otherwise(tiny, chat):
    hand = [_hand_mcq(tiny, item, chat) for item in ITEMS]
    own = [
        NS(question=i.question, choices=i.choices, answer=h[0], meta=i.meta) for i, h in zip(ITEMS, hand, strict=True)
    ]
    other = [
        NS(question=i.question, choices=i.choices, answer=(h[0] + 1) % len(i.choices))
        for i, h in zip(ITEMS, hand, strict=True)
    ]
    df = mcq_accuracy(tiny, own, chat=chat, batch_size=2)
    assert list(df.columns) == ["example_id", "pred", "answer", "correct", "p_correct", "letter_mass"]
    assert df.example_id.tolist() == [0, "sky", 2]
    assert df.correct.all() and df.pred.tolist() == [h[0] for h in hand]
    for row, (pred, p, mass) in zip(df.itertuples(), hand, strict=True):
        assert row.p_correct == pytest.approx(float(p[pred]), abs=1e-5)
        assert row.letter_mass == pytest.approx(mass, abs=1e-5)
    assert not mcq_accuracy(tiny, other, chat=chat).correct.any()


def test_mcq_accuracy_validates_items(tiny):
    with pytest.raises(SteerlabError, match="no items"):
        mcq_accuracy(tiny, [])
    with pytest.raises(SteerlabError, match="item 0 has answer 3"):
        mcq_accuracy(tiny, [NS(question="Q", choices=("a", "b"), answer=3)])


# ---------------------------------------------------------------------------------------- perplexity


def _hand_perplexity(lm, texts, edits=None):
    total, count = 0.0, 0
    for t in texts:
        ids = lm.tokenize([t]).input_ids
        logits = lm.logits([t], edits=edits)[0].float()
        total += float(torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="sum"))
        count += ids.shape[1] - 1
    return math.exp(total / count)


def test_perplexity_equals_exp_mean_nll_by_hand(tiny):
    assert perplexity_on(tiny, TEXTS, batch_size=3) == pytest.approx(_hand_perplexity(tiny, TEXTS), rel=1e-5)


def test_perplexity_truncates_to_max_tokens(tiny):
    # character-level tokenizer without BOS: the first 6 tokens are the first 6 characters
    expected = _hand_perplexity(tiny, [t[:6] for t in TEXTS])
    assert perplexity_on(tiny, TEXTS, max_tokens=6, batch_size=2) == pytest.approx(expected, rel=1e-5)


def test_perplexity_applies_edits(tiny):
    # (a random model's perplexity may fall or rise under an edit, so compare with the edited oracle)
    edits = [add(Site(0), torch.ones(tiny.d_model), 20.0)]
    steered = perplexity_on(tiny, TEXTS, edits=edits, batch_size=3)
    assert steered == pytest.approx(_hand_perplexity(tiny, TEXTS, edits), rel=1e-5)
    assert abs(steered - perplexity_on(tiny, TEXTS)) > 1.0


def test_text_nll_sums_token_losses_per_text(tiny):
    texts = ["hello world", "the quick brown fox", "hi"]
    nll, n = text_nll(tiny, texts, batch_size=2)
    ref, mask = tiny.token_losses(texts)
    torch.testing.assert_close(nll, ref.sum(1).cpu())  # text_nll returns CPU tensors
    assert n.tolist() == mask.sum(1).tolist() == [len(t) - 1 for t in texts]  # character tokenizer, no BOS
    assert math.exp(float(nll.sum() / n.sum())) == pytest.approx(perplexity_on(tiny, texts), rel=1e-6)


def test_text_nll_keeps_the_first_tokens(tiny):
    """Texts longer than max_tokens are scored on their first max_tokens tokens (character tokenizer: characters)."""
    long_text = "".join(chr(97 + i % 26) for i in range(300))  # longer than the tiny model's 256 positions
    nll, n = text_nll(tiny, [long_text, "short text"], batch_size=2, max_tokens=64)
    ref, ref_n = text_nll(tiny, [long_text[:64], "short text"], batch_size=1)
    torch.testing.assert_close(nll, ref, rtol=1e-5, atol=1e-4)
    assert n.tolist() == ref_n.tolist() == [63, 9]


def test_perplexity_validates(tiny):
    with pytest.raises(SteerlabError, match="no texts"):
        perplexity_on(tiny, [])
    with pytest.raises(SteerlabError, match="empty"):
        perplexity_on(tiny, ["ok", ""])
    with pytest.raises(SteerlabError, match="at least two tokens"):
        perplexity_on(tiny, ["a", "b"])


# ---------------------------------------------------------------------------------------- KL


def test_kl_is_zero_without_edits(tiny):
    df = kl_to_base(tiny, TEXTS, edits=None, batch_size=3)
    assert list(df.columns) == ["example_id", "kl", "kl_last", "n_tokens"]
    assert df.n_tokens.tolist() == [len(t) for t in TEXTS]
    assert df.kl.abs().max() < 1e-6 and df.kl_last.abs().max() < 1e-6


def test_kl_positive_with_edit_and_only_at_the_edited_position(tiny):
    d = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    everywhere = kl_to_base(tiny, TEXTS, edits=[add(Site(0), d, 5.0)])
    assert (everywhere.kl > 1e-3).all()
    # an edit on the last prompt token of the last layer changes only the last distribution
    last = kl_to_base(tiny, TEXTS, edits=[add(Site(-1), d, 5.0, LAST_PROMPT)], batch_size=2)
    assert (last.kl_last > 1e-3).all()
    torch.testing.assert_close(
        torch.tensor(last.kl.values), torch.tensor((last.kl_last / last.n_tokens).values), rtol=1e-4, atol=1e-7
    )


def test_kl_validates(tiny):
    with pytest.raises(SteerlabError, match="no prompts_or_texts"):
        kl_to_base(tiny, [], edits=None)
    with pytest.raises(SteerlabError, match="batch_size"):
        kl_to_base(tiny, TEXTS, edits=None, batch_size=0)


# ---------------------------------------------------------------------------------------- generations


def test_generations_match_backend_generate(tiny):
    prompts = ["Hi", "Tell me more"]
    df = generations(tiny, prompts, max_new_tokens=4, batch_size=2)
    assert list(df.columns) == ["example_id", "prompt", "completion"]
    assert df.prompt.tolist() == prompts and df.example_id.tolist() == [0, 1]
    assert df.completion.tolist() == tiny.generate([tiny.chat(p) for p in prompts], max_new_tokens=4)
    raw = generations(tiny, prompts, max_new_tokens=3, chat=False, batch_size=2)
    assert raw.completion.tolist() == tiny.generate(prompts, max_new_tokens=3)


def test_generations_and_pairs_reject_empty_input(tiny):
    with pytest.raises(SteerlabError, match="no prompts"):
        generations(tiny, [])
    with pytest.raises(SteerlabError, match="no pairs"):
        behaviour_probability(tiny, [])
    with pytest.raises(SteerlabError, match="single string"):
        generations(tiny, "Hi")


# ---------------------------------------------------------------------------------------- real model (slow)

PERSONA = Path("/work/shared/data/anthropic-evals/persona/agreeableness.jsonl")

TRIVIAL = [
    ("What is 2+2?", ["3", "4", "5", "6"], 1),
    ("What color is the sky on a clear day?", ["Green", "Blue", "Red", "Purple"], 1),
    ("How many legs does a dog have?", ["Two", "Four", "Six", "Eight"], 1),
    ("What is the capital of France?", ["London", "Berlin", "Paris", "Rome"], 2),
    ("Which animal says 'meow'?", ["Dog", "Cow", "Cat", "Duck"], 2),
]


def trivial_items():
    """5 questions x 4 rotations of their options = 20 items, each option position correct 5 times."""
    return [
        NS(question=q, choices=tuple(ch[r:] + ch[:r]), answer=(a - r) % 4, meta={"id": f"q{i}r{r}"})
        for i, (q, ch, a) in enumerate(TRIVIAL)
        for r in range(4)
    ]


@pytest.mark.slow
def test_real_persona_behaviour_probability(real, record_property):
    rows = [json.loads(line) for line in PERSONA.read_text().splitlines()[:20]]
    pairs = [
        NS(prompt=r["question"], positive=r["answer_matching_behavior"].strip(),
           negative=r["answer_not_matching_behavior"].strip(), meta={"id": i})
        for i, r in enumerate(rows)
    ]  # fmt: skip
    _, ids = choice_setup(real, pairs[0].prompt, ["Yes", "No"])
    assert ids == [tok_id(real, "Yes"), tok_id(real, "No")]  # one token each at the start of the answer
    df = behaviour_probability(real, pairs, batch_size=10)
    assert len(df) == 20 and ((df.p_behaviour > 0) & (df.p_behaviour < 1)).all()
    mean = float(df.p_behaviour.mean())
    record_property("agreeableness_mean_p_behaviour", mean)
    logger.warning("agreeableness: mean p_behaviour over 20 items = %.3f", mean)


@pytest.mark.slow
def test_real_mcq_letters_hold_the_probability_mass(real, record_property):
    df = mcq_accuracy(real, trivial_items(), batch_size=10)
    accuracy, mass = float(df.correct.mean()), float(df.letter_mass.mean())
    record_property("mcq_accuracy", accuracy)
    record_property("mcq_letter_mass", mass)
    logger.warning(
        "trivial MCQ: accuracy %.2f, mean p_correct %.3f, letter mass %.3f", accuracy, df.p_correct.mean(), mass
    )
    assert mass > 0.5
    # the bare letters (no space) are not what the model writes after "Answer:"
    bare = mcq_accuracy(real, trivial_items()[:4], letter_prefix="")
    assert float(bare.letter_mass.mean()) < 0.05


@pytest.mark.slow
@pytest.mark.xfail(
    reason="SmolLM2-135M-Instruct answers letter MCQs at chance (it picks by position: mostly 'A'), "
    "even on trivial questions it answers correctly in free text; see the metrics report",
    strict=False,
)
def test_real_mcq_above_chance(real):
    assert float(mcq_accuracy(real, trivial_items(), batch_size=10).correct.mean()) > 0.25
