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
    "Site": "steerlab.sites",
    "Positions": "steerlab.sites",
    "ALL": "steerlab.sites",
    "PROMPT": "steerlab.sites",
    "GENERATED": "steerlab.sites",
    "LAST_PROMPT": "steerlab.sites",
    "AFTER_INSTRUCTION": "steerlab.sites",
    "Edit": "steerlab.sites",
    "SteeringVector": "steerlab.vectors",
    "extract": "steerlab.extraction",
    "steer": "steerlab.interventions",
    "ChoiceTask": "steerlab.tasks",
    "GenerationTask": "steerlab.tasks",
    "sweep": "steerlab.sweeps",
    "orient": "steerlab.orientation",
    "evaluate_vector": "steerlab.protocol",
    "SteerlabError": "steerlab.errors",
}
_MODULES = {
    "data", "metrics", "stats", "plotting", "activations", "interventions", "sweeps", "vectors", "prompts", "caching",
    "agents", "pipelines", "robustness", "sae", "sites", "tasks", "positions", "effects", "orientation", "protocol",
    "scale", "controls", "power", "verdicts", "scorers", "memory",
}  # fmt: skip

__all__ = sorted([*_EXPORTS, *_MODULES])

if TYPE_CHECKING:  # pragma: no cover
    from steerlab import (  # noqa: F401
        activations,
        agents,
        caching,
        controls,
        data,
        effects,
        interventions,
        memory,
        metrics,
        orientation,
        pipelines,
        plotting,
        positions,
        power,
        prompts,
        protocol,
        robustness,
        sae,
        scale,
        scorers,
        sites,
        stats,
        sweeps,
        tasks,
        vectors,
        verdicts,
    )  # fmt: skip
    from steerlab.errors import SteerlabError  # noqa: F401
    from steerlab.extraction import extract  # noqa: F401
    from steerlab.interventions import steer  # noqa: F401
    from steerlab.models import load_model, wrap  # noqa: F401
    from steerlab.orientation import orient  # noqa: F401
    from steerlab.protocol import evaluate_vector  # noqa: F401
    from steerlab.sites import AFTER_INSTRUCTION, ALL, GENERATED, LAST_PROMPT, PROMPT, Edit, Positions, Site  # noqa: F401
    from steerlab.sweeps import sweep  # noqa: F401
    from steerlab.tasks import ChoiceTask, GenerationTask  # noqa: F401
    from steerlab.vectors import SteeringVector  # noqa: F401


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _MODULES:
        return importlib.import_module(f"steerlab.{name}")
    raise AttributeError(f"module 'steerlab' has no attribute {name!r}")
