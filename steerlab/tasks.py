"""Evaluation tasks: what a sweep measures in each cell, prepared once and evaluated under any edits.

A `Task` is anything with ``metrics`` (names; the first is the target metric a sweep's effect and
best layer are read from), ``fingerprint()`` (a hash of everything the numbers depend on, so a
resumed sweep refuses a different task), ``evaluate(edits)`` (a tidy frame ``example_id, metric,
value``) and ``can_reuse_prefix`` (whether, when only the last prompt token is steered, the task can
reuse the cached key/value prefix of everything before it).

- `ChoiceTask`: the next token compared over candidate answers (behaviour probability on contrast
  pairs, CAA: Rimsky et al. 2024; MCQ accuracy by option letter, PAS: Cui & Chen 2025). It keeps
  each batch's prompt prefix cached, so with last-token steering a cell costs one token per prompt.
- `TextLoglikTask`: the mean token log-likelihood of labelled raw texts, label 1 against label 0
  (``loglik_gap``): a steering vector towards label-1 text should raise it.

Example:
    >>> task = ChoiceTask.from_pairs(lm, test_pairs)                       # doctest: +SKIP
    >>> task.evaluate(steer(vec, 4.0, positions=LAST_PROMPT), reuse_prefix=True)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import pandas as pd
import torch

from steerlab.backends.base import Backend
from steerlab.data import DataError
from steerlab.errors import SteerlabError
from steerlab.metrics import text_nll
from steerlab.prompts import choice_setup, mcq_setup
from steerlab.sites import Batch, Edit, Prefix
from steerlab.vectors import dataset_hash


@runtime_checkable
class Task(Protocol):
    """What `steerlab.sweeps.sweep` evaluates in every cell (see the module docstring)."""

    can_reuse_prefix: ClassVar[bool]

    @property
    def metrics(self) -> tuple[str, ...]:
        """Metric names; the first is the target metric."""
        ...

    def fingerprint(self) -> str:
        """A hash of everything the task's numbers depend on (data, settings, model name)."""
        ...

    def evaluate(self, edits: Sequence[Edit] = (), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Rows ``example_id, metric, value`` under ``edits``; ``reuse_prefix`` only where `can_reuse_prefix`."""
        ...


@dataclass
class ChoiceTask:
    """A prepared choice evaluation: each prompt's next token is compared over candidate tokens.

    ``kind="behaviour"`` (contrast pairs; candidate 0 is the behaviour-matching answer) reports
    ``p_behaviour`` (probability normalised over the two answers, as in CAA) and ``logit_diff``;
    ``kind="mcq"`` reports ``accuracy`` and ``p_correct``.
    """

    backend: Backend
    prompts: list[str]
    candidates: list[list[int]]
    targets: list[int]
    example_ids: list
    kind: str = "behaviour"
    batch_size: int = 16
    can_reuse_prefix: ClassVar[bool] = True
    _batches: list[Batch] = field(default_factory=list, repr=False)
    _prefixes: dict[int, Prefix] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise SteerlabError("the evaluation set is empty; pass at least one item")
        self._batches = [
            self.backend.tokenize(self.prompts[i : i + self.batch_size])
            for i in range(0, len(self.prompts), self.batch_size)
        ]

    @classmethod
    def from_pairs(
        cls, backend: Backend, pairs: Sequence, *, system: str | None = None, batch_size: int = 16
    ) -> ChoiceTask:
        """Behaviour probability on A/B or Yes/No contrast pairs."""
        setups = [choice_setup(backend, p.prompt, [p.positive, p.negative], system) for p in pairs]
        ids = [p.meta.get("id", i) if hasattr(p, "meta") else i for i, p in enumerate(pairs)]
        return cls(
            backend, [s[0] for s in setups], [s[1] for s in setups], [0] * len(pairs), ids, "behaviour", batch_size
        )

    @classmethod
    def from_mcq(cls, backend: Backend, items: Sequence, *, chat: bool = True, system: str | None = None,
                 batch_size: int = 16) -> ChoiceTask:  # fmt: skip
        """Multiple-choice accuracy by option-letter logits (the PAS prompt format)."""
        setups = [mcq_setup(backend, it, chat=chat, system=system, index=i) for i, it in enumerate(items)]
        ids = [it.meta.get("id", i) if hasattr(it, "meta") else i for i, it in enumerate(items)]
        targets = [int(it.answer) for it in items]
        return cls(backend, [s[0] for s in setups], [s[1] for s in setups], targets, ids, "mcq", batch_size)

    @property
    def metrics(self) -> tuple[str, str]:
        """``("p_behaviour", "logit_diff")`` or ``("accuracy", "p_correct")``; the first is the target."""
        return ("p_behaviour", "logit_diff") if self.kind == "behaviour" else ("accuracy", "p_correct")

    def fingerprint(self) -> str:
        """A hash of the prompts, compared tokens, targets and model (a sweep folder refuses another task)."""
        return dataset_hash([self.prompts, self.candidates, self.targets, self.backend.name])

    def _prefix(self, index: int) -> Prefix:
        if index not in self._prefixes:
            b = self._batches[index]
            self._prefixes[index] = self.backend.prefix(Batch(b.input_ids[:, :-1], b.attention_mask[:, :-1]))
        return self._prefixes[index]

    def last_logits(self, edits=(), *, reuse_prefix: bool = False) -> list[torch.Tensor]:
        """Next-token logits at the last prompt position, one ``[batch, vocab]`` tensor per batch."""
        out = []
        for i, b in enumerate(self._batches):
            result = self.prefix_forward(i, edits=edits) if reuse_prefix else self.backend.forward(b, edits=edits)
            out.append(result.logits[:, -1].float())
        return out

    def prefix_forward(self, index: int, extra: torch.Tensor | None = None, *, edits=(), record=()):
        """Batch ``index``'s last prompt token (then ``extra`` token ids ``[batch, k]``, if given) run on
        its cached prefix; returns the backend's `ForwardOutput` (logits and ``record`` activations).
        Used to read activations at the answer position without recomputing the prompt."""
        b = self._batches[index]
        ids, mask = b.input_ids[:, -1:], b.attention_mask[:, -1:]
        if extra is not None:
            ids = torch.cat([ids, extra.to(ids.device, ids.dtype)], dim=1)
            mask = torch.cat([mask, torch.ones_like(extra, dtype=mask.dtype, device=mask.device)], dim=1)
        return self.backend.forward(Batch(ids, mask), prefix=self._prefix(index), edits=edits, record=record)

    def evaluate(self, edits=(), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Per-example rows ``example_id, metric, value`` under ``edits``."""
        logits = torch.cat(self.last_logits(edits, reuse_prefix=reuse_prefix)).cpu()
        rows = []
        for i, (cands, target) in enumerate(zip(self.candidates, self.targets, strict=True)):
            lg = logits[i, cands]
            p = torch.softmax(lg, -1)[target]
            if self.kind == "behaviour":
                values = (float(p), float(lg[0] - lg[1]))
            else:
                values = (float(int(lg.argmax()) == target), float(p))
            rows += [
                {"example_id": self.example_ids[i], "metric": m, "value": v}
                for m, v in zip(self.metrics, values, strict=True)
            ]
        return pd.DataFrame(rows)


@dataclass
class TextLoglikTask:
    """Mean token log-likelihood of labelled raw texts (no chat template) under the (edited) model.

    Each text's value is its mean next-token log-likelihood over its first ``max_tokens`` tokens
    (`steerlab.metrics.text_nll`). Rows: ``loglik_pos`` / ``loglik_neg`` for each label-1 / label-0
    text, and one ``loglik_gap`` row (``example_id="all"``): the mean over label-1 texts minus the mean
    over label-0 texts, the target metric. Every token is scored, so no prompt prefix can be reused.
    """

    backend: Backend
    texts: list[str]
    labels: list[int]
    example_ids: list
    max_tokens: int = 256
    batch_size: int = 16
    can_reuse_prefix: ClassVar[bool] = False
    metrics: ClassVar[tuple[str, ...]] = ("loglik_gap", "loglik_pos", "loglik_neg")

    def __post_init__(self) -> None:
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
        cls, backend: Backend, items: Sequence, *, max_tokens: int = 256, batch_size: int = 16
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

    def evaluate(self, edits: Sequence[Edit] = (), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Per-text ``loglik_pos`` / ``loglik_neg`` rows, then the ``loglik_gap`` row, under ``edits``."""
        if reuse_prefix:
            raise SteerlabError("a text log-likelihood scores every token, so there is no prefix to reuse; "
                                "evaluate with reuse_prefix=False")  # fmt: skip
        nll, n = text_nll(self.backend, self.texts, edits=edits, max_tokens=self.max_tokens, batch_size=self.batch_size)
        ll = (-(nll / n.clamp(min=1))).tolist()
        rows = [
            {"example_id": i, "metric": "loglik_pos" if y == 1 else "loglik_neg", "value": v}
            for i, y, v in zip(self.example_ids, self.labels, ll, strict=True)
        ]
        pos = [v for y, v in zip(self.labels, ll, strict=True) if y == 1]
        neg = [v for y, v in zip(self.labels, ll, strict=True) if y == 0]
        rows.append({"example_id": "all", "metric": "loglik_gap", "value": sum(pos) / len(pos) - sum(neg) / len(neg)})
        return pd.DataFrame(rows)
