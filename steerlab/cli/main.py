"""The `app` every command registers on, with what the commands share: the logging callback, clean
errors (exit code 2, no traceback, a pointer to docs/errors.md), the threads option, the output-folder
check and the layer/strength parsers.

Help is rendered by click's plain formatter (``rich_markup_mode=None``): the rich one prints a
``<bool>`` type beside every flag.

torch, the models and the data readers are imported inside the commands, so ``steerlab --help`` is fast.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import typer

from steerlab.errors import ERRORS_DOC, SteerlabError, check_output_folder

app = typer.Typer(
    name="steerlab",
    help="Activation steering for language models: extract, sweep and evaluate steering vectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)


class BackendKind(StrEnum):
    tl = "tl"
    nnsight = "nnsight"


@contextlib.contextmanager
def clean_errors() -> Iterator[None]:
    """Bad input ends the command with its message and exit code 2, not a traceback."""
    try:
        yield
    except SteerlabError as exc:
        typer.echo(f"error: {exc}\n(symptoms, causes and fixes: {ERRORS_DOC})", err=True)
        raise typer.Exit(2) from None


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """``path`` created and checked writable (see `steerlab.errors.check_output_folder`), before any model work."""
    return check_output_folder(path, what=f"{option} folder")


def existing_file(path: str | Path, option: str) -> Path:
    """``path`` if it is an existing file, else a `SteerlabError` naming it and its option; before any model work."""
    path = Path(path)
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise SteerlabError(f"{option} {path} {state}; give the path of a file")
    return path


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress messages (INFO level).")) -> None:
    """Activation steering for language models: extract, sweep and evaluate steering vectors."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


THREADS_HELP = "CPU threads for torch (default: torch's choice). On a busy shared CPU, 1 can be several times faster."


def set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------- option parsing

_RANGE = re.compile(r"^(-?\d+)\s*-\s*(-?\d+)$")


def parse_layers(text: str, n_layers: int, model: str = "this model") -> list[int]:
    """Layers from ``"all"``, ``"10-15"`` (inclusive), ``"8,12,16"``, ``"-1"`` or ``"-4--1"``, sorted and unique.

    Negative numbers count from the end (``-1`` is the last layer).

    Example:
        >>> parse_layers("0,2-3,-1", 30)
        [0, 2, 3, 29]
    """
    from steerlab.sites import Site

    def resolve(number: str) -> int:
        return Site(int(number)).resolve(n_layers, model).layer

    layers: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == "all":
            layers.update(range(n_layers))
        elif re.fullmatch(r"-?\d+", part):
            layers.add(resolve(part))
        elif match := _RANGE.match(part):
            start, end = resolve(match[1]), resolve(match[2])
            if start > end:
                raise SteerlabError(f"layer range {part!r} runs backwards ({start} > {end}); write it low-high")
            layers.update(range(start, end + 1))
        else:
            raise SteerlabError(
                f"cannot read layers {text!r} (at {part!r}); write 'all', a range '10-15', a list '8,12,16' "
                "or negative numbers counting from the end ('-1', '-4--1')"
            )
    return sorted(layers)


def parse_coeffs(text: str, min_count: int = 2) -> list[float]:
    """Steering strengths from ``"-8,0,8"``: at least ``min_count`` distinct finite numbers, sorted.

    Pass a leading minus sign with ``--coeffs=-8,0,8`` or ``--coeffs -8,0,8``.

    Example:
        >>> parse_coeffs("8, -8, 0")
        [-8.0, 0.0, 8.0]
    """
    from steerlab.interventions import MAX_EDIT_NORM

    try:
        values = sorted({float(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise SteerlabError(f"cannot read coeffs {text!r}; write comma-separated numbers such as '-8,0,8'") from None
    huge = [v for v in values if math.isfinite(v) and abs(v) > MAX_EDIT_NORM]
    if huge:
        raise SteerlabError(
            f"coeff {huge[0]:g} is beyond any sensible strength (|coeff| <= {MAX_EDIT_NORM:g}: it would only turn the "
            "model's activations into inf/NaN); use strengths of the order of the residual norm or below, e.g. '-8,0,8'"
        )
    if len(values) < min_count or not all(math.isfinite(v) for v in values):
        need = {1: "one finite number", 2: "two distinct finite numbers (the effect is the metric at the highest "
                "minus at the lowest)"}.get(min_count, f"{min_count} distinct finite numbers")  # fmt: skip
        raise SteerlabError(f"coeffs {text!r} must be at least {need}, e.g. '-8,0,8'")
    return values
