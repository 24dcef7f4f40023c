"""Knowledge and reasoning benchmarks as multiple-choice items: MMLU (Hendrycks et al. 2021), ARC-Challenge
(Clark et al. 2018), OpenBookQA (Mihaylov et al. 2018) and AGIEval's LSAT tasks (Zhong et al. 2023).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from steerlab.data.readers import _answer_from_label, _make_mcq, _read_rows, _Row
from steerlab.data.records import MCQItem, _check_option
from steerlab.data.root import _available, _dataset_file, _dataset_path, _source

logger = logging.getLogger(__name__)

__all__ = ["list_mmlu_subjects", "load_agieval", "load_agieval_few_shot", "load_arc", "load_mmlu", "load_openbookqa"]


# ----------------------------------------------------------------------------------------- MMLU

_MMLU_DIR = "mmlu/data/mmlu"
_MMLU_FIELDS = ("question", "choice0", "choice1", "choice2", "choice3", "answer")


def list_mmlu_subjects(root: str | Path | None = None) -> list[str]:
    """The 57 MMLU subjects, sorted.

    Example:
        >>> list_mmlu_subjects()[:2]
        ['abstract_algebra', 'anatomy']
    """
    return _available(f"{_MMLU_DIR}/test", "{}_test.csv", root)


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
        items.extend(_mmlu_items(path, name, split, _source(path, root)))
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
    path = _dataset_path("arc/do_analysis/ARC-Challenge-Test.jsonl", root)
    source = _source(path, root)
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
    source = _source(path, root)
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
    path = _dataset_path(f"agieval/data/v1/{task}.jsonl", root)
    source = _source(path, root)
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
    path = _dataset_path("agieval/data/few_shot_prompts.csv", root)
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
        meta = {"source": _source(path, root), **row.location, "task": task,
                "shot": int(number), "explanation": explanations.get(number, "")}  # fmt: skip
        items.append(_agieval_item(row, record, meta))
    return items

