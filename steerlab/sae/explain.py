"""Explain a dense steering vector with SAE latents, and show what each latent responds to.

Three ways to ask "which latents is this vector made of?" (AxBench, Wu et al. 2025, and Kharlapenko
et al. 2024 on SAE-decomposed steering vectors, discuss why they disagree):

- ``decoder_cosine``: cosine between the vector and each decoder row (which latents *point* the same way);
- ``encode_vector``: the SAE's encoding of the vector itself. The encoder expects an activation, not a
  difference of activations (its biases assume a typical residual), so this reading is often empty or
  misleading for small vectors: it is reported because it is common, not because it is right;
- ``encode_diff``: the mean over contrast pairs of ``encode(positive) - encode(negative)`` (which latents
  the behaviour turns on and off at the read position).

`top_activating` lists, for chosen latents, the corpus tokens where they fire most, with context.

Example:
    >>> df = decompose(sae, vec[Site(12)], pos=acts.pos[Site(12)], neg=acts.neg[Site(12)])   # doctest: +SKIP
    >>> top_activating(sae, corpus, df.latent[:3], lm.tokenizer)                             # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from steerlab.errors import SteerlabError
from steerlab.sae.corpus import CorpusActivations

DECOMPOSITIONS = ("decoder_cosine", "encode_vector", "encode_diff")


@torch.no_grad()
def latent_scores(
    sae: Any,
    vector: Float[Tensor, " d_model"],
    *,
    pos: Float[Tensor, "n d_model"] | None = None,
    neg: Float[Tensor, "n d_model"] | None = None,
) -> dict[str, Tensor]:
    """One score per latent for each decomposition (``encode_diff`` only when ``pos`` and ``neg`` are given)."""
    v = vector.detach().float().cpu()
    W = sae.W_dec.detach().float().cpu()
    if v.shape != W.shape[1:]:
        raise SteerlabError(f"the vector has shape {tuple(v.shape)} but the SAE reads {W.shape[1]}-dim activations")
    scores = {
        "decoder_cosine": (W @ v) / (W.norm(dim=1).clamp(min=1e-8) * v.norm().clamp(min=1e-8)),
        "encode_vector": sae.encode(v.unsqueeze(0).to(sae.W_dec.device, sae.dtype)).squeeze(0).float().cpu(),
    }
    if (pos is None) != (neg is None):
        raise SteerlabError("encode_diff needs both pos and neg activations (or neither)")
    if pos is not None:
        enc = lambda x: sae.encode(x.to(sae.W_dec.device, sae.dtype)).float().cpu()
        scores["encode_diff"] = enc(pos).mean(0) - enc(neg).mean(0)
    return scores


def decompose(
    sae: Any,
    vector: Float[Tensor, " d_model"],
    *,
    pos: Tensor | None = None,
    neg: Tensor | None = None,
    top: int = 10,
) -> pd.DataFrame:
    """The ``top`` latents of each decomposition, by absolute score.

    Returns:
        Tidy DataFrame ``method, rank, latent, score, decoder_cosine`` (the last column is each
        latent's cosine with the vector, whichever method chose it).
    """
    scores = latent_scores(sae, vector, pos=pos, neg=neg)
    cos = scores["decoder_cosine"]
    rows = []
    for method, s in scores.items():
        order = s.abs().argsort(descending=True)[:top]
        for rank, i in enumerate(order.tolist(), start=1):
            if s[i] == 0:
                break  # an empty encoding has no ranking
            rows.append(
                {"method": method, "rank": rank, "latent": i, "score": float(s[i]), "decoder_cosine": float(cos[i])}
            )
    return pd.DataFrame(rows, columns=["method", "rank", "latent", "score", "decoder_cosine"])


@torch.no_grad()
def top_activating(
    sae: Any,
    corpus: CorpusActivations,
    latents: Sequence[int],
    tokenizer: Any,
    *,
    n: int = 5,
    window: int = 12,
    batch_size: int = 4096,
) -> pd.DataFrame:
    """The ``n`` corpus tokens where each latent fires most, with ``window`` tokens of left context.

    Returns:
        Tidy DataFrame ``latent, rank, activation, token, snippet``; the token itself is shown in
        ``snippet`` between ``[[`` and ``]]``. ``activation`` is 0 when the latent never fires.
    """
    latents = [int(i) for i in latents]
    if not latents:
        raise SteerlabError("no latents given; pass e.g. decompose(...).latent[:5]")
    index = torch.tensor(latents)
    best_val = torch.full((len(latents), 0), -torch.inf)
    best_idx = torch.zeros((len(latents), 0), dtype=torch.long)
    for start in range(0, len(corpus), batch_size):
        chunk = corpus.acts[start : start + batch_size].to(sae.W_dec.device, sae.dtype)
        z = sae.encode(chunk).float().cpu()[:, index].T  # [L, b]
        vals = torch.cat([best_val, z], dim=1)
        idx = torch.cat([best_idx, torch.arange(start, start + z.shape[1]).expand(len(latents), -1)], dim=1)
        keep = vals.topk(min(n, vals.shape[1]), dim=1)
        best_val, best_idx = keep.values, idx.gather(1, keep.indices)
    rows = []
    for j, latent in enumerate(latents):
        for rank, (val, flat) in enumerate(zip(best_val[j].tolist(), best_idx[j].tolist(), strict=True), start=1):
            chunk, pos = corpus.index[flat].tolist()
            ids = corpus.tokens[chunk]
            left = tokenizer.decode(ids[max(0, pos - window) : pos])
            token = tokenizer.decode(ids[pos : pos + 1])
            right = tokenizer.decode(ids[pos + 1 : pos + 4])
            snippet = (left + "[[" + token + "]]" + right).replace("\n", "\\n")
            rows.append(
                {"latent": latent, "rank": rank, "activation": max(val, 0.0), "token": token, "snippet": snippet}
            )
    return pd.DataFrame(rows)


def explain_vector(
    sae: Any,
    vector: Tensor,
    corpus: CorpusActivations,
    tokenizer: Any,
    *,
    pos: Tensor | None = None,
    neg: Tensor | None = None,
    top: int = 5,
    n_snippets: int = 3,
) -> pd.DataFrame:
    """`decompose` joined with each latent's top-activating snippets (joined with `` | ``): one row per
    method and latent, columns ``method, rank, latent, score, decoder_cosine, max_activation, snippets``."""
    df = decompose(sae, vector, pos=pos, neg=neg, top=top)
    if df.empty:
        return df.assign(max_activation=[], snippets=[])
    snippets = top_activating(sae, corpus, sorted(set(df.latent)), tokenizer, n=n_snippets)
    joined = snippets.groupby("latent").agg(
        max_activation=("activation", "max"), snippets=("snippet", lambda s: " | ".join(s))
    )
    return df.join(joined, on="latent")
