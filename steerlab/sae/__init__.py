"""SAE-latent steering: train SAEs with SAELens, explain vectors with latents, steer with latents.

    >>> from steerlab.sae import SAEConfig, train_sae, decompose, add_latent, clamp_latent, sparse_vector

Modules: `corpus` (site activations over local text), `train` (train / cache / load SAEs), `quality`
(L0, explained variance, dead latents, loss recovered), `compare` (steering methods under the evaluation
protocol: oriented and chosen on validation, tested beside a random band, ranked with Holm's correction,
priced in perplexity), `explain` (decompose a vector into latents, top-activating snippets), `steer` (latent
edits, clamping as a sweep edit, sparse reconstructions), `yapo` (a k-sparse latent code trained with BiPO's
objective). SAELens is imported only inside these modules, when a function needs it.
"""

from steerlab.sae.compare import Comparison, Method, compare_methods
from steerlab.sae.corpus import DEFAULT_CORPORA, CorpusActivations, collect_corpus
from steerlab.sae.explain import decompose, explain_vector, latent_scores, top_activating
from steerlab.sae.quality import latent_stats, quality_table, sae_quality, splice
from steerlab.sae.steer import (
    ClampLatent,
    add_latent,
    clamp_latent,
    decoder_row,
    latent_vector,
    sparse_code,
    sparse_vector,
)
from steerlab.sae.train import SAEConfig, TrainedSAE, fit_sae, load_sae, save_sae, train_sae
from steerlab.sae.yapo import train_yapo

__all__ = [
    "DEFAULT_CORPORA",
    "ClampLatent",
    "Comparison",
    "CorpusActivations",
    "Method",
    "SAEConfig",
    "TrainedSAE",
    "add_latent",
    "clamp_latent",
    "collect_corpus",
    "compare_methods",
    "decoder_row",
    "decompose",
    "explain_vector",
    "fit_sae",
    "latent_scores",
    "latent_stats",
    "latent_vector",
    "load_sae",
    "quality_table",
    "sae_quality",
    "save_sae",
    "sparse_code",
    "sparse_vector",
    "splice",
    "top_activating",
    "train_sae",
    "train_yapo",
]
