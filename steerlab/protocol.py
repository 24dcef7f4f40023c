"""The evaluation protocol: does a vector steer, beyond what a random direction of its norm does?

`evaluate_vector` runs, through `steerlab.sweeps.sweep` (resumable from ``out``):

1. **Scale**: strengths are fractions of each site's typical token norm on the validation prompts
   (`steerlab.scale.typical_norm`; raw ``coeffs`` stay available, e.g. for PAS's raw-vector scale).
2. **Validation grid**: every site x strength (small to large, both signs, and 0) on the validation task.
3. **Orientation** (`steerlab.orientation`): each site is signed so that ``+s`` beats ``-s`` on validation.
4. **Choice** of site and strength on validation, among the nonzero strengths of the oriented vector
   (``sides="both"``, the default: a vector that can only lower the metric, e.g. sentiment from an already
   positive baseline, steers too; ``sides="positive"``: only strengths that raise it). Scores, in the
   cell's own direction: ``select="labels"`` (the default for tasks with answer labels): the cell whose
   *worst* label moves most that way (the largest minimum over labels), so a cell that only pushes one
   answer token (one label up, the other down) is not chosen; ``"effect"`` (the default without labels):
   the largest effect; ``"lower"``: the interval bound nearest 0 farthest from it (prefers precise
   effects). The chosen cell's validation effect is biased away from 0 by the choice itself (the winner's
   curse: with many cells, the largest is partly noise), so it is reported only as the reason for the
   choice; the effect is the test number.
5. **Test**: the oriented vector at the chosen site on the test task: the unsteered cell, the chosen
   strength, and ``controls`` norm-matched random directions at that cell (``control_scope="chosen"``), at
   every strength of the chosen site (``"site"``: a dose-response with bands), or also in every validation
   cell (``"all"``; each controlled cell costs ``controls + 1`` evaluations).
6. **Verdict** (`steerlab.effects.cell_effects`): effect with its paired 95% interval, the random band,
   per-label effects, the minimum detectable effect at 80% power, and the one-line verdict.

**Many workers** (with ``out``): several processes may run `evaluate_vector` on one folder at once; the
sweeps share their cells out through claims (`steerlab.sweeps`), and the typical norms are measured once.
Without ``shard`` every worker waits for the others and returns the same result. ``shard=(I, N)`` splits
the validation grid (the bulk of the work): a worker that finishes its share while other validation cells
are missing raises `steerlab.claims.GridIncomplete`; the worker that finds the grid complete (the last)
chooses the cell and computes the test cells, sharing them with any other worker that got there too
(the test grid is not split: a split one would wait for shards that have already exited).

Example:
    >>> val, test = ChoiceTask.from_pairs(lm, val_pairs), ChoiceTask.from_pairs(lm, test_pairs)   # doctest: +SKIP
    >>> res = evaluate_vector(lm, vec, val, test, out="runs/psychopathy")                          # doctest: +SKIP
    >>> print(res.summary["verdict"])                                                              # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from steerlab.effects import CELL, cell_effects, chance_shift, label_effects, letter_distribution, strength_column
from steerlab.errors import SteerlabError
from steerlab.orientation import apply_orientation, orientation_evidence
from steerlab.scale import DEFAULT_FRACTIONS
from steerlab.sites import AFTER_INSTRUCTION, Positions, Site
from steerlab.sweeps import EditMaker, Runner, measure_scale, sweep
from steerlab.vectors import SteeringVector

if TYPE_CHECKING:
    from steerlab.backends.base import Backend
    from steerlab.tasks import Task

__all__ = ["CONTROL_SCOPES", "ProtocolResult", "SELECTIONS", "evaluate_vector"]

CONTROL_SCOPES = ("chosen", "site", "all")
SELECTIONS = ("auto", "labels", "effect", "lower")
RULES = {"labels": "largest minimum over labels of the validation effect (in the cell's direction)",
         "effect": "largest validation effect (in size)", "lower": "95% bound nearest 0 farthest from 0"}
SIDES = ("both", "positive")
WINNERS_CURSE = ("the chosen cell's validation effect is the largest of many and so biased away from 0 (winner's "
                 "curse); only the test effect is an estimate")  # fmt: skip


@dataclasses.dataclass
class ProtocolResult:
    """What `evaluate_vector` found.

    Attributes:
        results: every row of both sweeps (one per item x cell x metric), with ``split`` (``val``/``test``);
            strengths are those of the oriented vector (a flipped site's rows have their signs mirrored).
        effects: `steerlab.effects.cell_effects` of every steered cell, with ``split``.
        labels: `steerlab.effects.label_effects` (per answer label) with ``split``; None without labels.
        vector: the oriented vector (every swept site; the evidence in ``provenance.extra["orientation"]``).
        summary: the numbers to report (see `evaluate_vector`), JSON-ready.
    """

    results: pd.DataFrame
    effects: pd.DataFrame
    labels: pd.DataFrame | None
    vector: SteeringVector
    summary: dict[str, Any]


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _mirror(df: pd.DataFrame, flipped: set[Site]) -> pd.DataFrame:
    """The vector's rows at a flipped site with their strengths negated (random directions are sign-free)."""
    if not flipped:
        return df
    hit = (df.direction == "vector") & pd.Series(
        [Site(int(layer), str(kind)) in flipped for layer, kind in zip(df.layer, df.site, strict=True)], index=df.index
    )
    out = df.copy()
    out.loc[hit, "coeff"] = -out.loc[hit, "coeff"]
    out.loc[hit, "fraction"] = -out.loc[hit, "fraction"]
    return out


def _orientation_strength(strengths: list[float], orient_at: float | None, unit: str) -> float:
    pairs = sorted(s for s in strengths if s > 0 and -s in strengths)
    if orient_at is not None:
        return abs(float(orient_at))
    if unit == "fraction" and 0.25 in pairs:
        return 0.25
    if not pairs:
        raise SteerlabError(f"the strengths {strengths} have no +s/-s pair to orient with; include both signs")
    return pairs[-1]


def _check(controls: int, control_scope: str, select: str) -> None:
    if not isinstance(controls, int) or isinstance(controls, bool) or controls < 0:
        raise SteerlabError(f"controls must be an int >= 0 (random directions), got {controls!r}; the default is 8")
    if control_scope not in CONTROL_SCOPES:
        raise SteerlabError(f"unknown control_scope {control_scope!r}; valid: {', '.join(CONTROL_SCOPES)}")
    if select not in SELECTIONS:
        raise SteerlabError(f"unknown select {select!r}; valid: {', '.join(SELECTIONS)}")


def evaluate_vector(
    backend: Backend,
    vector: SteeringVector,
    val_task: Task,
    test_task: Task,
    *,
    sites: Sequence[Site | str | int] | None = None,
    fractions: Sequence[float] | None = DEFAULT_FRACTIONS,
    coeffs: Sequence[float] | None = None,
    positions: Positions = AFTER_INSTRUCTION,
    controls: int = 8,
    control_scope: str = "chosen",
    control_seed: int = 0,
    orient_at: float | None = None,
    select: str = "auto",
    sides: str = "both",
    reference: float | None = None,
    scale: Mapping[Site, float] | None = None,
    out: str | Path | None = None,
    runner: Runner | None = None,
    shard: tuple[int, int] | None = None,
    stale_after: float = 600.0,
    edit: EditMaker | None = None,
    progress: bool = True,
) -> ProtocolResult:
    """Orient on validation, choose site and strength on validation, and test with random-direction controls.

    Args:
        backend: the model.
        vector: the steering vector (one direction per site; each site is a candidate).
        val_task: the validation task (orientation and choice).
        test_task: the test task (the reported effect); the same kind of task on held-out items.
        sites: candidate sites (default: all of the vector's).
        fractions: strengths as fractions of the typical token norm; must include 0 (added if missing).
        coeffs: raw strengths instead of ``fractions`` (pass ``fractions=None``).
        positions: steered positions (default `AFTER_INSTRUCTION`; `ALL` for raw-text tasks).
        controls: random directions per controlled cell (0 disables the band).
        control_scope: ``"chosen"``, ``"site"`` or ``"all"`` (see the module docstring).
        control_seed: seed of the random directions.
        orient_at: the orientation strength (default 0.25 of the norm, or the largest +-pair of ``coeffs``).
        select: ``"labels"``, ``"effect"`` or ``"lower"`` (see the module docstring); ``"auto"``: ``"labels"``
            when the task gives answer labels, else ``"effect"``.
        sides: ``"both"`` (negative strengths of the oriented vector may be chosen) or ``"positive"``.
        reference: an effect that matters; an MDE above it turns a null into "underpowered".
        scale: ``{site: typical norm}`` (default: measured on the first `steerlab.sweeps.NORM_PROMPTS`
            validation prompts).
        out: folder for the resumable sweeps (``out/val``, and ``out/test/<chosen site>``).
        runner: passed to `steerlab.sweeps.sweep` (replaces its loop over cells).
        shard: ``(I, N)``: compute shard ``I`` of ``N`` of the validation grid (array jobs; needs ``out``);
            see "Many workers" above.
        stale_after: seconds without a heartbeat after which another worker's claim is taken over.
        edit: passed to `steerlab.sweeps.sweep`: builds a cell's edits from the (oriented) direction and
            coefficient, for non-additive edits such as clamping an SAE latent (default: add the vector).
        progress: show progress bars.

    Returns:
        A `ProtocolResult`. ``summary`` keys: ``site``, ``layer``, ``strength`` and ``strength_unit`` (chosen
        on validation), ``coeff`` (the raw coefficient applied), ``positions``, ``orientation`` (the
        validation evidence at the chosen site, and ``flipped_sites``), ``metric``, ``baseline`` and
        ``steered`` (test means), ``effect``, ``effect_ci``, ``null_band``, ``per_label`` (absent without
        labels), ``mde``, ``n_val``, ``n_test``, ``controls``, ``control_scope``, ``selection``, ``verdict``
        (one line), ``verdict_label``; for MCQ also ``letter_distribution`` and ``chance``.

    Raises:
        GridIncomplete: with ``shard``, when this worker's validation cells are done but others are not yet.
    """
    _check(controls, control_scope, select)
    if sides not in SIDES:
        raise SteerlabError(f"unknown sides {sides!r}; valid: {', '.join(SIDES)}")
    if (fractions is None) == (coeffs is None):
        raise SteerlabError("give exactly one of fractions (default) and coeffs (raw strengths; pass fractions=None)")
    unit = "fraction" if fractions is not None else "coeff"
    strengths = sorted({0.0, *(float(s) for s in (fractions if fractions is not None else coeffs))})
    s_orient = _orientation_strength(strengths, orient_at, unit)
    strengths = sorted({*strengths, s_orient, -s_orient})
    if not any(s > 0 for s in strengths):
        raise SteerlabError(f"the strengths {strengths} have no positive value to choose")
    vector = vector.select(sites) if sites is not None else vector
    folder = Path(out) if out is not None else None
    if shard is not None and folder is None:
        raise SteerlabError("shard= splits the validation grid among workers that share a folder: give out=")
    if unit == "fraction" and scale is None:  # once per folder: every worker applies the same coefficients
        scale = measure_scale(backend, val_task, vector.sites, folder / "val" if folder else None,
                              stale_after=stale_after)  # fmt: skip
    grid = {"fractions": strengths} if unit == "fraction" else {"coeffs": strengths}
    common = dict(positions=positions, scale=scale, runner=runner, progress=progress, control_seed=control_seed,
                  stale_after=stale_after, edit=edit)  # fmt: skip
    metric = val_task.metrics[0]

    val = sweep(backend, vector, val_task, controls=controls if control_scope == "all" else 0,
                out=folder / "val" if folder else None, shard=shard, **grid, **common)  # fmt: skip
    evidence = orientation_evidence(val, metric, s_orient)
    oriented = apply_orientation(vector, evidence)
    flipped = {s for s, e in evidence.items() if e.flipped}
    val = _mirror(val, flipped).assign(split="val")
    val_eff = cell_effects(val, metric, reference=reference)
    x = strength_column(val)
    labelled = "label" in val and val["label"].astype(str).str.len().gt(0).any()
    select = ("labels" if labelled else "effect") if select == "auto" else select
    if select == "labels" and not labelled:
        raise SteerlabError("select='labels' needs a task with answer labels; use select='effect'")
    val_labels = label_effects(val, metric) if labelled else None
    pos = val_eff[(val_eff[x] > 0) | ((val_eff[x] < 0) & (sides == "both"))].copy()
    way = np.sign(pos["effect"]).replace(0, 1) if sides == "both" else pd.Series(1.0, index=pos.index)
    if select == "labels":  # the weakest label's move in the cell's direction
        keys = [*CELL, x]
        low, high = (val_labels.groupby(keys).effect.agg(f) for f in ("min", "max"))
        pos["score"] = [low.get(k, np.nan) if w > 0 else -high.get(k, np.nan)
                        for k, w in zip(pos[keys].itertuples(index=False, name=None), way, strict=True)]  # fmt: skip
    elif select == "effect":
        pos["score"] = way * pos["effect"]
    else:
        pos["score"] = np.where(way > 0, pos["lo"], -pos["hi"])
    best = pos.sort_values(["score", "layer"], ascending=[False, True], na_position="last").iloc[0]
    site, chosen = Site(int(best.layer), str(best.site)), float(best[x])

    test_strengths = [0.0, chosen] if control_scope == "chosen" else strengths
    controls_at = [chosen] if control_scope == "chosen" else None
    test_grid = {"fractions": test_strengths} if unit == "fraction" else {"coeffs": test_strengths}
    test_out = folder / "test" / str(site) if folder else None  # another choice on a rerun: another folder
    test = sweep(backend, oriented.select([site]), test_task, controls=controls, controls_at=controls_at,
                 out=test_out, **test_grid, **common).assign(split="test")  # fmt: skip
    test_eff = cell_effects(test, metric, reference=reference)
    row = test_eff[test_eff[x] == chosen].iloc[0]

    labels = None
    if labelled:
        labels = pd.concat([val_labels.assign(split="val"), label_effects(test, metric).assign(split="test")],
                           ignore_index=True)  # fmt: skip
    results = pd.concat([val, test], ignore_index=True)
    effects = pd.concat([val_eff.assign(split="val"), test_eff.assign(split="test")], ignore_index=True)
    ids = val.loc[val.metric == metric, "example_id"].astype(str)
    n_val = int(ids[ids != "all"].nunique())
    summary: dict[str, Any] = {
        "metric": metric,
        "site": str(site),
        "layer": site.layer,
        "strength": chosen,
        "strength_unit": unit,
        "coeff": float(row.coeff),
        "scale": None if scale is None else float({backend.site(k): v for k, v in scale.items()}[site]),
        "positions": str(positions),
        "positions_resolved": _resolved(test_task, positions),
        "orientation": {**evidence[site].to_dict(), "split": "val",
                        "flipped_sites": sorted(str(s) for s in flipped)},  # fmt: skip
        "selection": {"rule": RULES[select], "score": float(best.score),
                      "among": f"{len(pos)} cells ({len(val_eff[list(CELL[2:])].drop_duplicates())} sites x "
                               f"{pos[x].nunique()} {'nonzero' if sides == 'both' else 'positive'} strengths)",
                      "val_effect": float(best.effect), "val_ci": [float(best.lo), float(best.hi)],
                      "note": WINNERS_CURSE},  # fmt: skip
        "baseline": float(row.base),
        "steered": float(row.steered),
        "effect": float(row.effect),
        "effect_ci": [float(row.lo), float(row.hi)],
        "null_band": [float(row.null_lo), float(row.null_hi)],
        "mde": float(row.mde),
        "sd": float(row.sd),
        "n_val": n_val,
        "n_test": int(row.n),
        "controls": controls,
        "control_scope": control_scope,
        "verdict": str(row.verdict_text),
        "verdict_label": str(row.verdict),
    }
    if labels is not None:
        t = labels[(labels.split == "test") & (labels[x] == chosen)]
        summary["per_label"] = {str(r.label): {"effect": r.effect, "ci": [r.lo, r.hi], "n": int(r.n)}
                                for r in t.itertuples()}  # fmt: skip
    if "pred" in set(test.metric):
        summary.update(_mcq(test, test_task, x, chosen, float(row.base), float(row.steered)))
    return ProtocolResult(results, effects, labels, oriented, _jsonable(summary))


def _resolved(task: Any, positions: Positions) -> str:
    try:
        return str(task.resolve_positions(positions))
    except SteerlabError:  # prompts of several formats: resolved batch by batch
        return "per batch"


def _mcq(test: pd.DataFrame, task: Any, x: str, chosen: float, base: float, steered: float) -> dict[str, Any]:
    """The answer-letter distribution unsteered and at the chosen cell, and the distance from chance."""
    options = [len(c) for c in getattr(task, "candidates", [[0, 1]])]
    dist = letter_distribution(test[test.direction == "vector"], n_options=max(options))
    pick = {name: dist[dist[x] == s].set_index("letter").share.to_dict()
            for name, s in (("unsteered", 0.0), ("steered", chosen))}  # fmt: skip
    chance = float(np.mean([1 / k for k in options]))
    return {"letter_distribution": pick, "chance": chance_shift(base, steered, chance)}
