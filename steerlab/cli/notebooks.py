"""``steerlab notebooks``: execute the numbered notebooks with papermill (smoke or full mode)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from steerlab.cli.main import app, clean_errors, existing_file, output_folder
from steerlab.errors import SteerlabError


@app.command()
def notebooks(
    paths: list[Path] | None = typer.Argument(None, help="Notebooks to run (default: notebooks/NN_*.ipynb)."),
    out: Path | None = typer.Option(
        None, "--out", help="Figures folder (FIGURES and $STEERLAB_FIGURES); default figures/, a temporary "
        "folder with --smoke (a smoke run never overwrites the committed figures).",
    ),  # fmt: skip
    smoke: bool = typer.Option(False, "--smoke/--no-smoke", help="Quick CI run (SMOKE=True) or the full run."),
    model: str | None = typer.Option(
        None, "--model", help="MODEL: a hub name, a local folder or an embedded model (default: SmolLM2-135M-Instruct)."
    ),
    device: str | None = typer.Option(None, "--device", help="DEVICE: cuda, cuda:1, mps or cpu (default: the best)."),
    dtype: str | None = typer.Option(None, "--dtype", help="DTYPE: float32, bfloat16 or float16 (default by device)."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="BATCH_SIZE: an upper bound on the notebooks' batch sizes."
    ),
    inplace: bool | None = typer.Option(
        None, "--inplace/--no-inplace", help="Write executed notebooks back (default: in full mode only)."
    ),
    timeout: int = typer.Option(3600, "--timeout", min=1, help="Seconds each cell may run."),
) -> None:
    """Execute numbered notebooks with papermill (SMOKE, FIGURES and the options given injected as parameters)."""
    import tempfile

    from steerlab.notebook_runner import NotebookError, run_notebook

    with clean_errors():
        if not paths:
            paths = sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
            if not paths:
                raise SteerlabError(f"no numbered notebooks (NN_*.ipynb) in {Path('notebooks').resolve()}; pass paths")
        for path in paths:
            existing_file(path, "notebook")
        if out is None:
            out = Path(tempfile.mkdtemp(prefix="steerlab-figures-")) if smoke else Path("figures")
        out = output_folder(out)
        write_back = (not smoke) if inplace is None else inplace
        spare = None if write_back else Path(tempfile.mkdtemp(prefix="steerlab-nb-"))
        failed = []
        for path in paths:
            start = time.perf_counter()
            typer.echo(f"running {path} ({'smoke' if smoke else 'full'}) ...")
            try:
                done = run_notebook(
                    path, smoke=smoke, figures=out, model=model, device=device, dtype=dtype, batch_size=batch_size,
                    output=Path(path) if write_back else spare / Path(path).name, timeout=timeout,
                )  # fmt: skip
            except NotebookError as exc:
                failed.append(path)
                typer.echo(f"  FAILED: {exc}", err=True)
                continue
            typer.echo(f"  ok in {time.perf_counter() - start:.0f} s -> {done}")
        typer.echo(f"{len(paths) - len(failed)} of {len(paths)} notebooks ran; figures in {out.resolve()}")
        if failed:
            raise typer.Exit(1)
