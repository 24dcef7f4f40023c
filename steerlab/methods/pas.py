"""Painless Activation Steering (PAS; Cui & Chen 2025, arXiv 2509.22739): contrast sets from the
model's own answers to a labelled multiple-choice dataset, and their mean-difference vector.

The model answers every training item with one forward pass (argmax of the option-letter logits
after the `steerlab.prompts.mcq_prompt` prompt). Its right and wrong answers then define the two
contrast sets, in one of three ways:

| variant  | positive set                                   | negative set                                 |
|----------|------------------------------------------------|----------------------------------------------|
| `pasf`   | full prompts, items answered right             | full prompts, items answered wrongly         |
| `ipasa`  | question + correct option, items answered right | question + chosen option, items answered wrongly |
| `ipaswo` | question + correct option, items answered wrongly | question + chosen option, the same items  |

The vector is ``mean(positive) - mean(negative)`` of activations read at the last token, added
unnormalised at the last prompt position of one layer. This module works on tensors only: the
activations come from `steerlab.pipelines.pas`, which runs the model, and
`steerlab.extraction.pas_vector` wraps the directions in a `SteeringVector`.

Read sites: the vector is read where it is written (``read="same"``), or, as in the authors' code,
from the residual stream one block before the write (``read="resid_prev"``: ``resid_pre`` of the
written layer, which equals ``resid_post`` of the layer before).

Example:
    >>> import torch
    >>> correct = torch.tensor([True, False, True, False])
    >>> acts = PASActivations(correct, {Site(0): torch.eye(4)}, {Site(0): torch.eye(4)}, {Site(0): torch.eye(4)})
    >>> contrast_sets("pasf", acts, Site(0))[0].shape
    torch.Size([2, 4])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from steerlab.data import ContrastPair
from steerlab.errors import SteerlabError
from steerlab.sites import Site

Variant = Literal["pasf", "ipasa", "ipaswo"]
VARIANTS: tuple[str, ...] = ("pasf", "ipasa", "ipaswo")
ReadSite = Literal["same", "resid_prev"]
READS: tuple[str, ...] = ("same", "resid_prev")


class ContrastSetError(SteerlabError):
    """A PAS contrast set is empty: the model answered every training item right, or every one wrong."""


@dataclass(frozen=True)
class PASActivations:
    """Everything PAS needs about ``n`` items, read at the last token, per site.

    Attributes:
        correct: ``[n]`` whether the model's letter prediction was right.
        full: activations of the full MCQ prompt (the PASf texts).
        q_correct: activations of question + correct option text.
        q_chosen: activations of question + the option the model chose; for items it answered
            correctly, question + the next option (``(answer + 1) % k``). No variant uses that side of a
            correct item; it makes a two-option task's labels flippable without rerunning the model.
    """

    correct: Bool[Tensor, " n"]
    full: dict[Site, Float[Tensor, "n d"]]
    q_correct: dict[Site, Float[Tensor, "n d"]]
    q_chosen: dict[Site, Float[Tensor, "n d"]]

    def __post_init__(self) -> None:
        n = len(self.correct)
        for name in ("full", "q_correct", "q_chosen"):
            for site, x in getattr(self, name).items():
                if x.shape[0] != n:
                    raise SteerlabError(f"{name}[{site}] has {x.shape[0]} rows for {n} items; give one row per item")

    def __len__(self) -> int:
        return len(self.correct)

    def subset(self, index: Sequence[int] | Tensor) -> PASActivations:
        """The same record restricted to the items at ``index`` (e.g. one seed's training split)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        pick = lambda d: {s: x[idx] for s, x in d.items()}  # noqa: E731
        return PASActivations(self.correct[idx], pick(self.full), pick(self.q_correct), pick(self.q_chosen))


def read_site(site: Site, read: ReadSite = "same") -> Site:
    """Where the vector written at ``site`` is read: the same site, or the residual stream entering its block."""
    if read not in READS:
        raise SteerlabError(f"unknown read site {read!r}; valid: {', '.join(READS)}")
    return site if read == "same" else Site(site.layer, "resid_pre")


def predictions(letter_logits: Float[Tensor, "n k"], answers: Sequence[int]) -> tuple[Tensor, Bool[Tensor, " n"]]:
    """PAS's prediction (argmax over the option letters) and whether it is right, per item.

    ``letter_logits[i, k]`` is the next-token logit of option letter ``k`` of item ``i`` (pad
    missing options with ``-inf``).
    """
    if len(letter_logits) == 0:
        raise SteerlabError("no items to predict; pass at least one multiple-choice item")
    answers_t = torch.as_tensor(list(answers), dtype=torch.long)
    if answers_t.shape[0] != letter_logits.shape[0]:
        raise SteerlabError(f"{letter_logits.shape[0]} rows of logits but {answers_t.shape[0]} answers")
    pred = letter_logits.argmax(dim=-1)
    return pred, pred == answers_t


def contrast_sets(
    variant: Variant, acts: PASActivations, site: Site
) -> tuple[Float[Tensor, "n_pos d"], Float[Tensor, "n_neg d"]]:
    """The positive and negative activation sets of one PAS variant at one (read) site.

    Raises a `SteerlabError` when a set would be empty: the model answered every item right (or
    every item wrong), so there is nothing to contrast.
    """
    if variant not in VARIANTS:
        raise SteerlabError(f"unknown PAS variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if len(acts) == 0:
        raise SteerlabError("no training items; PAS needs items the model answered right and wrong")
    right, wrong = acts.correct, ~acts.correct
    n_right, n_wrong = int(right.sum()), int(wrong.sum())
    if n_wrong == 0 or (variant != "ipaswo" and n_right == 0):
        raise ContrastSetError(
            f"{variant}: the model answered {n_right} of {len(acts)} training items correctly, so one contrast set "
            "is empty; use more (or harder / easier) items, or another variant "
            + ("(ipaswo needs only wrong answers)" if n_wrong else "")
        )
    store = {"pasf": acts.full, "ipasa": acts.q_correct, "ipaswo": acts.q_correct}[variant]
    if site not in store:
        raise SteerlabError(f"no activations at {site}; collected sites: {[str(s) for s in store]}")
    if variant == "pasf":
        return acts.full[site][right], acts.full[site][wrong]
    if variant == "ipasa":
        return acts.q_correct[site][right], acts.q_chosen[site][wrong]
    return acts.q_correct[site][wrong], acts.q_chosen[site][wrong]


def ipas_pairs(items: Sequence, pred: Sequence[int]) -> list[ContrastPair]:
    """Question + correct option text (positive) against question + the chosen option text (negative).

    For an item answered correctly the negative is the next option (see `PASActivations.q_chosen`);
    `contrast_sets` uses only the sides each variant needs. The question becomes the user turn and
    the option text the assistant's reply.
    """
    if len(items) != len(pred):
        raise SteerlabError(f"{len(items)} items but {len(pred)} predictions; give one prediction per item")
    pairs = []
    for i, (it, p) in enumerate(zip(items, pred, strict=True)):
        a, p = int(it.answer), int(p)
        neg = (a + 1) % len(it.choices) if p == a else p
        pairs.append(ContrastPair(it.question, str(it.choices[a]), str(it.choices[neg]), {"id": i}))
    return pairs
