"""Adversarial inputs that reverse a steered behaviour (CAE, Hao et al. 2025, arXiv 2505.03189, finding 3).

The paper finds, by evolutionary prompt optimisation, inputs under which a steered model shows the
opposite of the steered behaviour, and notes these inputs are unnatural. Two searches over ``k``
adversarial tokens placed before (``"prefix"``) or after (``"suffix"``) the user's question:

* `gcg_search`: greedy coordinate gradient (Zou et al. 2023, arXiv 2307.15043). The gradient of the
  loss with respect to a one-hot encoding of the adversarial tokens (through the steered model, via
  `Backend.input_embeddings` and an edit at ``resid_pre.0``) proposes the top-k token swaps per
  position; a batch of random single swaps is evaluated exactly and the best is kept if it lowers
  the loss, so the reported loss never rises.
* `evolutionary_search`: a gradient-free population search (mutation, uniform crossover, elitism)
  whose fitness adds a fluency term: the cross-entropy of the adversarial tokens under the
  unsteered model, weighted by ``fluency``.

The attack loss is ``-log p(target answer)`` normalised over the two answers (the target is the
non-matching answer when the vector pushes towards the behaviour). Both searches stop at
``max_steps`` or ``max_seconds`` and return one row per step.

Example:
    >>> target = attack_target(lm, pair)                                                    # doctest: +SKIP
    >>> hist = gcg_search(lm, target, steer(vec, 1.0), n_tokens=8, max_steps=30)            # doctest: +SKIP
    >>> hist.success.any(), hist.adv_text.iloc[-1]                                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.prompts import choice_setup
from steerlab.sites import Batch, Edit, Site

logger = logging.getLogger(__name__)

_MARK = "\x1e\x1e"  # stands for the adversarial tokens while the chat template is applied


@dataclass(frozen=True)
class AttackTarget:
    """A scored prompt cut around the adversarial tokens: ``before + adv + after``, answer read after ``after``."""

    before: list[int]
    after: list[int]
    pos_id: int  # the behaviour-matching answer's token
    neg_id: int
    target: str = "negative"  # which answer the attack pushes towards

    def ids(self, adv: Int[Tensor, "batch k"]) -> Int[Tensor, "batch pos"]:
        b = len(adv)
        return torch.cat(
            [torch.tensor(self.before).expand(b, -1), adv.cpu(), torch.tensor(self.after).expand(b, -1)], dim=1
        )


def attack_target(backend: Backend, pair, *, where: str = "suffix", target: str = "negative",
                  system: str | None = None) -> AttackTarget:  # fmt: skip
    """Cut a contrast pair's scored prompt (as in `behaviour_probability`) where adversarial tokens go."""
    if where not in ("prefix", "suffix"):
        raise SteerlabError(f"where must be 'prefix' or 'suffix', got {where!r}")
    if target not in ("negative", "positive"):
        raise SteerlabError(f"target must be 'negative' (reverse a positive steer) or 'positive', got {target!r}")
    question = f"{_MARK} {pair.prompt}" if where == "prefix" else f"{pair.prompt} {_MARK}"
    prompt, (pos_id, neg_id) = choice_setup(backend, question, [pair.positive, pair.negative], system=system)
    before, after = prompt.split(_MARK)
    tok = backend.tokenizer
    before_ids = backend.tokenize(before).input_ids[0].tolist() if before else []
    return AttackTarget(before_ids, tok(after, add_special_tokens=False)["input_ids"], pos_id, neg_id, target)


def with_adversarial_text(pair, text: str, *, where: str = "suffix", example_id=None):
    """``pair`` with ``text`` (e.g. a search's decoded ``adv_text``) placed where `attack_target` puts the adversarial
    tokens, as a `ContrastPair` a `steerlab.tasks.ChoiceTask` can score: found tokens are judged as the text a
    user would send (re-tokenized, which can merge a token with the space before it), not as token ids.
    ``example_id`` goes to ``meta["id"]`` (the task's example id)."""
    from steerlab.data import ContrastPair

    if where not in ("prefix", "suffix"):
        raise SteerlabError(f"where must be 'prefix' or 'suffix', got {where!r}")
    prompt = f"{text} {pair.prompt}" if where == "prefix" else f"{pair.prompt} {text}"
    meta = {**(getattr(pair, "meta", None) or {}), "adversarial": text}
    if example_id is not None:
        meta["id"] = example_id
    return ContrastPair(prompt, pair.positive, pair.negative, meta)


def allowed_tokens(backend: Backend, *, words_only: bool = False) -> Int[Tensor, " n"]:
    """Token ids an attack may use: printable ASCII, no special tokens; ``words_only``: letters with an optional
    leading space (a fluency-friendly pool for the evolutionary search)."""
    tok = backend.tokenizer
    special = set(tok.all_special_ids)
    keep = []
    for i in range(len(tok)):
        if i in special:
            continue
        s = tok.decode([i])
        if not s or not s.isascii() or not s.isprintable():
            continue
        if words_only and not (s.lstrip(" ").isalpha() and len(s.strip()) > 1):
            continue
        keep.append(i)
    if not keep:
        raise SteerlabError("no usable tokens in the vocabulary; pass words_only=False")
    return torch.tensor(keep)


def _answer_loss(logits: Float[Tensor, "batch vocab"], target: AttackTarget) -> tuple[Tensor, Tensor]:
    """(loss, p_behaviour): ``-log p(target answer)`` over the two answers, and p of the matching answer."""
    diff = logits[:, target.pos_id].float() - logits[:, target.neg_id].float()
    p = torch.sigmoid(diff)
    loss = F.softplus(diff) if target.target == "negative" else F.softplus(-diff)
    return loss, p


@torch.no_grad()
def attack_loss(
    backend: Backend, target: AttackTarget, adv: Int[Tensor, "batch k"], edits: Sequence[Edit] = (),
    batch_size: int = 32,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Attack loss and p(behaviour) of each row of adversarial tokens under ``edits`` (exact, no gradient)."""
    losses, ps = [], []
    for start in range(0, len(adv), batch_size):
        ids = target.ids(adv[start : start + batch_size]).to(backend.device)
        logits = backend.forward(Batch(ids, torch.ones_like(ids)), edits=list(edits)).logits[:, -1]
        loss, p = _answer_loss(logits, target)
        losses.append(loss.cpu())
        ps.append(p.cpu())
    return torch.cat(losses), torch.cat(ps)


@torch.no_grad()
def input_cross_entropy(
    backend: Backend, target: AttackTarget, adv: Int[Tensor, "batch k"], batch_size: int = 32
) -> Tensor:
    """Mean next-token cross-entropy of the adversarial tokens under the unsteered model, given what precedes them
    (the first adversarial token is predicted from ``before``; with an empty ``before`` it is skipped)."""
    k, start = adv.shape[1], len(target.before)
    out = []
    for i in range(0, len(adv), batch_size):
        a = adv[i : i + batch_size]
        ids = torch.cat([torch.tensor(target.before).expand(len(a), -1), a.cpu()], dim=1).to(backend.device)
        logp = torch.log_softmax(backend.forward(Batch(ids, torch.ones_like(ids))).logits.float(), -1)
        first = max(start, 1)
        nll = -logp[:, first - 1 : start + k - 1].gather(-1, ids[:, first : start + k].unsqueeze(-1)).squeeze(-1)
        out.append(nll.mean(1).cpu())
    return torch.cat(out)


def _gradient(backend: Backend, target: AttackTarget, adv: Tensor, edits: Sequence[Edit], embed: Tensor) -> Tensor:
    """d loss / d one-hot(adv), ``[k, vocab]``, through the steered model."""
    one_hot = F.one_hot(adv.to(embed.device), embed.shape[0]).to(embed.dtype).requires_grad_(True)
    start, k = len(target.before), len(adv)

    def write(h: Tensor) -> Tensor:
        emb = (one_hot @ embed).to(h.dtype).unsqueeze(0).expand(h.shape[0], -1, -1)
        return torch.cat([h[:, :start], emb, h[:, start + k :]], dim=1)

    ids = target.ids(adv.unsqueeze(0)).to(backend.device)
    out = backend.forward(Batch(ids, torch.ones_like(ids)), edits=[Edit(Site(0, "resid_pre"), write), *edits],
                          grad=True)  # fmt: skip
    loss, _ = _answer_loss(out.logits[:, -1], target)
    (grad,) = torch.autograd.grad(loss.sum(), [one_hot])
    return grad


def _row(method: str, step: int, t0: float, loss: float, p: float, adv: Tensor, backend: Backend,
         target: AttackTarget, **extra) -> dict:  # fmt: skip
    success = p < 0.5 if target.target == "negative" else p > 0.5
    return {"method": method, "step": step, "elapsed_s": time.perf_counter() - t0, "loss": loss,
            "p_behaviour": p, "success": bool(success), **extra, "adv_ids": adv.tolist(),
            "adv_text": backend.tokenizer.decode(adv.tolist())}  # fmt: skip


def _init(backend: Backend, n_tokens: int, init: Sequence[int] | None) -> Tensor:
    if init is not None:
        adv = torch.as_tensor(list(init), dtype=torch.long)
        if adv.dim() != 1 or len(adv) == 0:
            raise SteerlabError("init must be a non-empty list of token ids")
        return adv
    if n_tokens < 1:
        raise SteerlabError(f"n_tokens must be at least 1, got {n_tokens}")
    bang = backend.tokenizer("!", add_special_tokens=False)["input_ids"][0]
    return torch.full((n_tokens,), bang, dtype=torch.long)


def gcg_search(
    backend: Backend,
    target: AttackTarget,
    edits: Sequence[Edit],
    *,
    n_tokens: int = 8,
    init: Sequence[int] | None = None,
    max_steps: int = 30,
    max_seconds: float = 120.0,
    top_k: int = 64,
    n_candidates: int = 32,
    allowed: Tensor | None = None,
    stop_on_success: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Greedy coordinate gradient search for adversarial tokens against a steered model.

    Args:
        target: from `attack_target`.
        edits: the steering edits under attack (e.g. ``steer(vec, 1.0)``).
        n_tokens, init: the number of adversarial tokens, or their initial ids (default ``"!"`` x n).
        max_steps, max_seconds: the budget; the search stops at whichever comes first.
        top_k: candidate tokens per position (most negative gradient); n_candidates: swaps tried per step.
        allowed: token ids the search may use (default `allowed_tokens`).

    Returns:
        One row per step (step 0 = the initial tokens): ``method, step, elapsed_s, loss, p_behaviour,
        success, accepted, adv_ids, adv_text``. ``loss`` is the exact loss of ``adv_ids``.
    """
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    embed = backend.input_embeddings().detach()
    allowed = allowed_tokens(backend) if allowed is None else torch.as_tensor(allowed)
    blocked = torch.ones(embed.shape[0], dtype=torch.bool)
    blocked[allowed] = False
    adv = _init(backend, n_tokens, init)
    loss, p = (float(x[0]) for x in attack_loss(backend, target, adv.unsqueeze(0), edits))
    rows = [_row("gcg", 0, t0, loss, p, adv, backend, target, accepted=False)]
    bar = tqdm(range(1, max_steps + 1), desc="gcg", disable=not progress)
    for step in bar:
        if time.perf_counter() - t0 > max_seconds or (stop_on_success and rows[-1]["success"]):
            break
        grad = _gradient(backend, target, adv, edits, embed).cpu()
        grad[:, blocked] = float("inf")
        top = (-grad).topk(min(top_k, len(allowed)), dim=1).indices  # [k, top_k]
        where = torch.randint(len(adv), (n_candidates,), generator=gen)
        pick = top[where, torch.randint(top.shape[1], (n_candidates,), generator=gen)]
        cands = adv.repeat(n_candidates, 1)
        cands[torch.arange(n_candidates), where] = pick
        c_loss, c_p = attack_loss(backend, target, cands, edits)
        best = int(c_loss.argmin())
        accepted = float(c_loss[best]) < loss
        if accepted:
            adv, loss, p = cands[best].clone(), float(c_loss[best]), float(c_p[best])
        rows.append(_row("gcg", step, t0, loss, p, adv, backend, target, accepted=accepted))
        bar.set_postfix(loss=f"{loss:.3f}", p=f"{p:.3f}")
    return pd.DataFrame(rows)


def evolutionary_search(
    backend: Backend,
    target: AttackTarget,
    edits: Sequence[Edit],
    *,
    n_tokens: int = 8,
    population: int = 16,
    elite: int = 4,
    mutation_rate: float = 0.25,
    fluency: float = 0.1,
    max_steps: int = 30,
    max_seconds: float = 120.0,
    allowed: Tensor | None = None,
    stop_on_success: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Gradient-free evolutionary search with a fluency term (in the spirit of the CAE paper's attack).

    Fitness (lower is better) = attack loss under ``edits`` + ``fluency`` x `input_cross_entropy`
    (unsteered model). Each generation keeps the ``elite`` best, and fills the population with
    children of two elite parents (uniform crossover), each token then resampled from ``allowed``
    (default: word tokens, `allowed_tokens(words_only=True)`) with probability ``mutation_rate``.

    Returns:
        One row per generation for its best individual: ``method, step, elapsed_s, loss, p_behaviour,
        success, fitness, cross_entropy, adv_ids, adv_text``.
    """
    if not 1 <= elite < population:
        raise SteerlabError(f"elite must be in 1..population-1, got elite={elite}, population={population}")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    pool = allowed_tokens(backend, words_only=True) if allowed is None else torch.as_tensor(allowed)
    pop = pool[torch.as_tensor(rng.integers(len(pool), size=(population, n_tokens)))]

    def score(p: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        loss, pb = attack_loss(backend, target, p, edits)
        ce = input_cross_entropy(backend, target, p)
        return loss + fluency * ce, loss, pb, ce

    fit, loss, pb, ce = score(pop)
    rows = []
    bar = tqdm(range(max_steps + 1), desc="evolve", disable=not progress)
    for step in bar:
        order = torch.argsort(fit)
        pop, fit, loss, pb, ce = pop[order], fit[order], loss[order], pb[order], ce[order]
        rows.append(_row("evolutionary", step, t0, float(loss[0]), float(pb[0]), pop[0], backend, target,
                         fitness=float(fit[0]), cross_entropy=float(ce[0])))  # fmt: skip
        bar.set_postfix(loss=f"{float(loss[0]):.3f}", p=f"{float(pb[0]):.3f}")
        if step == max_steps or time.perf_counter() - t0 > max_seconds or (stop_on_success and rows[-1]["success"]):
            break
        parents = rng.integers(elite, size=(population - elite, 2))
        mask = torch.as_tensor(rng.random((population - elite, n_tokens)) < 0.5)
        kids = torch.where(mask, pop[parents[:, 0]], pop[parents[:, 1]])
        mutate = torch.as_tensor(rng.random(kids.shape) < mutation_rate)
        kids = torch.where(mutate, pool[torch.as_tensor(rng.integers(len(pool), size=kids.shape))], kids)
        k_fit, k_loss, k_pb, k_ce = score(kids)
        pop, fit = torch.cat([pop[:elite], kids]), torch.cat([fit[:elite], k_fit])
        loss, pb, ce = torch.cat([loss[:elite], k_loss]), torch.cat([pb[:elite], k_pb]), torch.cat([ce[:elite], k_ce])
    return pd.DataFrame(rows)


def success_by_step(histories: pd.DataFrame, steps: Sequence[int] | None = None) -> pd.DataFrame:
    """Fraction of attacks (``method, prompt_id``) that have succeeded by each step (success carried forward).

    ``histories`` is the concatenation of search results with a ``prompt_id`` column.
    """
    need = {"method", "prompt_id", "step", "success"}
    if not need <= set(histories.columns):
        raise SteerlabError(f"success_by_step needs columns {sorted(need)}; got {list(histories.columns)}")
    steps = sorted(histories.step.unique()) if steps is None else list(steps)
    rows = []
    for method, d in histories.groupby("method"):
        first = d[d.success].groupby("prompt_id").step.min()
        n = d.prompt_id.nunique()
        rows += [{"method": method, "step": s, "success_rate": float((first <= s).sum() / n), "n_prompts": n}
                 for s in steps]  # fmt: skip
    return pd.DataFrame(rows)
