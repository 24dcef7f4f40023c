"""A 5-strength sweep at the middle layer: the strengths evaluated together on a shared trunk, against one
forward pass per strength.

Usage::

    .venv/bin/python benchmarks/shared_trunk.py [--quick] [--backends tl,nnsight] [--prompts N] [--rounds N]

On SmolLM2-135M-Instruct (CPU, fp32), a random direction is added at every position of ``resid_post.L`` with
``L = n_layers // 2`` (15 of 30) at 5 strengths, and a `ChoiceTask` on ``--prompts`` persona prompts
(``agreeableness``, batch 16) is evaluated in each cell by `sweep`:

- ``grouped``: ``sweep(..., group=5)``: per batch, blocks 0..L run once and blocks L+1..29 (and the last
  position's unembedding) run for the 5 strengths as one batch of 5 copies (`Backend.forward_many`);
- ``alone``: ``sweep(..., group=1)``: one full forward pass per strength and batch (the old way).

``PerplexityTask`` (every token scored, 64 tokens per text) is timed the same way as a second row. Rounds
are interleaved (grouped, alone, grouped, ...), so a change of load hits both; the results of both ways are
checked to agree to 1e-5. Target (ChoiceTask): grouped / alone <= 0.65 (the blocks alone predict
(L + 1 + 5 * (n - L - 1)) / (5 * n) = 0.57 at L = 15 of 30).
"""

from __future__ import annotations

import argparse

from _common import interleaved, load_line, median, paired_ratio, quiet, set_threads, table, verdict, write_results

STRENGTHS = (-8.0, -4.0, 4.0, 8.0, 16.0)
TARGET = 0.65


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 prompts, 1 round: a fast check, not a measurement")
    ap.add_argument("--backends", default="tl,nnsight")
    ap.add_argument("--prompts", type=int, default=None, help="prompts per cell (default 96, --quick 32)")
    ap.add_argument("--rounds", type=int, default=None, help="timed rounds after the warm-up (default 3, --quick 1)")
    args = ap.parse_args()
    quiet()
    threads = set_threads()
    import numpy as np
    import torch

    from steerlab.data import load_persona
    from steerlab.models import load_model
    from steerlab.sites import ALL, Site
    from steerlab.sweeps import sweep
    from steerlab.tasks import ChoiceTask, PerplexityTask
    from steerlab.vectors import Provenance, SteeringVector

    n_prompts = args.prompts or (32 if args.quick else 96)
    rounds = args.rounds or (1 if args.quick else 3)
    pairs = load_persona("agreeableness")[:n_prompts]
    out: dict = {}
    fns, warm, info = {}, {}, {}
    for kind in args.backends.split(","):
        lm = load_model(backend=kind)
        layer = lm.n_layers // 2
        g = torch.Generator().manual_seed(0)
        prov = Provenance(model=lm.name, d_model=lm.d_model, n_layers=lm.n_layers, method="random")
        vec = SteeringVector({Site(layer): torch.randn(lm.d_model, generator=g)}, prov)
        tasks = {"choice": ChoiceTask.from_pairs(lm, pairs, batch_size=16),
                 "perplexity": PerplexityTask(lm, [p.prompt for p in pairs], max_tokens=64, batch_size=16)}  # fmt: skip
        small = {"choice": ChoiceTask.from_pairs(lm, pairs[:4]), "perplexity": PerplexityTask(lm, ["a b c d"])}
        info[kind] = {"layer": layer, "n_layers": lm.n_layers}
        for name, task in tasks.items():
            for mode, group in (("grouped", len(STRENGTHS)), ("alone", 1)):
                key = f"{kind}-{name}-{mode}"

                def run(task=task, group=group, key=key, lm=lm, vec=vec):
                    out[key] = sweep(lm, {"v": vec}, task, coeffs=STRENGTHS, positions=ALL, group=group,
                                     progress=False)  # fmt: skip

                fns[key] = run
                warm[key] = lambda t=small[name], g=group, lm=lm, vec=vec: sweep(
                    lm, {"v": vec}, t, coeffs=STRENGTHS, positions=ALL, group=g, progress=False)  # fmt: skip
    print(f"shared trunk: {len(STRENGTHS)} strengths at resid_post.{layer}, {n_prompts} prompts, {threads} threads, "
          f"{rounds} rounds, interleaved", flush=True)  # fmt: skip
    times = interleaved(fns, rounds, warmup=warm)
    rows, gaps = [], {}
    for kind in args.backends.split(","):
        for name in ("choice", "perplexity"):
            a, b = f"{kind}-{name}-grouped", f"{kind}-{name}-alone"
            gaps[f"{kind}-{name}"] = float(np.abs(out[a].value.to_numpy() - out[b].value.to_numpy()).max())
            ratio = median(times[a]) / median(times[b])
            row = {"what": f"{kind}, {'ChoiceTask' if name == 'choice' else 'PerplexityTask'}", "grouped_s": median(
                times[a]), "alone_s": median(times[b]), "ratio": ratio, "paired": paired_ratio(times[a], times[b])}
            if name == "choice":
                row.update(target=f"<= {TARGET}", ok=verdict(ratio, TARGET))
            rows.append(row)
    print("\n" + table(rows, ["what", "grouped_s", "alone_s", "ratio", "paired", "target", "ok"]))
    print(f"largest difference between the two ways: {max(gaps.values()):.1e}")
    print(load_line())
    record = {"quick": args.quick, "prompts": n_prompts, "strengths": STRENGTHS, "backends": info, "times": times,
              "rows": rows, "max_abs_diff": gaps}  # fmt: skip
    path = write_results("shared_trunk", record)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
