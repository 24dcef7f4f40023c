"""Device check of steering on a GPU: sync-free edits, tensors on the activations' device, the nnsight matrix.

Usage (on a machine with CUDA; nnsight installed or on PYTHONPATH, see shared ENVIRONMENT.md)::

    PYTHONPATH=. python benchmarks/device_check.py [--device cpu]

Prints one JSON line per check (``--device cpu`` is a dry run of the script itself):

- ``edit_runner_no_sync``: an `EditRunner` with add/ablate/clamp edits over a prefill and four decode
  steps in bf16 under ``torch.cuda.set_sync_debug_mode("error")`` (any host-device sync raises), for
  every kind of positions; the positions each edit touched per step.
- ``interventions_cast_once``: a second call of each edit makes no ``Tensor.to`` copy.
- ``sae_edits_on_device``: `splice` and `clamp_latent` with an SAE on the CPU steer bf16 activations on
  the device (an SAELens-shaped stub: SAELens need not be installed).
- ``gcg_gradient_on_device``, ``probe_on_device_features``: GCG's one-hot gradient and the OOD probe.
- ``nnsight_matrix``: the architecture matrix of tests/test_architectures.py (resid_post vs HF hidden
  states, cached vs uncached steered generation and its edit counts, prefix reuse beyond the sliding
  window) for every tiny architecture on the device, fp32.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from types import SimpleNamespace

import torch
import transformers

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--device", default="cuda", help="cuda (the check), or cpu for a dry run of the script")
DEV = torch.device(parser.parse_args().device)
BF16 = {"device": DEV, "dtype": torch.bfloat16}
if DEV.type != "cuda":  # a dry run: nothing to synchronise
    torch.cuda.synchronize = lambda: None
    torch.cuda.set_sync_debug_mode = lambda mode: None
report: dict = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def check(fn):
    start = time.time()
    try:
        report[fn.__name__] = {"ok": True, **fn()}
    except Exception as exc:
        report[fn.__name__] = {"ok": False, "error": "".join(traceback.format_exception(exc))[-1500:]}
    report[fn.__name__]["s"] = round(time.time() - start, 2)
    return fn


@check
def edit_runner_no_sync():
    from steerlab.backends.base import EditRunner, collect_counts
    from steerlab.interventions import ablate, add, clamp
    from steerlab.sites import ALL, GENERATED, LAST_PROMPT, PROMPT, Batch, Positions, Site

    out = {}
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], device=DEV)
    batch = Batch(torch.zeros_like(mask), mask)
    for pos in [ALL, PROMPT, GENERATED, LAST_PROMPT, Positions.from_index(2), Positions.from_index(-2)]:
        v = torch.randn(8)
        edits = [add(Site(0), v, 2.0, pos), ablate(Site(0), v, pos), clamp(Site(0), v, 1.0, pos)]
        for edit in edits:  # each direction is cast on first use: outside the checked region
            edit.fn(torch.zeros(1, 1, 8, **BF16))
        steps = [torch.randn(2, 5, 8, **BF16)] + [torch.randn(2, 1, 8, **BF16) for _ in range(4)]
        runner = EditRunner(edits, batch, incremental=True)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            outs = [runner(h) for h in steps]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        counts = collect_counts(edits, [runner]).per_forward[0]
        out[f"{pos.kind}{pos.start}"] = {"counts": counts, "out": f"{outs[-1].device} {outs[-1].dtype}"}
    return out


@check
def interventions_cast_once():
    from steerlab.interventions import ablate, add, clamp
    from steerlab.sites import Site

    to, calls, same = torch.Tensor.to, [], []
    v = torch.randn(16)
    for edit in (add(Site(0), v, 2.0), ablate(Site(0), v), clamp(Site(0), v, 1.0)):
        h = torch.randn(2, 3, 16, **BF16)
        first = edit.fn(h)
        torch.Tensor.to = lambda self, *args, **kwargs: calls.append(1) or to(self, *args, **kwargs)
        try:
            again = edit.fn(h)
        finally:
            torch.Tensor.to = to
        same.append(bool(torch.equal(first, again)) and (again.device, again.dtype) == (h.device, h.dtype))
    return {"copies_on_second_call": len(calls), "same_on_device_and_dtype": same}


class StubSAE(torch.nn.Module):
    """An SAE with SAELens's interface (W_enc, W_dec, encode, decode, dtype, cfg.d_sae)."""

    def __init__(self, d: int = 16, n: int = 32):
        super().__init__()
        self.W_enc, self.b_enc = torch.nn.Parameter(torch.randn(d, n)), torch.nn.Parameter(torch.full((n,), 0.1))
        self.W_dec, self.b_dec = torch.nn.Parameter(torch.randn(n, d)), torch.nn.Parameter(torch.zeros(d))
        self.cfg = SimpleNamespace(d_sae=n)

    @property
    def dtype(self) -> torch.dtype:
        return self.W_dec.dtype

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, z):
        return z @ self.W_dec + self.b_dec


@check
def sae_edits_on_device():
    from steerlab.sae.quality import splice
    from steerlab.sae.steer import clamp_latent
    from steerlab.sites import Site

    sae, h, out = StubSAE(), torch.randn(2, 4, 16, **BF16), {}
    for name, edit in (("splice", splice(sae, Site(0))), ("clamp_latent", clamp_latent(sae, Site(0), [1, 2], 3.0))):
        first, again = edit.fn(h), edit.fn(h)
        out[name] = f"{again.device} {again.dtype} repeatable={bool(torch.equal(first, again))}"
    return {**out, "user_sae_stays_on": str(sae.W_dec.device)}


@check
def gcg_gradient_on_device():
    from steerlab.robustness.adversarial import AttackTarget, _gradient
    from steerlab.sites import ForwardOutput

    embed = torch.randn(50, 16, device=DEV)

    class Model:
        device = DEV

        def forward(self, batch, edits, grad):
            h = torch.zeros(*batch.input_ids.shape, 16, device=DEV)
            for edit in edits:
                h = edit.fn(h)
            return ForwardOutput(h @ embed.T)

    grad = _gradient(Model(), AttackTarget([1, 2], [3], 4, 5), torch.tensor([6, 7]), [], embed)
    return {"grad": f"{grad.device} {tuple(grad.shape)}"}


@check
def probe_on_device_features():
    from steerlab.robustness.ood import BehaviourProbe
    from steerlab.sites import Site

    pos, neg = torch.randn(20, 8, device=DEV) + 0.5, torch.randn(20, 8, device=DEV)
    probe = BehaviourProbe.fit(pos, neg, Site(1))
    return {"train_accuracy": probe.train_accuracy, "scores": len(probe.score(neg))}


@check
def nnsight_matrix():
    from transformers import AutoModelForCausalLM

    from steerlab.interventions import add
    from steerlab.models import load_model
    from steerlab.sites import ALL, LAST_PROMPT, SITE_KINDS, Batch, Site
    from steerlab.testing import TINY_ARCHITECTURES, make_tiny_model

    root, out = tempfile.mkdtemp(), {}
    prompts = ["the quick brown fox jumps over the dog", "a shorter prompt, still > 8"]
    sites = [Site(L, k) for L in range(2) for k in SITE_KINDS]
    for arch in TINY_ARCHITECTURES:
        try:
            folder = make_tiny_model(f"{root}/{arch}", arch=arch)
            lm = load_model(str(folder), backend="nnsight", device=str(DEV), dtype=torch.float32)
            b = lm.tokenize(prompts)
            hf = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").to(DEV).eval()
            with torch.no_grad():
                hidden = hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                            output_hidden_states=True).hidden_states  # fmt: skip
            real = b.attention_mask.bool()
            resid = lm.record(b, [Site(0)])[Site(0)]
            edit = add(Site(1), torch.randn(lm.d_model) * 4, 1.0, ALL)
            cached = lm.generate_ids(b, edits=edit, max_new_tokens=6, use_cache=True)
            counts = lm.last_edit_counts.per_forward[0]
            uncached = lm.generate_ids(b, edits=edit, max_new_tokens=6, use_cache=False)
            last = add(Site(1, "mlp_out"), torch.randn(lm.d_model) * 3, 2.0, LAST_PROMPT)
            full = lm.forward(b, edits=last, record=sites)
            pre = lm.prefix(Batch(b.input_ids[:, :-3], b.attention_mask[:, :-3]))
            errs = []
            suffix = Batch(b.input_ids[:, -3:], b.attention_mask[:, -3:])
            for _ in range(2):  # reused
                o = lm.forward(suffix, prefix=pre, edits=last, record=sites)
                errs += [float((o.logits - full.logits[:, -3:]).abs().max())]
                errs += [float((o.activations[s] - full.activations[s][:, -3:]).abs().max()) for s in sites]
            n_new = cached.shape[1] - b.prompt_len
            out[arch] = {
                "resid_err": float((resid[real] - hidden[1][real]).abs().max()),
                "cached_eq_uncached": bool(torch.equal(cached, uncached)),
                "counts_ok": counts == (int(b.attention_mask.sum()),) + (len(b),) * (n_new - 1),
                "prefix_max_err": max(errs),
            }
        except Exception as exc:
            out[arch] = {"error": "".join(traceback.format_exception(exc))[-800:]}
    return out


for name, value in report.items():
    print(name, json.dumps(value))
