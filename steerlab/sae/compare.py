"""Compare steering methods on the same axes: behaviour effect and perplexity cost across strengths.

A method is a function ``make(strength, positions) -> list[Edit]``, so dense vectors, single SAE
latents, sparse reconstructions and latent clamping (`steerlab.sae.steer`) are compared alike, as
AxBench (Wu et al. 2025) compares steering methods on concept score against fluency.

- Behaviour: a `ChoiceTask` evaluated with the edits at ``behaviour_positions`` (default: the last
  prompt token, where the answer is predicted, so each prompt's key/value cache is reused).
- Cost: perplexity of held-out raw text with the same edit at *every* position, i.e. the fluency price
  of applying the edit throughout a generation.

Output: the tidy columns of `steerlab.sweeps.sweep` (``method, seed, layer, site, coeff, metric, value,
example_id``); perplexity rows have ``metric="perplexity"`` and ``example_id="all"``.

Example:
    >>> makers = {"caa": lambda s, pos: steer(vec, s, positions=pos),                       # doctest: +SKIP
    ...           "clamp": lambda s, pos: [clamp_latent(sae, site, 123, s * norm, pos)]}
    >>> df = compare_methods(lm, makers, task, strengths=[-1, 0, 1], texts=wiki, site=site)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.metrics import perplexity_on
from steerlab.sites import ALL, LAST_PROMPT, Edit, Positions, Site
from steerlab.sweeps import COLUMNS
from steerlab.tasks import ChoiceTask

EditMaker = Callable[[float, Positions], Sequence[Edit]]


def compare_methods(
    backend: Backend,
    methods: Mapping[str, EditMaker],
    task: ChoiceTask,
    *,
    strengths: Sequence[float],
    texts: Sequence[str],
    site: Site,
    behaviour_positions: Positions = LAST_PROMPT,
    max_tokens: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """Behaviour metrics (per test item) and perplexity (per cell) for every method x strength.

    Strength 0 is the unsteered model, computed once and reported for every method.
    """
    if not methods:
        raise SteerlabError("no methods to compare; pass {'name': lambda strength, positions: edits}")
    if not texts:
        raise SteerlabError("no texts for the perplexity cost; pass e.g. load_text('wikitext2', 'valid')[:16]")
    reuse = behaviour_positions.kind == "last_prompt"
    base: pd.DataFrame | None = None
    frames = []
    cells = [(m, float(s)) for m in methods for s in strengths]
    for method, strength in tqdm(cells, desc="methods x strengths", disable=not progress):
        if strength == 0.0 and base is not None:
            df = base
        else:
            edits = list(methods[method](strength, behaviour_positions)) if strength else []
            df = task.evaluate(edits, reuse_prefix=reuse)
            ppl_edits = list(methods[method](strength, ALL)) if strength else None
            ppl = perplexity_on(backend, list(texts), edits=ppl_edits, max_tokens=max_tokens)
            df = pd.concat([df, pd.DataFrame([{"example_id": "all", "metric": "perplexity", "value": ppl}])])
            if strength == 0.0:
                base = df
        frames.append(df.assign(method=method, seed=0, layer=site.layer, site=site.kind, coeff=strength))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def effect_table(df: pd.DataFrame, metric: str = "p_behaviour") -> pd.DataFrame:
    """Per method and strength ``s > 0``: mean ``metric`` at ``+s`` minus at ``-s`` with a paired 95%
    t-interval over items, and perplexity at ``+s`` and ``-s``. Columns ``method, strength, effect, lo,
    hi, ppl_plus, ppl_minus``."""
    from steerlab.stats import effect_ci

    d = df[df.metric == metric]
    ppl = df[df.metric == "perplexity"].groupby(["method", "coeff"]).value.mean()
    strengths = sorted(c for c in d.coeff.unique() if c > 0 and -c in d.coeff.values)
    if not strengths:
        raise SteerlabError(f"effect_table needs strengths +s and -s; {metric!r} rows have {sorted(d.coeff.unique())}")
    t = pd.concat([effect_ci(d[d.coeff.isin([-s, s])], low=-s, high=s, by=("method",)).assign(strength=s)
                   for s in strengths]).sort_values(["method", "strength"], ignore_index=True)  # fmt: skip
    t["ppl_plus"] = [ppl.get((m, s)) for m, s in zip(t.method, t.strength, strict=True)]
    t["ppl_minus"] = [ppl.get((m, -s)) for m, s in zip(t.method, t.strength, strict=True)]
    return t[["method", "strength", "effect", "lo", "hi", "ppl_plus", "ppl_minus"]]
