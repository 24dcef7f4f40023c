"""The SAAS experiment's data and vectors: label-balanced splits, training activations, every method's vector
(SAAS, "Instance-Semantic Attribution for Activation Steering in Large Language Models", anonymous ACL
submission, Table 1).

Per behaviour:

1. `split_pairs`: disjoint train / validation / test parts, each label-balanced (as many items whose
   behaviour-matching answer is "Yes" as "No", or "(A)" as "(B)"), so a model that always gives one answer
   scores exactly 0.5 and a push towards one answer token cannot pass for steering;
2. `prepare`: the training pairs' activations at the answer token at every candidate layer (SAAS's local
   vectors ``v_i = a(q_i || y+) - a(q_i || y-)``) and, for the weighted heuristics, the unsteered model's
   answer logits;
3. `build_vectors`: one raw `SteeringVector` per method (directions at every candidate layer): CAA,
   PCA-center, PCA-diff, logit-diff, conf and the SAAS weightings (`SaasVariant`: agent scores, eligibility
   on or off, one vector per temperature). A strength is applied later as a fraction of the site's typical
   token norm (`steerlab.scale`), so methods differ only in direction.

`steerlab.pipelines.saas_compare` then orients, chooses and tests them through `steerlab.sweeps.sweep`.

Vector names: the method, and for methods with a temperature ``@tau`` in units of the spread of the
scores (``t = tau x std(s)`` over the eligible training instances; ``inf``: uniform weights), e.g.
``"caa"``, ``"logit_diff@1"``, ``"saas@0.3"``, ``"uniform@inf"``; `family` strips the temperature.

Example:
    >>> train, val, test = split_pairs(load_persona("openness"), 128, 40, 100)           # doctest: +SKIP
    >>> data = prepare(lm, train, [12, 16])                                              # doctest: +SKIP
    >>> built = build_vectors(lm, data, SaasConfig(layers=(12, 16)), [SaasVariant("saas", scores, c)])  # doctest: +SKIP
    >>> sorted(built.vectors)                                                            # doctest: +SKIP
    ['caa', 'conf', 'logit_diff@1', 'pca_center', 'pca_diff', 'saas@0.3', 'saas@1', 'saas@3']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from steerlab.activations import PairActivations, collect_pairs
from steerlab.backends.base import Backend
from steerlab.data import Split, balanced_split
from steerlab.errors import SteerlabError
from steerlab.methods import linear
from steerlab.methods import saas as S
from steerlab.sites import Site
from steerlab.tasks import ChoiceTask, answer_label
from steerlab.vectors import SteeringVector

logger = logging.getLogger(__name__)

__all__ = ["BASELINES", "Built", "SaasConfig", "SaasVariant", "TrainData", "build_vectors", "family", "prepare",
           "split_pairs", "vector_name"]  # fmt: skip

BASELINES = ("caa", "pca_center", "pca_diff", "logit_diff", "conf")
"""The paper's baselines computed from activations (BiPO trains through the model: `steerlab.methods.bipo`)."""


@dataclass(frozen=True)
class SaasConfig:
    """Settings of one SAAS comparison (defaults: notebook 07's budget on SmolLM2-135M)."""

    layers: tuple[int, ...] = (12, 16)  # candidate layers; each method's is chosen on validation
    baselines: tuple[str, ...] = BASELINES  # which of BASELINES to build
    taus: tuple[float, ...] = (0.3, 1.0, 3.0)  # SAAS temperatures, in units of std(s); chosen on validation
    logit_tau: float = 1.0  # logit-diff temperature, in units of std(logit diff) over the training pairs
    fraction: float = 0.5  # |strength| as a fraction of the typical token norm: orientation at +-f, test at +f
    controls: int = 8  # norm-matched random directions at each tested cell (the random band)
    select: str = "labels"  # validation rule: "labels" (largest minimum over answer labels) or "effect"
    shrinkage: float | str = "ledoit-wolf"  # of the Fisher discriminant in the eligibility test
    seed: int = 0  # splits, eligibility folds and random directions
    batch_size: int = 32

    def __post_init__(self) -> None:
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise SteerlabError(f"unknown baselines {unknown}; valid: {', '.join(BASELINES)}")
        if not self.layers:
            raise SteerlabError("give at least one candidate layer, e.g. layers=(12, 16)")
        if not (math.isfinite(self.fraction) and self.fraction > 0):
            raise SteerlabError(f"fraction must be a positive fraction of the typical norm (e.g. 0.5), got "
                                f"{self.fraction}")  # fmt: skip
        if self.select not in ("labels", "effect"):
            raise SteerlabError(f"unknown select {self.select!r}; valid: 'labels', 'effect'")
        if any(not (t > 0) for t in self.taus) or not self.logit_tau > 0:
            raise SteerlabError(f"temperatures must be > 0 (inf for uniform), got taus {self.taus}, logit_tau "
                                f"{self.logit_tau}")  # fmt: skip


@dataclass(frozen=True)
class SaasVariant:
    """One SAAS weighting: Agent-3 ``scores`` ``(n_train, K)`` with ``contributions`` ``(K,)`` (None: all 1);
    ``scores=None`` means uniform weights (``tau = inf``); ``eligibility=False`` skips the eligibility filter;
    ``taus`` overrides the config's temperatures."""

    name: str
    scores: np.ndarray | None
    contributions: np.ndarray | None = None
    eligibility: bool = True
    taus: tuple[float, ...] | None = None

    def instance_scores(self) -> np.ndarray | None:
        """``s_i = sum_k c_k s_i^k`` (None for uniform weights)."""
        if self.scores is None:
            return None
        c = np.ones(self.scores.shape[1]) if self.contributions is None else self.contributions
        return S.aggregate_scores(self.scores, c)


@dataclass
class TrainData:
    """Training pairs, their answer-token activations at the candidate layers and the unsteered answer logits
    (``logit_diff``, ``p_behaviour``: None when no weighted heuristic needs them)."""

    pairs: list
    acts: PairActivations
    logit_diff: np.ndarray | None = None
    p_behaviour: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        """Each pair's behaviour-matching answer ("Yes"/"No", "A"/"B")."""
        return np.array([answer_label(p.positive) for p in self.pairs])


@dataclass
class Built:
    """`build_vectors`' output: raw vectors by name, the eligibility test per layer, and the instance weights."""

    vectors: dict[str, SteeringVector]
    eligibility: pd.DataFrame  # per layer x instance: label, separable, consistent, eligible, cos_mean
    weights: pd.DataFrame  # per weighted vector x layer x instance: name, layer, instance, label, weight


def vector_name(method: str, tau: float | None = None) -> str:
    """``"caa"``, ``"saas@0.3"``, ``"uniform@inf"``: a method and its temperature."""
    return method if tau is None else f"{method}@{tau:g}"


def family(name: str) -> str:
    """The method of a vector name: ``"saas@0.3" -> "saas"``."""
    return name.split("@")[0]


def split_pairs(pairs: Sequence, n_train: int, n_val: int, n_test: int, seed: int = 0) -> Split:
    """Disjoint train / validation / test parts of the given sizes, each label-balanced (`balanced_split`).

    Each part alternates the two answers (every prefix of a part is balanced too), so odd sizes differ by
    one item. Raises `steerlab.data.DataError` when either answer has too few pairs.
    """
    sizes = (n_train, n_val, n_test)
    if any(not isinstance(n, int) or n < 2 for n in sizes):
        raise SteerlabError(f"split sizes must be ints >= 2 (train, val, test), got {sizes}")
    return Split(*balanced_split(list(pairs), list(sizes), seed=seed))


def prepare(backend: Backend, pairs: Sequence, layers: Sequence[int], *, logits: bool = True, batch_size: int = 32,
            progress: bool = False) -> TrainData:  # fmt: skip
    """Answer-token activations of ``pairs`` at ``layers`` and (``logits=True``) the unsteered answer logits."""
    pairs = list(pairs)
    acts = collect_pairs(backend, pairs, [Site(layer) for layer in layers], batch_size=batch_size, progress=progress)
    if not logits:
        return TrainData(pairs, acts)
    base = ChoiceTask.from_pairs(backend, pairs, batch_size=batch_size).evaluate()
    wide = {m: base[base.metric == m].value.to_numpy(copy=True) for m in ("logit_diff", "p_behaviour")}
    return TrainData(pairs, acts, wide["logit_diff"], wide["p_behaviour"])


def _provenance(backend: Backend | None, d_model: int, name: str, data: TrainData, **extra):
    from steerlab.extraction import provenance
    from steerlab.vectors import Provenance

    if backend is None:  # unit tests on activations alone
        return Provenance(model="none", d_model=d_model, method=name, n_pairs=len(data.pairs), extra=extra)
    return provenance(backend, name, data.pairs, dataset=None, read="completion_last", **extra)


def build_vectors(backend: Backend | None, data: TrainData, cfg: SaasConfig,
                  variants: Sequence[SaasVariant] = ()) -> Built:  # fmt: skip
    """Every method's raw vector (a weighted or principal direction of the local vectors) at every layer.

    Args:
        backend: The model (for the vectors' provenance); None in unit tests.
        data: `prepare`'s output for the training pairs.
        cfg: The baselines, temperatures, shrinkage and seed.
        variants: SAAS weightings (the paper's SAAS, and the ablations of Table 2).

    Returns:
        A `Built`: ``vectors`` by `vector_name`, each with a direction at every layer of ``cfg.layers``.
    """
    need = {"logit_diff", "conf"} & set(cfg.baselines)
    if need and data.logit_diff is None:
        raise SteerlabError(f"{sorted(need)} weight instances by the unsteered answer logits; "
                            "call prepare(..., logits=True)")
    dirs: dict[str, dict[Site, torch.Tensor]] = {}
    extra: dict[str, dict] = {}
    elig_rows, weight_rows = [], []
    labels = data.labels
    for layer in cfg.layers:
        site = Site(layer)
        if site not in data.acts.pos:
            raise SteerlabError(f"layer {layer} is not among the prepared layers {[s.layer for s in data.acts.sites]}")
        pos, neg = data.acts.pos[site].double(), data.acts.neg[site].double()
        local = S.local_vectors(pos, neg)
        raw: dict[str, torch.Tensor] = {}
        weights: dict[str, torch.Tensor] = {}
        if "caa" in cfg.baselines:
            raw["caa"] = local.mean(0)
        for m in ("pca_center", "pca_diff"):
            if m in cfg.baselines:
                raw[m] = getattr(linear, m)(pos, neg).double()
        if "logit_diff" in cfg.baselines:
            ld = data.logit_diff
            weights[vector_name("logit_diff", cfg.logit_tau)] = S.logit_diff_weights(ld, cfg.logit_tau * ld.std())
        if "conf" in cfg.baselines:
            weights["conf"] = S.conf_weights(data.p_behaviour)
        report = S.eligibility(pos, neg, shrinkage=cfg.shrinkage, seed=cfg.seed) if variants else None
        if report is not None:
            elig_rows.append(report.assign(layer=layer, label=labels, shrinkage=report.attrs["shrinkage"]))
        for var in variants:
            elig = report.eligible.to_numpy() if var.eligibility else np.ones(len(pos), bool)
            s = var.instance_scores()
            for tau in [math.inf] if s is None else (var.taus or cfg.taus):
                t = math.inf if s is None else tau * max(float(s[elig].std()), 1e-12)
                name = vector_name(var.name, tau)
                weights[name] = S.saas_weights(np.zeros(len(pos)) if s is None else s, elig, t)
                extra[name] = {"tau": tau, "eligibility": var.eligibility, "eligible_share": float(elig.mean())}
        for name, w in weights.items():
            raw[name] = S.weighted_vector(local, w).double()
            weight_rows.append(pd.DataFrame({"name": name, "layer": layer, "instance": np.arange(len(w)),
                                             "label": labels, "weight": w.numpy()}))  # fmt: skip
        for name, v in raw.items():
            dirs.setdefault(name, {})[site] = v.float()
    width = data.acts.pos[Site(cfg.layers[0])].shape[1]
    vectors = {name: SteeringVector(d, _provenance(backend, width, family(name), data, vector=name,
                                                   **extra.get(name, {})))
               for name, d in dirs.items()}  # fmt: skip
    elig = pd.concat(elig_rows, ignore_index=True) if elig_rows else pd.DataFrame()
    weights_df = pd.concat(weight_rows, ignore_index=True) if weight_rows else pd.DataFrame()
    return Built(vectors, elig, weights_df)

