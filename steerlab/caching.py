"""A file cache for expensive intermediate results of a notebook or script (activations, vectors).

    >>> acts = cached("runs/acts/caa_refusal.pt", lambda: collect_pairs(lm, train, sites))  # doctest: +SKIP

The first call computes and saves; a rerun loads the file and skips the work. Files are written with
`torch.save` (pickle), so only load caches you wrote yourself: steering vectors you share go through
`SteeringVector.save` (safetensors + JSON) instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


def cached(path: str | os.PathLike, make: Callable[[], T], *, refresh: bool = False) -> T:
    """``make()``, saved at ``path``; if ``path`` exists (and not ``refresh``), its contents instead.

    The file is written to a temporary name and renamed, so a run killed mid-write leaves no
    truncated cache behind.
    """
    import torch

    path = Path(path)
    if path.exists() and not refresh:
        logger.info("cache hit: %s", path)
        return torch.load(path, weights_only=False)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(value, tmp)
    tmp.replace(path)
    return value
