"""A local agent: the embedded instruct model (or any loaded `Backend`) answering the SAAS agent prompts.

The paper's agents are large hosted models; here, with no hosted model reachable, a small local one
answers the same prompts. Its answers are messy, so every answer goes through the constrained parsers
of `steerlab.agents.parsing` (numbers, numbered lists), with retries at a non-zero temperature and a
record of every failure (`steerlab.agents.roles`).

Example:
    >>> lm = sl.load_model()                                       # doctest: +SKIP
    >>> LocalAgent(lm).complete([{"role": "user", "content": "List three colours."}])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from steerlab.agents.base import AgentError, Message, check_messages


def _system_and_user(messages: Sequence[Message]) -> tuple[str | None, str]:
    messages = check_messages(messages)
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    turns = [m for m in messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "user":
        raise AgentError("the local agent needs the last message to be a user message")
    if len(turns) > 1:  # one chat turn only: earlier turns are quoted into the user message
        history = "\n\n".join(f"{m['role']}: {m['content']}" for m in turns[:-1])
        return system, f"{history}\n\nuser: {turns[-1]['content']}"
    return system, turns[-1]["content"]


class LocalAgent:
    """Greedy (``temperature=0``) or sampled generation from a loaded model, one chat turn per call.

    Args:
        backend: A loaded model (`steerlab.load_model`), with a chat template.
        max_tokens: Default number of new tokens.
    """

    def __init__(self, backend: Any, *, max_tokens: int = 256) -> None:
        self.backend = backend
        self.max_tokens = max_tokens

    @property
    def name(self) -> str:
        return f"local:{self.backend.name}"

    def _gen_kwargs(self, temperature: float, seed: int) -> dict[str, Any]:
        if temperature and temperature > 0:
            torch.manual_seed(seed)
            return {"do_sample": True, "temperature": float(temperature), "top_p": 0.95}
        return {"do_sample": False}

    def complete(self, messages: Sequence[Message], *, temperature: float = 0.0, max_tokens: int | None = None,
                 seed: int = 0) -> str:  # fmt: skip
        """The model's answer to the last user message (and the system message, if any)."""
        return self.complete_many([messages], temperature=temperature, max_tokens=max_tokens, seed=seed)[0]

    def complete_many(self, conversations: Sequence[Sequence[Message]], *, temperature: float = 0.0,
                      max_tokens: int | None = None, seed: int = 0, batch_size: int = 16) -> list[str]:  # fmt: skip
        """Answers to many conversations, generated in batches (left-padded)."""
        prompts = [self.backend.chat(user, system=system) for system, user in map(_system_and_user, conversations)]
        out: list[str] = []
        for start in range(0, len(prompts), batch_size):
            out += self.backend.generate(
                prompts[start : start + batch_size], max_new_tokens=max_tokens or self.max_tokens,
                **self._gen_kwargs(temperature, seed + start),
            )  # fmt: skip
        return [o.strip() for o in out]
