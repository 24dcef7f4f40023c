"""How good an SAE is: sparsity, reconstruction, dead latents, and the language-model loss it keeps.

The standard SAE evaluation (Bricken et al. 2023; Gao et al. 2024; SAEBench, Karvonen et al. 2025):

- ``l0``: mean number of active latents per token;
- ``explained_variance``: ``1 - sum |x - x_hat|^2 / sum |x - mean(x)|^2`` over tokens;
- ``dead_fraction``: share of latents that never fire on the tokens seen;
- ``loss_recovered``: ``(CE_zero - CE_sae) / (CE_zero - CE_clean)``, the next-token cross-entropy with
  the site replaced by the SAE's reconstruction, between zero-ablating the site (0) and the clean
  model (1).

Splicing and ablation are `Edit`s on positions 1 onward (position 0, the attention sink, is not what
the SAE was trained on and is left alone), so any backend works.

Devices: an SAE computes where it lives; activations read earlier (CPU tensors) are moved to it, and
an edit inside a forward pass runs a copy of the SAE made once on the activations' device
(`on_device`), so a CPU SAE can steer a model on a GPU without a transfer per step.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.sae.corpus import corpus_chunks
from steerlab.sites import Batch, Edit, Positions, Site


def sae_forward(sae: Any, h: Tensor) -> tuple[Tensor, Tensor]:
    """``(latents, reconstruction)`` of activations ``h`` (any leading shape), computed on the SAE's device;
    the latents stay there, the reconstruction comes back in ``h``'s device and dtype."""
    acts = sae.encode(h.to(sae.W_dec.device, sae.dtype))
    return acts, sae.decode(acts).to(h.device, h.dtype)


def on_device(sae: Any) -> Callable[[torch.device], Any]:
    """``sae_at(device)``: ``sae`` itself on its own device, elsewhere a copy made on first use and kept."""
    copies = {sae.W_dec.device: sae}

    def sae_at(device: torch.device) -> Any:
        if device not in copies:
            copies[device] = copy.deepcopy(sae).to(device)
        return copies[device]

    return sae_at


@torch.no_grad()
def latent_stats(sae: Any, acts: Float[Tensor, "n d"], batch_size: int = 4096) -> dict[str, Any]:
    """L0, explained variance and the mask of latents that fired at least once, over ``acts``."""
    n, l0, sq_err = 0, 0.0, 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    mean = acts.float().mean(0)
    total_var = float(((acts.float() - mean) ** 2).sum())
    for chunk in acts.split(batch_size):
        z, x_hat = sae_forward(sae, chunk.float())
        active = z > 0
        l0 += float(active.sum())
        fired |= active.any(0).cpu()
        sq_err += float(((chunk.float() - x_hat) ** 2).sum())
        n += len(chunk)
    explained = 1 - sq_err / total_var if total_var > 0 else float("nan")  # one token (or identical ones): undefined
    return {"l0": l0 / n, "explained_variance": explained, "fired": fired, "n_tokens": n}


def splice(sae: Any, site: Site, positions: Positions = Positions.from_index(1)) -> Edit:
    """Replace the activation by the SAE's reconstruction (no error term)."""
    sae_at = on_device(sae)
    return Edit(site, lambda h: sae_forward(sae_at(h.device), h)[1], positions)


def _nll(logits: Tensor, ids: Tensor) -> Tensor:
    """Per-token loss of predicting ``ids[:, 2:]`` from positions 1 onward."""
    lg = logits[:, 1:-1].float()
    return torch.nn.functional.cross_entropy(lg.reshape(-1, lg.shape[-1]), ids[:, 2:].reshape(-1), reduction="none")


@torch.no_grad()
def sae_quality(backend: Backend, sae: Any, site: Site | str | int, **kwargs) -> dict[str, float]:
    """Quality metrics of ``sae`` at ``site`` on held-out text (default: WikiText-2 valid, not used for training).

    Returns ``l0``, ``explained_variance``, ``dead_fraction_eval`` (latents silent on these tokens),
    ``ce_clean``, ``ce_sae``, ``ce_zero``, ``loss_recovered`` and ``n_eval_tokens``. Keyword arguments
    are those of `quality_table`.
    """
    row = quality_table(backend, {"sae": sae}, site, **kwargs).iloc[0].drop("sae")
    return {name: float(value) for name, value in row.items()}


@torch.no_grad()
def quality_table(
    backend: Backend,
    saes: Mapping[str, Any],
    site: Site | str | int,
    *,
    n_tokens: int = 8_192,
    corpora: tuple[str, ...] = ("wikitext2",),
    split: str = "valid",
    context: int = 128,
    batch_size: int = 16,
    progress: bool = True,
) -> pd.DataFrame:
    """`sae_quality` for several SAEs at one site on the same held-out tokens (the clean and
    zero-ablated passes run once). One row per SAE, the name in column ``sae``."""
    site = backend.site(site)
    chunks = corpus_chunks(backend.tokenizer, corpora, n_tokens=n_tokens, context=context, split=split)
    ce = {"clean": 0.0, "zero": 0.0, **{name: 0.0 for name in saes}}
    hs, count = [], 0
    zero = Edit(site, torch.zeros_like, Positions.from_index(1))
    for start in tqdm(range(0, len(chunks), batch_size), desc="SAE quality", disable=not progress):
        ids = chunks[start : start + batch_size].to(backend.device)
        batch = Batch(ids, torch.ones_like(ids))
        out = backend.forward(batch, record=[site])
        hs.append(out.activations[site][:, 1:].reshape(-1, backend.d_model).float().cpu())
        ce["clean"] += float(_nll(out.logits, ids).sum())
        ce["zero"] += float(_nll(backend.forward(batch, edits=[zero]).logits, ids).sum())
        for name, sae in saes.items():
            ce[name] += float(_nll(backend.forward(batch, edits=[splice(sae, site)]).logits, ids).sum())
        count += ids.shape[0] * (ids.shape[1] - 2)
    hs = torch.cat(hs)
    ce = {k: v / count for k, v in ce.items()}
    rows = []
    for name, sae in saes.items():
        stats = latent_stats(sae, hs)
        rows.append({
            "sae": name,
            "l0": stats["l0"],
            "explained_variance": stats["explained_variance"],
            "dead_fraction_eval": float((~stats["fired"]).float().mean()),
            "ce_clean": ce["clean"],
            "ce_sae": ce[name],
            "ce_zero": ce["zero"],
            "loss_recovered": (ce["zero"] - ce[name]) / (ce["zero"] - ce["clean"]) if ce["zero"] != ce["clean"]
            else float("nan"),
            "n_eval_tokens": stats["n_tokens"],
        })  # fmt: skip
    return pd.DataFrame(rows)
