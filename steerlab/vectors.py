"""Steering vectors: one direction per `Site`, with the provenance needed to reuse them safely.

A `SteeringVector` stores 1-D float32 CPU directions keyed by `Site` and a `Provenance` (model and its
config/tokenizer fingerprints, backend, weight processing, method, dataset hash, operation, scale,
library version; see `steerlab.provenance`). Vectors combine like repeng's (``2 * honesty - sycophancy``),
save to safetensors + JSON (never pickle; layout in docs/vector-format.md), and export to llama.cpp's
control-vector GGUF. Loading or applying a vector on a model other than the one it was made on warns
(``strict=True``: refuses).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from steerlab.errors import ERRORS_DOC, SteerlabError
from steerlab.provenance import (
    Provenance,
    _library_version,
    _now,
    dataset_hash,
    hf_site,
    model_mismatch,
)
from steerlab.sites import Site

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "Provenance", "SteeringVector", "dataset_hash"]

FORMAT_VERSION = 1
"""Version of the safetensors + JSON layout written by `SteeringVector.save` (docs/vector-format.md).
Fields added since are optional, so files stay readable in both directions."""


def _paths(path: str | Path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _read_meta(json_path: Path) -> dict[str, Any]:
    """The JSON of a saved vector, with errors that name the file."""
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SteerlabError(f"{json_path} is not a text file; it should be the JSON written by save()") from None
    except json.JSONDecodeError as exc:
        raise SteerlabError(
            f"{json_path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}): truncated or "
            "edited by hand? Restore it, or save the vector again"
        ) from None
    if not isinstance(meta, dict) or "provenance" not in meta:
        raise SteerlabError(
            f"{json_path} is not a steering-vector file: expected a JSON object with 'sites' and 'provenance', got "
            f"{type(meta).__name__}{' without provenance' if isinstance(meta, dict) else ''}"
        )
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SteerlabError(f"{json_path}: format_version must be an int, got {version!r}")
    if version > FORMAT_VERSION:
        raise SteerlabError(f"{json_path} has format version {version}; upgrade steerlab to read it")
    return meta


def _read_tensors(st_path: Path) -> dict[str, Tensor]:
    """The tensors of a saved vector, with errors that name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if st_path.stat().st_size == 0:
        raise SteerlabError(f"{st_path} is empty (0 bytes): the save was interrupted; save the vector again")
    try:
        return load_file(str(st_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SteerlabError(
            f"{st_path} is not a readable safetensors file ({exc}): truncated or corrupted? Save the vector again"
        ) from None


@dataclass(frozen=True, eq=False)
class SteeringVector:
    """Directions keyed by site (1-D, float32, CPU, length ``d_model``) and their provenance.

    Example:
        >>> prov = Provenance(model="tiny", d_model=4, method="caa")
        >>> honesty = SteeringVector({"resid_post.1": torch.ones(4)}, prov)
        >>> (2 * honesty - honesty / 2)["resid_post.1"]
        tensor([1.5000, 1.5000, 1.5000, 1.5000])
    """

    directions: dict[Site, Float[Tensor, " d_model"]]
    provenance: Provenance

    def __post_init__(self) -> None:
        p = self.provenance
        if not isinstance(p, Provenance) or not self.directions:
            raise SteerlabError("a steering vector needs a Provenance and at least one site; got no directions")
        clean: dict[Site, Tensor] = {}
        for key, vec in self.directions.items():
            site = self._key(key)
            if site in clean:
                raise SteerlabError(f"site {site} is given twice (e.g. as a negative and a positive layer)")
            t = torch.as_tensor(vec)
            if t.ndim != 1 or t.shape[0] != p.d_model:
                raise SteerlabError(
                    f"direction at {site} has shape {tuple(t.shape)}, expected ({p.d_model},), the d_model of "
                    f"{p.model}; pass one 1-D vector per site, or fix provenance.d_model"
                )
            t = t.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise SteerlabError(
                    f"direction at {site} has {bad} NaN/inf entries out of {p.d_model}; it was probably computed "
                    "from degenerate activations (an empty group, zero variance, or fp16 overflow); recompute it"
                )
            clean[site] = t
        object.__setattr__(self, "directions", dict(sorted(clean.items(), key=lambda kv: kv[0].order)))

    # ------------------------------------------------------------------ access
    @property
    def sites(self) -> list[Site]:
        """Sites in forward-pass order."""
        return list(self.directions)

    @property
    def layers(self) -> list[int]:
        return sorted({s.layer for s in self.directions})

    def _key(self, site: Site | str | int) -> Site:
        key = Site(site) if isinstance(site, int) else Site.parse(site)
        n = self.provenance.n_layers
        return key.resolve(n, self.provenance.model) if n is not None else key

    def __getitem__(self, site: Site | str | int) -> Float[Tensor, " d_model"]:
        key = self._key(site)
        if key not in self.directions:
            raise KeyError(f"no direction at {key}; this vector has sites {[str(s) for s in self.sites]}")
        return self.directions[key]

    def __contains__(self, site: object) -> bool:
        try:
            return self._key(site) in self.directions  # type: ignore[arg-type]
        except SteerlabError:
            return False

    def __len__(self) -> int:
        return len(self.directions)

    def norm(self) -> dict[Site, float]:
        """L2 norm of each site's direction."""
        return {s: float(v.norm()) for s, v in self.directions.items()}

    def select(self, sites: Iterable[Site | str | int]) -> SteeringVector:
        """A vector with only the given sites (same provenance)."""
        return SteeringVector({k: self[k] for k in sites}, self.provenance)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> dict[Site, Tensor]:
        """Directions cast for use, e.g. ``v.to(h.device, h.dtype)``; the stored vector stays CPU fp32."""
        return {s: v.to(device=device, dtype=dtype, copy=True) for s, v in self.directions.items()}

    # ------------------------------------------------------------------ arithmetic
    def _map(self, fn: Callable[[Tensor], Tensor], method: str, factor: float | None = None) -> SteeringVector:
        """``fn`` on every direction; a recorded ``fraction`` is scaled by ``factor`` (dropped when None)."""
        fraction = self.provenance.fraction
        fraction = None if fraction is None or factor is None else fraction * factor
        prov = dataclasses.replace(self.provenance, method=method, created=_now(), steerlab_version=_library_version(),
                                   fraction=fraction)  # fmt: skip
        return SteeringVector({s: fn(v) for s, v in self.directions.items()}, prov)

    def normalized(self) -> SteeringVector:
        """Each site's direction scaled to unit L2 norm."""
        zero = [str(s) for s, n in self.norm().items() if n == 0.0]
        if zero:
            raise SteerlabError(f"cannot normalise zero directions at {zero}; drop those sites with .select(...)")
        return self._map(lambda v: v / v.norm(), f"unit({self.provenance.method})")

    def rescaled(self, norms: Mapping[Site, float], fraction: float = 1.0) -> SteeringVector:
        """Each site's direction set to norm ``fraction * norms[site]``.

        Raw mean differences of small models are tiny next to the residual stream (SmolLM2-135M: norm
        ~0.1-10 against ~50-700), so strengths are easier to compare across layers and methods once
        vectors are expressed as a fraction of the stream's norm (`steerlab.scale.typical_norm`, or
        `PairActivations.mean_norm`). The provenance records ``norms`` (as ``typical_norm``) and ``fraction``,
        so the saved vector says that strength ``alpha`` adds ``alpha * fraction * norms[site]``.
        """
        missing = [str(s) for s in self.directions if s not in norms]
        if missing:
            raise SteerlabError(f"rescaled: no norm given for {missing}; pass one per site of the vector")
        unit = self.normalized()
        prov = dataclasses.replace(
            unit.provenance, method=f"{fraction:g}*norm({self.provenance.method})", fraction=fraction,
            typical_norm={str(s): float(norms[s]) for s in self.directions},
        )  # fmt: skip
        return SteeringVector({s: v * fraction * float(norms[s]) for s, v in unit.directions.items()}, prov)

    def scaled(self, x: float) -> SteeringVector:
        return self * x

    def __mul__(self, x: float) -> SteeringVector:
        if not isinstance(x, numbers.Real) or isinstance(x, bool):
            return NotImplemented
        if not math.isfinite(x):
            raise SteerlabError(f"cannot scale a steering vector by {x}; use a finite number")
        return self._map(lambda v: v * x, f"{x:g}*{self.provenance.method}", x)

    __rmul__ = __mul__

    def __truediv__(self, x: float) -> SteeringVector:
        if not isinstance(x, numbers.Real) or isinstance(x, bool):
            return NotImplemented
        if x == 0 or not math.isfinite(x):
            raise SteerlabError(f"cannot divide a steering vector by {x}; use a finite non-zero number")
        return self._map(lambda v: v / x, f"{self.provenance.method}/{x:g}", 1 / x)

    def __neg__(self) -> SteeringVector:
        return self._map(lambda v: -v, f"-{self.provenance.method}", -1.0)

    def _combine(self, other: Any, op: Callable[[Tensor, Tensor], Tensor], sym: str) -> SteeringVector:
        if not isinstance(other, SteeringVector):
            return NotImplemented
        a, b = self.provenance, other.provenance
        if a.model != b.model or a.d_model != b.d_model:
            raise SteerlabError(
                f"cannot combine a vector for {a.model} (d_model {a.d_model}) with one for {b.model} "
                f"(d_model {b.d_model}); extract both on the same model"
            )
        wp = a.weight_processing
        if wp != b.weight_processing:
            logger.warning("combining vectors read with weight processing %r and %r", wp, b.weight_processing)
            wp = f"mixed({wp}, {b.weight_processing})"
        zero = torch.zeros(a.d_model)
        sites = {*self.directions, *other.directions}  # a site missing on one side counts as zero
        dirs = {s: op(self.directions.get(s, zero), other.directions.get(s, zero)) for s in sites}

        def same(name: str) -> Any:
            return getattr(a, name) if getattr(a, name) == getattr(b, name) else None

        prov = dataclasses.replace(
            a, method=f"({a.method} {sym} {b.method})", n_layers=a.n_layers or b.n_layers,
            model_type=a.model_type or b.model_type, backend=same("backend"), weight_processing=wp,
            dataset=same("dataset"), dataset_hash=same("dataset_hash"), read_position=same("read_position"),
            n_pairs=same("n_pairs"), steerlab_version=_library_version(), created=_now(),
            extra={"parts": [a.to_dict(), b.to_dict()]}, operation=same("operation") or "add", fraction=None,
            typical_norm={**(b.typical_norm or {}), **(a.typical_norm or {})} or None, orientation={},
            config_hash=same("config_hash"), tokenizer_hash=same("tokenizer_hash"),
        )
        return SteeringVector(dirs, prov)

    def __add__(self, other: SteeringVector) -> SteeringVector:
        return self._combine(other, torch.add, "+")

    def __radd__(self, other: Any) -> SteeringVector:
        return self if isinstance(other, int) and other == 0 else NotImplemented  # so sum(vectors) works

    def __sub__(self, other: SteeringVector) -> SteeringVector:
        return self._combine(other, torch.sub, "-")

    # ------------------------------------------------------------------ checks and files
    def check_compatible(self, backend: Any, *, strict: bool = False, check_model: bool = True) -> None:
        """Check that this vector fits ``backend``: same d_model and its layers exist (else raise), and the
        same model (name, config and tokenizer fingerprints; see `steerlab.provenance.model_mismatch`).

        Another model of the same width is allowed with a logged warning, or refused with ``strict=True``;
        ``check_model=False`` skips that comparison.
        """
        p, name, d, n = self.provenance, backend.name, backend.d_model, backend.n_layers
        if d != p.d_model:
            raise SteerlabError(
                f"vector saved for model {p.model} (d_model {p.d_model}) cannot be used on {name} (d_model {d}); "
                f"extract a new vector for {name}"
            )
        outside = [str(s) for s in self.sites if not -n <= s.layer < n]
        if outside:
            raise SteerlabError(f"sites {outside} do not fit {name} ({n} layers: 0..{n - 1}); drop them with .select()")
        differ = model_mismatch(p, backend) if check_model else []
        if differ:
            what = (
                f"vector made on {p.model} used on another model of the same width ({'; '.join(differ)}): its "
                "direction may mean nothing there"
            )
            if strict:
                raise SteerlabError(
                    f"{what}; extract a vector on {name}, or pass strict=False to use it anyway (see {ERRORS_DOC})"
                )
            logger.warning("%s; extract one on %s, or pass strict=True to refuse (see %s)", what, name, ERRORS_DOC)
        wp = getattr(backend, "weight_processing", "none")
        if wp != p.weight_processing:
            logger.warning("vector was read with weight processing %r, backend uses %r", p.weight_processing, wp)

    def describe(self) -> dict[str, Any]:
        """How to apply this vector outside steerlab (the ``usage`` entry of the saved JSON; derived, never read).

        ``operation`` and the strength convention, each site in Hugging Face terms with its direction's norm,
        the basis of the activations, and the scale it was meant for (`steerlab.provenance`).
        """
        p = self.provenance
        basis = ("raw Hugging Face activations (TransformerLens weight processing off)"
                 if p.weight_processing == "none" else f"activations with weight processing {p.weight_processing!r}")
        usage: dict[str, Any] = {
            "operation": p.operation,
            "formula": {"add": "h + alpha * v", "ablate": "h - (h . u) u with u = v / |v|",
                        "clamp": "h + (value - h . u) u with u = v / |v|"}[p.operation],
            "basis": basis,
            "sites": {str(s): {"hf": hf_site(s, p.n_layers), "norm": float(v.norm())}
                      for s, v in self.directions.items()},
        }  # fmt: skip
        if p.typical_norm:
            usage["typical_norm"] = p.typical_norm
        if p.fraction is not None:
            usage["fraction"] = p.fraction
            usage["strength_note"] = ("strength alpha adds alpha * fraction * typical_norm[site] of norm; to add "
                                      "f * typical_norm[site], use alpha = f / fraction")
        return usage

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.safetensors`` (tensors named like ``resid_post.12``) and ``<path>.json``; returns the stem.

        Both files get the same permissions (the process umask's default for new files).
        """
        from safetensors.torch import save as to_bytes

        st_path, json_path = _paths(path)
        meta = {"format": "steerlab.SteeringVector", "format_version": FORMAT_VERSION,
                "sites": [str(s) for s in self.sites], "provenance": self.provenance.to_dict(),
                "usage": self.describe()}  # fmt: skip
        try:
            text = json.dumps(meta, indent=2) + "\n"
        except TypeError as err:
            raise SteerlabError(f"cannot save: provenance.extra must be JSON-serialisable ({err})") from None
        data = to_bytes({str(s): v for s, v in self.directions.items()}, metadata={"format": "pt"})
        try:
            st_path.parent.mkdir(parents=True, exist_ok=True)
            st_path.write_bytes(data)
            json_path.write_text(text)
        except OSError as exc:
            raise SteerlabError(
                f"cannot save the steering vector to {st_path} / {json_path.name}: {exc.strerror or exc}; "
                "give a path in a folder you can write to"
            ) from None
        logger.info("saved steering vector to %s and %s", st_path, json_path)
        return st_path.with_suffix("")

    @classmethod
    def load(
        cls, path: str | Path, backend: Any = None, *, strict: bool = False, check_model: bool = True
    ) -> SteeringVector:
        """Read a vector written by `save`; with ``backend``, check that it fits (see `check_compatible`).

        Files written by earlier steerlab versions (without the later provenance fields) load too.
        """
        st_path, json_path = _paths(path)
        for p in (json_path, st_path):
            if not p.is_file():
                state = "is a folder" if p.is_dir() else "does not exist"
                raise SteerlabError(
                    f"cannot load steering vector: {p} {state}; save() writes {st_path.name} and "
                    f"{json_path.name} side by side, keep both"
                )
        meta = _read_meta(json_path)
        tensors = _read_tensors(st_path)
        sites = meta.get("sites", list(tensors))
        if not isinstance(sites, list) or not all(isinstance(k, str) for k in sites):
            raise SteerlabError(f"{json_path}: 'sites' must be a list of names like 'resid_post.12', got {sites!r:.80}")
        if set(sites) != set(tensors):
            raise SteerlabError(f"{json_path} lists sites {sites} but {st_path} holds {sorted(tensors)}; mismatch")
        provenance = Provenance.from_dict(meta["provenance"], where=str(json_path))
        try:
            vec = cls({Site.parse(k): tensors[k] for k in sites}, provenance)
        except SteerlabError as exc:
            raise SteerlabError(f"{st_path}: {exc}") from None
        if backend is not None:
            vec.check_compatible(backend, strict=strict, check_model=check_model)
        return vec

    def export_gguf(self, path: str | Path, model_hint: str | None = None) -> Path:
        """Write a llama.cpp control vector (``--control-vector file.gguf``), as repeng's export does.

        Layer numbering: ``resid_post.L`` is written as tensor ``direction.L``. In ggml-org/llama.cpp,
        ``common_control_vector_load_one`` (common/common.cpp) rejects ``direction.0`` and stores
        ``direction.N`` at offset ``n_embd * (N - 1)``; ``llama_adapter_cvec::apply`` (src/llama-adapter.cpp)
        copies offset ``n_embd * (il - 1)`` into ``tensors[il]``; each model graph (e.g. src/models/llama.cpp)
        calls ``build_cvec(cur, il)`` on the output ``l_out`` of 0-based block ``il``. So ``direction.N``
        is added to the output of block N (not N+1), and ``resid_post.0`` cannot be exported. repeng
        numbers the same way (its layer ids index ``model.layers``). llama.cpp's own cvector-generator
        names the vector read at block ``il`` ``direction.{il+1}``, i.e. applies it one block later.

        Example:
            >>> vec.export_gguf("honesty")  # writes honesty.gguf  # doctest: +SKIP
        """
        import gguf

        p = self.provenance
        wrong = [str(s) for s in self.sites if s.kind != "resid_post"]
        if wrong:
            raise SteerlabError(
                f"only resid_post sites can be exported to GGUF (llama.cpp adds a control vector to each block's "
                f"output); these are not resid_post: {wrong}; export vec.select(...) of the resid_post sites"
            )
        unusable = [str(s) for s in self.sites if s.layer <= 0]
        if unusable:
            raise SteerlabError(
                f"cannot export {unusable}: llama.cpp cannot steer the output of block 0 (it rejects direction.0), "
                "and negative layers need provenance.n_layers; drop them with vec.select(...)"
            )
        hint = model_hint or p.model_type
        if not hint:
            logger.warning("no model_type in provenance; using the model name %r as model_hint", p.model)
            hint = p.model
        out = Path(path)
        out = out if out.suffix == ".gguf" else out.with_name(out.name + ".gguf")
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            writer = gguf.GGUFWriter(str(out), "controlvector")
            writer.add_string("controlvector.model_hint", hint)
            writer.add_uint32("controlvector.layer_count", len(self))
            writer.add_string("steerlab.provenance", json.dumps(p.to_dict()))  # llama.cpp ignores unknown keys
            for site, v in self.directions.items():
                writer.add_tensor(f"direction.{site.layer}", v.numpy())
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
        except OSError as exc:
            raise SteerlabError(f"cannot write {out}: {exc.strerror or exc}; give a path you can write to") from None
        logger.info("exported %d directions to %s", len(self), out)
        return out

    @classmethod
    def from_gguf(cls, path: str | Path, provenance: Provenance | None = None) -> SteeringVector:
        """Read a control-vector GGUF (``direction.N`` -> ``resid_post.N``, see `export_gguf`).

        Provenance comes from ``provenance``, else from a steerlab export, else from the model hint.
        """
        import gguf

        if not Path(path).is_file():
            raise SteerlabError(f"cannot read control vector: {path} is not a file")
        try:
            reader = gguf.GGUFReader(str(path))
            kv = {key: f.contents() for key, f in reader.fields.items()}
        except (ValueError, OSError, IndexError, KeyError) as exc:
            raise SteerlabError(
                f"{path} is not a readable GGUF file ({exc}); give a control vector written by export_gguf or "
                "llama.cpp's cvector-generator"
            ) from None
        if kv.get("general.architecture") != "controlvector":
            raise SteerlabError(f"{path} is not a control vector (architecture {kv.get('general.architecture')!r})")
        dirs: dict[Site, Tensor] = {}
        for t in reader.tensors:
            kind, _, n = t.name.partition(".")
            if kind != "direction" or not n.isdigit():
                raise SteerlabError(f"{path} has tensor {t.name!r}; control vectors hold only 'direction.<layer>'")
            dirs[Site(int(n))] = torch.from_numpy(t.data.astype("float32", copy=True)).reshape(-1)
        if provenance is None and "steerlab.provenance" in kv:
            where = f"{path} (steerlab.provenance)"
            provenance = Provenance.from_dict(json.loads(kv["steerlab.provenance"]), where=where)
        elif provenance is None:
            hint, d_model = kv.get("controlvector.model_hint"), next(iter(dirs.values())).shape[0] if dirs else 0
            provenance = Provenance(model=hint or "unknown", d_model=d_model, model_type=hint, method="gguf-import")
        return cls(dirs, provenance)

    def __repr__(self) -> str:
        p = self.provenance
        items = [f"{s}: {n:.3g}" for s, n in self.norm().items()]
        shown = ", ".join(items[:4]) + (f", ... +{len(items) - 4} more" if len(items) > 4 else "")
        return f"SteeringVector(model={p.model!r}, method={p.method!r}, norms={{{shown}}})"
