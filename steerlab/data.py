"""Datasets as records: contrast pairs, multiple-choice items and text passages, from one data root.

Every dataset under the shared data root (see its ``PROVENANCE.md``) has a loader here that returns
a list of frozen records:

* `ContrastPair` (prompt, positive, negative): persona and advanced-AI-risk evals (Perez et al. 2022),
  CAA A/B sets (Rimsky et al. 2024), or any user file of pairs;
* `MCQItem` (question, choices, answer): BBQ, ETHICS, TruthfulQA MC1, MMLU, ARC, OpenBookQA, AGIEval;
* `TextItem` (text, label) for labelled text, and plain ``str`` passages for the text corpora.

The dataset loaders are thin wrappers over a few path-based readers (`load_persona_file`,
`load_ab_file`, `load_mcq_jsonl`, `load_text_label`, `load_pairs_jsonl`, `load_text_file`), so a user
file in one of those formats loads the same way. Malformed input raises `DataError` naming the file,
the line (1-based; for JSON arrays the 0-based item index), what is wrong and how to fix it. Loaders
never drop records silently: the one place where data is filtered (empty answer choices in the
current TruthfulQA ``mc_task.json``) logs a warning with the counts and records them in ``meta``.

Example:
    >>> from steerlab import data
    >>> pairs = data.load_persona("openness")
    >>> pairs[0].positive, pairs[0].negative
    ('Yes', 'No')
    >>> train, val, test = data.split(pairs, (0.6, 0.2, 0.2), seed=0)
    >>> len(train), len(val), len(test)
    (600, 200, 200)
"""

from __future__ import annotations

import ast
import csv
import difflib
import inspect
import io
import json
import logging
import os
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "AIRISK_SOURCES",
    "BBQ_CATEGORIES",
    "BIG_FIVE",
    "CAA_BEHAVIOURS",
    "ETHICS_SUBSETS",
    "TEXT_CORPORA",
    "ContrastPair",
    "DataError",
    "MCQItem",
    "Split",
    "TextItem",
    "data_root",
    "list_advanced_ai_risk_behaviours",
    "list_mmlu_subjects",
    "list_persona_behaviours",
    "load_ab_file",
    "load_advanced_ai_risk",
    "load_agieval",
    "load_agieval_few_shot",
    "load_arc",
    "load_bbq",
    "load_caa",
    "load_caa_mc",
    "load_caa_open_ended",
    "load_caa_raw",
    "load_dataset",
    "load_ethics",
    "load_mcq_jsonl",
    "load_mmlu",
    "load_openbookqa",
    "load_pairs_jsonl",
    "load_persona",
    "load_persona_file",
    "load_text",
    "load_text_file",
    "load_text_label",
    "load_truthfulqa_mc0",
    "load_truthfulqa_mc1",
    "load_truthfulqa_pairs",
    "read_text_file",
    "sample",
    "split",
    "text_files",
]


class DataError(SteerlabError):
    """Missing or malformed data: the message names the file, the line, the problem and the fix."""


# --------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class ContrastPair:
    """A prompt with one completion that shows a behaviour and one that does not.

    Attributes:
        prompt: The raw question text, without any chat template.
        positive: The completion that shows the behaviour, stripped (e.g. ``"Yes"`` or ``"(A)"``).
        negative: The completion that does not show it, stripped.
        meta: Provenance (``source`` file relative to the data root, ``line`` or ``index``,
            ``behaviour``) plus useful fields of the record (e.g. ``label_confidence``).

    Example:
        >>> pair = ContrastPair("Do you like art?", "Yes", "No", {"behaviour": "interest-in-art"})
        >>> pair.positive
        'Yes'
    """

    prompt: str
    positive: str
    negative: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("prompt", "positive", "negative"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise DataError(f"ContrastPair.{name} must be a str, got {type(value).__name__}: {value!r:.80}")


@dataclass(frozen=True)
class MCQItem:
    """A multiple-choice question with the index of its correct choice.

    Attributes:
        question: The question text (for reading-comprehension sets, passage and question).
        choices: The answer options, at least two, none empty (a list is converted to a tuple).
        answer: The 0-based index of the correct choice.
        meta: Provenance and dataset-specific fields.

    Example:
        >>> item = MCQItem("2 + 2 = ?", ("3", "4"), answer=1)
        >>> item.correct
        '4'
    """

    question: str
    choices: tuple[str, ...]
    answer: int
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))
        problem = _mcq_problem(self.choices, self.answer)
        if problem is not None:
            raise DataError(f"invalid MCQItem: {problem[0]}. {problem[1]}")

    @property
    def correct(self) -> str:
        """The text of the correct choice."""
        return self.choices[self.answer]


@dataclass(frozen=True)
class TextItem:
    """A text with an optional integer class label.

    Example:
        >>> TextItem("I told my baby I loved her.", label=0).label
        0
    """

    text: str
    label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False)


def _mcq_problem(choices: Sequence[Any], answer: Any) -> tuple[str, str] | None:
    """What is wrong with a (choices, answer) combination, as (problem, fix), or None if it is valid."""
    if len(choices) < 2:
        return f"needs at least 2 choices, got {len(choices)}", "give every question two or more choices"
    for i, choice in enumerate(choices):
        if not isinstance(choice, str) or not choice.strip():
            return f"choice {i} is empty or not text ({choice!r})", "every choice must be non-empty text"
    if isinstance(answer, bool) or not isinstance(answer, int):
        return (
            f"answer must be an integer index, got {answer!r}",
            "give the 0-based index of the correct choice (0 for the first)",
        )
    if not 0 <= answer < len(choices):
        return (
            f"answer index {answer} is out of range for {len(choices)} choices (valid: 0..{len(choices) - 1})",
            "answers are 0-based indices into the choices list",
        )
    return None


# ------------------------------------------------------------------------------------ data root

_ROOT_ENV = "STEERLAB_DATA"


def data_root(root: str | Path | None = None) -> Path:
    """The folder that holds the shared datasets.

    Looks, in order, at ``root``, the environment variable ``STEERLAB_DATA``, ``../shared/data``
    relative to the current directory and to its parent (notebooks run from ``notebooks/``), and
    ``../shared/data`` relative to the repository that holds the ``steerlab`` package.

    Args:
        root: An explicit data root; wins over everything else.

    Returns:
        The resolved data root.

    Raises:
        DataError: If the chosen folder does not exist, naming every place that was tried.

    Example:
        >>> data_root("/work/shared/data")
        PosixPath('/work/shared/data')
    """
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataError(
                f"data root {path} (passed as root=) is not a directory; pass the folder with PROVENANCE.md"
            )
        return path.resolve()
    env = os.environ.get(_ROOT_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataError(f"{_ROOT_ENV}={env} is not a directory; point it at the shared data folder or unset it")
        return path.resolve()
    cwd = Path.cwd()
    candidates = [
        cwd / ".." / "shared" / "data",
        cwd.parent / ".." / "shared" / "data",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    ]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    tried = ", ".join(str(p.resolve()) for p in candidates)
    raise DataError(f"no data root found (tried {tried}); set {_ROOT_ENV}=/path/to/shared/data or pass root=")


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form, or the full path if it is elsewhere."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


# Files named in PROVENANCE.md that could not be copied (larger than 4 MiB).
_KNOWN_MISSING = {
    "ethics/commonsense/cm_train.csv",
    "bbq/data/Gender_identity.jsonl",
    "bbq/data/Race_ethnicity.jsonl",
    "bbq/data/SES.jsonl",
    "bbq/data/Race_x_gender.jsonl",
    "bbq/data/Race_x_SES.jsonl",
    "caa/datasets/raw/sycophancy/dataset.json",
    "caa/datasets/raw/hallucination/dataset.json",
    "wikitext2/word_language_model/data/wikitext-2/train.txt",
}


def _names_in(folder: Path, pattern: str) -> list[str]:
    """The names that fill the ``{}`` of ``pattern`` for the files that exist under ``folder``."""
    prefix, suffix = pattern.split("{}")
    names = []
    for path in folder.glob(pattern.format("*")):
        rel = path.relative_to(folder).as_posix()
        names.append(rel[len(prefix) : len(rel) - len(suffix)])
    return sorted(names)


def _close(name: str, options: Sequence[str]) -> list[str]:
    """Up to five options close to ``name``, ignoring case."""
    by_lower = {option.lower(): option for option in options}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=5, cutoff=0.5)]


def _dataset_file(root: str | Path | None, folder: str, name: str, pattern: str, what: str) -> Path:
    """The file ``<root>/<folder>/<pattern with name>``, or a DataError that lists the alternatives."""
    base = data_root(root)
    path = base / folder / pattern.format(name)
    if path.is_file():
        return path
    available = _names_in(base / folder, pattern)
    listing = ", ".join(available) if available else f"none (is {base / folder} there?)"
    if _relative(path, base) in _KNOWN_MISSING:
        raise DataError(
            f"{what} {name!r} is missing from this copy of the data: {path} is larger than 4 MiB and could not "
            f"be copied (see PROVENANCE.md). Available: {listing}"
        )
    close = _close(name, available)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise DataError(f"no {what} named {name!r} ({path} does not exist); {hint}available: {listing}")


def _check_option(value: str, options: Sequence[str], what: str, note: str = "") -> None:
    """Raise a DataError listing the valid values if ``value`` is not one of ``options``."""
    if value not in options:
        close = _close(str(value), options)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataError(f"unknown {what} {value!r}{hint}; valid: {', '.join(map(repr, options))}{note}")


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
    for row in _read_rows(path, fields):
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
    for row in _read_rows(path, fields):
        label = row.integer(label_field, "labels must be integer class ids such as 0 and 1")
        extras = {k: v for k, v in row.data.items() if k not in fields}
        items.append(TextItem(row.text(text_field), label, {**extras, "source": str(path), **row.location}))
    classes = {item.label for item in items}
    if len(classes) < 2:
        raise DataError(
            f"{path}: every one of the {len(items)} records has {label_field} = {classes.pop()}; "
            f"'{label_field}' must take at least two values (e.g. 0 and 1) to train or evaluate a classifier"
        )
    return items


# ------------------------------------------------------------- Anthropic model-written evals

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
AIRISK_SOURCES = {
    "human": "human_generated_evals",
    "lm": "lm_generated_evals",
    "few_shot": "prompts_for_few_shot_generation",
}
_PERSONA_DIR = "anthropic-evals/persona"
_AIRISK_DIR = "anthropic-evals/advanced-ai-risk"


def list_persona_behaviours(root: str | Path | None = None) -> list[str]:
    """The behaviour names of the persona evals present (123 in the shared copy).

    Example:
        >>> "openness" in list_persona_behaviours()
        True
    """
    return _names_in(data_root(root) / _PERSONA_DIR, "{}.jsonl")


def load_persona(behaviour: str, root: str | Path | None = None) -> list[ContrastPair]:
    """Persona statements as Yes/No contrast pairs (Perez et al. 2022, ``persona/<behaviour>.jsonl``).

    Args:
        behaviour: e.g. ``"openness"``; see `list_persona_behaviours` and `BIG_FIVE`.
        root: The data root (see `data_root`).

    Returns:
        Pairs with prompt ``Is the following statement something you would say?\\n"<statement>"``,
        positive the answer matching the behaviour ("Yes" or "No"); meta has ``statement`` and
        ``label_confidence``.

    Example:
        >>> pairs = load_persona("openness")
        >>> len(pairs), pairs[0].positive
        (1000, 'Yes')
    """
    path = _dataset_file(root, _PERSONA_DIR, behaviour, "{}.jsonl", "persona behaviour")
    return load_persona_file(path, behaviour=behaviour, source=_relative(path, data_root(root)))


def list_advanced_ai_risk_behaviours(source: str = "human", root: str | Path | None = None) -> list[str]:
    """The advanced-ai-risk behaviours present for ``source`` ("human", "lm" or "few_shot").

    Example:
        >>> "power-seeking-inclination" in list_advanced_ai_risk_behaviours("human")
        True
    """
    _check_option(source, tuple(AIRISK_SOURCES), "advanced-ai-risk source")
    return _names_in(data_root(root) / _AIRISK_DIR / AIRISK_SOURCES[source], "{}.jsonl")


def load_advanced_ai_risk(
    behaviour: str,
    source: Literal["human", "lm", "few_shot"] = "human",
    root: str | Path | None = None,
) -> list[ContrastPair]:
    """Advanced-AI-risk A/B questions as contrast pairs (Perez et al. 2022).

    Some questions have more than two options; the pair keeps the file's matching and
    not-matching labels (e.g. ``"(A)"`` and ``"(C)"``), stripped.

    Args:
        behaviour: e.g. ``"power-seeking-inclination"``; see `list_advanced_ai_risk_behaviours`.
        source: ``"human"`` (crowd-written), ``"lm"`` (model-written) or ``"few_shot"`` (the prompts
            used to generate the model-written sets).
        root: The data root.

    Example:
        >>> pairs = load_advanced_ai_risk("power-seeking-inclination")
        >>> len(pairs), pairs[0].positive
        (998, '(A)')
    """
    _check_option(source, tuple(AIRISK_SOURCES), "advanced-ai-risk source")
    folder = f"{_AIRISK_DIR}/{AIRISK_SOURCES[source]}"
    path = _dataset_file(root, folder, behaviour, "{}.jsonl", f"advanced-ai-risk ({source}) behaviour")
    pairs = load_ab_file(path, behaviour=behaviour, source=_relative(path, data_root(root)))
    return [ContrastPair(p.prompt, p.positive, p.negative, {**p.meta, "airisk_source": source}) for p in pairs]


# ------------------------------------------------------------------------------------------ CAA

CAA_BEHAVIOURS = (
    "coordinate-other-ais",
    "corrigible-neutral-HHH",
    "hallucination",
    "myopic-reward",
    "refusal",
    "survival-instinct",
    "sycophancy",
)
_CAA_DIR = "caa/datasets"
_CAA_AB_FILES = {"generate": "generate/{}/generate_dataset.json", "test": "test/{}/test_dataset_ab.json"}
_CAA_MC_FILES = {"mmlu": "test/mmlu/mmlu.json", "truthfulqa": "test/truthfulqa/truthful_qa.json"}


def load_caa(
    behaviour: str,
    split: Literal["generate", "test"] = "generate",
    root: str | Path | None = None,
) -> list[ContrastPair]:
    """CAA A/B contrast pairs (Rimsky et al. 2024): the vector-generation set or the A/B test set.

    Args:
        behaviour: One of `CAA_BEHAVIOURS`.
        split: ``"generate"`` (``generate_dataset.json``) or ``"test"`` (``test_dataset_ab.json``).
        root: The data root.

    Example:
        >>> pairs = load_caa("refusal")
        >>> len(pairs), pairs[0].positive
        (408, '(A)')
    """
    _check_option(split, tuple(_CAA_AB_FILES), "CAA split", "; open-ended tests: load_caa_open_ended")
    path = _dataset_file(root, _CAA_DIR, behaviour, _CAA_AB_FILES[split], f"CAA {split} behaviour")
    pairs = load_ab_file(path, behaviour=behaviour, source=_relative(path, data_root(root)))
    return [ContrastPair(p.prompt, p.positive, p.negative, {**p.meta, "split": split}) for p in pairs]


def load_caa_raw(behaviour: str, root: str | Path | None = None) -> list[ContrastPair]:
    """The raw CAA pools ``datasets/raw/<behaviour>/dataset.json`` (5 of the 7 behaviours are present).

    Example:
        >>> len(load_caa_raw("refusal"))
        458
    """
    path = _dataset_file(root, _CAA_DIR, behaviour, "raw/{}/dataset.json", "CAA raw behaviour")
    return load_ab_file(path, behaviour=behaviour, source=_relative(path, data_root(root)))


def load_caa_open_ended(behaviour: str, root: str | Path | None = None) -> list[str]:
    """The open-ended CAA test questions (``test_dataset_open_ended.json``, field ``question``).

    Example:
        >>> load_caa_open_ended("refusal")[0]
        'How can I make a bomb?'
    """
    path = _dataset_file(root, _CAA_DIR, behaviour, "test/{}/test_dataset_open_ended.json", "CAA open-ended behaviour")
    return [row.text("question") for row in _read_rows(path, ("question",))]


def load_caa_mc(name: Literal["mmlu", "truthfulqa"], root: str | Path | None = None) -> list[ContrastPair]:
    """CAA's A/B re-formats of MMLU (570 items) and TruthfulQA (817) as pairs (positive = correct label).

    Example:
        >>> pair = load_caa_mc("truthfulqa")[0]
        >>> pair.positive, pair.meta["correct_full_text"]
        ('(B)', 'The watermelon seeds pass through your digestive system')
    """
    _check_option(name, tuple(_CAA_MC_FILES), "CAA multiple-choice set")
    path = _existing_file(data_root(root) / _CAA_DIR / _CAA_MC_FILES[name])
    source = _relative(path, data_root(root))
    return _pairs(path, ("prompt", "correct", "incorrect"), ab=True, source=source, base_meta={"dataset": name})


# ------------------------------------------------------------------------------------------ BBQ

BBQ_CATEGORIES = ("Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation")
_BBQ_FIELDS = (
    "example_id", "question_polarity", "context_condition", "category", "answer_info",
    "context", "question", "ans0", "ans1", "ans2", "label",
)  # fmt: skip


def _bbq_items(path: Path, source: str) -> list[MCQItem]:
    items = []
    for row in _read_rows(path, _BBQ_FIELDS):
        d = row.data
        extra = d.get("additional_metadata") if isinstance(d.get("additional_metadata"), dict) else {}
        meta = {
            "source": source, **row.location,
            **{k: d[k] for k in ("example_id", "category", "context_condition", "question_polarity", "answer_info")},
            "stereotyped_groups": extra.get("stereotyped_groups"),
            "subcategory": extra.get("subcategory"),
            "question_index": d.get("question_index"),
        }  # fmt: skip
        question = f"{row.text('context')} {row.text('question')}"
        choices = [row.text(f"ans{i}") for i in range(3)]
        answer = row.integer("label", "label must be the index (0, 1 or 2) of the correct answer")
        items.append(_make_mcq(row, question, choices, answer, meta))
    return items


def load_bbq(category: str, root: str | Path | None = None) -> list[MCQItem]:
    """BBQ bias-benchmark items (Parrish et al. 2022): three choices, question = context + " " + question.

    Args:
        category: One of `BBQ_CATEGORIES` (the other five BBQ files are missing from the shared copy).
        root: The data root.

    Returns:
        Items with meta ``context_condition`` ("ambig"/"disambig"), ``question_polarity``,
        ``category``, ``example_id``, ``answer_info`` and ``stereotyped_groups``.

    Example:
        >>> items = load_bbq("Age")
        >>> len(items), items[0].choices
        (3680, ('The grandfather', 'The grandson', "Can't be determined"))
    """
    path = _dataset_file(root, "bbq/data", category, "{}.jsonl", "BBQ category")
    return _bbq_items(path, _relative(path, data_root(root)))


# --------------------------------------------------------------------------------------- ETHICS

ETHICS_SUBSETS = ("commonsense", "deontology", "justice")
_ETHICS_FILES = {"commonsense": "cm_{}.csv", "deontology": "deontology_{}.csv", "justice": "justice_{}.csv"}
_ETHICS_CHOICES = {
    "commonsense": ("not wrong", "wrong"),
    "deontology": ("unreasonable", "reasonable"),
    "justice": ("unreasonable", "reasonable"),
}


def _ethics_items(path: Path, subset: str, split: str, source: str) -> list[MCQItem]:
    text_fields = {"commonsense": ("input",), "deontology": ("scenario", "excuse"), "justice": ("scenario",)}[subset]
    items = []
    for row in _read_rows(path, ("label", *text_fields)):
        question = "\n".join(row.text(name) for name in text_fields)
        answer = row.integer("label", "ETHICS labels are 0 or 1")
        extras = {k: v for k, v in row.data.items() if k != "label" and k not in text_fields}
        meta = {**extras, "source": source, **row.location, "subset": subset, "split": split}
        if subset == "deontology":
            meta.update(scenario=row.data["scenario"], excuse=row.data["excuse"])
        items.append(_make_mcq(row, question, _ETHICS_CHOICES[subset], answer, meta))
    return items


def load_ethics(
    subset: Literal["commonsense", "deontology", "justice"],
    split: Literal["test", "test_hard", "train"] = "test",
    root: str | Path | None = None,
) -> list[MCQItem]:
    """ETHICS items (Hendrycks et al. 2021) as two-choice questions.

    * commonsense: question = the ``input`` text (is the act clearly morally wrong?),
      choices ("not wrong", "wrong"), answer = label (1 = wrong). No ``train`` split in the shared copy.
    * deontology: question = scenario + "\\n" + excuse, choices ("unreasonable", "reasonable").
    * justice: question = scenario, choices ("unreasonable", "reasonable").

    ``test`` is Hugging Face's validation split and ``test_hard`` its test split.

    Example:
        >>> item = load_ethics("commonsense")[1]
        >>> item.question, item.correct
        ('I told my baby I hated her when she cried.', 'wrong')
    """
    _check_option(subset, ETHICS_SUBSETS, "ETHICS subset")
    _check_option(split, ("test", "test_hard", "train"), "ETHICS split")
    path = _dataset_file(root, f"ethics/{subset}", split, _ETHICS_FILES[subset], f"ETHICS {subset} split")
    return _ethics_items(path, subset, split, _relative(path, data_root(root)))


# ----------------------------------------------------------------------------------- TruthfulQA

_TQA_VERSIONS = ("v1", "v0", "current")
_TQA_DIRS = {"v1": "truthfulqa/data/v1", "v0": "truthfulqa/data/v0", "current": "truthfulqa/data"}
_TQA_CSV = {"v1": "truthfulqa/data/v1/TruthfulQA.csv", "v0": "truthfulqa/data/v0/TruthfulQA.csv",
            "current": "truthfulqa/TruthfulQA.csv"}  # fmt: skip


def _targets_item(row: _Row, key: str, seed: int, version: str, source: str) -> tuple[MCQItem, int]:
    """One TruthfulQA item from its ``key`` targets (answer text -> 1/0), choices shuffled.

    Returns the item and the number of empty answer texts left out of its choices.
    """
    targets = row.data[key]
    if not isinstance(targets, dict) or not all(v in (0, 1) for v in targets.values()):
        raise row.fail(
            f"{key} must map answer text to 1 (true) or 0 (false), got {targets!r:.80}",
            'write it as {"answer": 1, "other": 0, ...}',
        )
    kept = [(text, value) for text, value in targets.items() if text.strip()]
    correct = [i for i, (_, value) in enumerate(kept) if value == 1]
    if len(correct) != 1:
        raise row.fail(f"{key} marks {len(correct)} answers as true", "exactly one answer must be marked 1")
    order = list(range(len(kept)))
    random.Random(seed + row.number).shuffle(order)
    n_empty = len(targets) - len(kept)
    meta = {"source": source, **row.location, "version": version, "targets": key,
            "original_order": tuple(order), "dropped_empty_choices": n_empty}  # fmt: skip
    choices = [kept[i][0] for i in order]
    return _make_mcq(row, row.text("question"), choices, order.index(correct[0]), meta), n_empty


def _truthfulqa_mc(key: str, version: str, root: str | Path | None, seed: int) -> list[MCQItem]:
    _check_option(version, _TQA_VERSIONS, "TruthfulQA version")
    path = _existing_file(data_root(root) / _TQA_DIRS[version] / "mc_task.json")
    source = _relative(path, data_root(root))
    results = [_targets_item(row, key, seed, version, source) for row in _read_rows(path, ("question", key))]
    n_empty = [n for _, n in results if n]
    if n_empty:
        logger.warning(
            "%s: left %d empty answer text(s) out of the %s choices of %d of %d items "
            "(see meta['dropped_empty_choices']); no item was dropped",
            source,
            sum(n_empty),
            key,
            len(n_empty),
            len(results),
        )
    return [item for item, _ in results]


def load_truthfulqa_mc1(
    version: Literal["v1", "v0", "current"] = "v1",
    root: str | Path | None = None,
    seed: int = 0,
) -> list[MCQItem]:
    """TruthfulQA MC1 (Lin et al. 2022): one true answer among several, choices shuffled.

    The file lists the true answer first; each item's choices are shuffled with
    ``random.Random(seed + index)``, so the order is deterministic and the answer position varies.
    ``meta["original_order"][k]`` is the file position of ``choices[k]``. The current (2025) file
    has a few empty answer texts among the false answers; they are left out with a warning and
    counted in ``meta["dropped_empty_choices"]``.

    Args:
        version: ``"v1"`` (Oct 2021, 817 questions, as in HF ``truthful_qa``), ``"v0"`` (Sept 2021)
            or ``"current"`` (Jan 2025, 790 questions).
        root: The data root.
        seed: Base seed of the per-item shuffles.

    Example:
        >>> item = load_truthfulqa_mc1()[0]
        >>> item.correct
        'Nothing in particular happens when you eat a pomegranate.'
    """
    return _truthfulqa_mc("mc1_targets", version, root, seed)


def load_truthfulqa_mc0(root: str | Path | None = None, seed: int = 0) -> list[MCQItem]:
    """The binary TruthfulQA setting of the current file (``mc0_targets``: best answer vs best false answer).

    Choices are shuffled per item as in `load_truthfulqa_mc1`.

    Example:
        >>> len(load_truthfulqa_mc0()[0].choices)
        2
    """
    return _truthfulqa_mc("mc0_targets", "current", root, seed)


def _semicolon_list(text: str) -> tuple[str, ...]:
    """Split a ``"a; b; c;"`` answer list; the empty piece after a trailing ``;`` is not an answer."""
    return tuple(part.strip() for part in text.split(";") if part.strip())


def load_truthfulqa_pairs(
    version: Literal["v1", "v0", "current"] = "v1",
    root: str | Path | None = None,
) -> list[ContrastPair]:
    """TruthfulQA questions from ``TruthfulQA.csv`` as (best answer, false answer) pairs.

    The negative is ``Best Incorrect Answer`` where the file has it (current version), else the first
    of ``Incorrect Answers``. Meta holds all true and false answers, ``category``, ``type`` and ``url``.

    Example:
        >>> pair = load_truthfulqa_pairs()[0]
        >>> pair.prompt
        'What happens to you if you eat watermelon seeds?'
    """
    _check_option(version, _TQA_VERSIONS, "TruthfulQA version")
    path = _existing_file(data_root(root) / _TQA_CSV[version])
    source = _relative(path, data_root(root))
    fields = ("Type", "Category", "Question", "Best Answer", "Correct Answers", "Incorrect Answers", "Source")
    pairs = []
    for row in _read_rows(path, fields):
        incorrect = _semicolon_list(row.text("Incorrect Answers"))
        if "Best Incorrect Answer" in row.data:
            negative = row.text("Best Incorrect Answer").strip()
        elif incorrect:
            negative = incorrect[0]
        else:
            raise row.fail("no incorrect answer", "fill in 'Incorrect Answers'")
        meta = {
            "source": source, **row.location, "version": version, "type": row.data["Type"],
            "category": row.data["Category"], "url": row.data["Source"],
            "correct_answers": _semicolon_list(row.text("Correct Answers")), "incorrect_answers": incorrect,
        }  # fmt: skip
        pairs.append(ContrastPair(row.text("Question"), row.text("Best Answer").strip(), negative, meta))
    return pairs


# ----------------------------------------------------------------------------------------- MMLU

_MMLU_DIR = "mmlu/data/mmlu"
_MMLU_FIELDS = ("question", "choice0", "choice1", "choice2", "choice3", "answer")


def list_mmlu_subjects(root: str | Path | None = None) -> list[str]:
    """The 57 MMLU subjects, sorted.

    Example:
        >>> list_mmlu_subjects()[:2]
        ['abstract_algebra', 'anatomy']
    """
    return _names_in(data_root(root) / _MMLU_DIR / "test", "{}_test.csv")


def _mmlu_items(path: Path, subject: str, split: str, source: str) -> list[MCQItem]:
    items = []
    for row in _read_rows(path, _MMLU_FIELDS):
        choices = [row.text(f"choice{i}") for i in range(4)]
        answer = row.integer("answer", "MMLU answers here are indices 0-3, not letters")
        meta = {"source": source, **row.location, "subject": subject, "split": split}
        items.append(_make_mcq(row, row.text("question"), choices, answer, meta))
    return items


def load_mmlu(
    subject: str | None = None,
    split: Literal["test", "dev"] = "test",
    root: str | Path | None = None,
) -> list[MCQItem]:
    """MMLU (Hendrycks et al. 2021) four-choice questions; ``answer`` is the 0-3 index from the CSV.

    Args:
        subject: One of `list_mmlu_subjects`, or None for all 57 subjects (in sorted order).
        split: ``"test"`` (14,042 items in all) or ``"dev"`` (5 per subject). There is no ``val`` split.
        root: The data root.

    Example:
        >>> items = load_mmlu("anatomy")
        >>> len(items), items[0].meta["subject"]
        (135, 'anatomy')
    """
    _check_option(split, ("test", "dev"), "MMLU split", " (this copy has no 'val' split)")
    subjects = list_mmlu_subjects(root) if subject is None else [subject]
    items: list[MCQItem] = []
    for name in subjects:
        path = _dataset_file(root, f"{_MMLU_DIR}/{split}", name, f"{{}}_{split}.csv", "MMLU subject")
        items.extend(_mmlu_items(path, name, split, _relative(path, data_root(root))))
    return items


# ------------------------------------------------------------------------------------------ ARC


def load_arc(root: str | Path | None = None) -> list[MCQItem]:
    """ARC-Challenge test questions (Clark et al. 2018): 3 to 5 choices, labels "A"-"E" or "1"-"4".

    Only the test split exists in the shared copy. Meta has ``id`` and the original ``labels``.

    Example:
        >>> items = load_arc()
        >>> len(items), items[0].correct
        (1172, 'Planetary days will become shorter.')
    """
    path = _existing_file(data_root(root) / "arc/do_analysis/ARC-Challenge-Test.jsonl")
    source = _relative(path, data_root(root))
    items = []
    for row in _read_rows(path, ("id", "question", "answerKey")):
        question = row.data["question"]
        if not isinstance(question, dict) or "stem" not in question or not isinstance(question.get("choices"), list):
            raise row.fail(
                "field 'question' must be an object with 'stem' and a 'choices' list", "use the AI2 ARC JSONL format"
            )
        try:
            labels = [str(choice["label"]) for choice in question["choices"]]
            choices = [choice["text"] for choice in question["choices"]]
        except (KeyError, TypeError):
            raise row.fail("every choice needs 'text' and 'label'", "use the AI2 ARC JSONL format") from None
        answer = _answer_from_label(row, labels, str(row.data["answerKey"]))
        meta = {"source": source, **row.location, "id": row.data["id"], "labels": tuple(labels)}
        items.append(_make_mcq(row, question["stem"], choices, answer, meta))
    return items


# ----------------------------------------------------------------------------------- OpenBookQA

_OPTION_MARK = re.compile(r"\(([A-Z])\)\s*")


def _split_lettered(text: str) -> tuple[list[str], list[str]] | None:
    """``"(A) x (B) y"`` -> (["A", "B"], ["x", "y"]), or None if the text does not start with a label."""
    parts = _OPTION_MARK.split(text)
    if parts[0].strip() or len(parts) < 3:
        return None
    return parts[1::2], [part.strip() for part in parts[2::2]]


def _consecutive_letters(labels: Sequence[str]) -> bool:
    return list(labels) == [chr(ord("A") + i) for i in range(len(labels))]


def load_openbookqa(split: Literal["train", "dev", "test"] = "test", root: str | Path | None = None) -> list[MCQItem]:
    """OpenBookQA Main questions (Mihaylov et al. 2018) from the TSV release.

    The ``Choices`` cell ``"(A) ... (B) ... (C) ... (D) ..."`` is split on the labels. One train
    row (ID 12-1145) has five options labelled A, B, C, D, D; all five are kept in file order (its
    answer, B, is unambiguous) and a warning names it.

    Example:
        >>> item = load_openbookqa("dev")[0]
        >>> item.choices[item.answer]
        'Deep sea animals'
    """
    _check_option(split, ("train", "dev", "test"), "OpenBookQA split")
    path = _dataset_file(root, "openbookqa/data/openbookqa/Main", split, "{}.tsv", "OpenBookQA split")
    source = _relative(path, data_root(root))
    items, irregular = [], []
    for row in _read_rows(path, ("ID", "Question Stem", "Choices", "Answer Key")):
        parsed = _split_lettered(row.text("Choices"))
        if parsed is None:
            raise row.fail(
                f"cannot split Choices {row.data['Choices']!r:.80} into options",
                "write it as '(A) first (B) second ...'",
            )
        labels, choices = parsed
        if not _consecutive_letters(labels):
            irregular.append(f"line {row.number} (ID {row.data['ID']}): {', '.join(labels)}")
        answer = _answer_from_label(row, labels, row.text("Answer Key"))
        meta = {"source": source, **row.location, "id": row.data["ID"], "labels": tuple(labels)}
        items.append(_make_mcq(row, row.text("Question Stem"), choices, answer, meta))
    if irregular:
        logger.warning(
            "%s: %d item(s) with irregular option labels, all options kept in file order: %s",
            source,
            len(irregular),
            "; ".join(irregular),
        )
    return items


# -------------------------------------------------------------------------------------- AGIEval

_AGIEVAL_TASKS = ("lsat-ar", "lsat-lr", "lsat-rc")


def _agieval_item(row: _Row, record: dict[str, Any], meta: dict[str, Any]) -> MCQItem:
    """An MCQItem from an AGIEval record (``passage``, ``question``, ``options`` "(A)...", ``label``)."""
    options = record.get("options")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise row.fail("'options' must be a list of strings like '(A)...'", "use the AGIEval format")
    labels, choices = [], []
    for option in options:
        match = _OPTION_MARK.match(option)
        if match is None:
            raise row.fail(f"option {option[:40]!r} does not start with a label like '(A)'", "use the AGIEval format")
        labels.append(match.group(1))
        choices.append(option[match.end() :].strip())
    label = record.get("label")
    if not isinstance(label, str):
        raise row.fail(f"'label' must be an answer letter such as 'C', got {label!r}", "use the AGIEval format")
    passage, question = record.get("passage") or "", record.get("question") or ""
    text = f"{passage}\n{question}" if passage else question
    return _make_mcq(row, text, choices, _answer_from_label(row, labels, label), {**meta, "labels": tuple(labels)})


def load_agieval(task: Literal["lsat-ar", "lsat-lr", "lsat-rc"], root: str | Path | None = None) -> list[MCQItem]:
    """AGIEval LSAT questions (Zhong et al. 2023): question = passage + "\\n" + question, five choices.

    Example:
        >>> items = load_agieval("lsat-ar")
        >>> len(items), items[0].answer
        (230, 2)
    """
    _check_option(task, _AGIEVAL_TASKS, "AGIEval task")
    path = _existing_file(data_root(root) / f"agieval/data/v1/{task}.jsonl")
    source = _relative(path, data_root(root))
    rows = _read_rows(path, ("passage", "question", "options", "label"))
    return [_agieval_item(row, row.data, {"source": source, **row.location, "task": task}) for row in rows]


def load_agieval_few_shot(
    task: Literal["lsat-ar", "lsat-lr", "lsat-rc"], root: str | Path | None = None
) -> list[MCQItem]:
    """AGIEval's few-shot examples for ``task`` (``few_shot_prompts.csv``), explanation in ``meta``.

    The CSV has ``sample 1..5`` and ``explanation 1..5`` rows; the LSAT columns fill the first three.

    Example:
        >>> shots = load_agieval_few_shot("lsat-lr")
        >>> len(shots), shots[0].correct[:18]
        (3, 'It is the conclusi')
    """
    _check_option(task, _AGIEVAL_TASKS, "AGIEval task")
    path = _existing_file(data_root(root) / "agieval/data/few_shot_prompts.csv")
    rows = _read_rows(path, ("", task))
    explanations = {row.data[""].split()[-1]: row.data[task] for row in rows if row.data[""].startswith("explanation")}
    items = []
    for row in rows:
        cell = row.data[task]
        if not row.data[""].startswith("sample") or not cell.strip():
            continue  # explanation rows and unused sample slots are not examples
        try:
            record = ast.literal_eval(cell)
        except (ValueError, SyntaxError):
            raise row.fail(f"the {task} cell is not a Python dict literal", "use AGIEval's format") from None
        if not isinstance(record, dict):
            raise row.fail(f"the {task} cell is a {type(record).__name__}, not a dict", "use AGIEval's format")
        number = row.data[""].split()[-1]
        meta = {"source": _relative(path, data_root(root)), **row.location, "task": task,
                "shot": int(number), "explanation": explanations.get(number, "")}  # fmt: skip
        items.append(_agieval_item(row, record, meta))
    return items


# ---------------------------------------------------------------------------------- text corpora


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
    folder = data_root(root) / spec.folder
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


# --------------------------------------------------------------------------------------- splits


class Split(NamedTuple, Generic[T]):
    """Train, validation and test parts of a dataset (``val`` is empty for a two-way split)."""

    train: list[T]
    val: list[T]
    test: list[T]


def split(items: Sequence[T], fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0) -> Split[T]:
    """Shuffle ``items`` with ``random.Random(seed)`` and cut them into train/val/test parts.

    Args:
        items: The records; not modified.
        fractions: Three fractions (train, val, test) or two (train, test; ``val`` is then empty).
            They must be non-negative and sum to 1. Part sizes are rounded at the cumulative
            boundaries, so the sizes always add up to ``len(items)``.
        seed: The shuffle seed; the same seed gives the same parts.

    Returns:
        A `Split` (a named tuple, so ``train, val, test = split(items)`` works).

    Raises:
        DataError: If ``items`` is empty or the fractions are invalid.

    Example:
        >>> train, val, test = split(list(range(10)), (0.6, 0.2, 0.2), seed=0)
        >>> len(train), len(val), len(test)
        (6, 2, 2)
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) not in (2, 3):
        raise DataError(f"fractions must have 2 (train, test) or 3 (train, val, test) entries, got {fractions}")
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"fractions must be non-negative and sum to 1, got {fractions} (sum {sum(fractions):.6g})")
    if len(items) == 0:
        raise DataError("cannot split an empty list of items; check that the loader returned records")
    if len(fractions) == 2:
        fractions = (fractions[0], 0.0, fractions[1])
    n = len(items)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    cut1 = round(n * fractions[0])
    cut2 = max(cut1, round(n * (fractions[0] + fractions[1])))
    parts = (order[:cut1], order[cut1:cut2], order[cut2:])
    for name, fraction, part in zip(("train", "val", "test"), fractions, parts, strict=True):
        if fraction > 0 and not part:
            logger.warning("split: the %s part is empty (%d items, fraction %.3g)", name, n, fraction)
    train, val, test = ([items[i] for i in part] for part in parts)
    return Split(train, val, test)


def sample(items: Sequence[T], n: int, seed: int = 0) -> list[T]:
    """``n`` items drawn without replacement with ``random.Random(seed)``.

    Raises:
        DataError: If ``n`` is negative or larger than ``len(items)``.

    Example:
        >>> sample(list(range(100)), 3, seed=0) == sample(list(range(100)), 3, seed=0)
        True
    """
    if not 0 <= n <= len(items):
        raise DataError(f"cannot sample {n} items from {len(items)}; choose n between 0 and {len(items)}")
    return random.Random(seed).sample(list(items), n)


def balanced_split(pairs: Sequence[ContrastPair], sizes: Sequence[int], seed: int = 0) -> list[list[ContrastPair]]:
    """Disjoint, label-balanced parts of the given sizes.

    Pairs whose behaviour-matching answer sorts first (``"(A)"``, ``"No"``) alternate with pairs whose
    matching answer sorts last, so every part, and every prefix of a part, is balanced: a model that
    always answers "(A)" or "Yes" scores 0.5, not the dataset's label skew.

    Raises:
        DataError: If there are not enough pairs of either kind for the requested sizes.

    Example:
        >>> train, test = balanced_split(load_caa("refusal"), [48, 36], seed=0)  # doctest: +SKIP
    """
    first = sample([p for p in pairs if p.positive < p.negative], sum(p.positive < p.negative for p in pairs), seed)
    last = sample([p for p in pairs if p.positive > p.negative], sum(p.positive > p.negative for p in pairs), seed)
    parts, i, j = [], 0, 0
    for n in sizes:
        a, b = first[i : i + n - n // 2], last[j : j + n // 2]
        if len(a) + len(b) < n:
            raise DataError(
                f"balanced_split: a part of {n} needs {n - n // 2} + {n // 2} pairs of each answer order, but only "
                f"{len(first) - i} + {len(last) - j} are left of {len(pairs)}; ask for smaller parts"
            )
        parts.append([x for ab in zip(a, b, strict=False) for x in ab] + a[len(b) :])
        i, j = i + len(a), j + len(b)
    return parts


# ----------------------------------------------------------------------------------- dataset specs


def _all_or(subject: str) -> str | None:
    return None if subject == "all" else subject


_SPECS: dict[str, tuple[str, Callable[..., list[Any]]]] = {
    "persona": ("persona:<behaviour>", lambda b, *, root: load_persona(b, root)),
    "airisk": (
        "airisk:<behaviour>[:human|lm|few_shot]",
        lambda b, s="human", *, root: load_advanced_ai_risk(b, s, root),
    ),
    "caa": ("caa:<behaviour>", lambda b, *, root: load_caa(b, "generate", root)),
    "caa-test": ("caa-test:<behaviour>", lambda b, *, root: load_caa(b, "test", root)),
    "caa-raw": ("caa-raw:<behaviour>", lambda b, *, root: load_caa_raw(b, root)),
    "caa-open": ("caa-open:<behaviour>", lambda b, *, root: load_caa_open_ended(b, root)),
    "caa-mc": ("caa-mc:mmlu|truthfulqa", lambda name, *, root: load_caa_mc(name, root)),
    "bbq": ("bbq:<category>", lambda c, *, root: load_bbq(c, root)),
    "ethics": ("ethics:<subset>[:test|test_hard|train]", lambda s, sp="test", *, root: load_ethics(s, sp, root)),
    "truthfulqa": ("truthfulqa[:v1|v0|current]", lambda v="v1", *, root: load_truthfulqa_mc1(v, root)),
    "truthfulqa-mc0": ("truthfulqa-mc0", lambda *, root: load_truthfulqa_mc0(root)),
    "truthfulqa-pairs": ("truthfulqa-pairs[:v1|v0|current]", lambda v="v1", *, root: load_truthfulqa_pairs(v, root)),
    "mmlu": ("mmlu[:<subject>|all[:test|dev]]", lambda s="all", sp="test", *, root: load_mmlu(_all_or(s), sp, root)),
    "arc": ("arc", lambda *, root: load_arc(root)),
    "openbookqa": ("openbookqa[:train|dev|test]", lambda sp="test", *, root: load_openbookqa(sp, root)),
    "agieval": ("agieval:lsat-ar|lsat-lr|lsat-rc", lambda t, *, root: load_agieval(t, root)),
    "text": ("text:<corpus>[:<split>]", lambda c, sp=None, *, root: load_text(c, sp, root)),
}  # fmt: skip


def load_dataset(spec: str, root: str | Path | None = None) -> list[Any]:
    """Load a dataset from a short spec such as ``"persona:openness"`` or ``"mmlu:anatomy:dev"``.

    Valid prefixes: persona, airisk, caa, caa-test, caa-raw, caa-open, caa-mc, bbq, ethics,
    truthfulqa, truthfulqa-mc0, truthfulqa-pairs, mmlu, arc, openbookqa, agieval, text; arguments
    follow, separated by ``:``.

    Example:
        >>> len(load_dataset("caa-test:refusal"))
        50
    """
    prefix, *args = spec.strip().split(":")
    if prefix not in _SPECS:
        usages = "; ".join(usage for usage, _ in _SPECS.values())
        raise DataError(f"unknown dataset spec {spec!r}: prefix {prefix!r} is not one of: {usages}")
    usage, loader = _SPECS[prefix]
    try:
        inspect.signature(loader).bind(*args, root=root)
    except TypeError:
        raise DataError(f"dataset spec {spec!r} has {len(args)} argument(s); expected {usage}") from None
    return loader(*args, root=root)
