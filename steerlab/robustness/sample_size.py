"""How many contrast pairs does a steering vector need? (CAE, Hao et al. 2025, arXiv 2505.03189, finding 2).

The paper reports diminishing returns past about 80 samples. `subset_draws` draws random subsets of each
size from one pool of pair activations; `sample_size_study` scores each subset's vector by its cosine to the
vector of the whole pool (no model needed), and `subset_vectors` hands the same vectors to
`steerlab.sweeps.sweep`, which measures their steering effects (`sample_size_effects` reads them back by
size). `fit_saturation` fits a saturating curve to either and reports the knee: the number of pairs at
which the fit reaches a given fraction (default 0.9) of its asymptote.

Saturating models (``n`` = number of pairs):

| model        | curve                        | knee at fraction ``q`` of the asymptote |
|--------------|------------------------------|-----------------------------------------|
| ``"exp"``    | ``a * (1 - exp(-n / tau))``  | ``tau * ln(1 / (1 - q))``               |
| ``"hyper"``  | ``a * n / (n + k)``          | ``k * q / (1 - q)``                     |

Example:
    >>> df = sample_size_study(acts.pos[site], acts.neg[site], sizes=[1, 4, 16, 64], draws=20)  # doctest: +SKIP
    >>> fit_saturation(df[df.metric == "cosine"], model="exp")                                  # doctest: +SKIP
    {'model': 'exp', 'a': 0.98, 'tau': 9.1, 'knee': 21.0, 'level': 0.9, 'rmse': 0.01, 'n_points': 80}
    >>> vecs = subset_vectors(acts.pos[site], acts.neg[site], [1, 4, 16], site, vec.provenance)  # doctest: +SKIP
    >>> df = sweep(lm, vecs, task, fractions=[0, 0.5])                                          # doctest: +SKIP
    >>> eff = sample_size_effects(cell_effects(df, "p_behaviour"))                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from steerlab.errors import SteerlabError
from steerlab.methods.linear import mean_diff
from steerlab.provenance import Provenance
from steerlab.sites import Site
from steerlab.vectors import SteeringVector

logger = logging.getLogger(__name__)

MODELS: dict[str, Callable[..., np.ndarray]] = {
    "exp": lambda n, a, tau: a * (1.0 - np.exp(-n / tau)),
    "hyper": lambda n, a, k: a * n / (n + k),
}
_SCALE_NAME = {"exp": "tau", "hyper": "k"}


def subset_draws(pool: int, sizes: Sequence[int], *, draws: int = 20, seed: int = 0) -> list[tuple[int, int, Tensor]]:
    """``(n, draw, indices)`` of the random subsets: ``draws`` subsets of ``n`` pairs (without replacement) for
    each ``n`` in ``sizes``, one for ``n == pool`` (there is only one). Seeded: the same arguments give the same
    subsets, so `sample_size_study` and `subset_vectors` describe the same vectors."""
    bad = [n for n in sizes if not isinstance(n, int | np.integer) or not 1 <= n <= pool]
    if bad or not sizes:
        raise SteerlabError(f"sizes must be ints in 1..{pool} (the number of pairs given); got {list(sizes)}")
    if draws < 1:
        raise SteerlabError(f"draws must be at least 1, got {draws}")
    rng = np.random.default_rng(seed)
    return [(int(n), d, torch.as_tensor(rng.choice(pool, size=int(n), replace=False)))
            for n in sizes for d in range(draws if n < pool else 1)]  # fmt: skip


def _paired(pos: Tensor, neg: Tensor) -> int:
    if pos.shape != neg.shape or pos.dim() != 2:
        raise SteerlabError(f"pos and neg must be paired [n_pairs, d_model] tensors, got {tuple(pos.shape)} and "
                            f"{tuple(neg.shape)}")  # fmt: skip
    return pos.shape[0]


def sample_size_study(
    pos: Float[Tensor, "n d"],
    neg: Float[Tensor, "n d"],
    sizes: Sequence[int],
    *,
    draws: int = 20,
    method: Callable[[Tensor, Tensor], Tensor] = mean_diff,
    reference: Tensor | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """How close vectors from random subsets of ``n`` pairs come to the vector of the whole pool (no model call).

    Args:
        pos, neg: paired activations of one site, ``[n_pairs, d_model]`` (e.g. from `collect_pairs`).
        sizes, draws, seed: the subsets (`subset_draws`).
        method: ``(pos, neg) -> direction`` (default: the CAA mean difference).
        reference: the direction the cosine is taken against (default: ``method`` on the whole pool).

    Returns:
        Tidy DataFrame ``n_pairs, draw, metric, value`` with metrics ``cosine`` (to the reference) and ``norm``
        (of the direction). The steering effect of the same vectors comes from `subset_vectors` and a sweep.
    """
    subsets = subset_draws(_paired(pos, neg), sizes, draws=draws, seed=seed)
    ref = method(pos, neg) if reference is None else reference
    ref = ref.double() / ref.double().norm()
    rows = []
    for n, d, idx in subsets:
        v = method(pos[idx], neg[idx]).double()
        rows += [{"n_pairs": n, "draw": d, "metric": "cosine", "value": float(v @ ref / v.norm().clamp_min(1e-30))},
                 {"n_pairs": n, "draw": d, "metric": "norm", "value": float(v.norm())}]  # fmt: skip
    return pd.DataFrame(rows)


def subset_vectors(
    pos: Float[Tensor, "n d"],
    neg: Float[Tensor, "n d"],
    sizes: Sequence[int],
    site: Site,
    provenance: Provenance,
    *,
    draws: int = 20,
    method: Callable[[Tensor, Tensor], Tensor] = mean_diff,
    sign: float = 1.0,
    seed: int = 0,
) -> dict[tuple[str, int], SteeringVector]:
    """The vectors of `sample_size_study`'s subsets as ``{("n=<size>", draw): SteeringVector}``, for a sweep.

    ``provenance`` is the whole pool's vector's (each subset's records its size and draw). ``sign`` orients
    every subset vector as the whole pool's vector was oriented on validation (the sign of the
    answer-token read is a property of the site and the data, not of the subset). A sweep in fractions of the
    typical norm gives every vector the same norm, so only the direction varies; `sample_size_effects` reads
    the sweep back by subset size.
    """
    _paired(pos, neg)
    if sign not in (1.0, -1.0):
        raise SteerlabError(f"sign must be +1 or -1 (the whole pool's orientation), got {sign!r}")
    out = {}
    for n, d, idx in subset_draws(pos.shape[0], sizes, draws=draws, seed=seed):
        prov = dataclasses.replace(provenance, n_pairs=n, extra={**provenance.extra, "subset": {"n": n, "draw": d,
                                                                                                 "seed": seed}})
        out[(f"n={n}", d)] = SteeringVector({site: sign * method(pos[idx], neg[idx]).float()}, prov)
    return out


def sample_size_effects(effects: pd.DataFrame) -> pd.DataFrame:
    """`steerlab.effects.cell_effects` of a sweep of `subset_vectors` with ``n_pairs`` and ``draw`` columns
    (parsed from the ``"n=<size>"`` method names; other methods are dropped)."""
    if "method" not in effects:
        raise SteerlabError("sample_size_effects reads cell_effects output (a 'method' column)")
    d = effects[effects.method.astype(str).str.match(r"^n=\d+$")].copy()
    if d.empty:
        raise SteerlabError(f"no subset vectors (methods 'n=<size>') among methods {sorted(set(effects.method))}")
    d.insert(0, "n_pairs", d.method.str[2:].astype(int))
    d.insert(1, "draw", d["seed"].astype(int))
    return d.sort_values(["n_pairs", "draw"], ignore_index=True)


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
