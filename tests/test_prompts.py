"""Prompt rendering (`steerlab.prompts`): MCQ items to contrast pairs, chat formatting without a template."""

from types import SimpleNamespace as NS

from steerlab.data import ContrastPair, MCQItem
from steerlab.prompts import ANSWER_CUE, format_chat, mcq_pairs, mcq_prompt

ITEMS = [MCQItem(f"What is {i} + 1?", (str(i + 1), str(i + 2), "seven", "nine"), i % 4, {"id": i}) for i in range(20)]


def test_mcq_pairs_right_letter_against_a_wrong_one():
    pairs = mcq_pairs(ITEMS, seed=3)
    assert all(isinstance(p, ContrastPair) for p in pairs)
    for item, pair in zip(ITEMS, pairs, strict=True):
        assert pair.prompt == mcq_prompt(item.question, item.choices).removesuffix("\n" + ANSWER_CUE)
        assert pair.positive == f"Answer: {'ABCD'[item.answer]}"
        wrong = pair.negative.removeprefix("Answer: ")
        assert wrong in "ABCD" and wrong != "ABCD"[item.answer]
        assert pair.meta == item.meta and pair.meta is not item.meta
    assert len({p.negative for p in pairs}) > 1  # the wrong letter is drawn, not fixed


def test_mcq_pairs_are_seeded():
    assert mcq_pairs(ITEMS, seed=1) == mcq_pairs(ITEMS, seed=1)
    assert mcq_pairs(ITEMS, seed=1) != mcq_pairs(ITEMS, seed=2)


def test_format_chat_without_a_template():
    tok = NS(chat_template=None)
    assert format_chat(tok, "Hi?") == "User: Hi?\nAssistant:"
    assert format_chat(tok, "Hi?", system="Be kind.", assistant_prefix="(") == "Be kind.\n\nUser: Hi?\nAssistant: ("
