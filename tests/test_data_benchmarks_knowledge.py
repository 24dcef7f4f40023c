"""Tests for steerlab.data.benchmarks_knowledge: MMLU, ARC, OpenBookQA and AGIEval."""

from __future__ import annotations

import logging

import pytest
from _data_root import needs_data

from steerlab import data as sd
from steerlab.data import DataError


@needs_data
def test_mmlu_all_subjects():
    subjects = sd.list_mmlu_subjects()
    assert len(subjects) == 57
    items = sd.load_mmlu()
    assert len(items) == 14042 and {item.meta["subject"] for item in items} == set(subjects)
    assert all(len(item.choices) == 4 for item in items)
    with pytest.raises(DataError, match="no 'val' split"):
        sd.load_mmlu("anatomy", "val")


@needs_data
def test_arc_numeric_labels():
    items = sd.load_arc()
    numeric = [item for item in items if item.meta["labels"][0] == "1"]
    assert len(numeric) == 22
    assert {len(item.choices) for item in items} == {3, 4, 5}


@needs_data
def test_openbookqa_choices_and_irregular_row(caplog):
    dev = sd.load_openbookqa("dev")
    assert dev[0].choices == ("Deep sea animals", "fish", "Long Sea Fish", "Far Sea Animals") and dev[0].answer == 0
    with caplog.at_level(logging.WARNING, logger="steerlab.data"):
        train = sd.load_openbookqa("train")
    odd = [item for item in train if len(item.choices) != 4]
    assert [item.meta["id"] for item in odd] == ["12-1145"] and odd[0].correct.startswith("seals clapping")
    assert "line 3334 (ID 12-1145): A, B, C, D, D" in caplog.text


@needs_data
def test_agieval_strips_option_labels():
    item = sd.load_agieval("lsat-ar")[0]
    assert len(item.choices) == 5 and not item.choices[0].startswith("(")
    assert item.answer == 2 and item.question.startswith("Of the eight students")
    assert "\nWhich one of the following could be the schedule" in item.question
