"""Generic data-file readers: JSON arrays, JSON Lines, CSV and TSV into checked rows, and the path-based
loaders built on them (`load_persona_file`, `load_ab_file`, `load_pairs_jsonl`, `load_mcq_jsonl`,
`load_text_label`), so a user file in one of those formats loads like a shared dataset.

Malformed input raises `DataError` naming the file, the line (1-based; for JSON arrays the 0-based
item index), what is wrong and how to fix it. Records that repeat an earlier one are kept but reported
(a logged warning with their count and lines); `steerlab.data.split` keeps such copies in one part.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steerlab.data.records import ContrastPair, DataError, MCQItem, TextItem, _close, _mcq_problem, record_key

logger = logging.getLogger(__name__)

__all__ = ["load_ab_file", "load_mcq_jsonl", "load_pairs_jsonl", "load_persona_file", "load_text_label"]


# ------------------------------------------------------------------------------ file reading


def _existing_file(path: str | Path) -> Path:
    """``path`` as a Path if it is a file, else a DataError that suggests close file names."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass the path of a data file inside it")
    if not path.parent.is_dir():
        raise DataError(f"file not found: {path} (its folder {path.parent} does not exist either)")
    close = _close(path.name, [p.name for p in path.parent.iterdir()])
    hint = f"; did you mean {', '.join(str(path.parent / c) for c in close)}?" if close else ""
    raise DataError(f"file not found: {path}{hint}")


def _read_utf8(path: Path) -> str:
    """The text of a data file (UTF-8, a BOM is dropped); DataError if it is not UTF-8 or is empty."""
    raw = _existing_file(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: not valid UTF-8 (byte {raw[exc.start : exc.start + 1]!r} at offset {exc.start}); "
            "re-save the file as UTF-8 (plain-text corpora in Latin-1 can be read with read_text_file)"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: the file is empty; it needs at least one record")
    return text


@dataclass(frozen=True)
class _Row:
    """One record of a data file and where it came from, for error messages and ``meta``."""

    path: Path
    number: int  # 1-based line for JSONL/CSV/TSV, 0-based item index for JSON arrays
    data: dict[str, Any]
    is_item: bool = False

    @property
    def where(self) -> str:
        return f"item {self.number} (0-based)" if self.is_item else f"line {self.number}"

    @property
    def location(self) -> dict[str, int]:
        return {"index": self.number} if self.is_item else {"line": self.number}

    def fail(self, problem: str, fix: str) -> DataError:
        return DataError(f"{self.path}, {self.where}: {problem}; {fix}")

    def text(self, name: str, *, allow_empty: bool = False) -> str:
        value = self.data[name]
        if not isinstance(value, str):
            raise self.fail(
                f"field {name!r} must be text, got {type(value).__name__} {value!r:.60}", "write it as a string"
            )
        if not allow_empty and not value.strip():
            raise self.fail(f"field {name!r} is empty", "fill it in or remove the record")
        return value

    def integer(self, name: str, fix: str) -> int:
        value = self.data[name]
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise self.fail(f"field {name!r} must be an integer, got {value!r:.60}", fix)


def _jsonl_rows(path: Path, text: str) -> list[_Row]:
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}, line {number}: invalid JSON ({exc.msg} at column {exc.colno}); "
                "JSON Lines needs one complete JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(
                f"{path}, line {number}: expected a JSON object, got {type(record).__name__}; "
                "write one {...} object per line"
            )
        rows.append(_Row(path, number, record))
    return rows


def _json_array_rows(path: Path, text: str) -> list[_Row]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}, line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno}); "
            "the file must be one JSON array of objects (or JSON Lines, one object per line)"
        ) from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {type(records).__name__}")
    rows = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise DataError(f"{path}, item {index} (0-based): expected a JSON object, got {type(record).__name__}")
        rows.append(_Row(path, index, record, is_item=True))
    return rows


def _csv_rows(path: Path, text: str, delimiter: str, required: Sequence[str]) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        missing = [name for name in required if name not in header]
        if missing:
            raise DataError(
                f"{path}, line 1: the header lacks column(s) {missing}; found columns {header}, needed {list(required)}"
            )
        rows = []
        start = reader.line_num + 1
        for record in reader:
            if record:  # a blank line is not a record
                if len(record) != len(header):
                    raise DataError(
                        f"{path}, line {start}: {len(record)} fields but the header has {len(header)}; "
                        "quote fields that contain the delimiter"
                    )
                rows.append(_Row(path, start, dict(zip(header, record, strict=True))))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: unreadable CSV ({exc})") from None
    return rows


def _read_rows(path: str | Path, required: Sequence[str] = ()) -> list[_Row]:
    """The records of a JSON array, JSON Lines, CSV or TSV file, each checked for ``required`` fields.

    The format comes from the suffix for ``.csv``/``.tsv``; otherwise a file that starts with ``[``
    is a JSON array and anything else is JSON Lines.
    """
    path = _existing_file(path)
    text = _read_utf8(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows = _csv_rows(path, text, "\t" if suffix == ".tsv" else ",", required)
    elif text.lstrip().startswith("["):
        rows = _json_array_rows(path, text)
    else:
        rows = _jsonl_rows(path, text)
    if not rows:
        raise DataError(f"{path}: no records (only a header or an empty list); it needs at least one record")
    for row in rows:
        missing = [name for name in required if name not in row.data]
        if missing:
            raise row.fail(
                f"missing field(s) {missing}; fields found: {sorted(row.data)}",
                f"every record needs {list(required)}",
            )
    return rows


def _report_copies(path: Path, records: Sequence, rows: Sequence[_Row]) -> None:
    """Log how many records repeat an earlier one, with up to three examples by line (or item index)."""
    first: dict = {}
    copies = []
    for record, row in zip(records, rows, strict=True):
        key = record_key(record)
        if key in first:
            copies.append(f"{row.where} = {first[key].where}")
        else:
            first[key] = row
    if copies:
        logger.warning(
            "%s: %d of %d records are copies of earlier ones (e.g. %s); split() keeps copies in one part, so they "
            "never leak from train to test, but they count twice in means: remove them if they are not intended",
            path, len(copies), len(records), "; ".join(copies[:3]),
        )  # fmt: skip


def _make_mcq(row: _Row, question: str, choices: Sequence[str], answer: int, meta: dict[str, Any]) -> MCQItem:
    problem = _mcq_problem(choices, answer)
    if problem is not None:
        raise row.fail(*problem)
    return MCQItem(question, tuple(choices), answer, meta)


def _answer_from_label(row: _Row, labels: Sequence[str], key: str) -> int:
    """The index of the option labelled ``key`` (e.g. "C"), which must occur exactly once."""
    hits = [i for i, label in enumerate(labels) if label == key.strip()]
    if len(hits) != 1:
        state = "is not among" if not hits else "occurs more than once in"
        raise row.fail(f"answer label {key!r} {state} the option labels {list(labels)}", "fix the answer key")
    return hits[0]


# --------------------------------------------------------------------------- path-based readers

_AB_LABEL = re.compile(r"^\([A-Z]\)$")
_BEHAVIOUR_FIELDS = ("question", "answer_matching_behavior", "answer_not_matching_behavior")


def _pairs(
    path: str | Path,
    fields: tuple[str, str, str],
    *,
    ab: bool,
    source: str | None,
    base_meta: dict[str, Any],
) -> list[ContrastPair]:
    """Contrast pairs from the (prompt, positive, negative) ``fields`` of every record in a file.

    With ``ab=True`` both answers must be option labels such as ``(A)`` that occur in the prompt.
    Other fields of the record are kept in ``meta``.
    """
    rows = _read_rows(path, fields)
    prompt_field, pos_field, neg_field = fields
    pairs = []
    for row in rows:
        prompt = row.text(prompt_field)
        positive = row.text(pos_field).strip()
        negative = row.text(neg_field).strip()
        if positive == negative:
            raise row.fail(f"{pos_field} and {neg_field} are both {positive!r}", "the two answers must differ")
        if ab:
            for answer in (positive, negative):
                if not _AB_LABEL.match(answer):
                    raise row.fail(
                        f"answer {answer!r} is not an option label like '(A)'",
                        "use the persona format (load_persona_file) for free-text answers",
                    )
                if answer not in prompt:
                    raise row.fail(f"the question has no option {answer}", "add the option to the question text")
        extras = {k: v for k, v in row.data.items() if k not in fields}
        meta = {**extras, "source": source or str(path), **row.location, **base_meta}
        pairs.append(ContrastPair(prompt, positive, negative, meta))
    _report_copies(Path(path), pairs, rows)
    return pairs


def load_persona_file(
    path: str | Path, *, behaviour: str | None = None, source: str | None = None
) -> list[ContrastPair]:
    """Read a file in the Anthropic model-written-evals format (Perez et al. 2022).

    Each record needs ``question``, ``answer_matching_behavior`` and ``answer_not_matching_behavior``
    (JSON Lines or a JSON array). Answers are stripped (``" Yes"`` becomes ``"Yes"``); other fields
    (``statement``, ``label_confidence``) go to ``meta``.

    Args:
        path: The file.
        behaviour: The behaviour name for ``meta``; defaults to the file name without suffix.
        source: The ``meta["source"]`` label; defaults to ``str(path)``.

    Returns:
        One pair per record, positive = the answer matching the behaviour.

    Example:
        >>> pairs = load_persona_file("my_evals/honesty.jsonl")
        >>> pairs[0].meta["behaviour"]
        'honesty'
    """
    meta = {"behaviour": behaviour or Path(path).stem}
    return _pairs(path, _BEHAVIOUR_FIELDS, ab=False, source=source, base_meta=meta)


def load_ab_file(path: str | Path, *, behaviour: str | None = None, source: str | None = None) -> list[ContrastPair]:
    """Read a file of A/B questions in the CAA format (Rimsky et al. 2024).

    Same fields as `load_persona_file`, but both answers must be option labels such as ``"(A)"``
    (surrounding spaces are stripped) that occur in the question text.

    Args:
        path: The file (a JSON array as in CAA, or JSON Lines as in advanced-ai-risk).
        behaviour: The behaviour name for ``meta``; defaults to the file name without suffix.
        source: The ``meta["source"]`` label; defaults to ``str(path)``.

    Returns:
        One pair per record: prompt = question, positive/negative = the matching/other label.

    Example:
        >>> pairs = load_ab_file("caa/datasets/test/refusal/test_dataset_ab.json", behaviour="refusal")
        >>> pairs[0].positive in ("(A)", "(B)")
        True
    """
    meta = {"behaviour": behaviour or Path(path).stem}
    return _pairs(path, _BEHAVIOUR_FIELDS, ab=True, source=source, base_meta=meta)


def load_pairs_jsonl(path: str | Path) -> list[ContrastPair]:
    """Read user contrast pairs: records with ``prompt``, ``positive`` and ``negative``.

    Example:
        >>> # pairs.jsonl: {"prompt": "I think", "positive": "I love you", "negative": "I hate you"}
        >>> load_pairs_jsonl("pairs.jsonl")[0].positive
        'I love you'
    """
    return _pairs(path, ("prompt", "positive", "negative"), ab=False, source=None, base_meta={})


def load_mcq_jsonl(path: str | Path) -> list[MCQItem]:
    """Read user multiple-choice items: ``question``, ``choices`` (a list of text), ``answer`` (0-based index).

    Example:
        >>> # mcq.jsonl: {"question": "2 + 2 = ?", "choices": ["3", "4"], "answer": 1}
        >>> load_mcq_jsonl("mcq.jsonl")[0].correct
        '4'
    """
    fields = ("question", "choices", "answer")
    items = []
    rows = _read_rows(path, fields)
    for row in rows:
        choices = row.data["choices"]
        if not isinstance(choices, list):
            raise row.fail(
                f"field 'choices' must be a list of strings, got {type(choices).__name__}",
                'write it as ["first", "second", ...]',
            )
        answer = row.integer("answer", "give the 0-based index of the correct choice (0 for the first, not 'A')")
        extras = {k: v for k, v in row.data.items() if k not in fields}
        meta = {**extras, "source": str(path), **row.location}
        items.append(_make_mcq(row, row.text("question"), choices, answer, meta))
    _report_copies(Path(path), items, rows)
    return items


def load_text_label(path: str | Path, *, text_field: str = "text", label_field: str = "label") -> list[TextItem]:
    """Read labelled text for probes and classifiers: CSV/TSV with a header, or JSON(L), with text and label.

    Labels must be integers and take at least two values.

    Args:
        path: The file.
        text_field: Name of the text column.
        label_field: Name of the integer label column.

    Returns:
        One `TextItem` per record, other columns in ``meta``.

    Raises:
        DataError: If a field is missing, a label is not an integer, or every label is the same.

    Example:
        >>> # reviews.csv: text,label / "great film",1 / "dull",0
        >>> sorted({item.label for item in load_text_label("reviews.csv")})
        [0, 1]
    """
    fields = (text_field, label_field)
    items = []
    rows = _read_rows(path, fields)
    for row in rows:
        label = row.integer(label_field, "labels must be integer class ids such as 0 and 1")
        extras = {k: v for k, v in row.data.items() if k not in fields}
        items.append(TextItem(row.text(text_field), label, {**extras, "source": str(path), **row.location}))
    classes = {item.label for item in items}
    if len(classes) < 2:
        raise DataError(
            f"{path}: every one of the {len(items)} records has {label_field} = {classes.pop()}; "
            f"'{label_field}' must take at least two values (e.g. 0 and 1) to train or evaluate a classifier"
        )
    _report_copies(Path(path), items, rows)
    return items

