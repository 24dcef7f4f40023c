"""`BlockTask`: a choice task over a chosen subset of blocks, each block a `ChoiceTask` whose cached prompt
prefix every subset shares (the splits of PAS, Cui & Chen 2025, are drawn over such blocks).

A `ChoiceTask` caches the part of each batch's prompts before the steered tail, so a steered cell costs a
few tokens per item. A split of the items into train / validation / test would build new tasks, and so
new caches, for every seed. `BlockTask` instead keeps one `ChoiceTask` per block of items (built once) and
evaluates any subset of blocks: every seed's validation and test sets reuse the same cached prefixes, and
`steerlab.sweeps.sweep` sees an ordinary `Task` (resume, controls, grouped cells).

Rows are those of the blocks' tasks (``accuracy, p_correct, pred`` for MCQ, with the correct letter as
``label``), in block order; ``example_id`` must be unique across blocks (give each block task global ids).

Example:
    >>> blocks = [ChoiceTask.from_mcq(lm, chunk) for chunk in chunks]     # doctest: +SKIP
    >>> val = BlockTask(blocks, ids=(0, 3, 5))                             # doctest: +SKIP
    >>> sweep(lm, {"pasf": vec}, val, coeffs=[0, 1, 2], positions=LAST_PROMPT)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import pandas as pd

from steerlab.errors import SteerlabError
from steerlab.tasks.base import BaseTask
from steerlab.tasks.choice import ChoiceTask
from steerlab.vectors import dataset_hash


class BlockTask(BaseTask):
    """Blocks ``ids`` of ``blocks`` (one `ChoiceTask` each, shared with every other subset) as one task."""

    can_reuse_prefix: ClassVar[bool] = True

    def __init__(self, blocks: Sequence[ChoiceTask], ids: Sequence[int] | None = None):
        if not blocks:
            raise SteerlabError("no blocks; pass at least one ChoiceTask")
        kinds = {b.kind for b in blocks}
        if len(kinds) > 1:
            raise SteerlabError(f"blocks of different kinds {sorted(kinds)}; a BlockTask scores one kind of item")
        ids = list(range(len(blocks))) if ids is None else [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(blocks)]
        if not ids or bad or len(set(ids)) != len(ids):
            raise SteerlabError(f"block ids {ids} must be distinct, non-empty and in [0, {len(blocks)})")
        self.blocks, self.ids = list(blocks), tuple(ids)
        self.backend = self.blocks[0].backend
        chosen = [self.blocks[i] for i in self.ids]
        every = [e for b in chosen for e in b.example_ids]
        if len(set(map(str, every))) != len(every):
            raise SteerlabError("example ids repeat across blocks; give each block's task ids unique over all blocks")
        prompts = [b._chat_prompts for b in chosen]
        self._chat_prompts = None if any(p is None for p in prompts) else [x for p in prompts for x in p]

    def subset(self, ids: Sequence[int]) -> BlockTask:
        """Another subset of the same blocks (sharing their cached prefixes)."""
        return BlockTask(self.blocks, ids)

    @property
    def chosen(self) -> list[ChoiceTask]:
        return [self.blocks[i] for i in self.ids]

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.blocks[0].metrics

    @property
    def example_ids(self) -> list:
        return [e for b in self.chosen for e in b.example_ids]

    def fingerprint(self) -> str:
        """A hash of the chosen blocks' fingerprints (prompts, candidates, targets, model) and ids."""
        chosen = self.chosen
        return dataset_hash([[b.fingerprint() for b in chosen], [list(map(str, b.example_ids)) for b in chosen]])

    def norm_prompts(self) -> list[str]:
        """Every chosen prompt, round-robin over the blocks (the first `steerlab.sweeps.NORM_PROMPTS` of them
        then span the blocks, e.g. every prompt length when blocks are length strata)."""
        lists = [b.norm_prompts() for b in self.chosen]
        return [p[i] for i in range(max(map(len, lists))) for p in lists if i < len(p)]

    def evaluate(self, edits=(), *, reuse_prefix: bool = False) -> pd.DataFrame:
        """Rows of every chosen block under ``edits`` (see `ChoiceTask.evaluate`)."""
        return self.evaluate_many([edits], reuse_prefix=reuse_prefix)[0]

    def evaluate_many(self, edit_sets: Sequence, *, reuse_prefix: bool = False) -> list[pd.DataFrame]:
        """`evaluate` under each edit set; each block runs them together (`ChoiceTask.evaluate_many`)."""
        per_block = [b.evaluate_many(edit_sets, reuse_prefix=reuse_prefix) for b in self.chosen]
        return [pd.concat([frames[j] for frames in per_block], ignore_index=True) for j in range(len(edit_sets))]
