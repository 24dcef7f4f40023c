"""``steerlab pas``: Painless Activation Steering (Cui & Chen 2025) on any MCQ JSONL file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from steerlab.cli.main import (
    THREADS_HELP,
    app,
    clean_errors,
    existing_file,
    output_folder,
    parse_coeffs,
    parse_layers,
    set_threads,
)


class PASVariant(StrEnum):
    pasf = "pasf"
    ipasa = "ipasa"
    ipaswo = "ipaswo"


@app.command()
def pas(
    data: Path = typer.Option(..., "--data", help="MCQ JSONL file: one {question, choices, answer} per line."),
    variant: PASVariant = typer.Option(PASVariant.ipasa, "--variant", help="Contrast sets: pasf, ipasa or ipaswo."),
    model: str = typer.Option(None, "--model", help="Model name or folder (default: the embedded SmolLM2)."),
    seeds: int = typer.Option(5, "--seeds", min=1, help="Random 60/20/20 splits (the paper used 15)."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv, grid.csv, summary.json, vector."),
    layers: str = typer.Option("6,12,18,24", "--layers", help="Layers of the validation grid."),
    fractions: str = typer.Option("-0.5,-0.25,-0.1,0.1,0.25,0.5", "--fractions",
                                  help="Strengths as fractions of the site's typical token norm ('none': none)."),
    coeffs: str = typer.Option("-4,-1,1,4", "--coeffs",
                               help="Raw strengths: the paper's unnormalised vector times each ('none': no raw grid)."),
    controls: int = typer.Option(8, "--controls", min=0, help="Random directions at each chosen test cell (the band)."),
    n_items: int = typer.Option(300, "--n-items", min=30, help="Cap on items (sampled with seed 0)."),
    block_size: int = typer.Option(10, "--block-size", min=1, help="Items per cached block (splits are over blocks)."),
    threads: int = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
) -> None:
    """Painless Activation Steering (Cui & Chen 2025) on any MCQ dataset: contrast sets from the model's
    own answers, the vector added at the last prompt token, layer and strength chosen on validation (among the
    positive strengths of both scales), test accuracy steered vs unsteered per seed beside a random band.
    Rerunning into the same --out resumes (no finished grid cell is recomputed)."""
    from steerlab.models import load_model
    from steerlab.pipelines.pas import PASConfig, run_file

    with clean_errors():
        set_threads(threads)
        existing_file(data, "--data")
        output_folder(out)
        grids = {name: () if text.strip().lower() == "none" else tuple(parse_coeffs(text, min_count=1))
                 for name, text in (("fractions", fractions), ("coeffs", coeffs))}  # fmt: skip
        PASConfig(**grids, controls=controls)  # grid errors now, before the model loads
        parse_layers(layers, 10**6)  # syntax check now; the range is checked once the model is loaded
        lm = load_model(model)
        cfg = PASConfig(layers=tuple(parse_layers(layers, lm.n_layers, lm.name)), controls=controls, **grids)
        s = run_file(str(data), str(out), variant=variant.value, model=lm, seeds=seeds, n_items=n_items,
                     block_size=block_size, cfg=cfg)  # fmt: skip
        typer.echo(f"{s['variant']} on {s['model']}: {s['n_items']} items, unsteered accuracy {s['base_accuracy']:.3f}")
        for c in s["chosen"]:
            typer.echo(f"  seed {c['seed']}: layer {c['layer']}, {c['unit']} {c['strength']:g} "
                       f"(coeff {c['coeff']:.3g}; val acc {c['val_accuracy']:.3f})")  # fmt: skip
        for t in s["test"]:
            ci = f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
            typer.echo(f"  test ({t['selection']}): delta acc {t['delta']:+.3f} {ci}, "
                       f"one-sided p {t['p']:.3g}, {t['n_seeds']} seeds")  # fmt: skip
        for e in s["errors"]:
            typer.echo(f"  skipped seeds: {e}", err=True)
        typer.echo(f"wrote {out}")
