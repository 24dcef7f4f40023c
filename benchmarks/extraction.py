"""Extraction time: steerlab's CAA extraction at all 30 layers against bare HF forwards, and peers.

Usage::

    .venv/bin/python benchmarks/extraction.py [--quick] [--setup-peers] [--no-peers]

Compared, on SmolLM2-135M-Instruct (CPU, fp32) and 200 persona pairs (``agreeableness``), read
at the answer token (chat prompt + "Yes"/"No"):

- ``bare``: plain HF forwards with ``output_hidden_states=True`` over the 400 full texts (16 rows
  per forward), reading every layer's last-token state (`peers.bare_forward`).
- ``steerlab-<backend>-30``: ``extract(lm, pairs, range(30), method="caa")`` (streamed mean
  difference; each pair's shared prompt runs once, then the two answers on its key/value cache).
- ``steerlab-<backend>-1``: the same at layer 12 only (``--layer``): the forward passes stop after
  block 12, so the cost should scale with the blocks run.
- peers (in ``benchmarks/.peer-venv``, see `peers.py`): steering-vectors' ``train_steering_vector``
  and repeng's ``ControlVector.train`` at all 30 layers, with the same bare baseline measured in
  that venv. Their comparison with steerlab is normalised by each environment's own bare cost.

Targets: steerlab / bare <= 1.15; 1 layer (L) / 30 layers <= (L + 1) / 30 + 0.05 (early exit); faster
than both peers. The load average at the start and end is printed: on a shared machine it says how much
other work shared the cores (both sides of each ratio are interleaved, so load hits both).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import (
    HERE,
    interleaved,
    load_line,
    median,
    paired_ratio,
    quiet,
    set_threads,
    table,
    verdict,
    write_results,
)

PEER_VENV = HERE / ".peer-venv"
PEER_PYTHON = PEER_VENV / "bin" / "python"
PEER_CONSTRAINTS = HERE / "peer-constraints.txt"  # torch==2.13.0: keeps pip off the CUDA wheels
PEER_PACKAGES = ["steering-vectors==0.12.2", "repeng==0.4.0", "transformers==4.57.6"]
READ_LAYER = 12


def setup_peers() -> None:
    """Create ``benchmarks/.peer-venv`` with torch 2.13 (CPU), steering-vectors, repeng, transformers 4.x."""
    pip = [str(PEER_PYTHON), "-m", "pip"]
    if not PEER_PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    subprocess.run([*pip, "install", "-q", "torch==2.13.0"], check=True)  # first, on its own
    dry = subprocess.run(
        [*pip, "install", "--dry-run", "-c", str(PEER_CONSTRAINTS), *PEER_PACKAGES],
        capture_output=True,
        text=True,
        check=True,
    )
    pulled = [line for line in dry.stdout.splitlines() if line.startswith("Would install")]
    if "nvidia" in " ".join(pulled).lower():
        raise SystemExit(f"refusing to install: the resolution pulls CUDA packages:\n{pulled}")
    subprocess.run([*pip, "install", "-q", "-c", str(PEER_CONSTRAINTS), *PEER_PACKAGES], check=True)
    print(f"peer venv ready: {PEER_VENV} ({' '.join(pulled)[:300]})")


def run_peers(texts: list[list[str]], repeats: int, batch_size: int) -> dict | None:
    """Time the peers in their venv (same texts); None if the venv is missing."""
    if not PEER_PYTHON.exists():
        print(f"\n(peer venv {PEER_VENV} missing: run with --setup-peers to compare with steering-vectors and repeng)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.json"
        path.write_text(json.dumps({"pairs": texts}))
        cmd = [
            str(PEER_PYTHON),
            str(HERE / "peers.py"),
            "--pairs",
            str(path),
            "--repeats",
            str(repeats),
            "--batch-size",
            str(batch_size),
            "--read-layer",
            str(READ_LAYER),
        ]
        print("\npeers (in .peer-venv):", flush=True)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # its log goes to our stderr
    if proc.returncode != 0:
        print(f"peers.py failed with exit code {proc.returncode}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cosine(a, b) -> float:
    import torch

    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float(a @ b / (a.norm() * b.norm()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="32 pairs, 1 round: a fast check, not a measurement")
    ap.add_argument("--setup-peers", action="store_true", help="create benchmarks/.peer-venv first")
    ap.add_argument("--no-peers", action="store_true", help="skip steering-vectors and repeng")
    ap.add_argument("--pairs", type=int, default=None, help="number of pairs (default 200, --quick 32)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds after the warm-up (default 3, --quick 1)")
    ap.add_argument("--peer-repeats", type=int, default=None, help="timed rounds for the peers (default: --repeats)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--layer", type=int, default=READ_LAYER, help="the one layer read (default 12)")
    ap.add_argument("--backends", default="tl,nnsight")
    args = ap.parse_args()
    if args.setup_peers:
        setup_peers()

    quiet()
    threads = set_threads()
    import torch
    from peers import bare_forward

    from steerlab.data import load_persona
    from steerlab.extraction import extract
    from steerlab.models import load_hf, load_model
    from steerlab.prompts import answer_stem

    n_pairs = args.pairs or (32 if args.quick else 200)
    repeats = args.repeats or (1 if args.quick else 3)
    bs = args.batch_size
    pairs = load_persona("agreeableness")[:n_pairs]
    backends = {kind: load_model(backend=kind) for kind in args.backends.split(",")}
    hf, tok = load_hf()
    tok.padding_side = "right"
    lm = next(iter(backends.values()))
    layer = args.layer
    texts = [[lm.chat(p.prompt) + answer_stem(p.positive), lm.chat(p.prompt) + answer_stem(p.negative)] for p in pairs]
    all_layers = list(range(lm.n_layers))

    out: dict = {}

    def steerlab_fn(kind: str, layers: list[int], ps=pairs):
        def run():
            out[f"steerlab-{kind}-{len(layers)}"] = extract(
                backends[kind], ps, layers, method="caa", batch_size=bs, progress=False
            )

        return run

    def bare(ts=texts):
        out["bare"] = bare_forward(hf, tok, ts, bs)

    fns = {"bare": bare}
    for kind in backends:
        fns[f"steerlab-{kind}-30"] = steerlab_fn(kind, all_layers)
        fns[f"steerlab-{kind}-1"] = steerlab_fn(kind, [layer])
    few = pairs[:bs]
    warm = {"bare": lambda: bare(texts[:bs])}
    for kind in backends:
        warm[f"steerlab-{kind}-30"] = steerlab_fn(kind, all_layers, few)
        warm[f"steerlab-{kind}-1"] = steerlab_fn(kind, [layer], few)
    print(
        f"extraction: {n_pairs} pairs ({2 * n_pairs} texts), {lm.n_layers} layers, batch {bs}, "
        f"{threads} threads, {repeats} rounds",
        flush=True,
    )
    times = interleaved(fns, repeats, warmup=warm)

    # Same numbers? steerlab's resid_post[L] equals HF hidden_states[L + 1] except after the last
    # layer (HF applies the final norm there), so compare layers 0..n-2.
    ref = out["bare"]
    agree = {}
    for kind in backends:
        vec = out[f"steerlab-{kind}-30"]
        got = torch.stack([vec.directions[s] for s in sorted(vec.sites, key=lambda s: s.layer)]).float()
        agree[kind] = float((got[:-1] - ref[:-1]).abs().max() / ref[:-1].abs().max())

    med = {k: median(v) for k, v in times.items()}
    rows, checks = [], []
    rows.append({"what": "bare HF forwards (main venv)", "median_s": med["bare"], "ratio": 1.0, "vs": "bare"})
    for kind in backends:
        for n in (30, 1):
            key = f"steerlab-{kind}-{n}"
            r, pr = med[key] / med["bare"], paired_ratio(times[key], times["bare"])
            row = {
                "what": f"steerlab {kind}, {n} layer{'s' * (n > 1)}",
                "median_s": med[key],
                "ratio": r,
                "paired": pr,
                "vs": "bare",
            }
            if n == 30:
                row.update(target="<= 1.15", ok=verdict(r, 1.15))
                checks.append((f"{kind} 30 layers / bare", r, 1.15))
            rows.append(row)
        r = med[f"steerlab-{kind}-1"] / med[f"steerlab-{kind}-30"]
        target = (layer + 1) / lm.n_layers + 0.05
        rows.append(
            {
                "what": f"steerlab {kind}: layer {layer} / all layers",
                "ratio": r,
                "paired": paired_ratio(times[f"steerlab-{kind}-1"], times[f"steerlab-{kind}-30"]),
                "vs": "all layers",
                "target": f"<= {target:.3f}",
                "ok": verdict(r, target),
            }
        )
        checks.append((f"{kind} layer {layer} / all layers", r, target))

    peers = None if args.no_peers else run_peers(texts, args.peer_repeats or repeats, bs)
    peer_rows = []
    if peers is not None:
        pm = peers["median"]
        rows.append({"what": "bare HF forwards (peer venv)", "median_s": pm["bare"], "ratio": 1.0, "vs": "bare (peer)"})
        for name in ("steering_vectors", "repeng"):
            paired = paired_ratio(peers["times"][name], peers["times"]["bare"])
            rows.append(
                {
                    "what": name,
                    "median_s": pm[name],
                    "ratio": pm[name] / pm["bare"],
                    "paired": paired,
                    "vs": "bare (peer)",
                }
            )
            for kind in backends:
                norm = (med[f"steerlab-{kind}-30"] / med["bare"]) / (pm[name] / pm["bare"])
                raw = med[f"steerlab-{kind}-30"] / pm[name]
                peer_rows.append(
                    {
                        "what": f"steerlab {kind} / {name}",
                        "normalised": norm,
                        "raw": raw,
                        "target": "< 1",
                        "ok": "ok" if norm < 1 else "MISSED",
                    }
                )
                checks.append((f"{kind} / {name} (normalised)", norm, 1.0))
        v = peers["vectors"]
        L = v["layer"]
        ours = out[f"steerlab-{next(iter(backends))}-30"].directions
        ours_l = next(d for s, d in ours.items() if s.layer == L)
        agree["peer_bare_vs_main_bare_cos"] = cosine(v["bare"], ref[L])
        agree["steering_vectors_cos"] = cosine(v["steering_vectors"], ours_l)
        agree["repeng_abs_cos"] = abs(cosine(v["repeng"], ours_l))

    print("\n" + table(rows, ["what", "median_s", "ratio", "paired", "vs", "target", "ok"]))
    if peer_rows:
        print("\nsteerlab against the peers (each divided by the bare cost of its own venv; raw = seconds / seconds):")
        print(table(peer_rows, ["what", "normalised", "raw", "target", "ok"]))
    print(
        "\nagreement with the bare baseline (max |diff| / max |ref|, layers 0..28):",
        {k: round(v, 6) for k, v in agree.items()},
    )
    print(load_line())
    path = write_results(
        "extraction",
        {
            "quick": args.quick,
            "n_pairs": n_pairs,
            "layer": layer,
            "batch_size": bs,
            "threads": threads,
            "repeats": repeats,
            "times": times,
            "median": med,
            "rows": rows,
            "peer_rows": peer_rows,
            "peers": peers and {k: peers[k] for k in ("versions", "times", "median", "threads", "machine")},
            "agreement": agree,
            "checks": [{"what": w, "value": v, "target": t} for w, v, t in checks],
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
