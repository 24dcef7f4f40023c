"""One behaviour under the evaluation protocol: the first step the CAE notebooks share (Hao et al. 2025,
arXiv 2505.03189).

`run_behaviour` splits a behaviour's contrast pairs into label-balanced train / validation / test parts
(`steerlab.data.balanced_split`), builds the CAA mean-difference vector from the training pairs' activations at
the answer token, and runs `steerlab.protocol.evaluate_vector` at CAE's steered positions (every position,
`steerlab.positions.default_positions("cae")`): orientation and the choice of sign and strength on validation,
the effect on test beside norm-matched random directions, per answer label, with its minimum detectable effect.

Everything is cached under ``out`` (activations, the typical token norm, the resumable sweeps), so the
notebooks of one family can share a behaviour's run and a killed run resumes where it stopped.
`BehaviourRun.evaluate` runs another task (open-ended prompts, prompts with adversarial suffixes, vectors from
fewer pairs) at the chosen site and strength through `steerlab.sweeps.sweep`, with the same random directions.

Example:
    >>> pairs = load_persona("agreeableness")                                         # doctest: +SKIP
    >>> run = run_behaviour(lm, "agreeableness", pairs, [10], out="runs/agreeableness")  # doctest: +SKIP
    >>> run.result.summary["verdict"]                                                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from steerlab.activations import PairActivations, collect_pairs
from steerlab.backends.base import Backend
from steerlab.caching import cached
from steerlab.data import balanced_split
from steerlab.errors import SteerlabError
from steerlab.extraction import extract
from steerlab.interventions import steer
from steerlab.positions import default_positions
from steerlab.protocol import ProtocolResult, evaluate_vector
from steerlab.sites import Site
from steerlab.stats import MIN_UNITS, holm
from steerlab.sweeps import NORM_PROMPTS, sweep
from steerlab.tasks import ChoiceTask, Task
from steerlab.vectors import SteeringVector, dataset_hash

__all__ = ["CAE_POSITIONS", "BehaviourRun", "p_values", "run_behaviour"]

CAE_POSITIONS = default_positions("cae")
"""CAE adds the vector at every position (the prompt's and every generated token)."""


@dataclasses.dataclass
class BehaviourRun:
    """A behaviour's splits, vector and protocol result (make it with `run_behaviour`).

    Attributes:
        name: the behaviour.
        train, val, test: the label-balanced contrast pairs of each part.
        acts: the training pairs' activations at the answer token (every candidate site).
        vector: the CAA mean difference as extracted (before orientation).
        scale: ``{site: typical token norm}`` on the validation prompts (strengths are fractions of it).
        result: `steerlab.protocol.evaluate_vector`'s result; ``result.vector`` is the oriented vector.
        test_task: the test items as a `ChoiceTask`.
        out: the folder of the run's caches and sweeps.
    """

    name: str
    train: list
    val: list
    test: list
    acts: PairActivations
    vector: SteeringVector
    scale: dict[Site, float]
    result: ProtocolResult
    test_task: ChoiceTask
    out: Path

    @property
    def site(self) -> Site:
        """The site chosen on validation."""
        return Site.parse(self.result.summary["site"])

    @property
    def fraction(self) -> float:
        """The strength chosen on validation, as a fraction of the site's typical token norm (either sign)."""
        return float(self.result.summary["strength"])

    @property
    def coeff(self) -> float:
        """The raw coefficient of the oriented vector at the chosen strength."""
        return float(self.result.summary["coeff"])

    @property
    def oriented(self) -> SteeringVector:
        """The vector oriented on validation, at the chosen site only."""
        return self.result.vector.select([self.site])

    @property
    def flipped(self) -> bool:
        """Whether orientation reversed the extracted vector at the chosen site."""
        return str(self.site) in self.result.summary["orientation"]["flipped_sites"]

    @property
    def test_folder(self) -> Path:
        """The folder of the protocol's test sweep (its unsteered cell is shared by `evaluate` on the test task)."""
        return self.out / "protocol" / "test" / str(self.site)

    def edits(self) -> list:
        """The chosen cell as edits: the oriented vector at the chosen site and coefficient, at CAE's positions."""
        return steer(self.oriented, self.coeff, positions=CAE_POSITIONS)

    def evaluate(
        self,
        backend: Backend,
        task: Task,
        out: str | Path,
        *,
        vectors: SteeringVector | Mapping | None = None,
        controls: int = 8,
        progress: bool = False,
        on_cell: Callable[[str], None] | None = None,
    ) -> pd.DataFrame:
        """``task`` unsteered and at the chosen site and strength, with ``controls`` random directions there.

        Args:
            task: any `steerlab.tasks.Task` (open-ended prompts, other items).
            out: the sweep's folder (resumable); pass `test_folder` with ``self.test_task`` to share its
                unsteered cell.
            vectors: other vectors to put in the chosen cell (default: the oriented vector), e.g. vectors from
                subsets of the training pairs, oriented the same way; the chosen fraction sets each one's norm.
        """
        vectors = self.oriented if vectors is None else vectors
        return sweep(backend, vectors, task, fractions=[0.0, self.fraction], scale=self.scale, sites=[self.site],
                     positions=CAE_POSITIONS, controls=controls, out=out, progress=progress,
                     on_cell=on_cell)  # fmt: skip


def run_behaviour(
    backend: Backend,
    name: str,
    pairs: Sequence,
    sites: Sequence[Site | str | int],
    *,
    out: str | Path,
    sizes: Sequence[int] = (256, 100, 100),
    fractions: Sequence[float] = (-0.5, -0.25, 0.25, 0.5),
    controls: int = 8,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = False,
    runner=None,
) -> BehaviourRun:
    """Split, extract, and evaluate one behaviour's CAA vector under the protocol (see the module docstring).

    Args:
        backend: the model.
        name: the behaviour (recorded in the vector's provenance).
        pairs: its contrast pairs (both answer orders, for the balanced split).
        sites: candidate sites; orientation, site and strength are chosen among them on validation.
        out: the folder of caches and sweeps (a rerun reads them back; a run with other pairs refuses it).
        sizes: (train, validation, test) pairs.
        fractions: nonzero strengths of the validation grid, fractions of the typical token norm (0 is added).
        controls: random directions at the chosen cell on test.
        seed: the split's seed.
        batch_size: items per forward pass.
        runner: passed to `steerlab.sweeps.sweep` (e.g. to count computed cells, or several workers).
    """
    if len(sizes) != 3:
        raise SteerlabError(f"sizes must be (train, validation, test), got {tuple(sizes)}")
    train, val, test = balanced_split(pairs, sizes, seed=seed)
    out = Path(out)
    sites = [backend.site(s) for s in sites]
    tag = dataset_hash([train, [str(s) for s in sites], backend.name])[:12]
    acts = cached(out / f"acts-{tag}.pt", lambda: collect_pairs(backend, train, sites, batch_size=batch_size,
                                                                 progress=progress))  # fmt: skip
    vector = extract(backend, train, sites, "caa", activations=acts, dataset=name, progress=False)
    val_task = ChoiceTask.from_pairs(backend, val, batch_size=batch_size)
    test_task = ChoiceTask.from_pairs(backend, test, batch_size=batch_size)

    def norms() -> dict[Site, float]:
        from steerlab.scale import typical_norm

        return typical_norm(backend, val_task.norm_prompts()[:NORM_PROMPTS], sites)

    scale = cached(out / f"scale-{dataset_hash([val, [str(s) for s in sites], backend.name])[:12]}.pt", norms)
    result = evaluate_vector(backend, vector, val_task, test_task, fractions=[0.0, *fractions],
                             positions=CAE_POSITIONS, controls=controls, scale=scale, out=out / "protocol",
                             runner=runner, progress=progress)  # fmt: skip
    return BehaviourRun(name, train, val, test, acts, vector, dict(scale), result, test_task, out)


def p_values(effects: pd.DataFrame, *, family: Sequence[str] | None = None) -> pd.DataFrame:
    """Two-sided paired t-test p-values of `steerlab.effects.cell_effects` rows, Holm-adjusted within ``family``.

    Each row's p comes from its effect, ``sd`` and ``n`` (``t = effect / (sd / sqrt(n))``, ``n - 1`` degrees of
    freedom): the same test as its interval. ``p_holm`` corrects over the rows that share the ``family`` columns
    (default: all rows), i.e. over the comparisons a claim makes. Rows with fewer than 3 units get NaN.

    Example:
        >>> eff = pd.DataFrame({"effect": [0.1, 0.0], "sd": [0.2, 0.2], "n": [100, 100]})
        >>> p_values(eff)[["p", "p_holm"]].round(4).values.tolist()
        [[0.0, 0.0], [1.0, 1.0]]
    """
    missing = {"effect", "sd", "n"} - set(effects.columns)
    if missing:
        raise SteerlabError(f"p_values needs cell_effects columns; {sorted(missing)} are missing")
    out = effects.copy()
    n = out["n"].to_numpy(dtype=float)
    se = out["sd"].to_numpy(dtype=float) / np.sqrt(np.maximum(n, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = out["effect"].to_numpy(dtype=float) / se
    p = 2 * sps.t.sf(np.abs(t), np.maximum(n - 1, 1))
    p[(n < MIN_UNITS) | ~np.isfinite(t)] = math.nan
    p[(se == 0) & (out["effect"].to_numpy() == 0)] = 1.0
    out["p"] = p
    out["p_holm"] = math.nan
    groups = [np.arange(len(out))] if not family else out.groupby(list(family), sort=False).indices.values()
    for idx in groups:
        idx = np.asarray(idx)
        ok = idx[np.isfinite(p[idx])]
        if len(ok):
            out.iloc[ok, out.columns.get_loc("p_holm")] = holm(p[ok])
    return out
