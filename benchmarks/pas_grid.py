"""PAS validation grid: `steerlab.sweeps.sweep` over cached prompt blocks (`steerlab.pipelines.pas.CachedMCQ`,
a `steerlab.tasks.BlockTask`) against one full forward pass per grid cell.

Usage::

    .venv/bin/python benchmarks/pas_grid.py [--items 32] [--layers 8,14] [--strengths 0.5,1]

One PAS vector (PASf, from a seed's training items) evaluated on the held-out items of one split at
every (layer, strength) cell plus the unsteered model, the way `run_seed` does it:

- ``cached``: build the blocks (each block's prompt run once, its key/value cache kept), then `sweep`
  runs every cell at one token per item (a site's cells together, sharing the trunk). The time includes
  building the cache.
- ``naive``: `steerlab.metrics.mcq_accuracy` with the same edits: a full forward pass per cell.

Both sides are timed in the same run, on the same items and cells, and their per-item answers must
agree exactly. The printed ratio is naive / cached; it grows with the number of cells (and, in the
notebooks, with the number of seeds and methods sharing one cache).
"""

from __future__ import annotations

import argparse
import time

from _common import quiet, write_results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--layers", default="8,14")
    ap.add_argument("--strengths", default="0.5,1")
    ap.add_argument("--task", default="openbookqa")
    args = ap.parse_args()
    quiet()
    import numpy as np
    import torch

    from steerlab.data import split
    from steerlab.interventions import steer
    from steerlab.metrics import mcq_accuracy
    from steerlab.models import load_model
    from steerlab.pipelines.pas import CachedMCQ, PASConfig, _vector, prepare
    from steerlab.pipelines.pas_tasks import load_task
    from steerlab.sites import LAST_PROMPT, Site
    from steerlab.sweeps import sweep

    torch.set_num_threads(1)
    lm = load_model()
    layers = [int(x) for x in args.layers.split(",")]
    strengths = [float(x) for x in args.strengths.split(",")]
    cfg = PASConfig(methods=("pasf",), layers=tuple(layers), fractions=(), coeffs=tuple(strengths), auto_layer=False)
    items = load_task(args.task, args.items, seed=0, max_chars=600)
    prep = prepare(lm, items, cfg.sites, block_size=args.block, ipas=False, progress=False)  # the vector: not timed
    train, val, test = split(list(range(len(prep.blocks))), (0.6, 0.2, 0.2), 0)
    vec, _ = _vector(prep, "pasf", prep.item_ids(train), cfg, 0)
    val_items = [prep.items[i] for i in prep.item_ids(val + test)]  # the held-out items of one seed
    cells = [None] + [(Site(layer), s) for layer in layers for s in strengths]

    def edits(cell):
        return () if cell is None else steer({cell[0]: vec[cell[0]]}, cell[1], positions=LAST_PROMPT)

    t0 = time.perf_counter()
    cache = CachedMCQ.build(lm, val_items, args.block)
    df = sweep(lm, {("pasf", 0): vec}, cache.task(), coeffs=[0.0, *strengths], positions=LAST_PROMPT, progress=False)
    t_cached = time.perf_counter() - t0
    acc = df[df.metric == "accuracy"]
    cached = [acc[(acc.coeff == 0.0)] if c is None else acc[(acc.layer == c[0].layer) & (acc.coeff == c[1])]
              for c in cells]  # fmt: skip
    cached = [c.drop_duplicates("example_id").set_index("example_id").value.sort_index().to_numpy() for c in cached]
    order = [cache.items.index(it) for it in val_items]  # cached items are sorted by length (example_id = index)
    t0 = time.perf_counter()
    naive = [mcq_accuracy(lm, val_items, edits=edits(c) or None, batch_size=args.block).correct.to_numpy(float)
             for c in cells]  # fmt: skip
    t_naive = time.perf_counter() - t0
    for a, b in zip(cached, naive, strict=True):
        np.testing.assert_array_equal(a[order], b)
    ratio = t_naive / t_cached
    print(f"{len(val_items)} held-out items, {len(cells)} evaluations ({len(cells) - 1} cells + unsteered)")
    print(f"cached blocks: {t_cached:.1f} s   naive full forward per cell: {t_naive:.1f} s   ratio {ratio:.2f}x")
    write_results("pas_grid", {"items": len(val_items), "evaluations": len(cells), "cached_s": t_cached,
                               "naive_s": t_naive, "ratio": ratio})  # fmt: skip


if __name__ == "__main__":
    main()
