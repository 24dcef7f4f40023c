"""Plain-text corpora as passages, for perplexity and SAE training: WikiText-2, tiny-shakespeare and three
NLTK corpora, and `load_text_file` / `read_text_file` for any text file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from steerlab.data.readers import _existing_file
from steerlab.data.records import DataError, _check_option
from steerlab.data.root import _dataset_folder

logger = logging.getLogger(__name__)

__all__ = ["TEXT_CORPORA", "load_text", "load_text_file", "read_text_file", "text_files"]


@dataclass(frozen=True)
class _Corpus:
    folder: str
    files: dict[str, str]  # split -> glob pattern inside folder
    style: Literal["paragraphs", "wikitext"]


_CORPORA = {
    "wikitext2": _Corpus("wikitext2/word_language_model/data/wikitext-2",
                         {"test": "test.txt", "valid": "valid.txt"}, "wikitext"),
    "tinyshakespeare": _Corpus("tinyshakespeare/data/tinyshakespeare", {"all": "input.txt"}, "paragraphs"),
    "nltk-gutenberg": _Corpus("nltk-text/nltk_data/corpora/gutenberg", {"all": "*.txt"}, "paragraphs"),
    "nltk-state_union": _Corpus("nltk-text/nltk_data/corpora/state_union", {"all": "*.txt"}, "paragraphs"),
    "nltk-inaugural": _Corpus("nltk-text/nltk_data/corpora/inaugural", {"all": "*.txt"}, "paragraphs"),
}  # fmt: skip
TEXT_CORPORA = tuple(_CORPORA)
_WIKITEXT_HEADING = re.compile(r"^(= )+.*( =)+$")


def read_text_file(path: str | Path) -> str:
    """The text of a plain-text file: UTF-8, or Latin-1 if it is not valid UTF-8 (some NLTK texts).

    Line ends are normalised to ``"\\n"``.

    Example:
        >>> read_text_file("shakespeare-caesar.txt").count("Cæsar") > 0
        True
    """
    path = _existing_file(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        logger.debug("%s is not UTF-8; reading it as Latin-1", path)
        text = raw.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _passages(text: str, style: Literal["paragraphs", "lines", "wikitext"]) -> tuple[list[str], int]:
    """Non-empty passages of ``text`` and the number of WikiText heading lines skipped.

    ``paragraphs`` splits on blank lines; ``lines`` takes every non-blank line; ``wikitext`` takes
    every non-blank line that is not a ``= Heading =`` line.
    """
    if style == "paragraphs":
        blocks = re.split(r"\n[ \t]*\n", text)
        return [p for p in ("\n".join(line.rstrip() for line in b.strip().split("\n")) for b in blocks) if p], 0
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if style == "lines":
        return lines, 0
    kept = [line for line in lines if not _WIKITEXT_HEADING.match(line)]
    return kept, len(lines) - len(kept)


def _keep_long(passages: list[str], min_chars: int, what: str, n_headings: int) -> list[str]:
    kept = [p for p in passages if len(p) >= min_chars]
    if len(kept) < len(passages):
        logger.warning(
            "%s: kept %d of %d passages; %d shorter than min_chars=%d were left out",
            what,
            len(kept),
            len(passages),
            len(passages) - len(kept),
            min_chars,
        )
    if n_headings:
        logger.info("%s: skipped %d heading lines", what, n_headings)
    return kept


def load_text_file(
    path: str | Path,
    *,
    style: Literal["paragraphs", "lines", "wikitext"] = "paragraphs",
    min_chars: int = 1,
) -> list[str]:
    """Passages of a plain-text file, for perplexity and SAE training.

    Args:
        path: The file (UTF-8, or Latin-1 as a fallback).
        style: ``"paragraphs"`` (blank-line separated blocks, inner line breaks kept), ``"lines"``
            (non-blank lines) or ``"wikitext"`` (non-blank lines that are not ``= Heading =`` lines).
        min_chars: Passages shorter than this are left out (with a warning that counts them).

    Example:
        >>> load_text_file("input.txt")[0]
        'First Citizen:\\nBefore we proceed any further, hear me speak.'
    """
    passages, n_headings = _passages(read_text_file(path), style)
    return _keep_long(passages, min_chars, str(path), n_headings)


def text_files(corpus: str, split: str | None = None, root: str | Path | None = None) -> list[Path]:
    """The files of a text corpus (README files excluded), sorted.

    Args:
        corpus: One of `TEXT_CORPORA`.
        split: ``"test"`` or ``"valid"`` for wikitext2 (default ``"test"``; ``train`` is missing);
            other corpora have the single split ``"all"`` (the default).
        root: The data root.

    Example:
        >>> [p.name for p in text_files("wikitext2", "valid")]
        ['valid.txt']
    """
    _check_option(corpus, TEXT_CORPORA, "text corpus")
    spec = _CORPORA[corpus]
    split = split or next(iter(spec.files))
    if corpus == "wikitext2" and split == "train":
        raise DataError(
            "wikitext2 train.txt is missing from this copy of the data (larger than 4 MiB, see "
            "PROVENANCE.md); use split='valid' or 'test'"
        )
    _check_option(split, tuple(spec.files), f"{corpus} split")
    folder = _dataset_folder(spec.folder, root)
    files = sorted(folder.glob(spec.files[split]))
    if not files:
        raise DataError(f"no {corpus} files matching {spec.files[split]!r} in {folder}; check the data root")
    return files


def load_text(
    corpus: Literal["wikitext2", "tinyshakespeare", "nltk-gutenberg", "nltk-state_union", "nltk-inaugural"],
    split: str | None = None,
    root: str | Path | None = None,
    min_chars: int = 1,
) -> list[str]:
    """Text passages of a corpus, for perplexity and SAE training.

    WikiText-2 gives its non-empty, non-heading lines (one paragraph each, tokenized text with
    ``@-@`` and ``<unk>``); tiny-shakespeare and the NLTK corpora give blank-line separated
    passages per file (NLTK Latin-1 files are decoded as Latin-1; a few State of the Union files
    contain mis-encoded punctuation such as ``¡¦`` for an apostrophe, kept as is).

    Args:
        corpus: One of `TEXT_CORPORA`.
        split: See `text_files`.
        root: The data root.
        min_chars: Passages shorter than this are left out (with a warning that counts them).

    Example:
        >>> paragraphs = load_text("wikitext2", "test", min_chars=200)
        >>> all(len(p) >= 200 for p in paragraphs)
        True
    """
    files = text_files(corpus, split, root)
    style = _CORPORA[corpus].style
    passages: list[str] = []
    n_headings = 0
    for path in files:
        found, headings = _passages(read_text_file(path), style)
        passages.extend(found)
        n_headings += headings
    return _keep_long(passages, min_chars, f"{corpus} ({len(files)} file(s))", n_headings)

