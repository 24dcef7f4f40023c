"""From activations to a `SteeringVector`: one entry point from contrast pairs for every method, plus
vectors from unpaired labelled texts (`extract_from_labels`) and from PAS contrast sets (`pas_vector`).

| method       | direction                                                    | source                         |
|--------------|--------------------------------------------------------------|--------------------------------|
| `caa`        | mean(positive) - mean(negative), streamed                    | Rimsky et al. 2024 (CAA)       |
| `pca_center` | first PC of all activations centred together                 | SAAS baseline, after RepE      |
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

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from steerlab import memory
from steerlab.activations import PairActivations, collect_pairs, collect_prompts, iter_pair_batches
from steerlab.errors import SteerlabError
from steerlab.methods import linear
from steerlab.methods.pas import PASActivations, ReadSite, Variant, contrast_sets, read_site
from steerlab.provenance import model_fingerprint
from steerlab.sites import Site
from steerlab.vectors import Provenance, SteeringVector, dataset_hash

if TYPE_CHECKING:  # annotations only: a backend is used through its methods
    from steerlab.backends.base import Backend

METHODS: tuple[str, ...] = ("caa", "pca_center", "pca_diff", "probe", "bipo")
LABEL_METHODS: tuple[str, ...] = ("caa", "pca_center", "pca_diff")
"""The methods `extract_from_labels` can run on unpaired texts (probe and BiPO need contrast pairs)."""
ALIASES = {"mean_diff": "caa", "pca-center": "pca_center", "pca-diff": "pca_diff"}


def provenance(backend: Backend, method: str, pairs: Sequence, *, dataset: str | None, read: str | None, **extra):
    """Provenance for a vector extracted on ``backend`` from ``pairs`` (with the model's fingerprints)."""
    return Provenance(
        model=backend.name, d_model=backend.d_model, n_layers=backend.n_layers, model_type=backend.model_type,
        backend=backend.kind, weight_processing=backend.weight_processing, method=method, dataset=dataset,
        dataset_hash=dataset_hash(pairs), read_position=read, n_pairs=len(pairs), extra=extra,
        **model_fingerprint(backend),
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
    batch_size: int | None = None,
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
        batch_size: pairs per forward pass (default: `steerlab.memory`'s setting, else 16; halved on
            out-of-memory). Each pass stops after the deepest site's block.
        activations: the pairs' activations at ``sites`` if already collected (`collect_pairs`, same
            ``read``), so they are not computed twice; not used by BiPO, which trains through the model.
        method_kwargs: passed to the method (e.g. ``epochs`` for BiPO, ``Cs`` for the probe).
    """
    method = ALIASES.get(method, method)
    if method not in METHODS:
        raise SteerlabError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    batch_size = memory.batch_size(batch_size)
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
            extra[f"converged.{site}"] = bool(log.attrs["converged"])
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


def stream_mean_diff(
    backend: Backend, pairs: Sequence, sites: Sequence[Site | str | int], **kwargs
) -> dict[Site, Tensor]:
    """Mean difference per site from running sums (CAA, Rimsky et al. 2024): memory does not grow with
    the number of pairs. Takes the keyword arguments of `steerlab.activations.iter_pair_batches`."""
    acc: dict[Site, linear.MeanDiffAccumulator] = {}
    for p, n in iter_pair_batches(backend, pairs, sites, **kwargs):
        for s in p:
            acc.setdefault(s, linear.MeanDiffAccumulator(backend.d_model)).add(p[s], n[s])
    return {s: a.result() for s, a in acc.items()}


def extract_from_labels(
    backend: Backend,
    items: Sequence,
    sites: Sequence[Site | str | int],
    method: str = "caa",
    *,
    seed: int = 0,
    read: str = "token_mean",
    dataset: str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> tuple[SteeringVector, PairActivations]:
    """A vector from unpaired labelled texts (no chat template), each text read as the mean over its tokens.

    ``caa``: mean activation of label-1 texts minus mean of label-0 texts (CAA's mean difference,
    Rimsky et al. 2024, without pairs; with ``read="token_mean"`` each text is the mean over its tokens
    after the first, as ActAdd-style sentiment directions are built). ``pca_center`` / ``pca_diff``: the
    PCA direction over random label-1/label-0 pairs (as many as the smaller label has texts, drawn with
    ``seed``).

    Args:
        items: records with ``text`` and ``label`` (0 or 1), such as `steerlab.data.TextItem`.
        read: ``token_mean`` (default; the first token, an attention sink, is left out), ``prompt_mean``
            (every token) or ``prompt_last`` (the last token).

    Returns:
        The vector and the randomly paired activations, e.g. for `steerlab.sweeps.layer_scores`.

    Example:
        >>> vec, acts = extract_from_labels(lm, data.load_text_label("mood.csv"), [Site(6)])   # doctest: +SKIP
    """
    method = ALIASES.get(method, method)
    if method not in LABEL_METHODS:
        raise SteerlabError(
            f"method {method!r} needs contrast pairs; unpaired labelled texts allow {', '.join(LABEL_METHODS)}"
        )
    texts = {label: [it.text for it in items if it.label == label] for label in (1, 0)}
    if not texts[1] or not texts[0]:
        raise SteerlabError(
            f"labelled texts need both labels; got {len(texts[1])} of label 1 and {len(texts[0])} of label 0"
        )
    acts = {
        label: collect_prompts(backend, texts[label], sites, read=read, batch_size=batch_size, progress=progress)
        for label in (1, 0)
    }  # fmt: skip
    n = min(len(texts[1]), len(texts[0]))
    gen = torch.Generator().manual_seed(seed)
    order = {label: torch.randperm(len(texts[label]), generator=gen)[:n] for label in (1, 0)}
    pos = {s: acts[1][s][order[1]] for s in acts[1]}
    neg = {s: acts[0][s][order[0]] for s in acts[0]}
    if method == "caa":
        directions = {s: linear.mean_diff(acts[1][s], acts[0][s]) for s in acts[1]}
    else:
        fn = getattr(linear, method)
        directions = {s: fn(pos[s], neg[s]) for s in pos}
    pairing = f"random label-1/label-0 pairs, seed {seed}"
    prov = provenance(backend, method, items, dataset=dataset, read=read, pairing=pairing)
    return SteeringVector(directions, prov), PairActivations(pos, neg, read)


def pas_vector(
    variant: Variant,
    acts: PASActivations,
    sites: Sequence[Site],
    *,
    read: ReadSite = "same",
    provenance: Provenance | None = None,
) -> SteeringVector:
    """The PAS steering vector (Cui & Chen 2025) written at each of ``sites``: ``mean(pos) - mean(neg)``
    of one variant's contrast sets (`steerlab.methods.pas.contrast_sets`) at its read site.

    ``provenance`` (e.g. from this module's `provenance`) gets the variant, read site and set sizes
    added to its ``extra``; without it the model is recorded as unknown.

    Example:
        >>> vec = pas_vector("ipasa", train_acts, [Site(12)], read="resid_prev")   # doctest: +SKIP
    """
    if not sites:
        raise SteerlabError("no sites given; pass e.g. [Site(12)]")
    directions = {}
    for site in sites:
        pos, neg = contrast_sets(variant, acts, read_site(site, read))
        directions[site] = linear.mean_diff(pos, neg)
    n_pos, n_neg = (len(x) for x in contrast_sets(variant, acts, read_site(sites[0], read)))
    d_model = next(iter(directions.values())).shape[0]
    base = provenance or Provenance(model="unknown", d_model=d_model, method="pas")
    prov = dataclasses.replace(
        base,
        method=f"pas_{variant}",
        read_position="last_token",
        n_pairs=min(n_pos, n_neg),
        dataset_hash=base.dataset_hash or dataset_hash(acts.correct.tolist()),
        extra={**base.extra, "read_site": read, "n_pos": n_pos, "n_neg": n_neg,
               "paper": "Cui & Chen 2025, arXiv 2509.22739"},
    )  # fmt: skip
    return SteeringVector(directions, prov)
