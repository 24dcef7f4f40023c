"""One SAAS vector from a data file, with agents: the work behind ``steerlab saas`` (SAAS, "Instance-Semantic
Attribution for Activation Steering in Large Language Models", anonymous ACL submission).

    steerlab saas --data evals.jsonl --behavior "agreeableness: kind, trusting" --agent local --out runs/x

Steps: read the pairs (persona or A/B format), get sub-behaviours (a YAML file, or Agent-1 + Agent-2 on
the chosen chat agent), score every instance (Agent-3: the chat agent, or the embedding scorer), read
the activations at one layer, apply eligibility, weight ``softmax(s / t)`` with ``t = tau x std(s)``,
and write the outputs (see `build_saas_vector`). Every agent call goes through a JSON cache.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

AGENTS = ("local", "openai", "embedding")


def _chat_agent(kind: str, backend: Any):
    from steerlab.agents import LocalAgent, OpenAIAgent

    return OpenAIAgent() if kind == "openai" else LocalAgent(backend)


def build_saas_vector(
    data: str | Path,
    behavior: str,
    agent: str,
    out: str | Path,
    *,
    subbehaviours: str | Path | None = None,
    layer: int = 12,
    tau: float = 1.0,
    n_train: int | None = None,
    cache: str | Path | None = None,
    model: str | None = None,
    backend: str = "nnsight",
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> dict[str, Any]:
    """Build a SAAS vector and write to ``out``: ``eligibility.csv`` (per instance), ``instances.csv`` (scores,
    ``s_i``, weights), ``subbehaviours.yaml``, ``attempts.csv`` (every agent attempt), ``vector.safetensors`` +
    ``vector.json`` (raw scale, at ``resid_post.<layer>``) and ``summary.json`` (returned).

    ``agent``: ``local`` (the loaded model answers Agents 1-3), ``openai`` (an OpenAI-compatible server from
    ``STEERLAB_AGENT_BASE_URL`` / ``STEERLAB_AGENT_MODEL`` / ``STEERLAB_AGENT_API_KEY``), or ``embedding``
    (Agent-3 by MiniLM similarity; Agents 1-2 on the local model unless ``subbehaviours`` is given).
    """
    from steerlab import agents as A
    from steerlab.activations import collect_pairs
    from steerlab.data import load_persona_file, sample
    from steerlab.extraction import provenance
    from steerlab.methods import saas as S
    from steerlab.models import load_model
    from steerlab.vectors import SteeringVector

    if agent not in AGENTS:
        raise SteerlabError(f"unknown agent {agent!r}; valid: {', '.join(AGENTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = load_persona_file(data)
    if n_train is not None and n_train < len(pairs):
        pairs = sample(pairs, n_train, seed)
    if len(pairs) < 4:
        raise SteerlabError(f"{data} has {len(pairs)} usable pairs; SAAS needs at least 4 (eligibility cross-fits)")
    lm = load_model(model, backend=backend)
    site = lm.site(layer)
    chat = A.CachedAgent(_chat_agent(agent, lm), cache or out / "agent_cache")
    log: list[dict] = []
    if subbehaviours is not None:
        subs = A.load_subbehaviours(subbehaviours)
    else:
        rng = np.random.default_rng(seed)
        examples = [A.instance_text(pairs[i]) for i in rng.choice(len(pairs), min(5, len(pairs)), replace=False)]
        subs = A.decompose(chat, behavior, examples, log=log)
        subs = A.rate_contributions(chat, subs, log=log) if subs is not None else None
        if subs is None or not subs.kept:
            A.attempts_frame(log).to_csv(out / "attempts.csv", index=False)
            raise SteerlabError(
                f"the {chat.name} agent gave no usable sub-behaviours after retries (its answers are in "
                f"{out / 'attempts.csv'}); write a sub-behaviour YAML file and pass --subbehaviours FILE"
            )
    A.save_subbehaviours(subs, out / "subbehaviours.yaml")
    if agent == "embedding":
        scores = A.score_instances(A.EmbeddingScorer(), subs, [A.instance_text(p, compact=True) for p in pairs])
        scorer_name = "embedding:all-MiniLM-L6-v2"
    else:
        scores = A.score_instances(chat, subs, [A.instance_text(p) for p in pairs], log=log)
        scorer_name = chat.name
    A.attempts_frame(log).to_csv(out / "attempts.csv", index=False)

    acts = collect_pairs(lm, pairs, [site], batch_size=batch_size, progress=progress)
    pos, neg = acts.pos[site], acts.neg[site]
    report = S.eligibility(pos, neg, folds=min(5, len(pairs) // 2), seed=seed)
    elig = report.eligible.to_numpy()
    s = S.aggregate_scores(scores, subs.kept_contributions)
    t = tau * max(float(s[elig].std()), 1e-12) if elig.any() else 1.0
    w = S.saas_weights(s, elig, t)
    vector = S.weighted_vector(S.local_vectors(pos, neg), w)

    report.to_csv(out / "eligibility.csv", index=False)
    inst = pd.DataFrame(scores, columns=[f"score:{x.name}" for x in subs.kept])
    inst.insert(0, "instance", range(len(pairs)))
    inst.insert(1, "prompt", [p.prompt for p in pairs])
    inst.insert(2, "positive", [p.positive for p in pairs])
    inst["s"], inst["eligible"], inst["weight"] = s, elig, w.numpy()
    inst.to_csv(out / "instances.csv", index=False)
    summary = {
        "data": str(data), "behavior": behavior, "n_pairs": len(pairs), "layer": site.layer,
        "subbehaviours_source": subs.source, "agent": chat.name, "agent3": scorer_name,
        "agent_calls": {"asked": chat.misses, "cached": chat.hits},
        "parse_failures": int(sum(not r["ok"] for r in log)), "eligible_share": float(elig.mean()),
        "separable_share": float(report.separable.mean()), "consistent_share": float(report.consistent.mean()),
        "tau": tau, "t": t, "effective_n": float(1.0 / (w**2).sum()), "vector_norm": float(vector.norm()),
        "resid_norm": float(acts.mean_norm()[site]),
    }  # fmt: skip
    keep = ("subbehaviours_source", "agent", "agent3", "tau", "eligible_share")
    prov = provenance(lm, "saas", pairs, dataset=str(data), read="completion_last", **{k: summary[k] for k in keep})
    SteeringVector({site: vector}, prov).save(out / "vector")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
