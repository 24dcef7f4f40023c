"""The PAS pipeline (Cui & Chen 2025, arXiv 2509.22739): from a labelled MCQ dataset to per-seed
test accuracies, steered and unsteered.

Per task, everything expensive runs once (`prepare`): the items are cut into blocks of similar
length, each block's prompt (minus its last token) is run once and its key/value cache kept
(`steerlab.sweeps.ChoiceTask`), and on top of it, one token at a time: the unsteered letter logits
(the model's predictions), the last-token activations (PASf), and the answer-letter activations of
the static CAA baseline. The question + option texts of iPAS are read with
`steerlab.activations.collect_pairs`. After that, a seed costs only one-token forward passes:

1. split the blocks 60/20/20 (the same blocks for every seed, shuffled differently; see below);
2. build each variant's vector from the training items (`steerlab.methods.pas`);
3. choose layer and strength by validation accuracy over the grid (each cell: one token per item,
   reusing the cached prompt);
4. measure test accuracy once, steered and unsteered.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from steerlab.activations import collect_pairs
from steerlab.backends.base import Backend
from steerlab.data import split
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
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
from steerlab.sites import LAST_PROMPT, Site
from steerlab.sweeps import layer_scores
from steerlab.tasks import ChoiceTask

logger = logging.getLogger(__name__)

METHODS = (*VARIANTS, "caa")


@dataclass(frozen=True)
class PASConfig:
    """One PAS run's settings.

    Attributes:
        methods: PAS variants to run, plus ``"caa"`` for the static baseline.
        layers: layers of the validation grid.
        strengths: strengths of the grid (strength 0, the unsteered model, is never chosen).
        scale: ``"relative"``: a strength ``f`` adds a vector of norm ``f`` times the mean norm of the
            site's last-token activations on the training prompts; ``"raw"``: the paper's unnormalised
            vector times the strength.
        kind: site kind the vector is written at (resid_post, attn_out, mlp_out, mlp_in, resid_pre).
        read: ``"same"`` site, or ``"resid_prev"`` (the residual stream entering the block).
        auto_layer: also choose the layer with `layer_scores` and report it beside the grid's choice.
    """

    methods: tuple[str, ...] = METHODS
    layers: tuple[int, ...] = (6, 12, 18, 24)
    strengths: tuple[float, ...] = (0.25, 0.5, 1.0)
    scale: Literal["relative", "raw"] = "relative"
    kind: str = "resid_post"
    read: ReadSite = "same"
    auto_layer: bool = True

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise SteerlabError(f"unknown methods {bad or '(none)'}; valid: {', '.join(METHODS)}")
        if self.scale not in ("relative", "raw"):
            raise SteerlabError(f"scale must be 'relative' or 'raw', got {self.scale!r}")
        if not self.layers or not self.strengths or 0 in self.strengths:
            raise SteerlabError("give at least one layer and one non-zero strength (0 is the unsteered baseline)")

    @property
    def write_sites(self) -> list[Site]:
        return [Site(layer, self.kind) for layer in self.layers]

    @property
    def sites(self) -> list[Site]:
        """Every site `prepare` must record for this config: write sites and their read sites."""
        return sorted({*self.write_sites, *(read_site(s, self.read) for s in self.write_sites)}, key=lambda s: s.order)


@dataclass
class CachedMCQ:
    """MCQ items in blocks of similar length, each block's prompt cached (`ChoiceTask`), so that any
    steering of the last prompt token costs one token per item."""

    items: list
    blocks: list[list[int]]  # item indices per block (= per ChoiceTask)
    tasks: list[ChoiceTask]

    @classmethod
    def build(cls, backend: Backend, items: Sequence, block_size: int = 10) -> CachedMCQ:
        """Sort ``items`` by length and cut them into blocks (the remainder joins the last block)."""
        if len(items) == 0:
            raise SteerlabError("no items; pass a non-empty list of MCQ items (question, choices, answer)")
        if len(items) < 3 * block_size:
            raise SteerlabError(f"{len(items)} items make fewer than 3 blocks of {block_size}; lower block_size")
        lengths = [len(backend.tokenizer(it.question + "".join(map(str, it.choices)))["input_ids"]) for it in items]
        items = [items[i] for i in sorted(range(len(items)), key=lambda i: lengths[i])]
        n_blocks = len(items) // block_size
        blocks = [list(range(b * block_size, (b + 1) * block_size)) for b in range(n_blocks)]
        blocks[-1] += list(range(n_blocks * block_size, len(items)))
        tasks = [ChoiceTask.from_mcq(backend, [items[i] for i in ids], batch_size=len(ids)) for ids in blocks]
        return cls(items, blocks, tasks)

    def correct(self, block_ids: Sequence[int] | None = None, edits=()) -> np.ndarray:
        """Per-item correctness (items of ``block_ids`` in order; default all) under ``edits`` at the last
        prompt token."""
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


def run_seed(
    prep: PreparedTask, seed: int, cfg: PASConfig, *, train_size: int | None = None, progress: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One seed: split, vectors, validation grid, one test evaluation per method.

    Returns ``(results, grid, chosen)``: one results row per method and selection (``grid`` and,
    with ``cfg.auto_layer``, ``auto``); the tidy validation grid; and the chosen vectors, ready to add
    at strength 1 (``{(method, selection): {Site: Tensor}}``).
    """
    tr, va, te = split(list(range(len(prep.blocks))), (0.6, 0.2, 0.2), seed)
    if not va or not te:
        raise SteerlabError(f"{len(prep.blocks)} blocks leave an empty validation or test split; use more items")
    train = prep.item_ids(tr)
    if train_size is not None:
        if train_size > len(train):
            raise SteerlabError(f"train_size {train_size} exceeds the {len(train)} training items of seed {seed}")
        train = random.Random(seed).sample(train, train_size)
    base_val, base_test = prep.correct(va).mean(), prep.correct(te).mean()
    grid_rows, results, chosen = [], [], {}
    for method in cfg.methods:
        t0 = time.perf_counter()
        try:
            dirs, scores = _directions(prep, method, train, cfg, seed)
        except ContrastSetError as exc:  # every training item answered right (or wrong): no contrast
            logger.warning("seed %d, %s: %s", seed, method, exc)
            results.append({"method": method, "seed": seed, "selection": "grid", "error": str(exc)})
            continue
        cells = {}
        for site in cfg.write_sites:
            for coeff in cfg.strengths:
                edits = steer({site: dirs[site]}, coeff, positions=LAST_PROMPT)
                cells[(site.layer, coeff)] = prep.correct(va, edits).mean()
                grid_rows.append(
                    {
                        "method": method,
                        "seed": seed,
                        "layer": site.layer,
                        "site": site.kind,
                        "coeff": coeff,
                        "metric": "val_accuracy",
                        "value": cells[(site.layer, coeff)],
                    }
                )
        grid_seconds = time.perf_counter() - t0
        picks = {"grid": max(cells, key=cells.get)}
        if cfg.auto_layer and scores is not None:
            top = int(scores.layer.iloc[0])
            picks["auto"] = (top, max((c for c in cfg.strengths), key=lambda c: cells[(top, c)]))
        for selection, (layer, coeff) in picks.items():
            site = Site(layer, cfg.kind)
            steered = prep.correct(te, steer({site: dirs[site]}, coeff, positions=LAST_PROMPT)).mean()
            cost = len(cells) if selection == "grid" else len(cfg.strengths)
            results.append({
                "method": method, "seed": seed, "selection": selection, "layer": layer, "coeff": coeff,
                "val_accuracy": cells[(layer, coeff)], "base_val": base_val, "base": base_test, "steered": steered,
                "delta": steered - base_test, "n_train": len(train), "n_val": len(prep.item_ids(va)),
                "n_test": len(prep.item_ids(te)), "grid_cells": cost,
                "seconds": grid_seconds * cost / len(cells), "vector_norm": float(dirs[site].norm() * coeff),
            })  # fmt: skip
            chosen[(method, selection)] = {site: dirs[site] * coeff}
    # the unsteered validation accuracy, once per method and layer, so curves over strength start at 0
    grid_rows += [
        {"method": m, "seed": seed, "layer": s.layer, "site": s.kind, "coeff": 0.0, "metric": "val_accuracy",
         "value": base_val} for m in cfg.methods for s in cfg.write_sites
    ]  # fmt: skip
    grid = pd.DataFrame(grid_rows)
    return pd.DataFrame(results), grid, chosen


def _directions(prep: PreparedTask, method: str, train: list[int], cfg: PASConfig, seed: int):
    """Vectors at every write site of the grid (scaled as ``cfg.scale`` says) and the layer scores."""
    dirs, pos_by, neg_by = {}, {}, {}
    idx = torch.as_tensor(train)
    for site in cfg.write_sites:
        rsite = read_site(site, cfg.read)
        pos, neg = method_sets(method, prep, train, rsite)
        v = mean_diff(pos, neg)
        if cfg.scale == "relative":
            norm = float(prep.acts.full[site][idx].norm(dim=-1).mean())
            v = v / v.norm().clamp_min(1e-12) * norm
        dirs[site], pos_by[rsite], neg_by[rsite] = v, pos, neg
    scores = None
    if cfg.auto_layer:
        n = min(len(next(iter(pos_by.values()))), len(next(iter(neg_by.values()))))
        if n >= 2:  # layer_scores pairs rows: use equal-size random subsets of the two sets
            g = torch.Generator().manual_seed(seed)
            pick = lambda x: x[torch.randperm(len(x), generator=g)[:n]]  # noqa: E731
            scores = layer_scores({s: pick(x) for s, x in pos_by.items()}, {s: pick(x) for s, x in neg_by.items()})
    return dirs, scores


def run_pas(
    prep: PreparedTask, cfg: PASConfig, seeds: Sequence[int], *, train_size: int | None = None, progress: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Many seeds of `run_seed`: a tidy per-seed results table, the validation grid, the chosen vectors.

    Example:
        >>> prep = prepare(lm, items, [Site(l) for l in (6, 12, 18, 24)])      # doctest: +SKIP
        >>> results, grid, chosen = run_pas(prep, PASConfig(), seeds=range(5))  # doctest: +SKIP
    """
    if len(seeds) == 0:
        raise SteerlabError("no seeds; pass e.g. seeds=range(5)")
    res, grids, chosen = [], [], {}
    for seed in tqdm(list(seeds), desc="seeds", disable=not progress):
        r, g, c = run_seed(prep, int(seed), cfg, train_size=train_size)
        res.append(r)
        grids.append(g)
        chosen.update({(*k, int(seed)): v for k, v in c.items()})
    results = pd.concat(res, ignore_index=True)
    results["base_train_accuracy"] = prep.accuracy
    return results, pd.concat(grids, ignore_index=True), chosen


def summarize(results: pd.DataFrame, by: Sequence[str] = ("method", "selection")) -> pd.DataFrame:
    """Mean Δacc over seeds with a 95% CI and the one-sided t-test that Δ > 0 (as in the paper)."""
    from steerlab.stats import paired_test

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
    ``results.csv`` (per seed), ``grid.csv`` (validation grid), ``summary.json`` (chosen layer and strength
    per seed, mean Δacc with its CI and p) and ``vector`` (the seed-0 chosen vector, at strength 1).
    ``model`` is a name for `steerlab.load_model` (default: the embedded model) or a loaded backend."""
    import json
    from pathlib import Path

    from steerlab.data import load_mcq_jsonl, sample
    from steerlab.models import load_model
    from steerlab.vectors import Provenance, SteeringVector

    if variant not in VARIANTS:
        raise SteerlabError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    cfg = dataclasses.replace(cfg or PASConfig(), methods=(variant,))
    items = load_mcq_jsonl(path)
    if n_items is not None and len(items) > n_items:
        items = sample(items, n_items, 0)
    backend = model if isinstance(model, Backend) else load_model(model)
    prep = prepare(backend, items, cfg.sites, block_size=block_size, progress=progress)
    results, grid, chosen = run_pas(prep, cfg, range(seeds), progress=progress)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    results.to_csv(folder / "results.csv", index=False)
    grid.to_csv(folder / "grid.csv", index=False)
    ok = results[(results.selection == "grid")].dropna(subset=["delta"])
    summary = {"data": str(path), "model": backend.name, "variant": variant, **prep.stats,
               "chosen": ok[["seed", "layer", "coeff", "val_accuracy"]].to_dict("records"),
               "test": summarize(results).to_dict("records") if not ok.empty else [],
               "errors": results.get("error", pd.Series(dtype=str)).dropna().unique().tolist()}  # fmt: skip
    if (variant, "grid", 0) in chosen:
        prov = Provenance(model=backend.name, d_model=backend.d_model, n_layers=backend.n_layers,
                          method=f"pas_{variant}", backend=backend.kind, dataset=str(path), read_position="last_token",
                          extra={"read_site": cfg.read, "scale": cfg.scale, "seed": 0})  # fmt: skip
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
