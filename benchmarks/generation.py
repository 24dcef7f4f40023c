"""Steered greedy generation against unsteered HF ``generate``.

Usage::

    .venv/bin/python benchmarks/generation.py [--quick] [--no-profile]

One chat prompt, 64 new tokens, greedy, batch 1, SmolLM2-135M-Instruct on CPU (fp32). A CAA vector
(mean difference of 32 persona pairs at layer 12) is added at every position of layer 12's output
with strength 8. Compared:

- ``hf``: the HF model's own ``generate`` (the nnsight backend's model), no steering.
- ``nnsight-steered``: ``lm.generate_ids(prompt, edits=steer(vec, 8))`` on the nnsight backend
  (steerlab's default for generation).
- ``tl-steered`` / ``tl-plain``: the TransformerLens backend with and without the edit.

Every run's new-token count is checked: the ratio is computed per generated token, which equals the
time ratio when every run produced the same number of tokens. Target: nnsight-steered <= 1.15x.
A short cProfile of the TransformerLens run shows where its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

from _common import interleaved, median, paired_ratio, quiet, set_threads, table, verdict, write_results

PROMPT = "Write a detailed essay about the history of the printing press, from Gutenberg to the present day."


def profile_tl(tl, batch, edits, hf, tokens: int) -> dict:
    """cProfile of TL's steered generation and of HF's generate: calls per token and the top functions."""

    def run(fn):
        pr = cProfile.Profile()
        pr.enable()
        fn()
        pr.disable()
        stats = pstats.Stats(pr)
        top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]  # by own (tottime) time
        rows = [
            {"function": f"{where.split('site-packages/')[-1]}:{line}({name})", "calls": v[1], "tottime_s": v[2]}
            for (where, line, name), v in top
        ]
        return {"total_s": stats.total_tt, "calls": stats.total_calls, "top": rows}

    out = {
        "tokens": tokens,
        "tl": run(lambda: tl.generate_ids(batch, edits=edits, max_new_tokens=tokens)),
        "hf": run(
            lambda: hf.generate(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                max_new_tokens=tokens,
                do_sample=False,
                pad_token_id=2,
            )
        ),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 tokens, 1 round")
    ap.add_argument("--tokens", type=int, default=None, help="new tokens (default 64, --quick 16)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds after the warm-up (default 3, --quick 1)")
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--layer", type=int, default=12)
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()

    quiet()
    threads = set_threads()
    from steerlab.data import load_persona
    from steerlab.extraction import extract
    from steerlab.interventions import steer
    from steerlab.models import load_model

    tokens = args.tokens or (16 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 3)
    nn = load_model(backend="nnsight")
    tl = load_model(backend="tl")
    vec = extract(nn, load_persona("agreeableness")[:32], [args.layer], method="caa", progress=False)
    edits = steer(vec, args.alpha)  # every position (prompt and generated) of resid_post[layer]
    batch = nn.tokenize(nn.chat(PROMPT))
    hf = nn.hf_model
    pad = nn.tokenizer.pad_token_id
    counts: dict[str, set[int]] = {}
    texts: dict[str, str] = {}

    def gen(name, fn, n=tokens):
        def run():
            ids = fn(n)
            if n == tokens:  # not the warm-up
                counts.setdefault(name, set()).add(int(ids.shape[1] - batch.prompt_len))
                texts[name] = nn.tokenizer.decode(ids[0, batch.prompt_len :], skip_special_tokens=True)

        return run

    makers = {
        "hf": lambda n: hf.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=pad,
        ),
        "nnsight-steered": lambda n: nn.generate_ids(batch, edits=edits, max_new_tokens=n),
        "tl-steered": lambda n: tl.generate_ids(batch, edits=edits, max_new_tokens=n),
        "tl-plain": lambda n: tl.generate_ids(batch, max_new_tokens=n),
    }
    fns = {name: gen(name, m) for name, m in makers.items()}
    warm = {name: gen(name, m, 4) for name, m in makers.items()}
    print(
        f"generation: {tokens} new tokens, prompt of {batch.prompt_len} tokens, strength {args.alpha} at layer "
        f"{args.layer}, {threads} threads, {repeats} rounds",
        flush=True,
    )
    times = interleaved(fns, repeats, warmup=warm)

    med = {k: median(v) for k, v in times.items()}
    n_new = {k: max(v) for k, v in counts.items()}
    per_tok = {k: med[k] / n_new[k] for k in med}
    rows = []
    for name in fns:
        r = per_tok[name] / per_tok["hf"]
        row = {
            "what": name,
            "median_s": med[name],
            "new_tokens": n_new[name],
            "tokens_per_s": 1 / per_tok[name],
            "ratio": r,
            "paired": paired_ratio(times[name], times["hf"]) * n_new["hf"] / n_new[name],
        }
        if name == "nnsight-steered":
            row.update(target="<= 1.15", ok=verdict(r, 1.15))
        rows.append(row)
    rows.append(
        {
            "what": "tl-steered / tl-plain",
            "ratio": per_tok["tl-steered"] / per_tok["tl-plain"],
            "paired": paired_ratio(times["tl-steered"], times["tl-plain"]),
        }
    )
    print("\n" + table(rows, ["what", "median_s", "new_tokens", "tokens_per_s", "ratio", "paired", "target", "ok"]))
    if len({n_new[k] for k in n_new}) > 1:
        print("note: runs produced different numbers of tokens; ratios are per generated token")
    same = texts["nnsight-steered"] == texts["tl-steered"]
    print(f"\nsteered text, nnsight == TL: {same}")
    print(f"  hf:      {texts['hf'][:100]!r}\n  steered: {texts['nnsight-steered'][:100]!r}")

    prof = None
    if not args.no_profile:
        prof = profile_tl(tl, batch, edits, hf, 16)
        t, h = prof["tl"], prof["hf"]
        print(
            f"\nprofile, 16 tokens: TL {t['total_s']:.2f} s, {t['calls'] / 16:.0f} Python calls per token; "
            f"HF {h['total_s']:.2f} s, {h['calls'] / 16:.0f} per token. TL's top functions by own time:"
        )
        print(table(t["top"][:10], ["function", "calls", "tottime_s"]))
    path = write_results(
        "generation",
        {
            "quick": args.quick,
            "tokens": tokens,
            "alpha": args.alpha,
            "layer": args.layer,
            "threads": threads,
            "repeats": repeats,
            "prompt": PROMPT,
            "times": times,
            "median": med,
            "new_tokens": n_new,
            "rows": rows,
            "texts": texts,
            "steered_text_tl_equals_nnsight": same,
            "profile": prof,
        },
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
