"""``steerlab sae train``: train (or load from the cache) a sparse autoencoder with SAELens."""

from __future__ import annotations

import json
from enum import StrEnum

import typer

from steerlab.cli.main import THREADS_HELP, BackendKind, app, clean_errors, set_threads

sae_app = typer.Typer(help="Sparse autoencoders (SAELens): train on the local corpora, cached.", no_args_is_help=True)
app.add_typer(sae_app, name="sae")


class SAEArchitecture(StrEnum):
    topk = "topk"
    standard = "standard"


@sae_app.command("train")
def sae_train(
    layer: int = typer.Option(12, "--layer", help="Layer (negative counts from the end)."),
    site: str = typer.Option("resid_post", "--site", help="resid_pre, attn_out, mlp_in, mlp_out or resid_post."),
    tokens: int = typer.Option(100_000, "--tokens", min=1, help="Distinct token activations read from the corpora."),
    architecture: SAEArchitecture = typer.Option(SAEArchitecture.topk, "--architecture", help="topk or standard (L1)."),
    d_sae: int = typer.Option(2304, "--d-sae", min=1, help="Number of latents."),
    k: int = typer.Option(32, "--k", min=1, help="TopK: active latents per token."),
    l1: float = typer.Option(
        5.0, "--l1", min=0.0, help="Standard: L1 coefficient (activations normalised to norm sqrt(d))."
    ),
    epochs: float = typer.Option(4.0, "--epochs", help="Passes over the activations (> 0)."),
    eval_tokens: int = typer.Option(8192, "--eval-tokens", min=64, help="Held-out WikiText-2 tokens for the metrics."),
    model: str | None = typer.Option(None, "--model", help="Model name (default: the embedded SmolLM2-135M-Instruct)."),
    backend: BackendKind = typer.Option(BackendKind.nnsight, "--backend", help="Backend that reads activations."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Train (or load from the cache) an SAE and print L0, explained variance, dead share and loss recovered.

    Activations of the local corpora (WikiText-2, NLTK Gutenberg, tiny-shakespeare; position 0 left out)
    are read once; the SAE is trained on them with SAELens and saved under ~/.cache/steerlab/saes/KEY.
    A held-out explained variance below 0.5 is warned about (usually too few --tokens).
    """
    with clean_errors():
        set_threads(threads)
        from steerlab.models import load_model
        from steerlab.sae import SAEConfig, train_sae
        from steerlab.sites import Site

        where = Site(layer, site)  # the site kind is checked before the model loads (the layer range after)
        config = SAEConfig(architecture.value, d_sae=d_sae, k=k, l1_coefficient=l1, n_tokens=tokens, epochs=epochs)
        lm = load_model(model, backend=backend.value)
        trained = train_sae(lm, where, config, eval_tokens=eval_tokens, progress=progress)
        typer.echo(f"SAE at {trained.site} of {lm.name}: {trained.folder}")
        typer.echo(json.dumps({name: round(v, 4) for name, v in trained.metrics.items()}, indent=2))
