"""One entry point from contrast pairs to a `SteeringVector`, for every method.

| method       | direction                                                    | source                         |
|--------------|--------------------------------------------------------------|--------------------------------|
| `caa`        | mean(positive) - mean(negative), streamed                    | Rimsky et al. 2024 (CAA)       |
| `pca_center` | first PC of pair-centred activations                         | Zou et al. 2023 (RepE), repeng |
| `pca_diff`   | first PC of pair differences                                 | repeng                         |
| `probe`      | L2 logistic-regression weight, strength chosen on validation | RAPTOR-style linear probe      |
| `bipo`       | optimised so +v favours positive completions, -v negative    | Cao et al. 2024 (BiPO)         |

PCA and probe directions are sign-aligned with the mean difference and scaled to its projection,
so strengths are comparable across methods.

Example:
    >>> vec = extract(lm, train_pairs, sites=[Site(12)], dataset="persona:agreeableness")  # doctest: +SKIP
    >>> lm.generate(prompt, edits=steer(vec, 8.0))                                                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from steerlab.activations import PairActivations, collect_pairs, stream_mean_diff
from steerlab.errors import SteerlabError
from steerlab.methods import linear
from steerlab.sites import Site
from steerlab.vectors import Provenance, SteeringVector, dataset_hash

if TYPE_CHECKING:  # annotations only: a backend is used through its methods
    from steerlab.backends.base import Backend

METHODS: tuple[str, ...] = ("caa", "pca_center", "pca_diff", "probe", "bipo")
ALIASES = {"mean_diff": "caa", "pca-center": "pca_center", "pca-diff": "pca_diff"}


def provenance(backend: Backend, method: str, pairs: Sequence, *, dataset: str | None, read: str | None, **extra):
    """Provenance for a vector extracted on ``backend`` from ``pairs``."""
    return Provenance(
        model=backend.name, d_model=backend.d_model, n_layers=backend.n_layers, model_type=backend.model_type,
        backend=backend.kind, weight_processing=backend.weight_processing, method=method, dataset=dataset,
        dataset_hash=dataset_hash(pairs), read_position=read, n_pairs=len(pairs), extra=extra,
    )  # fmt: skip


def extract(
    backend: Backend,
    pairs: Sequence,
    sites: Sequence[Site | str | int] | Site | str | int,
    method: str = "caa",
    *,
    read: str = "completion_last",
    val_pairs: Sequence | None = None,
    dataset: str | None = None,
    batch_size: int = 16,
    system: str | None = None,
    chat: bool = True,
    progress: bool = True,
    activations: PairActivations | None = None,
    **method_kwargs,
) -> SteeringVector:
    """Extract a steering vector from contrast pairs at one or more sites.

    Args:
        backend: a loaded model (`steerlab.load_model`).
        pairs: contrast pairs (``.prompt``, ``.positive``, ``.negative``).
        sites: where to read (and later write) the vector; a layer number means ``resid_post``.
        method: one of ``caa``, ``pca_center``, ``pca_diff``, ``probe``, ``bipo``.
        read: ``completion_last`` (the answer token) or ``completion_mean``.
        val_pairs: validation pairs (the probe chooses its regularisation on them).
        dataset: a name recorded in the vector's provenance.
        activations: the pairs' activations at ``sites`` if already collected (`collect_pairs`, same
            ``read``), so they are not computed twice; not used by BiPO, which trains through the model.
        method_kwargs: passed to the method (e.g. ``epochs`` for BiPO, ``Cs`` for the probe).
    """
    method = ALIASES.get(method, method)
    if method not in METHODS:
        raise SteerlabError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if isinstance(sites, (Site, str, int)):
        sites = [sites]
    sites = [backend.site(s) for s in sites]
    opts = dict(read=read, batch_size=batch_size, system=system, chat=chat, progress=progress)
    extra: dict = {}
    if activations is not None and method != "bipo":
        missing = [str(s) for s in sites if s not in activations.pos]
        if missing or activations.read != read:
            raise SteerlabError(
                f"the given activations lack sites {missing} or were read at {activations.read!r}, not {read!r}; "
                "collect them with collect_pairs at the same sites and read position"
            )
    if method == "caa" and activations is not None:
        directions = {s: linear.mean_diff(activations.pos[s], activations.neg[s]) for s in sites}
    elif method == "caa":
        directions = stream_mean_diff(backend, pairs, sites, **opts)
    elif method == "bipo":
        from steerlab.methods.bipo import train_bipo

        directions = {}
        for site in sites:
            directions[site], log = train_bipo(backend, pairs, site, progress=progress, **method_kwargs)
            extra[f"final_loss.{site}"] = float(log["loss"].iloc[-1]) if len(log) else None
    else:
        acts = activations if activations is not None else collect_pairs(backend, pairs, sites, **opts)
        if method == "probe":
            val = collect_pairs(backend, val_pairs, sites, **opts) if val_pairs else None
            directions = {}
            for s in sites:
                vp, vn = (val.pos[s], val.neg[s]) if val is not None else (None, None)
                directions[s], info = linear.probe_direction(acts.pos[s], acts.neg[s], vp, vn, **method_kwargs)
                extra[f"C.{s}"] = info["C"]
        else:
            fn = getattr(linear, method)
            directions = {s: fn(acts.pos[s], acts.neg[s]) for s in sites}
    return SteeringVector(directions, provenance(backend, method, pairs, dataset=dataset, read=read, **extra))
