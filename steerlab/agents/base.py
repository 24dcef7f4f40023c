"""The agent protocol, and a JSON cache of every agent call (SAAS agents, `steerlab.agents`).

An *agent* is anything with a ``name`` and a ``complete(messages, **options) -> str`` method taking
OpenAI-style chat messages (``[{"role": "system"|"user"|"assistant", "content": ...}]``). The
OpenAI-compatible client (`steerlab.agents.openai.OpenAIAgent`) and the embedded model
(`steerlab.agents.local.LocalAgent`) both are; anything else can be (a ``Protocol``, no base class).

`AgentCache` stores every call as one small JSON file named by the hash of (agent name, messages,
options), recording which agent answered, so a notebook rerun is offline-reproducible and its
numbers say where they came from. `CachedAgent` puts a cache in front of any agent.

Example:
    >>> cache = AgentCache("data/agent_cache/smollm2-135m-instruct")                       # doctest: +SKIP
    >>> agent = CachedAgent(LocalAgent(lm), cache)                         # doctest: +SKIP
    >>> agent.complete([{"role": "user", "content": "Say hi."}])           # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

Message = dict[str, str]


class AgentError(SteerlabError):
    """An agent could not be reached, or answered in a form that could not be used."""


@runtime_checkable
class Agent(Protocol):
    """A chat model: ``complete(messages, **options)`` returns the assistant's answer text."""

    name: str

    def complete(self, messages: Sequence[Message], **options: Any) -> str: ...


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Validate OpenAI-style messages and return them as a list of plain dicts."""
    if isinstance(messages, str) or not messages:
        raise AgentError("messages must be a non-empty list like [{'role': 'user', 'content': '...'}]")
    out = []
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ("system", "user", "assistant")
            or not isinstance(m.get("content"), str)
        ):
            raise AgentError(
                f"message {i} is {m!r:.80}; each message needs a role (system, user or assistant) and a str content"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def call_key(agent_name: str, messages: Sequence[Message], options: dict[str, Any]) -> str:
    """The cache key of one call: sha256 of the agent name, the messages and the options (canonical JSON)."""
    blob = json.dumps({"agent": agent_name, "messages": list(messages), "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class AgentCache:
    """One JSON file per call under ``folder``: ``{key[:2]}/{key}.json`` with the agent, messages, options, answer.

    Files are written atomically (temporary name, then rename); nothing is pickled.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise AgentError(f"cache file {path} is not valid JSON ({exc}); delete it to recompute that call") from exc

    def put(self, key: str, record: dict[str, Any]) -> Path:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
        return path

    def records(self) -> list[dict[str, Any]]:
        """Every cached call (for provenance tables: which agent answered what)."""
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(self.folder.glob("*/*.json"))]

    def __len__(self) -> int:
        return sum(1 for _ in self.folder.glob("*/*.json"))


class CachedAgent:
    """An agent whose calls are answered from an `AgentCache` when present, else asked and stored.

    ``hits`` and ``misses`` count calls; with ``offline=True`` a miss raises instead of calling the agent
    (to check that a rerun really is served from the cache).
    """

    def __init__(self, agent: Agent, cache: AgentCache | str | os.PathLike, *, offline: bool = False) -> None:
        if not isinstance(agent, Agent):
            raise AgentError(
                f"{agent!r} is not an agent: it needs a `name` and a `complete(messages, **options)` method"
            )
        self.agent = agent
        self.cache = cache if isinstance(cache, AgentCache) else AgentCache(cache)
        self.offline = offline
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.agent.name

    def complete(self, messages: Sequence[Message], **options: Any) -> str:
        messages = check_messages(messages)
        key = call_key(self.name, messages, options)
        record = self.cache.get(key)
        if record is not None:
            self.hits += 1
            return record["answer"]
        if self.offline:
            raise AgentError(
                f"call {key[:12]} to {self.name} is not in the cache {self.cache.folder} and offline=True; "
                "run once with offline=False (and the agent reachable) to fill the cache"
            )
        self.misses += 1
        start = time.perf_counter()
        answer = self.agent.complete(messages, **options)
        self.cache.put(
            key,
            {"agent": self.name, "messages": messages, "options": options, "answer": answer,
             "seconds": round(time.perf_counter() - start, 3), "created": _stamp()},
        )  # fmt: skip
        return answer

    def complete_many(self, conversations: Sequence[Sequence[Message]], **options: Any) -> list[str]:
        """Answers to many conversations; cached ones are read, the rest asked together (batched if the
        agent has ``complete_many``, else one by one) and stored."""
        convs = [check_messages(c) for c in conversations]
        keys = [call_key(self.name, c, options) for c in convs]
        answers: list[str | None] = []
        for key in keys:
            record = self.cache.get(key)
            answers.append(None if record is None else record["answer"])
        todo = [i for i, a in enumerate(answers) if a is None]
        self.hits += len(convs) - len(todo)
        if todo and self.offline:
            raise AgentError(
                f"{len(todo)} calls to {self.name} are not in the cache {self.cache.folder} and offline=True"
            )
        if todo:
            self.misses += len(todo)
            start = time.perf_counter()
            batch = [convs[i] for i in todo]
            many = getattr(self.agent, "complete_many", None)
            fresh = many(batch, **options) if many else [self.agent.complete(c, **options) for c in batch]
            seconds = round((time.perf_counter() - start) / len(todo), 3)
            stamp = _stamp()
            for i, answer in zip(todo, fresh, strict=True):
                answers[i] = answer
                self.cache.put(keys[i], {"agent": self.name, "messages": convs[i], "options": options,
                                         "answer": answer, "seconds": seconds, "created": stamp})  # fmt: skip
        return [str(a) for a in answers]
