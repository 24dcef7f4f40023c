"""Peak memory of streaming extraction (1000 pairs, all 30 layers) against the model's own footprint.

Usage::

    .venv/bin/python benchmarks/memory.py [--quick] [--backends tl,nnsight]

Each measurement runs in a fresh subprocess and reports its RSS high-water mark
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``):

- ``imports``: Python with torch and steerlab imported, no model.
- ``hf-forward``: the plain HF model loaded (`steerlab.models.load_hf`) and one forward of 16 full
  texts (chat prompt + answer): the model's own footprint.
- ``<backend>-forward``: the steerlab backend loaded and one forward of the same 16 texts.
- ``<backend>-extract-<n>``: the backend loaded and ``stream_mean_diff`` over ``n`` pairs at all 30
  layers (batch 16), for n = 1000 and a smaller n (100) to show that memory does not grow with n.
- ``<backend>-sweep-<n>``: the backend loaded and a `steerlab.sweeps.sweep` of a `ChoiceTask` on ``n``
  persona prompts (n = 1000 and 100): a random direction at the middle layer's residual stream, strengths
  -4 / 0 / +4, every position from the prompt on, the prefix cache on (bounded by
  `steerlab.memory`: half the model's weights by default). Without the bound the cached key/value prefixes
  of 1,000 prompts would grow with n.

Targets: extraction and sweep peaks within +300 MB of the model's own footprint (the sweep's bounded prefix
cache may hold up to half the weights, so its target is +300 MB over the backend's forward plus that bound),
and flat in n: the growth from the small n to the large one under 10% of the footprint.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from _common import HERE, quiet, set_threads, table, write_results

TRAITS = ("agreeableness", "conscientiousness", "extraversion", "neuroticism", "openness")


def load_pairs(n: int) -> list:
    """``n`` persona pairs, several traits concatenated if one file has fewer."""
    from steerlab.data import load_persona

    pairs: list = []
    for trait in TRAITS:
        pairs += load_persona(trait)
        if len(pairs) >= n:
            return pairs[:n]
    raise SystemExit(f"only {len(pairs)} persona pairs in {TRAITS}")


def child(mode: str, n_pairs: int) -> None:
    """Run one measurement and print ``{"peak_mb": ..., "seconds": ...}`` on the last line."""
    quiet()
    set_threads()
    start = time.perf_counter()
    import torch

    import steerlab.activations  # noqa: F401  (the imports every mode pays)
    from steerlab.prompts import answer_stem, format_chat

    if mode != "imports":
        pairs = load_pairs(max(n_pairs, 16))
        texts = None
        if mode == "hf-forward":
            from steerlab.models import load_hf

            hf, tok = load_hf()
            texts = [format_chat(tok, p.prompt) + answer_stem(p.positive) for p in pairs[:16]]
            tok.padding_side = "left"
            with torch.no_grad():
                hf(**tok(texts, return_tensors="pt", padding=True))
        else:
            from steerlab.models import load_model

            kind, what = mode.split("-")
            lm = load_model(backend=kind)
            if what == "forward":
                lm.forward([lm.chat(p.prompt) + answer_stem(p.positive) for p in pairs[:16]])
            elif what == "sweep":
                from steerlab.controls import random_like
                from steerlab.extraction import extract
                from steerlab.sweeps import sweep
                from steerlab.tasks import ChoiceTask

                layer = lm.n_layers // 2
                vec = random_like(extract(lm, pairs[:16], [layer], method="caa", progress=False), 1, 0)[0]
                task = ChoiceTask.from_pairs(lm, pairs[:n_pairs], batch_size=16)
                sweep(lm, vec, task, coeffs=[-4.0, 0.0, 4.0], progress=False)
            else:
                from steerlab.extraction import stream_mean_diff

                stream_mean_diff(lm, pairs[:n_pairs], range(lm.n_layers), batch_size=16, progress=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"mode": mode, "n_pairs": n_pairs, "peak_mb": peak_mb, "seconds": time.perf_counter() - start}))


def measure(mode: str, n_pairs: int = 0) -> dict:
    proc = subprocess.run(
        [sys.executable, str(HERE / "memory.py"), "--child", mode, "--pairs", str(n_pairs)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {mode} ({n_pairs} pairs): peak {result['peak_mb']:.0f} MB, {result['seconds']:.0f} s", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 and 32 pairs instead of 1000 and 100")
    ap.add_argument("--backends", default="tl,nnsight")
    ap.add_argument("--what", default="extract,sweep", help="which measurements per backend (extract, sweep)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--pairs", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.pairs)
        return

    big, small = (100, 32) if args.quick else (1000, 100)
    whats = [w for w in args.what.split(",") if w]
    if not whats or set(whats) - {"extract", "sweep"}:
        raise SystemExit(f"--what takes extract and/or sweep, got {args.what!r}")
    print(f"memory: peak RSS per fresh process; extraction of {big} pairs at all layers (and {small} for growth)")
    runs = {"imports": measure("imports"), "hf-forward": measure("hf-forward")}
    for kind in args.backends.split(","):
        runs[f"{kind}-forward"] = measure(f"{kind}-forward")
        for what in whats:
            runs[f"{kind}-{what}-{small}"] = measure(f"{kind}-{what}", small)
            runs[f"{kind}-{what}-{big}"] = measure(f"{kind}-{what}", big)

    model = runs["hf-forward"]["peak_mb"]
    rows = [
        {"what": k, "pairs": v["n_pairs"] or None, "peak_mb": v["peak_mb"], "vs_hf_forward_mb": v["peak_mb"] - model}
        for k, v in runs.items()
    ]
    checks = []
    for kind in args.backends.split(","):
        own = runs[f"{kind}-forward"]["peak_mb"]
        for what in whats:
            peak = runs[f"{kind}-{what}-{big}"]["peak_mb"]
            growth = peak - runs[f"{kind}-{what}-{small}"]["peak_mb"]
            flat = growth <= 0.1 * model
            checks.append(
                {
                    "what": f"{kind} {what}",
                    "vs_hf_forward_mb": peak - model,
                    "vs_backend_forward_mb": peak - own,
                    f"growth_{small}_to_{big}_mb": growth,
                    "target": "<= +300 MB, flat in n",
                    "ok": ("ok" if peak - model <= 300 else "ok vs backend" if peak - own <= 300 else "MISSED")
                    if flat
                    else "MISSED (grows with n)",
                }
            )
    print("\n" + table(rows, ["what", "pairs", "peak_mb", "vs_hf_forward_mb"]))
    print("\n" + table(checks, list(checks[0])))
    name = "memory" if len(whats) == 2 else f"memory-{whats[0]}"
    path = write_results(name, {"quick": args.quick, "n_pairs": big, "runs": runs, "rows": rows, "checks": checks})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
