"""``steerlab data``: list the datasets and download them from their public sources.

    steerlab data list
    steerlab data fetch persona caa bbq          # whole datasets
    steerlab data fetch persona:openness arc     # one file, one dataset
    steerlab data fetch --all                    # everything, 107 MB

Files go to ``$STEERLAB_CACHE/data`` (default ``~/.cache/steerlab/data``); ``STEERLAB_DATA_MIRROR`` serves
``https://HOST/PATH`` from ``MIRROR/HOST/PATH`` (a URL prefix or a folder). Errors end with a one-line
message and exit code 2. ``data_app`` is a typer app, mounted on the main CLI as ``steerlab data``.
"""

from __future__ import annotations

import typer

from steerlab.cli.main import app

data_app = typer.Typer(
    help="Datasets: list them and download them from their public sources (checked by sha256).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("list")
def list_command() -> None:
    """Every dataset name of `load_dataset`, with its source, license, size, and whether it is here."""
    import pandas as pd

    from steerlab.data import list_datasets
    from steerlab.data.sources import cache_dir

    table = list_datasets().drop(columns=["local"])
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        typer.echo(table.to_string(index=False))
    typer.echo(f"\ncache: {cache_dir()}  (fetch with `steerlab data fetch NAME`)")


@data_app.command("fetch")
def fetch_command(
    names: list[str] = typer.Argument(
        None, help="dataset names (persona, caa, bbq, ...), full specs (persona:openness) or folders"
    ),
    all_: bool = typer.Option(False, "--all", help="fetch every file (107 MB)"),
    timeout: float = typer.Option(30.0, help="seconds to wait for a connection and for each read"),
    retries: int = typer.Option(3, help="resume an interrupted file this many times before giving up"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Download datasets into the cache, checking each file's sha256; reruns resume and skip what is there."""
    from steerlab.data import DataError, fetch
    from steerlab.data.sources import cache_dir

    chosen = ["all"] if all_ else list(names or [])
    if not chosen:
        typer.echo("error: name at least one dataset (see `steerlab data list`) or pass --all", err=True)
        raise typer.Exit(2)
    try:
        report = fetch(chosen, progress=progress, timeout=timeout, retries=retries)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    new = report[report["status"] == "downloaded"]
    typer.echo(
        f"{len(report)} files in {cache_dir()}: {len(new)} downloaded ({new['bytes'].sum() / 1e6:.2f} MB), "
        f"{len(report) - len(new)} already there; every file matches its sha256"
    )
