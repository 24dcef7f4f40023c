"""Sub-behaviours of a target behaviour with their contribution scores, and their YAML file format.

SAAS's Agent-1 decomposes a behaviour into ``K`` sub-behaviours and Agent-2 scores each one's
contribution ``c_k`` in ``[0, 10]``; sub-behaviours scoring below 2 are dropped. A YAML file of the
same content can replace both agents (for users who write or review sub-behaviours by hand):

.. code-block:: yaml

    behaviour: agreeableness
    source: hand-written          # who wrote it: "hand-written" or the agent's name
    subbehaviours:
      - name: warmth
        description: Expresses care and kindness towards other people.
        contribution: 9

Example:
    >>> subs = load_subbehaviours("data/subbehaviours/agreeableness.yaml")   # doctest: +SKIP
    >>> subs.kept_contributions                                                  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from steerlab.agents.base import AgentError

MIN_CONTRIBUTION = 2.0
"""SAAS drops sub-behaviours whose contribution (Agent-2) is below this."""


@dataclass(frozen=True)
class SubBehaviour:
    """One sub-behaviour: a short name, a one-sentence description, and its contribution in [0, 10] (or None)."""

    name: str
    description: str
    contribution: float | None = None

    @property
    def text(self) -> str:
        """What an instance is compared with: ``"name: description"``."""
        return f"{self.name}: {self.description}" if self.description != self.name else self.name


@dataclass(frozen=True)
class SubBehaviourSet:
    """The sub-behaviours of one behaviour, and where they came from (``source``)."""

    behaviour: str
    items: tuple[SubBehaviour, ...]
    source: str = "hand-written"
    min_contribution: float = MIN_CONTRIBUTION
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        if not self.items:
            raise AgentError(f"the sub-behaviour set of {self.behaviour!r} is empty; give at least one sub-behaviour")

    @property
    def kept(self) -> tuple[SubBehaviour, ...]:
        """Sub-behaviours with contribution >= ``min_contribution`` (all of them if none is scored)."""
        if all(s.contribution is None for s in self.items):
            return self.items
        return tuple(s for s in self.items if s.contribution is not None and s.contribution >= self.min_contribution)

    @property
    def kept_contributions(self) -> np.ndarray:
        """Contributions of the kept sub-behaviours (1 for each if none is scored, i.e. no Agent-2)."""
        return np.array([1.0 if s.contribution is None else s.contribution for s in self.kept])

    def without_contributions(self) -> SubBehaviourSet:
        """The same sub-behaviours with no contributions (the "no Agent-2" ablation: all kept, c_k = 1)."""
        items = tuple(replace(s, contribution=None) for s in self.items)
        return replace(self, items=items, source=f"{self.source} (no Agent-2)")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"behaviour": self.behaviour, "source": self.source}
        if self.meta:
            out["meta"] = self.meta
        out["subbehaviours"] = [
            {
                "name": s.name,
                "description": s.description,
                **({} if s.contribution is None else {"contribution": s.contribution}),
            }
            for s in self.items
        ]
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "sub-behaviour data") -> SubBehaviourSet:
        if not isinstance(data, dict) or not isinstance(data.get("subbehaviours"), list):
            raise AgentError(
                f"{where} must be a mapping with a 'subbehaviours' list (see steerlab.agents.subbehaviours)"
            )
        items = []
        for i, entry in enumerate(data["subbehaviours"]):
            if not isinstance(entry, dict) or not str(entry.get("name", "")).strip():
                raise AgentError(f"{where}: sub-behaviour {i} needs a 'name' (and a 'description'), got {entry!r:.80}")
            c = entry.get("contribution")
            if c is not None and not (
                isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c) and 0 <= c <= 10
            ):
                raise AgentError(
                    f"{where}: sub-behaviour {i} ({entry['name']}) has contribution {c!r}; use a number in [0, 10]"
                )
            name = str(entry["name"]).strip()
            items.append(
                SubBehaviour(name, str(entry.get("description") or name).strip(), None if c is None else float(c))
            )
        if not items:
            raise AgentError(f"{where} lists no sub-behaviours; give at least one")
        return cls(str(data.get("behaviour", "")), tuple(items), str(data.get("source", "hand-written")),
                   meta=dict(data.get("meta") or {}))  # fmt: skip


STATEMENT_SOURCE = "behaviour statement (no decomposition agent)"
"""`SubBehaviourSet.source` of `from_statement`'s fallback, so outputs record that no agent decomposed it."""


def from_statement(behaviour: str) -> SubBehaviourSet:
    """The fallback when no agent decomposes the behaviour: its statement as the single sub-behaviour.

    Agent-3 then scores each instance against the statement itself (contribution 1, nothing dropped);
    ``source`` is `STATEMENT_SOURCE`.

    Example:
        >>> from_statement("agreeableness: kind, trusting").items[0].description
        'agreeableness: kind, trusting'
    """
    text = " ".join(str(behaviour).split())
    if not text:
        raise AgentError("the behaviour statement is empty; describe the target behaviour in a sentence (--behavior)")
    name = text.split(":")[0].strip()[:60] or "behaviour"
    return SubBehaviourSet(text, (SubBehaviour(name, text, None),), STATEMENT_SOURCE)


def load_subbehaviours(path: str | os.PathLike) -> SubBehaviourSet:
    """Read a sub-behaviour YAML file (format in the module docstring)."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise AgentError(f"sub-behaviour file {path} does not exist; write one (see steerlab.agents.subbehaviours)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AgentError(f"{path} is not valid YAML: {exc}") from exc
    return SubBehaviourSet.from_dict(data, where=str(path))


def save_subbehaviours(subs: SubBehaviourSet, path: str | os.PathLike) -> Path:
    """Write ``subs`` as YAML (the inverse of `load_subbehaviours`)."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(subs.to_dict(), sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")
    return path
