"""steerlab: activation steering for language models, on TransformerLens or nnsight.

    >>> import steerlab as sl
    >>> lm = sl.load_model()                                   # SmolLM2-135M-Instruct, embedded
    >>> pairs = sl.data.load_persona("agreeableness")
    >>> vec = sl.extract(lm, pairs[:200], sites=[12])          # CAA mean difference at resid_post.12
    >>> lm.generate(lm.chat("Tell me about yourself."), edits=sl.steer(vec, 8.0))
    >>> lm = sl.load_model("meta-llama/Llama-3.1-8B-Instruct", device="cuda", dtype="bfloat16")  # any HF model
    >>> lm = sl.wrap(hf_model, tokenizer)                       # a model you loaded or built yourself

Names are imported lazily: ``import steerlab`` does not import torch, TransformerLens or nnsight.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "steerlab.models",
    "wrap": "steerlab.models",
    "Site": "steerlab.backends.base",
    "Positions": "steerlab.backends.base",
    "ALL": "steerlab.backends.base",
    "PROMPT": "steerlab.backends.base",
    "GENERATED": "steerlab.backends.base",
    "LAST_PROMPT": "steerlab.backends.base",
    "Edit": "steerlab.backends.base",
    "SteeringVector": "steerlab.vectors",
    "extract": "steerlab.extraction",
    "steer": "steerlab.interventions",
    "ChoiceTask": "steerlab.sweeps",
    "sweep": "steerlab.sweeps",
    "SteerlabError": "steerlab.errors",
}
_MODULES = {
    "data", "metrics", "stats", "plotting", "activations", "interventions", "sweeps", "vectors", "prompts", "caching",
    "agents", "pipelines", "robustness", "sae",
}  # fmt: skip

__all__ = sorted([*_EXPORTS, *_MODULES])

if TYPE_CHECKING:  # pragma: no cover
    from steerlab import (  # noqa: F401
        activations,
        agents,
        caching,
        data,
        interventions,
        metrics,
        pipelines,
        plotting,
        prompts,
        robustness,
        sae,
        stats,
        sweeps,
        vectors,
    )  # fmt: skip
    from steerlab.backends.base import ALL, GENERATED, LAST_PROMPT, PROMPT, Edit, Positions, Site  # noqa: F401
    from steerlab.errors import SteerlabError  # noqa: F401
    from steerlab.extraction import extract  # noqa: F401
    from steerlab.interventions import steer  # noqa: F401
    from steerlab.models import load_model, wrap  # noqa: F401
    from steerlab.sweeps import ChoiceTask, sweep  # noqa: F401
    from steerlab.vectors import SteeringVector  # noqa: F401


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"steerlab.{name}")
    raise AttributeError(f"module 'steerlab' has no attribute {name!r}")
