"""Render records into model inputs: chat turns, scored answer prompts, MCQ prompts, prompt + completion.

- `format_chat`: one user turn in the tokenizer's chat template (a plain ``User:/Assistant:`` format
  for base models), the assistant turn opened; `reply_lead` is the whitespace the format writes
  before the reply (Llama-2's ``"[/INST] "``), which an assistant prefix follows.
- `choice_setup` (A/B and Yes/No answers) and `mcq_setup` (option letters after ``"Answer:"``): the
  scored prompt and the compared token of each answer, tokenized in context where the model writes
  it (`split_answers`), which `steerlab.metrics` and `steerlab.tasks.ChoiceTask` read at the last
  prompt position.
- `mcq_prompt`: the multiple-choice format of PAS (Cui & Chen 2025); `mcq_pairs` turns MCQ items
  into contrast pairs (the right letter against a wrong one).
- `encode`: ``prompt + completion`` texts tokenized so every prompt ends at the same index (left
  padding), with a mask of the completion tokens: what reading an activation "at the answer" or
  scoring a completion's likelihood needs.

The unit is the contrast pair (repeng, steering-vectors): one prompt, a positive and a negative
completion. A/B answers such as ``"(A)"`` are cut before the closing bracket (``"(A"``), so the last
completion token is the letter itself, where CAA reads its vectors (Rimsky et al. 2024).

Functions that take a ``backend`` use only its ``tokenizer``, ``tokenize`` and ``chat``.
"""

from __future__ import annotations

import numbers
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from steerlab.data import ContrastPair
from steerlab.errors import SteerlabError, check_nonempty
from steerlab.sites import Batch

if TYPE_CHECKING:  # annotations only: a backend is used through its methods
    from steerlab.backends.base import Backend

ANSWER_CUE = "Answer:"
INSTRUCTION = "Respond with a single letter."
LETTERS = string.ascii_uppercase

ReadPosition = Literal["completion_last", "completion_mean", "prompt_last"]
READ_POSITIONS: tuple[str, ...] = ("completion_last", "completion_mean", "prompt_last")


def _messages(user: str, system: str | None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]


def reply_lead(tokenizer: Any) -> str:
    """The whitespace a chat format writes between the opened assistant turn and the reply's first character.

    Llama-2's template renders ``[/INST] Yes``: the lead is ``" "``; ChatML, Llama-3 and Gemma templates
    start the reply right after the header (``""``); the plain ``User:/Assistant:`` format of a model
    without a template writes ``"Assistant: Yes"`` (``" "``). Read from the template itself by rendering
    a one-turn conversation with and without a reply; anything but whitespace counts as ``""``.
    """
    if not getattr(tokenizer, "chat_template", None):
        return " "
    probe, reply = _messages("x", None), "\x1f"
    try:
        opened = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*probe, {"role": "assistant", "content": reply}], tokenize=False, add_generation_prompt=False
        )
    except Exception:  # a template is arbitrary code; one that cannot render a reply has no known lead
        return ""
    if not full.startswith(opened) or reply not in full[len(opened) :]:
        return ""
    lead = full[len(opened) : full.index(reply, len(opened))]
    return lead if lead.isspace() else ""


def format_chat(tokenizer: Any, user: str, *, system: str | None = None, assistant_prefix: str = "") -> str:
    """A single user turn in the tokenizer's chat template, with the assistant turn opened.

    A non-empty ``assistant_prefix`` starts the reply as the template would render it, after its
    `reply_lead` (Llama-2: ``"[/INST] ("``, ChatML: ``"assistant\\n("``).

    Example:
        >>> format_chat(tok, "Is the sky blue?", assistant_prefix="(")   # doctest: +SKIP
        '<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nIs the sky blue?<|im_end|>\\n<|im_start|>assistant\\n('
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(_messages(user, system), tokenize=False, add_generation_prompt=True)
    else:
        text = (f"{system}\n\n" if system else "") + f"User: {user}\nAssistant:"
    return text + (reply_lead(tokenizer) + assistant_prefix if assistant_prefix else "")


def answer_stem(answer: str) -> str:
    """``"(A)" -> "(A"``; ``" Yes" -> "Yes"``: the answer up to and including its deciding token."""
    answer = answer.strip()
    if len(answer) >= 3 and answer.startswith("(") and answer.endswith(")"):
        return answer[:-1]
    return answer


def _token_span_text(tokenizer: Any, text: str, start: int, end: int, text_start: int) -> str:
    """The text of tokens ``start:end`` of ``text``, from character ``text_start`` (where token ``start``
    begins) on; exact via offsets where the tokenizer has them."""
    if end == start:
        return ""
    try:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text[text_start : offsets[end - 1][1]]
    except (NotImplementedError, KeyError, TypeError):  # slow tokenizers have no offsets
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return tokenizer.decode(ids[:end])[len(tokenizer.decode(ids[:start])) :]


def split_answers(tokenizer: Any, answers: Sequence[str], context: str = "") -> tuple[str, list[int]]:
    """Split answers into their shared token prefix (as text) and each answer's next token id.

    With ``context`` (the prompt the answers follow), each answer is tokenized where it stands,
    ``context + answer``, so its tokens are the ones the model reads there (a SentencePiece tokenizer
    writes ``"Yes"`` as ``"▁Yes"`` at the start of a text but ``"Yes"`` after a newline).

    Example (SmolLM2): ``split_answers(tok, ["(A", "(B"]) -> ("(", [id("A"), id("B")])``.
    """
    answers = check_nonempty(answers, "answers", "give at least two answers to compare")
    if len(answers) < 2:
        raise SteerlabError(f"need at least two answers to compare, got {answers!r}")
    before = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    start = len(before)
    toks = []
    for a in answers:
        full = tokenizer(context + a, add_special_tokens=False)["input_ids"]
        if full[:start] != before:
            raise SteerlabError(
                f"the answer {a!r} merges with the end of its prompt ({context[-20:]!r}) into one token, so no "
                "single next token decides it; end the prompt differently or start the answers with a space"
            )
        toks.append(full[start:])
    n = 0
    while all(len(t) > n for t in toks) and len({t[n] for t in toks}) == 1:
        n += 1
    short = [a for a, t in zip(answers, toks, strict=True) if len(t) <= n]
    if short:
        raise SteerlabError(
            f"answers {list(answers)!r} cannot be told apart by one token: {short!r} ends where the others "
            "continue; reword the answers so each differs from the others"
        )
    ids = [t[n] for t in toks]
    if len(set(ids)) != len(ids):
        raise SteerlabError(f"answers {list(answers)!r} share their first differing token; reword them")
    return _token_span_text(tokenizer, context + answers[0], start, start + n, len(context)), ids


def choice_setup(
    backend: Backend, question: str, answers: Sequence[str], system: str | None = None
) -> tuple[str, list[int]]:
    """The scored prompt and the compared token of each answer (CAA-style A/B and Yes/No scoring).

    Each answer is cut to its stem (``"(A)" -> "(A"``, see `answer_stem`) and tokenized where the
    model would write it: after the opened assistant turn and the chat format's `reply_lead`
    (Llama-2: ``"[/INST] (A"``). The answers' shared leading tokens join the prompt, and the answers
    are compared on their next token.

    Example (SmolLM2-135M-Instruct):
        >>> choice_setup(lm, "Pick one. (A) x (B) y", ["(A)", "(B)"])   # doctest: +SKIP
        ('<|im_start|>system\\n...<|im_start|>assistant\\n(', [49, 50])          # "A", "B"
        >>> choice_setup(lm, "Is it?", ["Yes", "No"])[1]                  # doctest: +SKIP
        [10539, 5230]                                                            # "Yes", "No"
    """
    lead = reply_lead(backend.tokenizer)
    opened = backend.chat(question, system=system)
    prefix, ids = split_answers(backend.tokenizer, [lead + answer_stem(a) for a in answers], context=opened)
    return opened + prefix, ids


def mcq_prompt(question: str, choices: Sequence[str]) -> str:
    """A multiple-choice prompt in the PAS format (Cui & Chen 2025).

    Example:
        >>> print(mcq_prompt("What is 2+2?", ["3", "4"]))
        What is 2+2?
        A. 3
        B. 4
        Respond with a single letter.
        Answer:
    """
    choices = check_nonempty(choices, "choices", "give at least two answer options")
    if len(choices) < 2 or len(choices) > len(LETTERS):
        raise SteerlabError(f"an MCQ item needs 2 to {len(LETTERS)} choices, got {len(choices)}")
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question}\n{options}\n{INSTRUCTION}\n{ANSWER_CUE}"


def mcq_setup(
    backend: Backend, item: Any, *, chat: bool = True, system: str | None = None, letter_prefix: str = " ",
    index: int = 0,
) -> tuple[str, list[int]]:
    """The scored prompt of one multiple-choice item and the token of each option letter (see `mcq_accuracy`)."""
    choices = list(item.choices)
    answer = item.answer
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral) or not 0 <= answer < len(choices):
        raise SteerlabError(
            f"item {index} has answer {answer!r}; it must be a 0-based index into its {len(choices)} choices"
        )
    text = mcq_prompt(item.question, choices)
    if chat:
        text = backend.chat(text[: -len(ANSWER_CUE)].rstrip("\n"), system=system, assistant_prefix=ANSWER_CUE)
    letters = [letter_prefix + LETTERS[k] for k in range(len(choices))]
    prefix, ids = split_answers(backend.tokenizer, letters, context=text)
    return text + prefix, ids


def mcq_pairs(items: Sequence, seed: int = 0) -> list[ContrastPair]:
    """Contrast pairs from multiple-choice items: the `mcq_prompt` body (without its ``"Answer:"`` line)
    completed ``"Answer: <correct letter>"`` against ``"Answer: <a wrong letter>"``, the wrong letter
    drawn per item with a seeded generator.

    Works on anything with ``question``, ``choices``, ``answer`` (0-based) and ``meta`` attributes,
    such as `steerlab.data.MCQItem`; each pair keeps its item's ``meta``.

    Example:
        >>> from steerlab.data import MCQItem
        >>> mcq_pairs([MCQItem("2+2?", ["4", "5"], 0)])[0].negative
        'Answer: B'
    """
    rng = random.Random(seed)
    pairs = []
    for item in items:
        body = mcq_prompt(item.question, item.choices)[: -len(ANSWER_CUE)].rstrip("\n")
        wrong = rng.choice([k for k in range(len(item.choices)) if k != item.answer])
        right = f"{ANSWER_CUE} {LETTERS[item.answer]}"
        pairs.append(ContrastPair(body, right, f"{ANSWER_CUE} {LETTERS[wrong]}", dict(item.meta)))
    return pairs


@dataclass(frozen=True)
class Encoded:
    """Tokenized ``prompt + completion`` texts.

    ``completion_mask[b, i]`` is True where token ``i`` of row ``b`` belongs to the completion.
    Rows are left-padded on the prompt side and right-padded after short completions, so the
    prompt of every row ends at ``prompt_end - 1``.
    """

    batch: Batch
    completion_mask: Bool[Tensor, "batch pos"]
    prompt_end: int

    def read_index(self, position: ReadPosition) -> Int[Tensor, " batch"]:
        """Index of the token read for ``completion_last`` / ``prompt_last``, per row."""
        if position == "prompt_last":
            return torch.full((len(self.batch),), self.prompt_end - 1, device=self.completion_mask.device)
        if position == "completion_last":
            idx = torch.arange(self.completion_mask.shape[1], device=self.completion_mask.device)
            return (self.completion_mask * idx).amax(dim=1)
        raise SteerlabError(f"read position {position!r} has no single index; valid: {READ_POSITIONS}")

    def read(self, acts: Tensor, position: ReadPosition) -> Tensor:
        """Select ``[batch, d_model]`` from ``[batch, pos, d_model]`` activations at a read position."""
        if position not in READ_POSITIONS:
            raise SteerlabError(f"unknown read position {position!r}; valid: {', '.join(READ_POSITIONS)}")
        if position == "completion_mean":
            m = self.completion_mask.unsqueeze(-1).to(acts.dtype)
            return (acts * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)
        idx = self.read_index(position)
        return acts[torch.arange(acts.shape[0], device=acts.device), idx]


def encode(backend: Backend, prompts: Sequence[str], completions: Sequence[str]) -> Encoded:
    """Tokenize formatted prompts and their completions (completions may be empty strings).

    Prompt and completion are tokenized separately and concatenated, so the boundary is exact
    and the prompt tokens are identical across a pair's positive and negative texts.
    """
    if len(prompts) != len(completions):
        raise SteerlabError(
            f"{len(prompts)} prompts but {len(completions)} completions; give one completion per prompt"
        )
    tok = backend.tokenizer
    pb = backend.tokenize(list(prompts))
    comp_ids = [tok(c, add_special_tokens=False)["input_ids"] if c else [] for c in completions]
    width = max(len(c) for c in comp_ids)
    pad = tok.pad_token_id
    ids = torch.full((len(prompts), width), pad, dtype=pb.input_ids.dtype)
    mask = torch.zeros((len(prompts), width), dtype=pb.attention_mask.dtype)
    for row, c in enumerate(comp_ids):
        ids[row, : len(c)] = torch.tensor(c, dtype=ids.dtype)
        mask[row, : len(c)] = 1
    ids, mask = ids.to(pb.input_ids.device), mask.to(pb.input_ids.device)
    batch = Batch(torch.cat([pb.input_ids, ids], dim=1), torch.cat([pb.attention_mask, mask], dim=1))
    completion = torch.cat([torch.zeros_like(pb.attention_mask), mask], dim=1).bool()
    return Encoded(batch, completion, pb.prompt_len)


def pair_prompts(backend: Backend, pairs: Sequence, *, system: str | None = None, chat: bool = True) -> list[str]:
    """Chat-formatted prompts (assistant turn opened) for contrast pairs or MCQ-like records."""
    return [backend.chat(p.prompt, system=system) if chat else p.prompt for p in pairs]


def answer_token_ids(backend: Backend, prompt: str, answers: Sequence[str]) -> list[int]:
    """The first token of each answer when it follows ``prompt`` (e.g. ``"A"`` after ``"("``).

    Raises if two answers share their first token, since they could not be told apart.
    """
    tok = backend.tokenizer
    ids = []
    for a in answers:
        toks = tok(a, add_special_tokens=False)["input_ids"]
        if not toks:
            raise SteerlabError(f"answer {a!r} has no tokens")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise SteerlabError(f"answers {list(answers)} start with the same token; reword them to start differently")
    return ids
