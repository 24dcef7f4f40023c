"""Collect activations for contrast pairs or prompts: many sites and layers, one pass per batch.

A pair's positive and negative texts share their whole prompt and differ only in the completion,
so the prompt is run once (a cached `Prefix`) and only the two completions are run on top of it:
cheaper than two full forward passes per pair, and exactly equal to them.

Read positions (``read``): ``completion_last`` (the last completion token, e.g. the answer letter),
``completion_mean`` (mean over completion tokens), ``prompt_last`` (the last prompt token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from steerlab import memory
from steerlab.errors import SteerlabError
from steerlab.prompts import READ_POSITIONS, ReadPosition, answer_stem, pair_prompts
from steerlab.sites import Batch, Site

if TYPE_CHECKING:  # annotations only: a backend is used through its methods
    from steerlab.backends.base import Backend


@dataclass(frozen=True)
class PairActivations:
    """Activations of the positive and negative texts of each pair, ``[n_pairs, d_model]`` per site."""

    pos: dict[Site, Float[Tensor, "n d"]]
    neg: dict[Site, Float[Tensor, "n d"]]
    read: str

    @property
    def sites(self) -> list[Site]:
        return sorted(self.pos, key=lambda s: s.order)

    def __len__(self) -> int:
        return next(iter(self.pos.values())).shape[0]

    def mean_norm(self) -> dict[Site, float]:
        """Mean L2 norm of the activations (positive and negative texts) at each site."""
        return {s: float(torch.cat([self.pos[s], self.neg[s]]).norm(dim=-1).mean()) for s in self.pos}


def _completion_batch(backend: Backend, completions: Sequence[str]) -> Batch:
    """Right-padded completion tokens (no special tokens)."""
    tok = backend.tokenizer
    ids = [tok(c, add_special_tokens=False)["input_ids"] for c in completions]
    empty = [i for i, x in enumerate(ids) if not x]
    if empty:
        raise SteerlabError(f"completions at rows {empty[:5]} have no tokens; every completion needs at least one")
    width = max(len(x) for x in ids)
    out = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, x in enumerate(ids):
        out[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
    return Batch(out.to(backend.device), mask.to(backend.device))


def _read(acts: Tensor, mask: Tensor, read: str) -> Tensor:
    """``[batch, pos, d]`` -> ``[batch, d]`` at the last masked token, or the masked mean."""
    m = mask.to(acts.device)
    if read == "completion_mean":
        w = m.unsqueeze(-1).to(acts.dtype)
        return (acts * w).sum(1) / w.sum(1).clamp(min=1)
    last = m.sum(1) - 1
    return acts[torch.arange(acts.shape[0], device=acts.device), last]


def _check_inputs(items: Sequence, sites: Sequence, read: str, what: str) -> None:
    if len(items) == 0:
        raise SteerlabError(f"no {what} were given; pass at least one")
    if not sites:
        raise SteerlabError("no sites were given; pass e.g. sites=[Site(12)] or range(n_layers)")
    if read not in READ_POSITIONS:
        raise SteerlabError(f"unknown read position {read!r}; valid: {', '.join(READ_POSITIONS)}")


def _chunks(n: int, batch_size: int, run, progress: bool, what: str):
    """``run(start, stop)`` over ``n`` items in batches (halved on out-of-memory, `steerlab.memory.halving`),
    with a progress bar counting items."""
    with tqdm(total=n, desc="activations", disable=not progress) as bar:
        for stop, out in memory.halving(n, batch_size, lambda a, b: (b, run(a, b)), what=what):
            bar.update(stop - bar.n)
            yield out


def iter_pair_batches(
    backend: Backend,
    pairs: Sequence,
    sites: Sequence[Site | str | int],
    *,
    read: ReadPosition = "completion_last",
    batch_size: int | None = None,
    system: str | None = None,
    chat: bool = True,
    progress: bool = True,
):
    """Yield ``(pos, neg)`` dicts of ``[batch, d_model]`` activations, one batch of pairs at a time.

    Each forward pass stops after the deepest site's block (no logits are computed), and the prompts' cached
    prefix holds only the blocks up to it. ``batch_size`` (default: `steerlab.memory`'s, else 16) halves on
    out-of-memory.
    """
    batch_size = memory.batch_size(batch_size)
    _check_inputs(pairs, sites, read, "contrast pairs")
    if read == "prompt_last":
        raise SteerlabError(
            "pairs share their prompt, so reading at the prompt's last token gives identical positive and "
            "negative activations; read at the completion, or collect two prompt sets with collect_prompts"
        )
    sites = sorted({backend.site(s) for s in sites}, key=lambda s: s.order)

    def run(start: int, stop: int):
        chunk = pairs[start:stop]
        prefix = backend.prefix(pair_prompts(backend, chunk, system=system, chat=chat), stop_at=sites[-1])
        out = []
        for answers in ([p.positive for p in chunk], [p.negative for p in chunk]):
            comp = _completion_batch(backend, [answer_stem(a) for a in answers])
            acts = backend.forward(comp, prefix=prefix, record=sites, logits=False).activations
            out.append({s: _read(acts[s], comp.attention_mask, read).float().cpu() for s in sites})
        return out[0], out[1]

    yield from _chunks(len(pairs), batch_size, run, progress, "batch of pairs")


def collect_pairs(backend: Backend, pairs: Sequence, sites: Sequence[Site | str | int], **kwargs) -> PairActivations:
    """Activations of every pair's positive and negative completion at ``sites``.

    Takes the keyword arguments of `iter_pair_batches` (read, batch_size, system, chat, progress).

    Example:
        >>> acts = collect_pairs(lm, pairs, sites=range(lm.n_layers), read="completion_last")  # doctest: +SKIP
        >>> acts.pos[Site(12)].shape
        torch.Size([200, 576])
    """
    pos: dict[Site, list[Tensor]] = {}
    neg: dict[Site, list[Tensor]] = {}
    for p, n in iter_pair_batches(backend, pairs, sites, **kwargs):
        for s in p:
            pos.setdefault(s, []).append(p[s])
            neg.setdefault(s, []).append(n[s])
    return PairActivations(
        {s: torch.cat(v) for s, v in pos.items()},
        {s: torch.cat(v) for s, v in neg.items()},
        kwargs.get("read", "completion_last"),
    )


def collect_prompts(
    backend: Backend,
    prompts: Sequence[str],
    sites: Sequence[Site | str | int],
    *,
    read: str = "prompt_last",
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[Site, Float[Tensor, "n d"]]:
    """Activations of already formatted prompts (or raw texts), one row per prompt.

    ``read``: ``prompt_last`` (the last token), ``prompt_mean`` (the mean over real tokens) or
    ``token_mean`` (the mean over real tokens after each text's first, which is an attention sink with a
    norm tens to hundreds of times the others at middle layers; a one-token text keeps its token).
    Each forward pass stops after the deepest site's block; ``batch_size`` (default: `steerlab.memory`'s,
    else 16) halves on out-of-memory.
    """
    if read not in ("prompt_last", "prompt_mean", "token_mean"):
        raise SteerlabError(f"collect_prompts reads 'prompt_last', 'prompt_mean' or 'token_mean', not {read!r}")
    batch_size = memory.batch_size(batch_size)
    _check_inputs(prompts, sites, "prompt_last", "prompts")
    sites = [backend.site(s) for s in sites]

    def run(start: int, stop: int) -> dict[Site, Tensor]:
        batch = backend.tokenize(list(prompts[start:stop]))
        acts = backend.forward(batch, record=sites, logits=False).activations
        mask = batch.attention_mask
        if read == "token_mean":
            first = batch.position_ids == 0
            mask = mask * ~(first & (mask.sum(dim=1, keepdim=True) > 1))
        if read == "prompt_last":
            return {s: acts[s][:, -1].float().cpu() for s in sites}
        return {s: _read(acts[s].float(), mask, "completion_mean").cpu() for s in sites}

    out: dict[Site, list[Tensor]] = {s: [] for s in sites}
    for part in _chunks(len(prompts), batch_size, run, progress, "batch of prompts"):
        for s in sites:
            out[s].append(part[s])
    return {s: torch.cat(v) for s, v in out.items()}
