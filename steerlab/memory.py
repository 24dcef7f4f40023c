"""Memory that scales: global settings and the out-of-memory backoff every batched loop shares.

A 7-9B model on a GPU leaves little room beside its weights, and how much an evaluation needs depends on
its prompts: so batches halve and retry when the device runs out of memory, and the key/value prefixes a
`steerlab.tasks.ChoiceTask` keeps for reuse are bounded.

- ``batch_size`` (``STEERLAB_BATCH_SIZE``): the batch size of every call not given one (tasks, activation
  collection, extraction). Default None: each function's own (16; 8 for `steerlab.tasks.PerplexityTask`).
- ``retry_oom`` (``STEERLAB_RETRY_OOM``, ``0`` turns it off): a batch that runs out of device memory
  (``torch.OutOfMemoryError``, or a RuntimeError saying "out of memory") is halved and retried, down to one
  item; the smaller size is kept for the rest of the call. Default True.
- ``prefix_cache_mb`` (``STEERLAB_PREFIX_CACHE_MB``): the most one task keeps in cached key/value prefixes
  (MiB); prefixes beyond it are recomputed when used. Default None: half the model's weights.

Example:
    >>> import steerlab.memory as memory
    >>> with memory.configured(batch_size=4):                     # doctest: +SKIP
    ...     task = ChoiceTask.from_pairs(lm, pairs)                # batches of 4
    >>> memory.configure(prefix_cache_mb=2048)                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass
class MemorySettings:
    """The global memory settings (see the module docstring); change them with `configure`."""

    batch_size: int | None = None
    retry_oom: bool = True
    prefix_cache_mb: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):  # fmt: skip
            raise SteerlabError(f"batch_size must be a positive int or None (each call's default), got "
                                f"{self.batch_size!r}")  # fmt: skip
        if not isinstance(self.retry_oom, bool):
            raise SteerlabError(f"retry_oom must be True or False, got {self.retry_oom!r}")
        if self.prefix_cache_mb is not None and not (isinstance(self.prefix_cache_mb, int | float)
                                                     and self.prefix_cache_mb >= 0):  # fmt: skip
            raise SteerlabError(f"prefix_cache_mb must be a number >= 0 (0: cache nothing) or None (half the model's "
                                f"weights), got {self.prefix_cache_mb!r}")  # fmt: skip


def _from_environment() -> MemorySettings:
    env = os.environ
    try:
        return MemorySettings(
            batch_size=int(env["STEERLAB_BATCH_SIZE"]) if env.get("STEERLAB_BATCH_SIZE") else None,
            retry_oom=env.get("STEERLAB_RETRY_OOM", "1").strip().lower() not in ("0", "false", "no", "off"),
            prefix_cache_mb=float(env["STEERLAB_PREFIX_CACHE_MB"]) if env.get("STEERLAB_PREFIX_CACHE_MB") else None,
        )
    except ValueError as exc:
        raise SteerlabError(f"cannot read steerlab's memory settings from the environment: {exc}; STEERLAB_BATCH_SIZE "
                            "takes a positive int and STEERLAB_PREFIX_CACHE_MB a number of MiB") from None  # fmt: skip


settings = _from_environment()
"""The settings in force (read from the environment at import; change them with `configure`)."""


def configure(**changes) -> MemorySettings:
    """Change the global settings (``batch_size``, ``retry_oom``, ``prefix_cache_mb``); returns the previous ones."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(MemorySettings)}
    if unknown:
        raise SteerlabError(f"unknown memory settings {sorted(unknown)}; valid: batch_size, retry_oom, prefix_cache_mb")
    global settings
    previous, settings = settings, dataclasses.replace(settings, **changes)
    return previous


@contextlib.contextmanager
def configured(**changes) -> Iterator[MemorySettings]:
    """`configure` for the duration of a ``with`` block."""
    previous = configure(**changes)
    try:
        yield settings
    finally:
        configure(**dataclasses.asdict(previous))


def batch_size(given: int | None, default: int = 16) -> int:
    """``given`` if it is set, else the global ``batch_size``, else ``default``."""
    if given is None:
        return settings.batch_size or default
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise SteerlabError(f"batch_size must be a positive int (or None for the default), got {given!r}")
    return given


def is_oom(exc: BaseException) -> bool:
    """True for a device out-of-memory error (``torch.OutOfMemoryError``, or a RuntimeError saying so)."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def release() -> None:
    """Give the memory of dropped tensors back to the device (after an out-of-memory error)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def halving(n: int, size: int, run: Callable[[int, int], T], *, what: str = "batch") -> Iterator[T]:
    """``run(start, stop)`` over ``[0, n)`` in consecutive chunks of ``size`` items, yielded in order; a chunk
    that runs out of memory is retried at half the size (and the rest keep the smaller size), down to one item.

    Example:
        >>> list(halving(5, 2, lambda a, b: (a, b)))
        [(0, 2), (2, 4), (4, 5)]
    """
    start = 0
    while start < n:
        stop = min(start + size, n)
        try:
            out = run(start, stop)
        except Exception as exc:
            if not retrying(exc, stop - start):
                raise
            size = max(1, (stop - start) // 2)
            logger.warning("out of memory with %d items per %s: retrying with %d", stop - start, what, size)
            continue
        yield out
        start = stop


def retrying(exc: BaseException, size: int) -> bool:
    """Whether a call on ``size`` items that raised ``exc`` should be retried on fewer (frees memory if so)."""
    if size <= 1 or not settings.retry_oom or not is_oom(exc):
        return False
    release()
    return True
