"""The PAS paper's tasks (Cui & Chen 2025, arXiv 2509.22739) as MCQ items, plus the two settings PAS is
stacked on: in-context exemplars and a short supervised fine-tune.

Categories as in the paper: Bias (BBQ), Morality (ETHICS), Alignment (sycophancy, TruthfulQA MC1),
Intelligence (ARC-Challenge, OpenBookQA, AGIEval LSAT).

Sycophancy uses CAA's A/B sets (Rimsky et al. 2024). The authors scored the sycophantic answer as
"correct"; `load_task("sycophancy")` scores the non-sycophantic one, and ``"sycophancy_authors"``
keeps the authors' direction.

Example:
    >>> items = load_task("bbq_age", n=120, seed=0)   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from steerlab import data
from steerlab.backends.base import Backend
from steerlab.data import MCQItem
from steerlab.errors import SteerlabError
from steerlab.prompts import LETTERS, mcq_prompt, mcq_setup

logger = logging.getLogger(__name__)

_CHOICES = re.compile(r"\n ?\(A\) (.*?)\n ?\(B\) (.*?)\s*$", re.S)


def sycophancy_items(authors_direction: bool = False) -> list[MCQItem]:
    """CAA's sycophancy A/B items (generate set) with the options split out of the prompt.

    The correct answer is the non-sycophantic one, or with ``authors_direction=True`` the
    sycophantic one (the paper's scoring).
    """
    items = []
    for i, pair in enumerate(data.load_caa("sycophancy", "generate")):
        m = _CHOICES.search(pair.prompt)
        if m is None:
            continue
        sycophantic = "AB".index(pair.positive.strip()[1])
        answer = sycophantic if authors_direction else 1 - sycophantic
        items.append(MCQItem(pair.prompt[: m.start()].strip(), (m.group(1), m.group(2)), answer, {"id": i}))
    return items


TASKS: dict[str, tuple[str, Callable[[], list]]] = {
    **{f"bbq_{c.lower()}": ("Bias", lambda c=c: data.load_bbq(c)) for c in
       ("Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation")},
    **{f"ethics_{s}": ("Morality", lambda s=s: data.load_ethics(s)) for s in ("commonsense", "deontology", "justice")},
    "sycophancy": ("Alignment", sycophancy_items),
    "sycophancy_authors": ("Alignment", lambda: sycophancy_items(authors_direction=True)),
    "truthfulqa": ("Alignment", data.load_truthfulqa_mc1),
    "arc": ("Intelligence", data.load_arc),
    "openbookqa": ("Intelligence", data.load_openbookqa),
    **{f"lsat_{t}": ("Intelligence", lambda t=t: data.load_agieval(f"lsat-{t}")) for t in ("ar", "lr", "rc")},
}  # fmt: skip
"""Task name -> (category, loader)."""


FLIPPED = {"sycophancy": "sycophancy_authors"}
"""Tasks also scored with the labels flipped (the same cached prompts): the authors' sycophancy direction."""

LONG_TASKS = {"lsat_ar": 1200, "lsat_lr": 1200, "lsat_rc": 4200}
"""Character caps (question + options) for tasks whose items are long: LSAT items run 600-4,100 characters."""


def category(task: str) -> str:
    return TASKS[task][0]


def char_cap(task: str, default: int = 600) -> int:
    """The notebooks' cap on an item's question + options characters (CPU time grows with prompt length):
    ``default`` for short-item tasks, `LONG_TASKS` for LSAT."""
    return LONG_TASKS.get(task, default)


def load_task(name: str, n: int | None = None, *, seed: int = 0, max_chars: int | None = None,
              exclude: Sequence[MCQItem] = ()) -> list[MCQItem]:  # fmt: skip
    """Up to ``n`` items of a task, drawn with ``seed``; ``max_chars`` drops items whose question and
    options are longer (to bound CPU time; say so where it is used); ``exclude`` drops given items."""
    if name not in TASKS:
        raise SteerlabError(f"unknown PAS task {name!r}; valid: {', '.join(TASKS)}")
    items = TASKS[name][1]()
    skip = {(it.question, it.choices) for it in exclude}
    items = [it for it in items if (it.question, it.choices) not in skip]
    if max_chars is not None:
        items = [it for it in items if len(it.question) + sum(map(len, it.choices)) <= max_chars]
    if not items:
        raise SteerlabError(f"task {name!r} has no items left (max_chars={max_chars}); raise max_chars")
    return data.sample(items, min(n, len(items)), seed) if n is not None else items


def with_exemplars(items: Sequence[MCQItem], exemplars: Sequence[MCQItem]) -> list[MCQItem]:
    """In-context learning: each question preceded by solved exemplars in the same MCQ format."""
    if not exemplars:
        raise SteerlabError("no exemplars; pass at least one solved item")
    shots = "\n\n".join(f"{mcq_prompt(e.question, e.choices)} {LETTERS[e.answer]}" for e in exemplars)
    return [MCQItem(f"{shots}\n\n{it.question}", it.choices, it.answer, dict(it.meta)) for it in items]


def finetune_letters(
    backend: Backend,
    items: Sequence[MCQItem],
    *,
    steps: int = 60,
    batch_size: int = 8,
    lr: float = 1e-5,
    train_layers: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Supervised fine-tuning of ``backend``'s model, in place, on MCQ items: cross-entropy of the
    correct option letter at the answer position (the PAS prompt). With ``train_layers=k`` only the
    last ``k`` blocks and the final norm are trained. Returns the loss per step.
    """
    if not items:
        raise SteerlabError("no training items for fine-tuning")
    model = backend.hf_model
    blocks = model.model.layers
    params = list(model.parameters())
    if train_layers is not None:
        params = [p for b in blocks[-train_layers:] for p in b.parameters()] + list(model.model.norm.parameters())
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    setups = [mcq_setup(backend, it) for it in items]
    g = torch.Generator().manual_seed(seed)
    rows = []
    model.train()
    try:
        for step in tqdm(range(steps), desc="sft", disable=not progress):
            idx = torch.randint(len(items), (batch_size,), generator=g).tolist()
            batch = backend.tokenize([setups[i][0] for i in idx])
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, logits_to_keep=1).logits  # fmt: skip
            target = torch.tensor([setups[i][1][items[i].answer] for i in idx], device=logits.device)
            loss = torch.nn.functional.cross_entropy(logits[:, -1].float(), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rows.append({"step": step, "loss": loss.item()})
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return pd.DataFrame(rows)


def run_task(
    backend: Backend,
    task: str,
    cfg,
    seeds: Sequence[int],
    *,
    n: int,
    block_size: int = 10,
    max_chars: int | None = None,
    flipped: str | None = None,
    runs=None,
    progress: bool = True,
) -> dict[str, dict]:
    """`steerlab.pipelines.pas.prepare` + `run_pas` on one task, cached under ``runs`` (a folder) by its settings.

    With ``runs``, the sweeps of every seed and method are kept under ``runs/<task>_<key>/<name>/`` (a killed
    run resumes without recomputing finished cells) and the finished task in ``runs/<task>_<key>.pt``.
    With ``flipped`` (e.g. ``"sycophancy_authors"`` for ``"sycophancy"``), the same cached prompts are
    also run with the labels flipped (`flip_binary`). Returns ``{task: {"results", "grid", "chosen", "tests",
    "stats"}}`` (and the flipped task), with ``task`` and ``category`` columns added.
    """
    from steerlab.caching import cached
    from steerlab.pipelines.pas import flip_binary, prepare, run_pas
    from steerlab.vectors import dataset_hash

    key = dataset_hash([repr(cfg), list(seeds), n, block_size, max_chars, flipped, backend.name])[:12]
    root = None if runs is None else Path(runs) / f"{task}_{key}"

    def one(prep, name: str) -> dict:
        run = run_pas(prep, cfg, seeds, out=None if root is None else root / name, progress=progress)
        tag = {"task": name, "category": category(name)}
        return {"results": run.results.assign(**tag), "grid": run.grid.assign(**tag), "chosen": run.chosen,
                "tests": run.tests.assign(**tag), "stats": prep.stats}  # fmt: skip

    def make() -> dict:
        items = load_task(task, n, seed=0, max_chars=max_chars)
        ipas = any(m in ("ipasa", "ipaswo") for m in cfg.methods)
        prep = prepare(backend, items, cfg.sites, block_size=block_size, ipas=ipas, progress=progress)
        out = {task: one(prep, task)}
        if flipped is not None:
            out[flipped] = one(flip_binary(prep), flipped)
        return out

    if runs is None:
        return make()
    return cached(Path(runs) / f"{task}_{key}.pt", make)


def run_tasks(backend: Backend, tasks: Sequence[str], cfg, seeds: Sequence[int], *, n: int, block_size: int = 10,
              runs=None, progress: bool = True) -> dict[str, dict]:  # fmt: skip
    """`run_task` on each of ``tasks`` with the notebooks' settings: `char_cap` per task, and the `FLIPPED`
    twin (sycophancy in the authors' direction) run alongside. Returns the merged ``{task: ...}``."""
    import time

    out: dict[str, dict] = {}
    for task in tasks:
        start = time.perf_counter()
        out.update(run_task(backend, task, cfg, seeds, n=n, block_size=block_size, max_chars=char_cap(task),
                            flipped=FLIPPED.get(task), runs=runs, progress=progress))  # fmt: skip
        logger.info("%s: %.0f s", task, time.perf_counter() - start)
    return out
