"""Tests for steerlab.data.records: records validate themselves and stay hashable."""

from __future__ import annotations

import pytest

from steerlab.data import ContrastPair, DataError, MCQItem


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
