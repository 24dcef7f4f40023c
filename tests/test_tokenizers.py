"""Answer-token scoring with the tokenizer families real models use, built offline at tiny size.

- ``sentencepiece``: Llama-2 (``▁`` for spaces, a space prepended to a text, ``[/INST] Yes`` replies);
- ``gpt2``: byte-level BPE (``Ġ`` for spaces), no chat template (the plain ``User:/Assistant:`` format);
- ``tiktoken``: byte-level BPE with Llama-3's split pattern and chat template;
- ``char``: the character-level tokenizer of the other tests (ChatML template).

The oracle is the text the model reads when it gives the answer itself: the conversation rendered by
its chat template with the answer as the assistant's reply (or ``Assistant: <answer>`` without one).
The scored prompt must tokenize as the start of that text, and the compared token must be the token
that follows there.
"""

from types import SimpleNamespace

import pytest

from steerlab.metrics import behaviour_probability
from steerlab.prompts import choice_setup, format_chat, mcq_prompt, mcq_setup, reply_lead
from steerlab.testing import TOKENIZER_STYLES, make_tiny_model, tiny_backend

QUESTION = "Is the sky blue?"
ITEM = SimpleNamespace(question="Pick one.", choices=["yes", "no", "maybe", "never"], answer=2)
_loaded: dict = {}


@pytest.fixture(params=TOKENIZER_STYLES)
def style(request):
    return request.param


@pytest.fixture
def lm(style, tmp_path_factory):
    if style not in _loaded:
        folder = make_tiny_model(tmp_path_factory.mktemp(style), tokenizer=style)
        _loaded[style] = tiny_backend("nnsight", folder)
    return _loaded[style]


def as_reply(lm, user: str, reply: str, system: str | None = None) -> str:
    """The conversation as the model sees it when it has written ``reply`` itself."""
    tok = lm.tokenizer
    if not tok.chat_template:
        return (f"{system}\n\n" if system else "") + f"User: {user}\nAssistant: {reply}"
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    messages.append({"role": "assistant", "content": reply})
    return tok.apply_chat_template(messages, tokenize=False)


def assert_scored_where_written(lm, prompt: str, compared: int, reply_text: str) -> None:
    prompt_ids = lm.tokenize(prompt).input_ids[0].tolist()
    reply_ids = lm.tokenize(reply_text).input_ids[0].tolist()
    assert reply_ids[: len(prompt_ids)] == prompt_ids, "the scored prompt is not how the reply starts"
    assert reply_ids[len(prompt_ids)] == compared, (
        f"compared {lm.tokenizer.convert_ids_to_tokens([compared])}, the reply continues with "
        f"{lm.tokenizer.convert_ids_to_tokens(reply_ids[len(prompt_ids) : len(prompt_ids) + 1])}"
    )


@pytest.mark.parametrize("answers", [["Yes", "No"], ["(A)", "(B)"], ["(A)", "(B)", "(C)", "(D)"]])
def test_choice_setup_compares_the_token_the_model_writes(lm, answers):
    prompt, ids = choice_setup(lm, QUESTION, answers, system="Be brief.")
    for answer, token in zip(answers, ids, strict=True):
        stem = answer.rstrip(")")
        assert_scored_where_written(lm, prompt, token, as_reply(lm, QUESTION, stem, system="Be brief."))


@pytest.mark.parametrize("chat", [True, False])
def test_mcq_setup_compares_the_letter_the_model_writes(lm, chat):
    prompt, ids = mcq_setup(lm, ITEM, chat=chat)
    body = mcq_prompt(ITEM.question, ITEM.choices)
    for letter, token in zip("ABCD", ids, strict=True):
        if chat:
            text = as_reply(lm, body.removesuffix("\nAnswer:"), f"Answer: {letter}")
        else:
            text = f"{body} {letter}"
        assert_scored_where_written(lm, prompt, token, text)


@pytest.mark.parametrize("style", ["sentencepiece"])
def test_llama2_sentencepiece_spacing(lm):
    """Llama-2 replies after ``[/INST]`` with a space: ``"▁Yes"``; an A/B answer's ``"("`` joins the prompt as
    ``"▁("`` (not a bare ``"("`` glued to ``"]"``) and the letter is compared on its own; MCQ letters are ``"▁A"``."""
    tok = lm.tokenizer
    assert reply_lead(tok) == " "
    _, ids = choice_setup(lm, QUESTION, ["Yes", "No"])
    assert tok.convert_ids_to_tokens(ids) == ["▁Yes", "▁No"]
    prompt, ids = choice_setup(lm, QUESTION, ["(A)", "(B)"])
    assert prompt.endswith("[/INST] (") and tok.convert_ids_to_tokens(ids) == ["A", "B"]
    assert tok.convert_ids_to_tokens(lm.tokenize(prompt).input_ids[0].tolist())[-1] == "▁("
    assert tok.convert_ids_to_tokens(mcq_setup(lm, ITEM)[1]) == ["▁A", "▁B", "▁C", "▁D"]


def test_reply_leads_of_the_chat_formats(lm, style):
    lead = reply_lead(lm.tokenizer)
    assert lead == {"char": "", "sentencepiece": " ", "gpt2": " ", "tiktoken": ""}[style]
    assert format_chat(lm.tokenizer, "Q?", assistant_prefix="(").endswith(lead + "(")


def test_behaviour_probability_runs_with_every_tokenizer(lm):
    pairs = [SimpleNamespace(prompt=QUESTION, positive="(A)", negative="(B)", meta={}),
             SimpleNamespace(prompt=QUESTION, positive="Yes", negative="No", meta={})]  # fmt: skip
    p = behaviour_probability(lm, pairs).p_behaviour
    assert p.between(0, 1).all()

