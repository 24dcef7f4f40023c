"""Tasks on raw texts (no chat template): labelled log-likelihood, and perplexity as a cost.

- `TextLoglikTask`: the mean token log-likelihood of labelled texts, label 1 against label 0. Steering
  towards label-1 text should raise label-1 texts' likelihood and lower label-0 texts'.
- `PerplexityTask`: the mean token negative log-likelihood of texts (the fluency cost of an edit, as
  CAE's perplexity curves: Im & Li 2025).

Both score every token (`steerlab.metrics.text_nll`), so no prompt prefix can be reused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from steerlab import memory
from steerlab.backends.base import Backend
from steerlab.data import DataError
from steerlab.errors import SteerlabError, check_nonempty
from steerlab.metrics import text_nll_many
from steerlab.sites import Edit
from steerlab.tasks.base import BaseTask, check_reuse
from steerlab.vectors import dataset_hash


@dataclass
class TextLoglikTask(BaseTask):
    """Mean token log-likelihood of labelled raw texts under the (edited) model.

    Each text's log-likelihood is its mean next-token log-likelihood over its first ``max_tokens`` tokens.
    Rows per text: ``loglik_toward``, the target: ``+loglik`` for label-1 texts and ``-loglik`` for label-0
    texts, weighted by ``n / n_label`` so that its mean over the texts is ``loglik_gap`` (a per-text unit
    for paired intervals; weight 2 on a balanced set); ``loglik_pos`` / ``loglik_neg`` (the plain
    value, by label); ``label`` is ``"1"`` or ``"0"``. One ``loglik_gap`` row (``example_id="all"``): the mean
    over label-1 texts minus the mean over label-0 texts.
    """

    backend: Backend
    texts: list[str]
    labels: list[int]
    example_ids: list
    max_tokens: int = 256
    batch_size: int | None = None
    metrics: ClassVar[tuple[str, ...]] = ("loglik_toward", "loglik_gap", "loglik_pos", "loglik_neg")

    def __post_init__(self) -> None:
        self.batch_size = memory.batch_size(self.batch_size, 16)
        if not self.texts:
            raise SteerlabError("the evaluation set is empty; pass at least one text of each label")
        if not len(self.texts) == len(self.labels) == len(self.example_ids):
            raise SteerlabError(
                f"{len(self.texts)} texts, {len(self.labels)} labels and {len(self.example_ids)} ids; give one of each "
                "per text"
            )
        if sorted(set(self.labels)) != [0, 1]:
            found = sorted(set(self.labels))
            raise SteerlabError(f"labels must be 0 and 1, both present (1 = the direction to steer to); got {found}")

    @classmethod
    def from_items(
        cls, backend: Backend, items: Sequence, *, max_tokens: int = 256, batch_size: int | None = None
    ) -> TextLoglikTask:
        """From records with ``text``, ``label`` (0 or 1) and ``meta`` (such as `steerlab.data.TextItem`);
        a text of fewer than two tokens has no token log-likelihood and is refused, naming its record."""
        for it in items:
            if len(backend.tokenize(it.text).input_ids[0]) < 2:
                source, where = it.meta.get("source", "the data file"), it.meta.get("line", it.meta.get("index", "?"))
                raise DataError(
                    f"{source}, record at {where}: the text {it.text!r} has fewer than 2 tokens, so it has no "
                    "per-token log-likelihood; drop very short texts"
                )
        ids = [it.meta.get("id", i) for i, it in enumerate(items)]
        return cls(backend, [it.text for it in items], [it.label for it in items], ids, max_tokens, batch_size)

    def fingerprint(self) -> str:
        """A hash of the texts, labels, token cut and model."""
        return dataset_hash([self.texts, self.labels, self.max_tokens, self.backend.name])

    def norm_prompts(self) -> list[str]:
        return list(self.texts)

    def evaluate(self, edits: Sequence[Edit] = (), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Per-text rows, then the ``loglik_gap`` row, under ``edits``."""
        return self.evaluate_many([edits], reuse_prefix=reuse_prefix)[0]

    def evaluate_many(self, edit_sets: Sequence, *, reuse_prefix: bool = False) -> list[pd.DataFrame]:
        """`evaluate` under each edit set; each batch of texts runs once for all of them (a shared trunk)."""
        check_reuse(self, reuse_prefix)
        sets = [self.resolve_edits(e) for e in edit_sets]
        losses = text_nll_many(self.backend, self.texts, sets, max_tokens=self.max_tokens, batch_size=self.batch_size)
        return [self._frame(nll, n) for nll, n in losses]

    def _frame(self, nll, n) -> pd.DataFrame:
        ll = (-(nll / n.clamp(min=1))).tolist()
        counts = {y: self.labels.count(y) for y in (0, 1)}
        rows = []
        for i, y, v in zip(self.example_ids, self.labels, ll, strict=True):
            weight = len(self.labels) / counts[y]
            rows.append({"example_id": i, "metric": "loglik_toward", "value": (v if y == 1 else -v) * weight,
                         "label": str(y)})  # fmt: skip
            rows.append({"example_id": i, "metric": "loglik_pos" if y == 1 else "loglik_neg", "value": v,
                         "label": str(y)})  # fmt: skip
        pos = [v for y, v in zip(self.labels, ll, strict=True) if y == 1]
        neg = [v for y, v in zip(self.labels, ll, strict=True) if y == 0]
        rows.append({"example_id": "all", "metric": "loglik_gap", "value": sum(pos) / len(pos) - sum(neg) / len(neg)})
        return pd.DataFrame(rows)


@dataclass
class PerplexityTask(BaseTask):
    """Mean token negative log-likelihood of raw texts under the (edited) model: the fluency cost of an edit.

    Rows: ``nll`` per text (mean over its first ``max_tokens`` tokens; the target, so a positive effect is
    a cost) and one ``perplexity`` row (``example_id="all"``): ``exp`` of the token-weighted mean NLL.

    Example:
        >>> PerplexityTask(lm, data.load_text("wikitext2")[:32]).evaluate(steer(vec, 4.0))   # doctest: +SKIP
    """

    backend: Backend
    texts: list[str]
    max_tokens: int = 256
    batch_size: int | None = None
    example_ids: list | None = None
    metrics: ClassVar[tuple[str, ...]] = ("nll", "perplexity")

    def __post_init__(self) -> None:
        self.batch_size = memory.batch_size(self.batch_size, 8)
        self.texts = check_nonempty(self.texts, "texts", "pass at least one text of two or more tokens")
        if self.example_ids is None:
            self.example_ids = list(range(len(self.texts)))
        if len(self.example_ids) != len(self.texts):
            raise SteerlabError(f"{len(self.example_ids)} example_ids for {len(self.texts)} texts; give one per text")

    def fingerprint(self) -> str:
        return dataset_hash([self.texts, self.max_tokens, self.backend.name, "perplexity"])

    def norm_prompts(self) -> list[str]:
        return list(self.texts)

    def evaluate(self, edits: Sequence[Edit] = (), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Per-text ``nll`` rows and the ``perplexity`` row under ``edits``."""
        return self.evaluate_many([edits], reuse_prefix=reuse_prefix)[0]

    def evaluate_many(self, edit_sets: Sequence, *, reuse_prefix: bool = False) -> list[pd.DataFrame]:
        """`evaluate` under each edit set; each batch of texts runs once for all of them (a shared trunk)."""
        check_reuse(self, reuse_prefix)
        sets = [self.resolve_edits(e) for e in edit_sets]
        losses = text_nll_many(self.backend, self.texts, sets, max_tokens=self.max_tokens, batch_size=self.batch_size)
        return [self._frame(nll, n) for nll, n in losses]

    def _frame(self, nll, n) -> pd.DataFrame:
        if int(n.sum()) == 0:
            raise SteerlabError("perplexity needs texts of at least two tokens; all texts given are one token long")
        mean = (nll / n.clamp(min=1)).tolist()
        rows = [{"example_id": i, "metric": "nll", "value": v} for i, v in zip(self.example_ids, mean, strict=True)]
        rows.append({"example_id": "all", "metric": "perplexity",
                     "value": math.exp(float(nll.double().sum()) / int(n.sum()))})  # fmt: skip
        return pd.DataFrame(rows)
