"""Positive controls: effects known to exist, which the protocol must find before its nulls mean anything.

ActAdd (Turner et al. 2023, "Steering Language Models With Activation Engineering") steers open-ended text
towards a sentiment or a topic ("weddings") with a direction made from contrasting texts. A toolkit for
science must first find such an effect where one exists; `steerlab.protocol.evaluate_vector` with a
`steerlab.tasks.GenerationTask` does, and this package ships what it needs:

| file (package data)  | what                                                                             |
|----------------------|----------------------------------------------------------------------------------|
| ``sentiment.csv``    | 24 positive (label 1) and 24 negative (label 0) hand-written sentences, in pairs  |
|                      | that share their wording except for the sentiment words                           |
| ``weddings.csv``     | 20 sentences about weddings (label 1) and 20 about other everyday things (label 0) |
| ``prompts.txt``      | 60 neutral chat prompts (no sentiment, no wedding) to generate from               |

The CSV files are in the ``text,label`` format of `steerlab.data.load_text_label`, so the command line
takes them as they are (`path` gives their location)::

    steerlab sweep --data "$(python -c 'import steerlab.positive_controls as p; print(p.path("sentiment"))')" \\
        --format text-label --eval generate --prompts PROMPTS.txt --scorer vader

What the package adds to the protocol: `sentences` and `prompts` (the data), `prompt_split` (validation
and test prompts), `rescore` (score a sweep's generated texts again with another scorer, e.g. the embedding
scorer after VADER, without generating again), `label_curves` (per-label effects with a per-label random
band, for a Yes/No control), and `clears_band` (the margin by which a positive control must beat the
random band).

Example:
    >>> len(sentences("sentiment")), len(prompts())
    (48, 60)
    >>> clears_band(0.8, (0.6, 1.0), (-0.2, 0.2))   # beyond the band's edge by more than half its width
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from steerlab.data import TextItem, load_text_label, sample
from steerlab.effects import cell_effects, metric_rows
from steerlab.errors import SteerlabError

__all__ = ["CONTROLS", "MARGIN", "clears_band", "example_texts", "label_curves", "path", "prompt_split", "prompts",
           "rescore", "sentences"]  # fmt: skip

CONTROLS: dict[str, str] = {
    "sentiment": "positive (label 1) vs negative (label 0) sentences (ActAdd's Love - Hate, as sentences)",
    "weddings": "sentences about weddings (label 1) vs about other everyday things (label 0) (ActAdd's topic)",
}
"""The labelled-sentence sets shipped here: name -> what label 1 and label 0 are."""

MARGIN = 0.5
"""A positive control passes when its effect lies beyond the random band's edge by at least this fraction of
the band's width, and its 95% interval lies wholly outside the band (`clears_band`)."""


def path(name: str) -> Path:
    """The packaged file of a control (``"sentiment"``, ``"weddings"``) or of the prompts (``"prompts"``)."""
    files = {**{k: f"{k}.csv" for k in CONTROLS}, "prompts": "prompts.txt"}
    if name not in files:
        raise SteerlabError(f"unknown positive-control file {name!r}; valid: {', '.join(files)}")
    return Path(str(resources.files(__name__).joinpath(files[name])))


def sentences(name: str) -> list[TextItem]:
    """The labelled sentences of a control (see `CONTROLS`), as `TextItem`s (label 1 = the direction's target).

    Example:
        >>> sorted({it.label for it in sentences("weddings")})
        [0, 1]
    """
    if name not in CONTROLS:
        raise SteerlabError(f"unknown positive control {name!r}; valid: {', '.join(CONTROLS)}")
    return load_text_label(path(name))


def prompts() -> list[str]:
    """The 60 neutral chat prompts (user messages), in file order."""
    lines = path("prompts").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def prompt_split(n_val: int, n_test: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Disjoint validation and test prompts, drawn with ``random.Random(seed)`` from `prompts`.

    Raises:
        SteerlabError: If ``n_val + n_test`` exceeds the 60 prompts or either is below 1.
    """
    pool = prompts()
    if min(n_val, n_test) < 1 or n_val + n_test > len(pool):
        raise SteerlabError(f"n_val={n_val} and n_test={n_test} must each be >= 1 and sum to at most the "
                            f"{len(pool)} prompts; ask for fewer")  # fmt: skip
    drawn = sample(pool, n_val + n_test, seed)
    return drawn[:n_val], drawn[n_val:]


def rescore(results: pd.DataFrame, scorer: Any, metric: str | None = None) -> pd.DataFrame:
    """The rows of a generation sweep scored again by ``scorer`` from their ``text`` (nothing is generated).

    Args:
        results: a `steerlab.sweeps.sweep` (or `steerlab.protocol.ProtocolResult.results`) frame of a
            `steerlab.tasks.GenerationTask`, with a ``text`` column.
        scorer: anything with ``name`` and ``__call__(texts) -> one float per text``
            (`steerlab.scorers.make_scorer`).
        metric: the metric whose rows are rescored (default: the only one present).

    Returns:
        Those rows with ``metric = scorer.name`` and ``value`` the new score; each distinct text is scored once.
    """
    if "text" not in results:
        raise SteerlabError("rescore needs the generated texts: pass the results of a GenerationTask sweep "
                            f"(it has a 'text' column); columns: {list(results.columns)}")  # fmt: skip
    if metric is None:
        present = sorted(results.metric.unique())
        if len(present) != 1:
            raise SteerlabError(f"the frame has metrics {present}; say which to rescore with metric=...")
        metric = present[0]
    rows = metric_rows(results, metric)
    texts = list(dict.fromkeys(rows.text.astype(str)))
    values = [float(v) for v in scorer(texts)]
    if len(values) != len(texts):
        raise SteerlabError(f"scorer {scorer.name!r} returned {len(values)} scores for {len(texts)} texts")
    score = dict(zip(texts, values, strict=True))
    return rows.assign(metric=str(scorer.name), value=[score[t] for t in rows.text.astype(str)])


def example_texts(
    results: pd.DataFrame, strength: float, prompts: Sequence[str] | None = None, *, n: int = 2, width: int = 160
) -> pd.DataFrame:
    """Generated texts to read beside the scores: the first ``n`` test items unsteered, with the vector at
    ``+strength`` and ``-strength``, and with random direction 0 at ``+strength``.

    Args:
        results: `steerlab.protocol.ProtocolResult.results` of a generation task (rows with ``text``).
        strength: the strength (in the sweep's unit) to show, e.g. the chosen one.
        prompts: the test prompts, to name each item (default: its example id).
        n: items shown.
        width: characters kept of each text (new lines become spaces).

    Returns:
        Rows ``prompt, cell, score, text``, grouped by prompt.
    """
    if "text" not in results:
        raise SteerlabError("example_texts needs a generation task's results (a 'text' column)")
    r = results[results["split"] == "test"] if "split" in results else results
    x = "fraction" if r["fraction"].notna().all() else "coeff"
    ids = list(dict.fromkeys(r.example_id))[:n]
    r = r[r.example_id.isin(ids)]
    cells = {"unsteered": (r[x] == 0), f"vector {strength:+g}": (r.direction == "vector") & (r[x] == strength),
             f"vector {-strength:+g}": (r.direction == "vector") & (r[x] == -strength),
             f"random:0 {strength:+g}": (r.direction == "random:0") & (r[x] == strength)}  # fmt: skip
    rows = []
    for i in ids:
        for name, mask in cells.items():
            for v, t in r[mask & (r.example_id == i)][["value", "text"]].itertuples(index=False):
                rows.append({"prompt": prompts[int(i)] if prompts is not None else i, "cell": name, "score": float(v),
                             "text": str(t).strip().replace("\n", " ")[:width]})  # fmt: skip
    return pd.DataFrame(rows, columns=["prompt", "cell", "score", "text"])


def label_curves(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`steerlab.effects.cell_effects` on each answer label's items alone, with a ``label`` column.

    Unlike `steerlab.effects.label_effects`, each label gets its own random band: a random direction can
    push one answer token too, so a label's effect is read against what random directions do to that label.
    """
    rows = metric_rows(results, metric)
    if "label" not in rows or not rows["label"].astype(str).str.len().gt(0).any():
        raise SteerlabError("label_curves needs answer labels (a ChoiceTask's rows); this frame has none")
    labels = sorted(rows["label"].astype(str).unique())
    return pd.concat([cell_effects(rows[rows["label"].astype(str) == lab], metric).assign(label=lab)
                      for lab in labels], ignore_index=True)  # fmt: skip


def clears_band(effect: float, ci: Sequence[float], band: Sequence[float], margin: float = MARGIN) -> bool:
    """Whether an effect beats the random band clearly: beyond the band's edge, on the effect's side, by at
    least ``margin`` times the band's width, with its whole interval outside the band.

    Example:
        >>> clears_band(-0.86, (-1.15, -0.58), (-0.39, 0.25))
        True
        >>> clears_band(0.30, (0.10, 0.50), (-0.39, 0.25))   # beyond the edge, but not by half the width
        False
    """
    lo, hi = (float(x) for x in ci)
    b_lo, b_hi = (float(x) for x in band)
    if not all(math.isfinite(x) for x in (effect, lo, hi, b_lo, b_hi)):
        return False
    need = margin * (b_hi - b_lo)
    if effect > b_hi:
        return effect - b_hi >= need and lo > b_hi
    if effect < b_lo:
        return b_lo - effect >= need and hi < b_lo
    return False
