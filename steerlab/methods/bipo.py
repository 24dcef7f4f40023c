"""BiPO: a steering vector trained by bi-directional preference optimization (Cao et al. 2024).

"Personalized Steering of Large Language Models: Versatile Steering Vectors Through Bi-directional
Preference Optimization" (NeurIPS 2024, arXiv:2406.00045), Sec. 3.2 and Algorithm 1. Instead of
averaging activations (CAA), BiPO *learns* a vector ``v`` added at one site so that the steered
model's likelihood of a contrast pair's positive completion rises relative to its negative one, and,
with ``-v``, falls. For each pair ``(x, y+, y-)`` and a sign ``d`` drawn uniformly from ``{-1, +1}``:

    r(y) = log p_{d v}(y | x) - log p_0(y | x)                # steered minus unsteered log-likelihood
    loss = -log sigmoid( beta * d * ( r(y+) - r(y-) ) )

where ``p_{d v}`` is the frozen model with ``d * v`` added at ``site`` to every token (prompt and
completion), and ``p_0`` is the unedited model. A log-likelihood is the **sum** over the
completion's tokens, as in the paper's DPO-style implementation; ``p_0`` is computed once, before
training, without gradients. With ``d = -1`` the roles of ``y+`` and ``y-`` swap, which is what makes
the one vector steer both ways. Only ``v`` is trained (AdamW); the model's weights never get a
gradient (``torch.autograd.grad`` is taken with respect to ``v`` alone).

Defaults are chosen for CPU on SmolLM2-135M with 100-200 pairs. The paper trains 7B models with lr
5e-4, batch 4, beta 0.1, weight decay 0.05, a cosine schedule with 100 warmup steps, zero init and up
to 20 epochs (Appendix A.3); we keep beta, batch size, weight decay, zero init, the budget of 20
epochs and the warmup-then-cosine shape over that budget (warmup: the first 10% of steps), but use
lr 5e-2 and stop once the loss has converged (`convergence`: it has left ``log 2``, the loss at
``v = 0``, and its mean over the last window of steps moved by less than 1% of that drop). A
run that ends without converging (budget spent, too few steps to judge, or a loss stuck at ``log 2``)
says so in a logged warning and in ``log.attrs["converged"]``.

Why the larger lr: a CPU run sees only a few dozen steps per epoch, AdamW moves each coordinate by at
most about ``lr`` per step, and the residual stream of SmolLM2-135M has norm 120-160 (layer 12), so
the paper's lr would leave ``v`` far too small to steer. Measured at layer 12 on free-form CAA refusal
pairs (question, refusing answer, other answer), scoring 16 held-out pairs' mean change of
``log p(y+) - log p(y-)`` under ``+v`` / ``-v``: 40 pairs, one epoch, lr 2e-2: ``|v|`` 1.7, +1.3 / -1.4
nats; lr 1e-1: ``|v|`` 8.2, +6.2 / -6.4 nats; 150 pairs, two epochs, lr 5e-2: ``|v|`` 14.6, +13.7 /
-17.7 nats, training loss 0.69 -> 0.13. Cost: about 2 s per pair per epoch on two busy CPU cores (a
forward and backward pass of both completions, plus the one-off reference pass), so the 20-epoch
budget on 150 pairs is up to 100 minutes; pass a smaller ``epochs`` to cap it.

Example:
    >>> v, log = train_bipo(lm, pairs, "resid_post.12")                      # doctest: +SKIP
    >>> log.attrs["converged"], log.attrs["convergence"]["reason"]           # doctest: +SKIP
    >>> lm.generate(prompt, edits=interventions.add(Site(12), v, 1.0))        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.errors import SteerlabError
from steerlab.prompts import Encoded, encode, pair_prompts
from steerlab.sites import Batch, Edit, Site

if TYPE_CHECKING:  # annotations only: a backend is used through its methods
    from steerlab.backends.base import Backend

logger = logging.getLogger(__name__)

__all__ = ["bipo_loss", "completion_logprobs", "convergence", "encode_pairs", "train_bipo"]

SignMode = Literal["pair", "batch"]

DEFAULT_TOL = 0.01
"""Converged when the window mean of the loss moves by less than this fraction of its drop from ``log 2``."""
MIN_WINDOW = 8
"""Fewest steps in a convergence window (a window is one epoch, or this many steps if an epoch is shorter)."""
MIN_DROP = 0.05
"""A converged loss lies at least this fraction below ``log 2`` (the loss at ``v = 0``): a loss that never
moved has not converged, it has not started."""


# ----------------------------------------------------------------------------------------------
# pieces


def bipo_loss(
    logp_pos: Float[Tensor, " n"],
    logp_neg: Float[Tensor, " n"],
    ref_pos: Float[Tensor, " n"],
    ref_neg: Float[Tensor, " n"],
    signs: Float[Tensor, " n"],
    beta: float,
) -> Float[Tensor, " n"]:
    """Per-pair BiPO loss ``-log sigmoid(beta * d * ((lp+ - ref+) - (lp- - ref-)))`` (Cao et al. 2024).

    ``logp_*`` are log-likelihoods under the model steered with ``d * v`` (``d = signs``); ``ref_*``
    are the same under the unedited model.

    Example:
        >>> z = torch.zeros(1)
        >>> bipo_loss(z, z, z, z, torch.ones(1), 0.1)   # v = 0: log 2
        tensor([0.6931])
    """
    margin = (logp_pos - ref_pos) - (logp_neg - ref_neg)
    return -F.logsigmoid(beta * signs * margin)


def completion_logprobs(
    backend: Backend, enc: Encoded, *, edits: Sequence[Edit] | Edit | None = None, grad: bool = False
) -> Float[Tensor, " batch"]:
    """Summed log-probability of each row's completion tokens (float32, on the backend's device).

    Only the logits that predict completion tokens are normalised, so memory grows with the
    completion length, not with the prompt's.
    """
    logits = backend.forward(enc.batch, edits=edits, grad=grad).logits
    start = enc.prompt_end
    targets = enc.batch.input_ids[:, start:]
    mask = enc.completion_mask[:, start:].to(logits.device)
    logp = logits[:, start - 1 : -1].float().log_softmax(dim=-1)
    token_logp = logp.gather(-1, targets.to(logits.device).unsqueeze(-1)).squeeze(-1)
    return torch.where(mask, token_logp, torch.zeros_like(token_logp)).sum(dim=1)


def encode_pairs(
    backend: Backend,
    pairs: Sequence,
    *,
    max_completion_tokens: int | None = None,
    system: str | None = None,
    chat: bool = True,
) -> Encoded:
    """Encode ``n`` pairs as ``2n`` rows: the positive completions, then the negative ones.

    Prompts are chat-formatted (see `steerlab.prompts.pair_prompts`); completions are used as given.
    ``max_completion_tokens`` keeps only the first tokens of each completion.
    """
    prompts = pair_prompts(backend, pairs, system=system, chat=chat)
    enc = encode(backend, prompts + prompts, [p.positive for p in pairs] + [p.negative for p in pairs])
    if max_completion_tokens is None or enc.batch.input_ids.shape[1] <= enc.prompt_end + max_completion_tokens:
        return enc
    end = enc.prompt_end + max_completion_tokens
    batch = Batch(enc.batch.input_ids[:, :end], enc.batch.attention_mask[:, :end])
    return Encoded(batch, enc.completion_mask[:, :end], enc.prompt_end)


# ----------------------------------------------------------------------------------------------
# validation


def _check_pairs(pairs: Sequence, name: str) -> list:
    if isinstance(pairs, str):
        raise SteerlabError(f"{name} is a string; pass a list of contrast pairs (prompt, positive, negative)")
    if pairs is None or len(pairs) == 0:
        raise SteerlabError(f"{name} is empty: BiPO needs at least one contrast pair (prompt, positive, negative)")
    pairs = list(pairs)
    for i, p in enumerate(pairs):
        missing = [a for a in ("prompt", "positive", "negative") if not isinstance(getattr(p, a, None), str)]
        if missing:
            raise SteerlabError(
                f"{name}[{i}] has no string {', '.join(missing)}; pass ContrastPair records "
                "(steerlab.data) or objects with .prompt, .positive and .negative strings"
            )
        if not p.positive or not p.negative:
            raise SteerlabError(
                f"{name}[{i}] has an empty completion (positive={p.positive!r}, negative={p.negative!r}); "
                "BiPO scores the completions, so both must be non-empty"
            )
    same = sum(p.positive == p.negative for p in pairs)
    if same:
        logger.warning("%d of %d pairs in %s have identical positive and negative completions", same, len(pairs), name)
    return pairs


def _check_options(epochs, lr, beta, batch_size, max_completion_tokens, signs, warmup, max_steps, tol) -> None:
    def positive_int(value, what):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SteerlabError(f"{what} must be a positive int, got {value!r}")

    positive_int(epochs, "epochs")
    positive_int(batch_size, "batch_size")
    if max_steps is not None:
        positive_int(max_steps, "max_steps")
    if tol is not None and not (isinstance(tol, int | float) and 0 < tol < 1):
        raise SteerlabError(f"tol must be in (0, 1) (a relative change, e.g. 0.01) or None (no early stop); {tol!r}")
    if max_completion_tokens is not None:
        positive_int(max_completion_tokens, "max_completion_tokens")
    for value, what in ((lr, "lr"), (beta, "beta")):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise SteerlabError(f"{what} must be a positive finite number, got {value!r}")
    if signs not in ("pair", "batch"):
        raise SteerlabError(f"unknown signs {signs!r}; valid: 'pair' (one d per pair), 'batch' (one d per batch)")
    if not 0 <= warmup < 1:
        raise SteerlabError(f"warmup is a fraction of the training steps in [0, 1), got {warmup!r}")


def _initial_vector(init: Tensor | None, d_model: int, device: torch.device) -> torch.nn.Parameter:
    if init is None:
        return torch.nn.Parameter(torch.zeros(d_model, device=device))
    init = torch.as_tensor(init)
    if init.shape != (d_model,):
        raise SteerlabError(f"init must have shape ({d_model},) for this model's d_model, got {tuple(init.shape)}")
    if not torch.isfinite(init).all():
        raise SteerlabError("init has NaN or inf entries; pass a finite vector (or None for the paper's zero init)")
    return torch.nn.Parameter(init.detach().to(device, torch.float32).clone())


def convergence(losses: Sequence[float], window: int, tol: float = DEFAULT_TOL) -> dict[str, Any]:
    """Whether a BiPO loss curve has converged: it left ``log 2`` and then stopped moving.

    With ``a`` the mean loss over the last ``window`` steps and ``b`` the mean over the ``window``
    steps before, the run has converged when ``a <= (1 - MIN_DROP) * log 2`` (the loss has moved) and
    ``|a - b| <= tol * (log 2 - a)``: the last window moved the loss by less than ``tol`` of the way it
    has come from ``log 2`` (scale-free, and not over-strict once the loss is near 0, where a change
    relative to the loss itself stays large). Window means smooth the noise of single batches and of
    the random signs ``d``.

    Args:
        losses: The per-step training losses, in order.
        window: Steps per window (`train_bipo` uses one epoch, at least `MIN_WINDOW`).
        tol: Largest change between the two windows, as a fraction of the drop ``log 2 - a``.

    Returns:
        ``converged`` (bool), ``reason`` (one line), ``steps``, ``window``, ``tol``, ``last_loss`` (``a``),
        ``previous_loss`` (``b``) and ``rel_change`` (``|a - b| / (log 2 - a)``); the last three are NaN
        with fewer than ``2 * window`` steps.

    Example:
        >>> convergence([0.69, 0.5, 0.3, 0.301, 0.3, 0.302], window=2)["reason"]
        'converged: the window mean moved 0.3005 -> 0.3010, 0.13% of its drop from log 2'
        >>> convergence([0.69, 0.6, 0.5, 0.4, 0.3, 0.2], window=2)["reason"]
        'still moving: the window mean moved 0.4500 -> 0.2500, 45.13% of its drop from log 2 (tol 1.00%)'
    """
    losses = [float(x) for x in losses]
    out: dict[str, Any] = {"converged": False, "steps": len(losses), "window": window, "tol": tol,
                           "last_loss": math.nan, "previous_loss": math.nan, "rel_change": math.nan}  # fmt: skip
    if len(losses) < 2 * window:
        out["reason"] = f"too few steps to judge: {len(losses)} < 2 windows of {window}"
        return out
    last = sum(losses[-window:]) / window
    prev = sum(losses[-2 * window : -window]) / window
    drop = math.log(2) - last
    change = abs(last - prev) / drop if drop > 0 else math.inf
    out.update(last_loss=last, previous_loss=prev, rel_change=change)
    moved = f"the window mean moved {prev:.4f} -> {last:.4f}, {change:.2%} of its drop from log 2"
    if last > (1 - MIN_DROP) * math.log(2):
        out["reason"] = f"the loss never left log 2 = 0.693 (last window {last:.4f}): v barely moved; raise lr"
    elif change > tol:
        out["reason"] = f"still moving: {moved} (tol {tol:.2%})"
    else:
        out.update(converged=True, reason=f"converged: {moved}")
    return out


# ----------------------------------------------------------------------------------------------
# training


def _steer(site: Site, v: Tensor, signs: Tensor) -> Edit:
    """``h + d * v`` with one sign per row; keeps the graph to ``v`` (unlike `interventions.add`)."""
    scale = signs.view(-1, 1, 1)
    return Edit(site, lambda h: h + (scale.to(h.device) * v).to(h.dtype))


def _draw_signs(n: int, mode: SignMode, gen: torch.Generator) -> Tensor:
    """``d`` in ``{-1, +1}``, uniformly: one per pair, or one shared by the batch (Algorithm 1)."""
    draws = 1 if mode == "batch" else n
    return (torch.randint(0, 2, (draws,), generator=gen).float() * 2 - 1).expand(n).clone()


def _warmup_cosine(total: int, n_warm: int):
    """Learning-rate factor per step: linear warmup over ``n_warm`` steps, then a cosine decay to 0."""

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(total - n_warm, 1)))

    return factor


def _logprobs_split(backend: Backend, enc: Encoded, edits=None, grad: bool = False) -> tuple[Tensor, Tensor]:
    lp = completion_logprobs(backend, enc, edits=edits, grad=grad)
    n = lp.shape[0] // 2
    return lp[:n], lp[n:]


@torch.no_grad()
def _reference(backend: Backend, pairs: list, batch_size: int, encode_kw: dict) -> tuple[Tensor, Tensor]:
    """Unedited log-likelihoods of every pair's positive and negative completion."""
    pos, neg = [], []
    for start in range(0, len(pairs), batch_size):
        p, n = _logprobs_split(backend, encode_pairs(backend, pairs[start : start + batch_size], **encode_kw))
        pos.append(p)
        neg.append(n)
    return torch.cat(pos), torch.cat(neg)


@torch.no_grad()
def _evaluate(
    backend: Backend, site: Site, v: Tensor, pairs: list, ref: tuple[Tensor, Tensor], beta: float, batch_size: int,
    encode_kw: dict,
) -> dict[str, float]:  # fmt: skip
    """Validation metrics for ``+v`` and ``-v`` (the expectation over ``d``, computed exactly)."""
    out: dict[int, tuple[Tensor, Tensor]] = {}
    for d in (1, -1):
        pos, neg = [], []
        for start in range(0, len(pairs), batch_size):
            enc = encode_pairs(backend, pairs[start : start + batch_size], **encode_kw)
            signs = torch.full((len(enc.batch),), float(d), device=v.device)
            p, n = _logprobs_split(backend, enc, edits=_steer(site, v, signs))
            pos.append(p)
            neg.append(n)
        out[d] = torch.cat(pos), torch.cat(neg)
    ref_pos, ref_neg = ref
    losses = [bipo_loss(*out[d], ref_pos, ref_neg, torch.full_like(ref_pos, float(d)), beta).mean() for d in (1, -1)]
    base_pref = ref_pos - ref_neg
    return {
        "val_loss": float(sum(losses) / 2),
        "val_acc": float((out[1][0] > out[1][1]).float().mean()),
        "val_acc_neg": float((out[-1][0] > out[-1][1]).float().mean()),
        "val_shift": float(((out[1][0] - out[1][1]) - base_pref).mean()),
        "val_shift_neg": float(((out[-1][0] - out[-1][1]) - base_pref).mean()),
    }


def _unsteered_metrics(ref_pos: Tensor, ref_neg: Tensor) -> dict[str, float]:
    """`_evaluate`'s metrics for ``v = 0``."""
    acc = float((ref_pos > ref_neg).float().mean())
    return {"val_loss": math.log(2), "val_acc": acc, "val_acc_neg": acc, "val_shift": 0.0, "val_shift_neg": 0.0}


def train_bipo(
    backend: Backend,
    pairs: Sequence,
    site: Site | str | int,
    *,
    epochs: int = 20,
    lr: float = 5e-2,
    beta: float = 0.1,
    batch_size: int = 4,
    seed: int = 0,
    init: Float[Tensor, " d_model"] | None = None,
    max_completion_tokens: int | None = None,
    val_pairs: Sequence | None = None,
    progress: bool = True,
    weight_decay: float = 0.05,
    warmup: float = 0.1,
    signs: SignMode = "pair",
    system: str | None = None,
    chat: bool = True,
    tol: float | None = DEFAULT_TOL,
    max_steps: int | None = None,
) -> tuple[Float[Tensor, " d_model"], pd.DataFrame]:
    """Learn a steering vector with bi-directional preference optimization (BiPO; Cao et al. 2024).

    Minimises ``E_d[-log sigmoid(beta * d * ((log p_dv(y+|x) - log p_0(y+|x)) - (log p_dv(y-|x) -
    log p_0(y-|x))))]`` over ``v`` (see the module docstring), with ``d * v`` added at ``site`` on every
    prompt and completion token, summed completion log-likelihoods, and the batch mean of the loss.

    Args:
        backend: The model (its weights stay frozen and receive no gradient).
        pairs: Contrast pairs with ``.prompt``, ``.positive`` and ``.negative`` strings (e.g.
            `steerlab.data.ContrastPair`). The prompt is chat-formatted; completions are scored as given
            (full answers, e.g. ``"(A)"`` for CAA A/B data).
        site: Where ``v`` is added (a `Site`, ``"resid_post.12"`` or a layer number).
        epochs: Most passes over ``pairs`` (shuffled each epoch); training stops earlier once the loss
            has converged (see ``tol``). The learning-rate schedule spans the whole budget.
        lr: Peak AdamW learning rate. Lower it if the loss becomes NaN.
        beta: The DPO temperature (paper: 0.1).
        batch_size: Pairs per step (each step runs ``2 * batch_size`` sequences).
        seed: Seeds the shuffling and the signs ``d``; the same seed gives the same vector.
        init: Starting vector ``[d_model]`` (default zeros, as in the paper), e.g. a CAA vector.
        max_completion_tokens: Score only the first tokens of each completion (saves time on long ones).
        val_pairs: Held-out pairs, evaluated before training and after each epoch.
        progress: Show a tqdm bar.
        weight_decay: AdamW weight decay on ``v`` (paper: 0.05).
        warmup: Fraction of steps with a linear learning-rate warmup; a cosine decay to 0 follows.
        signs: ``"pair"`` draws ``d`` for every pair (lower variance, same expected loss);
            ``"batch"`` draws one ``d`` per batch, exactly as in the paper's Algorithm 1.
        system: Optional system prompt for the chat format.
        chat: Format prompts with the chat template (False: use ``pair.prompt`` verbatim).
        tol: Stop at the end of the first epoch where `convergence` holds with this tolerance (the window
            is one epoch, at least `MIN_WINDOW` steps); None trains every epoch of the budget. Either way
            the final state is judged, and a run that has not converged logs a warning.
        max_steps: Cap on optimizer steps (the budget is ``min(epochs * steps_per_epoch, max_steps)``).

    Returns:
        ``(v, log)``: the direction (1-D float32 CPU tensor ``[d_model]``; add it with
        `steerlab.interventions.add`, ``alpha > 0`` for the positive behaviour, ``< 0`` against it),
        and a DataFrame with one row per step: ``step``, ``epoch``, ``loss`` (batch mean), ``lr``,
        ``sign`` (mean ``d`` in the batch), ``reward_acc`` (fraction of the batch with a positive
        signed margin) and ``v_norm``. With ``val_pairs``, the last step of each epoch also holds
        ``val_loss`` (exact mean over ``d = +-1``), ``val_acc`` (fraction of validation pairs where
        the ``+v`` model gives the positive completion the higher likelihood), ``val_acc_neg`` (the
        same under ``-v``) and ``val_shift`` / ``val_shift_neg`` (mean change, in nats, of
        ``log p(y+) - log p(y-)`` under ``+v`` / ``-v``); the values before training are in
        ``log.attrs["val_before"]``. ``log.attrs["converged"]`` (bool) and ``log.attrs["convergence"]``
        (the `convergence` dict, with its one-line ``reason``) say whether training converged.

    Raises:
        SteerlabError: On empty or malformed pairs, a site out of range, bad options, or a
            non-finite loss (lower ``lr``).

    Example:
        >>> v, log = train_bipo(lm, pairs[:150], 12, val_pairs=pairs[150:])            # doctest: +SKIP
        >>> log.dropna(subset=["val_acc"])[["epoch", "val_acc", "val_acc_neg"]]        # doctest: +SKIP
    """
    site = backend.site(site)
    pairs = _check_pairs(pairs, "pairs")
    val = _check_pairs(val_pairs, "val_pairs") if val_pairs is not None else None
    _check_options(epochs, lr, beta, batch_size, max_completion_tokens, signs, warmup, max_steps, tol)
    encode_kw = {"max_completion_tokens": max_completion_tokens, "system": system, "chat": chat}

    v = _initial_vector(init, backend.d_model, backend.device)
    optimizer = torch.optim.AdamW([v], lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(epochs * steps_per_epoch, max_steps)
    window = max(steps_per_epoch, MIN_WINDOW)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total, int(warmup * total)))
    gen = torch.Generator().manual_seed(seed)
    logger.info("BiPO at %s: %d pairs, up to %d steps (%d per epoch), lr %g", site, len(pairs), total,
                steps_per_epoch, lr)  # fmt: skip

    ref_pos, ref_neg = _reference(backend, pairs, batch_size, encode_kw)
    if val is not None:
        val_ref = _reference(backend, val, batch_size, encode_kw)
        # with the zero init the steered model is the reference model: no forward pass needed
        val_before = (
            _unsteered_metrics(*val_ref)
            if init is None
            else _evaluate(backend, site, v.detach(), val, val_ref, beta, batch_size, encode_kw)
        )

    rows: list[dict] = []
    with tqdm(total=total, desc=f"BiPO {site}", disable=not progress) as bar:
        for epoch in range(1, epochs + 1):
            order = torch.randperm(len(pairs), generator=gen)
            for start in range(0, len(pairs), batch_size):
                if len(rows) == total:
                    break
                idx = order[start : start + batch_size]
                d = _draw_signs(len(idx), signs, gen).to(backend.device)
                enc = encode_pairs(backend, [pairs[i] for i in idx.tolist()], **encode_kw)
                lp_pos, lp_neg = _logprobs_split(backend, enc, edits=_steer(site, v, torch.cat([d, d])), grad=True)
                idx = idx.to(ref_pos.device)
                per_pair = bipo_loss(lp_pos, lp_neg, ref_pos[idx], ref_neg[idx], d, beta)
                loss = per_pair.mean()
                row = {"step": len(rows) + 1, "epoch": epoch, "loss": float(loss.detach())}
                if not math.isfinite(row["loss"]):
                    raise SteerlabError(
                        f"the BiPO loss became {row['loss']} at step {row['step']} (epoch {epoch}); lower lr "
                        f"(now {lr:g}, try {lr / 10:g}), or check the model's outputs are finite (fp16 overflows)"
                    )
                (v.grad,) = torch.autograd.grad(loss, [v])  # the model's weights never get a gradient
                row["lr"] = optimizer.param_groups[0]["lr"]
                optimizer.step()
                scheduler.step()
                v.grad = None
                if not torch.isfinite(v).all():
                    raise SteerlabError(
                        f"the BiPO vector became non-finite at step {row['step']} (epoch {epoch}); "
                        f"lower lr (now {lr:g}, try {lr / 10:g}), or pass a smaller init"
                    )
                row["sign"] = float(d.mean())
                row["reward_acc"] = float((per_pair.detach() < math.log(2)).float().mean())
                row["v_norm"] = float(v.detach().norm())
                rows.append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", v_norm=f"{row['v_norm']:.2f}")
            if val is not None:
                rows[-1].update(_evaluate(backend, site, v.detach(), val, val_ref, beta, batch_size, encode_kw))
                logger.info(
                    "BiPO epoch %d: val_acc %.3f (-v: %.3f)", epoch, rows[-1]["val_acc"], rows[-1]["val_acc_neg"]
                )
            status = convergence([r["loss"] for r in rows], window, tol or DEFAULT_TOL)
            if len(rows) == total or (tol is not None and status["converged"]):
                break

    log = pd.DataFrame(rows)
    if val is not None:
        log.attrs["val_before"] = val_before
    log.attrs["converged"] = status["converged"]
    log.attrs["convergence"] = status
    if status["converged"]:
        logger.info("BiPO at %s: %s after %d steps", site, status["reason"], len(rows))
    else:
        logger.warning(
            "BiPO at %s did not converge in %d steps (%d epoch(s)): %s; train longer (epochs, max_steps), raise lr, "
            "or use more pairs", site, len(rows), rows[-1]["epoch"], status["reason"],
        )  # fmt: skip
    return v.detach().to("cpu", torch.float32).clone(), log
