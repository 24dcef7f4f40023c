"""Render records into model inputs: a prompt (chat-formatted) followed by a completion.

The unit is the contrast pair (repeng, steering-vectors): one prompt, a positive and a negative
completion. `encode` tokenizes ``prompt + completion`` texts so that every prompt ends at the same
index (left padding) and marks which tokens belong to the completion, which is what reading an
activation "at the answer" or scoring a completion's likelihood needs.

A/B answers such as ``"(A)"`` are cut before the closing bracket (``"(A"``), so the last completion
token is the letter itself, where CAA reads its vectors (Rimsky et al. 2024).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from steerlab.errors import SteerlabError
from steerlab.sites import Batch

if TYPE_CHECKING:  # annotations only: a backend is used through its methods
    from steerlab.backends.base import Backend

ReadPosition = Literal["completion_last", "completion_mean", "prompt_last"]
READ_POSITIONS: tuple[str, ...] = ("completion_last", "completion_mean", "prompt_last")


def answer_stem(answer: str) -> str:
    """``"(A)" -> "(A"``; ``" Yes" -> "Yes"``: the answer up to and including its deciding token."""
    answer = answer.strip()
    if len(answer) >= 3 and answer.startswith("(") and answer.endswith(")"):
        return answer[:-1]
    return answer


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
