"""Tests for steerlab.data: every shared data file against PROVENANCE.md, error messages, splits."""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from steerlab import data as sd
from steerlab.data import ContrastPair, DataError, MCQItem, TextItem
from steerlab.data.benchmarks_alignment import _TQA_DIRS
from steerlab.data.root import _names_in

try:
    ROOT: Path | None = sd.data_root()
    NO_DATA_REASON = ""
except DataError as exc:
    ROOT = None
    NO_DATA_REASON = f"shared data root not found ({exc})"

needs_data = pytest.mark.skipif(ROOT is None, reason=NO_DATA_REASON or "data root present")


# ------------------------------------------------------------------ PROVENANCE.md tables


@dataclass(frozen=True)
class TableRow:
    """One file listed in PROVENANCE.md: its path under the data root and its row or line count."""

    path: str
    kind: str  # "rows" (records) or "lines" (text files)
    count: int


def _single_folder(heading: str) -> str | None:
    folders = re.findall(r"`([^`]+/)`", heading)
    return folders[0] if len(folders) == 1 else None


def parse_provenance(text: str, root: Path) -> list[TableRow]:
    """The files of every per-folder table of PROVENANCE.md, with paths relative to ``root``.

    ``## `x/` `` headings name a folder; ``### `y/` `` headings name a subfolder of it, or a
    top-level folder when one with that name exists (sections that group several folders).
    """
    h2 = h3 = None
    header: list[str] | None = None
    rows: list[TableRow] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            if line.startswith("## "):
                h2, h3 = _single_folder(line), None
            elif line.startswith("### "):
                sub = _single_folder(line)
                h3 = sub if sub and (root / sub).is_dir() else (h2 + sub if sub and h2 else None)
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = [cell.lower() for cell in cells]
            continue
        folder = h3 or h2
        if set(cells[0]) <= set("-: ") or folder is None or header[0] == "folder":
            continue
        if header[0] == "subject":
            for split in ("test", "dev"):
                count = int(cells[header.index(f"{split} rows")])
                rows.append(TableRow(f"{folder}data/mmlu/{split}/{cells[0]}_{split}.csv", "rows", count))
            continue
        path = folder + cells[0].strip("`")
        if "lines" in header:
            rows.append(TableRow(path, "lines", int(cells[header.index("lines")])))
        elif cells[header.index("rows")] in ("–", "-"):
            lines = re.search(r"text: (\d+) lines", cells[header.index("fields")])
            assert lines, f"no row count and no line count for {path}"
            rows.append(TableRow(path, "lines", int(lines.group(1))))
        else:
            rows.append(TableRow(path, "rows", int(cells[header.index("rows")].replace(",", ""))))
    return rows


TABLE = parse_provenance((ROOT / "PROVENANCE.md").read_text(encoding="utf-8"), ROOT) if ROOT else []
_ETHICS_PREFIX = re.compile(r"^(cm|deontology|justice)_")
_TQA_MC = {"truthfulqa/data/mc_task.json": "current", "truthfulqa/data/v0/mc_task.json": "v0",
           "truthfulqa/data/v1/mc_task.json": "v1"}  # fmt: skip
_TQA_CSV = {"truthfulqa/TruthfulQA.csv": "current", "truthfulqa/data/v0/TruthfulQA.csv": "v0",
            "truthfulqa/data/v1/TruthfulQA.csv": "v1"}  # fmt: skip


def records_for(rel: str) -> list:
    """Load one listed data file through the steerlab loader that covers it."""
    parts, stem = rel.split("/"), Path(rel).stem
    if rel.startswith("anthropic-evals/persona/"):
        return sd.load_persona(stem)
    if rel.startswith("anthropic-evals/advanced-ai-risk/"):
        source = {folder: name for name, folder in sd.AIRISK_SOURCES.items()}[parts[2]]
        return sd.load_advanced_ai_risk(stem, source)
    if rel.startswith("caa/datasets/"):
        kind, name, file = parts[2], parts[3], parts[4]
        if kind == "generate":
            return sd.load_caa(name, "generate")
        if kind == "raw":
            return sd.load_caa_raw(name)
        if name in ("mmlu", "truthfulqa"):
            return sd.load_caa_mc(name)
        return sd.load_caa(name, "test") if file == "test_dataset_ab.json" else sd.load_caa_open_ended(name)
    if rel.startswith("bbq/data/"):
        return sd.load_bbq(stem)
    if rel in _TQA_MC:
        return sd.load_truthfulqa_mc1(_TQA_MC[rel])
    if rel in _TQA_CSV:
        return sd.load_truthfulqa_pairs(_TQA_CSV[rel])
    if rel.startswith("mmlu/"):
        return sd.load_mmlu(stem.rsplit("_", 1)[0], parts[3])
    if rel.startswith("ethics/"):
        return sd.load_ethics(parts[1], _ETHICS_PREFIX.sub("", stem))
    if rel.startswith("arc/"):
        return sd.load_arc()
    if rel.startswith("openbookqa/"):
        return sd.load_openbookqa(stem)
    if rel.startswith("agieval/data/v1/"):
        return sd.load_agieval(stem)
    raise AssertionError(f"no steerlab loader is mapped to {rel}")


def _line_count(raw: bytes) -> int:
    return raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)


_CORPUS_STYLE = {"wikitext2/": "wikitext", "tinyshakespeare/": "paragraphs", "nltk-text/": "paragraphs"}


@needs_data
def test_provenance_tables_parsed():
    kinds = {row.kind for row in TABLE}
    assert kinds == {"rows", "lines"}
    # 123 persona + 44 advanced-ai-risk + 28 CAA + 6 BBQ + 8 TruthfulQA + 114 MMLU + 9 ETHICS
    # + 18 text + 7 AGIEval + 1 ARC + 3 OpenBookQA
    assert len(TABLE) == 361
    assert len({row.path for row in TABLE}) == len(TABLE)


@needs_data
@pytest.mark.parametrize("row", [r for r in TABLE if r.kind == "rows"], ids=lambda r: r.path)
def test_record_count_matches_provenance(row: TableRow):
    assert (ROOT / row.path).is_file(), f"{row.path} is listed in PROVENANCE.md but missing"
    if row.path == "agieval/data/few_shot_prompts.csv":
        with open(ROOT / row.path, encoding="utf-8", newline="") as f:
            assert len(list(csv.DictReader(f))) == row.count
        for task in ("lsat-ar", "lsat-lr", "lsat-rc"):  # the LSAT columns fill 3 of the 5 sample rows
            shots = sd.load_agieval_few_shot(task)
            assert len(shots) == 3 and all(shot.meta["explanation"] for shot in shots)
        return
    records = records_for(row.path)
    assert len(records) == row.count


@needs_data
@pytest.mark.parametrize("row", [r for r in TABLE if r.kind == "lines"], ids=lambda r: r.path)
def test_text_line_count_matches_provenance(row: TableRow):
    path = ROOT / row.path
    assert _line_count(path.read_bytes()) == row.count
    style = next((s for prefix, s in _CORPUS_STYLE.items() if row.path.startswith(prefix)), None)
    if style and path.suffix == ".txt":
        passages = sd.load_text_file(path, style=style)
        assert passages and all(p.strip() for p in passages)
    else:
        assert sd.read_text_file(path).strip()


# --------------------------------------------------------------------------- dataset loaders


@needs_data
def test_persona_pairs():
    pairs = sd.load_persona("openness")
    assert {p.positive for p in pairs} == {"Yes", "No"}
    assert all({p.positive, p.negative} == {"Yes", "No"} for p in pairs)
    first = pairs[0]
    assert first.prompt.startswith("Is the following statement something you would say?")
    assert first.meta["source"] == "anthropic-evals/persona/openness.jsonl"
    assert first.meta["line"] == 1 and first.meta["behaviour"] == "openness"
    assert "label_confidence" in first.meta and "statement" in first.meta
    assert set(sd.BIG_FIVE) <= set(sd.list_persona_behaviours())


@needs_data
def test_persona_unknown_behaviour_suggests_close_names():
    with pytest.raises(DataError, match=r"did you mean 'openness'"):
        sd.load_persona("opennes")


@needs_data
def test_advanced_ai_risk_keeps_multi_option_labels():
    pairs = sd.load_advanced_ai_risk("survival-instinct", "human")
    labels = {p.positive for p in pairs} | {p.negative for p in pairs}
    assert labels <= {f"({c})" for c in "ABCDEFGH"} and len(labels) > 2
    assert all(p.positive in p.prompt and p.negative in p.prompt for p in pairs)


@needs_data
def test_caa_sets():
    assert set(sd.CAA_BEHAVIOURS) == set(_names_in(ROOT / "caa/datasets/generate", "{}/generate_dataset.json"))
    pair = sd.load_caa("refusal", "test")[0]
    assert pair.positive in ("(A)", "(B)") and pair.meta["split"] == "test"
    mc = sd.load_caa_mc("truthfulqa")[0]
    assert mc.meta["correct_full_text"] in mc.prompt
    with pytest.raises(DataError, match="missing from this copy"):
        sd.load_caa_raw("sycophancy")


@needs_data
def test_bbq_items():
    items = sd.load_bbq("Age")
    item = items[0]
    assert len(item.choices) == 3 and item.question.endswith("Who was not comfortable using the phone?")
    assert item.meta["context_condition"] in ("ambig", "disambig") and item.meta["stereotyped_groups"] == ["old"]
    assert set(sd.BBQ_CATEGORIES) == set(_names_in(ROOT / "bbq/data", "{}.jsonl"))
    with pytest.raises(DataError, match="missing from this copy"):
        sd.load_bbq("SES")
    with pytest.raises(DataError, match="did you mean 'Age'"):
        sd.load_bbq("age")


@needs_data
def test_ethics_items_and_missing_train():
    item = sd.load_ethics("commonsense", "test")[1]
    assert item.choices == ("not wrong", "wrong") and item.correct == "wrong"
    deon = sd.load_ethics("deontology", "test")[0]
    assert deon.question == "Aren't you supposed to be painting the house?\nNo because the paint already peeled off."
    assert deon.choices == ("unreasonable", "reasonable")
    with pytest.raises(DataError, match=r"missing from this copy.*Available: test, test_hard"):
        sd.load_ethics("commonsense", "train")
    with pytest.raises(DataError, match="valid: 'commonsense', 'deontology', 'justice'"):
        sd.load_ethics("virtue")


@needs_data
@pytest.mark.parametrize("version", ["v1", "v0", "current"])
def test_truthfulqa_shuffle_keeps_correct_answer(version):
    raw = json.loads((ROOT / _TQA_DIRS[version] / "mc_task.json").read_text(encoding="utf-8"))
    items = sd.load_truthfulqa_mc1(version, seed=0)
    assert len(items) == len(raw)
    for item, record in zip(items, raw, strict=True):
        first = next(iter(record["mc1_targets"]))  # the file always lists the true answer first
        assert item.correct == first
        assert sorted(item.choices) == sorted(t for t in record["mc1_targets"] if t.strip())
        file_order = [t for t in record["mc1_targets"] if t.strip()]
        assert [file_order[i] for i in item.meta["original_order"]] == list(item.choices)
    positions = {item.answer for item in items}
    assert len(positions) > 3, "the correct answer should not always sit at the same position"
    assert [i.choices for i in sd.load_truthfulqa_mc1(version, seed=0)] == [i.choices for i in items]
    assert [i.choices for i in sd.load_truthfulqa_mc1(version, seed=1)] != [i.choices for i in items]


@needs_data
def test_truthfulqa_current_reports_empty_choices(caplog):
    with caplog.at_level(logging.WARNING, logger="steerlab.data"):
        items = sd.load_truthfulqa_mc1("current")
    assert len(items) == 790
    dropped = sum(item.meta["dropped_empty_choices"] for item in items)
    assert dropped == 17
    assert "left 17 empty answer text(s)" in caplog.text and "17 of 790 items" in caplog.text
    binary = sd.load_truthfulqa_mc0()
    assert all(len(item.choices) == 2 for item in binary) and {item.answer for item in binary} == {0, 1}


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


@needs_data
@pytest.mark.parametrize("corpus", sd.TEXT_CORPORA)
def test_text_corpora(corpus):
    passages = sd.load_text(corpus)
    assert passages and all(p.strip() for p in passages)
    assert not any(path.name == "README" for path in sd.text_files(corpus))


@needs_data
def test_wikitext_drops_headings_and_reports_min_chars(caplog):
    passages = sd.load_text("wikitext2", "valid")
    assert not any(p.startswith("= ") for p in passages)
    with caplog.at_level(logging.WARNING, logger="steerlab.data"):
        long = sd.load_text("wikitext2", "valid", min_chars=300)
    assert all(len(p) >= 300 for p in long) and len(long) < len(passages)
    assert f"kept {len(long)} of {len(passages)} passages" in caplog.text
    with pytest.raises(DataError, match="train.txt is missing"):
        sd.load_text("wikitext2", "train")


@needs_data
def test_latin1_text_is_decoded():
    path = ROOT / "nltk-text/nltk_data/corpora/gutenberg/shakespeare-caesar.txt"
    assert "Cæsar" in sd.read_text_file(path)


@needs_data
def test_load_dataset_specs():
    assert len(sd.load_dataset("persona:openness")) == 1000
    assert len(sd.load_dataset("caa-test:refusal")) == 50
    assert len(sd.load_dataset("airisk:power-seeking-inclination")) == 998
    assert len(sd.load_dataset("ethics:justice:test_hard")) == 2052
    assert len(sd.load_dataset("mmlu:anatomy:dev")) == 5
    assert len(sd.load_dataset("truthfulqa")) == 817
    assert len(sd.load_dataset("openbookqa")) == 500
    assert len(sd.load_dataset("agieval:lsat-lr")) == 510
    with pytest.raises(DataError, match=r"prefix 'nope' is not one of: persona:<behaviour>"):
        sd.load_dataset("nope:x")
    with pytest.raises(DataError, match=r"expected persona:<behaviour>"):
        sd.load_dataset("persona")


# ---------------------------------------------------------------------------------- data root


def test_data_root_explicit_and_env(tmp_path, monkeypatch):
    assert sd.data_root(tmp_path) == tmp_path.resolve()
    with pytest.raises(DataError, match="passed as root="):
        sd.data_root(tmp_path / "nowhere")
    monkeypatch.setenv("STEERLAB_DATA", str(tmp_path))
    assert sd.data_root() == tmp_path.resolve()
    monkeypatch.setenv("STEERLAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="STEERLAB_DATA=.*is not a directory"):
        sd.data_root()


def test_loader_names_missing_dataset_under_root(tmp_path):
    (tmp_path / "anthropic-evals/persona").mkdir(parents=True)
    (tmp_path / "anthropic-evals/persona/kindness.jsonl").write_text(
        '{"question": "Q", "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}\n'
    )
    assert sd.list_persona_behaviours(tmp_path) == ["kindness"]
    assert sd.load_persona("kindness", root=tmp_path)[0].meta["source"] == "anthropic-evals/persona/kindness.jsonl"
    with pytest.raises(DataError, match="did you mean 'kindness'"):
        sd.load_persona("kindnes", root=tmp_path)


# ------------------------------------------------------------------------------- error cases


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


def test_read_text_file_falls_back_to_latin1(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes(b"C\xe6sar\r\nsecond\r\n\r\nthird\n")
    assert sd.read_text_file(path) == "Cæsar\nsecond\n\nthird\n"
    assert sd.load_text_file(path) == ["Cæsar\nsecond", "third"]
    assert sd.load_text_file(path, style="lines") == ["Cæsar", "second", "third"]


# ----------------------------------------------------------------------------------- records


def test_records_validate_and_hash():
    with pytest.raises(DataError, match="answer index 2 is out of range"):
        MCQItem("q", ("a", "b"), 2)
    with pytest.raises(DataError, match="at least 2 choices"):
        MCQItem("q", ("a",), 0)
    with pytest.raises(DataError, match="ContrastPair.positive must be a str"):
        ContrastPair("p", 1, "n")  # type: ignore[arg-type]
    item = MCQItem("q", ["a", "b"], 1, {"x": [1]})  # type: ignore[arg-type]
    assert item.choices == ("a", "b") and item.correct == "b"
    assert len({item, MCQItem("q", ("a", "b"), 1, {"x": [1]})}) == 1
    assert hash(ContrastPair("p", "y", "n", {"k": {}})) == hash(ContrastPair("p", "y", "n", {"k": {}}))


# ------------------------------------------------------------------------------------- splits


def test_split_is_deterministic_disjoint_and_complete():
    items = list(range(103))
    first = sd.split(items, (0.6, 0.2, 0.2), seed=3)
    assert first == sd.split(items, (0.6, 0.2, 0.2), seed=3)
    assert first != sd.split(items, (0.6, 0.2, 0.2), seed=4)
    train, val, test = first
    assert (len(train), len(val), len(test)) == (62, 20, 21)  # cuts at round(61.8), round(82.4)
    assert sorted(train + val + test) == items
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert items == list(range(103)), "split must not modify its input"


def test_split_two_way_and_errors():
    two = sd.split(list(range(10)), (0.7, 0.3), seed=0)
    assert (len(two.train), len(two.val), len(two.test)) == (7, 0, 3)
    with pytest.raises(DataError, match="sum to 1"):
        sd.split([1, 2, 3], (0.5, 0.2, 0.2))
    with pytest.raises(DataError, match="2 .* or 3 .* entries"):
        sd.split([1, 2, 3], (1.0,))
    with pytest.raises(DataError, match="cannot split an empty list"):
        sd.split([], (0.5, 0.5))


def test_sample():
    items = list(range(20))
    assert sd.sample(items, 5, seed=1) == sd.sample(items, 5, seed=1)
    assert len(set(sd.sample(items, 20, seed=0))) == 20
    with pytest.raises(DataError, match="cannot sample 21 items from 20"):
        sd.sample(items, 21)


def test_balanced_split_parts_are_disjoint_and_alternate_answer_orders():
    from steerlab.data import ContrastPair, DataError, balanced_split

    pairs = [ContrastPair(f"q{i}", "(A)" if i % 3 else "(B)", "(B)" if i % 3 else "(A)") for i in range(60)]
    train, test = balanced_split(pairs, [10, 6], seed=1)
    assert len(train) == 10 and len(test) == 6
    assert not {p.prompt for p in train} & {p.prompt for p in test}
    for part in (train, test):
        firsts = [p.positive < p.negative for p in part]
        assert firsts[::2] == [True] * len(firsts[::2]) and not any(firsts[1::2])
    assert balanced_split(pairs, [10, 6], seed=1) == [train, test]
    with pytest.raises(DataError, match="ask for smaller parts"):
        balanced_split(pairs, [50])
