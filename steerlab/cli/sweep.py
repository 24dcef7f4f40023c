"""``steerlab sweep``: extract a steering vector from a data file at many layers, sweep its strength on
held-out data, and write the results, the best layer's vector, a heatmap, layer scores and a summary.

The work is the library's: records from `steerlab.data`, vectors from `steerlab.extraction`
(`extract` on contrast pairs, `extract_from_labels` on labelled texts, `steerlab.prompts.mcq_pairs`
for MCQ items), a `steerlab.tasks` task, `steerlab.sweeps.sweep` and `steerlab.sweeps.choose_layer`.
This module reads the options, checks them before anything slow, writes the files and prints.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from steerlab.cli.main import THREADS_HELP, BackendKind, app, clean_errors, parse_coeffs, parse_layers, set_threads
from steerlab.errors import SteerlabError


class Format(StrEnum):
    persona = "persona"  # Yes/No records: question, answer_matching_behavior, answer_not_matching_behavior
    ab = "ab"  # CAA A/B questions: the same fields, answers are option labels such as "(A)"
    mcq = "mcq"  # JSON Lines: question, choices (list), answer (0-based index)
    text_label = "text-label"  # text and a binary label (CSV/TSV with a header, or JSON(L))


class Method(StrEnum):
    caa = "caa"
    pca_center = "pca-center"
    pca_diff = "pca-diff"
    probe = "probe"
    bipo = "bipo"


class PositionsKind(StrEnum):
    all = "all"
    last_prompt = "last_prompt"


@app.command()
def sweep(
    data: Path = typer.Option(..., "--data", help="The data file (any path, in the format given by --format)."),
    fmt: Format = typer.Option(..., "--format", help="Record format of --data."),
    method: Method = typer.Option(Method.caa, "--method", help="How the vector is extracted."),
    model: str | None = typer.Option(
        None, "--model", help="Embedded name, folder or hub name (default: SmolLM2-135M-Instruct)."
    ),
    backend: BackendKind = typer.Option(BackendKind.tl, "--backend"),
    layers: str = typer.Option("all", "--layers", help="'all', '10-15', '8,12,16', negatives count from the end."),
    coeffs: str = typer.Option("-8,0,8", "--coeffs", help="Comma-separated strengths, e.g. --coeffs=-8,0,8."),
    out: Path = typer.Option(..., "--out", help="Output folder (a rerun with the same settings resumes)."),
    n_train: int | None = typer.Option(
        None, "--n-train", min=1, help="Cap on training records (default: all of the 60% train split)."
    ),
    n_test: int | None = typer.Option(
        None, "--n-test", min=1, help="Cap on test records (default: all of the 20% test split)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/val/test split and the methods."),
    positions: PositionsKind = typer.Option(PositionsKind.all, "--positions", help="Steered token positions."),
    site: str = typer.Option(
        "resid_post", "--site", help="Site kind: resid_pre, attn_out, mlp_in, mlp_out or resid_post."
    ),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or mps (default: the best available)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Extract a steering vector from a data file at many layers and sweep its strength on held-out data.

    Splits the records 60/20/20 (seeded), extracts the vector on train (val tunes the probe), evaluates
    every layer x coeff on test and writes results.csv (tidy), vector.safetensors/.json (best layer),
    heatmap.png, layer_scores.csv and summary.json to --out. Metrics: p_behaviour (persona, ab),
    accuracy (mcq), loglik_gap (text-label: per-token log-likelihood of label-1 minus label-0 texts).
    """
    with clean_errors():
        set_threads(threads)
        summary = run_sweep(
            data=data, fmt=fmt.value, method=method.value.replace("-", "_"), model=model, backend=backend.value,
            layers=layers, coeffs=coeffs, out=out, n_train=n_train, n_test=n_test, seed=seed,
            positions=positions.value, site_kind=site, batch_size=batch_size, device=device, progress=progress,
        )  # fmt: skip
        _print_summary(summary)


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 1)


def _load_records(path: Path, fmt: str) -> list:
    from steerlab import data

    readers = {
        "persona": data.load_persona_file,
        "ab": data.load_ab_file,
        "mcq": data.load_mcq_jsonl,
        "text-label": data.load_text_label,
    }
    records = readers[fmt](path)
    if fmt == "text-label":
        labels = sorted({item.label for item in records})
        if labels != [0, 1]:
            raise data.DataError(
                f"{path}: a text-label sweep needs binary labels 0 and 1 (1 = the direction to steer towards); "
                f"found labels {labels}"
            )
    return records


def _check_parts(path: Path, fmt: str, parts: dict[str, list], seed: int) -> None:
    from steerlab.data import DataError

    for name in ("train", "test"):
        if len(parts[name]) < 2:
            raise DataError(
                f"{path}: the {name} split has {len(parts[name])} record(s) (of {sum(map(len, parts.values()))}); "
                "give a file with more records (at least 10 for a 60/20/20 split) or raise --n-train/--n-test"
            )
        if fmt == "text-label" and len({it.label for it in parts[name]}) < 2:
            raise DataError(
                f"{path}: the {name} split (seed {seed}) holds only label {parts[name][0].label}; give more records of "
                "each label or another --seed"
            )


def run_sweep(
    *,
    data: Path,
    fmt: str,
    method: str,
    model: str | None,
    backend: str,
    layers: str,
    coeffs: str,
    out: Path,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    positions: str = "all",
    site_kind: str = "resid_post",
    batch_size: int = 16,
    device: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The work of ``steerlab sweep`` (see its help); returns the summary it writes to ``out/summary.json``."""
    from steerlab.sites import ALL, LAST_PROMPT, Site

    if fmt == "text-label":
        from steerlab.extraction import LABEL_METHODS

        if method not in LABEL_METHODS:
            raise SteerlabError(
                f"--method {method.replace('_', '-')} needs contrast pairs; text-label data has unpaired texts, so "
                "only caa, pca-center and pca-diff apply (use --format persona/ab/mcq for probe and bipo)"
            )
        if positions == "last_prompt":
            raise SteerlabError(
                "--positions last_prompt steers only the last token, which predicts no scored token of a text-label "
                "evaluation; use --positions all"
            )
    Site(0, site_kind)  # validates the kind before anything slow happens
    strengths = parse_coeffs(coeffs)
    parse_layers(layers, 10**6)  # syntax check now; the range is checked once the model is loaded
    records = _load_records(data, fmt)

    from steerlab.data import split

    parts = dict(zip(("train", "val", "test"), split(records, (0.6, 0.2, 0.2), seed=seed), strict=True))
    if n_train is not None:
        parts["train"], parts["val"] = parts["train"][:n_train], parts["val"][:n_train]
    if n_test is not None:
        parts["test"] = parts["test"][:n_test]
    _check_parts(data, fmt, parts, seed)

    from steerlab.models import load_model

    timings: dict[str, float] = {}
    with _timed(timings, "load"):
        lm = load_model(model, backend=backend, device=device)
    sites = [Site(layer, site_kind) for layer in parse_layers(layers, lm.n_layers, lm.name)]
    dataset = f"{fmt}:{data.name}"
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "text-label":
        from steerlab.extraction import extract_from_labels
        from steerlab.tasks import TextLoglikTask

        task = TextLoglikTask.from_items(lm, parts["test"], batch_size=batch_size)
        with _timed(timings, "extract"):
            vec, acts = extract_from_labels(
                lm, parts["train"], sites, method, seed=seed, dataset=dataset, batch_size=batch_size,
                progress=progress,
            )  # fmt: skip
    else:
        from steerlab.activations import collect_pairs
        from steerlab.extraction import extract
        from steerlab.prompts import mcq_pairs
        from steerlab.tasks import ChoiceTask

        if fmt == "mcq":
            train, val = mcq_pairs(parts["train"], seed), mcq_pairs(parts["val"], seed + 1)
            task = ChoiceTask.from_mcq(lm, parts["test"], batch_size=batch_size)
        else:
            train, val = parts["train"], parts["val"]
            task = ChoiceTask.from_pairs(lm, parts["test"], batch_size=batch_size)
        kwargs = {"seed": seed} if method in ("probe", "bipo") else {}
        with _timed(timings, "activations"):  # one pass serves the method and the layer scores
            acts = collect_pairs(lm, train, sites, batch_size=batch_size, progress=progress)
        with _timed(timings, "extract"):
            vec = extract(
                lm, train, sites, method, val_pairs=val or None, dataset=dataset, batch_size=batch_size,
                progress=progress, activations=acts, **kwargs,
            )  # fmt: skip
    from steerlab.sweeps import choose_layer, layer_scores
    from steerlab.sweeps import sweep as run_grid

    steer_at = LAST_PROMPT if positions == "last_prompt" else ALL
    with _timed(timings, "sweep"):
        df = run_grid(lm, {(method, seed): vec}, task, coeffs=strengths, positions=steer_at, out=out, progress=progress)
    scores = layer_scores(acts.pos, acts.neg)
    choice = choose_layer(df, task.metrics[0], scores)
    _write_outputs(lm, vec, df, scores, choice, out, metric=task.metrics[0], data=data)
    summary = {
        "data": str(data), "format": fmt, "model": lm.name, "backend": lm.kind, "method": vec.provenance.method,
        "site": choice.site.kind, "layers": [s.layer for s in vec.sites], "coeffs": sorted(df.coeff.unique().tolist()),
        "n_train": len(parts["train"]), "n_val": len(parts["val"]), "n_test": len(parts["test"]),
        "metric": task.metrics[0], "baseline": choice.baseline, "best_layer": choice.site.layer,
        "best_effect": choice.effect, "auto_layer": choice.auto.layer, "auto_layer_score": choice.auto_score,
        "auto_layer_sweep_rank": choice.auto_rank, "auto_layer_effect": choice.auto_effect,
        "n_layers_swept": len(choice.effects), "seconds": timings, "out": str(out),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _write_outputs(lm, vec, df, scores, choice, out: Path, *, metric: str, data: Path) -> None:
    """Save the best site's vector, the layer scores and the heatmap of ``metric``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    from steerlab.plotting import plot_layer_heatmap, save_figure

    vec.select([choice.site]).save(out / "vector")
    scores.to_csv(out / "layer_scores.csv", index=False)
    ax = plot_layer_heatmap(df, metric=metric)
    ax.set_title(f"{metric}: {vec.provenance.method} on {data.name} ({lm.name})")
    save_figure(ax.figure, "heatmap", folder=out)
    plt.close(ax.figure)


def _print_summary(s: dict[str, Any]) -> None:
    lo, hi = s["coeffs"][0], s["coeffs"][-1]
    base = "n/a (coeff 0 not swept)" if s["baseline"] is None else f"{s['baseline']:.3f}"
    typer.echo(
        f"{s['format']} data {s['data']}: train {s['n_train']}, val {s['n_val']}, test {s['n_test']}\n"
        f"{s['method']} on {s['model']} ({s['backend']}), {s['site']} layers {_span(s['layers'])}, "
        f"coeffs {', '.join(f'{c:g}' for c in s['coeffs'])}\n"
        f"time: {', '.join(f'{k} {v:g} s' for k, v in s['seconds'].items())}\n"
        f"unsteered {s['metric']}: {base}\n"
        f"best layer: {s['best_layer']} (effect {s['best_effect']:+.3f} in {s['metric']} from coeff {lo:g} to {hi:g})\n"
        f"automatic layer choice (layer_scores on training activations): layer {s['auto_layer']} "
        f"(score {s['auto_layer_score']:.3f}), rank {s['auto_layer_sweep_rank']} of {s['n_layers_swept']} in the "
        f"sweep (effect {s['auto_layer_effect']:+.3f})"
    )
    if s["best_effect"] <= 0:
        typer.echo(
            f"note: no layer raised {s['metric']} from coeff {lo:g} to {hi:g}; the vector does not steer this way "
            "here (its sign may be reversed, or the strengths too small)"
        )
    typer.echo(f"wrote results.csv, vector.safetensors/.json (layer {s['best_layer']}), heatmap.png/.pdf, "
               f"layer_scores.csv, summary.json in {s['out']}")  # fmt: skip


def _span(layers: list[int]) -> str:
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))
