"""Peer libraries' extraction time on the same pairs, with a bare HF baseline in the same venv.

Runs inside ``benchmarks/.peer-venv`` (transformers 4.x, steering-vectors, repeng; created by
``python benchmarks/extraction.py --setup-peers``), because both peers pin ``transformers<5``.
`extraction.py` calls it as a subprocess and reads the JSON it prints on its last stdout line::

    benchmarks/.peer-venv/bin/python benchmarks/peers.py --pairs pairs.json [--repeats 3]

``pairs.json`` holds ``{"pairs": [[positive_text, negative_text], ...]}``: full texts (chat-formatted
prompt + answer), written by `extraction.py` so that both venvs see exactly the same strings.

`bare_forward` is also imported by `extraction.py` (main venv), so the baseline code is the same
in both environments.

Loading the steerlab cache with transformers 4.x needs two fixes, both applied in `load_peer_model`:
the folder was saved by transformers 5, whose ``config.json`` keeps ``rope_theta`` inside
``rope_parameters`` (4.x ignores that key and silently uses theta 10,000 instead of 100,000, which
changes every activation), and whose ``tokenizer_config.json`` names the class ``TokenizersBackend``,
unknown to 4.x (the tokenizer is built from ``tokenizer.json`` instead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # repeng shows a bar unconditionally; set before tqdm loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in _common (the main venv's side): before torch loads

FOLDER = Path.home() / ".cache" / "steerlab" / "models" / "smollm2-135m-instruct"


def bare_forward(model, tok, pairs, batch_size: int):
    """Plain HF forwards (``output_hidden_states=True``) over every positive and negative text, reading
    each layer's hidden state at the last real token. Returns the mean difference, ``[n_layers, d]``.

    Batches are ``batch_size`` positive texts then the same pairs' negative texts, as in
    steering-vectors; position ids are counted from each row's first real token.
    """
    import torch

    total = None
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            reads = []
            for texts in ([p for p, _ in chunk], [n for _, n in chunk]):
                enc = tok(texts, return_tensors="pt", padding=True)
                mask = enc["attention_mask"]
                positions = (mask.cumsum(1) - 1).clamp(min=0)
                out = model(
                    input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions, output_hidden_states=True
                )
                last = (mask * torch.arange(mask.shape[1])).argmax(1)  # last real token, either padding side
                rows = torch.arange(len(texts))
                reads.append(torch.stack([h[rows, last] for h in out.hidden_states[1:]], dim=1).float())
            diff = (reads[0] - reads[1]).sum(0)
            total = diff if total is None else total + diff
    return total / len(pairs)


def load_peer_model(folder: Path = FOLDER):
    """The steerlab-cached SmolLM2 folder in transformers 4.x (fp32, eager attention, eval)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    raw = json.loads((folder / "config.json").read_text())
    cfg = AutoConfig.from_pretrained(folder)
    rope = raw.get("rope_parameters") or {}
    if "rope_theta" not in raw and "rope_theta" in rope:
        if rope.get("rope_type", "default") != "default":
            raise SystemExit(f"{folder}: rope type {rope['rope_type']!r} needs a rope_scaling translation for 4.x")
        cfg.rope_theta = float(rope["rope_theta"])
    model = AutoModelForCausalLM.from_pretrained(folder, config=cfg, dtype=torch.float32, attn_implementation="eager")
    model.eval().requires_grad_(False)
    special = json.loads((folder / "tokenizer_config.json").read_text())
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(folder / "tokenizer.json"),
        **{k: special[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if special.get(k)},
    )
    tok.padding_side = "right"
    return model, tok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True, help="JSON file with {'pairs': [[pos_text, neg_text], ...]}")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup-pairs", type=int, default=16)
    ap.add_argument("--read-layer", type=int, default=12, help="layer whose vectors are returned for comparison")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import interleaved, machine, median, quiet, set_threads

    quiet()
    threads = set_threads()
    import repeng
    import steering_vectors
    import torch
    import transformers
    from repeng import ControlVector, DatasetEntry
    from steering_vectors import train_steering_vector

    pairs = [tuple(p) for p in json.loads(Path(args.pairs).read_text())["pairs"]]
    model, tok = load_peer_model()
    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers))
    bs = args.batch_size
    out: dict = {}

    def bare(ps=pairs):
        out["bare"] = bare_forward(model, tok, ps, bs)

    def sv(ps=pairs):
        out["steering_vectors"] = train_steering_vector(model, tok, list(ps), layers=layers, batch_size=bs)

    def rp(ps=pairs):
        # repeng batches texts, positive and negative interleaved: bs texts = the same forward shapes as the others
        data = [DatasetEntry(positive=p, negative=n) for p, n in ps]
        out["repeng"] = ControlVector.train(model, tok, data, batch_size=bs, hidden_layers=layers, method="pca_diff")

    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    few = pairs[: args.warmup_pairs]
    warm = {"bare": lambda: bare(few), "steering_vectors": lambda: sv(few), "repeng": lambda: rp(few)}
    times = interleaved({"bare": bare, "steering_vectors": sv, "repeng": rp}, args.repeats, warmup=warm, log=log)

    L = args.read_layer
    result = {
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "steering_vectors": getattr(steering_vectors, "__version__", "0.12.2"),
            "repeng": getattr(repeng, "__version__", "0.4.0"),
        },
        "threads": threads,
        "n_pairs": len(pairs),
        "batch_size": bs,
        "times": times,
        "median": {k: median(v) for k, v in times.items()},
        "vectors": {
            "layer": L,
            "bare": out["bare"][L].tolist(),
            "steering_vectors": out["steering_vectors"].layer_activations[L].float().tolist(),
            "repeng": [float(x) for x in out["repeng"].directions[L]],
        },
        "machine": machine(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
