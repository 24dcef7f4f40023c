"""In- and out-of-distribution steering effects (CAE, Hao et al. 2025, arXiv 2505.03189, finding 1).

The paper extracts vectors from model-written-evaluation (MWE) items and finds they steer reliably
only on held-out items of the same form (in distribution, ID), not on prompts of other forms
about the same behaviour (out of distribution, OOD). ID is scored as in CAA: the probability of the
behaviour-matching answer. OOD prompts are open-ended, so the steered model generates text, which
is scored by a `BehaviourProbe`: a logistic-regression probe trained on ID activations (matching
vs non-matching answers) and applied to the *unsteered* model's activations over the generated
tokens (reading the steered model's own activations would read back the added vector).

Example:
    >>> probe = BehaviourProbe.fit(acts.pos[site], acts.neg[site], site)                      # doctest: +SKIP
    >>> df = ood_evaluation(lm, vec, [-1, 0, 1], test_pairs, {"open": questions}, probe)      # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.metrics import behaviour_probability, generations
from steerlab.sites import ALL, Batch, Positions, Site

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


def ood_evaluation(
    backend: Backend,
    vector,
    coeffs: Sequence[float],
    id_pairs: Sequence,
    ood_prompts: Mapping[str, Sequence[str]],
    probe: BehaviourProbe,
    *,
    positions: Positions = ALL,
    max_new_tokens: int = 40,
    batch_size: int = 8,
    progress: bool = True,
) -> pd.DataFrame:
    """Steering effect in distribution (behaviour probability) and out of it (probe on generations).

    Args:
        vector: a `SteeringVector` (or ``{Site: Tensor}``), applied at all its sites at ``positions``.
        coeffs: strengths (include 0).
        id_pairs: held-out contrast pairs of the form the vector was built from.
        ood_prompts: ``{form name: user messages}``; each is put in the chat template and answered
            greedily (``max_new_tokens``) by the steered model.
        probe: scores the unsteered model's mean activation over each generated completion.

    Returns:
        Tidy DataFrame ``form, coeff, example_id, metric, value, prompt, completion``: form ``"id"``
        has metrics ``p_behaviour`` and ``logit_diff``; each OOD form has ``probe_p`` and
        ``probe_logit`` (the probe's probability and log-odds, with the prompt and completion).
    """
    if not ood_prompts:
        raise SteerlabError("no OOD prompt sets were given; pass e.g. {'open-ended': questions}")
    rows: list[pd.DataFrame] = []
    jobs = [(c, form) for c in coeffs for form in ["id", *ood_prompts]]
    for coeff, form in tqdm(jobs, desc="id/ood", disable=not progress):
        edits = steer(vector, coeff, positions=positions) if coeff else []
        if form == "id":
            df = behaviour_probability(backend, id_pairs, edits=edits, batch_size=batch_size)
            df = df.melt(id_vars="example_id", var_name="metric", value_name="value")
        else:
            prompts = list(ood_prompts[form])
            df = generations(backend, prompts, edits=edits, max_new_tokens=max_new_tokens, batch_size=batch_size)
            formatted = [backend.chat(p) for p in prompts]
            feats = completion_features(backend, formatted, df.completion.tolist(), probe.site, batch_size=batch_size)
            df = pd.concat([df.assign(metric="probe_p", value=probe.score(feats)),
                            df.assign(metric="probe_logit", value=probe.logit(feats))])  # fmt: skip
        rows.append(df.assign(form=form, coeff=float(coeff)))
    out = pd.concat(rows, ignore_index=True)
    cols = ["form", "coeff", "example_id", "metric", "value", "prompt", "completion"]
    return out.reindex(columns=cols)


def id_ood_effects(
    df: pd.DataFrame, *, ood_metric: str = "probe_logit", low: float | None = None, high: float | None = None
) -> pd.DataFrame:
    """Per form: the paired effect ``mean(value at high - value at low)`` with a 95% t-interval, and the
    standardised effect ``dz = mean / sd`` of the paired differences (with the interval divided by the
    same sd), which puts ID (``p_behaviour``) and OOD (``ood_metric``) effects on one unit-free scale.

    ``low``/``high`` default to the smallest and largest strengths in ``df``.
    """
    from steerlab.stats import effect_ci

    low = float(df.coeff.min()) if low is None else low
    high = float(df.coeff.max()) if high is None else high
    keep = df[((df.form == "id") & (df.metric == "p_behaviour")) | ((df.form != "id") & (df.metric == ood_metric))]
    if keep.empty:
        raise SteerlabError(f"no rows with metric p_behaviour (id) or {ood_metric!r} (ood); metrics: {set(df.metric)}")
    out = effect_ci(keep.drop(columns="metric"), low=low, high=high, by=("form",))
    lost = set(keep.form) - set(out.form)
    if lost:
        raise SteerlabError(f"forms {sorted(lost)} have no examples at both strengths {low} and {high}")
    sd = out.sd.where(out.sd > 0)
    out.insert(1, "metric", out.form.map(lambda f: "p_behaviour" if f == "id" else ood_metric))
    out = out.assign(dz=out.effect / sd, dz_lo=out.lo / sd, dz_hi=out.hi / sd)
    return out[["form", "metric", "effect", "lo", "hi", "dz", "dz_lo", "dz_hi", "n"]]
