"""Positions that know the chat template (`steerlab.positions`, `steerlab.sites.Positions`), and the first
generated token being steered (CAA's reference code missed it)."""

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.interventions import add
from steerlab.positions import DEFAULT_POSITIONS, chat_layout, default_positions, prompt_spans, resolve_positions
from steerlab.prompts import format_chat
from steerlab.sites import (
    AFTER_INSTRUCTION,
    ALL,
    ASSISTANT,
    LAST_PROMPT,
    SYSTEM,
    USER,
    Positions,
    Site,
)  # fmt: skip
from steerlab.testing import tiny_tokenizer

# the tiny tokenizer is character-level with one token per ChatML marker, so spans can be counted by hand:
# <|im_start|> system \n (8 tokens) | Be nice (7) | <|im_end|> \n <|im_start|> user \n (8) | Hi you (6) |
# <|im_end|> \n (2) | <|im_start|> assistant \n ( (12)
CHAT = {"system": (8, 15), "user": (23, 29), "assistant": (31, 43)}
# without a template: "Be nice\n\nUser: Hi you\nAssistant: ("
PLAIN = {"system": (0, 7), "user": (15, 21), "assistant": (22, 34)}


@pytest.fixture
def tok():
    return tiny_tokenizer()


def decoded(tok, prompt, span):
    ids = tok(prompt)["input_ids"]
    return tok.decode(ids[span[0] : span[1]])


def test_spans_on_a_chat_template(tok):
    prompt = format_chat(tok, "Hi you", system="Be nice", assistant_prefix="(")
    spans = prompt_spans(tok, prompt)
    assert spans == CHAT and len(tok(prompt)["input_ids"]) == 43
    assert decoded(tok, prompt, spans["user"]).replace(" ", "") == "Hiyou"  # the char tokenizer decodes with spaces


def test_spans_without_a_chat_template(tok):
    tok.chat_template = None
    prompt = format_chat(tok, "Hi you", system="Be nice", assistant_prefix="(")
    assert prompt == "Be nice\n\nUser: Hi you\nAssistant: ("
    assert prompt_spans(tok, prompt) == PLAIN
    layout = chat_layout(tok)
    assert (layout.head, layout.close, layout.header) == ("User: ", "\n", "Assistant:")
    no_system = format_chat(tok, "Hi you")
    assert prompt_spans(tok, no_system) == {"system": None, "user": (6, 12), "assistant": (13, 23)}


def test_a_prompt_not_in_the_template_is_refused(tok):
    with pytest.raises(SteerlabError, match="opened assistant turn"):
        prompt_spans(tok, "just some text")


def padded_mask(tok, prompts, positions):
    """The mask a backend applies over a left-padded batch of ``prompts`` (no generated tokens)."""
    enc = tok(prompts, return_tensors="pt", padding=True)
    n_pad = (enc["attention_mask"] == 0).sum(dim=1)
    width = enc["input_ids"].shape[1]
    return enc, positions.mask(0, width, width, n_pad)


@pytest.mark.parametrize("kind, name", [(AFTER_INSTRUCTION, "assistant"), (ASSISTANT, "assistant"),
                                        (USER, "user"), (SYSTEM, "system")])  # fmt: skip
def test_resolved_positions_select_each_rows_span_under_left_padding(tok, kind, name):
    tok.padding_side = "left"
    users = ["Hi you", "A much longer question here?", "Ok"]
    prompts = [format_chat(tok, u, system="Be nice", assistant_prefix="(") for u in users]
    resolved = resolve_positions(kind, tok, prompts)
    assert resolved.kind == "span" and not resolved.needs_template
    assert resolved.generated == (kind == AFTER_INSTRUCTION)
    enc, mask = padded_mask(tok, prompts, resolved)
    for row, prompt in enumerate(prompts):
        a, b = prompt_spans(tok, prompt)[name]
        pad = int((enc["attention_mask"][row] == 0).sum())
        expected = torch.zeros(mask.shape[1], dtype=torch.bool)
        expected[pad + a : pad + b] = True
        assert torch.equal(mask[row], expected), (name, row)


def test_after_instruction_covers_generated_tokens_and_has_a_tail(tok):
    prompts = [format_chat(tok, "Hi you", assistant_prefix="(")]
    resolved = resolve_positions(AFTER_INSTRUCTION, tok, prompts)
    assert resolved == Positions.span(-12, generated=True) and resolved.tail == 12
    n_pad = torch.tensor([0])
    assert resolved.mask(30, 3, 30, n_pad).all()  # three generated tokens
    assert not resolve_positions(ASSISTANT, tok, prompts).mask(30, 3, 30, n_pad).any()


def test_prompts_that_disagree_on_a_span_are_refused(tok):
    prompts = [format_chat(tok, "Hi", assistant_prefix="("), format_chat(tok, "Hi", assistant_prefix="Answer:")]
    with pytest.raises(SteerlabError, match="disagree on the assistant turn's length"):
        resolve_positions(AFTER_INSTRUCTION, tok, prompts)


def test_system_positions_need_a_system_turn(tok):
    with pytest.raises(SteerlabError, match="no system turn"):
        resolve_positions(SYSTEM, tok, [format_chat(tok, "Hi")])


def test_a_template_without_a_separate_header_steers_from_the_end_of_the_user_text(tok):
    """Llama-2 style: ``[INST] question [/INST]``, the generation prompt adds nothing: " [/INST]" heads the reply."""
    tok.chat_template = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"
    prompt = format_chat(tok, "Hi you")
    assert prompt == "[INST] Hi you [/INST]"
    assert prompt_spans(tok, prompt) == {"system": None, "user": (7, 13), "assistant": (13, 21)}
    assert resolve_positions(AFTER_INSTRUCTION, tok, [prompt]) == Positions.span(-8, generated=True)


KINDS = [ALL, LAST_PROMPT, Positions("prompt"), Positions.window(), Positions.window(1, 3), Positions.from_index(2),
         Positions.from_index(-3), Positions.span(-4), Positions.span(-4, generated=True), Positions.span(-5, -2),
         Positions.span(1, -2), Positions.span(2, 4, generated=True)]  # fmt: skip


@pytest.mark.parametrize("positions", KINDS)
def test_cover_agrees_with_the_mask(positions):
    """A backend may skip the mask when `cover` says all or none: it must never disagree with the mask."""
    prompt_len, n_pad = 8, torch.tensor([0, 3])
    for offset in range(0, 12):
        for length in (1, 2, 8):
            mask = positions.mask(offset, length, prompt_len, n_pad)
            cover = positions.cover(offset, length, prompt_len)
            real = torch.arange(offset, offset + length).unsqueeze(0) >= n_pad.unsqueeze(1)
            if cover == "all":
                assert mask[real].all(), (offset, length)
            elif cover == "none":
                assert not mask.any(), (offset, length)
    assert ALL.cover(0, 8, 8) == "all" and Positions.window().cover(8, 1, 8) == "all"
    assert Positions.span(-4).cover(8, 1, 8) == "none" and Positions.span(1, -2).cover(0, 8, 8) is None


def test_positions_values():
    assert LAST_PROMPT.tail == 1 and ALL.tail is None and Positions.window(2, 5).tail == 0
    assert Positions.span(2, -3).tail is None and Positions.from_index(-3).tail == 3
    with pytest.raises(SteerlabError, match="resolve them against the prompts"):
        AFTER_INSTRUCTION.mask(0, 4, 4, torch.tensor([0]))
    with pytest.raises(SteerlabError, match="0 <= start < stop"):
        Positions.window(3, 2)
    with pytest.raises(SteerlabError, match="unknown positions kind"):
        Positions("middle")
    window = Positions.window(1, 3).mask(0, 8, 4, torch.tensor([0, 2]))  # generated tokens 1 and 2: positions 5, 6
    assert window[0].tolist() == [False] * 5 + [True, True, False] and torch.equal(window[0], window[1])
    span = Positions.span(1, -1).mask(0, 6, 6, torch.tensor([0, 2]))  # per-row start, shared end
    assert span.tolist() == [[False, True, True, True, True, False], [False, False, False, True, True, False]]


def test_default_positions_follow_the_papers():
    assert default_positions("caa") == AFTER_INSTRUCTION and default_positions("mean_diff") == AFTER_INSTRUCTION
    assert default_positions("iPASa") == LAST_PROMPT and default_positions("SAAS") == ALL
    assert set(DEFAULT_POSITIONS) == {"caa", "cae", "saas", "actadd", "pas"}
    with pytest.raises(SteerlabError, match="no default positions"):
        default_positions("bipo")


# ------------------------------------------------------------------- the first generated token is steered


def test_the_first_generated_token_is_steered(tiny):
    """Steering only the first generated token (position P) must change the second token's prediction
    exactly as a forward pass over prompt + first token with the edit at position P does."""
    prompt = tiny.chat("Hi there", assistant_prefix="(")
    g = torch.Generator().manual_seed(1)
    v = torch.randn(tiny.d_model, generator=g)
    v = 40 * v / v.norm()
    first_only = add(Site(0), v, 1.0, Positions.window(0, 1))
    plain = tiny.generate_ids(prompt, max_new_tokens=2)
    steered = tiny.generate_ids(prompt, edits=[first_only], max_new_tokens=2)
    p = tiny.tokenize(prompt).prompt_len
    assert steered[0, p] == plain[0, p]  # the first token is predicted before it exists: unchanged
    full = plain[:, : p + 1]  # prompt + first generated token, as one forward pass
    from steerlab.sites import Batch

    batch = Batch(full, torch.ones_like(full))
    oracle = tiny.forward(batch, edits=[add(Site(0), v, 1.0, Positions.span(-1))]).logits[0, -1].argmax()
    unsteered = tiny.forward(batch).logits[0, -1].argmax()
    assert oracle != unsteered, "the test vector must change the second token, or the test could not fail"
    assert steered[0, p + 1] == oracle


def test_after_instruction_steers_the_header_and_every_generated_token(tiny):
    prompt = tiny.chat("Hi there")
    resolved = resolve_positions(AFTER_INSTRUCTION, tiny.tokenizer, [prompt])
    v = 40 * torch.nn.functional.normalize(torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(2)), dim=0)
    steered = tiny.generate_ids(prompt, edits=[add(Site(0), v, 1.0, resolved)], max_new_tokens=3)
    from steerlab.sites import Batch

    p = tiny.tokenize(prompt).prompt_len
    full = steered[:, : p + 2]
    span = Positions.span(resolved.start - 2)  # the same header positions, plus the two generated tokens
    logits = tiny.forward(Batch(full, torch.ones_like(full)), edits=[add(Site(0), v, 1.0, span)]).logits[0]
    assert steered[0, p : p + 3].tolist() == logits[-3:].argmax(-1).tolist()
