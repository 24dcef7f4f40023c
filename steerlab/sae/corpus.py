"""Token activations at one site over local text corpora, for training and explaining SAEs.

Texts (`steerlab.data.load_text`) are tokenized without special tokens, cut into chunks of
``context`` tokens, and run through any `Backend` (TransformerLens or nnsight). Each forward pass
stops right after the recorded site (a hook raises a private exception once it has the activation),
so the layers above it and the unembedding are never computed: at layer 12 of 30 that is about
three times faster than a full pass.

Position 0 of every chunk is left out: it acts as an attention sink (residual norm ~24,000 at layer
12 of SmolLM2-135M, against ~150 elsewhere) and would dominate an SAE's reconstruction loss.

Example:
    >>> acts = collect_corpus(lm, Site(12), n_tokens=50_000)          # doctest: +SKIP
    >>> acts.acts.shape
    torch.Size([50000, 576])
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.sites import Batch, Edit, Site

logger = logging.getLogger(__name__)

DEFAULT_CORPORA: tuple[str, ...] = ("wikitext2", "nltk-gutenberg", "tinyshakespeare")
"""Training corpora: WikiText-2 (test split), NLTK Gutenberg selections, tiny-shakespeare."""


@dataclass(frozen=True)
class CorpusActivations:
    """Activations of corpus tokens at one site.

    ``acts[n]`` is the activation of token ``tokens[index[n, 0], index[n, 1]]``; ``tokens`` holds the
    chunks (rows, ``context`` tokens each) so that any activation can be shown in its context.
    """

    site: Site
    acts: Float[Tensor, "n d_model"]
    tokens: Int[Tensor, "chunks context"]
    index: Int[Tensor, "n 2"]

    def __len__(self) -> int:
        return self.acts.shape[0]


class _Stop(Exception):
    """Raised by the recording hook once it has the site's activation: ends the forward pass early."""


def corpus_chunks(
    tokenizer,
    corpora: Sequence[str] = DEFAULT_CORPORA,
    *,
    n_tokens: int,
    context: int = 128,
    seed: int = 0,
    split: str | None = None,
) -> Int[Tensor, "chunks context"]:
    """Token chunks of ``context`` tokens from ``corpora``, about equal shares each, shuffled with ``seed``.

    Passages of each corpus are joined (separated by a blank line) and cut into consecutive chunks;
    ``n_tokens`` counts the tokens that will be kept (``context - 1`` per chunk, position 0 dropped).
    ``split`` is passed to `load_text` for WikiText-2 (``"test"`` by default, ``"valid"`` for held-out text).
    """
    from steerlab.data import load_text

    if context < 2:
        raise SteerlabError(f"context must be at least 2 tokens (position 0 is dropped), got {context}")
    if n_tokens < 1:
        raise SteerlabError(f"n_tokens must be positive, got {n_tokens}")
    if not corpora:
        raise SteerlabError(f"no corpora given; pick from e.g. {', '.join(DEFAULT_CORPORA)}")
    n_chunks = -(-n_tokens // (context - 1))
    per_corpus = -(-n_chunks // len(corpora))
    rows: list[list[int]] = []
    for corpus in corpora:
        passages = load_text(corpus, split if corpus == "wikitext2" else None)
        random.Random(seed).shuffle(passages)
        ids: list[int] = []
        got: list[list[int]] = []
        for passage in passages:
            ids += tokenizer(passage + "\n\n", add_special_tokens=False)["input_ids"]
            while len(ids) >= context and len(got) < per_corpus:
                got.append(ids[:context])
                ids = ids[context:]
            if len(got) >= per_corpus:
                break
        if len(got) < per_corpus:
            logger.warning("%s gave only %d chunks of %d tokens (asked for %d)", corpus, len(got), context, per_corpus)
        rows += got
    random.Random(seed).shuffle(rows)
    if not rows:
        raise SteerlabError(f"the corpora {list(corpora)} gave no chunk of {context} tokens; lower context")
    return torch.tensor(rows[:n_chunks], dtype=torch.long)


def record_site(backend: Backend, batch: Batch, site: Site) -> Tensor:
    """Activation at ``site`` for ``batch``, stopping the forward pass right after the site."""
    site = backend.site(site)
    store: dict[str, Tensor] = {}

    def grab(h: Tensor) -> Tensor:
        store["h"] = h.detach()
        raise _Stop

    try:
        backend.forward(batch, edits=[Edit(site, grab)])
    except _Stop:
        pass
    if "h" not in store:
        raise SteerlabError(f"the forward pass never reached {site}; check the site")
    return store["h"]


def collect_corpus(
    backend: Backend,
    site: Site | str | int,
    *,
    n_tokens: int,
    corpora: Sequence[str] = DEFAULT_CORPORA,
    context: int = 128,
    batch_size: int = 16,
    seed: int = 0,
    split: str | None = None,
    progress: bool = True,
) -> CorpusActivations:
    """Activations at ``site`` of about ``n_tokens`` corpus tokens (position 0 of each chunk left out).

    Args:
        backend: any steerlab backend.
        site: where to read, e.g. ``Site(12, "resid_post")``.
        n_tokens: how many token activations to keep.
        corpora: names for `steerlab.data.load_text`.
        context: tokens per chunk (one row of a batch).
        split: WikiText-2 split (``"test"`` for training, ``"valid"`` for held-out evaluation).
    """
    site = backend.site(site)
    chunks = corpus_chunks(backend.tokenizer, corpora, n_tokens=n_tokens, context=context, seed=seed, split=split)
    acts = []
    for start in tqdm(range(0, len(chunks), batch_size), desc=f"corpus activations {site}", disable=not progress):
        ids = chunks[start : start + batch_size].to(backend.device)
        h = record_site(backend, Batch(ids, torch.ones_like(ids)), site)
        acts.append(h[:, 1:].reshape(-1, h.shape[-1]).float().cpu())
    rows = torch.arange(len(chunks)).repeat_interleave(context - 1)
    cols = torch.arange(1, context).repeat(len(chunks))
    index = torch.stack([rows, cols], dim=1)
    return CorpusActivations(site, torch.cat(acts)[:n_tokens], chunks, index[:n_tokens])
