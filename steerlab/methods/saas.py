"""SAAS: instance-semantic attribution for activation steering (anonymous ACL submission, "Instance-Semantic
Attribution for Activation Steering in Large Language Models").

A mean-difference vector (CAA) is the uniform average of per-instance *local vectors*
``v_i = a(q_i || y+_i) - a(q_i || y-_i)``. SAAS observes that instances contribute unequally and
replaces the uniform average by a weighted one:

1. **Eligibility** (`eligibility`): an instance is kept only if
   * its activations are *separable*: projected on the Fisher discriminant ``w = S_w^-1 (mu+ - mu-)``,
     its positive activation lies on the positive side of the midpoint between the class means and its
     negative activation on the negative side (i.e. neither lies within half of the mean separation
     distance of the opposite class mean), and
   * its local vector is *directionally consistent*: ``cos(v_i, mean_j v_j) > 0`` (no obtuse angle).
2. **Semantic scores** (`aggregate_scores`): LLM agents decompose the behaviour into sub-behaviours
   with contributions ``c_k`` and score each instance against each, ``s_i = sum_k c_k s_i^k``
   (`steerlab.agents` runs the agents).
3. **Weights** (`softmax_weights`): ``w_i = softmax(s_i / t)`` over the eligible instances, and the
   vector is ``v = sum_i w_i v_i`` (`weighted_vector`).

The weighted-heuristic baselines of the paper are here too: `logit_diff_weights` (softmax of the
model's logit difference between the positive and negative answer) and `conf_weights` (the
probability of the positive answer, normalised to sum to one).

``S_w`` is ``d_model x d_model`` and singular whenever there are fewer activations than dimensions
(here: 576 dimensions, a few hundred activations). We shrink it towards a scaled identity,
``S = (1 - lam) S_w + lam (tr(S_w) / d) I``, with ``lam`` from the Ledoit-Wolf formula by default
(scikit-learn's ``ledoit_wolf_shrinkage`` on the class-centred activations) or a fixed value.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> neg = torch.randn(20, 4, generator=g); pos = neg + torch.tensor([3.0, 0, 0, 0])
    >>> report = eligibility(pos, neg)
    >>> v = weighted_vector(pos - neg, softmax_weights(torch.zeros(20), t=1.0))   # uniform = CAA
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from steerlab.errors import SteerlabError
from steerlab.methods.linear import _check_pair

logger = logging.getLogger(__name__)

__all__ = [
    "aggregate_scores",
    "conf_weights",
    "eligibility",
    "eligibility_summary",
    "fisher_direction",
    "local_vectors",
    "logit_diff_weights",
    "saas_weights",
    "softmax_weights",
    "weighted_vector",
]


def local_vectors(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"]) -> Float[Tensor, "n d"]:
    """Per-instance local vectors ``v_i = pos_i - neg_i`` (SAAS step 1), float64 on the CPU."""
    pos, neg = _check_pair(pos, neg, paired=True)
    return pos - neg


def fisher_direction(
    pos: Float[Tensor, "n d"], neg: Float[Tensor, "m d"], shrinkage: float | str = "ledoit-wolf"
) -> tuple[Float[Tensor, " d"], float]:
    """Regularised Fisher discriminant ``w = (S_w + shrinkage) ^-1 (mu+ - mu-)`` (unit norm) and the ``lam`` used.

    ``S_w`` is the pooled within-class covariance; it is shrunk towards ``(tr(S_w)/d) I`` with weight
    ``lam`` (``"ledoit-wolf"``: the Ledoit-Wolf estimate; or a float in ``[0, 1]``). ``w`` is oriented so
    that ``w . (mu+ - mu-) > 0``.
    """
    pos, neg = _check_pair(pos, neg, paired=False)
    if pos.shape[0] + neg.shape[0] < 3:
        raise SteerlabError("the Fisher discriminant needs at least 3 activations in all; collect more pairs")
    centred = torch.cat([pos - pos.mean(0), neg - neg.mean(0)])
    if shrinkage == "ledoit-wolf":
        from sklearn.covariance import ledoit_wolf_shrinkage

        lam = float(ledoit_wolf_shrinkage(centred.numpy(), assume_centered=True))
    elif isinstance(shrinkage, int | float) and 0.0 <= float(shrinkage) <= 1.0:
        lam = float(shrinkage)
    else:
        raise SteerlabError(f"shrinkage must be 'ledoit-wolf' or a number in [0, 1], got {shrinkage!r}")
    d = centred.shape[1]
    s_w = centred.T @ centred / max(centred.shape[0] - 2, 1)
    mu = float(torch.trace(s_w)) / d
    s_reg = (1.0 - lam) * s_w + lam * max(mu, 1e-12) * torch.eye(d, dtype=s_w.dtype)
    md = pos.mean(0) - neg.mean(0)
    try:
        w = torch.linalg.solve(s_reg, md)
    except RuntimeError as exc:  # singular even after shrinkage (lam = 0 with n < d)
        raise SteerlabError(
            f"the within-class scatter is singular (shrinkage {lam:g}); use shrinkage='ledoit-wolf' or a value > 0"
        ) from exc
    if float(w @ md) < 0:
        w = -w
    return w / w.norm(), lam


def eligibility(
    pos: Float[Tensor, "n d"],
    neg: Float[Tensor, "n d"],
    *,
    shrinkage: float | str = "ledoit-wolf",
    margin: float = 0.5,
    folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Which instances SAAS keeps: Fisher separability and directional consistency (SAAS step 2).

    Projections ``p_i = w . pos_i`` and ``q_i = w . neg_i`` on the regularised Fisher direction
    (`fisher_direction`) are compared with the class means ``m+`` and ``m-`` (``D = m+ - m- > 0``):
    instance ``i`` is *separable* if ``p_i > m- + margin * D`` and ``q_i < m+ - margin * D``. With the
    paper's ``margin = 0.5`` both thresholds are the midpoint, so this is "neither activation projects
    within half of the mean separation distance of the other class". It is *consistent* if
    ``cos(v_i, mean v) > 0``. Eligible = separable and consistent.

    Cross-fitting: with fewer activations than dimensions a discriminant fitted on all instances
    separates every one of them in-sample (measured: 100% on 21-70 persona pairs, d = 576), so the
    test says nothing. With ``folds > 1`` the pairs are split into ``folds`` seeded folds and each
    instance is projected on the discriminant (and compared with the class means) fitted on the
    other folds; ``folds=1`` reproduces the in-sample rule.

    Args:
        pos: Positive activations ``(n, d_model)`` at one layer, paired with ``neg`` by row.
        neg: Negative activations ``(n, d_model)``.
        shrinkage: Regularisation of the within-class scatter (see `fisher_direction`).
        margin: Fraction of the mean separation an activation must clear from the opposite class mean.
        folds: Cross-fitting folds for the separability test (1: in-sample; see above).
        seed: Seed of the fold assignment.

    Returns:
        One row per instance: ``instance`` (row index), ``proj_pos``, ``proj_neg``, ``separable``,
        ``cos_mean``, ``consistent``, ``eligible``; ``df.attrs`` holds ``shrinkage`` (the mean ``lam``
        used), ``separation`` (the mean ``D``) and ``folds``.

    Example:
        >>> neg = torch.tensor([[0.0, 0], [0, 1], [0, -1], [5.0, 0]])
        >>> pos = torch.tensor([[4.0, 0], [4, 1], [4, -1], [1.0, 0]])
        >>> eligibility(pos, neg, shrinkage=0.5, folds=1).eligible.tolist()
        [True, True, True, False]
    """
    pos, neg = _check_pair(pos, neg, paired=True, min_pairs=2)
    if not 0.0 <= margin <= 1.0:
        raise SteerlabError(f"margin must be in [0, 1] (the paper uses 0.5), got {margin}")
    n = pos.shape[0]
    if not isinstance(folds, int) or not 1 <= folds <= n // 2 + (folds == 1):
        raise SteerlabError(f"folds must be 1 (in-sample) or 2..{n // 2} for {n} pairs, got {folds!r}")
    fold = np.random.default_rng(seed).permutation(n) % folds if folds > 1 else np.zeros(n, int)
    p, q = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    thr_pos, thr_neg = torch.empty(n, dtype=torch.float64), torch.empty(n, dtype=torch.float64)
    lams, seps = [], []
    for k in range(folds):
        held = torch.as_tensor(fold == k)
        fit = ~held if folds > 1 else held
        w, lam = fisher_direction(pos[fit], neg[fit], shrinkage)
        m_pos, m_neg = float((pos[fit] @ w).mean()), float((neg[fit] @ w).mean())
        sep = m_pos - m_neg
        p[held], q[held] = pos[held] @ w, neg[held] @ w
        thr_pos[held], thr_neg[held] = m_neg + margin * sep, m_pos - margin * sep
        lams.append(lam)
        seps.append(sep)
    separable = (p > thr_pos) & (q < thr_neg)
    v = pos - neg
    mean_v = v.mean(0)
    norms = v.norm(dim=1) * mean_v.norm()
    cos = torch.where(norms > 0, (v @ mean_v) / norms.clamp_min(1e-300), torch.zeros_like(norms))
    consistent = cos > 0
    df = pd.DataFrame(
        {
            "instance": np.arange(pos.shape[0]),
            "proj_pos": p.numpy(),
            "proj_neg": q.numpy(),
            "separable": separable.numpy(),
            "cos_mean": cos.numpy(),
            "consistent": consistent.numpy(),
            "eligible": (separable & consistent).numpy(),
        }
    )
    df.attrs.update(shrinkage=float(np.mean(lams)), separation=float(np.mean(seps)), folds=folds)
    return df


def eligibility_summary(report: pd.DataFrame) -> dict[str, float]:
    """Shares of separable, consistent and eligible instances in an `eligibility` report."""
    return {
        "n": len(report),
        "separable": float(report.separable.mean()),
        "consistent": float(report.consistent.mean()),
        "eligible": float(report.eligible.mean()),
    }


def aggregate_scores(
    scores: Float[np.ndarray, "n k"] | Tensor, contributions: Sequence[float] | np.ndarray
) -> Float[np.ndarray, " n"]:
    """Instance scores ``s_i = sum_k c_k s_i^k`` from sub-behaviour scores ``(n, K)`` and contributions ``(K,)``."""
    s = np.asarray(scores, dtype=np.float64)
    c = np.asarray(contributions, dtype=np.float64)
    if s.ndim != 2 or c.ndim != 1 or s.shape[1] != c.shape[0]:
        raise SteerlabError(
            f"scores must be (n_instances, K) and contributions (K,); got {s.shape} and {c.shape}: "
            "give one contribution per sub-behaviour column"
        )
    if not (np.isfinite(s).all() and np.isfinite(c).all()):
        raise SteerlabError("scores and contributions must be finite; re-run the agent calls that failed to parse")
    return s @ c


def softmax_weights(scores: Sequence[float] | np.ndarray | Tensor, t: float) -> Float[Tensor, " n"]:
    """``softmax(scores / t)`` in float64. ``t = inf`` gives uniform weights; ``t = 0`` splits the weight
    evenly over the top-scoring instances (the limits of the softmax)."""
    s = torch.as_tensor(np.array(scores, dtype=np.float64))
    if s.ndim != 1 or s.numel() == 0:
        raise SteerlabError(f"scores must be a non-empty 1-D sequence, got shape {tuple(s.shape)}")
    if not (isinstance(t, int | float) and t >= 0) or math.isnan(t):
        raise SteerlabError(f"temperature t must be >= 0 (inf for uniform weights), got {t!r}")
    if math.isinf(t):
        return torch.full_like(s, 1.0 / s.numel())
    if t == 0:
        top = (s == s.max()).to(torch.float64)
        return top / top.sum()
    return torch.softmax(s / t, dim=0)


def weighted_vector(local: Float[Tensor, "n d"], weights: Float[Tensor, " n"]) -> Float[Tensor, " d"]:
    """``v = sum_i w_i v_i`` as float32 (the weights must be non-negative and sum to one)."""
    local = torch.as_tensor(local, dtype=torch.float64)
    w = torch.as_tensor(weights, dtype=torch.float64)
    if local.ndim != 2 or w.shape != (local.shape[0],):
        raise SteerlabError(
            f"need local vectors (n, d) and weights (n,), got {tuple(local.shape)} and {tuple(w.shape)}"
        )
    if (w < 0).any() or abs(float(w.sum()) - 1.0) > 1e-6:
        raise SteerlabError("weights must be non-negative and sum to 1; use softmax_weights")
    return (w @ local).to(torch.float32)


def saas_weights(
    scores: Sequence[float] | np.ndarray, eligible: Sequence[bool] | np.ndarray, t: float
) -> Float[Tensor, " n"]:
    """SAAS weights over all instances: ``softmax(s / t)`` over the eligible ones, 0 for the others."""
    elig = torch.as_tensor(np.array(eligible, dtype=bool))
    s = np.asarray(scores, dtype=np.float64)
    if elig.shape != (len(s),):
        raise SteerlabError(f"eligible has {elig.numel()} entries for {len(s)} scores; give one per instance")
    if not bool(elig.any()):
        raise SteerlabError(
            "no instance is eligible, so SAAS has nothing to average; check the pairs' order or use more pairs"
        )
    w = torch.zeros(len(s), dtype=torch.float64)
    w[elig] = softmax_weights(s[elig.numpy()], t)
    return w


def logit_diff_weights(logit_diff: Sequence[float] | np.ndarray, t: float = 1.0) -> Float[Tensor, " n"]:
    """logit-diff baseline: ``softmax(ld_i / t)`` of the unsteered model's ``logit(y+) - logit(y-)``."""
    return softmax_weights(logit_diff, t)


def conf_weights(p_positive: Sequence[float] | np.ndarray) -> Float[Tensor, " n"]:
    """conf baseline: weights proportional to the unsteered model's probability of the positive answer."""
    p = torch.as_tensor(np.asarray(p_positive, dtype=np.float64))
    if p.ndim != 1 or p.numel() == 0 or (p < 0).any() or not torch.isfinite(p).all() or float(p.sum()) <= 0:
        raise SteerlabError("p_positive must be a non-empty 1-D array of probabilities with a positive sum")
    return p / p.sum()
