"""Steering with SAE latents, as `Edit`s and `SteeringVector`s that run on either backend.

- `add_latent`: ``h + alpha * W_dec[i]`` (feature steering as on Neuronpedia; Templeton et al. 2024,
  "Scaling Monosemanticity"; the SAE baseline of AxBench, Wu et al. 2025).
- `clamp_latent`: encode, set latent ``i`` to a value, decode, and keep the SAE's error term
  (Templeton et al. 2024 clamp features this way): ``h + decode(z') - decode(z)``, so the part of ``h``
  the SAE does not reconstruct is left untouched, and clamping a latent to its current value is the identity.
- `sparse_code` / `sparse_vector`: approximate a dense steering vector by ``k`` decoder rows, chosen by
  orthogonal matching pursuit (Pati et al. 1993) with least-squares coefficients, as a SteeringVector.
- `ClampLatent`: clamping as an edit builder for `steerlab.sweeps.sweep` (``edit=``), so a grid of clamp
  values runs, resumes and is oriented like a grid of added vectors.

Example:
    >>> lm.generate(prompt, edits=[add_latent(sae, Site(12), 1234, alpha=8.0)])         # doctest: +SKIP
    >>> lm.generate(prompt, edits=[clamp_latent(sae, Site(12), 1234, value=20.0)])      # doctest: +SKIP
    >>> vec = sparse_vector(sae, Site(12), caa_vector[Site(12)], k=8)                    # doctest: +SKIP
    >>> sweep(lm, latent_vector(sae, Site(12), 1234), task, fractions=[-0.25, 0, 0.25],   # doctest: +SKIP
    ...       edit=ClampLatent(sae, 1234))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from steerlab.errors import SteerlabError
from steerlab.interventions import add
from steerlab.sae.quality import on_device
from steerlab.sites import ALL, Edit, Positions, Site
from steerlab.vectors import Provenance, SteeringVector


def _check_latents(sae: Any, latents: int | Sequence[int]) -> list[int]:
    latents = [latents] if isinstance(latents, int) else list(latents)
    d_sae = sae.cfg.d_sae
    bad = [i for i in latents if not 0 <= int(i) < d_sae]
    if bad or not latents:
        raise SteerlabError(
            f"latent index {bad or latents} is out of range for an SAE with {d_sae} latents (0..{d_sae - 1})"
        )
    return [int(i) for i in latents]


def decoder_row(sae: Any, latent: int) -> Float[Tensor, " d_model"]:
    """``W_dec[latent]`` as a float32 CPU tensor (unit norm for SAEs trained by `train_sae`)."""
    (latent,) = _check_latents(sae, latent)
    return sae.W_dec[latent].detach().float().cpu().clone()


def add_latent(sae: Any, site: Site, latent: int, alpha: float, positions: Positions = ALL) -> Edit:
    """``h + alpha * W_dec[latent]`` at ``site``."""
    return add(site, decoder_row(sae, latent), alpha, positions)


def clamp_latent(
    sae: Any, site: Site, latents: int | Sequence[int], value: float | Sequence[float], positions: Positions = ALL
) -> Edit:
    """Set the SAE activation of ``latents`` to ``value`` and keep the error term.

    ``h' = h + decode(z') - decode(z)`` with ``z = encode(h)`` and ``z'`` equal to ``z`` except at
    ``latents``. Equivalent to ``decode(z') + (h - decode(z))``; written this way it is exactly ``h``
    when ``z' == z``.
    """
    latents = _check_latents(sae, latents)
    values = [float(value)] * len(latents) if isinstance(value, int | float) else [float(v) for v in value]
    if len(values) != len(latents):
        raise SteerlabError(f"got {len(values)} values for {len(latents)} latents; give one value or one per latent")
    sae_at = on_device(sae)
    targets: dict[tuple, tuple[Tensor, Tensor]] = {}  # (latent index, value) per device and dtype, made once

    def fn(h: Tensor) -> Tensor:
        here = sae_at(h.device)
        z = here.encode(h.to(here.dtype))
        if (z.device, z.dtype) not in targets:
            targets[z.device, z.dtype] = torch.tensor(latents, device=z.device), torch.tensor(values).to(z)
        index, target = targets[z.device, z.dtype]
        z_new = z.clone()
        z_new[..., index] = target
        return h + (here.decode(z_new) - here.decode(z)).to(h.dtype)

    return Edit(site, fn, positions)


def sparse_code(
    sae: Any, vector: Float[Tensor, " d_model"], k: int, *, nonnegative: bool = False
) -> tuple[list[int], Tensor]:
    """Latents and coefficients with ``sum_j c_j W_dec[i_j] ~= vector``, by orthogonal matching pursuit.

    Each step adds the latent whose decoder row has the largest cosine with the residual (largest
    positive cosine if ``nonnegative``) and refits all coefficients by least squares.
    """
    if not 1 <= k <= sae.cfg.d_sae:
        raise SteerlabError(f"k must be between 1 and d_sae={sae.cfg.d_sae}, got {k}")
    v = vector.detach().float().cpu()
    W = sae.W_dec.detach().float().cpu()
    if v.shape != W.shape[1:]:
        raise SteerlabError(f"the vector has shape {tuple(v.shape)} but the SAE's decoder rows have {W.shape[1]} dims")
    unit = W / W.norm(dim=1, keepdim=True).clamp(min=1e-8)
    chosen: list[int] = []
    coef = torch.zeros(0)
    residual = v.clone()
    for _ in range(k):
        scores = unit @ residual
        scores = scores if nonnegative else scores.abs()
        scores[chosen] = -torch.inf
        chosen.append(int(scores.argmax()))
        basis = W[chosen].T  # [d, j]
        coef = torch.linalg.lstsq(basis, v.unsqueeze(1)).solution.squeeze(1)
        residual = v - basis @ coef
    return chosen, coef


def sparse_vector(
    sae: Any, site: Site, vector: Float[Tensor, " d_model"], k: int, *, provenance: Provenance | None = None,
    nonnegative: bool = False,
) -> SteeringVector:  # fmt: skip
    """The ``k``-latent reconstruction of ``vector`` (see `sparse_code`) as a SteeringVector at ``site``."""
    latents, coef = sparse_code(sae, vector, k, nonnegative=nonnegative)
    direction = sae.W_dec.detach().float().cpu()[latents].T @ coef
    extra = {"latents": latents, "coefficients": [float(c) for c in coef], "k": k}
    prov = provenance or Provenance(model="unknown", d_model=direction.shape[0], method="sae_sparse")
    prov = Provenance.from_dict({**prov.to_dict(), "method": f"sae_top{k}", "extra": {**prov.extra, **extra}})
    return SteeringVector({site: direction}, prov)


def latent_vector(sae: Any, site: Site, latent: int, *, provenance: Provenance | None = None) -> SteeringVector:
    """``W_dec[latent]`` as a SteeringVector at ``site`` (for `steerlab.sweeps.sweep`)."""
    row = decoder_row(sae, latent)
    prov = provenance or Provenance(model="unknown", d_model=row.shape[0], method="sae_latent")
    prov = Provenance.from_dict({**prov.to_dict(), "method": "sae_latent", "extra": {**prov.extra, "latent": latent}})
    return SteeringVector({site: row}, prov)


@dataclass(frozen=True)
class ClampLatent:
    """Clamp one latent, as an edit builder for `steerlab.sweeps.sweep` (its ``edit=``; Templeton et al. 2024).

    ``sweep`` calls it with the cell's direction and coefficient; the latent is set to the coefficient of
    its decoder row in ``coeff * direction`` (``coeff * <direction, W_dec[i]> / |W_dec[i]|^2``). With the
    direction `latent_vector` gives (the unit decoder row) and a strength as a fraction ``f`` of the typical
    norm ``T``, the latent is clamped to ``f * T``: the norm an added vector has at the same strength. An
    oriented (negated) direction clamps to ``-f * T``; a ReLU or TopK latent never takes a negative value,
    so there the clamp removes the latent's activation and subtracts ``f * T`` times its decoder row.

    Example:
        >>> maker = ClampLatent(sae, 1234)                                                  # doctest: +SKIP
        >>> maker(Site(12), latent_vector(sae, Site(12), 1234)[Site(12)], 30.0, ALL)        # doctest: +SKIP
    """

    sae: Any
    latent: int

    def __post_init__(self) -> None:
        _check_latents(self.sae, self.latent)

    def __call__(self, site: Site, direction: Tensor, coeff: float, positions: Positions) -> list[Edit]:
        row = decoder_row(self.sae, self.latent)
        d = direction.detach().float().cpu()
        if d.shape != row.shape:
            raise SteerlabError(f"the direction has shape {tuple(d.shape)} but latent {self.latent}'s decoder row "
                                f"has {tuple(row.shape)}; sweep the latent's own vector (latent_vector)")  # fmt: skip
        value = float(coeff) * float(d @ row) / float(row @ row)
        return [clamp_latent(self.sae, site, self.latent, value, positions)]
