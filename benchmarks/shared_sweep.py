"""Two worker processes sharing one sweep folder against one process with the same cores (`steerlab.sweeps`).

Usage::

    .venv/bin/python benchmarks/shared_sweep.py [--quick] [--rounds N] [--prompts N] [--layers K]
                                                [--model DIR] [--synthetic]

A layer x strength grid through `steerlab.sweeps.sweep` with ``out=`` on the embedded SmolLM2-135M-Instruct
(nnsight backend, or ``--model``): one random direction per layer at ``K`` layers spread over the model's
depth (derived from its ``n_layers``), strengths as fractions of each layer's typical norm (measured once
per folder, as part of the grid), added at every position, so every cell is a full forward of ``--prompts``
persona prompts (``agreeableness``, `ChoiceTask`, behaviour probability). Two ways to use a 2-core machine:

- ``1x2``: one worker process with 2 intra-op threads (``run_workers(1, ..., threads=2)``);
- ``2x1``: two worker processes with 1 thread each on the same folder, sharing the cells through claims
  (``run_workers(2, ..., threads=1)``), as ``steerlab sweep --workers 2`` does.

Each round runs both on fresh folders, in alternating order (A B, B A, ...), timed end to end (spawning,
loading the model from the cache, preparing the task, the grid) and grid only (the `sweep` call, as the
slowest worker saw it). The speed-up is ``1x2`` time over ``2x1`` time. Every run's ``results.csv`` is
checked equal to the first one, and every cell to have been computed exactly once. The 1-minute load
average is recorded before the script starts and around every run: on a machine where other processes
keep the cores busy, two single-threaded workers have no idle core to use, and the figure says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import _LOAD_AT_START, median, paired_ratio, quiet, table, write_results

QUICK = {"layers": 6, "fractions": [-0.25, 0.0, 0.25], "prompts": 16, "rounds": 2}
FULL = {"layers": 10, "fractions": [-0.25, -0.1, 0.0, 0.1, 0.25], "prompts": 32, "rounds": 3}


def _pairs(n_prompts: int, synthetic: bool):
    from steerlab import data

    if not synthetic:
        return data.load_persona("agreeableness")[:n_prompts]
    # persona-style prompts of similar length, for machines without the data root
    return [data.ContrastPair(f'Is the following statement something you would say?\n"I enjoy helping person {i} with '
                              f'task {i * 7 % 13}, even when it costs me time."', "Yes", "No")
            for i in range(n_prompts)]  # fmt: skip


def spread(n_layers: int, k: int) -> list[int]:
    """``k`` layers evenly spread over a model of ``n_layers`` (the first and last left out when there is room)."""
    k = min(k, n_layers)
    return sorted({round((i + 1) * n_layers / (k + 1)) for i in range(k)} if k < n_layers else set(range(n_layers)))


def worker(folder: str, n_layers_swept: int, fractions: list[float], n_prompts: int, model: str | None,
           synthetic: bool) -> None:  # fmt: skip
    """One worker: load the model, prepare the task and the vector, then `sweep` on the shared folder."""
    import torch

    from steerlab.models import load_model
    from steerlab.sites import Site
    from steerlab.sweeps import sweep
    from steerlab.tasks import ChoiceTask
    from steerlab.vectors import Provenance, SteeringVector

    quiet()
    start = time.perf_counter()
    lm = load_model(model, backend="nnsight")
    task = ChoiceTask.from_pairs(lm, _pairs(n_prompts, synthetic))
    layers = spread(lm.n_layers, n_layers_swept)
    gen = torch.Generator().manual_seed(0)
    provenance = Provenance(model=lm.name, d_model=lm.d_model, n_layers=lm.n_layers, method="random")
    vec = SteeringVector({Site(layer): torch.randn(lm.d_model, generator=gen) for layer in layers}, provenance)
    ready = time.perf_counter()
    done: list[str] = []
    sweep(lm, vec, task, fractions=fractions, out=folder, progress=False, on_cell=done.append)
    end = time.perf_counter()
    report = {"pid": os.getpid(), "threads": torch.get_num_threads(), "setup_s": ready - start, "grid_s": end - ready,
              "cells": done, "n_cells": len(layers) * sum(f != 0 for f in fractions) + 1, "layers": layers,
              "n_layers": lm.n_layers}  # fmt: skip
    Path(folder, f"worker-{os.getpid()}.json").write_text(json.dumps(report))


def run(n_workers: int, threads: int, scratch: Path, args: tuple) -> dict:
    import pandas as pd

    from steerlab.claims import run_workers

    folder = Path(tempfile.mkdtemp(dir=scratch))
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    run_workers(n_workers, worker, str(folder), *args, threads=threads)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    parts = [json.loads(r.read_text()) for r in folder.glob("worker-*.json")]
    cells = [c for p in parts for c in p["cells"]]
    if len(cells) != len(set(cells)) or len(cells) != parts[0]["n_cells"]:
        raise RuntimeError(f"{len(cells)} cells computed for {parts[0]['n_cells']} in the grid (one twice or missed)")
    result = pd.read_csv(folder / "results.csv")
    shutil.rmtree(folder)
    return {"wall_s": wall, "grid_s": max(p["grid_s"] for p in parts), "setup_s": max(p["setup_s"] for p in parts),
            "threads": [p["threads"] for p in parts], "per_worker_cells": [len(p["cells"]) for p in parts],
            "load_before": load_before, "load_after": load_after, "layers": parts[0]["layers"],
            "n_layers": parts[0]["n_layers"], "result": result}  # fmt: skip


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 layers x 2 strengths, 16 prompts, 2 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--layers", type=int, default=None, help="how many layers, spread over the model's depth")
    parser.add_argument("--model", default=None, help="a local model folder (default: the embedded SmolLM2)")
    parser.add_argument("--synthetic", action="store_true", help="generated prompts instead of the persona data")
    parser.add_argument("--results", default=None, help="name of the results JSON (default shared_sweep[_quick])")
    args = parser.parse_args()
    quiet()
    preset = QUICK if args.quick else FULL
    n_layers = args.layers or preset["layers"]
    n_prompts = args.prompts or preset["prompts"]
    rounds = args.rounds or preset["rounds"]
    cores = len(os.sched_getaffinity(0))
    print(f"grid: {n_layers} layers x {len(preset['fractions']) - 1} strengths + the unsteered cell, "
          f"{n_prompts} prompts per cell; {rounds} rounds, modes alternating", flush=True)  # fmt: skip
    print(f"load average before the benchmark: {_LOAD_AT_START[0]:.1f} (1 min) on {cores} cores", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="shared-sweep-"))
    modes = {"1x2": (1, 2), "2x1": (2, 1)}
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    worker_args = (n_layers, preset["fractions"], n_prompts, args.model, args.synthetic)
    try:
        for r in range(rounds):
            for mode in list(modes)[:: 1 if r % 2 == 0 else -1]:
                out = run(*modes[mode], scratch, worker_args)
                runs[mode].append(out)
                print(f"  round {r + 1}/{rounds} {mode}: wall {out['wall_s']:.1f} s, grid {out['grid_s']:.1f} s, "
                      f"cells per worker {out['per_worker_cells']}, load {out['load_before']:.1f} -> "
                      f"{out['load_after']:.1f}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    reference = runs["1x2"][0]["result"]
    for mode in modes:
        for out in runs[mode]:
            pd.testing.assert_frame_equal(out.pop("result"), reference)  # values to 1e-5 (thread counts differ)
    rows = []
    for mode in modes:
        wall = [o["wall_s"] for o in runs[mode]]
        grid = [o["grid_s"] for o in runs[mode]]
        rows.append({"mode": mode, "wall_s": median(wall), "grid_s": median(grid),
                     "speedup_wall": paired_ratio([o["wall_s"] for o in runs["1x2"]], wall),
                     "speedup_grid": paired_ratio([o["grid_s"] for o in runs["1x2"]], grid),
                     "load": median([o["load_before"] for o in runs[mode]])})  # fmt: skip
    background = _LOAD_AT_START[0]
    loaded = background > 0.5 * cores
    note = f"load average {background:.1f} on {cores} cores before the benchmark started: "
    note += ("a LOADED machine (other processes); two single-threaded workers need idle cores, so this speed-up is "
             "not the quiet figure" if loaded else "a quiet machine")  # fmt: skip
    print()
    print(f"layers {runs['1x2'][0]['layers']} of {runs['1x2'][0]['n_layers']}")
    print(table(rows, ["mode", "wall_s", "grid_s", "speedup_wall", "speedup_grid", "load"]))
    print("speedup = 1x2 time / 2x1 time (median over rounds of the ratio within a round); load = 1-minute load "
          "average before each run (the benchmark's own processes included)")  # fmt: skip
    print("results.csv equal in every run; every cell computed exactly once")
    print(note)
    info = {"grid": {"layers": n_layers, "fractions": preset["fractions"], "prompts": n_prompts}, "rounds": rounds,
            "quick": args.quick, "model": args.model, "synthetic": args.synthetic, "cores": cores,
            "load_before_start": _LOAD_AT_START, "loaded": loaded, "rows": rows, "runs": runs}  # fmt: skip
    path = write_results(args.results or ("shared_sweep_quick" if args.quick else "shared_sweep"), info)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
