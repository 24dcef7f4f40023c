"""Tests for steerlab.data.behaviours: persona, advanced-AI-risk and CAA contrast pairs."""

from __future__ import annotations

import pytest
from _data_root import ROOT, needs_data

from steerlab import data as sd
from steerlab.data import DataError
from steerlab.data.root import _names_in


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
