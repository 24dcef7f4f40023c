"""The three SAAS agent roles: decompose the behaviour (Agent-1), rate contributions (Agent-2), score
instances (Agent-3), each with retries and a tidy record of every attempt.

The prompts live in ``steerlab/agents/prompts/*.txt`` (edit them there). The first attempt of each
call is greedy (``temperature=0``); retries sample at ``RETRY_TEMPERATURE`` with a new seed, so a
cached rerun is deterministic. Every attempt is appended to ``log`` (a list of dicts: ``role, item,
attempt, ok, error, answer``), which `attempts_frame` turns into a DataFrame: that is the record of
parse failures the notebooks report.

Example:
    >>> log = []
    >>> subs = decompose(agent, "agreeableness", examples, log=log)          # doctest: +SKIP
    >>> subs = rate_contributions(agent, subs, log=log)                      # doctest: +SKIP
    >>> scores = score_instances(EmbeddingScorer(), subs, texts)             # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from steerlab.agents.base import Agent
from steerlab.agents.parsing import ParseError, parse_scores, parse_subbehaviours
from steerlab.agents.subbehaviours import SubBehaviour, SubBehaviourSet

logger = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_TEMPERATURE = 0.7
PROMPTS = ("agent1_decompose", "agent2_contribution", "agent3_score")


def prompt_template(name: str) -> str:
    """The text of ``prompts/<name>.txt`` (``agent1_decompose``, ``agent2_contribution``, ``agent3_score``)."""
    if name not in PROMPTS:
        raise ParseError(f"unknown prompt {name!r}; valid: {', '.join(PROMPTS)}")
    return resources.files("steerlab.agents").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _options(attempt: int, max_tokens: int) -> dict[str, Any]:
    if attempt == 0:
        return {"temperature": 0.0, "max_tokens": max_tokens}
    return {"temperature": RETRY_TEMPERATURE, "max_tokens": max_tokens, "seed": attempt}


def ask(agent: Agent, text: str, parse: Callable[[str], T], *, role: str, item: Any = None, retries: int = 2,
        max_tokens: int = 256, log: list[dict] | None = None) -> T | None:  # fmt: skip
    """Ask ``agent`` until ``parse`` accepts the answer (``1 + retries`` attempts); None if it never does."""
    for attempt in range(retries + 1):
        answer = agent.complete(_messages(text), **_options(attempt, max_tokens))
        try:
            value = parse(answer)
        except ParseError as exc:
            _record(log, role, item, attempt, False, str(exc), answer, agent)
            continue
        _record(log, role, item, attempt, True, "", answer, agent)
        return value
    logger.warning("%s: no parsable answer for item %s after %d attempts", role, item, retries + 1)
    return None


def _record(log, role, item, attempt, ok, error, answer, agent) -> None:
    if log is not None:
        log.append({"role": role, "item": item, "attempt": attempt, "ok": ok, "error": error,
                    "answer": answer, "agent": getattr(agent, "name", "?")})  # fmt: skip


def attempts_frame(log: Sequence[dict]) -> pd.DataFrame:
    """The attempt log as a DataFrame (``role, item, attempt, ok, error, answer, agent``)."""
    return pd.DataFrame(list(log), columns=["role", "item", "attempt", "ok", "error", "answer", "agent"])


def _numbered(subs: Sequence[SubBehaviour]) -> str:
    return "\n".join(f"{i}. {s.name}: {s.description}" for i, s in enumerate(subs, 1))


def decompose(agent: Agent, behaviour: str, examples: Sequence[str], *, k_min: int = 5, k_max: int = 10,
              retries: int = 2, log: list[dict] | None = None,
              max_tokens: int = 320) -> SubBehaviourSet | None:  # fmt: skip
    """Agent-1: ``k_min``-``k_max`` sub-behaviours of ``behaviour`` from a description and example instances."""
    text = prompt_template("agent1_decompose").format(
        behaviour=behaviour, n_examples=len(examples), k_min=k_min, k_max=k_max,
        examples="\n\n".join(f"Example {i}:\n{e}" for i, e in enumerate(examples, 1)),
    )  # fmt: skip
    items = ask(agent, text, lambda a: parse_subbehaviours(a, k_min, k_max), role="agent1", item=behaviour,
                retries=retries, max_tokens=max_tokens, log=log)  # fmt: skip
    if items is None:
        return None
    return SubBehaviourSet(behaviour, tuple(SubBehaviour(n, d) for n, d in items), source=f"agent1:{agent.name}")


def rate_contributions(agent: Agent, subs: SubBehaviourSet, *, retries: int = 2,
                       log: list[dict] | None = None) -> SubBehaviourSet | None:  # fmt: skip
    """Agent-2: a contribution in [0, 10] for each sub-behaviour (it sees no instances)."""
    text = prompt_template("agent2_contribution").format(behaviour=subs.behaviour, subbehaviours=_numbered(subs.items))
    k = len(subs.items)
    scores = ask(agent, text, lambda a: parse_scores(a, k), role="agent2", item=subs.behaviour,
                 retries=retries, max_tokens=16 * k + 32, log=log)  # fmt: skip
    if scores is None:
        return None
    items = tuple(SubBehaviour(s.name, s.description, c) for s, c in zip(subs.items, scores, strict=True))
    return SubBehaviourSet(subs.behaviour, items, source=f"{subs.source} + agent2:{agent.name}",
                           min_contribution=subs.min_contribution, meta=subs.meta)  # fmt: skip


def score_instances(scorer: Any, subs: SubBehaviourSet, instances: Sequence[str], *, retries: int = 2,
                    log: list[dict] | None = None, on_failure: str = "mean") -> np.ndarray:  # fmt: skip
    """Agent-3: scores ``(n_instances, K)`` in [0, 10] of each instance against each *kept* sub-behaviour.

    ``scorer`` is an `EmbeddingScorer` (anything with ``score(texts, descriptions)``) or a chat agent.
    With a chat agent, instances whose answer never parses get ``on_failure="mean"``: the column means of
    the parsed instances (logged in ``log``), or ``"nan"``.
    """
    kept = subs.kept
    if hasattr(scorer, "score"):
        return scorer.score(list(instances), [s.text for s in kept])
    template = prompt_template("agent3_score")
    texts = [template.format(behaviour=subs.behaviour, subbehaviours=_numbered(kept), instance=x) for x in instances]
    k = len(kept)
    out = np.full((len(texts), k), np.nan)
    todo = list(range(len(texts)))
    for attempt in range(retries + 1):
        if not todo:
            break
        convs = [_messages(texts[i]) for i in todo]
        opts = _options(attempt, 8 * k + 16)
        many = getattr(scorer, "complete_many", None)
        answers = many(convs, **opts) if many else [scorer.complete(c, **opts) for c in convs]
        left = []
        for i, answer in zip(todo, answers, strict=True):
            try:
                out[i] = parse_scores(answer, k)
                _record(log, "agent3", i, attempt, True, "", answer, scorer)
            except ParseError as exc:
                _record(log, "agent3", i, attempt, False, str(exc), answer, scorer)
                left.append(i)
        todo = left
    if todo and on_failure == "mean":
        fill = np.nanmean(out, axis=0) if len(todo) < len(texts) else np.full(k, 5.0)
        out[todo] = fill
        logger.warning("agent3: %d of %d instances never parsed; filled with column means", len(todo), len(texts))
    return out


def _option_text(prompt: str, label: str) -> str | None:
    """The text of option ``(A)`` etc. in a CAA-style A/B prompt, or None."""
    import re

    letter = label.strip().strip("()")
    m = re.search(rf"\({re.escape(letter)}\)\s*(.*?)(?=\n\s*\([A-Z]\)|\Z)", prompt, flags=re.S)
    return m.group(1).strip() if m else None


def instance_text(pair: Any, *, compact: bool = False) -> str:
    """How an instance is shown to Agent-1/Agent-3: the question and the behaviour-matching answer.

    For A/B items the matching option's text is spelled out. ``compact=True`` (for the embedding scorer)
    drops the shared instruction: a persona statement becomes ``'"<statement>" -> Yes'``, an A/B item
    its question's first line and the matching option's text.
    """
    option = _option_text(pair.prompt, pair.positive)
    statement = (getattr(pair, "meta", None) or {}).get("statement")
    if compact:
        if statement:
            return f'"{statement}" -> {pair.positive}'
        if option is not None:
            question = pair.prompt.split("Choices:")[0].strip()
            return f"{question}\nAnswer: {option}"
        return f"{pair.prompt}\nAnswer: {pair.positive}"
    answer = f"{pair.positive} {option}" if option is not None else pair.positive
    return f"{pair.prompt}\nAnswer: {answer}"
