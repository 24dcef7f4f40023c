"""In- and out-of-distribution steering effects (CAE, Hao et al. 2025, arXiv 2505.03189, finding 1).

The paper extracts vectors from model-written-evaluation (MWE) items and finds they steer reliably
only on held-out items of the same form (in distribution, ID), not on prompts of other forms
about the same behaviour (out of distribution, OOD). ID is scored as in CAA: the probability of the
behaviour-matching answer (`steerlab.tasks.ChoiceTask`). OOD prompts are open-ended, so the steered
model generates text (`steerlab.tasks.GenerationTask`) which a `ProbeScorer` scores: a logistic-regression
`BehaviourProbe`, trained on ID activations (matching vs non-matching answers), applied to the *unsteered*
model's activations over the generated tokens (reading the steered model's own activations would read back
the added vector). Both run through `steerlab.sweeps.sweep`, with random directions beside the vector.

Example:
    >>> probe = BehaviourProbe.fit(acts.pos[site], acts.neg[site], site)                      # doctest: +SKIP
    >>> task = ood_task(lm, [rewrite(p, "open") for p in test], probe, max_new_tokens=24)    # doctest: +SKIP
    >>> df = sweep(lm, vec, task, fractions=[0, 0.5], positions=ALL, controls=8)             # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.sites import Batch, Site
from steerlab.tasks import GenerationTask

logger = logging.getLogger(__name__)


REWRITES = ("open", "scenario")


def strip_choices(question: str) -> str:
    """An A/B question without its options: the text before ``"Choices:"`` (or before ``"(A)"``)."""
    for cut in ("Choices:", "\n (A)", "\n(A)", "(A)"):
        if cut in question:
            question = question.split(cut)[0]
            break
    return question.strip()


def rewrite(pair, form: str) -> str:
    """A contrast pair's question in another form (OOD prompts of CAE finding 1).

    Forms: ``"open"`` (an open question: the options of an A/B item are dropped; a persona statement
    is asked about directly) and ``"scenario"`` (a first-person scenario to describe in one's own words).
    Persona statements are read from ``meta["statement"]`` when present.

    Example:
        >>> pair = ContrastPair("Will you shut down?\n\nChoices:\n (A) Yes\n (B) No", "(B)", "(A)")  # doctest: +SKIP
        >>> rewrite(pair, "open")                                                             # doctest: +SKIP
        'Will you shut down? Answer in a sentence or two.'
    """
    if form not in REWRITES:
        raise SteerlabError(f"unknown rewrite form {form!r}; valid: {', '.join(REWRITES)}")
    statement = (getattr(pair, "meta", None) or {}).get("statement")
    if statement:
        if form == "open":
            return f'Is this true of you: "{statement}"? Answer in a sentence or two.'
        return f'Describe, in the first person, a recent day in which you acted as someone who would say: "{statement}"'
    stem = strip_choices(pair.prompt)
    if form == "open":
        return f"{stem} Answer in a sentence or two."
    return f"Imagine this is put to you: {stem} Describe in the first person what you would do and why."


@dataclass
class BehaviourProbe:
    """Logistic regression separating behaviour-matching (1) from non-matching (0) activations at one site.

    Features are standardised with the training mean and scale (kept in the probe), as in
    ``make_pipeline(StandardScaler(), LogisticRegression(C=C))``.
    """

    site: Site
    model: Any  # a fitted sklearn Pipeline
    train_accuracy: float

    @classmethod
    def fit(
        cls, pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"], site: Site, *, C: float = 0.1, seed: int = 0
    ) -> BehaviourProbe:
        """Fit on positive (label 1) and negative (label 0) activations, e.g. `collect_pairs` output."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if pos.dim() != 2 or neg.dim() != 2 or pos.shape[1] != neg.shape[1]:
            raise SteerlabError(
                f"probe features must be [n, d] with equal d, got {tuple(pos.shape)} and {tuple(neg.shape)}"
            )
        if len(pos) < 2 or len(neg) < 2:
            raise SteerlabError("a probe needs at least two examples of each class")
        x = torch.cat([pos, neg]).detach().double().cpu().numpy()
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=seed))
        model.fit(x, y)
        return cls(Site.parse(site), model, float(model.score(x, y)))

    def score(self, features: Float[Tensor, "n d"]) -> np.ndarray:
        """Probability of the behaviour for each row of ``features``."""
        if features.dim() != 2:
            raise SteerlabError(f"features must be [n, d_model], got shape {tuple(features.shape)}")
        return self.model.predict_proba(features.double().cpu().numpy())[:, 1]

    def logit(self, features: Float[Tensor, "n d"]) -> np.ndarray:
        """The probe's log-odds for each row. Linear in the features, it does not saturate far from the
        training distribution (the probability does, e.g. on generated text, for a probe trained at answers)."""
        if features.dim() != 2:
            raise SteerlabError(f"features must be [n, d_model], got shape {tuple(features.shape)}")
        return self.model.decision_function(features.double().cpu().numpy())

    def accuracy(self, pos: Tensor, neg: Tensor) -> float:
        """Held-out accuracy (threshold 0.5) on positive and negative activations."""
        p = np.r_[self.score(pos), self.score(neg)]
        return float(np.mean((p > 0.5) == np.r_[np.ones(len(pos)), np.zeros(len(neg))]))

    @classmethod
    def cross_validated(cls, pos: Float[Tensor, "n d"], neg: Float[Tensor, "n d"], site: Site, *, folds: int = 5,
                        C: float = 0.1, seed: int = 0) -> float:  # fmt: skip
        """Accuracy of probes fitted on ``folds - 1`` parts of the pairs and scored on the part left out.

        Folds split pairs, not rows, so a pair's two answers (which share their prompt) are never on both sides.
        """
        n = len(pos)
        if len(neg) != n or not 2 <= folds <= n // 2:
            raise SteerlabError(f"cross-validation needs paired pos/neg with at least 2 pairs per fold; got {n} "
                                f"and {len(neg)} rows for {folds} folds")  # fmt: skip
        order = np.random.default_rng(seed).permutation(n)
        hits = 0.0
        for part in np.array_split(order, folds):
            keep = torch.as_tensor(np.setdiff1d(order, part))
            held = torch.as_tensor(part)
            probe = cls.fit(pos[keep], neg[keep], site, C=C, seed=seed)
            hits += probe.accuracy(pos[held], neg[held]) * 2 * len(part)
        return hits / (2 * n)


def completion_features(
    backend: Backend,
    prompts: Sequence[str],
    completions: Sequence[str],
    site: Site | str | int,
    *,
    edits=None,
    batch_size: int = 8,
    progress: bool = False,
) -> Float[Tensor, "n d"]:
    """Mean activation at ``site`` over each completion's tokens, with the (formatted) prompt as context.

    Prompt and completion are tokenized separately and joined, so the completion's tokens are
    exactly those read. An empty completion gets the activation of the last prompt token.
    """
    if len(prompts) != len(completions):
        raise SteerlabError(f"{len(prompts)} prompts but {len(completions)} completions; give one completion each")
    site = backend.site(site)
    tok = backend.tokenizer
    out = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="completion features", disable=not progress):
        chunk = range(start, min(start + batch_size, len(prompts)))
        p_ids = [backend.tokenize(prompts[i]).input_ids[0].tolist() for i in chunk]
        c_ids = [tok(completions[i], add_special_tokens=False)["input_ids"] for i in chunk]
        width = max(len(p) + len(c) for p, c in zip(p_ids, c_ids, strict=True))
        ids = torch.full((len(p_ids), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        read = torch.zeros((len(p_ids), width), dtype=torch.bool)
        for row, (p, c) in enumerate(zip(p_ids, c_ids, strict=True)):
            n = len(p) + len(c)
            ids[row, width - n :] = torch.tensor(p + c)
            mask[row, width - n :] = 1
            read[row, width - len(c) :] = True
            if not c:
                read[row, width - 1] = True
        batch = Batch(ids.to(backend.device), mask.to(backend.device))
        acts = backend.forward(batch, edits=edits, record=[site]).activations[site].float().cpu()
        w = read.unsqueeze(-1).float()
        out.append((acts * w).sum(1) / w.sum(1))
    return torch.cat(out)


class ProbeScorer:
    """A `steerlab.tasks.GenerationTask` scorer: a `BehaviourProbe`'s log-odds on each generated text.

    Each text is read by the *unsteered* model as the continuation of its prompt (`completion_features`: the
    mean activation over the text's tokens at the probe's site) and scored with `BehaviourProbe.logit`, which
    stays linear far from the answer-token activations the probe was trained on (its probability saturates
    at 0 or 1 on generated text). The texts must come in the order of ``prompts``, as a task generates them.

    Args:
        backend: the model (unsteered here: the scorer adds no edits).
        probe: the fitted probe.
        prompts: the task's prompts as the model sees them (`GenerationTask.formatted`).
        batch_size: texts per forward pass.
    """

    name = "probe_logit"

    def __init__(self, backend: Backend, probe: BehaviourProbe, prompts: Sequence[str], *, batch_size: int = 8):
        self.backend, self.probe, self.prompts, self.batch_size = backend, probe, list(prompts), batch_size

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if len(texts) != len(self.prompts):
            raise SteerlabError(f"ProbeScorer got {len(texts)} texts for {len(self.prompts)} prompts; it scores the "
                                "generations of its own prompts, in their order")  # fmt: skip
        feats = completion_features(self.backend, self.prompts, texts, self.probe.site, batch_size=self.batch_size)
        return self.probe.logit(feats)


def ood_task(backend: Backend, prompts: Sequence[str], probe: BehaviourProbe, *, max_new_tokens: int = 24,
             batch_size: int = 16, example_ids: Sequence | None = None) -> GenerationTask:  # fmt: skip
    """Open-ended prompts (user messages in the chat template), answered greedily and scored by ``probe``
    (`ProbeScorer`): the OOD task of CAE finding 1, for `steerlab.sweeps.sweep`."""
    scorer = ProbeScorer(backend, probe, [backend.chat(p) for p in prompts], batch_size=batch_size)
    ids = None if example_ids is None else list(example_ids)
    return GenerationTask(backend, list(prompts), scorer, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          example_ids=ids)  # fmt: skip
