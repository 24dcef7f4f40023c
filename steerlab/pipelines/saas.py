"""The SAAS experiment: seeded 7:2:1 splits, every method's vector per split, layer and temperature
chosen on validation, and behaviour probability on test (SAAS, "Instance-Semantic Attribution for
Activation Steering in Large Language Models", anonymous ACL submission).

Per behaviour, `prepare` collects the pooled pairs' activations at the candidate layers once and the
unsteered model's answer logits (for the logit-diff and conf baselines). Per split, `run_split`

1. builds the vectors on the training part: Base (none), CAA, PCA-center, PCA-diff, BiPO (one layer),
   logit-diff, conf and SAAS (plus any `SaasVariant` for ablations);
2. scales every direction to ``fraction`` x the mean residual norm at its layer (the strengths of this
   135M model's raw vectors are too small to act at +-1; see notebook 02), so ``alpha = +-1`` means
   ``+-fraction |resid|`` for every method and methods differ only in direction;
3. evaluates each (method, layer, t) at ``alpha = -1, +1`` on validation, picks per method the cell
   with the largest ``p(+1) - p(-1)``, and evaluates that cell (and Base) on the test part.

Temperatures are given relative to the spread of the scores: ``t = tau * std(s)`` over the eligible
training instances (SAAS) or all training instances (logit-diff), so one grid fits any agent's scale.
Output rows are tidy: ``behaviour, split, method, layer, tau, coeff, stage, example_id, p_behaviour``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from steerlab.activations import PairActivations, collect_pairs
from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.methods import linear
from steerlab.methods import saas as S
from steerlab.sites import LAST_PROMPT, Site
from steerlab.tasks import ChoiceTask

logger = logging.getLogger(__name__)

BASELINES = ("caa", "pca_center", "pca_diff", "bipo", "logit_diff", "conf")


@dataclass(frozen=True)
class SaasConfig:
    """Settings of one SAAS comparison (defaults: the budget of notebook 07)."""

    layers: tuple[int, ...] = (10, 14, 18)  # candidate layers, chosen on validation per method
    taus: tuple[float, ...] = (0.3, 1.0, 3.0)  # SAAS temperatures, in units of std(s)
    logit_taus: tuple[float, ...] = (1.0,)  # logit-diff temperatures, in units of std(logit diff)
    fraction: float = 0.5  # |v| = fraction x mean residual norm at the layer
    n_splits: int = 5
    ratios: tuple[int, int, int] = (7, 2, 1)
    baselines: tuple[str, ...] = BASELINES
    bipo_layer: int = 12
    bipo_pairs: int = 8
    bipo_epochs: int = 1
    shrinkage: float | str = "ledoit-wolf"
    seed: int = 0
    batch_size: int = 32


@dataclass(frozen=True)
class Cell:
    """One candidate direction of a split: a method's vector at a layer and temperature.

    ``tau`` is ``None`` for methods without a temperature (CAA, PCA, BiPO, conf) and ``inf`` for
    uniform weights (a `SaasVariant` without scores). A NaN ``tau``, as the tidy result rows hold it,
    reads as ``None``, so a row of `chosen_cells` or `effects` names its direction directly:

        >>> c = chosen_cells(rows).iloc[0]                       # doctest: +SKIP
        >>> directions[Cell(c.method, c.layer, c.tau)]           # doctest: +SKIP
    """

    method: str
    layer: int
    tau: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer", int(self.layer))
        tau = None if self.tau is None or math.isnan(float(self.tau)) else float(self.tau)
        object.__setattr__(self, "tau", tau)

    @property
    def site(self) -> Site:
        """The residual-stream site the direction is added at."""
        return Site(self.layer)

    @property
    def row_tau(self) -> float:
        """``tau`` as the result rows hold it (NaN for ``None``)."""
        return math.nan if self.tau is None else self.tau


@dataclass(frozen=True)
class SaasVariant:
    """One SAAS weighting: Agent-3 ``scores`` ``(n_pool, K)`` with ``contributions`` ``(K,)``; ``scores=None``
    means uniform weights; ``eligibility=False`` skips the eligibility filter."""

    name: str
    scores: np.ndarray | None
    contributions: np.ndarray | None = None
    eligibility: bool = True
    taus: tuple[float, ...] | None = None  # temperatures for this variant (default: the config's)

    def instance_scores(self, idx: np.ndarray) -> np.ndarray | None:
        if self.scores is None:
            return None
        c = np.ones(self.scores.shape[1]) if self.contributions is None else self.contributions
        return S.aggregate_scores(self.scores[idx], c)


@dataclass
class Prepared:
    """A behaviour's pooled pairs, their activations at the candidate layers, and unsteered answer logits."""

    behaviour: str
    pairs: list
    acts: PairActivations
    logit_diff: np.ndarray
    p_behaviour: np.ndarray
    extra_test: list = field(default_factory=list)


def split_indices(n: int, n_splits: int = 5, ratios: Sequence[int] = (7, 2, 1), seed: int = 0):
    """``n_splits`` seeded random (train, val, test) index splits of ``range(n)`` in the given ratios."""
    if n < sum(ratios):
        raise SteerlabError(f"{n} pairs cannot be split {':'.join(map(str, ratios))}; give at least {sum(ratios)}")
    n_val = round(n * ratios[1] / sum(ratios))
    n_test = round(n * ratios[2] / sum(ratios))
    out = []
    for k in range(n_splits):
        order = np.random.default_rng(seed + k).permutation(n)
        out.append((np.sort(order[n_val + n_test :]), np.sort(order[:n_val]), np.sort(order[n_val : n_val + n_test])))
    return out


def prepare(backend: Backend, behaviour: str, pairs: Sequence, layers: Sequence[int], *, extra_test: Sequence = (),
            batch_size: int = 32, progress: bool = False) -> Prepared:  # fmt: skip
    """Activations of the pooled pairs at ``layers`` (answer token) and the unsteered logit differences."""
    pairs = list(pairs)
    acts = collect_pairs(backend, pairs, [Site(layer) for layer in layers], batch_size=batch_size, progress=progress)
    base = ChoiceTask.from_pairs(backend, pairs, batch_size=batch_size).evaluate()
    wide = base.assign(i=np.repeat(np.arange(len(pairs)), 2)).pivot(index="i", columns="metric", values="value")
    return Prepared(behaviour, pairs, acts, wide.logit_diff.to_numpy(), wide.p_behaviour.to_numpy(), list(extra_test))


def _unit_scaled(v: torch.Tensor, norm: float, fraction: float) -> torch.Tensor:
    return (v.double() / v.double().norm() * fraction * norm).float()


def split_directions(backend: Backend, prep: Prepared, train: np.ndarray, cfg: SaasConfig,
                     variants: Sequence[SaasVariant], *, progress: bool = False):  # fmt: skip
    """Directions ``{Cell: Tensor}`` (scaled), eligibility reports ``{(variant, layer): df}`` and the SAAS
    variants' instance weights ``{Cell: array}``."""
    dirs: dict[Cell, torch.Tensor] = {}
    reports: dict[tuple[str, int], pd.DataFrame] = {}
    weights: dict[Cell, np.ndarray] = {}
    for layer in cfg.layers:
        site = Site(layer)
        pos, neg = prep.acts.pos[site][train].double(), prep.acts.neg[site][train].double()
        norm = float(torch.cat([pos, neg]).norm(dim=-1).mean())
        local = pos - neg
        raw: dict[Cell, torch.Tensor] = {}
        if "caa" in cfg.baselines:
            raw[Cell("caa", layer)] = local.mean(0)
        for m in ("pca_center", "pca_diff"):
            if m in cfg.baselines:
                raw[Cell(m, layer)] = getattr(linear, m)(pos, neg).double()
        if "logit_diff" in cfg.baselines:
            ld = prep.logit_diff[train]
            for tau in cfg.logit_taus:
                w = S.logit_diff_weights(ld, tau * ld.std())
                raw[Cell("logit_diff", layer, tau)] = S.weighted_vector(local, w).double()
        if "conf" in cfg.baselines:
            raw[Cell("conf", layer)] = S.weighted_vector(local, S.conf_weights(prep.p_behaviour[train])).double()
        report = S.eligibility(pos, neg, shrinkage=cfg.shrinkage)
        for var in variants:
            reports[(var.name, layer)] = report
            elig = report.eligible.to_numpy() if var.eligibility else np.ones(len(train), bool)
            s = var.instance_scores(train)
            for tau in [math.inf] if s is None else (var.taus or cfg.taus):
                t = math.inf if s is None else tau * max(float(s[elig].std()), 1e-12)
                w = S.saas_weights(np.zeros(len(train)) if s is None else s, elig, t)
                raw[Cell(var.name, layer, tau)] = S.weighted_vector(local, w).double()
                weights[Cell(var.name, layer, tau)] = w.numpy()
        for key, v in raw.items():
            dirs[key] = _unit_scaled(v, norm, cfg.fraction)
    if "bipo" in cfg.baselines:
        from steerlab.methods.bipo import train_bipo

        site = Site(cfg.bipo_layer)
        if site not in prep.acts.pos:
            raise SteerlabError(f"bipo_layer {cfg.bipo_layer} is not among the collected layers {list(cfg.layers)}")
        norm = float(torch.cat([prep.acts.pos[site][train], prep.acts.neg[site][train]]).norm(dim=-1).mean())
        bipo_train = [prep.pairs[i] for i in train[: cfg.bipo_pairs]]
        v, _ = train_bipo(backend, bipo_train, site, epochs=cfg.bipo_epochs, seed=cfg.seed, progress=progress)
        dirs[Cell("bipo", cfg.bipo_layer)] = _unit_scaled(v, norm, cfg.fraction)
    return dirs, reports, weights


def _rows(task: ChoiceTask, direction: torch.Tensor | None, layer: int, coeff: float, ids: Sequence) -> pd.DataFrame:
    edits = () if direction is None else steer({Site(layer): direction}, coeff, positions=LAST_PROMPT)
    df = task.evaluate(edits, reuse_prefix=True)
    df = df[df.metric == "p_behaviour"].reset_index(drop=True)
    return pd.DataFrame({"example_id": list(ids), "p_behaviour": df.value.to_numpy(), "coeff": coeff})


def run_split(backend: Backend, prep: Prepared, split: int, indices, cfg: SaasConfig,
              variants: Sequence[SaasVariant], *, test_grid: Sequence[str] = (), progress: bool = False,
              test_task: ChoiceTask | None = None):  # fmt: skip
    """One split: vectors on train, (layer, tau) per method chosen on validation, chosen cells on test.

    Methods named in ``test_grid`` are evaluated on test at every (layer, tau) too (for the by-layer and
    by-temperature figures). ``test_task``: a prepared task for ``prep.extra_test`` (shared by all splits,
    so its prompts' key/value cache is computed once). Returns ``(rows, eligibility, directions, weights)``,
    the directions and weights keyed by `Cell`.
    """
    train, val, test = indices
    dirs, reports, weights = split_directions(backend, prep, train, cfg, variants, progress=progress)
    tests = [prep.pairs[i] for i in test] if not prep.extra_test else prep.extra_test
    test_ids = list(test) if not prep.extra_test else [f"x{i}" for i in range(len(prep.extra_test))]
    vals = [prep.pairs[i] for i in val]
    test_task = test_task or ChoiceTask.from_pairs(backend, tests, batch_size=cfg.batch_size)
    tasks = {"val": (ChoiceTask.from_pairs(backend, vals, batch_size=cfg.batch_size), list(val)),
             "test": (test_task, test_ids)}  # fmt: skip
    frames = []

    def evaluate(stage: str, key: Cell | None, coeff: float) -> None:
        """Rows of one cell (``None``: the unsteered model) at one strength."""
        task, ids = tasks[stage]
        direction, layer = (None, -1) if key is None else (dirs[key], key.layer)
        method, tau = ("base", math.nan) if key is None else (key.method, key.row_tau)
        rows = _rows(task, direction, layer, coeff, ids)
        frames.append(rows.assign(method=method, layer=layer, tau=tau, stage=stage))

    for stage in ("val", "test"):
        evaluate(stage, None, 0.0)
    for key in tqdm(dirs, desc=f"split {split} val", disable=not progress):
        for coeff in (-1.0, 1.0):
            evaluate("val", key, coeff)
    val_rows = pd.concat(frames, ignore_index=True)
    eff = _effects(val_rows[val_rows.stage == "val"])
    chosen = eff.loc[eff.groupby("method").effect.idxmax()]
    done = [Cell(r.method, r.layer, r.tau) for r in chosen.itertuples()]
    for key in [*done, *(k for k in dirs if k.method in test_grid and k not in done)]:
        for coeff in (-1.0, 1.0):
            evaluate("test", key, coeff)
    rows = pd.concat(frames, ignore_index=True).assign(behaviour=prep.behaviour, split=split)
    rows["chosen"] = _mark_chosen(rows, chosen)
    elig = pd.concat([_elig_row(rep, v, la) for (v, la), rep in reports.items()], ignore_index=True)
    return rows, elig.assign(behaviour=prep.behaviour, split=split), dirs, weights


def _mark_chosen(rows: pd.DataFrame, chosen: pd.DataFrame) -> np.ndarray:
    tau = rows.tau.fillna(-1.0)
    ok = rows.method.eq("base").to_numpy().copy()
    for _, r in chosen.iterrows():
        ok |= (
            rows.method.eq(r.method) & rows.layer.eq(r.layer) & tau.eq(-1.0 if math.isnan(r.tau) else r.tau)
        ).to_numpy()
    return ok


def _elig_row(report: pd.DataFrame, variant: str, layer: int) -> pd.DataFrame:
    return pd.DataFrame([{"variant": variant, "layer": layer, **S.eligibility_summary(report),
                          "shrinkage": report.attrs["shrinkage"]}])  # fmt: skip


def _effects(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean p(+1) - p(-1) per (method, layer, tau), from per-example rows."""
    d = rows[rows.method != "base"].assign(tau=rows.tau.fillna(-1.0))
    means = d.groupby(["method", "layer", "tau", "coeff"]).p_behaviour.mean().unstack("coeff")
    out = (means[1.0] - means[-1.0]).rename("effect").reset_index()
    out["tau"] = out.tau.replace(-1.0, math.nan)
    return out


def effects(rows: pd.DataFrame, stage: str = "test") -> pd.DataFrame:
    """Per (behaviour, split, method, layer, tau): mean p at -1 and +1 and the effect, on ``stage``."""
    d = rows[(rows.stage == stage) & (rows.method != "base")].assign(tau=rows.tau.fillna(-1.0))
    keys = ["behaviour", "split", "method", "layer", "tau"]
    w = d.groupby([*keys, "coeff"]).p_behaviour.mean().unstack("coeff").rename(columns={-1.0: "p_minus", 1.0: "p_plus"})
    w = w.reset_index()
    w["effect"] = w.p_plus - w.p_minus
    w["tau"] = w.tau.replace(-1.0, math.nan)
    return w


def run_behaviour(backend: Backend, prep: Prepared, cfg: SaasConfig, variants: Sequence[SaasVariant], *,
                  test_grid: Sequence[str] = (), progress: bool = False):  # fmt: skip
    """All splits of one behaviour: ``(rows, eligibility, directions, weights, splits)``, the last three per split
    (directions and weights keyed by `Cell`)."""
    splits = split_indices(len(prep.pairs), cfg.n_splits, cfg.ratios, cfg.seed)
    shared = ChoiceTask.from_pairs(backend, prep.extra_test, batch_size=cfg.batch_size) if prep.extra_test else None
    out = [run_split(backend, prep, k, idx, cfg, variants, test_grid=test_grid, progress=progress, test_task=shared)
           for k, idx in enumerate(splits)]  # fmt: skip
    rows = pd.concat([o[0] for o in out], ignore_index=True)
    elig = pd.concat([o[1] for o in out], ignore_index=True)
    return rows, elig, [o[2] for o in out], [o[3] for o in out], splits


def test_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Table 1 per split: ``behaviour, split, method, p_minus, p_plus, effect`` at each method's chosen cell
    on test; the unsteered model is method ``base`` (``p_minus = p_plus``)."""
    d = rows[(rows.stage == "test") & rows.chosen]
    base = d[d.method == "base"].groupby(["behaviour", "split"]).p_behaviour.mean().rename("p").reset_index()
    base = base.assign(method="base", p_minus=base.p, p_plus=base.p).drop(columns="p")
    e = d[d.method != "base"].groupby(["behaviour", "split", "method", "coeff"]).p_behaviour.mean().unstack("coeff")
    e = e.rename(columns={-1.0: "p_minus", 1.0: "p_plus"}).reset_index()
    out = pd.concat([base, e], ignore_index=True)
    out["effect"] = out.p_plus - out.p_minus
    return out[["behaviour", "split", "method", "p_minus", "p_plus", "effect"]]


def chosen_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """The (layer, tau) chosen on validation for each behaviour, split and method."""
    d = rows[(rows.stage == "test") & rows.chosen & (rows.method != "base")]
    return d.groupby(["behaviour", "split", "method"])[["layer", "tau"]].first().reset_index()
