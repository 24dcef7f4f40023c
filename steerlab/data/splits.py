"""Seeded splits and samples of record lists: `split`, `sample`, the label-balanced `balanced_split` and
`stratified_split` (any label function; every part, and every prefix of a part, keeps the label mix).

Copies of one record (same content, `steerlab.data.records.record_key`) always land in the same part
of a `split`, so nothing in the test part was seen in training; the copies are counted in a warning.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, NamedTuple, TypeVar

from steerlab.data.records import ContrastPair, DataError, record_key

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["Split", "balanced_split", "sample", "split", "stratified_split"]


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
    groups: dict = {}  # record key -> indices of its copies, in first-seen order
    for i, item in enumerate(items):
        groups.setdefault(record_key(item), []).append(i)
    order = list(groups.values())  # without copies: one group per item, the same shuffle as item indices
    random.Random(seed).shuffle(order)
    cut1 = round(n * fractions[0])
    cut2 = max(cut1, round(n * (fractions[0] + fractions[1])))
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    taken = 0
    for group in order:  # whole groups: a group goes where its first copy would fall
        parts[0 if taken < cut1 else 1 if taken < cut2 else 2].extend(group)
        taken += len(group)
    copies = n - len(groups)
    names = ("train", "val", "test")
    sizes = ", ".join(f"{len(p)} {k}" for k, p in zip(names, parts, strict=True))
    if copies:
        logger.warning(
            "split: %d of %d items are copies of others (%d distinct); copies are kept in one part so none is in "
            "both train and test; remove them from the data to keep the intended sizes (%s)",
            copies, n, len(groups), sizes,
        )  # fmt: skip
    empty = [name for name, f, part in zip(names, fractions, parts, strict=True) if f > 0 and not part]
    if empty and copies:
        raise DataError(
            f"split: the {' and '.join(empty)} part(s) are empty because the {n} items hold only {len(groups)} "
            f"distinct record(s) ({copies} copies); copies never go to two parts (train and test would share them). "
            "Remove the duplicates and give more distinct records"
        )
    for name in empty:
        logger.warning("split: the %s part is empty (%d items, fraction %.3g)", name, n, fractions[names.index(name)])
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


def stratified_split(
    items: Sequence[T],
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    key: Callable[[T], Hashable] | None = None,
    seed: int = 0,
    *,
    balance: bool = False,
) -> Split[T]:
    """Train/val/test parts in which every label (``key(item)``) keeps its share, seeded.

    Each label's items are shuffled with ``random.Random(seed)`` and cut in ``fractions`` (rounded at the
    cumulative boundaries, as `split`); each part then takes its labels in turn (A, B, A, B, ...), so any
    prefix of a part (a capped test set) keeps the mix too. With ``balance=True`` every label is first cut
    to the size of the smallest, so each part holds the labels in equal numbers (a model that always gives
    one answer then scores exactly chance); the dropped items are logged.

    Args:
        items: The records; not modified.
        fractions: (train, val, test) or (train, test), non-negative, summing to 1.
        key: The label of an item (default: the item's ``label`` attribute).
        seed: The shuffle seed.
        balance: Equal numbers of each label in every part.

    Example:
        >>> items = [("x", i % 4 == 0) for i in range(20)]           # 5 of one label, 15 of the other
        >>> parts = stratified_split(items, (0.6, 0.2, 0.2), key=lambda it: it[1], seed=0)
        >>> [sum(it[1] for it in part) for part in parts], [len(part) for part in parts]
        ([3, 1, 1], [12, 4, 4])
        >>> [len(p) for p in stratified_split(items, (0.6, 0.2, 0.2), key=lambda it: it[1], balance=True)]
        [6, 2, 2]
    """
    if len(items) == 0:
        raise DataError("cannot split an empty list of items; check that the loader returned records")
    key = key or (lambda it: it.label)  # type: ignore[attr-defined]
    groups: dict[Hashable, list[T]] = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    if balance:
        smallest = min(len(g) for g in groups.values())
        dropped = sum(len(g) - smallest for g in groups.values())
        if dropped:
            logger.info("stratified_split: balancing %d labels drops %d of %d items", len(groups), dropped, len(items))
        groups = {k: sample(g, smallest, seed) for k, g in groups.items()}
    cut = {k: split(g, fractions, seed) for k, g in sorted(groups.items(), key=lambda kv: str(kv[0]))}
    parts = []
    for index in range(3):
        columns = [c[index] for c in cut.values()]
        merged = [it for row in zip(*columns, strict=False) for it in row]
        longest = max((len(c) for c in columns), default=0)
        shortest = min((len(c) for c in columns), default=0)
        if longest > shortest:  # unequal labels: keep the labels' proportions along the part
            order = sorted(((j / len(c), n, it) for n, c in enumerate(columns) for j, it in enumerate(c)),
                           key=lambda t: (t[0], t[1]))  # fmt: skip
            merged = [it for _, _, it in order]
        parts.append(merged)
    return Split(*parts)
