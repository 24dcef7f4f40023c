"""Linear steering directions from contrastive activations: mean difference, PCA, probe, layer scores.

Every function takes two activation matrices from one site of one model, ``pos`` and ``neg``, of
shape ``(n, d_model)``. Row ``i`` of ``pos`` and row ``i`` of ``neg`` come from the same contrast pair
(the same prompt completed the two ways), so the paired methods need equal shapes.

Every direction is returned on the CPU as float32 and all arithmetic is done in float64.

Scale convention: `mean_diff` returns the raw difference of means. The other methods find a
*direction* (a unit vector ``u``), flip its sign so that ``u . mean_diff > 0``, and return
``(u . mean_diff) * u``: the part of the mean difference that lies along ``u``. So every method's
vector has at most the norm of the CAA vector, and they are all equal when the directions agree.
This keeps a given ``coeff`` about as strong whichever method made the vector.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

__all__ = [
    "MeanDiffAccumulator",
    "fisher_scores",
    "mean_diff",
    "pca_center",
    "pca_diff",
    "probe_direction",
]

DEFAULT_CS: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
"""Inverse L2 strengths tried by `probe_direction` (scikit-learn's ``C``; small ``C`` = strong penalty)."""


# ----------------------------------------------------------------------------------------------
# validation


def _check_matrix(x: Any, name: str) -> Tensor:
    """Return ``x`` as a float64 CPU tensor, or raise if it is not a finite, non-empty 2-D matrix."""
    if not isinstance(x, Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as exc:
            raise SteerlabError(
                f"{name} must be a tensor of shape (n, d_model), got {type(x).__name__}; "
                "pass the activations as a torch.Tensor or numpy array"
            ) from exc
    if x.ndim != 2:
        hint = " (for a single example use x.unsqueeze(0))" if x.ndim == 1 else ""
        raise SteerlabError(
            f"{name} must be 2-D with shape (n, d_model), got shape {tuple(x.shape)}{hint}; "
            "if you collected (n, seq, d_model), pick one token position first"
        )
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
        raise SteerlabError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise SteerlabError(f"{name} is empty (shape {tuple(x.shape)}): it needs at least one row of activations")
    x = x.detach().to("cpu", torch.float64)
    bad = ~torch.isfinite(x)
    if bad.any():
        rows = torch.nonzero(bad.any(dim=1)).flatten()[:5].tolist()
        raise SteerlabError(
            f"{name} contains {int(bad.sum())} non-finite values (NaN or inf), first in rows {rows}; "
            "collect activations in float32 rather than float16, or drop those rows from both sets"
        )
    return x


def _check_pair(pos: Any, neg: Any, *, paired: bool = True, min_pairs: int = 1) -> tuple[Tensor, Tensor]:
    """Validate a contrast set; ``paired`` demands equal shapes, not only equal widths."""
    pos, neg = _check_matrix(pos, "pos"), _check_matrix(neg, "neg")
    if pos.shape[1] != neg.shape[1]:
        raise SteerlabError(
            f"pos has shape {tuple(pos.shape)} but neg has {tuple(neg.shape)}: "
            "the two sets must come from the same site of the same model"
        )
    if paired and pos.shape[0] != neg.shape[0]:
        raise SteerlabError(
            f"pos has {pos.shape[0]} rows but neg has {neg.shape[0]}: this method needs paired rows "
            "(row i of pos and of neg from the same prompt); drop the unmatched rows or use mean_diff"
        )
    if pos.shape[0] < min_pairs:
        raise SteerlabError(
            f"got {pos.shape[0]} contrast pair(s) but this method needs at least {min_pairs}; "
            "collect more pairs or use mean_diff"
        )
    return pos, neg


def _nonzero_diff(diff: Tensor, scale: float) -> Tensor:
    """Raise if the mean difference is zero (relative to the size of the activations)."""
    if float(diff.norm()) <= 1e-12 * max(scale, 1.0):
        raise SteerlabError(
            "pos and neg have the same mean, so there is no direction to steer along; check that the "
            "positive and negative prompts differ, and that both sets were not read from the same run"
        )
    return diff


def _mean_diff64(pos: Tensor, neg: Tensor) -> Tensor:
    scale = max(float(pos.abs().max()), float(neg.abs().max()))
    return _nonzero_diff(pos.mean(dim=0) - neg.mean(dim=0), scale)


def _align_and_scale(direction: Tensor, md: Tensor, method: str) -> Tensor:
    """Unit-normalise ``direction``, flip it to agree with ``md``, scale to ``md``'s projection on it."""
    unit = direction / direction.norm()
    proj = float(unit @ md)
    cos = abs(proj) / float(md.norm())
    if cos < 1e-6:
        raise SteerlabError(
            f"the {method} direction is orthogonal to the mean difference (cosine {cos:.1e}), so it has no sign "
            "or size along the contrast; use mean_diff, or check the pairs' order"
        )
    if cos < 0.1:
        logger.warning("%s direction is nearly orthogonal to the mean difference (|cos| = %.3f)", method, cos)
    unit = unit if proj > 0 else -unit
    return (abs(proj) * unit).to(torch.float32)


# ----------------------------------------------------------------------------------------------
# mean difference (CAA)


def mean_diff(pos: Float[Tensor, "n_pos d"], neg: Float[Tensor, "n_neg d"]) -> Float[Tensor, " d"]:
    """Mean of positive minus mean of negative activations (CAA, Rimsky et al. 2024).

    The rows need not be paired, so ``pos`` and ``neg`` may have different numbers of rows.

    Args:
        pos: Activations on the positive completions, shape ``(n_pos, d_model)``.
        neg: Activations on the negative completions, shape ``(n_neg, d_model)``.

    Returns:
        The direction, shape ``(d_model,)``, float32 on the CPU.

    Raises:
        SteerlabError: On malformed input, or if the two means are equal.

    Example:
        >>> mean_diff(torch.tensor([[2.0, 1.0], [4.0, 1.0]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
        tensor([3., 0.])
    """
    pos, neg = _check_pair(pos, neg, paired=False)
    return _mean_diff64(pos, neg).to(torch.float32)


class MeanDiffAccumulator:
    """Streaming mean difference (CAA, Rimsky et al. 2024) over batches of any size.

    Keeps float64 running sums and counts, so memory stays ``O(d_model)`` however many pairs are
    added; the result equals `mean_diff` on all the batches stacked.

    Args:
        d_model: Width of the activations.

    Example:
        >>> acc = MeanDiffAccumulator(2)
        >>> acc.add(torch.tensor([[2.0, 1.0]]), torch.tensor([[0.0, 1.0]]))
        >>> acc.add(torch.tensor([[4.0, 1.0]]), torch.tensor([[0.0, 1.0]]))
        >>> acc.result()
        tensor([3., 0.])
    """

    def __init__(self, d_model: int) -> None:
        if not isinstance(d_model, int) or isinstance(d_model, bool) or d_model < 1:
            raise SteerlabError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model
        self._sum_pos = torch.zeros(d_model, dtype=torch.float64)
        self._sum_neg = torch.zeros(d_model, dtype=torch.float64)
        self._max_abs = 0.0
        self.n_pos = 0
        self.n_neg = 0

    def add(self, pos_batch: Float[Tensor, "b_pos d"], neg_batch: Float[Tensor, "b_neg d"]) -> None:
        """Add one batch of positive and negative activations (validated like `mean_diff`)."""
        pos, neg = _check_pair(pos_batch, neg_batch, paired=False)
        if pos.shape[1] != self.d_model:
            raise SteerlabError(
                f"batch has width {pos.shape[1]} but this accumulator was made with d_model={self.d_model}; "
                "use one accumulator per site"
            )
        self._sum_pos += pos.sum(dim=0)
        self._sum_neg += neg.sum(dim=0)
        self.n_pos += pos.shape[0]
        self.n_neg += neg.shape[0]
        self._max_abs = max(self._max_abs, float(pos.abs().max()), float(neg.abs().max()))

    def result(self) -> Float[Tensor, " d"]:
        """Return the mean difference of everything added so far, float32."""
        if self.n_pos == 0 or self.n_neg == 0:
            raise SteerlabError("the accumulator is empty: call .add(pos_batch, neg_batch) before .result()")
        diff = self._sum_pos / self.n_pos - self._sum_neg / self.n_neg
        return _nonzero_diff(diff, self._max_abs).to(torch.float32)


# ----------------------------------------------------------------------------------------------
# PCA (RepE / repeng)


def _resolution(*xs: Any) -> float:
    """Rounding step of the inputs' dtype relative to their size (0 for float64 and integer input)."""
    eps = 0.0
    for x in xs:
        dtype = x.dtype if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x)).dtype
        if dtype.is_floating_point and dtype != torch.float64:
            eps = max(eps, torch.finfo(dtype).eps)
    return eps


def _first_pc(x: Tensor, center: bool, floor: float = 0.0) -> Tensor:
    """First right singular vector of ``x`` (optionally after removing its column means).

    ``floor`` is the size below which entries are rounding noise of the inputs.
    """
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    if float(x.abs().max()) <= floor:
        raise SteerlabError(
            "the pair differences do not vary beyond rounding, so they have no principal component: "
            "every pair differs by the same vector; use mean_diff"
        )
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return vh[0]


def pca_center(pos: Float[Tensor, "n_pos d"], neg: Float[Tensor, "n_neg d"]) -> Float[Tensor, " d"]:
    """First principal component of all activations centred together (the PCA-center baseline of SAAS).

    As the SAAS paper defines it (after RepE, Zou et al. 2023): the positive and negative activations
    are pooled, the pooled mean is subtracted from every row, and the first principal component of the
    ``n_pos + n_neg`` centred rows is taken. It is the axis along which the activations vary most
    overall, so it finds the contrast when the contrast dominates the activations' spread, and a
    nuisance axis (topic, length) when it does not; then it is nearly orthogonal to the mean
    difference and a warning says so. (repeng's method of the same name centres each pair on its own
    mean instead, which is the uncentred PCA of the pair differences.) Rows need not be paired. The
    component is sign-aligned with `mean_diff` and scaled to the projection of the mean difference on
    it (see the module docstring).

    Args:
        pos: Positive activations, shape ``(n_pos, d_model)``.
        neg: Negative activations, shape ``(n_neg, d_model)``.

    Returns:
        The direction, shape ``(d_model,)``, float32.

    Example:
        >>> neg = torch.tensor([[-1.0, -1.0], [-1.0, -1.5]])
        >>> pos = neg + torch.tensor([[2.0, 1.0], [2.0, 3.0]])   # differences vary along (0, 1) only
        >>> pca_center(pos, neg), pca_diff(pos, neg)
        (tensor([1.8336, 2.1424]), tensor([0., 2.]))
    """
    pos, neg = _check_pair(pos, neg, paired=False)
    md = _mean_diff64(pos, neg)
    return _align_and_scale(_first_pc(torch.cat([pos, neg]), center=True), md, "pca_center")


def pca_diff(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"]) -> Float[Tensor, " d"]:
    """First principal component of the pair differences (RepE, Zou et al. 2023; repeng "pca_diff").

    As in repeng (scikit-learn's ``PCA``), the differences ``pos_i - neg_i`` are centred before the
    decomposition, so their mean (the CAA vector) is removed and the component is the axis along which
    the pairs' differences *vary* most. It recovers a concept whose strength varies from pair to pair;
    when every pair differs by nearly the same vector it can point elsewhere (then an error or warning
    says it is orthogonal to the mean difference: use `mean_diff`). Sign and scale follow the module
    convention.

    Args:
        pos: Positive activations, shape ``(n, d_model)``, ``n >= 2``, paired with ``neg`` by row.
        neg: Negative activations, shape ``(n, d_model)``.

    Returns:
        The direction, shape ``(d_model,)``, float32.

    Example:
        >>> pos = torch.tensor([[3.0, 0.1], [1.0, -0.1], [2.0, 0.0]])
        >>> v = pca_diff(pos, torch.zeros(3, 2))
        >>> bool(v[0] > 1.9 and abs(v[1]) < 0.2)
        True
    """
    eps = _resolution(pos, neg)
    pos, neg = _check_pair(pos, neg, paired=True, min_pairs=2)
    md = _mean_diff64(pos, neg)
    floor = 8 * eps * max(float(pos.abs().max()), float(neg.abs().max()))
    return _align_and_scale(_first_pc(pos - neg, center=True, floor=floor), md, "pca_diff")


# ----------------------------------------------------------------------------------------------
# logistic-regression probe


def _split_pairs(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split pair indices into train and validation; each side gets at least one pair."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(1, round(frac * n)), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _xy(pos: Tensor, neg: Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = torch.cat([pos, neg]).numpy()
    y = np.concatenate([np.ones(pos.shape[0], dtype=int), np.zeros(neg.shape[0], dtype=int)])
    return x, y


def probe_direction(
    pos: Float[Tensor, "n d"],
    neg: Float[Tensor, "n d"],
    val_pos: Float[Tensor, "m d"] | None = None,
    val_neg: Float[Tensor, "m d"] | None = None,
    Cs: Sequence[float] = DEFAULT_CS,  # noqa: N803 (scikit-learn's name)
    seed: int = 0,
    *,
    val_fraction: float = 0.2,
    standardize: bool = False,
    refit: bool = True,
    max_iter: int = 2000,
) -> tuple[Float[Tensor, " d"], dict[str, Any]]:
    """Weight vector of an L2 logistic-regression probe, C chosen on validation (RAPTOR-style selection).

    A linear probe's normal vector used as a steering direction is compared with CAA and PCA in Im &
    Li (2025), "A unified understanding and evaluation of steering methods". For each ``C`` in ``Cs``
    a scikit-learn ``LogisticRegression`` (L2 penalty, with intercept) is fitted to separate ``pos``
    (label 1) from ``neg`` (label 0) and scored on the validation activations; the ``C`` with the best
    validation accuracy wins (ties: lower validation log-loss, then smaller ``C``). Without
    ``val_pos``/``val_neg``, ``val_fraction`` of the *pairs* are held out (seeded), so both members of
    a pair are always on the same side. With ``refit`` the chosen ``C`` is fitted again on training and
    validation data together.

    Features are not standardised by default: the weights then live directly in the activation
    space the vector is added to. With ``standardize=True`` each feature is z-scored with the training
    statistics (helps with a few huge-magnitude dimensions); the weights are mapped back to activation
    space as ``w / sd``, which is the same decision rule. The unit weight vector is sign-aligned with
    `mean_diff` and scaled like the PCA directions (module docstring).

    Args:
        pos: Positive training activations, ``(n, d_model)``, paired with ``neg`` by row.
        neg: Negative training activations, ``(n, d_model)``.
        val_pos: Optional positive validation activations, ``(m, d_model)``.
        val_neg: Optional negative validation activations, ``(m, d_model)``; give both or neither.
        Cs: Inverse regularisation strengths to try.
        seed: Seed for the held-out split and the solver.
        val_fraction: Fraction of pairs held out when no validation set is given.
        standardize: z-score features before fitting (see above).
        refit: Refit the chosen ``C`` on train + validation.
        max_iter: Solver iterations.

    Returns:
        ``(direction, info)``: the float32 direction ``(d_model,)`` and a dict with ``C`` (chosen),
        ``val_accuracy`` and ``val_log_loss`` (``{C: value}``), ``train_accuracy`` (of the chosen
        fit before refitting), ``n_train``, ``n_val`` (pairs) and ``standardize``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> neg = torch.randn(40, 8, generator=g)
        >>> pos = neg + torch.tensor([3.0] + [0.0] * 7)
        >>> v, info = probe_direction(pos, neg)
        >>> bool(v[0] > 0.9 * v.norm()), info["C"] in DEFAULT_CS
        (True, True)
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    pos, neg = _check_pair(pos, neg, paired=True, min_pairs=2)
    md = _mean_diff64(pos, neg)
    if (val_pos is None) != (val_neg is None):
        raise SteerlabError("give both val_pos and val_neg, or neither (then pairs are held out from pos/neg)")
    if not Cs or any(not (isinstance(c, int | float) and c > 0 and math.isfinite(c)) for c in Cs):
        raise SteerlabError(f"Cs must be a non-empty sequence of positive finite numbers, got {Cs!r}")
    if val_pos is None:
        if not 0 < val_fraction < 1:
            raise SteerlabError(f"val_fraction must be in (0, 1), got {val_fraction}")
        train_idx, val_idx = _split_pairs(pos.shape[0], val_fraction, seed)
        tr_pos, tr_neg, va_pos, va_neg = pos[train_idx], neg[train_idx], pos[val_idx], neg[val_idx]
    else:
        va_pos, va_neg = _check_pair(val_pos, val_neg, paired=False)
        if va_pos.shape[1] != pos.shape[1]:
            raise SteerlabError(
                f"validation activations have width {va_pos.shape[1]} but training ones {pos.shape[1]}: "
                "both must come from the same site of the same model"
            )
        tr_pos, tr_neg = pos, neg

    x_tr, y_tr = _xy(tr_pos, tr_neg)
    x_va, y_va = _xy(va_pos, va_neg)

    def fit(x: np.ndarray, y: np.ndarray, c: float) -> tuple[Any, np.ndarray, np.ndarray]:
        mu = x.mean(axis=0) if standardize else np.zeros(x.shape[1])
        sd = x.std(axis=0) if standardize else np.ones(x.shape[1])
        sd = np.where(sd > 0, sd, 1.0)
        clf = LogisticRegression(C=float(c), max_iter=max_iter, random_state=seed)
        clf.fit((x - mu) / sd, y)
        return clf, mu, sd

    accs: dict[float, float] = {}
    losses: dict[float, float] = {}
    train_accs: dict[float, float] = {}
    for c in Cs:
        clf, mu, sd = fit(x_tr, y_tr, c)
        z_va = (x_va - mu) / sd
        accs[float(c)] = float(clf.score(z_va, y_va))
        losses[float(c)] = float(log_loss(y_va, clf.predict_proba(z_va)[:, 1], labels=[0, 1]))
        train_accs[float(c)] = float(clf.score((x_tr - mu) / sd, y_tr))
    best = min(accs, key=lambda c: (-accs[c], losses[c], c))
    logger.debug("probe C=%g chosen; validation accuracy per C: %s", best, accs)

    if refit:
        x_all, y_all = np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])
        clf, _, sd = fit(x_all, y_all, best)
    else:
        clf, _, sd = fit(x_tr, y_tr, best)
    weights = torch.from_numpy(clf.coef_[0] / sd).to(torch.float64)
    if float(weights.norm()) == 0.0:
        raise SteerlabError(f"the probe with C={best:g} has all-zero weights; try larger values in Cs or more pairs")
    info = {
        "C": best,
        "val_accuracy": accs,
        "val_log_loss": losses,
        "train_accuracy": train_accs[best],
        "n_train": int(tr_pos.shape[0]),
        "n_val": int(va_pos.shape[0]),
        "standardize": standardize,
    }
    return _align_and_scale(weights, md, "probe"), info


# ----------------------------------------------------------------------------------------------
# layer scores (LayerNavigator)


def fisher_scores(pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"]) -> dict[str, float]:
    """Discriminability and consistency of one layer's contrast (LayerNavigator-style, Sun et al. 2025).

    With ``u`` the unit mean-difference direction and ``p = pos @ u``, ``q = neg @ u``:

    - ``discriminability`` = ``(mean(p) - mean(q))**2 / (var(p) + var(q))``, the Fisher ratio along
      ``u`` (sample variances, ``ddof=1``; ``inf`` if both variances are zero).
    - ``consistency`` = mean cosine similarity between each pair difference ``pos_i - neg_i`` and
      the mean difference (in ``[-1, 1]``; pairs whose difference is zero count as 0).
    - ``score`` = ``discriminability / (1 + discriminability) + consistency``: the Fisher ratio is
      squashed into ``[0, 1)`` so that one layer's score needs no other layers, and the two parts are
      added with equal weight (range ``[-1, 2)``). Rank layers by ``score``; higher is more steerable.

    Args:
        pos: Positive activations at one layer, ``(n, d_model)``, ``n >= 2``, paired with ``neg``.
        neg: Negative activations at the same layer, ``(n, d_model)``.

    Returns:
        ``{"discriminability": ..., "consistency": ..., "score": ...}`` as floats.

    Example:
        >>> neg = torch.tensor([[0.0, 1.0], [0.0, -1.0], [0.5, 0.0]])
        >>> s = fisher_scores(neg + torch.tensor([4.0, 0.0]), neg)
        >>> round(s["consistency"], 6), s["discriminability"] > 10
        (1.0, True)
    """
    pos, neg = _check_pair(pos, neg, paired=True, min_pairs=2)
    md = _mean_diff64(pos, neg)
    unit = md / md.norm()
    p, q = pos @ unit, neg @ unit
    spread = float(p.var() + q.var())
    gap = float(p.mean() - q.mean()) ** 2
    disc = math.inf if spread == 0.0 else gap / spread
    diffs = pos - neg
    norms = diffs.norm(dim=1)
    cos = torch.where(norms > 0, (diffs @ unit) / norms.clamp_min(1e-300), torch.zeros_like(norms))
    consistency = float(cos.mean())
    squashed = 1.0 if math.isinf(disc) else disc / (1.0 + disc)
    return {"discriminability": disc, "consistency": consistency, "score": squashed + consistency}
