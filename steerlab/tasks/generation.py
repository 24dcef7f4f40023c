"""`GenerationTask`: open-ended generations under the edits, scored per text (ActAdd: Turner et al. 2023).

Each prompt (a user message put in the chat template, or a raw prompt) is continued greedily for
``max_new_tokens`` tokens under the edits, and a scorer maps each generated text to one number (e.g.
`steerlab.scorers.VaderScorer` for sentiment, `steerlab.scorers.EmbeddingSimilarityScorer` for a topic).
The scorer is taken by duck typing: anything with ``name`` and ``__call__(texts) -> array``. Rows keep
the generated ``text``, so steered text can be read next to its score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from steerlab import memory
from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError, check_nonempty
from steerlab.sites import Edit
from steerlab.tasks.base import BaseTask, check_reuse
from steerlab.vectors import dataset_hash


@dataclass
class GenerationTask(BaseTask):
    """Greedy generations scored by ``scorer``: rows ``example_id, metric (= scorer.name), value, text``.

    Args:
        backend: The model.
        prompts: User messages (``chat=True``, put in the chat template) or raw prompts (``chat=False``).
        scorer: An object with ``name`` and ``__call__(texts) -> one float per text``.
        max_new_tokens: Tokens generated per prompt (generation stops early at the end-of-sequence token).
        chat: Format prompts with the chat template (`Backend.chat`).
        system: A system message for the chat template.
        batch_size: Prompts generated together (left-padded; default `steerlab.memory`'s setting, else 16; halved
            on out-of-memory).
        example_ids: One id per prompt (default: the index).

    Example:
        >>> task = GenerationTask(lm, ["Tell me about your day."] * 1, make_scorer("vader"))   # doctest: +SKIP
        >>> task.evaluate(steer(vec, 6.0, positions=ALL))                                       # doctest: +SKIP
    """

    backend: Backend
    prompts: list[str]
    scorer: Any
    max_new_tokens: int = 40
    chat: bool = True
    system: str | None = None
    batch_size: int | None = None
    example_ids: list | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        self.prompts = check_nonempty(self.prompts, "prompts", "pass at least one prompt to generate from")
        bad = [i for i, p in enumerate(self.prompts) if not isinstance(p, str) or not p.strip()]
        if bad:
            raise SteerlabError(f"prompts at indices {bad[:10]} are empty or not strings; drop them")
        if not (hasattr(self.scorer, "name") and callable(self.scorer)):
            raise SteerlabError(
                f"scorer must have a name and be callable on a list of texts, got {type(self.scorer).__name__}; "
                "use steerlab.scorers.make_scorer('vader') or make_scorer('embedding:\"TEXT\"')"
            )
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise SteerlabError(f"max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        self.batch_size = memory.batch_size(self.batch_size)
        if self.example_ids is None:
            self.example_ids = list(range(len(self.prompts)))
        if len(self.example_ids) != len(self.prompts):
            raise SteerlabError(f"{len(self.example_ids)} example_ids for {len(self.prompts)} prompts; give one each")
        self.formatted = [self.backend.chat(p, system=self.system) if self.chat else p for p in self.prompts]
        self._chat_prompts = self.formatted if self.chat else None

    @property
    def metrics(self) -> tuple[str]:
        """``(scorer.name,)``: the score of each generated text is the target."""
        return (str(self.scorer.name),)

    def fingerprint(self) -> str:
        return dataset_hash([self.formatted, self.max_new_tokens, str(self.scorer.name), self.backend.name])

    def norm_prompts(self) -> list[str]:
        return list(self.formatted)

    def generate(self, edits: Sequence[Edit] = ()) -> list[str]:
        """The generated continuations under ``edits`` (special tokens removed), one per prompt."""
        def run(start: int, stop: int) -> list[str]:
            chunk = self.formatted[start:stop]
            chunk_edits = self.resolve_edits(edits, chunk if self.chat else None)
            return self.backend.generate(chunk, edits=chunk_edits, max_new_tokens=self.max_new_tokens)

        chunks = memory.halving(len(self.formatted), self.batch_size, run, what="batch of prompts")
        return [text for chunk in tqdm(chunks, desc="generate", disable=not self.progress) for text in chunk]

    def evaluate(self, edits: Sequence[Edit] = (), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Rows ``example_id, metric, value, text``: each generation's score under ``edits``."""
        check_reuse(self, reuse_prefix)
        texts = self.generate(edits)
        values = np.asarray(self.scorer(texts), dtype=float)
        if values.shape != (len(texts),):
            raise SteerlabError(f"scorer {self.scorer.name!r} returned shape {values.shape} for {len(texts)} texts; "
                                "it must return one number per text")  # fmt: skip
        return pd.DataFrame({"example_id": self.example_ids, "metric": self.metrics[0], "value": values,
                             "text": texts})  # fmt: skip
