"""How many contrast pairs does a steering vector need? (CAE, Hao et al. 2025, arXiv 2505.03189, finding 2).

The paper reports diminishing returns past about 80 samples. `sample_size_study` draws many random
subsets of each size from one pool of pair activations, builds a vector from each, and scores it:
by its cosine to the vector of the whole pool (no model needed) and, optionally, by a steering effect
measured with the model (any ``evaluate(direction) -> {metric: value}`` callable). `fit_saturation`
fits a saturating curve to any of those metrics and reports the knee: the number of pairs at which
the fit reaches a given fraction (default 0.9) of its asymptote.

Saturating models (``n`` = number of pairs):

| model        | curve                        | knee at fraction ``q`` of the asymptote |
|--------------|------------------------------|-----------------------------------------|
| ``"exp"``    | ``a * (1 - exp(-n / tau))``  | ``tau * ln(1 / (1 - q))``               |
| ``"hyper"``  | ``a * n / (n + k)``          | ``k * q / (1 - q)``                     |

Example:
    >>> df = sample_size_study(acts.pos[site], acts.neg[site], sizes=[1, 4, 16, 64], draws=20)  # doctest: +SKIP
    >>> fit_saturation(df[df.metric == "cosine"], model="exp")                                  # doctest: +SKIP
    {'model': 'exp', 'a': 0.98, 'tau': 9.1, 'knee': 21.0, 'level': 0.9, 'rmse': 0.01, 'n_points': 80}
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.errors import SteerlabError
from steerlab.methods.linear import mean_diff

logger = logging.getLogger(__name__)

MODELS: dict[str, Callable[..., np.ndarray]] = {
    "exp": lambda n, a, tau: a * (1.0 - np.exp(-n / tau)),
    "hyper": lambda n, a, k: a * n / (n + k),
}
_SCALE_NAME = {"exp": "tau", "hyper": "k"}


def sample_size_study(
    pos: Float[Tensor, "n d"],
    neg: Float[Tensor, "n d"],
    sizes: Sequence[int],
    *,
    draws: int = 20,
    method: Callable[[Tensor, Tensor], Tensor] = mean_diff,
    evaluate: Callable[[Tensor], Mapping[str, float]] | None = None,
    reference: Tensor | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Score vectors built from random subsets of ``n`` pairs, ``draws`` times for each ``n`` in ``sizes``.

    Args:
        pos, neg: paired activations of one site, ``[n_pairs, d_model]`` (e.g. from `collect_pairs`).
        sizes: subset sizes; each at most the pool size. The full pool size gives one distinct subset.
        draws: random subsets per size (without replacement within a subset).
        method: ``(pos, neg) -> direction`` (default: the CAA mean difference).
        evaluate: optional ``direction -> {metric: value}``, e.g. a steering effect on held-out items.
        reference: the direction the cosine is taken against (default: ``method`` on the whole pool).
        seed: seeds the subset draws.

    Returns:
        Tidy DataFrame ``n_pairs, draw, metric, value`` with metrics ``cosine`` (to the reference),
        ``norm`` (of the direction) and those returned by ``evaluate``.
    """
    if pos.shape != neg.shape or pos.dim() != 2:
        raise SteerlabError(f"pos and neg must be paired [n_pairs, d_model] tensors, got {tuple(pos.shape)} and "
                            f"{tuple(neg.shape)}")  # fmt: skip
    pool = pos.shape[0]
    bad = [n for n in sizes if not isinstance(n, int | np.integer) or not 1 <= n <= pool]
    if bad or not sizes:
        raise SteerlabError(f"sizes must be ints in 1..{pool} (the number of pairs given); got {list(sizes)}")
    if draws < 1:
        raise SteerlabError(f"draws must be at least 1, got {draws}")
    ref = method(pos, neg) if reference is None else reference
    ref = ref.double() / ref.double().norm()
    rng = np.random.default_rng(seed)
    jobs = [(int(n), d) for n in sizes for d in range(draws if n < pool else 1)]
    rows = []
    for n, d in tqdm(jobs, desc="sample size", disable=not progress):
        idx = torch.as_tensor(rng.choice(pool, size=n, replace=False))
        v = method(pos[idx], neg[idx])
        cos = float(v.double() @ ref / v.double().norm().clamp_min(1e-30))
        values = {"cosine": cos, "norm": float(v.norm())}
        if evaluate is not None:
            values.update({k: float(x) for k, x in evaluate(v).items()})
        rows += [{"n_pairs": n, "draw": d, "metric": k, "value": x} for k, x in values.items()]
    return pd.DataFrame(rows)


def fit_saturation(
    df: pd.DataFrame,
    *,
    model: str = "exp",
    x: str = "n_pairs",
    y: str = "value",
    level: float = 0.9,
) -> dict[str, float | str]:
    """Least-squares fit of a saturating curve (see the module table) to ``df[y]`` against ``df[x]``.

    Every row is one observation (fit the draws, not their means, so sizes with more draws weigh more).

    Returns:
        ``{"model", "a", "tau" or "k", "a_se", "tau_se" or "k_se", "knee", "level", "rmse", "n_points"}``;
        ``knee`` is the ``x`` where the fit reaches ``level`` of its asymptote ``a``.

    Example:
        >>> n = np.array([1, 2, 4, 8, 16, 32, 64, 128.0])
        >>> fit = fit_saturation(pd.DataFrame({"n_pairs": n, "value": 0.3 * (1 - np.exp(-n / 20))}))
        >>> round(fit["tau"], 6), round(fit["knee"], 3)
        (20.0, 46.052)
    """
    from scipy.optimize import curve_fit

    if model not in MODELS:
        raise SteerlabError(f"unknown saturation model {model!r}; valid: {', '.join(MODELS)}")
    if not 0 < level < 1:
        raise SteerlabError(f"level must be a fraction in (0, 1), got {level}")
    missing = [c for c in (x, y) if c not in df.columns]
    if missing:
        raise SteerlabError(f"fit_saturation needs columns {missing}; the frame has {list(df.columns)}")
    data = df[[x, y]].dropna().astype(float)
    if data[x].nunique() < 3:
        raise SteerlabError(f"need at least 3 distinct {x} values to fit a two-parameter curve, got "
                            f"{data[x].nunique()}")  # fmt: skip
    n, v = data[x].to_numpy(), data[y].to_numpy()
    means = data.groupby(x)[y].mean()
    a0 = float(means.iloc[-1]) if abs(means.iloc[-1]) > 1e-12 else float(np.max(np.abs(v)) or 1.0)
    scale0 = float(np.median(n))
    params, cov = curve_fit(MODELS[model], n, v, p0=[a0, scale0], maxfev=20000)
    a, scale = (float(p) for p in params)
    se = np.sqrt(np.clip(np.diag(cov), 0, None)) if np.all(np.isfinite(cov)) else np.array([np.nan, np.nan])
    knee = scale * (math.log(1 / (1 - level)) if model == "exp" else level / (1 - level))
    rmse = float(np.sqrt(np.mean((MODELS[model](n, a, scale) - v) ** 2)))
    name = _SCALE_NAME[model]
    if scale <= 0:
        logger.warning("fit_saturation: %s = %.3g <= 0, so the curve does not saturate; the knee is meaningless", name,
                       scale)  # fmt: skip
    return {"model": model, "a": a, name: scale, "a_se": float(se[0]), f"{name}_se": float(se[1]), "knee": knee,
            "level": level, "rmse": rmse, "n_points": len(v)}  # fmt: skip


def saturation_curve(fit: Mapping[str, float | str], n: np.ndarray) -> np.ndarray:
    """Evaluate a `fit_saturation` result at ``n`` (for plotting)."""
    model = str(fit["model"])
    return MODELS[model](np.asarray(n, dtype=float), float(fit["a"]), float(fit[_SCALE_NAME[model]]))
