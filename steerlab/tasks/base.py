"""The `Task` protocol a sweep evaluates in every cell, and `BaseTask`, the defaults tasks share.

A `Task` is anything with ``metrics`` (names; the first is the target metric a protocol reads effects
from), ``fingerprint()`` (a hash of everything the numbers depend on, so a resumed sweep refuses a
different task), ``evaluate(edits)`` (a tidy frame ``example_id, metric, value``, plus ``label`` where
items have answer labels and ``text`` where the task generates text), ``can_reuse_prefix`` (whether the
task can run the part of each prompt before the steered positions once and reuse its key/value cache),
``resolve_positions(positions)`` (template kinds such as `steerlab.sites.AFTER_INSTRUCTION` as a concrete
span for the task's prompts) and ``norm_prompts()`` (the inputs as the model sees them, for the typical
token norm that scales strengths, `steerlab.scale.typical_norm`). A task may also have
``evaluate_many(edit_sets)``: several edit sets at once (`BaseTask` has one that loops), which the tasks that
score logits run as one batch sharing the unedited trunk (`steerlab.backends.base.Backend.forward_many`);
`steerlab.sweeps.sweep` uses it for the strengths of a site.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import pandas as pd

from steerlab.errors import SteerlabError
from steerlab.positions import resolve_positions
from steerlab.sites import Edit, Positions


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
        """Rows ``example_id, metric, value`` (+ ``label``, ``text``) under ``edits``."""
        ...

    # optional: ``evaluate_many(edit_sets, *, reuse_prefix=False) -> list[DataFrame]``, several edit sets at
    # once (`BaseTask` gives one that calls `evaluate` per set; scoring tasks share the unedited trunk)

    def resolve_positions(self, positions: Positions, prompts: Sequence[str] | None = None) -> Positions:
        """``positions`` with template kinds resolved against ``prompts`` (default: all of the task's)."""
        ...

    def norm_prompts(self) -> list[str]:
        """The task's inputs as the model sees them (formatted prompts or raw texts)."""
        ...


class BaseTask:
    """Defaults for tasks: raw texts (no chat template), no prefix reuse.

    Subclasses with chat prompts set ``_chat_prompts`` (the formatted prompts) to resolve template kinds.
    """

    can_reuse_prefix: ClassVar[bool] = False
    _chat_prompts: list[str] | None = None

    def norm_prompts(self) -> list[str]:
        raise NotImplementedError

    def evaluate_many(self, edit_sets: Sequence[Sequence[Edit]], *, reuse_prefix: bool = False) -> list[pd.DataFrame]:
        """`evaluate` under each edit set, in order (tasks that score logits run them together instead)."""
        return [self.evaluate(edits, reuse_prefix=reuse_prefix) for edits in edit_sets]  # type: ignore[attr-defined]

    def resolve_positions(self, positions: Positions, prompts: Sequence[str] | None = None) -> Positions:
        """Template kinds as a span for ``prompts`` (default: all of this task's prompts); others unchanged.

        Tasks resolve per batch of prompts they run together, so prompts of different formats (a Yes/No item
        and an A/B item) may share a task as long as a batch holds one format.
        """
        if not positions.needs_template:
            return positions
        if self._chat_prompts is None:
            raise SteerlabError(
                f"{type(self).__name__} scores raw texts without a chat template, so positions {positions.kind!r} have "
                "no meaning here; steer ALL (or a Positions.span)"
            )
        prompts = tuple(self._chat_prompts if prompts is None else prompts)
        cache = self.__dict__.setdefault("_resolved", {})
        if (positions, prompts) not in cache:
            cache[(positions, prompts)] = resolve_positions(positions, self.backend.tokenizer, prompts)  # type: ignore[attr-defined]
        return cache[(positions, prompts)]

    def resolve_edits(self, edits: Sequence[Edit] | Edit | None, prompts: Sequence[str] | None = None) -> list[Edit]:
        """``edits`` with their positions resolved for ``prompts`` (see `resolve_positions`)."""
        if edits is None:
            return []
        if isinstance(edits, Edit):
            edits = [edits]
        out = []
        for e in edits:
            out.append(Edit(e.site, e.fn, self.resolve_positions(e.positions, prompts)) if e.positions.needs_template
                       else e)  # fmt: skip
        return out


def check_reuse(task: BaseTask, reuse_prefix: bool) -> None:
    """Refuse ``reuse_prefix`` on a task that scores or generates past the prompt's end."""
    if reuse_prefix and not task.can_reuse_prefix:
        raise SteerlabError(f"{type(task).__name__} scores every token (or generates), so there is no prefix to reuse; "
                            "evaluate with reuse_prefix=False")  # fmt: skip
