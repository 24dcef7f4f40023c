"""LLM agents for SAAS's semantic scoring, pluggable: an OpenAI-compatible client, the embedded model,
an embedding scorer for Agent-3, a YAML sub-behaviour file in place of Agents 1-2, and a JSON cache.

Public API (names are imported lazily, so ``import steerlab.agents`` loads neither torch nor
sentence-transformers):

| name | what |
|---|---|
| `Agent` | protocol: ``name`` and ``complete(messages, **options) -> str`` |
| `OpenAIAgent(base_url, model, api_key)` | chat completions over HTTP; settings from env vars |
| `LocalAgent(backend)` | a loaded steerlab model answering the prompts (``complete``, ``complete_many``) |
| `EmbeddingScorer()` | Agent-3 as MiniLM similarity: ``score(texts, descriptions) -> (n, K)`` in [0, 10] |
| `AgentCache(folder)`, `CachedAgent(agent, cache)` | JSON cache per call, keyed by prompt hash |
| `SubBehaviour`, `SubBehaviourSet`, `load_subbehaviours`, `save_subbehaviours` | sub-behaviours + YAML |
| `from_statement`, `STATEMENT_SOURCE` | no decomposition agent: the behaviour as one sub-behaviour |
| `decompose`, `rate_contributions`, `score_instances` | Agent-1, Agent-2, Agent-3 |
| `ask`, `attempts_frame`, `instance_text`, `prompt_template` | one call with retries; the attempt log |
| `parse_scores`, `parse_subbehaviours`, `ParseError`, `AgentError` | robust parsing; errors |
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Agent": "base", "AgentCache": "base", "AgentError": "base", "CachedAgent": "base", "call_key": "base",
    "OpenAIAgent": "openai", "LocalAgent": "local", "EmbeddingScorer": "embedding", "minilm_folder": "embedding",
    "SubBehaviour": "subbehaviours", "SubBehaviourSet": "subbehaviours", "load_subbehaviours": "subbehaviours",
    "save_subbehaviours": "subbehaviours", "MIN_CONTRIBUTION": "subbehaviours", "from_statement": "subbehaviours",
    "STATEMENT_SOURCE": "subbehaviours",
    "decompose": "roles", "rate_contributions": "roles", "score_instances": "roles", "ask": "roles",
    "attempts_frame": "roles", "instance_text": "roles", "prompt_template": "roles",
    "parse_scores": "parsing", "parse_subbehaviours": "parsing", "ParseError": "parsing",
}  # fmt: skip

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from steerlab.agents.base import Agent, AgentCache, AgentError, CachedAgent, call_key  # noqa: F401
    from steerlab.agents.embedding import EmbeddingScorer, minilm_folder  # noqa: F401
    from steerlab.agents.local import LocalAgent  # noqa: F401
    from steerlab.agents.openai import OpenAIAgent  # noqa: F401
    from steerlab.agents.parsing import ParseError, parse_scores, parse_subbehaviours  # noqa: F401
    from steerlab.agents.roles import (  # noqa: F401
        ask,
        attempts_frame,
        decompose,
        instance_text,
        prompt_template,
        rate_contributions,
        score_instances,
    )  # fmt: skip
    from steerlab.agents.subbehaviours import (  # noqa: F401
        MIN_CONTRIBUTION,
        STATEMENT_SOURCE,
        SubBehaviour,
        SubBehaviourSet,
        from_statement,
        load_subbehaviours,
        save_subbehaviours,
    )  # fmt: skip


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"steerlab.agents.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'steerlab.agents' has no attribute {name!r}")
