"""Robust parsing of agent answers: numbered lists of sub-behaviours, and lists of 0-10 scores.

Small models answer messily (bullets, bold markers, "Score: 7/10", extra chatter); these parsers
accept what can be read unambiguously and raise `ParseError` (saying what was expected) otherwise, so
the caller can retry and record the failure.

Example:
    >>> parse_scores("1. 8/10\\n2) **6**\\n3. Kindness: 9", 3)
    [8.0, 6.0, 9.0]
"""

from __future__ import annotations

import re

from steerlab.agents.base import AgentError

_ENUM = re.compile(r"^\s*(?:[-*\u2022]\s*)?(?:\(?(\d{1,2})[.)]|(\d{1,2}):)\s+")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w])")
_OUT_OF = re.compile(r"\s*(?:/\s*10|out of 10)\b", re.IGNORECASE)
_NAME_SPLIT = re.compile(r"\s*(?::|\s[-\u2013\u2014]\s)\s*")


class ParseError(AgentError):
    """An agent's answer could not be parsed into what the prompt asked for."""


def _clean(line: str) -> str:
    return line.replace("**", "").replace("__", "").strip().strip("`").strip()


def _echo(name: str, desc: str) -> bool:
    """An item that echoes the prompt's examples (``"[Example 1]: Yes"``) rather than naming a sub-behaviour."""
    return bool(re.match(r"^\W*example\b", name, re.IGNORECASE)) or desc.strip().lower() in ("yes", "no", "(a)", "(b)")


def parse_subbehaviours(text: str, k_min: int = 5, k_max: int = 10) -> list[tuple[str, str]]:
    """``(name, description)`` pairs from a numbered or bulleted list, one item a line.

    Lines like ``"1. Warmth: shows care for others"`` or ``"- **Warmth** - shows care"`` are items; lines
    without a list marker are ignored (chatter), and so are echoes of the prompt's examples. Duplicate
    names (case-insensitive) are dropped. More
    than ``k_max`` items keep the first ``k_max``; fewer than ``k_min`` raise `ParseError`.
    """
    items: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = _clean(raw)
        if not re.match(r"^(?:[-*\u2022]|\(?\d{1,2}[.):])\s*", line):
            continue
        body = _clean(re.sub(r"^(?:[-*\u2022]\s*)?(?:\(?\d{1,2}[.):])?\s*", "", line))
        if len(body) < 3:
            continue
        parts = _NAME_SPLIT.split(body, maxsplit=1)
        name = _clean(parts[0]).rstrip(".")
        desc = _clean(parts[1]) if len(parts) > 1 and parts[1].strip() else name
        if not name or len(name) > 80 or name.lower() in seen or _echo(name, desc):
            continue
        seen.add(name.lower())
        items.append((name, desc))
    if len(items) < k_min:
        raise ParseError(
            f"found {len(items)} list items, need at least {k_min}: expected lines like '1. <name>: <description>'"
        )
    return items[:k_max]


def parse_scores(text: str, k: int, low: float = 0.0, high: float = 10.0) -> list[float]:
    """Exactly ``k`` scores in ``[low, high]``, one per line (``"3. 7"``, ``"Kindness: 7/10"``, ``"7"``).

    On each line the list marker is removed, ``/10`` and ``out of 10`` are dropped, and the last number
    left is the score. When more than ``k`` lines carry numbers, the lines numbered ``1..k`` are used if
    there are exactly ``k`` of them; otherwise the answer is ambiguous and `ParseError` is raised.
    """
    numbered: dict[int, float] = {}
    values: list[float] = []
    for raw in text.splitlines():
        line = _clean(raw)
        m = _ENUM.match(line)
        index = int(m.group(1) or m.group(2)) if m else None
        rest = _OUT_OF.sub("", line[m.end() :] if m else line)
        nums = _NUMBER.findall(rest)
        if not nums:
            continue
        value = float(nums[-1])
        values.append(value)
        if index is not None and index not in numbered:
            numbered[index] = value
    if len(values) != k:
        if all(i in numbered for i in range(1, k + 1)):
            values = [numbered[i] for i in range(1, k + 1)]
        else:
            raise ParseError(f"found {len(values)} scores, expected {k} (one line per sub-behaviour: '<n>. <score>')")
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise ParseError(f"scores {bad} are outside [{low:g}, {high:g}]")
    return values
