"""A sparse steering code in SAE latent space, learned from contrast pairs with BiPO's objective.

YaPO-style: instead of a dense vector ``v`` (BiPO; Cao et al. 2024, see `steerlab.methods.bipo`), learn
a code ``c`` over an SAE's latents and steer with ``v = c @ W_dec``. After every optimizer step ``c`` is
projected onto its ``k`` largest entries in absolute value (iterative hard thresholding; an L1 proximal
step does not sparsify under Adam, whose steps are about ``lr`` per coordinate whatever the gradient), so
the learned vector is a short, inspectable list of at most ``k`` latents. Everything else is BiPO's
recipe as implemented in steerlab: for a pair ``(x, y+, y-)`` and a sign ``d`` in ``{-1, +1}``,

    loss = -log sigmoid(beta * d * ((log p_dv(y+|x) - log p_0(y+|x)) - (log p_dv(y-|x) - log p_0(y-|x))))

with AdamW (weight decay on ``c``), linear warmup then cosine decay, and zero init. With an identity
decoder and ``k = d_sae`` the code *is* BiPO's vector, step for step (tested).

Example:
    >>> code, v, log = train_yapo(lm, sae, train_pairs, Site(12), k=16)     # doctest: +SKIP
    >>> code.nonzero().squeeze(1)                                           # latents it uses  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.methods.bipo import bipo_loss, completion_logprobs, encode_pairs
from steerlab.sites import Edit, Site


def _lr_factor(total: int, n_warm: int):
    """Linear warmup over ``n_warm`` steps, then cosine decay to 0 (as `train_bipo`)."""
    return lambda step: (
        (step + 1) / n_warm
        if step < n_warm
        else 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(total - n_warm, 1)))
    )


def _logprobs(backend: Backend, enc, edits=None, grad: bool = False) -> tuple[Tensor, Tensor]:
    lp = completion_logprobs(backend, enc, edits=edits, grad=grad)
    return lp[: lp.shape[0] // 2], lp[lp.shape[0] // 2 :]


def train_yapo(
    backend: Backend,
    sae: Any,
    pairs: Sequence,
    site: Site | str | int,
    *,
    k: int = 16,
    epochs: int = 2,
    lr: float = 5e-2,
    beta: float = 0.1,
    batch_size: int = 4,
    weight_decay: float = 0.05,
    warmup: float = 0.1,
    seed: int = 0,
    max_completion_tokens: int | None = None,
    progress: bool = True,
) -> tuple[Float[Tensor, " d_sae"], Float[Tensor, " d_model"], pd.DataFrame]:
    """Learn a ``k``-sparse latent code ``c`` (and ``v = c @ W_dec``) with the BiPO objective.

    Args:
        sae: an SAE whose decoder ``W_dec [d_sae, d_model]`` reads ``site`` (frozen).
        pairs: contrast pairs (``.prompt``, ``.positive``, ``.negative``); prompts are chat-formatted.
        k: latents kept after each step (the largest ``|c_i|``); ``d_sae`` keeps all.
        Other arguments as in `steerlab.methods.bipo.train_bipo` (one sign ``d`` per pair).

    Returns:
        ``(c, v, log)``: the code (float32 CPU ``[d_sae]``), its vector ``c @ W_dec`` and one log row per
        step (``step, epoch, loss, lr, nonzero, v_norm``).
    """
    site = backend.site(site)
    pairs = list(pairs)
    if not pairs:
        raise SteerlabError("train_yapo needs at least one contrast pair (prompt, positive, negative)")
    if not 1 <= k <= sae.cfg.d_sae or lr <= 0 or epochs < 1 or batch_size < 1:
        raise SteerlabError(
            f"need 1 <= k <= d_sae ({sae.cfg.d_sae}), lr > 0, epochs >= 1, batch_size >= 1; "
            f"got k={k}, lr={lr}, epochs={epochs}, batch_size={batch_size}"
        )
    W = sae.W_dec.detach().to(backend.device, torch.float32)
    if W.shape[1] != backend.d_model:
        raise SteerlabError(f"the SAE decodes to {W.shape[1]} dims but {site} has d_model {backend.d_model}")
    code = torch.nn.Parameter(torch.zeros(W.shape[0], device=backend.device))
    optimizer = torch.optim.AdamW([code], lr=lr, weight_decay=weight_decay)
    total = epochs * math.ceil(len(pairs) / batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(total, int(warmup * total)))
    gen = torch.Generator().manual_seed(seed)
    kw = {"max_completion_tokens": max_completion_tokens}
    with torch.no_grad():
        refs = [_logprobs(backend, encode_pairs(backend, pairs[i : i + batch_size], **kw))
                for i in range(0, len(pairs), batch_size)]  # fmt: skip
    ref_pos, ref_neg = torch.cat([r[0] for r in refs]), torch.cat([r[1] for r in refs])
    rows = []
    with tqdm(total=total, desc=f"YaPO {site}", disable=not progress) as bar:
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(pairs), generator=gen)
            for start in range(0, len(pairs), batch_size):
                idx = order[start : start + batch_size]
                d = (torch.randint(0, 2, (len(idx),), generator=gen).float() * 2 - 1).to(backend.device)
                enc = encode_pairs(backend, [pairs[i] for i in idx.tolist()], **kw)
                scale = torch.cat([d, d]).view(-1, 1, 1)
                edit = Edit(site, lambda h, scale=scale: h + (scale * (code @ W)).to(h.dtype))
                lp_pos, lp_neg = _logprobs(backend, enc, edits=edit, grad=True)
                idx = idx.to(ref_pos.device)
                loss = bipo_loss(lp_pos, lp_neg, ref_pos[idx], ref_neg[idx], d, beta).mean()
                if not math.isfinite(float(loss.detach())):
                    raise SteerlabError(
                        f"the YaPO loss became {float(loss.detach())} at step {len(rows) + 1}; lower lr"
                    )
                (code.grad,) = torch.autograd.grad(loss, [code])
                step_lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                if k < len(code):
                    with torch.no_grad():  # keep the k largest entries: exact zeros elsewhere
                        code[code.abs().argsort(descending=True)[k:]] = 0.0
                c = code.detach()
                rows.append({"step": len(rows) + 1, "epoch": epoch, "loss": float(loss.detach()), "lr": step_lr,
                             "nonzero": int((c != 0).sum()), "v_norm": float((c @ W).norm())})  # fmt: skip
                bar.update(1)
    c = code.detach().float().cpu()
    return c, (code.detach() @ W).float().cpu(), pd.DataFrame(rows)
