"""The one error type steerlab raises for bad input, and the emptiness check every module shares."""

from __future__ import annotations

from collections.abc import Sequence


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
