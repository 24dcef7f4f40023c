"""Interventions: turn a direction (or a `SteeringVector`) into `Edit`s.

- `add`: ``h + alpha * v`` (activation addition; Turner et al. 2023, CAA: Rimsky et al. 2024).
- `ablate`: remove the component along ``v`` (directional ablation; Arditi et al. 2024).
- `clamp`: set the projection on ``v`` to a value (as in feature clamping on SAE latents).

Every edit is a pure function of the activation; the direction is cast to the activation's
device and dtype the first time the edit meets them, and that copy is reused on every later call
(every decode step), so steering costs no host-to-device copy per step. A vector spanning several
layers gives one edit per site.

Strengths are checked when the edit is built: NaN, inf, and additions whose norm ``|alpha| |v|`` exceeds
`MAX_EDIT_NORM` (no residual stream is that large; such edits only turn activations into inf/NaN) raise
a `SteerlabError`. Edits built by `steer` from a `SteeringVector` carry the vector's check against the
model they run on (`SteeringVector.check_compatible`): the backend calls it before running them, so a
vector made on another model warns, or with ``strict=True`` refuses.

Example:
    >>> edits = steer(vec, alpha=4.0, positions=LAST_PROMPT)             # doctest: +SKIP
    >>> lm.generate(prompt, edits=edits)                                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from jaxtyping import Float
from torch import Tensor

from steerlab.errors import SteerlabError, check_finite
from steerlab.sites import ALL, Edit, Positions, Site

MAX_EDIT_NORM = 1e6
"""Largest norm an addition may have. Residual token norms are of order 1e1-1e5 (SmolLM2-135M: ~150, its attention
sinks ~25,000); anything near this bound already destroys the model's output."""


def _unit(v: Tensor) -> Tensor:
    norm = v.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise SteerlabError("cannot ablate or clamp along a zero (or non-finite) direction")
    return v / norm


def _check(v: Tensor) -> Tensor:
    if v.dim() != 1:
        raise SteerlabError(f"a direction must be 1-D [d_model], got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise SteerlabError("the direction has NaN or inf entries; recompute the vector from finite activations")
    return v.detach().float().cpu()


def _cast_once(v: Tensor) -> Callable[[Tensor], Tensor]:
    """``like(h)``: ``v`` on ``h``'s device and dtype, made on first use per (device, dtype) and kept."""
    copies: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def like(h: Tensor) -> Tensor:
        key = (h.device, h.dtype)
        if key not in copies:
            copies[key] = v.to(h.device, h.dtype)
        return copies[key]

    return like


def _dim_guard(h: Tensor, v: Tensor, site: Site) -> None:
    if h.shape[-1] != v.shape[0]:
        raise SteerlabError(
            f"direction has {v.shape[0]} dimensions but {site} has d_model {h.shape[-1]}: "
            "the vector was made for another model"
        )


def _check_alpha(alpha: float, v: Tensor, site: Site) -> float:
    fix = "use a strength relative to the stream's norm: steerlab.scale.strength_from_fraction(0.25, typical, v)"
    alpha = check_finite(alpha, f"strength alpha at {site}", fix=fix)
    size = abs(alpha) * float(v.norm())
    if size > MAX_EDIT_NORM:
        raise SteerlabError(
            f"strength alpha = {alpha:g} at {site} adds a vector of norm {size:.3g} (|v| = {float(v.norm()):.3g}), "
            f"beyond any residual stream (token norms up to ~1e5; limit {MAX_EDIT_NORM:g}), so the model's outputs "
            f"would be inf/NaN; {fix}"
        )
    return alpha


def add(site: Site, v: Float[Tensor, " d_model"], alpha: float = 1.0, positions: Positions = ALL) -> Edit:
    """``h + alpha * v`` at the chosen positions."""
    v = _check(v)
    alpha = _check_alpha(alpha, v, site)
    step = _cast_once(alpha * v)

    def fn(h: Tensor) -> Tensor:
        _dim_guard(h, v, site)
        return h + step(h)

    return Edit(site, fn, positions)


def ablate(site: Site, v: Float[Tensor, " d_model"], positions: Positions = ALL) -> Edit:
    """``h - (h . u) u`` with ``u = v / |v|``: removes the component along ``v``."""
    u = _unit(_check(v))
    unit = _cast_once(u)

    def fn(h: Tensor) -> Tensor:
        _dim_guard(h, u, site)
        uu = unit(h)
        return h - (h @ uu).unsqueeze(-1) * uu

    return Edit(site, fn, positions)


def clamp(site: Site, v: Float[Tensor, " d_model"], value: float, positions: Positions = ALL) -> Edit:
    """Sets the projection on ``u = v / |v|`` to ``value``: ``h + (value - h . u) u``."""
    u = _unit(_check(v))
    value = check_finite(value, f"clamp value at {site}", limit=MAX_EDIT_NORM)
    unit = _cast_once(u)

    def fn(h: Tensor) -> Tensor:
        _dim_guard(h, u, site)
        uu = unit(h)
        return h + (value - h @ uu).unsqueeze(-1) * uu

    return Edit(site, fn, positions)


def steer(
    vector,
    alpha: float = 1.0,
    *,
    mode: str = "add",
    positions: Positions = ALL,
    sites: Iterable[Site | str] | None = None,
    value: float = 0.0,
    strict: bool = False,
) -> list[Edit]:
    """Edits for every site of a `SteeringVector` (or a ``{Site: Tensor}`` dict).

    Args:
        vector: a SteeringVector or a mapping from sites to directions.
        alpha: strength for ``mode="add"``.
        mode: ``"add"``, ``"ablate"`` or ``"clamp"`` (the projection is set to ``value``).
        positions: which tokens are edited (all, prompt, generated, last prompt token, from an index).
        sites: a subset of the vector's sites (default: all of them).
        value: the projection ``mode="clamp"`` sets.
        strict: for a `SteeringVector`: refuse (instead of warn) when the model the edits run on is not the
            one the vector was made on (`SteeringVector.check_compatible`).
    """
    directions = getattr(vector, "directions", vector)
    chosen = list(directions) if sites is None else [Site.parse(s) for s in sites]
    missing = [str(s) for s in chosen if s not in directions]
    if missing:
        raise SteerlabError(f"the vector has no direction at {missing}; it has {[str(s) for s in directions]}")
    makers = {
        "add": lambda s: add(s, directions[s], alpha, positions),
        "ablate": lambda s: ablate(s, directions[s], positions),
        "clamp": lambda s: clamp(s, directions[s], value, positions),
    }
    if mode not in makers:
        raise SteerlabError(f"unknown mode {mode!r}; valid: {', '.join(makers)}")
    edits = [makers[mode](s) for s in chosen]
    if hasattr(vector, "check_compatible"):  # a SteeringVector: the backend checks it fits before running
        check = _once_per_backend(vector, strict)
        for edit in edits:
            edit.fn.check_backend = check
    return edits


def _once_per_backend(vector, strict: bool):
    """``check(backend)``: the vector's `check_compatible` against ``backend``, run once per backend."""
    seen: set[int] = set()

    def check(backend) -> None:
        if id(backend) not in seen:
            vector.check_compatible(backend, strict=strict)
            seen.add(id(backend))

    return check
