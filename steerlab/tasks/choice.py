"""`ChoiceTask`: the next token compared over candidate answers, with each item's answer label.

Behaviour probability on contrast pairs (CAA: Rimsky et al. 2024) and MCQ accuracy by option letter
(PAS: Cui & Chen 2025). Each batch's prompt is tokenized once; when the edits touch only the prompt's last
``k`` tokens (`steerlab.sites.Positions.tail`: ``LAST_PROMPT``, or ``AFTER_INSTRUCTION`` resolved to the
assistant header), everything before them runs once, unedited, and its key/value cache is reused by
every cell, which then costs ``k`` tokens per item. The cached prefixes are bounded (`ChoiceTask.prefix_budget`,
by default half the model's weights; `steerlab.memory`): those beyond it are recomputed when used. Several
edit sets (the strengths of a sweep) run together with `ChoiceTask.evaluate_many`, sharing each batch's
unedited trunk. Forwards keep only the last position's logits.

Rows carry a ``label``: the behaviour-matching answer (``"A"``/``"B"``, ``"Yes"``/``"No"``) or the correct
MCQ letter, so an effect can be split by label (an answer-token push moves the labels apart).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd
import torch

from steerlab import memory
from steerlab.backends.base import Backend, cache_nbytes
from steerlab.errors import SteerlabError
from steerlab.positions import assistant_start, chat_layout
from steerlab.prompts import LETTERS, answer_stem, choice_setup, mcq_setup
from steerlab.sites import Batch, Prefix
from steerlab.tasks.base import BaseTask
from steerlab.vectors import dataset_hash

logger = logging.getLogger(__name__)


def answer_label(answer: str) -> str:
    """``"(A)" -> "A"``, ``" Yes" -> "Yes"``: an answer as a label."""
    return answer_stem(answer).strip().lstrip("(").strip()


@dataclass
class ChoiceTask(BaseTask):
    """A prepared choice evaluation: each prompt's next token is compared over candidate tokens.

    ``kind="behaviour"`` (contrast pairs; candidate 0 is the behaviour-matching answer) reports
    ``p_behaviour`` (probability normalised over the two answers, as in CAA) and ``logit_diff``;
    ``kind="mcq"`` reports ``accuracy``, ``p_correct`` and ``pred`` (the predicted option's index, for the
    distribution of answer letters).

    Example:
        >>> task = ChoiceTask.from_pairs(lm, test_pairs)                                   # doctest: +SKIP
        >>> task.evaluate(steer(vec, 4.0, positions=AFTER_INSTRUCTION), reuse_prefix=True)  # doctest: +SKIP
    """

    backend: Backend
    prompts: list[str]
    candidates: list[list[int]]
    targets: list[int]
    example_ids: list
    kind: str = "behaviour"
    batch_size: int | None = None
    labels: list[str] | None = None
    prefix_cache_mb: float | None = None
    can_reuse_prefix: ClassVar[bool] = True
    _batches: list[Batch] = field(default_factory=list, repr=False)
    _rows: list[list[int]] = field(default_factory=list, repr=False)
    _prefixes: dict[tuple[int, int], Prefix] = field(default_factory=dict, repr=False)
    _prefix_bytes: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise SteerlabError("the evaluation set is empty; pass at least one item")
        self.batch_size = memory.batch_size(self.batch_size)
        memory.MemorySettings(prefix_cache_mb=self.prefix_cache_mb)  # checks the value
        if self.labels is not None and len(self.labels) != len(self.prompts):
            raise SteerlabError(f"{len(self.labels)} labels for {len(self.prompts)} prompts; give one label per item")
        self._chat_prompts = self.prompts
        self._set_batches()

    def _set_batches(self) -> None:
        """Batches of rows that share the assistant turn's text (header and answer prefix): template positions
        are resolved per batch, so an A/B item and a Yes/No item never share one; one format keeps its order."""
        keys = [""] * len(self.prompts)
        if self._chat_prompts is not None:
            try:
                layout = chat_layout(self.backend.tokenizer)
                keys = [p[assistant_start(layout, p) :] for p in self.prompts]
            except SteerlabError:  # prompts not in the template's format: one group
                pass
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        self._rows = [g[i : i + self.batch_size] for g in groups.values() for i in range(0, len(g), self.batch_size)]
        self._batches = [self.backend.tokenize([self.prompts[i] for i in rows]) for rows in self._rows]
        self._prefixes, self._prefix_bytes = {}, 0

    @classmethod
    def from_pairs(
        cls, backend: Backend, pairs: Sequence, *, system: str | None = None, batch_size: int | None = None,
        prefix_cache_mb: float | None = None,
    ) -> ChoiceTask:  # fmt: skip
        """Behaviour probability on A/B or Yes/No contrast pairs; ``label`` = the matching answer."""
        setups = [choice_setup(backend, p.prompt, [p.positive, p.negative], system) for p in pairs]
        ids = [p.meta.get("id", i) if hasattr(p, "meta") else i for i, p in enumerate(pairs)]
        return cls(backend, [s[0] for s in setups], [s[1] for s in setups], [0] * len(pairs), ids, "behaviour",
                   batch_size, [answer_label(p.positive) for p in pairs], prefix_cache_mb)  # fmt: skip

    @classmethod
    def from_mcq(cls, backend: Backend, items: Sequence, *, chat: bool = True, system: str | None = None,
                 batch_size: int | None = None, prefix_cache_mb: float | None = None) -> ChoiceTask:  # fmt: skip
        """Multiple-choice accuracy by option-letter logits (the PAS prompt format); ``label`` = the correct letter."""
        setups = [mcq_setup(backend, it, chat=chat, system=system, index=i) for i, it in enumerate(items)]
        ids = [it.meta.get("id", i) if hasattr(it, "meta") else i for i, it in enumerate(items)]
        targets = [int(it.answer) for it in items]
        task = cls(backend, [s[0] for s in setups], [s[1] for s in setups], targets, ids, "mcq", batch_size,
                   [LETTERS[t] for t in targets], prefix_cache_mb)  # fmt: skip
        if not chat:
            task._chat_prompts = None
            task._set_batches()
        return task

    @property
    def metrics(self) -> tuple[str, ...]:
        """``("p_behaviour", "logit_diff")`` or ``("accuracy", "p_correct", "pred")``; the first is the target."""
        return ("p_behaviour", "logit_diff") if self.kind == "behaviour" else ("accuracy", "p_correct", "pred")

    def fingerprint(self) -> str:
        """A hash of the prompts, compared tokens, targets and model (a sweep folder refuses another task)."""
        return dataset_hash([self.prompts, self.candidates, self.targets, self.backend.name])

    def norm_prompts(self) -> list[str]:
        return list(self.prompts)

    @property
    def prefix_budget(self) -> int:
        """Bytes of cached prefixes this task keeps: ``prefix_cache_mb`` (or `steerlab.memory`'s), by default half
        the model's weights. Prefixes are kept first come, first kept, until the budget is full; the rest are
        recomputed when used (for a sweep walking every batch in turn, keeping a fixed part beats evicting)."""
        mb = self.prefix_cache_mb if self.prefix_cache_mb is not None else memory.settings.prefix_cache_mb
        if mb is not None:
            return int(mb * 2**20)
        return sum(p.numel() * p.element_size() for p in self.backend.model.parameters()) // 2

    def _prefix(self, index: int, tail: int = 1) -> Prefix:
        key = (index, tail)
        if key in self._prefixes:
            return self._prefixes[key]
        b = self._batches[index]
        prefix = self.backend.prefix(Batch(b.input_ids[:, :-tail], b.attention_mask[:, :-tail]))
        size = cache_nbytes(prefix.cache)
        if self._prefix_bytes + size <= self.prefix_budget:
            self._prefixes[key] = prefix
            self._prefix_bytes += size
        return prefix

    def _tail(self, edits) -> int:
        tails = [e.positions.tail for e in edits]
        if any(t is None for t in tails):
            bad = next(e.positions for e in edits if e.positions.tail is None)
            raise SteerlabError(
                f"reuse_prefix needs edits confined to the prompt's last tokens (LAST_PROMPT, AFTER_INSTRUCTION, a "
                f"span counted from the end); positions {bad} reach earlier ones, so evaluate with reuse_prefix=False"
            )
        return max([1, *tails])

    def last_logits(self, edits=(), *, reuse_prefix: bool = False) -> list[torch.Tensor]:
        """Next-token logits at the last prompt position, one ``[batch, vocab]`` tensor per batch (batch ``i``
        holds the items ``self._rows[i]``: items are batched by format, in order within a format).

        With ``reuse_prefix``, each batch's tokens before the last ``tail`` (the most any edit touches, at least
        one) run once and are cached (within `prefix_budget`); a batch whose shortest prompt is not longer than
        that runs in full. Without edits, the longest cached tail of a batch is reused (the unsteered cell then
        costs no extra prefix when it is evaluated after the steered ones, as `steerlab.sweeps.sweep` orders it).
        """
        return self.last_logits_many([edits], reuse_prefix=reuse_prefix)[0]

    def last_logits_many(self, edit_sets: Sequence, *, reuse_prefix: bool = False) -> list[list[torch.Tensor]]:
        """`last_logits` under each of several edit sets (one list per set), each batch run once for all of them:
        the unedited trunk is shared (`steerlab.backends.base.Backend.forward_many`) and a cached prefix is
        computed once for the sets."""
        out: list[list[torch.Tensor]] = [[] for _ in edit_sets]
        for i, b in enumerate(self._batches):
            sets = [self.resolve_edits(e, self._batch_prompts(i)) for e in edit_sets]
            flat = [e for es in sets for e in es]
            if reuse_prefix and not flat:  # unedited: any cached prefix of this batch serves
                tail = max([t for (j, t) in self._prefixes if j == i], default=0)
            else:
                tail = self._tail(flat) if reuse_prefix else 0
            if tail and tail < b.prompt_len - int(b.n_pad.max()):
                logits = self._run(Batch(b.input_ids[:, -tail:], b.attention_mask[:, -tail:]), sets,
                                   self._prefix(i, tail))  # fmt: skip
            else:
                logits = self._run(b, sets, None)
            for j, lg in enumerate(logits):
                out[j].append(lg)
        return out

    def _run(self, batch: Batch, sets: list, prefix: Prefix | None) -> list[torch.Tensor]:
        """Last-position logits ``[batch, vocab]`` (fp32) of ``batch`` under each edit set."""
        if len(sets) == 1:
            outs = [self.backend.forward(batch, edits=sets[0], prefix=prefix, logits=1)]
        else:
            outs = self.backend.forward_many(batch, sets, prefix=prefix, logits=1)
        return [o.logits[:, -1].float() for o in outs]

    def prefix_forward(self, index: int, extra: torch.Tensor | None = None, *, edits=(), record=(), tail: int = 1,
                       logits: bool | int = True):  # fmt: skip
        """Batch ``index``'s last ``tail`` prompt tokens (then ``extra`` token ids ``[batch, k]``, if given) run on
        its cached prefix; returns the backend's `ForwardOutput` (``logits`` as `Backend.forward` takes them, and
        ``record`` activations). Used to read activations at the answer position without recomputing the prompt."""
        b = self._batches[index]
        ids, mask = b.input_ids[:, -tail:], b.attention_mask[:, -tail:]
        if extra is not None:
            ids = torch.cat([ids, extra.to(ids.device, ids.dtype)], dim=1)
            mask = torch.cat([mask, torch.ones_like(extra, dtype=mask.dtype, device=mask.device)], dim=1)
        edits = self.resolve_edits(edits, self._batch_prompts(index))
        return self.backend.forward(Batch(ids, mask), prefix=self._prefix(index, tail), edits=edits, record=record,
                                    logits=logits)  # fmt: skip

    def _batch_prompts(self, index: int) -> list[str] | None:
        if self._chat_prompts is None:
            return None
        return [self.prompts[i] for i in self._rows[index]]

    def evaluate(self, edits=(), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Per-example rows ``example_id, metric, value`` (and ``label``) under ``edits``."""
        return self.evaluate_many([edits], reuse_prefix=reuse_prefix)[0]

    def evaluate_many(self, edit_sets: Sequence, *, reuse_prefix: bool = False) -> list[pd.DataFrame]:
        """`evaluate` under each of several edit sets, sharing each batch's unedited trunk and cached prefix.

        A batch that runs out of device memory halves the task's ``batch_size`` (down to one item) and the
        evaluation starts again (`steerlab.memory`).
        """
        while True:
            try:
                per_set = self.last_logits_many(edit_sets, reuse_prefix=reuse_prefix)
                break
            except Exception as exc:
                if not memory.retrying(exc, self.batch_size):
                    raise
                self.batch_size //= 2
                logger.warning("out of memory: ChoiceTask retries with batch_size=%d", self.batch_size)
                self._set_batches()
        order = torch.tensor([i for rows in self._rows for i in rows])
        frames = []
        for batches in per_set:
            stacked = torch.cat(batches).cpu()
            logits = torch.empty_like(stacked)
            logits[order] = stacked  # back to the items' order
            frames.append(self._frame(logits))
        return frames

    def _frame(self, logits: torch.Tensor) -> pd.DataFrame:
        rows = []
        for i, (cands, target) in enumerate(zip(self.candidates, self.targets, strict=True)):
            lg = logits[i, cands]
            p = torch.softmax(lg, -1)[target]
            if self.kind == "behaviour":
                values = (float(p), float(lg[0] - lg[1]))
            else:
                pred = int(lg.argmax())
                values = (float(pred == target), float(p), float(pred))
            extra = {} if self.labels is None else {"label": self.labels[i]}
            rows += [
                {"example_id": self.example_ids[i], "metric": m, "value": v, **extra}
                for m, v in zip(self.metrics, values, strict=True)
            ]
        return pd.DataFrame(rows)
