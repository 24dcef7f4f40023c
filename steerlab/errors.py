"""The one error type steerlab raises for bad input, and the checks every module shares: emptiness,
positive counts, finite numbers and writable output folders.

Each message says what is wrong, the value, what is valid and the way out; where docs/errors.md has an
entry for the error, the message points to it (`ERRORS_DOC`).
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

ERRORS_DOC = "docs/errors.md"
"""The page of symptoms, causes and fixes that messages refer to (in the repository; linked from the README)."""


class SteerlabError(ValueError):
    """Bad input to steerlab. The message says what is wrong, what is valid, and the way out."""


def check_nonempty(things: Sequence, what: str, fix: str) -> list:
    """``things`` as a list; raises if it is empty or a single string (``what`` names it, ``fix`` says what to do)."""
    if isinstance(things, str):
        raise SteerlabError(f"{what} must be a sequence, got a single string; wrap it in a list")
    things = list(things)
    if not things:
        raise SteerlabError(f"no {what} were given; {fix}")
    return things


def check_positive_int(value: object, name: str) -> int:
    """``value`` if it is an int >= 1 (not a bool), else a `SteerlabError` naming ``name`` and the value.

    Example:
        >>> check_positive_int(16, "batch_size")
        16
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise SteerlabError(f"{name} must be a positive integer, got {value!r}; e.g. {name}=16")
    return int(value)


def check_finite(value: object, name: str, *, limit: float | None = None, fix: str = "") -> float:
    """``value`` as a float if it is a finite real number (and ``|value| <= limit`` when given).

    Accepts Python and NumPy numbers and one-element tensors; bools and strings are refused.

    Example:
        >>> check_finite(4, "alpha")
        4.0
    """
    if hasattr(value, "numel") and value.numel() == 1:  # a one-element torch tensor
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SteerlabError(f"{name} must be a real number, got {type(value).__name__} {value!r:.60}")
    number = float(value)
    way_out = f"; {fix}" if fix else ""
    if not math.isfinite(number):
        raise SteerlabError(f"{name} must be a finite number, got {number}{way_out}")
    if limit is not None and abs(number) > limit:
        raise SteerlabError(f"{name} = {number:g} is beyond the sensible range (|{name}| <= {limit:g}){way_out}")
    return number


def check_output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) if missing and check that files can be written in it.

    Called by every entry point that writes results, before any model work, so a bad ``--out`` fails
    in a second, not after the run.

    Raises:
        SteerlabError: ``path`` is a file, cannot be created, or is not writable; the message names it.
    """
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise SteerlabError(f"{what} {folder} is a file, not a folder; give a folder path (it is created if missing)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SteerlabError(
            f"cannot create {what} {folder}: {exc.strerror or exc}; give a folder on a writable disk"
        ) from None
    try:  # os.access is not enough: root passes it on read-only mounts
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".steerlab-write-test-"):
            pass
    except OSError as exc:
        raise SteerlabError(
            f"cannot write to {what} {folder}: {exc.strerror or exc} (read-only?); give a folder you can write to"
        ) from None
    return folder
