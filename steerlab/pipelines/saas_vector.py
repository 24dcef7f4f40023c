"""One SAAS vector from contrast pairs, with agents: the work behind ``steerlab saas`` (SAAS, "Instance-Semantic
Attribution for Activation Steering in Large Language Models", anonymous ACL submission).

`compute_saas_vector` gets sub-behaviours (a YAML file, or Agent-1 + Agent-2 on the chosen chat agent),
scores every instance (Agent-3: the chat agent, or the embedding scorer), reads the activations at one
layer, applies eligibility and weights the local vectors by ``softmax(s / t)`` with ``t = tau x std(s)``;
it returns the vector with the frames that explain it. `write_saas_vector` writes them to a folder, and
`read_pairs` reads a data file as the CLI does.

Example:
    >>> lm = load_model()                                                                  # doctest: +SKIP
    >>> result = compute_saas_vector(lm, load_persona("agreeableness")[:40], "agreeableness", "embedding",
    ...                              subbehaviours="data/subbehaviours/agreeableness.yaml")  # doctest: +SKIP
    >>> result.instances[["s", "eligible", "weight"]].head()                               # doctest: +SKIP
    >>> write_saas_vector(result, "runs/saas_agreeableness")                               # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from steerlab.errors import SteerlabError

if TYPE_CHECKING:
    from steerlab.agents import SubBehaviourSet
    from steerlab.backends.base import Backend
    from steerlab.vectors import SteeringVector

logger = logging.getLogger(__name__)

AGENTS = ("local", "openai", "embedding")
MIN_PAIRS = 4  # the eligibility cross-fit needs two folds of two pairs


@dataclass
class SaasVectorResult:
    """A SAAS vector and the frames that explain it (what `write_saas_vector` writes)."""

    vector: SteeringVector  # raw scale (a weighted mean of pos - neg), at resid_post.<layer>
    subbehaviours: SubBehaviourSet  # from the YAML file, or from Agents 1-2
    eligibility: pd.DataFrame  # one row per pair: separable, consistent, eligible (`methods.saas.eligibility`)
    instances: pd.DataFrame  # one row per pair: instance, prompt, positive, score:<name> per kept sub-behaviour,
    #                          s (the aggregated score), eligible, weight (sums to 1 over eligible pairs)
    attempts: pd.DataFrame  # every agent attempt: role, item, attempt, ok, error, answer, agent
    summary: dict[str, Any]  # counts, shares, tau and t, effective n, norms


def read_pairs(data: str | os.PathLike, n_train: int | None = None, seed: int = 0) -> list:
    """The contrast pairs of a persona or A/B data file (a seeded sample of ``n_train``), at least four."""
    from steerlab.data import load_persona_file, sample

    pairs = load_persona_file(data)
    if n_train is not None and n_train < len(pairs):
        pairs = sample(pairs, n_train, seed)
    _check_pairs(pairs, str(data))
    return pairs


def _check_pairs(pairs: Sequence, dataset: str | None) -> None:
    if len(pairs) < MIN_PAIRS:
        raise SteerlabError(
            f"{dataset or 'the data'} has {len(pairs)} usable pairs; SAAS needs at least {MIN_PAIRS} "
            "(the eligibility test cross-fits on two folds)"
        )


def _chat_agent(kind: str, backend: Backend, cache: str | os.PathLike | None):
    from steerlab.agents import CachedAgent, LocalAgent, OpenAIAgent

    agent = OpenAIAgent() if kind == "openai" else LocalAgent(backend)
    return agent if cache is None else CachedAgent(agent, cache)


def compute_saas_vector(
    backend: Backend,
    pairs: Sequence,
    behavior: str,
    agent: str,
    *,
    subbehaviours: str | os.PathLike | SubBehaviourSet | None = None,
    layer: int = 12,
    tau: float = 1.0,
    cache: str | os.PathLike | None = None,
    dataset: str | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> SaasVectorResult:
    """Build one SAAS vector at ``resid_post.<layer>`` from ``pairs``; nothing is written.

    Args:
        backend: The model whose activations are read (and which answers as the ``local`` agent).
        pairs: Contrast pairs (`steerlab.data.ContrastPair`), at least four.
        behavior: A description of the target behaviour, for Agent-1.
        agent: ``local`` (the loaded model answers Agents 1-3), ``openai`` (an OpenAI-compatible server from
            ``STEERLAB_AGENT_BASE_URL`` / ``STEERLAB_AGENT_MODEL`` / ``STEERLAB_AGENT_API_KEY``), or
            ``embedding`` (Agent-3 by MiniLM similarity; Agents 1-2 on the local model unless
            ``subbehaviours`` is given).
        subbehaviours: A sub-behaviour YAML file (or a loaded set) used instead of Agents 1-2.
        layer: Layer whose resid_post is read; negative counts from the end.
        tau: Softmax temperature in units of the standard deviation of the eligible instances' scores.
        cache: Folder of the JSON agent-call cache; ``None``: no cache.
        dataset: The data's name, recorded in the summary and the vector's provenance.
        seed: Seeds the choice of Agent-1's examples and the eligibility folds.

    Raises:
        SteerlabError: Fewer than four pairs, an unknown agent, or no usable sub-behaviours from Agents 1-2.
    """
    from steerlab import agents as A
    from steerlab.activations import collect_pairs
    from steerlab.extraction import provenance
    from steerlab.methods import saas as S
    from steerlab.vectors import SteeringVector

    if agent not in AGENTS:
        raise SteerlabError(f"unknown agent {agent!r}; valid: {', '.join(AGENTS)}")
    pairs = list(pairs)
    _check_pairs(pairs, dataset)
    site = backend.site(layer)
    chat = _chat_agent(agent, backend, cache)
    log: list[dict] = []
    if isinstance(subbehaviours, A.SubBehaviourSet):
        subs = subbehaviours
    elif subbehaviours is not None:
        subs = A.load_subbehaviours(subbehaviours)
    else:
        rng = np.random.default_rng(seed)
        examples = [A.instance_text(pairs[i]) for i in rng.choice(len(pairs), min(5, len(pairs)), replace=False)]
        subs = A.decompose(chat, behavior, examples, log=log)
        subs = A.rate_contributions(chat, subs, log=log) if subs is not None else None
        if subs is None or not subs.kept:
            last = next((r["error"] for r in reversed(log) if r["error"]), "no sub-behaviour kept")
            where = f"; its answers are in the agent cache {cache}" if cache is not None else ""
            raise SteerlabError(
                f"the {chat.name} agent gave no usable sub-behaviours after {len(log)} attempts (last: {last}){where}; "
                "write a sub-behaviour YAML file and pass it as subbehaviours= (CLI: --subbehaviours FILE)"
            )
    if agent == "embedding":
        scorer = A.EmbeddingScorer()
        scores = A.score_instances(scorer, subs, [A.instance_text(p, compact=True) for p in pairs])
    else:
        scorer = chat
        scores = A.score_instances(chat, subs, [A.instance_text(p) for p in pairs], log=log)

    acts = collect_pairs(backend, pairs, [site], batch_size=batch_size, progress=progress)
    pos, neg = acts.pos[site], acts.neg[site]
    report = S.eligibility(pos, neg, folds=min(5, len(pairs) // 2), seed=seed)
    elig = report.eligible.to_numpy()
    s = S.aggregate_scores(scores, subs.kept_contributions)
    t = tau * max(float(s[elig].std()), 1e-12) if elig.any() else 1.0
    w = S.saas_weights(s, elig, t)
    vector = S.weighted_vector(S.local_vectors(pos, neg), w)

    instances = pd.DataFrame(scores, columns=[f"score:{x.name}" for x in subs.kept])
    instances.insert(0, "instance", range(len(pairs)))
    instances.insert(1, "prompt", [p.prompt for p in pairs])
    instances.insert(2, "positive", [p.positive for p in pairs])
    instances["s"], instances["eligible"], instances["weight"] = s, elig, w.numpy()
    used_chat = subbehaviours is None or agent != "embedding"  # Agents 1-2 decompose, or the chat agent scores
    chat_calls = {"asked": chat.misses, "cached": chat.hits} if used_chat and hasattr(chat, "misses") else None
    summary = {
        "data": dataset, "behavior": behavior, "n_pairs": len(pairs), "layer": site.layer,
        "subbehaviours_source": subs.source, "agent": chat.name if used_chat else None, "agent3": scorer.name,
        "agent_calls": chat_calls,
        "parse_failures": int(sum(not r["ok"] for r in log)), "eligible_share": float(elig.mean()),
        "separable_share": float(report.separable.mean()), "consistent_share": float(report.consistent.mean()),
        "tau": tau, "t": t, "effective_n": float(1.0 / (w**2).sum()), "vector_norm": float(vector.norm()),
        "resid_norm": float(acts.mean_norm()[site]),
    }  # fmt: skip
    keep = ("subbehaviours_source", "agent", "agent3", "tau", "eligible_share")
    prov = provenance(backend, "saas", pairs, dataset=dataset, read="completion_last", **{k: summary[k] for k in keep})
    return SaasVectorResult(SteeringVector({site: vector}, prov), subs, report, instances, A.attempts_frame(log),
                            summary)  # fmt: skip


def write_saas_vector(result: SaasVectorResult, out: str | os.PathLike) -> dict[str, Path]:
    """Write a `compute_saas_vector` result to the folder ``out`` (created if missing).

    Files: ``eligibility.csv`` and ``instances.csv`` (one row per pair), ``subbehaviours.yaml``,
    ``attempts.csv`` (every agent attempt), ``vector.safetensors`` + ``vector.json`` and ``summary.json``.

    Returns:
        The paths written, by file name.
    """
    from steerlab.agents import save_subbehaviours

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("eligibility.csv", "instances.csv", "attempts.csv", "summary.json")}
    result.eligibility.to_csv(paths["eligibility.csv"], index=False)
    result.instances.to_csv(paths["instances.csv"], index=False)
    result.attempts.to_csv(paths["attempts.csv"], index=False)
    paths["summary.json"].write_text(json.dumps(result.summary, indent=2) + "\n")
    paths["subbehaviours.yaml"] = save_subbehaviours(result.subbehaviours, out / "subbehaviours.yaml")
    result.vector.save(out / "vector")
    paths.update({name: out / name for name in ("vector.safetensors", "vector.json")})
    return paths
