"""The dataset spec registry: `load_dataset("persona:openness")` and friends, one short string per dataset."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steerlab.data.behaviours import (
    load_advanced_ai_risk,
    load_caa,
    load_caa_mc,
    load_caa_open_ended,
    load_caa_raw,
    load_persona,
)
from steerlab.data.benchmarks_alignment import (
    load_bbq,
    load_ethics,
    load_truthfulqa_mc0,
    load_truthfulqa_mc1,
    load_truthfulqa_pairs,
)
from steerlab.data.benchmarks_knowledge import load_agieval, load_arc, load_mmlu, load_openbookqa
from steerlab.data.corpora import load_text
from steerlab.data.records import DataError

__all__ = ["load_dataset"]


def _all_or(subject: str) -> str | None:
    return None if subject == "all" else subject


_SPECS: dict[str, tuple[str, Callable[..., list[Any]]]] = {
    "persona": ("persona:<behaviour>", lambda b, *, root: load_persona(b, root)),
    "airisk": (
        "airisk:<behaviour>[:human|lm|few_shot]",
        lambda b, s="human", *, root: load_advanced_ai_risk(b, s, root),
    ),
    "caa": ("caa:<behaviour>", lambda b, *, root: load_caa(b, "generate", root)),
    "caa-test": ("caa-test:<behaviour>", lambda b, *, root: load_caa(b, "test", root)),
    "caa-raw": ("caa-raw:<behaviour>", lambda b, *, root: load_caa_raw(b, root)),
    "caa-open": ("caa-open:<behaviour>", lambda b, *, root: load_caa_open_ended(b, root)),
    "caa-mc": ("caa-mc:mmlu|truthfulqa", lambda name, *, root: load_caa_mc(name, root)),
    "bbq": ("bbq:<category>", lambda c, *, root: load_bbq(c, root)),
    "ethics": ("ethics:<subset>[:test|test_hard|train]", lambda s, sp="test", *, root: load_ethics(s, sp, root)),
    "truthfulqa": ("truthfulqa[:v1|v0|current]", lambda v="v1", *, root: load_truthfulqa_mc1(v, root)),
    "truthfulqa-mc0": ("truthfulqa-mc0", lambda *, root: load_truthfulqa_mc0(root)),
    "truthfulqa-pairs": ("truthfulqa-pairs[:v1|v0|current]", lambda v="v1", *, root: load_truthfulqa_pairs(v, root)),
    "mmlu": ("mmlu[:<subject>|all[:test|dev]]", lambda s="all", sp="test", *, root: load_mmlu(_all_or(s), sp, root)),
    "arc": ("arc", lambda *, root: load_arc(root)),
    "openbookqa": ("openbookqa[:train|dev|test]", lambda sp="test", *, root: load_openbookqa(sp, root)),
    "agieval": ("agieval:lsat-ar|lsat-lr|lsat-rc", lambda t, *, root: load_agieval(t, root)),
    "text": ("text:<corpus>[:<split>]", lambda c, sp=None, *, root: load_text(c, sp, root)),
}  # fmt: skip


def load_dataset(spec: str, root: str | Path | None = None) -> list[Any]:
    """Load a dataset from a short spec such as ``"persona:openness"`` or ``"mmlu:anatomy:dev"``.

    Valid prefixes: persona, airisk, caa, caa-test, caa-raw, caa-open, caa-mc, bbq, ethics,
    truthfulqa, truthfulqa-mc0, truthfulqa-pairs, mmlu, arc, openbookqa, agieval, text; arguments
    follow, separated by ``:``.

    Example:
        >>> len(load_dataset("caa-test:refusal"))
        50
    """
    prefix, *args = spec.strip().split(":")
    if prefix not in _SPECS:
        usages = "; ".join(usage for usage, _ in _SPECS.values())
        raise DataError(f"unknown dataset spec {spec!r}: prefix {prefix!r} is not one of: {usages}")
    usage, loader = _SPECS[prefix]
    try:
        inspect.signature(loader).bind(*args, root=root)
    except TypeError:
        raise DataError(f"dataset spec {spec!r} has {len(args)} argument(s); expected {usage}") from None
    return loader(*args, root=root)
