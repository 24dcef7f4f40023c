"""Tests for steerlab.data.root: where the data root is and how loaders name missing datasets under it."""

from __future__ import annotations

import pytest

from steerlab import data as sd
from steerlab.data import DataError


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
