"""An OpenAI-compatible chat-completions client (any server with ``POST {base}/chat/completions``).

Configuration comes from arguments or the environment:

| setting  | argument   | environment (first found)                          | default                     |
|----------|------------|----------------------------------------------------|-----------------------------|
| base URL | `base_url` | ``STEERLAB_AGENT_BASE_URL``, ``OPENAI_BASE_URL``    | ``https://api.openai.com/v1`` |
| model    | `model`    | ``STEERLAB_AGENT_MODEL``, ``OPENAI_MODEL``          | none: required              |
| API key  | `api_key`  | ``STEERLAB_AGENT_API_KEY``, ``OPENAI_API_KEY``      | none (local servers)        |

Only the standard library is used (``urllib``), so no client package is needed. Works with OpenAI,
vLLM, llama.cpp's server, Ollama's ``/v1`` endpoint and similar.

Example:
    >>> agent = OpenAIAgent(base_url="http://localhost:8000/v1", model="qwen2.5-7b-instruct")   # doctest: +SKIP
    >>> agent.complete([{"role": "user", "content": "Rate 0-10: ..."}], temperature=0.0)          # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from steerlab.agents.base import AgentError, Message, check_messages

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_ENV = {
    "base_url": ("STEERLAB_AGENT_BASE_URL", "OPENAI_BASE_URL"),
    "model": ("STEERLAB_AGENT_MODEL", "OPENAI_MODEL"),
    "api_key": ("STEERLAB_AGENT_API_KEY", "OPENAI_API_KEY"),
}


def _from_env(setting: str) -> str | None:
    for var in _ENV[setting]:
        if os.environ.get(var):
            return os.environ[var]
    return None


class OpenAIAgent:
    """Chat completions over HTTP. Options passed to `complete` (``temperature``, ``max_tokens``, ``seed``,
    ...) go into the request body; failed requests (connection errors, HTTP 429 and 5xx) are retried
    ``retries`` times with exponential backoff."""

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 2,
    ) -> None:
        self.base_url = (base_url or _from_env("base_url") or DEFAULT_BASE_URL).rstrip("/")
        self.model = model or _from_env("model")
        if not self.model:
            raise AgentError(
                "no model name for the OpenAI-compatible agent; pass model= or set STEERLAB_AGENT_MODEL "
                "(or OPENAI_MODEL), e.g. 'gpt-4o-mini'"
            )
        self.api_key = api_key or _from_env("api_key")
        self.timeout = timeout
        self.retries = retries

    @property
    def name(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (user-given URL)
            return json.loads(response.read().decode("utf-8"))

    def complete(self, messages: Sequence[Message], **options: Any) -> str:
        """The first choice's message content for ``messages``."""
        body = {"model": self.model, "messages": check_messages(messages), **options}
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                data = self._post(body)
                break
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:300]
                if exc.code in (429, 500, 502, 503, 504) and attempt < self.retries:
                    last = exc
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise AgentError(
                    f"{self.base_url} answered HTTP {exc.code}: {detail}; check the model name and key"
                ) from exc
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = exc
                if attempt < self.retries:
                    time.sleep(0.5 * 2**attempt)
                    continue
                raise AgentError(
                    f"cannot reach {self.base_url} ({exc}); set STEERLAB_AGENT_BASE_URL to a reachable server, "
                    "or use the local or embedding agent"
                ) from exc
            except json.JSONDecodeError as exc:
                raise AgentError(f"{self.base_url} did not answer with JSON: {exc}") from exc
        else:  # pragma: no cover - the loop always breaks or raises
            raise AgentError(f"no answer from {self.base_url}: {last}")
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise AgentError(f"unexpected answer from {self.base_url}: {json.dumps(data)[:300]}") from exc
        if not isinstance(content, str):
            raise AgentError(f"{self.base_url} returned no text content: {json.dumps(data)[:300]}")
        return content
