"""The one grid loop: vector x seed x direction x site x strength, evaluated by a `steerlab.tasks.Task`.

`sweep` evaluates a prepared task in every cell and is the only place a steering grid is run:

- **Strengths** are raw coefficients (``coeffs``, e.g. PAS's raw-vector scale) or **fractions** of the
  site's typical token norm (``fractions``; `steerlab.scale`): the added vector ``coeff * v`` has norm
  ``fraction * T``. The zero strength is the unsteered model, computed once per task.
- **Controls**: with ``controls=k``, every vector gets ``k`` seeded random directions of the same norm at
  each site (`steerlab.controls.random_like`), evaluated at the same strengths (all nonzero ones, or those
  in ``controls_at``); their rows have ``direction = "random:i"``.
- **Positions** may be a template kind (`steerlab.sites.AFTER_INSTRUCTION`): the task resolves it for each
  batch of its prompts. When the steered positions lie in the prompt's last tokens and the task can (a
  `ChoiceTask`), the prompt before them runs once and every cell costs those few tokens per item.
- **Resume**: with ``out``, every finished cell is written to its own file (atomically) and a rerun with
  the same folder recomputes nothing. ``sweep.json`` records what the numbers depend on; a rerun with
  another model, task, positions, strength unit, scale, edit builder (by name) or vector is refused.
- **Many workers**: with ``out``, the folder is a `steerlab.claims.CellStore`: several processes (one
  machine, or many sharing a filesystem) may call `sweep` on it at once, each claiming a cell before
  computing it, so every cell (the unsteered one and the random directions included) is computed once; a
  claim without a heartbeat for ``stale_after`` seconds is taken over. Without ``shard`` a worker waits for
  the cells others hold and returns the whole grid, as a single process would. With ``shard=(I, N)`` (array
  jobs) it computes the cells whose key hashes to ``I`` (and waits only for those); if other cells are still
  missing it raises `steerlab.claims.GridIncomplete` (its share is saved), and the worker that finds the
  grid complete returns it. The typical norms of a ``fractions`` sweep are measured once per folder
  (`measure_scale`), so every worker applies the same coefficients. ``runner`` replaces the loop:
  ``runner(store, keys, compute, progress=..., on_cell=...) -> {key: frame}`` with a ``store`` that has
  ``done(keys)`` and ``write(key, frame)``.

Output: a tidy DataFrame with `SWEEP_COLUMNS` (one row per example, cell and metric), plus ``label`` and
``text`` when the task gives them. `sweep_effect`, `layer_scores` and `choose_layer` read it;
`steerlab.effects` computes intervals, random bands and verdicts.

Example:
    >>> task = ChoiceTask.from_pairs(lm, val_pairs)                                    # doctest: +SKIP
    >>> df = sweep(lm, {"caa": vec}, task, fractions=DEFAULT_FRACTIONS, controls=8,    # doctest: +SKIP
    ...            positions=AFTER_INSTRUCTION, out="runs/agreeableness")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.claims import CellStore, GridIncomplete, run_cells, shard_of
from steerlab.controls import random_like
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.sites import ALL, Positions, Site
from steerlab.tasks import Task
from steerlab.vectors import SteeringVector, dataset_hash

logger = logging.getLogger(__name__)

SWEEP_COLUMNS = ["method", "seed", "direction", "layer", "site", "fraction", "coeff", "metric", "value", "example_id"]
"""The columns of a `sweep` frame; ``fraction`` is NaN in a sweep of raw coefficients."""
EXTRA_COLUMNS = ("label", "text")
"""Per-row columns a task may add (an item's answer label, a generated text); kept when present."""
VECTOR = "vector"
NORM_PROMPTS = 64
"""Prompts (the task's first) whose tokens give the typical norm when a sweep measures it: a median over
thousands of tokens, which more prompts would not change."""
FORMAT = 2  # sweep folder layout version (cells keyed by direction and strength unit)

Runner = Callable[..., dict]
EditMaker = Callable[[Site, torch.Tensor, float, Positions], list]


def _add(site: Site, direction: torch.Tensor, coeff: float, positions: Positions) -> list:
    return steer({site: direction}, coeff, positions=positions)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One grid cell: which vector (method, seed), which direction (the vector or random i), where, how strong."""

    method: str
    seed: int
    direction: str
    site: Site | None
    strength: float
    unit: str

    @property
    def key(self) -> str:
        if self.strength == 0.0:
            return "base"
        return f"{self.method}|{self.seed}|{self.direction}|{self.site}|{self.unit}={self.strength:g}"


class MemoryStore:
    """Cells kept in memory (a sweep without ``out``)."""

    def __init__(self) -> None:
        self.frames: dict[str, pd.DataFrame] = {}

    def done(self, keys: Sequence[str]) -> dict[str, pd.DataFrame]:
        return {k: self.frames[k] for k in keys if k in self.frames}

    def write(self, key: str, df: pd.DataFrame) -> None:
        self.frames[key] = df


def run_serial(store, keys: Sequence[str], compute: Callable[[str], pd.DataFrame], *, progress: bool = True,
               on_cell: Callable[[str], None] | None = None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """Compute every cell of ``keys`` not yet in ``store``, one after the other; return all of them."""
    keys = list(dict.fromkeys(keys))
    have = set(store.done(keys))
    if have:
        logger.info("resuming sweep: %d of %d cells already done", len(have), len(keys))
    for key in tqdm([k for k in keys if k not in have], desc="sweep", disable=not progress):
        store.write(key, compute(key))
        if on_cell is not None:
            on_cell(key)
    return store.done(keys)


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # a name of its own: workers may gather at once
    try:
        df.to_csv(tmp, index=False)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def measure_scale(backend: Backend, task: Task, sites: Sequence[Site], out: str | Path | None = None, *,
                  stale_after: float = 600.0) -> dict[Site, float]:  # fmt: skip
    """The typical token norm at each site on the task's first `NORM_PROMPTS` prompts (`steerlab.scale`).

    With ``out`` (a sweep folder) the norms are measured once per folder, in a claimed cell keyed by the
    model, the task and the sites: every worker on the folder then uses the same numbers (norms measured on
    two GPUs, or with other thread counts, differ in their last digits, and so would the coefficients).
    """
    from steerlab.scale import typical_norm

    sites = sorted({backend.site(x) for x in sites}, key=lambda x: x.order)
    prompts = task.norm_prompts()[:NORM_PROMPTS]
    if out is None:
        return typical_norm(backend, prompts, sites)

    def compute(_: str) -> pd.DataFrame:
        norms = typical_norm(backend, prompts, sites)
        return pd.DataFrame({"site": [str(x) for x in sites], "norm": [float(norms[x]) for x in sites]})

    key = f"scale|{backend.name}|{task.fingerprint()}|{','.join(map(str, sites))}"
    frame = run_cells(CellStore(out, stale_after=stale_after), [key], compute, progress=False)[key]
    return {Site.parse(x): float(v) for x, v in zip(frame.site, frame.norm, strict=True)}


def _normalise_vectors(vectors) -> dict[tuple[str, int], SteeringVector]:
    if isinstance(vectors, SteeringVector):
        return {(vectors.provenance.method, 0): vectors}
    out = {}
    for key, vec in vectors.items():
        method, seed = (key, 0) if isinstance(key, str) else key
        out[(str(method), int(seed))] = vec
    if not out:
        raise SteerlabError("no vectors to sweep; pass {'caa': vector} or {('caa', seed): vector, ...}")
    return out


def _strengths(coeffs, fractions) -> tuple[list[float], str]:
    if (coeffs is None) == (fractions is None):
        raise SteerlabError(
            "give exactly one of coeffs (raw strengths, e.g. [-8, 0, 8]) and fractions (of the site's typical token "
            "norm, e.g. steerlab.scale.DEFAULT_FRACTIONS)"
        )
    values, unit = (coeffs, "c") if coeffs is not None else (fractions, "f")
    name = "coeffs" if unit == "c" else "fractions"
    try:
        values = list(dict.fromkeys(float(v) for v in values))
    except (TypeError, ValueError):
        raise SteerlabError(f"{name} must be numbers, got {values!r}") from None
    bad = [v for v in values if not math.isfinite(v)]
    if not values or bad:
        raise SteerlabError(f"{name} must be a non-empty list of finite numbers, got {values!r}")
    return values, unit


def sweep(
    backend: Backend,
    vectors: SteeringVector | Mapping,
    task: Task,
    *,
    coeffs: Sequence[float] | None = None,
    fractions: Sequence[float] | None = None,
    scale: Mapping[Site, float] | None = None,
    sites: Sequence[Site | str | int] | None = None,
    positions: Positions = ALL,
    controls: int = 0,
    controls_at: Sequence[float] | None = None,
    control_seed: int = 0,
    out: str | Path | None = None,
    runner: Runner | None = None,
    shard: tuple[int, int] | None = None,
    stale_after: float = 600.0,
    edit: EditMaker | None = None,
    progress: bool = True,
    on_cell: Callable[[str], None] | None = None,
    group: int = 8,
) -> pd.DataFrame:
    """Evaluate ``task`` for every vector (method, seed) x direction x site x strength.

    Args:
        vectors: a SteeringVector, or a mapping ``{"caa": vec}`` / ``{("caa", seed): vec}``.
        coeffs: raw strengths (``coeff * v`` is added); 0 is the unsteered model.
        fractions: strengths as fractions of each site's typical token norm (give this or ``coeffs``).
        scale: ``{site: typical norm}`` for ``fractions`` (default: `steerlab.scale.typical_norm` on the
            first `NORM_PROMPTS` of ``task.norm_prompts()``).
        sites: restrict to these sites (default: every site of each vector).
        positions: which tokens are steered (a template kind is resolved by the task).
        controls: number of norm-matched random directions per vector (0: none).
        controls_at: the strengths (in the grid's unit) at which the random directions run (default: every
            nonzero strength).
        control_seed: seed of the random directions.
        out: a folder; each finished cell is saved there and a rerun resumes from what was saved. Several
            workers may share it (see the module docstring).
        runner: runs the cells (default: `steerlab.claims.run_cells` with ``out``, `run_serial` without);
            see the module docstring.
        shard: ``(I, N)``: compute only the cells of shard ``I`` of ``N`` (array jobs; needs ``out``).
        stale_after: seconds without a heartbeat after which another worker's claim on a cell is taken over
            (make it much longer than a pause of a healthy worker).
        edit: builds a cell's edits, ``edit(site, direction, coeff, positions) -> list[Edit]`` (default: add
            ``coeff * direction``, `steerlab.interventions.add`), e.g. to clamp an SAE latent or to steer
            through another operation; strength 0 is the unsteered model and is never passed to it.
        on_cell: called with each computed cell's key (tests use it to count recomputation).
        group: up to this many cells of one site (its strengths, then its directions) are evaluated together,
            with the task's ``evaluate_many``: the blocks before the site run once for all of them (a shared
            trunk; `steerlab.backends.base.Backend.forward_many`). Each cell is still stored on its own; 1
            evaluates every cell alone.

    Raises:
        GridIncomplete: with ``shard``, when this worker's cells are done but others are not yet.
    """
    vecs = _normalise_vectors(vectors)
    strengths, unit = _strengths(coeffs, fractions)
    if not isinstance(group, int) or isinstance(group, bool) or group < 1:
        raise SteerlabError(f"group must be a positive int (cells evaluated together; 1: one at a time), got {group!r}")
    if not isinstance(controls, int) or isinstance(controls, bool) or controls < 0:
        raise SteerlabError(f"controls must be an int >= 0 (random directions per cell), got {controls!r}")
    at = set(strengths) - {0.0} if controls_at is None else {float(s) for s in controls_at}
    if not at <= set(strengths):
        raise SteerlabError(f"controls_at {sorted(at - set(strengths))} are not among the strengths {strengths}")
    if shard is not None and (out is None or runner is not None):
        raise SteerlabError("shard= splits the cells of a sweep folder among workers: give out= (a folder all "
                            "shards share) and no runner= (a runner shares the cells out itself)")  # fmt: skip
    if positions.needs_template:
        task.resolve_positions(positions)  # fails early if the task cannot place them (e.g. raw texts)
    chosen = None if sites is None else {backend.site(s) for s in sites}
    every = {(m, s): [site for site in v.sites if chosen is None or site in chosen] for (m, s), v in vecs.items()}
    if not any(every.values()):
        raise SteerlabError("no cells: none of the requested sites is in the vectors; check `sites`")
    directions: dict[tuple[str, int, str], SteeringVector] = {}
    for (m, s), vec in vecs.items():
        directions[(m, s, VECTOR)] = vec
        for i, rnd in enumerate(random_like(vec, controls, control_seed) if controls else []):
            directions[(m, s, f"random:{i}")] = rnd
    folder = Path(out) if out is not None else None
    edit_name = "add" if edit is None else getattr(edit, "__qualname__", type(edit).__name__)
    meta = {"model": backend.name, "task": task.fingerprint(), "positions": repr(positions),
            "unit": {"c": "coeff", "f": "fraction"}[unit], "edit": edit_name, "scale": None,
            "vectors": {f"{m}|{s}|{d}": dataset_hash([v[site].tolist() for site in v.sites])
                        for (m, s, d), v in directions.items()}}  # fmt: skip
    if folder is not None:
        _open_folder(folder, meta)  # a clash fails before anything slow
    if unit == "f":
        if scale is None:
            scale = measure_scale(backend, task, [x for v in every.values() for x in v], folder,
                                  stale_after=stale_after)  # fmt: skip
        scale = {backend.site(k): float(v) for k, v in scale.items()}
        missing = [str(x) for v in every.values() for x in v if x not in scale]
        if missing:
            raise SteerlabError(f"scale has no typical norm for sites {sorted(set(missing))}; measure them with "
                                "steerlab.scale.typical_norm")  # fmt: skip
    cells = [
        Cell(m, s, d, site, strength, unit)
        for (m, s, d) in directions
        for site in every[(m, s)]
        for strength in strengths
        if d == VECTOR or (strength in at and strength != 0.0)
    ]
    reuse = task.can_reuse_prefix and positions.in_tail
    # one site's cells next to each other (they share a trunk), the unsteered cell last: it can then reuse the
    # prefix the steered cells cached
    order = sorted(cells, key=lambda c: (c.strength == 0.0, c.site.order, c.method, c.seed, c.direction != VECTOR,
                                         c.direction, c.strength))  # fmt: skip
    by_key = {c.key: c for c in order}

    def coeff_of(c: Cell) -> float:
        if c.unit == "c" or c.strength == 0.0:
            return c.strength
        from steerlab.scale import strength_from_fraction

        vec = directions[(c.method, c.seed, c.direction)]
        return float(strength_from_fraction(c.strength, scale[c.site], vec[c.site]))

    def edits_of(key: str) -> list:
        c = by_key[key]
        vec = directions[(c.method, c.seed, c.direction)]
        return (edit or _add)(c.site, vec[c.site], coeff_of(c), positions)

    keys = list(by_key)
    if folder is None:
        store = MemoryStore()
    else:
        if scale is not None:  # the norms join the folder's record (a given scale must match the folder's)
            _open_folder(folder, {**meta, "scale": {str(k): scale[k] for k in sorted(scale, key=lambda x: x.order)}})
        store = CellStore(folder, stale_after=stale_after)
    mine = order if shard is None else [c for c in order if shard_of(c.key, shard[1]) == shard[0]]
    compute = GroupedCompute(task, edits_of, _groups(mine, group), store, reuse)
    if folder is None or runner is not None:
        done = (runner or run_serial)(store, keys, compute, progress=progress, on_cell=on_cell)
    else:
        done = run_cells(store, keys, compute, shard=shard, progress=progress, on_cell=on_cell)
    left = [k for k in keys if k not in done]
    if left and (folder is None or runner is not None):
        raise SteerlabError(f"the runner returned {len(keys) - len(left)} of {len(keys)} cells (missing e.g. "
                            f"{left[0]!r}); a runner must return every cell of the keys it is given")  # fmt: skip
    if left:
        raise GridIncomplete(folder, shard, len(keys) - len(left), len(keys))
    frames = []
    for c in cells:
        fraction = c.strength if unit == "f" else math.nan
        frames.append(done[c.key].assign(method=c.method, seed=c.seed, direction=c.direction, layer=c.site.layer,
                                         site=c.site.kind, fraction=fraction, coeff=coeff_of(c)))  # fmt: skip
    result = pd.concat(frames, ignore_index=True)
    extra = [col for col in EXTRA_COLUMNS if col in result]
    if "text" in result:  # an empty text is read back from CSV as NaN
        result["text"] = result["text"].fillna("").astype(str)
    if "label" in result:  # labels "1"/"0" are read back from CSV as 1.0/0.0
        result["label"] = [_label_text(v) for v in result["label"]]
    result = result[SWEEP_COLUMNS + extra]
    if folder is not None:
        _write_atomic(result, folder / "results.csv")
    return result


def _groups(order: Sequence[Cell], size: int) -> dict[str, tuple[str, ...]]:
    """Each steered cell's group: up to ``size`` consecutive cells of ``order`` at one site."""
    groups: dict[str, tuple[str, ...]] = {}
    run: list[str] = []
    for i, c in enumerate(order):
        if c.strength == 0.0:
            continue
        run.append(c.key)
        nxt = order[i + 1] if i + 1 < len(order) else None
        if len(run) == size or nxt is None or nxt.strength == 0.0 or nxt.site != c.site:
            groups.update({k: tuple(run) for k in run})
            run = []
    return groups


class GroupedCompute:
    """A sweep's ``compute(key) -> frame`` for the runner: the first cell asked of a group evaluates the group's
    cells not yet in ``store`` together (`Task.evaluate_many`, sharing the unedited trunk) and keeps the others'
    frames until they are asked for. ``groups`` maps each steered key to its group, so a runner handing cells
    to several workers can give a worker a whole group."""

    def __init__(self, task: Task, edits_of: Callable[[str], list], groups: dict[str, tuple[str, ...]], store,
                 reuse: bool):  # fmt: skip
        self.task, self.edits_of, self.groups, self.store, self.reuse = task, edits_of, groups, store, reuse
        self.ready: dict[str, pd.DataFrame] = {}

    def __call__(self, key: str) -> pd.DataFrame:
        if key in self.ready:
            return self.ready.pop(key)
        if key not in self.groups:  # the unsteered cell
            return self.task.evaluate(reuse_prefix=self.reuse)
        siblings = [k for k in self.groups[key] if k != key]
        have = self.store.done(siblings)  # cells another run (or worker) already stored
        held = getattr(self.store, "claim_path", None)  # cells another worker is computing now
        keys = [key, *(k for k in siblings if k not in have and not (held and held(k).exists()))]
        many = getattr(self.task, "evaluate_many", None)
        sets = [self.edits_of(k) for k in keys]
        if many is None or len(keys) == 1:
            frames = [self.task.evaluate(e, reuse_prefix=self.reuse) for e in sets[:1]]
        else:
            frames = many(sets, reuse_prefix=self.reuse)
        self.ready.update(zip(keys[1:], frames[1:], strict=False))
        return frames[0]


def _label_text(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else str(int(value)) if value.is_integer() else str(value)
    return str(value)


def _open_folder(folder: Path, meta: dict) -> None:
    """Record what a sweep folder's numbers depend on (``sweep.json``), or refuse a folder of another sweep.

    The first worker creates the file atomically (written aside, then hard-linked into place, which fails if
    another worker got there first); later ones check it and add what it lacks (new vectors, sites' norms).
    """
    meta = {"format": FORMAT, **meta}
    path = folder / "sweep.json"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".sweep.{uuid.uuid4().hex}.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    try:
        os.link(tmp, path)  # exclusive and atomic: a reader never sees a half-written file
        return
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links: first come, first written
        if not path.exists():
            os.replace(tmp, path)
            return
    finally:
        tmp.unlink(missing_ok=True)
    old = json.loads(path.read_text())
    if old.get("format") != FORMAT:
        raise SteerlabError(f"{folder} holds a sweep written by an older steerlab (another cell layout); "
                            "use another output folder or delete it")  # fmt: skip
    old.setdefault("edit", "add")  # folders written before the edit builder was recorded
    clash = [k for k in ("model", "task", "positions", "unit", "edit") if old.get(k) != meta[k]]
    if old.get("scale") and meta["scale"]:
        shared = set(old["scale"]) & set(meta["scale"])
        clash += ["scale"] if any(not math.isclose(old["scale"][k], meta["scale"][k], rel_tol=1e-6)
                                  for k in shared) else []  # fmt: skip
    clash += [
        f"vector {k}" for k, h in meta["vectors"].items() if k in old.get("vectors", {}) and old["vectors"][k] != h
    ]
    if clash:
        raise SteerlabError(
            f"{folder} holds a sweep with a different {', '.join(clash)}; use another output folder or delete it"
        )
    merged = {**old, "vectors": {**old.get("vectors", {}), **meta["vectors"]},
              "scale": {**(old.get("scale") or {}), **(meta["scale"] or {})} or None}  # fmt: skip
    if merged != old:
        tmp.write_text(json.dumps(merged, indent=2))
        os.replace(tmp, path)


def layer_scores(pos: Mapping[Site, torch.Tensor], neg: Mapping[Site, torch.Tensor]) -> pd.DataFrame:
    """Per-site scores from training activations alone, no grid search (LayerNavigator-style,
    Sun et al. 2025): Fisher discriminability along the mean difference plus the directional
    consistency of pair differences. Columns: ``layer, site, discriminability, consistency, score, rank``.
    """
    from steerlab.methods.linear import fisher_scores

    rows = [{"layer": s.layer, "site": s.kind, **fisher_scores(pos[s], neg[s])} for s in pos]
    df = pd.DataFrame(rows).sort_values("score", ascending=False, ignore_index=True)
    df["rank"] = range(1, len(df) + 1)
    return df


def sweep_effect(df: pd.DataFrame, metric: str, *, low: float | None = None, high: float | None = None) -> pd.DataFrame:
    """Steering effect per (method, site, layer): mean metric at the highest strength minus at the lowest.

    Strengths are the sweep's fractions when it has them, else its coefficients (``low``/``high`` in the
    same unit). Columns: ``method, site, layer, effect, rank`` (rank 1 = largest effect within a method and
    site). For intervals, random bands and verdicts use `steerlab.effects.cell_effects`.
    """
    d = df[df.metric == metric]
    if "direction" in d:
        d = d[d.direction == VECTOR]
    if d.empty:
        raise SteerlabError(f"no rows for metric {metric!r}; metrics present: {sorted(df.metric.unique())}")
    x = "fraction" if "fraction" in d and d.fraction.notna().all() else "coeff"
    low = d[x].min() if low is None else low
    high = d[x].max() if high is None else high
    means = d.groupby(["method", "site", "layer", x]).value.mean().unstack(x)
    eff = (means[high] - means[low]).rename("effect").reset_index()
    eff["rank"] = eff.groupby(["method", "site"]).effect.rank(ascending=False, method="min").astype(int)
    return eff


@dataclasses.dataclass(frozen=True)
class LayerChoice:
    """Where a one-method sweep steers best, and how a choice from training activations alone fared.

    Attributes:
        site: the site with the largest effect (ties go to the lower layer).
        effect: its effect (`sweep_effect`: mean metric at the highest minus at the lowest strength).
        baseline: mean metric at strength 0 (None if 0 was not swept).
        effects: `sweep_effect` of every swept site, sorted by rank, then layer.
        auto: the site `layer_scores` ranks first (None without scores), with ``auto_score`` (its score),
            ``auto_rank`` (its rank in the sweep) and ``auto_effect`` (its effect in the sweep).
    """

    site: Site
    effect: float
    baseline: float | None
    effects: pd.DataFrame
    auto: Site | None = None
    auto_score: float | None = None
    auto_rank: int | None = None
    auto_effect: float | None = None


def choose_layer(df: pd.DataFrame, metric: str, scores: pd.DataFrame | None = None) -> LayerChoice:
    """The best site of a sweep of one method at one site kind, and the rank in it of the automatic choice.

    Args:
        df: `sweep` results of one method (any seeds) at one site kind.
        metric: the target metric (e.g. ``task.metrics[0]``).
        scores: `layer_scores` of the training activations, if the automatic choice should be judged.

    Example:
        >>> choice = choose_layer(df, "p_behaviour", layer_scores(acts.pos, acts.neg))   # doctest: +SKIP
        >>> vec.select([choice.site]).save("best")                                       # doctest: +SKIP
    """
    groups = df[["method", "site"]].drop_duplicates()
    if len(groups) != 1:
        raise SteerlabError(
            f"choose_layer reads a sweep of one method at one site kind; got {len(groups)} pairs "
            f"({', '.join(f'{m}/{k}' for m, k in groups.itertuples(index=False))}); filter the frame first"
        )
    effects = sweep_effect(df, metric).sort_values(["rank", "layer"], ignore_index=True)
    best = effects.iloc[0]
    rows = df[(df.metric == metric) & (df.direction == VECTOR)] if "direction" in df else df[df.metric == metric]
    means = rows.groupby("coeff").value.mean()
    baseline = float(means[0.0]) if 0.0 in means.index else None
    choice = LayerChoice(Site(int(best.layer), str(best.site)), float(best.effect), baseline, effects)
    if scores is None:
        return choice
    auto = scores.iloc[0]
    row = effects[(effects.layer == auto.layer) & (effects.site == auto.site)]
    if row.empty:
        raise SteerlabError(f"layer_scores ranks {auto.site}.{auto.layer} first, but the sweep did not include it")
    return dataclasses.replace(
        choice, auto=Site(int(auto.layer), str(auto.site)), auto_score=float(auto.score),
        auto_rank=int(row["rank"].iloc[0]), auto_effect=float(row["effect"].iloc[0]),
    )  # fmt: skip
