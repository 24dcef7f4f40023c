"""Two worker processes on one sweep folder against one process with the same cores, via `steerlab.claims`.

Usage::

    .venv/bin/python benchmarks/shared_sweep.py [--quick] [--rounds N]

A layer x strength grid on SmolLM2-135M-Instruct (nnsight backend): each cell evaluates the behaviour
probability of ``--prompts`` persona prompts (``agreeableness``, `ChoiceTask`) with a direction added at
every position of one layer (a full forward per cell). Two ways to use a 2-core machine:

- ``1x2``: one worker process with 2 intra-op threads (``run_workers(1, ..., threads=2)``);
- ``2x1``: two worker processes with 1 thread each, sharing the folder through claims
  (``run_workers(2, ..., threads=1)``).

Each round runs both, interleaved, on fresh folders, and times them end to end (spawning, loading the
model from the cache, preparing the task, the grid); each worker also reports its grid-only time. The
results of the two runs are checked to be identical, and every cell to be computed once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import median, paired_ratio, quiet, table, write_results


def _pairs(n_prompts: int, synthetic: bool):
    from steerlab import data

    if not synthetic:
        return data.load_persona("agreeableness")[:n_prompts]
    # persona-style prompts of similar length, for machines without the data root
    return [data.ContrastPair(f'Is the following statement something you would say?\n"I enjoy helping person {i} with '
                              f'task {i * 7 % 13}, even when it costs me time."', "Yes", "No")
            for i in range(n_prompts)]  # fmt: skip


def _task_and_vectors(n_prompts: int, model: str | None, synthetic: bool):
    import torch

    from steerlab.models import load_model
    from steerlab.tasks import ChoiceTask

    lm = load_model(model, backend="nnsight")
    task = ChoiceTask.from_pairs(lm, _pairs(n_prompts, synthetic))
    gen = torch.Generator().manual_seed(0)
    directions = {layer: torch.randn(lm.d_model, generator=gen) for layer in range(lm.n_layers)}
    return lm, task, directions


def worker(folder: str, keys: list[str], n_prompts: int, model: str | None, synthetic: bool) -> None:
    """One worker: load the model, prepare the task, then claim and compute cells until the grid is done."""
    import os

    import torch

    from steerlab.claims import CellStore, run_cells
    from steerlab.interventions import steer
    from steerlab.sites import Site

    quiet()
    start = time.perf_counter()
    _, task, directions = _task_and_vectors(n_prompts, model, synthetic)

    def compute(key: str):
        layer, coeff = key.split("|")
        return task.evaluate(steer({Site(int(layer)): directions[int(layer)]}, float(coeff)))

    ready = time.perf_counter()
    done: list[str] = []
    run_cells(CellStore(folder), keys, compute, progress=False, on_cell=done.append)
    end = time.perf_counter()
    report = {"pid": os.getpid(), "threads": torch.get_num_threads(), "setup_s": ready - start,
              "grid_s": end - ready, "cells": done}  # fmt: skip
    Path(folder, f"worker-{os.getpid()}.json").write_text(json.dumps(report))


def run(n_workers: int, threads: int, keys: list[str], n_prompts: int, scratch: Path, model, synthetic) -> dict:
    from steerlab.claims import CellStore, run_workers

    folder = Path(tempfile.mkdtemp(dir=scratch))
    start = time.perf_counter()
    run_workers(n_workers, worker, str(folder), keys, n_prompts, model, synthetic, threads=threads)
    wall = time.perf_counter() - start
    parts = [json.loads(r.read_text()) for r in folder.glob("worker-*.json")]
    cells = [c for p in parts for c in p["cells"]]
    assert sorted(cells) == sorted(keys), "a cell was computed twice or not at all"
    result = CellStore(folder).done(keys)
    shutil.rmtree(folder)
    return {"wall_s": wall, "grid_s": max(p["grid_s"] for p in parts), "setup_s": max(p["setup_s"] for p in parts),
            "threads": [p["threads"] for p in parts], "per_worker_cells": [len(p["cells"]) for p in parts],
            "result": result}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small grid: checks that the script runs")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--model", default=None, help="a local model folder (default: the embedded SmolLM2)")
    parser.add_argument("--synthetic", action="store_true", help="generated prompts instead of the persona data")
    parser.add_argument("--results", default="shared_sweep", help="name of the results JSON")
    args = parser.parse_args()
    quiet()
    layers = [3, 9, 15, 21] if args.quick else list(range(2, 30, 3))
    coeffs = [-4.0, 4.0] if args.quick else [-8.0, -4.0, 4.0, 8.0]
    keys = [f"{layer}|{c:g}" for layer in layers for c in coeffs]
    n_prompts = args.prompts or (8 if args.quick else 32)
    rounds = args.rounds or (1 if args.quick else 3)
    scratch = Path(tempfile.mkdtemp(prefix="shared-sweep-"))
    modes = {"1x2": (1, 2), "2x1": (2, 1)}
    print(f"grid: {len(layers)} layers x {len(coeffs)} strengths = {len(keys)} cells of {n_prompts} prompts; "
          f"{rounds} rounds, modes interleaved", flush=True)  # fmt: skip
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    try:
        for r in range(rounds):
            for mode, (n, t) in modes.items():
                out = run(n, t, keys, n_prompts, scratch, args.model, args.synthetic)
                runs[mode].append(out)
                print(f"  round {r + 1}/{rounds} {mode}: wall {out['wall_s']:.1f} s, grid {out['grid_s']:.1f} s, "
                      f"cells per worker {out['per_worker_cells']}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    import pandas as pd

    reference = runs["1x2"][0]["result"]
    for mode in modes:
        for out in runs[mode]:
            result = out.pop("result")
            for key in keys:
                pd.testing.assert_frame_equal(result[key], reference[key])
    rows = []
    for mode in modes:
        wall = [o["wall_s"] for o in runs[mode]]
        grid = [o["grid_s"] for o in runs[mode]]
        rows.append({"mode": mode, "wall_s": median(wall), "grid_s": median(grid),
                     "speedup_wall": paired_ratio([o["wall_s"] for o in runs["1x2"]], wall),
                     "speedup_grid": paired_ratio([o["grid_s"] for o in runs["1x2"]], grid)})  # fmt: skip
    print()
    print(table(rows, ["mode", "wall_s", "grid_s", "speedup_wall", "speedup_grid"]))
    print("identical results in every run; every cell computed exactly once")
    info = {"cells": len(keys), "prompts": n_prompts, "rounds": rounds, "quick": args.quick, "model": args.model,
            "synthetic": args.synthetic, "cpu_affinity": sorted(os.sched_getaffinity(0)), "rows": rows, "runs": runs}
    path = write_results(args.results, info)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
