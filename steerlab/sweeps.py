"""Grids over method x seed x site (layer) x strength, written to disk as they are computed.

`sweep` evaluates a prepared `steerlab.tasks.Task` in every cell (a `ChoiceTask` reuses its cached
prompt prefixes when only the last prompt token is steered, so a cell costs one token per prompt).
It writes every finished cell to its own file (atomically), so a killed sweep rerun with the same
``out`` folder resumes: it recomputes nothing and loses no rows. `sweep_effect`, `layer_scores` and
`choose_layer` read a sweep's results.

Output: a tidy DataFrame with columns ``method, seed, layer, site, coeff, metric, value,
example_id`` (one row per example, cell and metric).

Example:
    >>> task = ChoiceTask.from_pairs(lm, test_pairs)                                  # doctest: +SKIP
    >>> df = sweep(lm, {"caa": vec}, task, coeffs=[-8, 0, 8], positions=LAST_PROMPT,  # doctest: +SKIP
    ...            out="runs/agreeableness")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.sites import ALL, Positions, Site
from steerlab.tasks import Task
from steerlab.vectors import SteeringVector, dataset_hash

logger = logging.getLogger(__name__)

COLUMNS = ["method", "seed", "layer", "site", "coeff", "metric", "value", "example_id"]


def _cell_key(method: str, seed: int, site: Site | None, coeff: float) -> str:
    return f"{method}|{seed}|{site}|{float(coeff):g}"


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    df.to_csv(tmp, index=False)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


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


def sweep(
    backend: Backend,
    vectors: SteeringVector | Mapping,
    task: Task,
    *,
    coeffs: Sequence[float],
    sites: Sequence[Site | str | int] | None = None,
    positions: Positions = ALL,
    out: str | Path | None = None,
    progress: bool = True,
    on_cell: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Evaluate ``task`` for every vector (method, seed) x site x strength.

    Args:
        vectors: a SteeringVector, or a mapping ``{"caa": vec}`` / ``{("caa", seed): vec}``.
        coeffs: strengths; 0 is the unsteered model (computed once, reported for every cell group).
        sites: restrict to these sites (default: every site of each vector).
        positions: which tokens are steered. With `LAST_PROMPT`, a task that can (``task.can_reuse_prefix``)
            reuses the cached prefix of each prompt, so each cell runs one token per prompt.
        out: a folder; each finished cell is saved there and a rerun resumes from what was saved.
        on_cell: called with each computed cell's key (tests use it to count recomputation).
    """
    vecs = _normalise_vectors(vectors)
    chosen = None if sites is None else {backend.site(s) for s in sites}
    reuse = positions.kind == "last_prompt" and task.can_reuse_prefix
    folder = Path(out) if out is not None else None
    done: dict[str, pd.DataFrame] = {}
    if folder is not None:
        done = _open_folder(folder, backend, task, positions, vecs)
    cells = [
        (method, seed, site, float(c))
        for (method, seed), vec in vecs.items()
        for site in vec.sites
        if chosen is None or site in chosen
        for c in coeffs
    ]
    if not cells:
        raise SteerlabError("no cells: none of the requested sites is in the vectors; check `sites`")
    frames = []
    base_key = _cell_key("base", 0, None, 0.0)
    base = done.get(base_key)
    for method, seed, site, coeff in tqdm(cells, desc="sweep", disable=not progress):
        key = _cell_key(method, seed, site, coeff)
        if coeff == 0.0:
            if base is None:
                base = task.evaluate(reuse_prefix=reuse)
                _save(folder, base_key, base, done, on_cell)
            df = base
        elif key in done:
            df = done[key]
        else:
            df = task.evaluate(
                steer({site: vecs[(method, seed)][site]}, coeff, positions=positions), reuse_prefix=reuse
            )
            _save(folder, key, df, done, on_cell)
        frames.append(df.assign(method=method, seed=seed, layer=site.layer, site=site.kind, coeff=coeff))
    result = pd.concat(frames, ignore_index=True)[COLUMNS]
    if folder is not None:
        _write_atomic(result, folder / "results.csv")
    return result


def _save(folder: Path | None, key: str, df: pd.DataFrame, done: dict, on_cell) -> None:
    done[key] = df
    if on_cell is not None:
        on_cell(key)
    if folder is not None:
        name = hashlib.sha1(key.encode()).hexdigest()[:16]
        _write_atomic(df.assign(cell=key), folder / "cells" / f"{name}.csv")


def _open_folder(folder: Path, backend: Backend, task: Task, positions: Positions, vecs) -> dict[str, pd.DataFrame]:
    """Create or resume a sweep folder; refuses to mix results of different sweeps."""
    (folder / "cells").mkdir(parents=True, exist_ok=True)
    meta = {
        "model": backend.name,
        "task": task.fingerprint(),
        "positions": [positions.kind, positions.start],
        "vectors": {f"{m}|{s}": dataset_hash([v[site].tolist() for site in v.sites]) for (m, s), v in vecs.items()},
    }
    meta_path = folder / "sweep.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        clash = [k for k in ("model", "task", "positions") if old.get(k) != meta[k]]
        clash += [
            f"vector {k}" for k, h in meta["vectors"].items() if k in old.get("vectors", {}) and old["vectors"][k] != h
        ]
        if clash:
            raise SteerlabError(
                f"{folder} holds a sweep with a different {', '.join(clash)}; use another output folder or delete it"
            )
        meta["vectors"] = {**old.get("vectors", {}), **meta["vectors"]}
    meta_path.write_text(json.dumps(meta, indent=2))
    done = {}
    for path in (folder / "cells").glob("*.csv"):
        df = pd.read_csv(path)
        done[str(df["cell"].iloc[0])] = df.drop(columns="cell")
    if done:
        logger.info("resuming sweep in %s: %d cells already done", folder, len(done))
    return done


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

    Columns: ``method, site, layer, effect, rank`` (rank 1 = largest effect within a method and site).
    """
    d = df[df.metric == metric]
    if d.empty:
        raise SteerlabError(f"no rows for metric {metric!r}; metrics present: {sorted(df.metric.unique())}")
    low = d.coeff.min() if low is None else low
    high = d.coeff.max() if high is None else high
    means = d.groupby(["method", "site", "layer", "coeff"]).value.mean().unstack("coeff")
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
    means = df[df.metric == metric].groupby("coeff").value.mean()
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
