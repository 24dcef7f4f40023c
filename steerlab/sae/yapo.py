"""A sparse steering code in SAE latent space, learned from contrast pairs with BiPO's objective.

YaPO-style: instead of a dense vector ``v`` (BiPO; Cao et al. 2024, see `steerlab.methods.bipo`), learn
a code ``c`` over an SAE's latents and steer with ``v = c @ W_dec``. After every optimizer step ``c`` is
projected onto its ``k`` largest entries in absolute value (iterative hard thresholding; an L1 proximal
step does not sparsify under Adam, whose steps are about ``lr`` per coordinate whatever the gradient), so
the learned vector is a short, inspectable list of at most ``k`` latents. Everything else is BiPO's
recipe as implemented in steerlab: for a pair ``(x, y+, y-)`` and a sign ``d`` in ``{-1, +1}``,

    loss = -log sigmoid(beta * d * ((log p_dv(y+|x) - log p_0(y+|x)) - (log p_dv(y-|x) - log p_0(y-|x))))

with AdamW (weight decay on ``c``), linear warmup then cosine decay over the budget, zero init, and the
same stopping rule: training ends once the loss has converged (`steerlab.methods.bipo.convergence`), and a
run that ends without converging says so (a logged warning and ``log.attrs["converged"]``). With an
identity decoder and ``k = d_sae`` the code *is* BiPO's vector, step for step (tested).

Example:
    >>> code, v, log = train_yapo(lm, sae, train_pairs, Site(12), k=16)     # doctest: +SKIP
    >>> code.nonzero().squeeze(1), log.attrs["convergence"]["reason"]       # latents it uses  # doctest: +SKIP
"""

from __future__ import annotations

import logging
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
from steerlab.methods.bipo import (
    DEFAULT_TOL,
    MIN_WINDOW,
    _check_options,
    _check_pairs,
    _draw_signs,
    _logprobs_split,
    _reference,
    _warmup_cosine,
    bipo_loss,
    convergence,
    encode_pairs,
)
from steerlab.sites import Edit, Site

logger = logging.getLogger(__name__)


def train_yapo(
    backend: Backend,
    sae: Any,
    pairs: Sequence,
    site: Site | str | int,
    *,
    k: int = 16,
    epochs: int = 20,
    lr: float = 5e-2,
    beta: float = 0.1,
    batch_size: int = 4,
    weight_decay: float = 0.05,
    warmup: float = 0.1,
    seed: int = 0,
    max_completion_tokens: int | None = None,
    tol: float | None = DEFAULT_TOL,
    max_steps: int | None = None,
    progress: bool = True,
) -> tuple[Float[Tensor, " d_sae"], Float[Tensor, " d_model"], pd.DataFrame]:
    """Learn a ``k``-sparse latent code ``c`` (and ``v = c @ W_dec``) with the BiPO objective.

    Args:
        sae: an SAE whose decoder ``W_dec [d_sae, d_model]`` reads ``site`` (frozen).
        pairs: contrast pairs (``.prompt``, ``.positive``, ``.negative``); prompts are chat-formatted.
        k: latents kept after each step (the largest ``|c_i|``); ``d_sae`` keeps all.
        epochs: most passes over ``pairs``; training stops earlier once the loss has converged (``tol``).
        tol: stop at the end of the first epoch where `steerlab.methods.bipo.convergence` holds with this
            tolerance (window: one epoch, at least `steerlab.methods.bipo.MIN_WINDOW` steps); None trains the
            whole budget. Either way the final state is judged.
        max_steps: cap on optimizer steps (the budget is ``min(epochs * steps_per_epoch, max_steps)``).
        Other arguments as in `steerlab.methods.bipo.train_bipo` (one sign ``d`` per pair).

    Returns:
        ``(c, v, log)``: the code (float32 CPU ``[d_sae]``), its vector ``c @ W_dec`` and one log row per
        step (``step, epoch, loss, lr, nonzero, v_norm``); ``log.attrs["converged"]`` and
        ``log.attrs["convergence"]`` as in `train_bipo`.
    """
    site = backend.site(site)
    pairs = _check_pairs(pairs, "pairs")
    _check_options(epochs, lr, beta, batch_size, max_completion_tokens, "pair", warmup, max_steps, tol)
    if not isinstance(k, int) or not 1 <= k <= sae.cfg.d_sae:
        raise SteerlabError(f"need 1 <= k <= d_sae ({sae.cfg.d_sae}) latents in the code, got k={k!r}")
    W = sae.W_dec.detach().to(backend.device, torch.float32)
    if W.shape[1] != backend.d_model:
        raise SteerlabError(f"the SAE decodes to {W.shape[1]} dims but {site} has d_model {backend.d_model}")
    code = torch.nn.Parameter(torch.zeros(W.shape[0], device=backend.device))
    optimizer = torch.optim.AdamW([code], lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(epochs * steps_per_epoch, max_steps)
    window = max(steps_per_epoch, MIN_WINDOW)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total, int(warmup * total)))
    gen = torch.Generator().manual_seed(seed)
    kw = {"max_completion_tokens": max_completion_tokens, "system": None, "chat": True}
    ref_pos, ref_neg = _reference(backend, pairs, batch_size, kw)
    rows: list[dict] = []
    with tqdm(total=total, desc=f"YaPO {site}", disable=not progress) as bar:
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(pairs), generator=gen)
            for start in range(0, len(pairs), batch_size):
                if len(rows) == total:
                    break
                idx = order[start : start + batch_size]
                d = _draw_signs(len(idx), "pair", gen).to(backend.device)
                enc = encode_pairs(backend, [pairs[i] for i in idx.tolist()], **kw)
                scale = torch.cat([d, d]).view(-1, 1, 1)
                edit = Edit(site, lambda h, scale=scale: h + (scale * (code @ W)).to(h.dtype))
                lp_pos, lp_neg = _logprobs_split(backend, enc, edits=edit, grad=True)
                idx = idx.to(ref_pos.device)
                loss = bipo_loss(lp_pos, lp_neg, ref_pos[idx], ref_neg[idx], d, beta).mean()
                if not math.isfinite(float(loss.detach())):
                    raise SteerlabError(
                        f"the YaPO loss became {float(loss.detach())} at step {len(rows) + 1}; lower lr (now {lr:g})"
                    )
                (code.grad,) = torch.autograd.grad(loss, [code])
                step_lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                code.grad = None
                if k < len(code):
                    with torch.no_grad():  # keep the k largest entries: exact zeros elsewhere
                        code[code.abs().argsort(descending=True)[k:]] = 0.0
                c = code.detach()
                rows.append({"step": len(rows) + 1, "epoch": epoch, "loss": float(loss.detach()), "lr": step_lr,
                             "nonzero": int((c != 0).sum()), "v_norm": float((c @ W).norm())})  # fmt: skip
                bar.update(1)
            status = convergence([r["loss"] for r in rows], window, tol or DEFAULT_TOL)
            if len(rows) == total or (tol is not None and status["converged"]):
                break
    log = pd.DataFrame(rows)
    log.attrs["converged"] = status["converged"]
    log.attrs["convergence"] = status
    if status["converged"]:
        logger.info("YaPO at %s: %s after %d steps", site, status["reason"], len(rows))
    else:
        logger.warning("YaPO at %s did not converge in %d steps (%d epoch(s)): %s; train longer (epochs, max_steps), "
                       "raise lr, or use more pairs", site, len(rows), rows[-1]["epoch"], status["reason"])  # fmt: skip
    c = code.detach().float().cpu()
    return c, (code.detach() @ W).float().cpu(), log
