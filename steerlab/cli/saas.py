"""``steerlab saas``: build a SAAS vector (instance-semantic attribution) from a contrast-pair file."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer

from steerlab.cli.main import THREADS_HELP, BackendKind, app, clean_errors, set_threads


class SaasAgent(StrEnum):
    local = "local"
    openai = "openai"
    embedding = "embedding"


@app.command()
def saas(
    data: Path = typer.Option(..., "--data", help="Contrast pairs in the persona or CAA A/B format (JSON/JSONL)."),
    behavior: str = typer.Option(..., "--behavior", help="A description of the target behaviour, for Agent-1."),
    agent: SaasAgent = typer.Option(
        ..., "--agent", help="local: the loaded model answers the agent prompts; openai: an OpenAI-compatible "
        "server (STEERLAB_AGENT_BASE_URL, STEERLAB_AGENT_MODEL, STEERLAB_AGENT_API_KEY); embedding: Agent-3 by "
        "MiniLM similarity (Agents 1-2 local unless --subbehaviours).",
    ),  # fmt: skip
    out: Path = typer.Option(..., "--out", help="Output folder."),
    subbehaviours: Path | None = typer.Option(
        None, "--subbehaviours", help="A sub-behaviour YAML file used instead of Agents 1-2."
    ),
    layer: int = typer.Option(12, "--layer", help="Layer whose resid_post is read (and steered)."),
    tau: float = typer.Option(1.0, "--tau", min=0.0, help="Softmax temperature in units of std(s)."),
    n_train: int | None = typer.Option(None, "--n-train", min=4, help="Use a seeded sample of this many pairs."),
    cache: Path | None = typer.Option(None, "--cache", help="Agent-call cache folder (default OUT/agent_cache)."),
    model: str | None = typer.Option(None, "--model", help="Model (default: SmolLM2-135M-Instruct)."),
    backend: BackendKind = typer.Option(BackendKind.nnsight, "--backend"),
    seed: int = typer.Option(0, "--seed"),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Build a SAAS vector (instance-semantic attribution): eligibility, agent scores, softmax weights.

    Writes eligibility.csv, instances.csv (per-instance scores s_i and weights), subbehaviours.yaml,
    attempts.csv (every agent attempt), vector.safetensors/.json and summary.json to --out.
    """
    from steerlab.models import load_model
    from steerlab.pipelines.saas_vector import compute_saas_vector, read_pairs, write_saas_vector

    with clean_errors():
        set_threads(threads)
        pairs = read_pairs(data, n_train, seed)
        result = compute_saas_vector(
            load_model(model, backend=backend.value), pairs, behavior, agent.value, subbehaviours=subbehaviours,
            layer=layer, tau=tau, cache=cache or out / "agent_cache", dataset=str(data), seed=seed, progress=progress,
        )  # fmt: skip
        write_saas_vector(result, out)
        typer.echo(json.dumps(result.summary, indent=2))
