"""``steerlab sweep``: extract a steering vector from a data file and evaluate it under the protocol.

Records are split train/val/test, label-balanced (`steerlab.data.stratified_split`); the vector is
extracted on train at every requested layer; `steerlab.protocol.evaluate_vector` orients each layer on
validation, chooses the layer and strength on validation, and tests the chosen cell beside random
directions of the same norm, with per-label effects and the minimum detectable effect. Evaluations:
``choice`` (behaviour probability or MCQ accuracy), ``loglik`` (text-label log-likelihood) and
``generate`` (open-ended generations from a prompts file, scored by ``--scorer``).

Many workers share one ``--out`` (`steerlab.claims`): ``--workers N`` starts N-1 helper processes beside
this one (one thread each); ``--shard I/N`` makes this process one job of an array. The vector is
extracted once per folder (by the first worker; the others load it), then every worker runs the protocol
on the shared folder, claiming cells. The rule for ``--shard``: a job computes its share of the
validation grid, then exits if other validation cells are still missing (exit status 0, saying so); the
job that finds the grid complete (the last) chooses the cell, computes the test cells and writes the
outputs. Without ``--shard`` every worker waits for the cells others hold; the main process writes the
outputs.

This module reads the options, checks them before the model loads, writes the files and prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from steerlab.cli.main import (
    THREADS_HELP,
    BackendKind,
    app,
    clean_errors,
    output_folder,
    parse_coeffs,
    parse_layers,
    set_threads,
)  # fmt: skip
from steerlab.cli.workers import helpers
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
    auto = "auto"
    after_instruction = "after_instruction"
    all = "all"
    last_prompt = "last_prompt"


class Eval(StrEnum):
    auto = "auto"
    choice = "choice"
    loglik = "loglik"
    generate = "generate"


class Sides(StrEnum):
    both = "both"
    positive = "positive"


class Scope(StrEnum):
    chosen = "chosen"
    site = "site"
    all = "all"


DEFAULT_FRACTIONS = "-0.5,-0.25,-0.1,-0.05,0,0.05,0.1,0.25,0.5"  # steerlab.scale.DEFAULT_FRACTIONS


@app.command()
def sweep(
    data: Path = typer.Option(..., "--data", help="The data file (any path, in the format given by --format)."),
    fmt: Format = typer.Option(..., "--format", help="Record format of --data."),
    out: Path = typer.Option(..., "--out", help="Output folder (a rerun with the same settings resumes)."),
    method: Method = typer.Option(Method.caa, "--method", help="How the vector is extracted."),
    model: str | None = typer.Option(
        None, "--model", help="Embedded name, folder or hub name (default: SmolLM2-135M-Instruct)."
    ),
    backend: BackendKind = typer.Option(BackendKind.nnsight, "--backend"),
    layers: str = typer.Option("all", "--layers", help="'all', '10-15', '8,12,16', negatives count from the end."),
    fractions: str = typer.Option(
        DEFAULT_FRACTIONS, "--fractions", help="Strengths as fractions of the layer's typical token norm (with 0)."
    ),
    coeffs: str | None = typer.Option(
        None, "--coeffs", help="Raw strengths instead of --fractions, e.g. --coeffs=-8,0,8 (PAS's raw scale)."
    ),
    evaluation: Eval = typer.Option(
        Eval.auto, "--eval", help="choice (persona/ab/mcq), loglik (text-label) or generate (needs --prompts)."
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="--eval generate: prompts, one per line (.txt) or JSONL with a 'prompt' field."
    ),
    scorer: str = typer.Option("vader", "--scorer", help='--eval generate: vader, or embedding:"TEXT".'),
    max_new_tokens: int = typer.Option(40, "--max-new-tokens", min=1, help="--eval generate: tokens per prompt."),
    positions: PositionsKind = typer.Option(
        PositionsKind.auto, "--positions",
        help="Steered tokens (auto: after_instruction for choice, all for loglik and generate).",
    ),  # fmt: skip
    controls: int = typer.Option(8, "--controls", min=0, help="Random directions of the same norm (0: no band)."),
    control_scope: Scope = typer.Option(
        Scope.chosen, "--control-scope", help="Where random directions run: chosen cell, its site, or all cells."
    ),
    orient_at: float | None = typer.Option(
        None, "--orient-at", help="Strength at which +s and -s are compared to orient (default 0.25 of the norm)."
    ),
    sides: Sides = typer.Option(
        Sides.both, "--sides", help="Choose among both signs of the oriented vector, or positive strengths only."
    ),
    n_train: int | None = typer.Option(None, "--n-train", min=1, help="Cap on training records (60% split)."),
    n_val: int | None = typer.Option(None, "--n-val", min=1, help="Cap on validation records (20% split)."),
    n_test: int | None = typer.Option(None, "--n-test", min=1, help="Cap on test records (20% split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the methods and the random directions."),
    site: str = typer.Option(
        "resid_post", "--site", help="Site kind: resid_pre, attn_out, mlp_in, mlp_out or resid_post."
    ),
    batch_size: int = typer.Option(
        32, "--batch-size", min=1, help="Prompts per forward pass (larger batches amortise per-call overhead)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or mps (default: the best available)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP + " Per worker with --workers."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Local worker processes sharing --out (1 thread each unless --threads)."
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="I/N: this job computes shard I of N of the validation grid (array jobs: "
        "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); the job that finds the grid complete writes the outputs.",
    ),  # fmt: skip
    stale_after: float = typer.Option(
        600.0, "--stale-after", min=1.0, help="Seconds without a heartbeat before a dead worker's cell is taken over."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Extract a steering vector at many layers and test whether it steers, under the evaluation protocol.

    Splits the records 60/20/20 (seeded, label-balanced) and extracts the vector on train. On validation
    it orients each layer's vector (+s must beat -s) and picks the layer and strength with the largest
    effect; on test it measures that cell's effect with a 95% interval beside the band of random directions
    of the same norm, per answer label, with the minimum detectable effect, and prints a one-line verdict.
    Writes results.csv (one row per item x cell), effects.csv, summary.json and the oriented vector.
    Several processes or array jobs may share --out (--workers, --shard); each cell is computed once.
    """
    from steerlab.claims import GridIncomplete, parse_shard

    with clean_errors():
        try:
            summary = run_sweep(
                data=data, fmt=fmt.value, method=method.value.replace("-", "_"), model=model, backend=backend.value,
                layers=layers, fractions=None if coeffs is not None else fractions, coeffs=coeffs, out=out,
                evaluation=evaluation.value, prompts=prompts, scorer=scorer, max_new_tokens=max_new_tokens,
                positions=positions.value, controls=controls, control_scope=control_scope.value, orient_at=orient_at,
                sides=sides.value,
                n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, site_kind=site, batch_size=batch_size,
                device=device, progress=progress, threads=threads, workers=workers,
                shard=parse_shard(shard) if shard is not None else None, stale_after=stale_after,
            )  # fmt: skip
        except GridIncomplete as done:
            typer.echo(f"{done}\nno outputs from this job: the job that completes the grid writes them")
            return
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


def _label_of(fmt: str):
    from steerlab.tasks import answer_label

    if fmt == "text-label":
        return lambda it: it.label
    if fmt == "mcq":
        return lambda it: it.answer
    return lambda it: answer_label(it.positive)


def _load_prompts(path: Path) -> list[str]:
    """Prompts for open-ended evaluation: one per non-blank line, or JSON Lines with a ``prompt`` field."""
    from steerlab.data import DataError, load_text_file

    if path.suffix.lower() not in (".jsonl", ".json"):
        return load_text_file(path, style="lines")
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: not valid JSON ({exc.msg}); write one object per line") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str) or not record["prompt"].strip():
            raise DataError(f"{path}, line {number}: needs a non-empty string field 'prompt', got {line[:60]!r}")
        out.append(record["prompt"])
    return out


def _parse_strengths(fractions: str | None, coeffs: str | None) -> tuple[list[float] | None, list[float] | None]:
    if coeffs is not None:
        return None, parse_coeffs(coeffs)
    values = parse_coeffs(fractions or "", min_count=2)
    if not any(v > 0 for v in values) or not any(v < 0 for v in values):
        raise SteerlabError(f"--fractions {fractions!r} needs negative and positive values (to orient the vector), "
                            f"e.g. {DEFAULT_FRACTIONS}")  # fmt: skip
    return values, None


def _check_options(fmt: str, method: str, evaluation: str, positions: str, prompts: Path | None, out: Path) -> str:
    """Validate option combinations before anything slow; returns the evaluation to run."""
    from steerlab.extraction import LABEL_METHODS

    if evaluation == "auto":
        evaluation = "loglik" if fmt == "text-label" else "choice"
    if fmt == "text-label" and method not in LABEL_METHODS:
        raise SteerlabError(
            f"--method {method.replace('_', '-')} needs contrast pairs; text-label data has unpaired texts, so "
            "only caa, pca-center and pca-diff apply (use --format persona/ab/mcq for probe and bipo)"
        )
    if evaluation == "loglik" and fmt != "text-label":
        raise SteerlabError("--eval loglik scores labelled texts; use it with --format text-label")
    if evaluation == "choice" and fmt == "text-label":
        raise SteerlabError("--eval choice needs questions with answers; text-label data has none: use --eval loglik, "
                            "or --eval generate with --prompts")  # fmt: skip
    if evaluation == "generate" and prompts is None:
        raise SteerlabError("--eval generate needs --prompts FILE (one prompt per line, or JSONL with 'prompt')")
    if evaluation != "generate" and prompts is not None:
        raise SteerlabError("--prompts is read only by --eval generate; add --eval generate or drop --prompts")
    if evaluation == "loglik" and positions in ("after_instruction", "last_prompt"):
        raise SteerlabError(f"--positions {positions} needs a chat prompt; a text log-likelihood scores raw texts with "
                            "no template and no last-token answer: use --positions all")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise SteerlabError(f"--out {out} is a file; give a folder (it is created if missing)")
    return evaluation


def run_sweep(
    *,
    data: Path,
    fmt: str,
    method: str,
    out: Path,
    model: str | None = None,
    backend: str = "nnsight",
    layers: str = "all",
    fractions: str | None = DEFAULT_FRACTIONS,
    coeffs: str | None = None,
    evaluation: str = "auto",
    prompts: Path | None = None,
    scorer: str = "vader",
    max_new_tokens: int = 40,
    positions: str = "auto",
    controls: int = 8,
    control_scope: str = "chosen",
    orient_at: float | None = None,
    sides: str = "both",
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    site_kind: str = "resid_post",
    batch_size: int = 32,
    device: str | None = None,
    progress: bool = True,
    threads: int | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    stale_after: float = 600.0,
    gather: bool = True,
) -> dict[str, Any] | None:
    """The work of ``steerlab sweep`` (see its help); returns the summary it writes to ``out/summary.json``.

    ``workers > 1`` starts ``workers - 1`` helper processes on the same folder (``threads`` each, default 1,
    as this process then). ``gather=False`` (a helper) computes cells and writes no outputs (returns None).
    Raises `steerlab.claims.GridIncomplete` when a ``shard`` is done but other validation cells are not.
    """
    options = dict(locals())  # the arguments, for the helper processes
    from steerlab.sites import AFTER_INSTRUCTION, ALL, LAST_PROMPT, Site

    set_threads(threads if threads is not None or workers == 1 else 1)
    evaluation = _check_options(fmt, method, evaluation, positions, prompts, out)
    existed = out.exists()
    output_folder(out)  # paths first: a bad --out fails before the data are read ...
    if not existed:
        out.rmdir()  # ... and a run stopped by a bad input leaves no empty folder behind
    if positions == "auto":
        positions = "after_instruction" if evaluation == "choice" else "all"
    steer_at = {"after_instruction": AFTER_INSTRUCTION, "all": ALL, "last_prompt": LAST_PROMPT}[positions]
    Site(0, site_kind)  # validates the kind before anything slow happens
    fracs, raw = _parse_strengths(fractions, coeffs)
    parse_layers(layers, 10**6)  # syntax check now; the range is checked once the model is loaded
    records = _load_records(data, fmt)
    score = None
    gen_prompts: list[str] = []
    if evaluation == "generate":
        from steerlab.scorers import make_scorer

        gen_prompts = _load_prompts(prompts)
        if len(gen_prompts) < 4:
            raise SteerlabError(f"{prompts}: {len(gen_prompts)} prompt(s); give at least 4 (half validate, half test; "
                                "40 or more for a narrow random band)")  # fmt: skip
        score = make_scorer(scorer)

    from steerlab.data import DataError, stratified_split

    parts = dict(zip(("train", "val", "test"), stratified_split(records, (0.6, 0.2, 0.2), _label_of(fmt), seed,
                                                                balance=fmt != "mcq"), strict=True))  # fmt: skip
    for name, cap in (("train", n_train), ("val", n_val), ("test", n_test)):
        parts[name] = parts[name][:cap] if cap else parts[name]
    for name in ("train", "val", "test") if evaluation != "generate" else ("train",):
        n_labels = len({_label_of(fmt)(it) for it in parts[name]})
        if len(parts[name]) < 2 or (fmt != "mcq" and n_labels < 2):
            raise DataError(
                f"{data}: the {name} split has {len(parts[name])} record(s) with {n_labels} label(s); give a file with "
                "more records of each label (at least 10 for a 60/20/20 split) or raise the --n-* caps"
            )
    out = output_folder(out)
    run_id = _claim_run(out, {
        "data": str(data.resolve()), "format": fmt, "method": method, "model": model, "backend": backend,
        "layers": layers, "fractions": fracs, "coeffs": raw, "eval": evaluation, "prompts": str(prompts),
        "scorer": scorer, "max_new_tokens": max_new_tokens, "positions": positions, "controls": controls,
        "control_scope": control_scope, "orient_at": orient_at, "sides": sides, "n_train": n_train, "n_val": n_val,
        "n_test": n_test, "seed": seed, "site": site_kind,
    })  # fmt: skip

    from steerlab.models import load_model

    timings: dict[str, float] = {}
    with helpers(workers - 1, options, threads):
        with _timed(timings, "load"):
            lm = load_model(model, backend=backend, device=device)
        sites = [Site(layer, site_kind) for layer in parse_layers(layers, lm.n_layers, lm.name)]
        vec, scores = _shared_vector(lm, fmt, method, parts, sites, seed, f"{fmt}:{data.name}", batch_size, progress,
                                     timings, out / "train", run_id, stale_after)  # fmt: skip
        val_task, test_task, n_gen = _tasks(lm, fmt, evaluation, parts, gen_prompts, score, max_new_tokens, seed,
                                            (n_val, n_test), batch_size)  # fmt: skip

        from steerlab.protocol import evaluate_vector

        with _timed(timings, "protocol"):
            res = evaluate_vector(
                lm, vec, val_task, test_task, fractions=fracs, coeffs=raw, positions=steer_at, controls=controls,
                control_scope=control_scope, control_seed=seed, orient_at=orient_at, sides=sides, out=out,
                shard=shard, stale_after=stale_after, progress=progress,
            )  # fmt: skip
    if not gather:
        return None
    _write_outputs(lm, res, scores, out, data)
    summary = {
        "data": str(data), "format": fmt, "eval": evaluation, "model": lm.name, "backend": lm.kind,
        "method": vec.provenance.method, "layers": [s.layer for s in vec.sites], "n_train": len(parts["train"]),
        **({"n_prompts": n_gen, "scorer": score.name} if score is not None else {}),
        **res.summary, "seconds": timings, "out": str(out),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _shared_vector(lm, fmt, method, parts, sites, seed, dataset, batch_size, progress, timings, folder: Path,
                   run_id: str, stale_after: float):  # fmt: skip
    """The vector and the layer scores (or None), extracted once per run folder: the first worker extracts and
    saves them in ``folder`` (a claimed cell), the others load them, so every worker and shard steers with the
    same vector (extractions on two GPUs can differ in the last digits)."""
    import pandas as pd

    from steerlab.claims import CellStore, run_cells
    from steerlab.sweeps import layer_scores
    from steerlab.vectors import SteeringVector

    stem = folder / f"vector-{run_id}"

    def extract(_: str) -> pd.DataFrame:
        vec, acts = _extract(lm, fmt, method, parts, sites, seed, dataset, batch_size, progress, timings)
        vec.save(stem)
        return layer_scores(acts.pos, acts.neg) if acts is not None else pd.DataFrame()

    scores = run_cells(CellStore(folder, stale_after=stale_after), [f"extract|{run_id}"], extract,
                       progress=False)[f"extract|{run_id}"]  # fmt: skip
    return SteeringVector.load(stem), None if scores.empty else scores


def _claim_run(out: Path, settings: dict[str, Any]) -> str:
    """Write ``out/run.json`` with the settings of this run, or refuse a rerun into ``out`` with other settings (its
    results.csv and summary.json would replace the earlier run's). The same settings resume the earlier run.
    Returns a short hash of the settings (it names the extracted vector)."""
    path = out / "run.json"
    settings = json.loads(json.dumps(settings))  # as it reads back: tuples become lists
    run_id = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    tmp = out / f".run.{os.getpid()}.{time.time_ns()}.tmp"
    tmp.write_text(json.dumps(settings, indent=2) + "\n")
    try:
        os.link(tmp, path)  # atomic and exclusive: array jobs starting together agree on one file
        return run_id
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links: first come, first written
        if not path.exists():
            os.replace(tmp, path)
            return run_id
    finally:
        tmp.unlink(missing_ok=True)
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise SteerlabError(f"{path} is not valid JSON; delete it (or the folder) to start afresh") from None
    changed = sorted(k for k in settings.keys() | old.keys() if old.get(k) != settings.get(k))
    if changed:
        raise SteerlabError(
            f"--out {out} holds a sweep run with different settings ({', '.join(changed)}): its results would be "
            "replaced; give another --out, or delete the folder to start again (the same settings resume it)"
        )
    return run_id


def _extract(lm, fmt, method, parts, sites, seed, dataset, batch_size, progress, timings):
    """The vector at every site from the training split, and the activations behind it (for layer scores)."""
    if fmt == "text-label":
        from steerlab.extraction import extract_from_labels

        with _timed(timings, "extract"):
            return extract_from_labels(lm, parts["train"], sites, method, seed=seed, dataset=dataset,
                                       batch_size=batch_size, progress=progress)  # fmt: skip
    from steerlab.activations import collect_pairs
    from steerlab.extraction import extract
    from steerlab.prompts import mcq_pairs

    train, val = parts["train"], parts["val"]
    if fmt == "mcq":
        train, val = mcq_pairs(train, seed), mcq_pairs(val, seed + 1)
    kwargs = {"seed": seed} if method in ("probe", "bipo") else {}
    with _timed(timings, "activations"):  # one pass serves the method and the layer scores
        acts = collect_pairs(lm, train, sites, batch_size=batch_size, progress=progress)
    with _timed(timings, "extract"):
        vec = extract(lm, train, sites, method, val_pairs=val or None, dataset=dataset, batch_size=batch_size,
                      progress=progress, activations=acts, **kwargs)  # fmt: skip
    return vec, acts


def _tasks(lm, fmt, evaluation, parts, gen_prompts, score, max_new_tokens, seed, caps, batch_size):
    """The validation and test tasks (and the number of generation prompts, or None)."""
    from steerlab.tasks import ChoiceTask, GenerationTask, TextLoglikTask

    if evaluation == "generate":
        from steerlab.data import split

        _, val, test = split(gen_prompts, (0.0, 0.5, 0.5), seed)
        val, test = val[: caps[0]] if caps[0] else val, test[: caps[1]] if caps[1] else test
        make = lambda ps: GenerationTask(lm, ps, score, max_new_tokens=max_new_tokens, batch_size=batch_size)  # noqa: E731
        return make(val), make(test), len(val) + len(test)
    if evaluation == "loglik":
        return (TextLoglikTask.from_items(lm, parts["val"], batch_size=batch_size),
                TextLoglikTask.from_items(lm, parts["test"], batch_size=batch_size), None)  # fmt: skip
    if fmt == "mcq":
        return (ChoiceTask.from_mcq(lm, parts["val"], batch_size=batch_size),
                ChoiceTask.from_mcq(lm, parts["test"], batch_size=batch_size), None)  # fmt: skip
    return (ChoiceTask.from_pairs(lm, parts["val"], batch_size=batch_size),
            ChoiceTask.from_pairs(lm, parts["test"], batch_size=batch_size), None)  # fmt: skip


def _write_outputs(lm, res, scores, out: Path, data: Path) -> None:
    """results.csv, effects.csv, labels.csv, the oriented vector at the chosen site, layer scores, a heatmap."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    from steerlab.plotting import plot_layer_heatmap, save_figure
    from steerlab.sites import Site

    res.results.to_csv(out / "results.csv", index=False)
    res.effects.to_csv(out / "effects.csv", index=False)
    if res.labels is not None:
        res.labels.to_csv(out / "labels.csv", index=False)
    res.vector.select([Site.parse(res.summary["site"])]).save(out / "vector")
    if scores is not None:
        scores.to_csv(out / "layer_scores.csv", index=False)
    metric, unit = res.summary["metric"], res.summary["strength_unit"]
    val = res.results[(res.results.split == "val") & (res.results.direction == "vector")]
    ax = plot_layer_heatmap(val.assign(coeff=val[unit]), metric=metric)
    ax.set_xlabel(f"strength ({unit}{' of the typical norm' if unit == 'fraction' else ''}), oriented")
    ax.set_title(f"validation {metric}: {res.vector.provenance.method} on {data.name} ({lm.name})")
    save_figure(ax.figure, "heatmap", folder=out)
    plt.close(ax.figure)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.3f}"


def _print_summary(s: dict[str, Any]) -> None:
    o, sel = s["orientation"], s["selection"]
    unit = " x the typical norm" if s["strength_unit"] == "fraction" else " (raw)"
    n = f"train {s['n_train']}, val {s['n_val']}, test {s['n_test']}"
    lines = [
        f"{s['format']} data {s['data']} ({s['eval']}): {n}",
        f"{s['method']} on {s['model']} ({s['backend']}), layers {_span(s['layers'])}, positions {s['positions']} "
        f"({s['positions_resolved']}), metric {s['metric']}",
        f"orientation on validation (+s vs -s at {o['strength']:g}{unit}): flipped at "
        f"{', '.join(o['flipped_sites']) or 'no layer'}; at {s['site']}: {_f(o['effect'])} [{_f(o['lo'])}, "
        f"{_f(o['hi'])}] over {o['n']} items",
        f"chosen on validation: {s['site']} at {s['strength']:+g}{unit} (coeff {s['coeff']:.3g}), validation effect "
        f"{_f(sel['val_effect'])} ({sel['rule']} among {sel['among']}; biased away from 0 by the choice)",
        f"test: {s['metric']} {s['baseline']:.3f} unsteered -> {s['steered']:.3f}, effect {_f(s['effect'])} "
        f"[{_f(s['effect_ci'][0])}, {_f(s['effect_ci'][1])}], random band ({s['controls']} directions) "
        f"[{_f(s['null_band'][0])}, {_f(s['null_band'][1])}], MDE {'n/a' if s['mde'] is None else round(s['mde'], 3)}",
    ]
    if "per_label" in s:
        labels = s["per_label"].items()
        lines.append("per label: " + ", ".join(f"{k} {_f(v['effect'])} (n={v['n']})" for k, v in labels))
    lines.append(f"time: {', '.join(f'{k} {v:g} s' for k, v in s['seconds'].items())}")
    lines.append(f"wrote results.csv, effects.csv, summary.json, vector.safetensors/.json, heatmap.png in {s['out']}")
    lines.append(f"verdict: {s['verdict']}")
    typer.echo("\n".join(line for line in lines if line))


def _span(layers: list[int]) -> str:
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))
