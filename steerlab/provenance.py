"""What a steering vector is and where it came from: `Provenance`, dataset hashes, model fingerprints.

A vector must say enough to be applied correctly elsewhere (by another library, on another machine):

- the **model**: name, width, depth, and fingerprints of its config (`config_hash`) and tokenizer
  (`tokenizer_hash`), so a vector applied to another model of the same width is caught;
- the **operation** (``add``: ``h + alpha v``; ``ablate``; ``clamp``) and the **site**: `hf_site` spells a
  steerlab `Site` in Hugging Face terms (``resid_post.L`` is the output of decoder layer ``L``,
  ``hidden_states[L + 1]``);
- the **basis**: ``weight_processing == "none"`` means raw Hugging Face activations (TransformerLens's
  LayerNorm folding and centring off), the only basis steerlab writes;
- the **scale**: the typical token norm at each site when it was made (`steerlab.scale.typical_norm`)
  and the fraction of it the vector is meant to add at strength 1, when known;
- its **orientation evidence** (a free-form dict: e.g. the validation effect that fixed its sign).

Every field is type-checked when a `Provenance` is built or read, with messages that name the field,
the type found and the file. The JSON layout is documented in docs/vector-format.md.

Example:
    >>> Provenance(model="SmolLM2-135M", d_model=576, method="caa", n_layers=30).operation
    'add'
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import math
import numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from steerlab.errors import SteerlabError
from steerlab.sites import Site

logger = logging.getLogger(__name__)

OPERATIONS = ("add", "ablate", "clamp")
"""How a vector is meant to be applied (`steerlab.interventions.steer`'s modes)."""

FINGERPRINT_VERSION = "v1"
"""Prefix of `config_hash` / `tokenizer_hash` values; bumped if what is hashed ever changes."""

CONFIG_KEYS = (
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings", "hidden_act",
    "sliding_window", "n_embd", "n_layer", "n_head", "n_inner", "n_positions",
)  # fmt: skip
"""Config entries `config_hash` covers: the architecture's shape, not dtype, device, attention kernel or
the transformers version (which rename other keys), so one model hashes the same everywhere."""


def _library_version() -> str:
    try:
        return importlib.metadata.version("steerlab")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _now() -> str:  # ISO 8601, UTC
    return datetime.now(UTC).isoformat(timespec="seconds")


# field name -> (what the message calls the type, check-and-convert); None passes for optional fields
def _text(v: Any) -> str | None:
    return os.fspath(v) if isinstance(v, str | os.PathLike) else None


def _count(v: Any) -> int | None:
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 else None


def _finite(v: Any) -> float | None:
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _norms(v: Any) -> dict[str, float] | None:
    if not isinstance(v, Mapping):
        return None
    out = {str(k): _finite(x) for k, x in v.items()}
    return out if all(x is not None and x > 0 for x in out.values()) else None


def _operation(v: Any) -> str | None:
    return v if v in OPERATIONS else None


def _mapping(v: Any) -> dict | None:
    return dict(v) if isinstance(v, Mapping) else None


_FIELDS = {
    "model": ("a string", _text, False), "d_model": ("a positive int", _count, False),
    "method": ("a string", _text, False), "n_layers": ("a positive int", _count, True),
    "model_type": ("a string", _text, True), "backend": ("a string", _text, True),
    "weight_processing": ("a string", _text, False), "dataset": ("a string", _text, True),
    "dataset_hash": ("a string", _text, True), "read_position": ("a string", _text, True),
    "n_pairs": ("a positive int", _count, True), "steerlab_version": ("a string", _text, False),
    "created": ("a string", _text, False), "extra": ("a dict", _mapping, False),
    "operation": (f"one of {', '.join(OPERATIONS)}", _operation, False),
    "typical_norm": ("a dict of site -> positive finite number", _norms, True),
    "fraction": ("a finite number", _finite, True), "orientation": ("a dict", _mapping, False),
    "config_hash": ("a string", _text, True), "tokenizer_hash": ("a string", _text, True),
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a vector came from and how it is meant to be applied: enough to refuse the wrong model.

    The fields after ``extra`` came later than the others and are optional: files written without them
    load with their defaults.

    Example:
        >>> Provenance(model="SmolLM2-135M", d_model=576, method="caa", n_layers=30).method
        'caa'
    """

    model: str  # model name as the backend reports it (`backend.name`)
    d_model: int  # residual-stream width; every direction has this length
    method: str  # e.g. "caa"; combinations read like "(2*caa - pca-diff)"
    n_layers: int | None = None  # model depth; lets negative site layers be resolved
    model_type: str | None = None  # HF config.model_type, e.g. "llama"; default GGUF model_hint
    backend: str | None = None  # "tl" or "nnsight"
    weight_processing: str = "none"  # how weights differed from the checkpoint ("none": raw HF activations)
    dataset: str | None = None  # dataset name
    dataset_hash: str | None = None  # `dataset_hash(records)` of the records used
    read_position: str | None = None  # where activations were read, e.g. "last_prompt"
    n_pairs: int | None = None  # number of contrast pairs
    steerlab_version: str = field(default_factory=_library_version)
    created: str = field(default_factory=_now)  # ISO 8601, UTC
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable method details
    operation: str = "add"  # how to apply it: "add" (h + alpha v), "ablate" or "clamp"
    typical_norm: dict[str, float] | None = None  # site -> typical token norm there (`scale.typical_norm`)
    fraction: float | None = None  # strength 1 adds this fraction of typical_norm (None: raw scale)
    orientation: dict[str, Any] = field(default_factory=dict)  # evidence for the sign (filled by the protocol)
    config_hash: str | None = None  # `config_hash` of the model it was made on
    tokenizer_hash: str | None = None  # `tokenizer_hash` of that model's tokenizer

    def __post_init__(self) -> None:
        for name, (expected, convert, optional) in _FIELDS.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            clean = convert(value)
            if clean is None:
                raise SteerlabError(
                    f"provenance field {name!r} must be {expected}{' or null' if optional else ''}, got "
                    f"{type(value).__name__} {value!r:.60}; fix the value (or the JSON file it was read from)"
                )
            object.__setattr__(self, name, clean)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str | None = None) -> Provenance:
        """Inverse of `to_dict`; unknown keys are ignored with a warning, missing optional ones filled.

        ``where`` (e.g. the JSON file's path) prefixes every error message.
        """
        at = f"{where}: " if where else ""
        if not isinstance(data, Mapping):
            raise SteerlabError(f"{at}provenance must be a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            logger.warning("%signoring unknown provenance keys %s (written by a newer steerlab?)", at, unknown)
        missing = [k for k in ("model", "d_model", "method") if k not in data]
        if missing:
            raise SteerlabError(f"{at}provenance is missing {missing}; model, d_model and method are required")
        known = {"steerlab_version": "0+unknown", "created": "unknown"}  # not "now": that would be false
        known.update({k: v for k, v in data.items() if k in names})
        try:
            return cls(**known)
        except SteerlabError as exc:
            raise SteerlabError(f"{at}{exc}") from None


# ---------------------------------------------------------------------------------------- hashes


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "__dict__"):  # duck-typed records, e.g. SimpleNamespace(prompt=..., positive=...)
        return vars(obj)
    raise SteerlabError(f"dataset_hash cannot hash a {type(obj).__name__}; pass dataclasses, dicts, lists or strings")


def _sha(obj: Any) -> str:
    text = json.dumps(obj, default=_jsonable, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def dataset_hash(records: Iterable[Any] | str) -> str:
    """First 16 hex chars of the sha256 of a canonical JSON of ``records`` (order matters).

    Example:
        >>> dataset_hash(["a", "b"]) == dataset_hash(("a", "b"))
        True
    """
    return _sha([records] if isinstance(records, str) else list(records))


def config_hash(config: Any) -> str:
    """Fingerprint of a Hugging Face config: the `CONFIG_KEYS` it has (of its ``text_config`` if nested).

    Example:
        >>> from types import SimpleNamespace
        >>> config_hash(SimpleNamespace(hidden_size=8)) == config_hash(SimpleNamespace(hidden_size=8, dtype="bf16"))
        True
    """
    config = getattr(config, "text_config", None) or config
    values = {k: getattr(config, k) for k in CONFIG_KEYS if getattr(config, k, None) is not None}
    return f"{FINGERPRINT_VERSION}:{_sha(values)}"


def tokenizer_hash(tokenizer: Any) -> str:
    """Fingerprint of a tokenizer: its vocabulary (token -> id) and its special tokens."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    special = {k: getattr(tokenizer, k, None) for k in ("bos_token", "eos_token", "unk_token")}
    return f"{FINGERPRINT_VERSION}:{_sha([vocab, special])}"


def model_fingerprint(backend: Any) -> dict[str, str | None]:
    """``{"config_hash", "tokenizer_hash"}`` of a loaded model (None where it cannot be read); cached on it."""
    cached = getattr(backend, "_steerlab_fingerprint", None)
    if cached is not None:
        return cached
    config = getattr(backend, "hf_config", None) or getattr(getattr(backend, "hf_model", None), "config", None)
    tokenizer = getattr(backend, "tokenizer", None)
    found = {
        "config_hash": config_hash(config) if config is not None else None,
        "tokenizer_hash": tokenizer_hash(tokenizer) if hasattr(tokenizer, "get_vocab") else None,
    }
    try:
        backend._steerlab_fingerprint = found
    except AttributeError:  # an object that takes no new attributes: recompute next time
        pass
    return found


def model_mismatch(provenance: Provenance, backend: Any) -> list[str]:
    """How ``backend``'s model differs from the one ``provenance`` names (empty if it is the same).

    Compares the name (its last path part, so a folder moved elsewhere still matches) and, where both
    sides know them, the config and tokenizer fingerprints.
    """
    found = []
    name = str(getattr(backend, "name", ""))
    if os.path.basename(name.rstrip("/")) != os.path.basename(provenance.model.rstrip("/")):
        found.append(f"name {provenance.model!r} vs {name!r}")
    fingerprint = model_fingerprint(backend)
    for key in ("config_hash", "tokenizer_hash"):
        mine, theirs = getattr(provenance, key), fingerprint.get(key)
        if mine and theirs and mine != theirs:
            found.append(f"{key} {mine} vs {theirs}")
    return found


# ---------------------------------------------------------------------------------------- sites


def hf_site(site: Site, n_layers: int | None = None) -> str:
    """Where ``site`` is in a Hugging Face decoder (``model.layers[L]``), for applying a vector elsewhere.

    Example:
        >>> hf_site(Site(12, "resid_post"))
        'hidden_states[13]: output of model.layers[12]'
    """
    layer = site.layer + n_layers if site.layer < 0 and n_layers is not None else site.layer
    if layer < 0:  # counted from the end, depth unknown: no hidden_states index
        return f"{site.kind} of model.layers[{layer}] (counted from the end)"
    last = n_layers is not None and layer == n_layers - 1
    where = {
        "resid_pre": f"hidden_states[{layer}]: input of model.layers[{layer}]",
        "resid_post": f"hidden_states[{layer + 1}]: output of model.layers[{layer}]"
        + (" (HF's last hidden_states entry has the final norm applied; this is before it)" if last else ""),
        "attn_out": f"output of model.layers[{layer}]'s attention block, before the residual add",
        "mlp_in": f"input of model.layers[{layer}]'s MLP, after its pre-MLP norm",
        "mlp_out": f"output of model.layers[{layer}]'s MLP, before the residual add",
    }
    return where[site.kind]
