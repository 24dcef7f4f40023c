"""Tests for steerlab.data.corpora: text corpora and plain-text files."""

from __future__ import annotations

import logging

import pytest
from _data_root import ROOT, needs_data

from steerlab import data as sd
from steerlab.data import DataError


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


def test_read_text_file_falls_back_to_latin1(tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes(b"C\xe6sar\r\nsecond\r\n\r\nthird\n")
    assert sd.read_text_file(path) == "Cæsar\nsecond\n\nthird\n"
    assert sd.load_text_file(path) == ["Cæsar\nsecond", "third"]
    assert sd.load_text_file(path, style="lines") == ["Cæsar", "second", "third"]
