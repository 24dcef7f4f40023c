"""Compare steering methods under the evaluation protocol, as AxBench compares them (Wu et al. 2025).

AxBench ranks steering methods (a difference-in-means direction against SAE latents and others) by how
well each steers at its own best strength, chosen on held-out data, and at what cost to fluency.
`compare_methods` does that with `steerlab.protocol.evaluate_vector` for every method:

- **Orientation and choice on validation**, per method: each vector is signed so that ``+s`` raises the
  target metric on the validation items, and its strength is chosen there (by default among the positive
  strengths of the oriented vector: steering *towards* the behaviour, as AxBench steers towards a concept).
- **Equal norms**: strengths are fractions of the site's typical token norm, so every method adds the same
  norm at the same strength and differs only in its direction. A method may be non-additive (clamping an SAE
  latent: `steerlab.sae.steer.ClampLatent`), given as ``Method(vector, edit=...)``.
- **One random band for all methods**: a norm-matched random direction at a given site and fraction adds the
  same vector whichever method it stands beside (``f * T * r / |r|``), so the band of ``controls`` random
  directions is computed once per (site, chosen strength), beside the baseline, and read against every method
  chosen there. For a clamped latent it is the band of additive directions of the clamp's norm.
- **The ranking**: each method's test effect (in its own direction) against the baseline's on the same test
  items, a paired two-sided t-test per method, Holm-corrected over the methods (a claim that one method steers
  better picks a winner among several), with the minimum detectable difference.
- **Cost** (optional): a `steerlab.tasks.PerplexityTask` (or any task) swept over ``cost_fractions`` with each
  oriented method at every position, beside random directions of the same norm.

Every grid runs through `steerlab.sweeps.sweep` under ``out`` (additive methods share one folder, and so the
unsteered cells), so a killed comparison resumes without recomputing a finished cell.

Example:
    >>> methods = {"dense CAA": caa, "top-1 latent": latent_vector(sae, site, i),                  # doctest: +SKIP
    ...            "clamp top-1": Method(latent_vector(sae, site, i), edit=ClampLatent(sae, i))}
    >>> cmp = compare_methods(lm, methods, val_task, test_task, fractions=[-0.25, -0.1, 0, 0.1, 0.25],
    ...                       cost_task=PerplexityTask(lm, texts), out="runs/sae")                 # doctest: +SKIP
    >>> cmp.effects[["method", "fraction", "effect", "null_lo", "null_hi", "verdict"]]         # doctest: +SKIP
    >>> cmp.versus[["method", "difference", "p", "p_holm"]]                                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from steerlab.effects import cell_effects, label_effects
from steerlab.errors import SteerlabError
from steerlab.power import mde_paired
from steerlab.protocol import evaluate_vector
from steerlab.sites import ALL, Positions, Site
from steerlab.stats import MIN_UNITS, holm, paired_test
from steerlab.sweeps import NORM_PROMPTS, EditMaker, Runner, sweep
from steerlab.vectors import SteeringVector

if TYPE_CHECKING:
    from steerlab.backends.base import Backend
    from steerlab.tasks import Task

__all__ = ["Comparison", "Method", "compare_methods"]


@dataclasses.dataclass(frozen=True)
class Method:
    """A steering method: its vector (one direction per candidate site) and how a cell applies it.

    ``edit`` builds a cell's edits as `steerlab.sweeps.sweep` calls it (None: add the vector).
    """

    vector: SteeringVector
    edit: EditMaker | None = None


@dataclasses.dataclass
class Comparison:
    """What `compare_methods` found.

    Attributes:
        effects: one row per method: its test effect at its validation-chosen strength (columns of
            `steerlab.effects.cell_effects`: effect, interval, random band, MDE, verdict), with ``split``.
        validation: the validation cell effects of every method (oriented: ``+s`` raised the metric).
        labels: per answer label, each method's test effect at its chosen strength (None without labels).
        versus: the baseline against each other method: ``difference`` (baseline's effect minus the
            method's, per test item, each in its own direction), its interval, sd, ``mde``, ``p`` (paired,
            two-sided) and ``p_holm`` (Holm over the methods).
        results: every row (validation and test sweeps of every method, and the random directions beside each).
        cost: the cost task's rows (a `sweep` frame of every oriented method and the random directions at
            their positive strengths); None without a cost task.
        summaries: each method's `evaluate_vector` summary (orientation evidence, choice, test numbers).
        vectors: each method's oriented vector.
    """

    effects: pd.DataFrame
    validation: pd.DataFrame
    labels: pd.DataFrame | None
    versus: pd.DataFrame
    results: pd.DataFrame
    cost: pd.DataFrame | None
    summaries: dict[str, dict[str, Any]]
    vectors: dict[str, SteeringVector]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "method"


def _named(vector: SteeringVector, name: str) -> SteeringVector:
    """The vector with ``provenance.method = name`` (sweeps label their rows by it)."""
    return SteeringVector(vector.directions, dataclasses.replace(vector.provenance, method=name))


def _methods(methods: Mapping[str, SteeringVector | Method]) -> dict[str, Method]:
    out = {}
    for name, m in methods.items():
        m = m if isinstance(m, Method) else Method(m)
        if not isinstance(m.vector, SteeringVector):
            raise SteerlabError(f"method {name!r} is a {type(m.vector).__name__}; pass a SteeringVector or "
                                "Method(vector, edit=...)")  # fmt: skip
        out[str(name)] = Method(_named(m.vector, str(name)), m.edit)
    if len(out) < 2:
        raise SteerlabError(f"compare_methods needs at least two methods to compare, got {list(out)}")
    return out


def _at(df: pd.DataFrame, site: Site, fraction: float) -> pd.Series:
    return (df.layer == site.layer) & (df.site == site.kind) & np.isclose(df.fraction, fraction)


def compare_methods(
    backend: Backend,
    methods: Mapping[str, SteeringVector | Method],
    val_task: Task,
    test_task: Task,
    *,
    fractions: Sequence[float],
    baseline: str | None = None,
    positions: Positions = ALL,
    controls: int = 8,
    control_seed: int = 0,
    select: str = "auto",
    sides: str = "positive",
    cost_task: Task | None = None,
    cost_fractions: Sequence[float] | None = None,
    scale: Mapping[Site, float] | None = None,
    out: str | Path | None = None,
    runner: Runner | None = None,
    progress: bool = True,
) -> Comparison:
    """Orient, choose and test every method under the protocol; rank them against ``baseline``; price them.

    Args:
        backend: the model.
        methods: ``{name: SteeringVector | Method}``; names label every row.
        val_task, test_task: validation (orientation, choice) and test tasks of the same kind.
        fractions: the validation grid, fractions of the typical token norm (0 is added; both signs of the
            orientation strength must be there, 0.25 by default: see `evaluate_vector`).
        baseline: the method the others are ranked against (default: the first); it must be additive, since
            the random directions run beside it.
        positions: steered positions (default `ALL`: every prompt position, as AxBench adds its vectors).
        controls: random directions per chosen (site, strength) (0: no band).
        control_seed: their seed.
        select, sides: the choice on validation (`evaluate_vector`; default: positive strengths only).
        cost_task: e.g. a `steerlab.tasks.PerplexityTask`, swept with every oriented method at its chosen site.
        cost_fractions: its grid (default: ``fractions``); random directions run at its positive values.
        scale: ``{site: typical norm}`` (default: measured on the first validation prompts); the same scale
            serves the cost task, so a fraction is the same added norm in both.
        out: folder of the resumable sweeps.
        runner: passed to every `steerlab.sweeps.sweep` (e.g. one that counts or shares cells).
        progress: show progress bars.
    """
    methods = _methods(methods)
    baseline = next(iter(methods)) if baseline is None else baseline
    if baseline not in methods:
        raise SteerlabError(f"baseline {baseline!r} is not among the methods {list(methods)}")
    if methods[baseline].edit is not None:
        raise SteerlabError(f"the baseline {baseline!r} must be an additive vector (the random directions run "
                            "beside it); pick another baseline")  # fmt: skip
    if controls and controls < MIN_UNITS:
        raise SteerlabError(f"controls={controls} random directions give no band (at least {MIN_UNITS}); use 8 or 0")
    folder = Path(out) if out is not None else None
    if scale is None:
        from steerlab.scale import typical_norm

        sites = sorted({s for m in methods.values() for s in m.vector.sites}, key=lambda s: s.order)
        scale = typical_norm(backend, val_task.norm_prompts()[:NORM_PROMPTS], sites)
    common = dict(positions=positions, scale=scale, runner=runner, progress=progress)

    def where(name: str, part: str) -> Path | None:
        group = "add" if methods[name].edit is None else f"edit-{_slug(name)}"
        return folder / part / group if folder else None

    res = {
        name: evaluate_vector(backend, m.vector, val_task, test_task, fractions=fractions, controls=0, select=select,
                              sides=sides, out=where(name, "behaviour"), edit=m.edit, **common)
        for name, m in methods.items()
    }  # fmt: skip
    metric = test_task.metrics[0]
    chosen = {name: (Site.parse(r.summary["site"]), float(r.summary["strength"])) for name, r in res.items()}
    oriented = {name: r.vector for name, r in res.items()}

    random_rows = _random_rows(backend, oriented[baseline], test_task, chosen, controls, control_seed,
                               where(baseline, "behaviour"), common)  # fmt: skip
    tests, vals = [], []
    for name, r in res.items():
        site, s = chosen[name]
        own = r.results[r.results.split == "test"]
        rnd = random_rows[_at(random_rows, site, s)].assign(method=name) if controls else own.iloc[:0]
        tests.append(pd.concat([own, rnd], ignore_index=True))
        vals.append(r.effects[r.effects.split == "val"])
    test = pd.concat(tests, ignore_index=True)
    eff = cell_effects(test, metric)
    keep = pd.Series([np.isclose(f, chosen[m][1]) for m, f in zip(eff.method, eff.fraction, strict=True)],
                     index=eff.index)  # fmt: skip
    effects = eff[keep].assign(split="test").reset_index(drop=True)
    labels = None
    if "label" in test and test["label"].astype(str).str.len().gt(0).any():
        lab = label_effects(test, metric)
        labels = lab[[np.isclose(f, chosen[m][1]) for m, f in zip(lab.method, lab.fraction, strict=True)]]
        labels = labels.reset_index(drop=True)
    cost = None
    if cost_task is not None:
        grid = list(fractions if cost_fractions is None else cost_fractions)
        cost = _cost(backend, methods, oriented, chosen, baseline, cost_task, grid, controls, control_seed, scale,
                     folder, runner, progress)  # fmt: skip
    return Comparison(
        effects=effects,
        validation=pd.concat(vals, ignore_index=True),
        labels=labels,
        versus=_versus(test, metric, chosen, baseline),
        results=pd.concat([*(r.results for r in res.values()), random_rows.assign(split="test")], ignore_index=True),
        cost=cost,
        summaries={name: r.summary for name, r in res.items()},
        vectors=oriented,
    )


def _random_rows(backend, vector, task, chosen, controls, seed, folder, common) -> pd.DataFrame:
    """The random directions at every chosen (site, strength), run beside the oriented baseline in its test
    folder (whose unsteered cell, and the baseline's own chosen cell, are already there)."""
    frames = []
    for site in sorted({s for s, _ in chosen.values()}, key=lambda s: s.order):
        if site not in vector.sites:
            raise SteerlabError(f"a method was chosen at {site}, where the baseline has no direction to run random "
                                f"directions beside; give the baseline every candidate site")  # fmt: skip
        if not controls:
            continue
        at = sorted({f for s, f in chosen.values() if s == site})
        df = sweep(backend, vector.select([site]), task, fractions=[0.0, *at], controls=controls, controls_at=at,
                   control_seed=seed, out=folder / "test" / str(site) if folder else None, **common)  # fmt: skip
        frames.append(df[df.direction != "vector"])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _versus(test: pd.DataFrame, metric: str, chosen, baseline: str) -> pd.DataFrame:
    """The baseline's effect minus each method's, per test item (each in its own direction), Holm over methods."""
    d = test[(test.metric == metric) & (test.direction == "vector") & (test.example_id.astype(str) != "all")]

    def moved(name: str) -> pd.Series:
        site, s = chosen[name]
        g = d[(d.method == name) & (d.layer == site.layer) & (d.site == site.kind)]
        base = g[g.fraction == 0].set_index("example_id").value
        steered = g[np.isclose(g.fraction, s)].set_index("example_id").value
        return np.sign(s) * (steered - base.reindex(steered.index))

    ref = moved(baseline)
    rows = []
    for name in chosen:
        if name == baseline:
            continue
        other = moved(name).reindex(ref.index)
        ok = ref.notna() & other.notna()
        t = paired_test(ref[ok].to_numpy(), other[ok].to_numpy(), alternative="two-sided")
        n = int(t["n"])
        rows.append({"baseline": baseline, "method": name, "n": n, "difference": t["delta"], "lo": t["ci_low"],
                     "hi": t["ci_high"], "sd": t["sd"], "p": t["p"],
                     "mde": mde_paired(n, t["sd"]) if n >= MIN_UNITS and t["sd"] > 0 else np.nan})  # fmt: skip
    out = pd.DataFrame(rows)
    out["p_holm"] = holm(out.p.to_numpy()) if len(out) else []
    return out


def _cost(backend, methods, oriented, chosen, baseline, task, grid, controls, seed, scale, folder, runner,
          progress) -> pd.DataFrame:  # fmt: skip
    """The cost task swept with each oriented method at its chosen site (every position: raw text has no
    template), and random directions beside the baseline at the grid's positive strengths."""
    common = dict(fractions=grid, positions=ALL, scale=scale, runner=runner, progress=progress)
    add = {n: oriented[n].select([chosen[n][0]]) for n, m in methods.items() if m.edit is None}
    add_dir = folder / "cost" / "add" if folder else None
    frames = [sweep(backend, add, task, out=add_dir, **common)]
    at = [f for f in grid if f > 0]
    if controls and at:
        df = sweep(backend, add[baseline], task, controls=controls, controls_at=at, control_seed=seed, out=add_dir,
                   **common)  # fmt: skip
        frames.append(df[df.direction != "vector"])
    for name, m in methods.items():
        if m.edit is not None:
            frames.append(sweep(backend, oriented[name].select([chosen[name][0]]), task, edit=m.edit,
                                out=folder / "cost" / f"edit-{_slug(name)}" if folder else None, **common))  # fmt: skip
    return pd.concat(frames, ignore_index=True)
