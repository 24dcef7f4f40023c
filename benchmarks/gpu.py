"""GPU benchmark: steerlab on a randomly initialised Llama-3-8B-shaped model, built in bf16 on the device.

Usage::

    python benchmarks/gpu.py [--shape 8b|tiny] [--device cuda] [--dtype bfloat16] [--backend nnsight|tl]
                             [--repeats 3] [--out results.json]

No download and no internet: the model is built from a config directly on the device (random weights:
speed and memory do not depend on their values) and wrapped with `steerlab.wrap`; the tokenizer is
steerlab's character-level test tokenizer, so a prompt of N characters is about N tokens. Shape ``8b`` is
Llama-3-8B's (hidden 4096, 32 layers, 32 heads with 8 key/value heads, MLP 14336, vocabulary 128,256:
8.0B parameters, 16 GB in bf16); ``tiny`` is a 4-layer model that runs in seconds on a CPU (the test
suite runs it so the script cannot rot).

Each ratio is against a baseline timed in the same run, repeats interleaved (A, B, A, B, ...), one
untimed warm-up per function, and CUDA synchronised at the end of every timed call:

- ``extract``: CAA at every layer (`sl.extract`, 64 pairs, 16 per batch) vs ``bare``: plain HF forwards
  (``output_hidden_states=True``, 16 texts per forward) over the same 128 full texts, reading every
  layer's last-token state.
- ``generate-steered-bN``: 64 greedy new tokens with a vector added at every position of the middle
  layer, for batches of 1 and 16 prompts, vs ``generate-hf-bN``: the HF model's own ``generate``.
- ``sweep-last`` vs ``sweep-all``: `sl.sweep` over 8 layers x 2 strengths on 32 prompts from a fresh
  `ChoiceTask`; ``LAST_PROMPT`` reuses each prompt's cached key/value prefix (one token per prompt and
  cell), ``ALL`` runs a full forward per cell. Reported as evaluations per second.
- peak device memory of each function (``torch.cuda.max_memory_allocated`` during its warm-up), and
  over the weights' own size.

Without nnsight installed (``--backend nnsight``, the default) the HF baselines still run and the
steerlab rows are reported as skipped, with what to install.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import string
import time
from pathlib import Path

from _common import machine, median, paired_ratio, quiet, set_threads, table, write_results

SHAPES = {
    "8b": dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    ),
    "tiny": dict(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
        vocab_size=None, max_position_embeddings=512, tie_word_embeddings=False,
    ),
}  # fmt: skip
# Workload per shape: pairs to extract from, prompt length (characters = tokens), batch size, new tokens,
# generation batch sizes, sweep prompts, sweep layers and strengths.
SIZES = {
    "8b": dict(pairs=64, prompt_chars=112, batch=16, new_tokens=64, gen_batches=(1, 16), sweep_items=32,
               sweep_layers=8, coeffs=(-4.0, 4.0), repeats=3),
    "tiny": dict(pairs=8, prompt_chars=24, batch=4, new_tokens=8, gen_batches=(1, 4), sweep_items=8,
                 sweep_layers=2, coeffs=(-1.0, 1.0), repeats=1),
}  # fmt: skip


def build_model(shape: str, device, dtype, attn: str):
    """A random Llama of ``shape``, created directly on ``device`` in ``dtype`` (no host copy), and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from steerlab.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    sizes = dict(SHAPES[shape])
    sizes["vocab_size"] = sizes["vocab_size"] or len(tok)
    cfg = LlamaConfig(**sizes, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn)
    return model.eval().requires_grad_(False), tok


def random_pairs(n: int, chars: int, seed: int = 0) -> list:
    """Contrast pairs with random prompts of ``chars`` characters and A/B answers (CAA format)."""
    import steerlab as sl

    rng = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + " .,"
    return [
        sl.data.ContrastPair("".join(rng.choice(alphabet) for _ in range(chars)), "(A)", "(B)", {"id": i})
        for i in range(n)
    ]


def bare_forwards(model, tok, texts: list[tuple[str, str]], batch: int):
    """Plain HF forwards over every positive and negative text (``batch`` texts per forward), reading each
    layer's hidden state at the last token: the mean difference ``[n_layers, d_model]`` (fp32)."""
    import torch

    device = model.get_input_embeddings().weight.device
    total = None
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            reads = []
            for side in ([p for p, _ in chunk], [n for _, n in chunk]):
                enc = tok(side, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                mask = enc["attention_mask"]
                positions = (mask.cumsum(1) - 1).clamp(min=0)
                out = model(
                    input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions, output_hidden_states=True
                )
                reads.append(torch.stack([h[:, -1] for h in out.hidden_states[1:]], dim=1).float())
            diff = (reads[0] - reads[1]).sum(0)
            total = diff if total is None else total + diff
    return (total / len(texts)).cpu()


class Timer:
    """Synchronised timing and per-function peak device memory."""

    def __init__(self, device):
        import torch

        self.torch = torch
        self.cuda = torch.device(device).type == "cuda"
        self.peaks: dict[str, float | None] = {}

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def call(self, fn) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def warm(self, name: str, fn) -> float:
        """One untimed call that also records the function's peak device memory (GiB)."""
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()
        t = self.call(fn)
        self.peaks[name] = self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None
        return t

    def rounds(self, fns: dict, repeats: int) -> dict[str, list[float]]:
        for name, fn in fns.items():
            print(f"  warm-up {name}: {self.warm(name, fn):.2f} s", flush=True)
        times: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(repeats):
            for name, fn in fns.items():
                times[name].append(self.call(fn))
                print(f"  round {r + 1}/{repeats} {name}: {times[name][-1]:.3f} s", flush=True)
        return times


def backend_missing(backend: str) -> str | None:
    module = {"nnsight": "nnsight", "tl": "transformer_lens"}[backend]
    if importlib.util.find_spec(module) is None:
        return (
            f"{module} is not installed, so only the HF baselines run. Install it (offline: the wheels listed in "
            f"benchmarks/README.md, `pip install --no-index --no-deps --target DIR ...` and PYTHONPATH=DIR)"
        )
    return None


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="8b")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--backend", choices=("nnsight", "tl"), default="nnsight")
    ap.add_argument("--attn", default="eager", help="HF attention kernel (load_model's default: eager)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds after the warm-up (default: per shape)")
    ap.add_argument("--out", default=None, help="JSON results path (default benchmarks/results/gpu-<shape>.json)")
    args = ap.parse_args(argv)

    quiet()
    threads = set_threads()
    import torch

    import steerlab as sl
    from steerlab.models import pick_device, pick_dtype
    from steerlab.prompts import answer_stem

    device = pick_device(args.device)
    dtype = pick_dtype(device, args.dtype)
    size = SIZES[args.shape]
    repeats = args.repeats or size["repeats"]
    timer = Timer(device)

    start = time.perf_counter()
    model, tok = build_model(args.shape, device, dtype, args.attn)
    timer.sync()
    build_s = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    n_layers = model.config.num_hidden_layers
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(
        f"{args.shape}: {n_params / 1e6:,.1f}M parameters, {weights_gib:.2f} GiB of weights, {dtype}, {device}"
        f"{f' ({gpu})' if gpu else ''}, built in {build_s:.1f} s; {threads} threads, {repeats} rounds",
        flush=True,
    )

    missing = backend_missing(args.backend)
    lm = None
    if not missing:
        try:
            lm = sl.wrap(model, tok, backend=args.backend, name=f"random-llama-{args.shape}")
        except sl.SteerlabError as exc:  # e.g. an architecture the backend does not support
            missing = f"{exc}; only the HF baselines run"
    if missing:
        print(f"\nbackend {args.backend!r}: {missing}\n", flush=True)

    pairs = random_pairs(size["pairs"], size["prompt_chars"])
    chat = lambda p: tok.apply_chat_template([{"role": "user", "content": p.prompt}], tokenize=False,
                                             add_generation_prompt=True)  # fmt: skip
    texts = [(chat(p) + answer_stem(p.positive), chat(p) + answer_stem(p.negative)) for p in pairs]
    tok.padding_side = "left"
    out: dict = {}  # each function's last result
    fns = {"bare": lambda: out.__setitem__("bare", bare_forwards(model, tok, texts, size["batch"]))}
    if lm is not None:
        fns["extract"] = lambda: out.__setitem__(
            "extract", sl.extract(lm, pairs, range(n_layers), batch_size=size["batch"], progress=False)
        )
    print("extraction at every layer:", flush=True)
    t_extract = timer.rounds(fns, repeats)
    vec = out.get("extract")
    agreement = None
    if vec is not None:  # the same mean difference both ways; HF's last hidden state is after the final norm
        ours = torch.stack([vec[sl.Site(layer)] for layer in range(n_layers - 1)]).float()
        bare = out["bare"][: n_layers - 1]
        agreement = float(((ours - bare).norm(dim=-1) / bare.norm(dim=-1)).max())
        print(f"steerlab's vector vs the bare mean difference, layers 0..{n_layers - 2}: max relative error "
              f"{agreement:.1e}", flush=True)  # fmt: skip

    middle = n_layers // 2
    gen_counts: dict[str, int] = {}
    gen_fns = {}
    for b in size["gen_batches"]:
        prompts = [chat(p) for p in pairs[:b]]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        n = size["new_tokens"]
        kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)

        def hf_gen(enc=enc, kw=kw, name=f"generate-hf-b{b}"):
            ids = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kw)
            gen_counts[name] = int(ids.shape[1] - enc["input_ids"].shape[1])

        gen_fns[f"generate-hf-b{b}"] = hf_gen
        if lm is not None:
            batch = lm.tokenize(prompts)  # the same ids as `enc`
            edits = sl.steer(vec.select([middle]), 4.0)
            extra = {"min_new_tokens": n} if args.backend == "nnsight" else {}  # TL's generate takes no min

            def steered(batch=batch, edits=edits, extra=extra, n=n, name=f"generate-steered-b{b}"):
                ids = lm.generate_ids(batch, edits=edits, max_new_tokens=n, **extra)
                gen_counts[name] = int(ids.shape[1] - batch.prompt_len)

            gen_fns[f"generate-steered-b{b}"] = steered
    print(f"generation, {size['new_tokens']} new tokens, steered at layer {middle}:", flush=True)
    t_gen = timer.rounds(gen_fns, repeats)

    t_sweep: dict[str, list[float]] = {}
    layers = sorted({round(i * (n_layers - 1) / max(size["sweep_layers"] - 1, 1)) for i in range(size["sweep_layers"])})
    n_eval = len(layers) * len(size["coeffs"])
    if lm is not None:
        items = random_pairs(size["sweep_items"], size["prompt_chars"], seed=1)

        def run_sweep(positions):
            task = sl.ChoiceTask.from_pairs(lm, items, batch_size=size["batch"])
            sl.sweep(lm, {"caa": vec}, task, coeffs=size["coeffs"], sites=layers, positions=positions, progress=False)

        print(f"sweep: {len(layers)} layers x {len(size['coeffs'])} strengths on {len(items)} prompts:", flush=True)
        t_sweep = timer.rounds(
            {"sweep-last": lambda: run_sweep(sl.LAST_PROMPT), "sweep-all": lambda: run_sweep(sl.ALL)}, repeats
        )

    rows = _rows(t_extract, t_gen, t_sweep, gen_counts, size, n_eval, timer.peaks, weights_gib)
    print("\n" + table(rows, ["what", "median_s", "baseline", "ratio", "paired", "rate", "peak_gib", "over_weights"]))
    if missing:
        print(f"\nskipped (backend {args.backend!r} unavailable): extract, generate-steered-*, sweep-*")
    payload = {
        "shape": args.shape, "config": {k: v for k, v in model.config.to_dict().items() if k in SHAPES["8b"]},
        "n_params": n_params, "weights_gib": weights_gib, "dtype": str(dtype), "device": str(device), "gpu": gpu,
        "backend": None if missing else args.backend, "attn_implementation": args.attn, "build_s": build_s,
        "sizes": size, "repeats": repeats, "steered_layer": middle, "sweep_layers": layers,
        "extract_vs_bare_max_rel_error": agreement,
        "times": {**t_extract, **t_gen, **t_sweep}, "new_tokens": gen_counts, "peak_gib": timer.peaks, "rows": rows,
        "versions": _versions(),
    }  # fmt: skip
    if args.out:
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmark": "gpu", "machine": machine(), **payload}, indent=2, default=str))
    else:
        path = write_results(f"gpu-{args.shape}", payload)
    print(f"\nwrote {path}")
    return payload


def _rows(t_extract, t_gen, t_sweep, gen_counts, size, n_eval, peaks, weights_gib) -> list[dict]:
    """One table row per measured function: median time, its baseline's, the ratio, and its peak memory."""
    baselines = {"extract": "bare", "sweep-last": "sweep-all"}
    baselines.update({f"generate-steered-b{b}": f"generate-hf-b{b}" for b in size["gen_batches"]})
    times = {**t_extract, **t_gen, **t_sweep}
    rows = []
    for name, ts in times.items():
        row = {"what": name, "median_s": median(ts), "peak_gib": peaks.get(name)}
        if row["peak_gib"] is not None:
            row["over_weights"] = row["peak_gib"] - weights_gib
        base = baselines.get(name)
        if base in times:
            row.update(baseline=median(times[base]), ratio=median(ts) / median(times[base]),
                       paired=paired_ratio(ts, times[base]))  # fmt: skip
        if name.startswith("generate"):
            b = int(name.rsplit("-b", 1)[1])
            row["rate"] = f"{gen_counts[name] * b / median(ts):.0f} tok/s"
        if name.startswith("sweep"):
            row["rate"] = f"{n_eval / median(ts):.2f} eval/s"
        rows.append(row)
    return rows


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in ("torch", "transformers", "nnsight", "transformer-lens"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


if __name__ == "__main__":
    main()
