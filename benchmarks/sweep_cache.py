"""A layer x strength sweep at the last prompt token: prefix-cache reuse against a full forward per cell.

Usage::

    .venv/bin/python benchmarks/sweep_cache.py [--quick] [--backends tl,nnsight] [--exact]

A CAA vector at all 30 layers (100 persona pairs, ``agreeableness``), evaluated on 50 held-out
pairs (`ChoiceTask`, behaviour probability) at 30 layers x 4 nonzero strengths (+ the unsteered
baseline, computed once): 121 evaluations.

- ``cached``: ``sweep(..., positions=LAST_PROMPT)`` from a fresh `ChoiceTask`, so the time includes
  computing each batch's prompt prefix once; every cell then runs one token per prompt.
- ``full``: the same cells with ``task.evaluate(edits, reuse_prefix=False)``: a full forward per cell.
  Unless ``--exact``, it is timed on a subset of cells spread over the grid and extrapolated to the
  121 evaluations (every cell costs the same full forward, whatever its layer and strength).
The values of the subset cells are checked against the cached sweep's.
"""

from __future__ import annotations

import argparse

from _common import interleaved, median, paired_ratio, quiet, set_threads, table, write_results

COEFFS = [-8.0, -4.0, 4.0, 8.0]


def bench_backend(kind: str, train, test, coeffs, *, quick: bool, exact: bool, n_subset: int, repeats: int) -> dict:
    """Time the cached sweep and the full-forward cells on one backend; check that they agree."""
    from steerlab.extraction import extract
    from steerlab.interventions import steer
    from steerlab.models import load_model
    from steerlab.sites import LAST_PROMPT, Site
    from steerlab.sweeps import sweep
    from steerlab.tasks import ChoiceTask

    lm = load_model(backend=kind)
    layers = list(range(0, lm.n_layers, 3 if quick else 1))
    vec = extract(lm, train, layers, method="caa", progress=False)
    grid = [(layer, c) for layer in layers for c in coeffs]
    k = min(n_subset, len(grid))  # spread over layers and strengths
    subset = grid if exact else [(layers[i * len(layers) // k], coeffs[i % len(coeffs)]) for i in range(k)]
    n_evals = len(grid) + 1  # + the unsteered baseline
    out: dict = {}

    def cached(sites=layers):
        task = ChoiceTask.from_pairs(lm, test)
        out["cached"] = sweep(
            lm, {"caa": vec}, task, coeffs=[0.0, *coeffs], sites=sites, positions=LAST_PROMPT, progress=False
        )

    def full(cells=subset):
        task = ChoiceTask.from_pairs(lm, test)
        out["full"] = {
            (layer, c): task.evaluate(steer({Site(layer): vec[layer]}, c, positions=LAST_PROMPT)) for layer, c in cells
        }

    print(
        f"\n[{kind}] sweep: {len(test)} prompts, {len(layers)} layers x {len(coeffs)} strengths (+ baseline) = "
        f"{n_evals} evaluations; full forwards timed on {len(subset)} cells; {repeats} rounds",
        flush=True,
    )
    warm = {"cached": lambda: cached(layers[:1]), "full": lambda: full(subset[:1])}  # one layer, one cell
    times = interleaved({"cached": cached, "full": full}, repeats, warmup=warm)
    med_cached = median(times["cached"])
    per_cell = median(times["full"]) / len(subset)
    full_total = per_cell * n_evals

    # Same numbers: the subset cells from the cached sweep against their full-forward values.
    df = out["cached"]
    worst = 0.0
    for (layer, c), cell in out["full"].items():
        got = df[(df.layer == layer) & (df.coeff == c) & (df.metric == "p_behaviour")].value.to_numpy()
        ref = cell[cell.metric == "p_behaviour"].value.to_numpy()
        worst = max(worst, float(abs(got - ref).max()))
    return {
        "backend": kind,
        "evaluations": n_evals,
        "cached_s": med_cached,
        "full_s_per_cell": per_cell,
        "full_s": full_total,
        "saving": full_total / med_cached,
        "paired": paired_ratio([t / len(subset) * n_evals for t in times["full"]], times["cached"]),
        "extrapolated": not exact,
        "max_abs_diff_p": worst,
        "times": times,
        "subset": subset,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 test prompts, 10 layers x 2 strengths, 1 round")
    ap.add_argument("--backends", default="tl,nnsight")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds after the warm-up (default 3, --quick 1)")
    ap.add_argument("--subset", type=int, default=8, help="cells timed without the cache (extrapolated)")
    ap.add_argument("--exact", action="store_true", help="time every cell without the cache (slow: ~121 full forwards)")
    args = ap.parse_args()

    quiet()
    threads = set_threads()
    from steerlab.data import load_persona

    repeats = args.repeats or (1 if args.quick else 3)
    pairs = load_persona("agreeableness")
    train, test, coeffs = pairs[:100], pairs[200:250], COEFFS
    if args.quick:
        train, test, coeffs = pairs[:32], pairs[200:216], [-8.0, 8.0]
    print(f"sweep_cache: {threads} threads")
    results = [
        bench_backend(
            kind, train, test, coeffs, quick=args.quick, exact=args.exact, n_subset=args.subset, repeats=repeats
        )
        for kind in args.backends.split(",")
    ]
    columns = [
        "backend",
        "evaluations",
        "cached_s",
        "full_s_per_cell",
        "full_s",
        "saving",
        "paired",
        "extrapolated",
        "max_abs_diff_p",
    ]
    print("\n" + table(results, columns))
    print("saving = (full forward per cell x evaluations) / cached sweep time; max_abs_diff_p: cached vs full values")
    path = write_results(
        "sweep_cache",
        {
            "quick": args.quick,
            "threads": threads,
            "repeats": repeats,
            "n_test": len(test),
            "n_train": len(train),
            "coeffs": coeffs,
            "rows": results,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
