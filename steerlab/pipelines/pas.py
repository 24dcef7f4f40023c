"""The PAS pipeline (Cui & Chen 2025, arXiv 2509.22739): from a labelled MCQ dataset to per-seed
test accuracies, steered and unsteered.

Per task, everything expensive runs once (`prepare`): the items are cut into blocks of similar
length, each block's prompt (minus its last token) is run once and its key/value cache kept
(`steerlab.tasks.ChoiceTask`), and on top of it, one token at a time: the unsteered letter logits
(the model's predictions), the last-token activations (PASf), and the answer-letter activations of
the static CAA baseline. The question + option texts of iPAS are read with
`steerlab.activations.collect_pairs`. After that, a seed costs only one-token forward passes:

1. split the blocks 60/20/20 (the same blocks for every seed, shuffled differently; see below);
2. build each variant's vector from the training items (`steerlab.methods.pas`);
3. choose layer and strength by validation accuracy over the grid: `steerlab.sweeps.sweep` on the
   validation blocks (a `steerlab.tasks.BlockTask`: each cell one token per item, reusing the cached
   prompts), strengths as fractions of the typical token norm and on the paper's raw-vector scale, 0 and
   negative strengths included, the vector at the last prompt token (the authors' code);
4. measure test accuracy once at the chosen cell, steered and unsteered, beside norm-matched random
   directions (the random band), per item (for the per-letter breakdown).

With a run folder every sweep is resumable: a killed run recomputes no finished cell.

Splits are drawn over blocks, not items, so that each block's cached prompt serves every seed.
Blocks are consecutive items after sorting by prompt length (less padding), so a split is a random
set of length strata: unbiased over seeds, though items of one block move together.

Beyond the paper: ``caa`` (mean difference at the answer letter, correct against a random wrong
letter: the dataset's own labels, no predictions) and an ``auto`` layer choice from
`steerlab.sweeps.layer_scores` (training activations only; strength still from validation).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from steerlab.activations import collect_pairs
from steerlab.backends.base import Backend
from steerlab.data import split
from steerlab.effects import cell_effects
from steerlab.errors import SteerlabError
from steerlab.methods.linear import mean_diff
from steerlab.methods.pas import (
    VARIANTS,
    ContrastSetError,
    PASActivations,
    ReadSite,
    contrast_sets,
    ipas_pairs,
    predictions,
    read_site,
)
from steerlab.prompts import LETTERS
from steerlab.sites import LAST_PROMPT, Site
from steerlab.stats import paired_test
from steerlab.sweeps import VECTOR, layer_scores, measure_scale, sweep
from steerlab.tasks import BlockTask, ChoiceTask
from steerlab.vectors import Provenance, SteeringVector

logger = logging.getLogger(__name__)

METHODS = (*VARIANTS, "caa")
DEFAULT_FRACTIONS = (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5)
"""Strengths as fractions of the written site's typical token norm, small to large, both signs (0 is implicit)."""
DEFAULT_COEFFS = (-4.0, -1.0, 1.0, 4.0)
"""Raw strengths: the paper's unnormalised mean difference times the coefficient (1 = the vector as it is)."""


@dataclass(frozen=True)
class PASConfig:
    """One PAS run's settings.

    The grid runs through `steerlab.sweeps.sweep` at the last prompt token (the authors' code adds the
    vector to ``output[:, -1]``), on two strength scales: ``fractions`` of the written site's typical token
    norm (`steerlab.scale`; the protocol's scale) and ``coeffs`` on the paper's raw-vector scale (the mean
    difference added as it is, times the coefficient). Strength 0 (the unsteered model) is always computed
    and never chosen; negative strengths show whether the intrinsic orientation (right minus wrong) holds.

    Attributes:
        methods: PAS variants to run, plus ``"caa"`` for the static baseline.
        layers: layers of the validation grid.
        fractions: strengths as fractions of the site's typical token norm (empty: none).
        coeffs: raw strengths (empty: none).
        kind: site kind the vector is written at (resid_post, attn_out, mlp_out, mlp_in, resid_pre).
        read: ``"same"`` site, or ``"resid_prev"`` (the residual stream entering the block).
        auto_layer: also choose the layer with `layer_scores` and report it beside the grid's choice.
        controls: norm-matched random directions evaluated at each chosen test cell (the random band).
        sides: ``"positive"``: choose among positive strengths only (the paper's direction, right minus
            wrong); ``"both"``: among every nonzero strength.
    """

    methods: tuple[str, ...] = METHODS
    layers: tuple[int, ...] = (6, 12, 18, 24)
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    coeffs: tuple[float, ...] = DEFAULT_COEFFS
    kind: str = "resid_post"
    read: ReadSite = "same"
    auto_layer: bool = True
    controls: int = 8
    sides: Literal["positive", "both"] = "positive"

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise SteerlabError(f"unknown methods {bad or '(none)'}; valid: {', '.join(METHODS)}")
        if not self.layers:
            raise SteerlabError("give at least one layer, e.g. layers=(12,)")
        for name in ("fractions", "coeffs"):
            values = getattr(self, name)
            try:
                values = tuple(float(v) for v in values)
            except (TypeError, ValueError):
                raise SteerlabError(f"{name} must be numbers, got {values!r}") from None
            if not all(np.isfinite(values)):
                raise SteerlabError(f"{name} must be finite numbers, got {values!r}")
            object.__setattr__(self, name, tuple(v for v in dict.fromkeys(values) if v != 0))
        if self.sides not in ("positive", "both"):
            raise SteerlabError(f"sides must be 'positive' or 'both', got {self.sides!r}")
        pick = [v for v in (*self.fractions, *self.coeffs) if v > 0 or self.sides == "both"]
        if not pick:
            raise SteerlabError("no strength to choose: give at least one nonzero strength in fractions or coeffs "
                                "(a positive one with sides='positive'); 0, the unsteered model, is always run")
        if not isinstance(self.controls, int) or isinstance(self.controls, bool) or self.controls < 0:
            raise SteerlabError(f"controls must be an int >= 0, got {self.controls!r}")

    @property
    def units(self) -> list[tuple[str, tuple[float, ...]]]:
        """``[(unit, strengths)]`` for the scales that have strengths: ``"fraction"``, then ``"coeff"``."""
        return [(u, v) for u, v in (("fraction", self.fractions), ("coeff", self.coeffs)) if v]

    @property
    def write_sites(self) -> list[Site]:
        return [Site(layer, self.kind) for layer in self.layers]

    @property
    def sites(self) -> list[Site]:
        """Every site `prepare` must record for this config: write sites and their read sites."""
        return sorted({*self.write_sites, *(read_site(s, self.read) for s in self.write_sites)}, key=lambda s: s.order)


@dataclass
class CachedMCQ:
    """MCQ items in blocks of similar length, each block a `ChoiceTask` whose prompt is cached, so that any
    steering of the last prompt token costs one token per item; `task` gives any subset of blocks as one
    `steerlab.tasks.BlockTask` (the blocks' caches shared)."""

    items: list
    blocks: list[list[int]]  # item indices per block (= per ChoiceTask)
    tasks: list[ChoiceTask]

    @classmethod
    def build(cls, backend: Backend, items: Sequence, block_size: int = 10) -> CachedMCQ:
        """Sort ``items`` by length and cut them into blocks (the remainder joins the last block). An item's
        ``example_id`` is its index in the sorted order."""
        if len(items) == 0:
            raise SteerlabError("no items; pass a non-empty list of MCQ items (question, choices, answer)")
        if len(items) < 3 * block_size:
            raise SteerlabError(f"{len(items)} items make fewer than 3 blocks of {block_size}; lower block_size")
        lengths = [len(backend.tokenizer(it.question + "".join(map(str, it.choices)))["input_ids"]) for it in items]
        items = [items[i] for i in sorted(range(len(items)), key=lambda i: lengths[i])]
        n_blocks = len(items) // block_size
        blocks = [list(range(b * block_size, (b + 1) * block_size)) for b in range(n_blocks)]
        blocks[-1] += list(range(n_blocks * block_size, len(items)))
        tasks = []
        for ids in blocks:
            task = ChoiceTask.from_mcq(backend, [items[i] for i in ids], batch_size=len(ids))
            task.example_ids = list(ids)
            tasks.append(task)
        return cls(items, blocks, tasks)

    def task(self, block_ids: Sequence[int] | None = None) -> BlockTask:
        """Blocks ``block_ids`` (default all) as one task for `steerlab.sweeps.sweep`."""
        return BlockTask(self.tasks, block_ids)

    def correct(self, block_ids: Sequence[int] | None = None, edits=()) -> np.ndarray:
        """Per-item correctness (items of ``block_ids`` in order; default all) under ``edits`` at the last
        prompt token: one evaluation, not a grid (grids go through `steerlab.sweeps.sweep`)."""
        out = []
        for b in range(len(self.blocks)) if block_ids is None else block_ids:
            task = self.tasks[b]
            logits = task.last_logits(edits, reuse_prefix=True)[0].cpu()
            for row, (cands, target) in enumerate(zip(task.candidates, task.targets, strict=True)):
                out.append(int(logits[row, cands].argmax()) == target)
        return np.asarray(out, dtype=float)

    def item_ids(self, block_ids: Sequence[int]) -> list[int]:
        return [i for b in block_ids for i in self.blocks[b]]


@dataclass
class PreparedTask(CachedMCQ):
    """A task's cached items with the model's predictions and activations (see `prepare`)."""

    pred: torch.Tensor = None
    acts: PASActivations = None
    caa_pos: dict[Site, torch.Tensor] = field(default_factory=dict)
    caa_neg: dict[Site, torch.Tensor] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.acts.correct.float().mean())


def prepare(
    backend: Backend,
    items: Sequence,
    sites: Sequence[Site],
    *,
    block_size: int = 10,
    seed: int = 0,
    ipas: bool = True,
    progress: bool = True,
) -> PreparedTask:
    """Run everything PAS needs from the model once for ``items`` (see the module docstring).

    ``sites`` are every site a vector may be read at. ``seed`` picks the CAA baseline's wrong letters.
    ``ipas=False`` skips the question + option texts (only PASf and CAA can then run).
    """
    start = time.perf_counter()
    sites = sorted({backend.site(s) for s in sites}, key=lambda s: s.order)
    cache = CachedMCQ.build(backend, items, block_size)
    items = cache.items
    rng = random.Random(seed)
    logits, full, caa_pos, caa_neg = [], [], [], []
    k_max = max(len(it.choices) for it in items)
    for ids, task in tqdm(list(zip(cache.blocks, cache.tasks, strict=True)), desc="prompts", disable=not progress):
        chunk = [items[i] for i in ids]
        out = task.prefix_forward(0, record=sites)
        last = out.logits[:, -1].float().cpu()
        logits.append(torch.stack([_pad(last[r, c], k_max) for r, c in enumerate(task.candidates)]))
        full.append({s: out.activations[s][:, -1].float().cpu() for s in sites})
        for answers, store in (([it.answer for it in chunk], caa_pos), (_wrong(chunk, rng), caa_neg)):
            letter = torch.tensor([[task.candidates[r][a]] for r, a in enumerate(answers)])
            acts = task.prefix_forward(0, letter, record=sites).activations
            store.append({s: acts[s][:, -1].float().cpu() for s in sites})
    pred, correct = predictions(torch.cat(logits), [it.answer for it in items])
    cat = lambda parts: {s: torch.cat([p[s] for p in parts]) for s in sites}  # noqa: E731
    if ipas:
        pairs = ipas_pairs(items, pred.tolist())
        ip = collect_pairs(backend, pairs, sites, read="completion_last", batch_size=block_size, progress=progress)
        acts = PASActivations(correct, cat(full), ip.pos, ip.neg)
    else:
        acts = PASActivations(correct, cat(full), {}, {})
    seconds = time.perf_counter() - start
    tokens = [len(backend.tokenizer(p)["input_ids"]) for t in cache.tasks for p in t.prompts]
    stats = {"n_items": len(items), "n_blocks": len(cache.blocks), "base_accuracy": float(correct.float().mean()),
             "mean_prompt_tokens": float(np.mean(tokens)), "prepare_seconds": round(seconds, 1),
             "chance": float(np.mean([1 / len(it.choices) for it in items])),
             "top_letter_share": float(pred.bincount().max() / len(pred)),
             "majority_answer_share": float(torch.tensor([it.answer for it in items]).bincount().max() / len(items)),
             }  # fmt: skip
    return PreparedTask(items, cache.blocks, cache.tasks, pred, acts, cat(caa_pos), cat(caa_neg), stats)


def flip_binary(prep: PreparedTask) -> PreparedTask:
    """The same two-option task with every label flipped (e.g. sycophancy scored in the paper's direction),
    from the cached runs: no forward pass. Right and wrong swap, and so do the iPAS texts and CAA letters."""
    if any(len(it.choices) != 2 for it in prep.items):
        raise SteerlabError("flip_binary needs two-option items; this task has items with more options")
    items = [dataclasses.replace(it, answer=1 - it.answer) for it in prep.items]
    tasks = []
    for t in prep.tasks:
        t2 = copy.copy(t)  # shares the cached prompts
        t2.targets = [1 - x for x in t.targets]
        t2.labels = [LETTERS[x] for x in t2.targets]
        tasks.append(t2)
    a = prep.acts
    acts = PASActivations(~a.correct, a.full, a.q_chosen, a.q_correct)
    stats = {**prep.stats, "base_accuracy": float(acts.correct.float().mean()), "flipped": True}
    return PreparedTask(items, prep.blocks, tasks, prep.pred, acts, prep.caa_neg, prep.caa_pos, stats)


def _pad(x: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cat([x, torch.full((k - len(x),), -torch.inf)]) if len(x) < k else x


def _wrong(items: Sequence, rng: random.Random) -> list[int]:
    return [rng.choice([k for k in range(len(it.choices)) if k != it.answer]) for it in items]


def method_sets(method: str, prep: PreparedTask, train: Sequence[int], site: Site) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative training activations of one method at one read site."""
    if method == "caa":
        idx = torch.as_tensor(list(train))
        return prep.caa_pos[site][idx], prep.caa_neg[site][idx]
    return contrast_sets(method, prep.acts.subset(list(train)), site)


class PASRun(NamedTuple):
    """What `run_seed` / `run_pas` return.

    Attributes:
        results: one row per method, seed and selection (``grid``; ``auto`` with ``cfg.auto_layer``): the
            chosen cell (``unit``, ``layer``, ``strength``, applied ``coeff``), validation and test
            accuracies, the test effect with its paired 95% interval over items (``delta``, ``lo``, ``hi``)
            and two-sided paired t-test ``p``, the random band at that cell (``null_lo``, ``null_hi``), ``mde``,
            ``verdict``.
        grid: mean validation accuracy per cell (``unit``, ``layer``, ``strength``, ``coeff``; strength 0 =
            unsteered), ``metric = "val_accuracy"``.
        chosen: the chosen vectors at strength 1 (``{(method, selection[, seed]): {Site: Tensor}}``).
        tests: the test sweeps' per-item rows (`steerlab.sweeps.SWEEP_COLUMNS` + ``label``, ``selection``,
            ``unit``): feed them to `steerlab.effects.label_effects` / `letter_distribution`.
    """

    results: pd.DataFrame
    grid: pd.DataFrame
    chosen: dict
    tests: pd.DataFrame


def _strength_kwargs(unit: str, strengths: Sequence[float], scale) -> dict:
    if unit == "fraction":
        return {"fractions": [0.0, *strengths], "scale": scale}
    return {"coeffs": [0.0, *strengths]}


def _with_strength(df: pd.DataFrame, unit: str) -> pd.DataFrame:
    return df.assign(unit=unit, strength=df["fraction"] if unit == "fraction" else df["coeff"])


def seed_folder(out, seed: int, train_size: int | None = None) -> Path | None:
    """Where `run_seed` keeps a seed's sweeps under a run folder ``out`` (None without one)."""
    if out is None:
        return None
    return Path(out) / (f"seed{seed}" if train_size is None else f"seed{seed}_n{train_size}")


def run_seed(
    prep: PreparedTask,
    seed: int,
    cfg: PASConfig,
    *,
    train_size: int | None = None,
    scale: dict[Site, float] | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    on_cell: Callable[[str], None] | None = None,
) -> PASRun:
    """One seed: split, vectors, validation grid, one test evaluation (with random controls) per method.

    Every grid goes through `steerlab.sweeps.sweep` at the last prompt token, on the validation blocks
    (``out/seed<k>/<method>/val_<unit>``) and, at the chosen cell, on the test blocks (``.../test_<unit>``):
    with ``out`` a killed run resumes without recomputing a finished cell. ``scale`` is the typical token
    norm per write site (`steerlab.sweeps.measure_scale` on all the task's prompts; measured here if None
    and ``cfg.fractions`` is set). ``on_cell`` is passed to `sweep` (tests count recomputation with it).
    """
    tr, va, te = split(list(range(len(prep.blocks))), (0.6, 0.2, 0.2), seed)
    if not va or not te:
        raise SteerlabError(f"{len(prep.blocks)} blocks leave an empty validation or test split; use more items")
    train = prep.item_ids(tr)
    if train_size is not None:
        if train_size > len(train):
            raise SteerlabError(f"train_size {train_size} exceeds the {len(train)} training items of seed {seed}")
        train = random.Random(seed).sample(train, train_size)
    backend = prep.tasks[0].backend
    if scale is None and cfg.fractions:
        scale = measure_scale(backend, prep.task(), cfg.write_sites)
    val_task, test_task = prep.task(va), prep.task(te)
    folder = seed_folder(out, seed, train_size)
    common = {"positions": LAST_PROMPT, "progress": progress, "on_cell": on_cell}
    grids, results, chosen, tests = [], [], {}, []
    for method in cfg.methods:
        t0 = time.perf_counter()
        try:
            vec, scores = _vector(prep, method, train, cfg, seed)
        except ContrastSetError as exc:  # every training item answered right (or wrong): no contrast
            logger.warning("seed %d, %s: %s", seed, method, exc)
            results.append({"method": method, "seed": seed, "selection": "grid", "error": str(exc)})
            continue
        where = None if folder is None else folder / method
        val = pd.concat([_with_strength(sweep(backend, {(method, seed): vec}, val_task, sites=cfg.write_sites,
                                               out=None if where is None else where / f"val_{unit}", **common,
                                               **_strength_kwargs(unit, strengths, scale)), unit)
                         for unit, strengths in cfg.units], ignore_index=True)  # fmt: skip
        cells = (val[val.metric == "accuracy"].groupby(["unit", "layer", "strength"], sort=False)
                 .agg(value=("value", "mean"), coeff=("coeff", "first")).reset_index())  # fmt: skip
        grids.append(cells.assign(method=method, seed=seed, site=cfg.kind, metric="val_accuracy"))
        base_val = float(cells[cells.strength == 0].value.iloc[0])
        order = {u: i for i, (u, _) in enumerate(cfg.units)}
        pool = cells[(cells.strength > 0) | ((cells.strength != 0) & (cfg.sides == "both"))]
        pool = pool.sort_values(["unit", "layer", "strength"], key=lambda c: c.map(order) if c.name == "unit" else c)
        picks = {"grid": pool.loc[pool.value.idxmax()]}
        if cfg.auto_layer and scores is not None:
            top = pool[pool.layer == int(scores.layer.iloc[0])]
            if not top.empty:
                picks["auto"] = top.loc[top.value.idxmax()]
        val_seconds = time.perf_counter() - t0
        evaluated = {}  # grid and auto often pick the same cell: test it once
        for selection, pick in picks.items():
            site, unit, strength = Site(int(pick.layer), cfg.kind), pick.unit, float(pick.strength)
            if (site, unit, strength) not in evaluated:
                evaluated[(site, unit, strength)] = _with_strength(sweep(
                    backend, {(method, seed): vec}, test_task, sites=[site], controls=cfg.controls,
                    out=None if where is None else where / f"test_{unit}", **common,
                    **_strength_kwargs(unit, [strength], scale)), unit)  # fmt: skip
            test = evaluated[(site, unit, strength)]
            tests.append(test.assign(selection=selection))
            e = cell_effects(test, "accuracy").iloc[0]
            acc = test[(test.metric == "accuracy") & (test.direction == VECTOR)].set_index("example_id")
            base = acc[acc.strength == 0].value
            with warnings.catch_warnings():  # no item changed: p is NaN, the row shows it
                warnings.simplefilter("ignore", RuntimeWarning)
                p = paired_test(acc[acc.strength == strength].value.loc[base.index].to_numpy(), base.to_numpy(),
                                alternative="two-sided")["p"]  # fmt: skip
            cost = len(pool) if selection == "grid" else int((pool.layer == pick.layer).sum())
            results.append({
                "method": method, "seed": seed, "selection": selection, "layer": site.layer, "unit": unit,
                "strength": strength, "coeff": float(e.coeff), "val_accuracy": float(pick.value), "base_val": base_val,
                "base": float(e.base), "steered": float(e.steered), "delta": float(e.effect), "lo": float(e.lo),
                "hi": float(e.hi), "p": float(p), "null_lo": float(e.null_lo), "null_hi": float(e.null_hi),
                "mde": float(e.mde), "verdict": e.verdict, "n_train": len(train), "n_val": len(prep.item_ids(va)),
                "n_test": len(prep.item_ids(te)), "grid_cells": cost, "seconds": val_seconds * cost / len(pool),
                "vector_norm": float(vec[site].norm() * abs(e.coeff)),
            })  # fmt: skip
            chosen[(method, selection)] = {site: vec[site] * float(e.coeff)}
    cols = ["method", "seed", "layer", "site", "unit", "strength", "coeff", "metric", "value"]
    grid = pd.concat(grids, ignore_index=True)[cols] if grids else pd.DataFrame(columns=cols)
    return PASRun(pd.DataFrame(results), grid, chosen, pd.concat(tests, ignore_index=True) if tests else pd.DataFrame())


def _vector(prep: PreparedTask, method: str, train: list[int], cfg: PASConfig, seed: int):
    """The method's raw mean-difference vector at every write site of the grid, and the layer scores."""
    dirs, pos_by, neg_by = {}, {}, {}
    for site in cfg.write_sites:
        rsite = read_site(site, cfg.read)
        pos, neg = method_sets(method, prep, train, rsite)
        dirs[site], pos_by[rsite], neg_by[rsite] = mean_diff(pos, neg), pos, neg
    scores = None
    if cfg.auto_layer:
        n = min(len(next(iter(pos_by.values()))), len(next(iter(neg_by.values()))))
        if n >= 2:  # layer_scores pairs rows: use equal-size random subsets of the two sets
            g = torch.Generator().manual_seed(seed)
            pick = lambda x: x[torch.randperm(len(x), generator=g)[:n]]  # noqa: E731
            scores = layer_scores({s: pick(x) for s, x in pos_by.items()}, {s: pick(x) for s, x in neg_by.items()})
    backend = prep.tasks[0].backend
    prov = Provenance(model=backend.name, d_model=backend.d_model, n_layers=backend.n_layers,
                      method="caa" if method == "caa" else f"pas_{method}", backend=backend.kind,
                      read_position="last_token", n_pairs=min(len(pos), len(neg)),
                      extra={"read_site": cfg.read, "seed": seed, "n_train": len(train)})  # fmt: skip
    return SteeringVector(dirs, prov), scores


def run_pas(
    prep: PreparedTask,
    cfg: PASConfig,
    seeds: Sequence[int],
    *,
    train_size: int | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    on_cell: Callable[[str], None] | None = None,
) -> PASRun:
    """Many seeds of `run_seed` (each under ``out/seed<k>``, resumable), concatenated.

    The typical token norms (for ``cfg.fractions``) are measured once, on all the task's prompts (no labels
    are read), and kept in ``out``.

    Example:
        >>> prep = prepare(lm, items, PASConfig().sites)                           # doctest: +SKIP
        >>> run = run_pas(prep, PASConfig(), seeds=range(5), out="runs/pas/arc")   # doctest: +SKIP
        >>> run.results[["method", "seed", "delta", "null_lo", "null_hi", "verdict"]]  # doctest: +SKIP
    """
    if len(seeds) == 0:
        raise SteerlabError("no seeds; pass e.g. seeds=range(5)")
    scale = None
    if cfg.fractions:
        scale = measure_scale(prep.tasks[0].backend, prep.task(), cfg.write_sites, out)
    res, grids, chosen, tests = [], [], {}, []
    for seed in tqdm(list(seeds), desc="seeds", disable=not progress):
        r = run_seed(prep, int(seed), cfg, train_size=train_size, scale=scale, out=out, on_cell=on_cell)
        res.append(r.results)
        grids.append(r.grid)
        tests.append(r.tests)
        chosen.update({(*k, int(seed)): v for k, v in r.chosen.items()})
    results = pd.concat(res, ignore_index=True)
    results["base_train_accuracy"] = prep.accuracy
    return PASRun(results, pd.concat(grids, ignore_index=True), chosen, pd.concat(tests, ignore_index=True))


def summarize(results: pd.DataFrame, by: Sequence[str] = ("method", "selection")) -> pd.DataFrame:
    """Mean Δacc over seeds with a 95% CI and the one-sided t-test that Δ > 0 (as in the paper)."""
    ok = results.dropna(subset=["delta"]) if "delta" in results else results
    if ok.empty:
        raise SteerlabError("no successful runs to summarise (every method failed; see the 'error' column)")
    rows = []
    for key, g in ok.groupby(list(by)):
        with warnings.catch_warnings():  # zero-variance deltas (e.g. all 0) warn; the row shows it
            warnings.simplefilter("ignore", RuntimeWarning)
            r = paired_test(g.steered.to_numpy(), g.base.to_numpy()) if len(g) > 1 else {"delta": g.delta.mean()}
        stats = {k: r.get(k, np.nan) for k in ("delta", "ci_low", "ci_high", "p")}
        rows.append({**dict(zip(by, key, strict=True)), "base": g.base.mean(), "steered": g.steered.mean(),
                     **stats, "n_seeds": len(g)})  # fmt: skip
    return pd.DataFrame(rows)


def run_file(
    path: str,
    out: str,
    *,
    variant: str = "ipasa",
    model: str | Backend | None = None,
    seeds: int = 5,
    n_items: int | None = 300,
    block_size: int = 10,
    cfg: PASConfig | None = None,
    progress: bool = True,
) -> dict:
    """The whole PAS pipeline on an MCQ JSONL file (``question``, ``choices``, ``answer``), written to ``out``:
    ``results.csv`` (per seed), ``grid.csv`` (validation grid), ``tests.csv`` (per-item test rows, for the
    per-letter breakdown), ``summary.json`` (chosen layer and strength per seed, mean Δacc with its CI and p),
    ``vector`` (the seed-0 chosen vector, at strength 1) and ``sweeps/`` (the resumable sweep folders: a
    rerun into the same ``out`` recomputes no finished cell). ``model`` is a name for `steerlab.load_model`
    (default: the embedded model) or a loaded backend."""
    import json

    from steerlab.data import load_mcq_jsonl, sample
    from steerlab.models import load_model

    if variant not in VARIANTS:
        raise SteerlabError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    cfg = dataclasses.replace(cfg or PASConfig(), methods=(variant,))
    items = load_mcq_jsonl(path)
    if n_items is not None and len(items) > n_items:
        items = sample(items, n_items, 0)
    backend = model if isinstance(model, Backend) else load_model(model)
    prep = prepare(backend, items, cfg.sites, block_size=block_size, progress=progress)
    folder = Path(out)
    results, grid, chosen, tests = run_pas(prep, cfg, range(seeds), out=folder / "sweeps", progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    results.to_csv(folder / "results.csv", index=False)
    grid.to_csv(folder / "grid.csv", index=False)
    tests.to_csv(folder / "tests.csv", index=False)
    ok = results[(results.selection == "grid")].dropna(subset=["delta"])
    summary = {"data": str(path), "model": backend.name, "variant": variant, **prep.stats,
               "chosen": ok[["seed", "layer", "unit", "strength", "coeff", "val_accuracy"]].to_dict("records"),
               "test": summarize(results).to_dict("records") if not ok.empty else [],
               "errors": results.get("error", pd.Series(dtype=str)).dropna().unique().tolist()}  # fmt: skip
    if (variant, "grid", 0) in chosen:
        prov = Provenance(model=backend.name, d_model=backend.d_model, n_layers=backend.n_layers,
                          method=f"pas_{variant}", backend=backend.kind, dataset=str(path), read_position="last_token",
                          extra={"read_site": cfg.read, "seed": 0})  # fmt: skip
        SteeringVector(chosen[(variant, "grid", 0)], prov).save(folder / "vector")
        summary["vector"] = str(folder / "vector")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def tidy_tests(results: pd.DataFrame, selection: str = "grid") -> pd.DataFrame:
    """Per-seed test accuracies in the tidy form `steerlab.stats.delta_table` / `pooled_test` read:
    ``coeff`` 0 rows are unsteered (one per task and seed), ``coeff`` 1 rows steered (one per method)."""
    r = results[results.selection == selection].dropna(subset=["delta"])
    keys = [c for c in ("task", "category") if c in r.columns]
    base = r.drop_duplicates([*keys, "seed"]).assign(method="unsteered", coeff=0.0, value=lambda d: d.base)
    steered = r.assign(coeff=1.0, value=r.steered)
    cols = [*keys, "method", "seed", "coeff", "value"]
    return pd.concat([base[cols], steered[cols]], ignore_index=True).assign(metric="accuracy")
