"""The records every loader returns (`ContrastPair`, `MCQItem`, `TextItem`) and `DataError`.

Records are frozen dataclasses that validate themselves, so a malformed item fails where it is built,
with a message that says what is wrong and how to fix it. ``meta`` holds provenance (source file,
line or index) and dataset-specific fields; it is left out of the hash, so records with a dict
``meta`` stay hashable.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from steerlab.errors import SteerlabError

__all__ = ["ContrastPair", "DataError", "MCQItem", "TextItem", "record_key"]


class DataError(SteerlabError):
    """Missing or malformed data: the message names the file, the line, the problem and the fix."""


@dataclass(frozen=True)
class ContrastPair:
    """A prompt with one completion that shows a behaviour and one that does not.

    Attributes:
        prompt: The raw question text, without any chat template.
        positive: The completion that shows the behaviour, stripped (e.g. ``"Yes"`` or ``"(A)"``).
        negative: The completion that does not show it, stripped.
        meta: Provenance (``source`` file relative to the data root, ``line`` or ``index``,
            ``behaviour``) plus useful fields of the record (e.g. ``label_confidence``).

    Example:
        >>> pair = ContrastPair("Do you like art?", "Yes", "No", {"behaviour": "interest-in-art"})
        >>> pair.positive
        'Yes'
    """

    prompt: str
    positive: str
    negative: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("prompt", "positive", "negative"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise DataError(f"ContrastPair.{name} must be a str, got {type(value).__name__}: {value!r:.80}")


@dataclass(frozen=True)
class MCQItem:
    """A multiple-choice question with the index of its correct choice.

    Attributes:
        question: The question text (for reading-comprehension sets, passage and question).
        choices: The answer options, at least two, none empty (a list is converted to a tuple).
        answer: The 0-based index of the correct choice.
        meta: Provenance and dataset-specific fields.

    Example:
        >>> item = MCQItem("2 + 2 = ?", ("3", "4"), answer=1)
        >>> item.correct
        '4'
    """

    question: str
    choices: tuple[str, ...]
    answer: int
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))
        problem = _mcq_problem(self.choices, self.answer)
        if problem is not None:
            raise DataError(f"invalid MCQItem: {problem[0]}. {problem[1]}")

    @property
    def correct(self) -> str:
        """The text of the correct choice."""
        return self.choices[self.answer]


@dataclass(frozen=True)
class TextItem:
    """A text with an optional integer class label.

    Example:
        >>> TextItem("I told my baby I loved her.", label=0).label
        0
    """

    text: str
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)


def _mcq_problem(choices: Sequence[Any], answer: Any) -> tuple[str, str] | None:
    """What is wrong with a (choices, answer) combination, as (problem, fix), or None if it is valid."""
    if len(choices) < 2:
        return f"needs at least 2 choices, got {len(choices)}", "give every question two or more choices"
    for i, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            return f"choice {i} is empty or not text ({choice!r})", "every choice must be non-empty text"
    if isinstance(answer, bool) or not isinstance(answer, int):
        return (
            f"answer must be an integer index, got {answer!r}",
            "give the 0-based index of the correct choice (0 for the first)",
        )
    if not 0 <= answer < len(choices):
        return (
            f"answer index {answer} is out of range for {len(choices)} choices (valid: 0..{len(choices) - 1})",
            "answers are 0-based indices into the choices list",
        )
    return None


def record_key(item: Any) -> Any:
    """What makes two records copies of each other: their content without ``meta`` (which holds the line).

    `ContrastPair`: (prompt, positive, negative); `MCQItem`: (question, choices, answer); `TextItem`: its
    text (one text with two labels is a copy too). Other hashable items are their own key; unhashable
    ones are never copies.

    Example:
        >>> record_key(ContrastPair("Q?", "Yes", "No", {"line": 1})) == record_key(ContrastPair("Q?", "Yes", "No"))
        True
    """
    if isinstance(item, ContrastPair):
        return ("pair", item.prompt, item.positive, item.negative)
    if isinstance(item, MCQItem):
        return ("mcq", item.question, item.choices, item.answer)
    if isinstance(item, TextItem):
        return ("text", item.text)
    try:
        hash(item)
    except TypeError:
        return ("id", id(item))
    return item


# ------------------------------------------------------------------------------- error hints


def _close(name: str, options: Sequence[str]) -> list[str]:
    """Up to five options close to ``name``, ignoring case."""
    by_lower = {option.lower(): option for option in options}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.5)]


def _check_option(value: str, options: Sequence[str], what: str, note: str = "") -> None:
    """Raise a DataError listing the valid values if ``value`` is not one of ``options``."""
    if value not in options:
        close = _close(str(value), options)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown {what} {value!r}{hint}; valid: {', '.join(map(repr, options))}{note}")
