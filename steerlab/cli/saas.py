"""``steerlab saas``: build a SAAS vector (instance-semantic attribution) from a contrast-pair file."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import typer

from steerlab.cli.main import (
    THREADS_HELP,
    BackendKind,
    app,
    clean_errors,
    existing_file,
    output_folder,
    set_threads,
)
from steerlab.errors import SteerlabError


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
        "MiniLM similarity, offline; without --subbehaviours the behaviour statement is the one sub-behaviour.",
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
    agent_timeout: float = typer.Option(
        30.0, "--agent-timeout",
        help="openai agent: seconds to wait for each answer before a retry (connecting: at most 10 s).",
    ),  # fmt: skip
    seed: int = typer.Option(0, "--seed"),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Build a SAAS vector (instance-semantic attribution): eligibility, agent scores, softmax weights.

    Writes eligibility.csv, instances.csv (per-instance scores s_i and weights), subbehaviours.yaml,
    attempts.csv (every agent attempt), vector.safetensors/.json and summary.json to --out.
    Offline out of the box: --agent embedding with no --subbehaviours scores instances against the
    behaviour statement itself (recorded as the sub-behaviours' source).
    """
    from steerlab import agents
    from steerlab.models import load_model
    from steerlab.pipelines.saas_vector import compute_saas_vector, read_pairs, write_saas_vector

    with clean_errors():
        set_threads(threads)
        if not (agent_timeout > 0 and agent_timeout != float("inf")):
            raise SteerlabError(f"--agent-timeout must be a positive number of seconds, got {agent_timeout}")
        existing_file(data, "--data")
        if subbehaviours is not None:
            existing_file(subbehaviours, "--subbehaviours")
        out = output_folder(out)
        subs = subbehaviours
        if subbehaviours is None and agent == SaasAgent.embedding:
            subs = agents.from_statement(behavior)
            typer.echo(
                "no decomposition agent (--agent embedding without --subbehaviours): the behaviour statement is the "
                f"single sub-behaviour (source {subs.source!r}, written to {out / 'subbehaviours.yaml'}); pass "
                "--subbehaviours FILE, or --agent local/openai, to decompose it",
                err=True,
            )
        pairs = read_pairs(data, n_train, seed)
        with _agent_timeout(agent_timeout):
            result = compute_saas_vector(
                load_model(model, backend=backend.value), pairs, behavior, agent.value, subbehaviours=subs,
                layer=layer, tau=tau, cache=cache or out / "agent_cache", dataset=str(data), seed=seed,
                progress=progress,
            )  # fmt: skip
        write_saas_vector(result, out)
        typer.echo(json.dumps(result.summary, indent=2))


@contextlib.contextmanager
def _agent_timeout(seconds: float) -> Iterator[None]:
    """``STEERLAB_AGENT_TIMEOUT`` set for one command (the OpenAI-compatible agent reads it), then restored."""
    before = os.environ.get("STEERLAB_AGENT_TIMEOUT")
    os.environ["STEERLAB_AGENT_TIMEOUT"] = f"{seconds:g}"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("STEERLAB_AGENT_TIMEOUT", None)
        else:
            os.environ["STEERLAB_AGENT_TIMEOUT"] = before
