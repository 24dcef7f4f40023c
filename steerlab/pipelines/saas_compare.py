"""Many steering methods compared under the protocol, through one resumable `steerlab.sweeps.sweep` per split
(SAAS, "Instance-Semantic Attribution for Activation Steering in Large Language Models", anonymous ACL
submission: Table 1, Figure 4 and the ablations of Table 2).

`compare` takes raw vectors by name (`steerlab.pipelines.saas.build_vectors`) and, for each:

1. **validation grid** (``out/val``): every vector at each of its sites at ``-f``, ``0`` and ``+f`` (``f`` a
   fraction of the site's typical token norm, measured once on the validation prompts);
2. **orientation** per vector and site: flipped where ``-f`` beats ``+f`` on validation
   (`steerlab.orientation`), so ``+f`` of the oriented vector raises the target metric there;
3. **choice** per method (a *group*; by default a vector's `steerlab.pipelines.saas.family`, so SAAS's
   temperatures compete and the winner represents SAAS): the site and vector whose oriented ``+f`` cell
   scores best on validation, by default the largest *minimum over answer labels* of the effect, so a
   cell that only pushes one answer token is not chosen (``shared_site=True``: one site for every group,
   the one with the best mean score, so the methods share it and its random band);
4. **test** (``out/test``): the chosen oriented vectors at ``test_fractions`` (default ``0`` and ``+f``) on the
   test task, and ``controls`` norm-matched random directions at each chosen site and ``band_fractions``.

A random direction scaled to ``f x`` the typical norm does not depend on the vector it stands beside, so
the band at a site is computed once and shared by every method tested there; its rows are copied under
each method (``direction = "random:i"``) for `steerlab.effects.cell_effects`. Adding ``+f`` times a random
direction is adding ``-f`` times its negation, so the same rows also serve as the band at ``-f``.

Every sweep resumes from ``out``: a killed run recomputes nothing it finished, and a second call with more
vectors (e.g. ablations) reuses the unsteered cell and the bands. `method_tests` compares the chosen cells
item by item (paired on the test items) with Holm's correction over the comparisons made.

Example:
    >>> res = compare(lm, built.vectors, val_task, test_task, cfg, out="runs/07/openness")   # doctest: +SKIP
    >>> res.effects[["method", "layer", "effect", "lo", "hi", "null_lo", "null_hi", "verdict"]]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from steerlab.backends.base import Backend
from steerlab.controls import random_like
from steerlab.effects import cell_effects, label_effects, metric_rows
from steerlab.errors import SteerlabError
from steerlab.orientation import apply_orientation, orientation_evidence
from steerlab.pipelines.saas import SaasConfig, family
from steerlab.power import mde_paired
from steerlab.sites import ALL, Positions, Site
from steerlab.stats import holm, paired_test
from steerlab.sweeps import NORM_PROMPTS, sweep
from steerlab.tasks import Task
from steerlab.vectors import SteeringVector

__all__ = ["Comparison", "RANDOM", "compare", "method_tests", "claim_verdict"]

RANDOM = "random@"
"""Prefix of the shared random directions' names in a test sweep (``random@resid_post.12``)."""


@dataclasses.dataclass
class Comparison:
    """What `compare` found, all as tidy frames (strengths are those of the *oriented* vectors).

    Attributes:
        val: validation rows (one per item x cell x metric), flipped sites mirrored.
        test: test rows, with the shared random directions copied under each method.
        orientation: per vector and site, the validation evidence (``effect`` = m(+f) - m(-f) as given).
        val_effects: `steerlab.effects.cell_effects` of every oriented validation cell at ``+f``, with the
            ``score`` the choice used and ``group``.
        choice: per group, the chosen vector name, site, layer and validation score.
        effects: `cell_effects` of each chosen cell on test (``method`` = the vector's name, ``group``).
        labels: `steerlab.effects.label_effects` of the chosen cells on test.
        vectors: the oriented vectors by name.
        metric: the target metric (the tasks' first).
    """

    val: pd.DataFrame
    test: pd.DataFrame
    orientation: pd.DataFrame
    val_effects: pd.DataFrame
    choice: pd.DataFrame
    effects: pd.DataFrame
    labels: pd.DataFrame
    vectors: dict[str, SteeringVector]
    metric: str


def _scale(backend: Backend, task: Task, sites: Sequence[Site], out: Path | None) -> dict[Site, float]:
    """Typical token norms at ``sites`` on the validation prompts, kept in ``out/scale.json`` for a rerun."""
    from steerlab.scale import typical_norm

    path = None if out is None else out / "scale.json"
    known = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    missing = [s for s in sites if str(s) not in known]
    if missing:
        found = typical_norm(backend, task.norm_prompts()[:NORM_PROMPTS], missing)
        known.update({str(backend.site(k)): float(v) for k, v in found.items()})
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known, indent=2))
    return {s: float(known[str(s)]) for s in sites}


def _mirror(df: pd.DataFrame, flipped: set[tuple[str, Site]]) -> pd.DataFrame:
    """Rows of flipped (vector, site) cells with their strengths negated: the oriented vector's strengths."""
    if not flipped:
        return df
    hit = np.array([(m, Site(int(layer), str(kind))) in flipped
                    for m, layer, kind in zip(df.method, df.layer, df.site, strict=True)]) & (df.direction == "vector")
    out = df.copy()
    out.loc[hit, ["fraction", "coeff"]] = -out.loc[hit, ["fraction", "coeff"]]
    return out


def _scores(eff: pd.DataFrame, labels: pd.DataFrame | None, select: str) -> pd.Series:
    """The validation score of each cell: its effect, or the smallest of its labels' effects."""
    if select == "effect" or labels is None or labels.empty:
        return eff["effect"]
    low = labels.groupby(["method", "layer", "site"]).effect.min()
    return pd.Series([low.get((m, la, s), np.nan) for m, la, s in zip(eff.method, eff.layer, eff.site, strict=True)],
                     index=eff.index)  # fmt: skip


def _choose(val_eff: pd.DataFrame, shared_site: bool) -> pd.DataFrame:
    """Per group, the best-scoring cell (ties: the lower layer); with ``shared_site``, at one common site."""
    ranked = val_eff.sort_values(["score", "layer"], ascending=[False, True], na_position="last")
    if shared_site:
        per_site = ranked.groupby(["group", "layer", "site"]).score.max().groupby(["layer", "site"]).mean()
        best = per_site.sort_values(ascending=False, kind="stable").index[0]
        ranked = ranked[(ranked.layer == best[0]) & (ranked.site == best[1])]
    chosen = ranked.groupby("group", sort=False).head(1)
    return chosen[["group", "method", "site", "layer", "score", "effect", "lo", "hi"]].reset_index(drop=True)


def _random_vectors(sites: Sequence[Site], like: SteeringVector, k: int, seed: int) -> dict:
    """``k`` random directions per site, unit norm, one single-site vector each (keys ``(random@site, i)``).

    Their norm does not matter (a sweep in fractions scales each to ``f`` x the typical norm) but fixes
    their hash in the sweep folder, so a later call with other methods finds them done.
    """
    d = like.provenance.d_model
    prov = dataclasses.replace(like.provenance, method="random")
    out = {}
    for site in sites:
        unit = torch.full((d,), 1.0 / math.sqrt(d))
        for i, vec in enumerate(random_like(SteeringVector({site: unit}, prov), k, seed)):
            out[(f"{RANDOM}{site}", i)] = vec
    return out


def _with_band(test: pd.DataFrame, choice: pd.DataFrame) -> pd.DataFrame:
    """The random directions' rows copied under every method tested at their site, at ``+g`` and (as the
    negated directions) at ``-g``; the vectors' own rows as they are."""
    own = test[~test.method.str.startswith(RANDOM)]
    rnd = test[test.method.str.startswith(RANDOM) & (test.fraction != 0)]
    frames = [own]
    for c in choice.itertuples():
        r = rnd[rnd.method == f"{RANDOM}{Site(int(c.layer), str(c.site))}"]
        r = r.assign(method=c.method, direction=[f"random:{s}" for s in r.seed], seed=0)
        strengths = set(own.loc[(own.method == c.method) & (own.fraction != 0), "fraction"])
        for sign in (1, -1):
            part = r[(sign * r.fraction).isin(strengths)]
            if sign < 0:
                part = part.assign(fraction=-part.fraction, coeff=-part.coeff, direction=part.direction + "-")
            frames.append(part)
    return pd.concat(frames, ignore_index=True)


def compare(
    backend: Backend,
    vectors: Mapping[str, SteeringVector],
    val_task: Task,
    test_task: Task | None,
    cfg: SaasConfig,
    *,
    out: str | Path | None = None,
    sites: Sequence[Site | str | int] | None = None,
    groups: Mapping[str, str] | None = None,
    shared_site: bool = False,
    test_fractions: Sequence[float] | None = None,
    band_fractions: Sequence[float] | None = None,
    positions: Positions = ALL,
    test: bool = True,
    progress: bool = True,
    on_cell: Callable[[str], None] | None = None,
) -> Comparison:
    """Orient every vector on validation, choose each method's cell there, and test the choices with a band.

    Args:
        backend: The model.
        vectors: Raw vectors by name (sites = candidate layers).
        val_task, test_task: `steerlab.tasks.ChoiceTask` of the validation and test pairs (``test_task`` may be
            None with ``test=False``).
        cfg: ``fraction`` (orientation and test strength), ``controls``, ``select``, ``seed``.
        out: Folder of the resumable sweeps (``val``, ``test``) and ``scale.json``.
        sites: Restrict every vector to these sites (their other sites are not swept).
        groups: Vector name -> the method it competes for (default `steerlab.pipelines.saas.family`); give
            ``{name: name}`` to test every vector.
        shared_site: Choose one site for all groups (see the module docstring).
        test_fractions: Strengths of the oriented vectors on test (default ``(0, f)``); 0 is always added.
        band_fractions: Positive strengths with random directions on test (default ``(f,)``); each also gives
            the band at its negative.
        positions: Steered positions (SAAS: every position).
        test: False stops after the validation choice (``test``, ``effects`` and ``labels`` are then empty).
        progress: Show progress bars.
        on_cell: Called with the key of every computed sweep cell (a resumed run calls it for none).
    """
    if not vectors:
        raise SteerlabError("no vectors to compare; build them with steerlab.pipelines.saas.build_vectors")
    if test and test_task is None:
        raise SteerlabError("test_task is None; pass the test task, or test=False to stop after the validation choice")
    f, metric = float(cfg.fraction), val_task.metrics[0]
    folder = None if out is None else Path(out)
    groups = {name: (groups or {}).get(name, family(name)) for name in vectors}
    wanted = None if sites is None else [backend.site(s) for s in sites]
    all_sites = sorted({s for v in vectors.values() for s in v.sites if wanted is None or s in wanted},
                       key=lambda s: s.order)  # fmt: skip
    if not all_sites:
        raise SteerlabError(f"none of the sites {wanted} is among the vectors' sites; check `sites`")
    scale = _scale(backend, val_task, all_sites, folder)
    common = dict(scale=scale, positions=positions, progress=progress, on_cell=on_cell)
    val = sweep(backend, dict(vectors), val_task, fractions=[-f, 0.0, f], sites=wanted,
                out=None if folder is None else folder / "val", **common)  # fmt: skip

    evidence, oriented = [], {}
    for name, vec in vectors.items():
        ev = orientation_evidence(val[val.method == name], metric, f)
        oriented[name] = apply_orientation(vec, ev)
        evidence += [{"method": name, "group": groups[name], "layer": s.layer, **e.to_dict()} for s, e in ev.items()]
    orientation = pd.DataFrame(evidence)
    flipped = {(r.method, Site.parse(r.site)) for r in orientation.itertuples() if r.flipped}
    val = _mirror(val, flipped).assign(split="val")
    val_eff = cell_effects(val, metric)
    val_eff = val_eff[val_eff.fraction == f].reset_index(drop=True)
    val_labels = label_effects(val, metric) if "label" in val else None
    val_labels = None if val_labels is None else val_labels[val_labels.fraction == f]
    val_eff = val_eff.assign(group=val_eff.method.map(groups), score=_scores(val_eff, val_labels, cfg.select))
    choice = _choose(val_eff, shared_site)
    if not test:
        empty = pd.DataFrame()
        return Comparison(val, empty, orientation, val_eff, choice, empty, empty, oriented, metric)

    strengths = sorted({0.0, f, *(float(x) for x in (test_fractions or ()))})
    band = sorted({abs(float(x)) for x in (band_fractions or (f,))} - {0.0})
    chosen_sites = sorted({Site(int(c.layer), str(c.site)) for c in choice.itertuples()}, key=lambda s: s.order)
    test_out = None if folder is None else folder / "test"
    frames = []
    for site in chosen_sites:  # the full oriented vectors, restricted to the site: their hashes never change
        here = {c.method: oriented[c.method] for c in choice.itertuples() if Site(int(c.layer), str(c.site)) == site}
        frames.append(sweep(backend, here, test_task, fractions=strengths, sites=[site], out=test_out, **common))
    if cfg.controls:
        rnd = _random_vectors(chosen_sites, next(iter(vectors.values())), cfg.controls, cfg.seed)
        frames.append(sweep(backend, rnd, test_task, fractions=[0.0, *band], out=test_out, **common))
    test = _with_band(pd.concat(frames, ignore_index=True), choice).assign(split="test")
    effects = cell_effects(test, metric)
    effects.insert(1, "group", effects.method.map(groups))
    labels = label_effects(test, metric) if "label" in test else pd.DataFrame()
    return Comparison(val, test, orientation, val_eff, choice, effects, labels, oriented, metric)


def claim_verdict(delta: float, lo: float, hi: float, p_holm: float, mde: float, reference: float,
                  n: int) -> str:  # fmt: skip
    """One of REPRODUCTION.md's verdicts for a directional comparison (the paper: ``delta > 0``).

    ``reproduced``: ``delta > 0`` and Holm-adjusted ``p < 0.05``; ``not reproduced``: significantly the
    opposite, or the MDE is at most the paper's ``reference`` effect; ``underpowered`` otherwise (also
    below 3 units).
    """
    if n < 3 or not math.isfinite(p_holm):
        return "underpowered"
    if p_holm < 0.05:
        return "reproduced" if delta > 0 else "not reproduced"
    return "not reproduced" if math.isfinite(mde) and mde <= abs(reference) else "underpowered"


def method_tests(results: Mapping[str, Comparison], target: str, against: Sequence[str], *, reference: float,
                 pooled: bool = False, fractions: Sequence[float] | None = None) -> pd.DataFrame:  # fmt: skip
    """Is ``target``'s test effect larger than each other method's? Paired over test items, Holm-corrected.

    For each behaviour (key of ``results``) and method ``m`` in ``against`` (groups, as in `compare`), the
    per-item difference of the steered metric at each nonzero test strength ``g`` (default: every one
    both have), signed so that a positive ``delta`` is the paper's claim (``target`` higher at ``g > 0``,
    lower at ``g < 0``; the unsteered value cancels). ``pooled=True`` pools the behaviours' items into one
    comparison per method. Holm's correction runs over all rows returned.

    Returns:
        One row per comparison: ``behaviour`` (``"pooled"``), ``target``, ``against``, ``fraction``, ``n``,
        ``delta``, ``lo``, ``hi`` (two-sided 95%), ``sd``, ``p`` (two-sided), ``p_holm``, ``mde``,
        ``reference``, ``verdict`` (`claim_verdict`).
    """
    diffs: dict[tuple[str, str, float], list[np.ndarray]] = {}
    for behaviour, res in results.items():
        rows = metric_rows(res.test, res.metric)
        rows = rows[(rows.direction == "vector") & (rows.fraction != 0)]
        rows = rows.assign(group=rows.method.map(dict(zip(res.effects.method, res.effects.group, strict=True))))
        wide = rows.pivot_table(index=["fraction", "example_id"], columns="group", values="value")
        if target not in wide:
            raise SteerlabError(f"{target!r} was not tested for {behaviour}; tested: {sorted(wide.columns)}")
        for m in against:
            if m not in wide:
                continue
            for g, d in wide[[target, m]].dropna().groupby(level="fraction"):
                if fractions is not None and g not in fractions:
                    continue
                key = ("pooled" if pooled else behaviour, m, float(g))
                diffs.setdefault(key, []).append(np.sign(g) * (d[target] - d[m]).to_numpy())
    out = []
    for (behaviour, m, g), parts in diffs.items():
        x = np.concatenate(parts)
        r = paired_test(x, np.zeros_like(x), alternative="two-sided")
        mde = mde_paired(r["n"], r["sd"]) if r["n"] >= 3 and math.isfinite(r["sd"]) else math.nan
        out.append({"behaviour": behaviour, "target": target, "against": m, "fraction": g, "n": r["n"],
                    "delta": r["delta"], "lo": r["ci_low"], "hi": r["ci_high"], "sd": r["sd"], "p": r["p"],
                    "mde": mde, "reference": reference})  # fmt: skip
    table = pd.DataFrame(out)
    if table.empty:
        raise SteerlabError(f"no comparison of {target!r} with {list(against)}: none of them was tested")
    table.insert(table.columns.get_loc("mde"), "p_holm", holm(table.p.to_numpy()))
    table["verdict"] = [claim_verdict(r.delta, r.lo, r.hi, r.p_holm, r.mde, reference, r.n) for r in table.itertuples()]
    return table
