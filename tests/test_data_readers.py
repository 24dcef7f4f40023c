"""Tests for steerlab.data.readers: user files in every format, and the errors for malformed ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steerlab import data as sd
from steerlab.data import ContrastPair, DataError, TextItem


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _lines(*records) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_invalid_json_line_names_file_and_line(tmp_path):
    path = _write(tmp_path, "pairs.jsonl", _lines({"prompt": "a", "positive": "b", "negative": "c"}) + "{oops\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: invalid JSON") as info:
        sd.load_pairs_jsonl(path)
    assert str(path) in str(info.value)


def test_invalid_json_array_names_line(tmp_path):
    path = _write(tmp_path, "ab.json", '[\n  {"question": "x"},\n  {"question": \n]')
    with pytest.raises(DataError, match=r"ab\.json, line 4: invalid JSON"):
        sd.load_ab_file(path)


def test_missing_field_lists_found_and_needed(tmp_path):
    good = {"question": "Q (A) x (B) y", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}
    path = _write(tmp_path, "ab.jsonl", _lines(good, {"question": "Q", "answer_matching_behavior": " (A)"}))
    with pytest.raises(DataError) as info:
        sd.load_ab_file(path)
    message = str(info.value)
    assert "ab.jsonl, line 2" in message and "missing field(s) ['answer_not_matching_behavior']" in message
    assert "fields found: ['answer_matching_behavior', 'question']" in message
    assert "every record needs ['question', 'answer_matching_behavior', 'answer_not_matching_behavior']" in message


def test_missing_field_in_json_array_names_item(tmp_path):
    good = {"question": "Q (A) x (B) y", "answer_matching_behavior": "(A)", "answer_not_matching_behavior": "(B)"}
    path = _write(tmp_path, "ab.json", json.dumps([good, {"question": "Q"}]))
    with pytest.raises(DataError, match=r"ab\.json, item 1 \(0-based\): missing field"):
        sd.load_ab_file(path)


def test_missing_csv_column_names_header(tmp_path):
    path = _write(tmp_path, "texts.csv", "text,class\nhello,1\n")
    with pytest.raises(DataError, match=r"texts\.csv, line 1: the header lacks column\(s\) \['label'\]"):
        sd.load_text_label(path)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_file(tmp_path, text):
    path = _write(tmp_path, "empty.jsonl", text)
    with pytest.raises(DataError, match=r"empty\.jsonl: the file is empty"):
        sd.load_mcq_jsonl(path)


def test_header_only_csv_has_no_records(tmp_path):
    path = _write(tmp_path, "texts.csv", "text,label\n")
    with pytest.raises(DataError, match=r"texts\.csv: no records"):
        sd.load_text_label(path)


def test_answer_index_out_of_range(tmp_path):
    good = {"question": "2+2?", "choices": ["3", "4"], "answer": 1}
    path = _write(tmp_path, "mcq.jsonl", _lines(good, {"question": "1+1?", "choices": ["1", "2"], "answer": 2}))
    with pytest.raises(DataError, match=r"mcq\.jsonl, line 2: answer index 2 is out of range for 2 choices"):
        sd.load_mcq_jsonl(path)


@pytest.mark.parametrize("answer", ["B", 1.5, None, True])
def test_non_integer_answer(tmp_path, answer):
    path = _write(tmp_path, "mcq.jsonl", _lines({"question": "q", "choices": ["a", "b"], "answer": answer}))
    with pytest.raises(DataError, match=r"mcq\.jsonl, line 1: field 'answer' must be an integer"):
        sd.load_mcq_jsonl(path)


def test_mcq_empty_choice_and_good_file(tmp_path):
    path = _write(tmp_path, "mcq.jsonl", _lines({"question": "q", "choices": ["a", " "], "answer": 0}))
    with pytest.raises(DataError, match=r"line 1: choice 1 is empty"):
        sd.load_mcq_jsonl(path)
    path = _write(tmp_path, "ok.jsonl", _lines({"question": "q", "choices": ["a", "b"], "answer": "1", "id": 7}))
    (item,) = sd.load_mcq_jsonl(path)
    assert item.correct == "b" and item.meta == {"id": 7, "source": str(path), "line": 1}


def test_text_label_single_class(tmp_path):
    path = _write(tmp_path, "texts.jsonl", _lines({"text": "a", "label": 1}, {"text": "b", "label": 1}))
    with pytest.raises(DataError) as info:
        sd.load_text_label(path)
    assert "texts.jsonl" in str(info.value) and "label = 1" in str(info.value)
    assert "at least two values" in str(info.value)


def test_text_label_csv_and_bad_label_line(tmp_path):
    path = _write(tmp_path, "texts.csv", 'text,label,split\n"hello, world",1,a\nbye,0,b\n')
    items = sd.load_text_label(path)
    assert items == [
        TextItem("hello, world", 1, {"split": "a", "source": str(path), "line": 2}),
        TextItem("bye", 0, {"split": "b", "source": str(path), "line": 3}),
    ]
    path = _write(tmp_path, "bad.csv", 'text,label\n"multi\nline",1\nbye,yes\n')
    with pytest.raises(DataError, match=r"bad\.csv, line 4: field 'label' must be an integer, got 'yes'"):
        sd.load_text_label(path)


def test_csv_wrong_field_count(tmp_path):
    path = _write(tmp_path, "texts.csv", "text,label\nhello,1,extra\n")
    with pytest.raises(DataError, match=r"line 2: 3 fields but the header has 2"):
        sd.load_text_label(path)


def test_file_not_found_lists_close_names(tmp_path):
    _write(tmp_path, "pairs.jsonl", _lines({"prompt": "a", "positive": "b", "negative": "c"}))
    with pytest.raises(DataError, match=r"file not found: .*pair\.jsonl; did you mean .*pairs\.jsonl"):
        sd.load_pairs_jsonl(tmp_path / "pair.jsonl")
    with pytest.raises(DataError, match="does not exist either"):
        sd.load_pairs_jsonl(tmp_path / "no_dir" / "pairs.jsonl")


def test_not_utf8(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b'{"prompt": "a", "positive": "b", "negative": "c"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"pairs\.jsonl, line 2: not valid UTF-8"):
        sd.load_pairs_jsonl(path)


def test_ab_answers_must_be_labels_in_the_question(tmp_path):
    record = {
        "question": "Q\n (A) yes\n (B) no",
        "answer_matching_behavior": " Yes",
        "answer_not_matching_behavior": "No",
    }
    path = _write(tmp_path, "ab.jsonl", _lines(record))
    with pytest.raises(DataError, match=r"answer 'Yes' is not an option label like '\(A\)'"):
        sd.load_ab_file(path)
    record.update(answer_matching_behavior=" (C)", answer_not_matching_behavior=" (A)")
    path = _write(tmp_path, "ab.jsonl", _lines(record))
    with pytest.raises(DataError, match=r"the question has no option \(C\)"):
        sd.load_ab_file(path)
    assert sd.load_persona_file(_write(tmp_path, "p.jsonl", _lines({**record, "answer_matching_behavior": " Yes"})))


def test_identical_answers_rejected(tmp_path):
    path = _write(tmp_path, "pairs.jsonl", _lines({"prompt": "p", "positive": " x", "negative": "x "}))
    with pytest.raises(DataError, match="positive and negative are both 'x'"):
        sd.load_pairs_jsonl(path)


def test_pairs_jsonl_good_file(tmp_path):
    path = _write(
        tmp_path, "pairs.jsonl", _lines({"prompt": "I feel", "positive": " happy", "negative": "sad", "k": 1})
    )
    assert sd.load_pairs_jsonl(path) == [
        ContrastPair("I feel", "happy", "sad", {"k": 1, "source": str(path), "line": 1})
    ]
