"""An OpenAI-compatible chat-completions client (any server with ``POST {base}/chat/completions``).

Configuration comes from arguments or the environment:

| setting  | argument   | environment (first found)                          | default                     |
|----------|------------|----------------------------------------------------|-----------------------------|
| base URL | `base_url` | ``STEERLAB_AGENT_BASE_URL``, ``OPENAI_BASE_URL``    | ``https://api.openai.com/v1`` |
| model    | `model`    | ``STEERLAB_AGENT_MODEL``, ``OPENAI_MODEL``          | none: required              |
| API key  | `api_key`  | ``STEERLAB_AGENT_API_KEY``, ``OPENAI_API_KEY``      | none (local servers)        |
| timeout  | `timeout`  | ``STEERLAB_AGENT_TIMEOUT`` (seconds; CLI ``--agent-timeout``) | 30 s              |

``timeout`` bounds each wait for the server's answer (the read timeout); connecting gets at most
`CONNECT_TIMEOUT` seconds. A server that accepts the connection and never answers therefore costs
``timeout`` seconds per attempt, and every failed attempt is logged (WARNING) before the retry.

Only the standard library is used (``http.client``), so no client package is needed. Works with OpenAI,
vLLM, llama.cpp's server, Ollama's ``/v1`` endpoint and similar (no HTTP proxy support).

Example:
    >>> agent = OpenAIAgent(base_url="http://localhost:8000/v1", model="qwen2.5-7b-instruct")   # doctest: +SKIP
    >>> agent.complete([{"role": "user", "content": "Rate 0-10: ..."}], temperature=0.0)          # doctest: +SKIP
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import ssl
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from steerlab.agents.base import AgentError, Message, check_messages

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for an answer (per attempt) unless ``timeout=`` or ``STEERLAB_AGENT_TIMEOUT`` says otherwise."""
CONNECT_TIMEOUT = 10.0
"""Most seconds to wait for a connection (less if ``timeout`` is shorter)."""
RETRY_STATUS = (429, 500, 502, 503, 504)
_ENV = {
    "base_url": ("STEERLAB_AGENT_BASE_URL", "OPENAI_BASE_URL"),
    "model": ("STEERLAB_AGENT_MODEL", "OPENAI_MODEL"),
    "api_key": ("STEERLAB_AGENT_API_KEY", "OPENAI_API_KEY"),
    "timeout": ("STEERLAB_AGENT_TIMEOUT",),
}


class _HTTPStatus(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"HTTP {code}: {detail}")
        self.code, self.detail = code, detail


def _check_timeout(value: Any, source: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise AgentError(f"agent timeout from {source} must be a positive number of seconds, got {value!r}; e.g. 30")
    return seconds


def _from_env(setting: str) -> str | None:
    for var in _ENV[setting]:
        if os.environ.get(var):
            return os.environ[var]
    return None


class OpenAIAgent:
    """Chat completions over HTTP. Options passed to `complete` (``temperature``, ``max_tokens``, ``seed``,
    ...) go into the request body; failed requests (connection errors, timeouts, HTTP 429 and 5xx) are
    retried ``retries`` times with exponential backoff, each retry logged as a warning."""

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | None = None,
        retries: int = 2,
    ) -> None:
        self.base_url = (base_url or _from_env("base_url") or DEFAULT_BASE_URL).rstrip("/")
        url = urllib.parse.urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise AgentError(
                f"agent base URL {self.base_url!r} is not an http(s) URL; give one like http://localhost:8000/v1 "
                "(argument base_url= or STEERLAB_AGENT_BASE_URL)"
            )
        self._url = url
        self.model = model or _from_env("model")
        if not self.model:
            raise AgentError(
                "no model name for the OpenAI-compatible agent; pass model= or set STEERLAB_AGENT_MODEL "
                "(or OPENAI_MODEL), e.g. 'gpt-4o-mini'"
            )
        self.api_key = api_key or _from_env("api_key")
        env_timeout = _from_env("timeout")
        if timeout is not None:
            self.timeout = _check_timeout(timeout, "timeout=")
        elif env_timeout is not None:
            self.timeout = _check_timeout(env_timeout, "STEERLAB_AGENT_TIMEOUT")
        else:
            self.timeout = DEFAULT_TIMEOUT
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise AgentError(f"retries must be an integer >= 0, got {retries!r}")
        self.retries = retries

    @property
    def name(self) -> str:
        return f"openai:{self.model}@{self.base_url}"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request: connect within `CONNECT_TIMEOUT` (or ``timeout`` if shorter), then wait at most
        ``timeout`` seconds for each read of the answer."""
        url = self._url
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = cls(url.hostname, url.port, timeout=min(CONNECT_TIMEOUT, self.timeout))
        try:
            conn.connect()
            conn.sock.settimeout(self.timeout)
            conn.request("POST", f"{url.path.rstrip('/')}/chat/completions", json.dumps(body).encode("utf-8"), headers)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            if response.status >= 400:
                raise _HTTPStatus(response.status, text[:300])
            return json.loads(text)
        finally:
            conn.close()

    def complete(self, messages: Sequence[Message], **options: Any) -> str:
        """The first choice's message content for ``messages``."""
        body = {"model": self.model, "messages": check_messages(messages), **options}
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                data = self._post(body)
                break
            except _HTTPStatus as exc:
                if exc.code not in RETRY_STATUS or attempt == attempts - 1:
                    raise AgentError(
                        f"{self.base_url} answered HTTP {exc.code}: {exc.detail}; check the model name and key"
                    ) from exc
                problem = f"HTTP {exc.code}"
            except TimeoutError as exc:
                problem = f"no answer within {self.timeout:g} s"
                if attempt == attempts - 1:
                    raise AgentError(
                        f"{self.base_url} gave no answer within {self.timeout:g} s on each of {attempts} attempts; "
                        "check that the server is up and serving the model, or allow more time (timeout=, "
                        "STEERLAB_AGENT_TIMEOUT, CLI --agent-timeout)"
                    ) from exc
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                if attempt == attempts - 1:
                    raise AgentError(
                        f"cannot reach {self.base_url} ({problem}); set STEERLAB_AGENT_BASE_URL to a reachable server, "
                        "or use the local or embedding agent"
                    ) from exc
            except json.JSONDecodeError as exc:
                raise AgentError(f"{self.base_url} did not answer with JSON: {exc}") from exc
            wait = 0.5 * 2**attempt
            logger.warning("agent %s: attempt %d of %d failed (%s); retrying in %.1f s",
                           self.name, attempt + 1, attempts, problem, wait)  # fmt: skip
            time.sleep(wait)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise AgentError(f"unexpected answer from {self.base_url}: {json.dumps(data)[:300]}") from exc
        if not isinstance(content, str):
            raise AgentError(f"{self.base_url} returned no text content: {json.dumps(data)[:300]}")
        return content
