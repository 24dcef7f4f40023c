"""Tests for steerlab.data.splits: seeded, disjoint, complete splits and samples."""

from __future__ import annotations

import pytest

from steerlab import data as sd
from steerlab.data import ContrastPair, DataError, balanced_split


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


def test_stratified_split_keeps_labels_in_every_part_and_prefix():
    from types import SimpleNamespace

    items = [SimpleNamespace(id=i, label="Yes" if i % 3 else "No") for i in range(90)]  # 60 Yes, 30 No
    parts = sd.stratified_split(items, (0.6, 0.2, 0.2), seed=1)
    ids = [it.id for part in parts for it in part]
    assert sorted(ids) == list(range(90))  # disjoint and complete
    assert [len(p) for p in parts] == [54, 18, 18]
    assert [sum(it.label == "No" for it in p) for p in parts] == [18, 6, 6]  # one third in every part
    assert sum(it.label == "No" for it in parts.test[:9]) == 3  # and in a prefix (a capped test set)
    assert parts == sd.stratified_split(items, (0.6, 0.2, 0.2), seed=1)
    assert parts != sd.stratified_split(items, (0.6, 0.2, 0.2), seed=2)

    balanced = sd.stratified_split(items, (0.6, 0.2, 0.2), seed=1, balance=True)
    assert [len(p) for p in balanced] == [36, 12, 12]
    for part in balanced:
        assert sum(it.label == "No" for it in part) == len(part) // 2
        assert [it.label for it in part[:4]] in (["No", "Yes"] * 2, ["Yes", "No"] * 2)  # alternating
    by_key = sd.stratified_split(items, (0.5, 0.5), key=lambda it: it.id % 2, seed=0)
    assert by_key.val == [] and [sum(it.id % 2 for it in p) for p in (by_key.train, by_key.test)] == [22, 23]
    with pytest.raises(DataError, match="empty"):
        sd.stratified_split([], (0.6, 0.2, 0.2))
