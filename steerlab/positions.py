"""Positions that know the chat template: system, user and assistant spans, and each paper's default.

A chat prompt is a system turn (often a default one), a user turn and the opened assistant turn, each with
header tokens. `prompt_spans` finds them in a formatted prompt without hard-coded token ids: it renders the
tokenizer's template (through `steerlab.prompts.format_chat`, the one place prompts are formatted) with
sentinel contents, reads the literal text around the sentinels, locates those pieces in the prompt and maps
the character positions to tokens by the tokenizer's offsets. A tokenizer without a chat template gets the
plain ``User: ... / Assistant:`` format `format_chat` writes, and the same spans.

`resolve_positions` turns a template kind (`steerlab.sites.AFTER_INSTRUCTION`, ``SYSTEM``, ``USER``,
``ASSISTANT``) into a ``span`` `Positions` for a set of prompts. Prompts are left-padded, so a span is
written relative to each row's first token (system, start of the user turn) or to the prompt's end (end
of the user turn, the assistant turn): the prompts must agree on that offset (same system prompt, same
assistant prefix), which holds for the prompts of one task; if they do not, it raises.

Where each paper steers, and the default here (`DEFAULT_POSITIONS`):

- **CAA** (Rimsky et al. 2024): every position after the instruction (``[/INST]``) and every generated
  token (their reference code misses the first generated token). Default `AFTER_INSTRUCTION`: the
  assistant turn *from its header on* plus every generated token. We include the header because ChatML
  prompts for Yes/No answers end with it: steering strictly after it would leave nothing before the answer.
- **CAE** (Im & Li 2025) and **SAAS** (2025): all positions. Default `ALL`.
- **ActAdd** (Turner et al. 2023): the first ``k`` positions of the prompt, ``k`` the token length of the
  steering prompts ("the front"). Default `ALL`: our sentiment and topic directions are means over tokens,
  not position-aligned prompt differences, and on a chat prompt the front is the system turn;
  ``Positions.span(0, k)`` gives the paper's choice.
- **PAS** (Cui & Chen 2025): the last prompt token (the authors' code adds ``strength * v`` to
  ``output[:, -1]`` of one decoder layer, one unpadded prompt at a time, without a chat template). Default
  `LAST_PROMPT`.

`LAST_PROMPT` elsewhere is a speed option only (the cached-prefix fast path); with `AFTER_INSTRUCTION` a
choice task reuses the cached prefix too (everything before the assistant header), at ~4 tokens per item.

Example:
    >>> spans = prompt_spans(lm.tokenizer, lm.chat("Is the sky blue?"))        # doctest: +SKIP
    >>> spans["assistant"]                                                       # doctest: +SKIP
    (31, 34)
    >>> resolve_positions(AFTER_INSTRUCTION, lm.tokenizer, prompts)              # doctest: +SKIP
    Positions('span', start=-3, generated=True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from steerlab.errors import SteerlabError
from steerlab.prompts import format_chat
from steerlab.sites import AFTER_INSTRUCTION, ALL, LAST_PROMPT, Positions

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_POSITIONS", "ChatLayout", "assistant_start", "chat_layout", "default_positions", "prompt_spans",
           "resolve_positions"]

DEFAULT_POSITIONS: dict[str, Positions] = {
    "caa": AFTER_INSTRUCTION,
    "cae": ALL,
    "saas": ALL,
    "actadd": ALL,
    "pas": LAST_PROMPT,
}
"""Steered positions by method (see the module table)."""

_SYS, _USER = "SYSTEMSENTINEL7F3A", "USERSENTINEL7F3A"


def default_positions(method: str) -> Positions:
    """The positions the paper behind ``method`` steers (see the module table)."""
    key = method.lower().replace("-", "").replace("_", "")
    key = {"pasf": "pas", "ipasa": "pas", "ipaswo": "pas", "meandiff": "caa"}.get(key, key)
    if key not in DEFAULT_POSITIONS:
        raise SteerlabError(f"no default positions for method {method!r}; known: {', '.join(DEFAULT_POSITIONS)}; "
                            "pass positions explicitly")  # fmt: skip
    return DEFAULT_POSITIONS[key]


@dataclass(frozen=True)
class ChatLayout:
    """The literal text of a chat template around its contents (as `format_chat` writes prompts).

    A prompt without a system message is ``head + user + close + header + assistant_prefix``; with one,
    ``system_head + system + system_to_user + user + close + header + assistant_prefix``. ``head`` may hold
    a default system turn (SmolLM2's template adds one). ``system_head`` is None when the template takes no
    system message.
    """

    head: str
    close: str
    header: str
    system_head: str | None = None
    system_to_user: str | None = None


def chat_layout(tokenizer: Any) -> ChatLayout:
    """Render the tokenizer's template with sentinel contents and cut out the literal pieces."""
    plain = format_chat(tokenizer, _USER)
    if _USER not in plain:
        raise SteerlabError("the chat template drops or rewrites the user message; positions cannot be located")
    head, tail = plain.split(_USER, 1)
    if getattr(tokenizer, "chat_template", None):
        msgs = [{"role": "user", "content": _USER}]
        bare = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
        opened = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        header = opened[len(bare) :] if opened.startswith(bare) else ""
    else:
        header = "Assistant:"
    if not header or not tail.endswith(header):
        header = tail  # the opened turn is not marked apart (Llama-2: " [/INST]"): all of it heads the reply
    close = tail[: len(tail) - len(header)]
    system_head = system_to_user = None
    try:
        with_system = format_chat(tokenizer, _USER, system=_SYS)
    except Exception:  # noqa: BLE001 - templates without a system role raise their own errors
        with_system = ""
    if _SYS in with_system and _USER in with_system.split(_SYS, 1)[1]:
        system_head, rest = with_system.split(_SYS, 1)
        system_to_user = rest.split(_USER, 1)[0]
    return ChatLayout(head, close, header, system_head, system_to_user)


def _char_spans(layout: ChatLayout, prompt: str) -> dict[str, tuple[int, int] | None]:
    """Character spans of the system content, the user content and the assistant turn in ``prompt``."""
    marker = layout.close + layout.header
    end = prompt.rfind(marker) if marker else -1
    if end < 0:
        raise SteerlabError(
            f"the prompt {prompt[:60]!r}... does not end with an opened assistant turn ({marker!r}); format it with "
            "backend.chat(...) (steerlab.prompts.format_chat)"
        )
    assistant = (end + len(layout.close), len(prompt))
    system = None
    user_start = -1
    sh, s2u = layout.system_head, layout.system_to_user
    if sh is not None and s2u and prompt.startswith(sh):
        cut = prompt.find(s2u, len(sh))
        if 0 <= cut <= end:
            system, user_start = (len(sh), cut), cut + len(s2u)
    if user_start < 0 and prompt.startswith(layout.head):
        user_start = len(layout.head)
        if sh is not None and s2u and layout.head.startswith(sh) and layout.head.endswith(s2u):
            system = (len(sh), len(layout.head) - len(s2u))  # the template's default system turn
    if user_start < 0 or user_start > end:
        raise SteerlabError(
            f"cannot find the user turn in the prompt {prompt[:60]!r}...; it does not start as the template does "
            f"({layout.head[:40]!r}); format prompts with backend.chat(...)"
        )
    return {"system": system, "user": (user_start, end), "assistant": assistant}


def assistant_start(layout: ChatLayout, prompt: str) -> int:
    """The character where the assistant turn (its header) starts in a formatted prompt."""
    return _char_spans(layout, prompt)["assistant"][0]


def _token_index(tokenizer: Any, prompt: str, add_special: bool) -> Any:
    """A function from a character position to the number of tokens that end at or before it."""
    try:
        enc = tokenizer(prompt, add_special_tokens=add_special, return_offsets_mapping=True)
        ends = [int(e) for _, e in enc["offset_mapping"]]
        return lambda char: sum(e <= char for e in ends), len(ends)
    except (NotImplementedError, KeyError, TypeError):  # slow tokenizers have no offsets: count prefixes
        n = len(tokenizer(prompt, add_special_tokens=add_special)["input_ids"])
        return (lambda char: len(tokenizer(prompt[:char], add_special_tokens=add_special)["input_ids"])), n


def prompt_spans(tokenizer: Any, prompt: str, layout: ChatLayout | None = None) -> dict[str, tuple[int, int] | None]:
    """Token spans ``(start, stop)`` of the ``system`` content (None if there is none), the ``user`` content
    and the ``assistant`` turn (from its header to the prompt's end) in a formatted prompt.

    Indices count from the prompt's first token as `steerlab.backends.base.Backend.tokenize` tokenizes it (a
    BOS added by the tokenizer is token 0). A token that straddles a boundary belongs to the later span.
    """
    layout = layout or chat_layout(tokenizer)
    chars = _char_spans(layout, prompt)
    bos = getattr(tokenizer, "bos_token", None)
    index, n = _token_index(tokenizer, prompt, not (bos and prompt.startswith(bos)))
    out: dict[str, tuple[int, int] | None] = {}
    for name, span in chars.items():
        out[name] = None if span is None else (index(span[0]), index(span[1]) if span[1] < len(prompt) else n)
    return out


def _agree(values: list[int], what: str, prompts: Sequence[str]) -> int:
    first = values[0]
    odd = [i for i, v in enumerate(values) if v != first]
    if odd:
        raise SteerlabError(
            f"the prompts disagree on {what} ({first} tokens in prompt 0, {values[odd[0]]} in prompt {odd[0]}: "
            f"{prompts[odd[0]][:50]!r}...); one edit cannot follow per-row template spans, so give prompts with the "
            "same system prompt and assistant prefix (e.g. one task per answer format)"
        )
    return first


def resolve_positions(positions: Positions, tokenizer: Any, prompts: Sequence[str]) -> Positions:
    """A template kind as a ``span`` for these (formatted, left-padded together) prompts; others unchanged.

    Raises:
        SteerlabError: If a prompt is not in the template's format, the template has no system turn (for
            ``system``), or the prompts disagree on a span's offset.
    """
    if not positions.needs_template:
        return positions
    if isinstance(prompts, str) or not prompts:
        raise SteerlabError("resolve_positions needs a non-empty list of formatted prompts")
    layout = chat_layout(tokenizer)
    spans = [prompt_spans(tokenizer, p, layout) for p in prompts]
    lengths = [s["assistant"][1] for s in spans]
    if positions.kind in ("after_instruction", "assistant"):
        sizes = [n - s["assistant"][0] for n, s in zip(lengths, spans, strict=True)]
        back = _agree(sizes, "the assistant turn's length", prompts)
        if back == 0:  # the header merged into the user turn's last token: only generated tokens remain
            if positions.kind == "assistant":
                raise SteerlabError("the assistant turn has no token of its own in these prompts; steer "
                                    "AFTER_INSTRUCTION (its generated tokens)")
            return Positions.window()
        return Positions.span(-back, generated=positions.kind == "after_instruction")
    if positions.kind == "user":
        start = _agree([s["user"][0] for s in spans], "where the user turn starts", prompts)
        back = _agree([n - s["user"][1] for n, s in zip(lengths, spans, strict=True)], "what follows the user turn",
                      prompts)  # fmt: skip
        return Positions.span(start, -back if back else None)
    missing = [i for i, s in enumerate(spans) if s["system"] is None]
    if missing:
        raise SteerlabError(
            f"prompt {missing[0]} has no system turn (the template adds none and no system message was given); "
            "pass system=... when building the task, or steer USER or AFTER_INSTRUCTION"
        )
    start = _agree([s["system"][0] for s in spans], "where the system turn starts", prompts)
    stop = _agree([s["system"][1] for s in spans], "where the system turn ends", prompts)
    return Positions.span(start, stop)
