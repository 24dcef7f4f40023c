"""TransformerLens backend. The only module (with `nnsight_backend`) that imports transformer_lens.

The HookedTransformer is built without weight processing (no LayerNorm folding, no centring), so
its activations equal the Hugging Face model's: ``blocks.L.hook_resid_post`` is HF
``hidden_states[L + 1]``. Hooks are attached with ``HookedTransformer.hooks`` (removed in a
``finally``) and, for ``mlp_in``, a PyTorch forward hook on ``blocks.L.ln2`` (TransformerLens has no
hook point after the norm's weight), removed the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from steerlab.backends.base import Backend, EditRunner, removing
from steerlab.errors import SteerlabError
from steerlab.sites import Batch, Edit, ForwardOutput, Prefix, Site

logger = logging.getLogger(__name__)

TL_HOOKS = {
    "resid_pre": "blocks.{L}.hook_resid_pre",
    "attn_out": "blocks.{L}.hook_attn_out",
    "mlp_in": "blocks.{L}.ln2",  # module output (normalised, weight applied), via a PyTorch hook
    "mlp_out": "blocks.{L}.hook_mlp_out",
    "resid_post": "blocks.{L}.hook_resid_post",
}


def build_hooked_transformer(hf_model, tokenizer, device, dtype, tl_name: str | None = None):
    """A HookedTransformer with the HF model's weights and no weight processing.

    Uses the official TransformerLens name when one is known (``tl_name`` or the HF name);
    otherwise reads the config from the HF model's local folder.
    """
    from transformer_lens import HookedTransformer, loading

    name = tl_name or hf_model.name_or_path
    official = True
    try:
        loading.get_official_model_name(name)
    except ValueError:
        official = False
    if official:
        return HookedTransformer.from_pretrained_no_processing(
            name, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype, default_prepend_bos=False
        )
    if not Path(name).exists():
        raise SteerlabError(
            f"TransformerLens does not know {name!r} and it is not a local folder; "
            "use backend='nnsight', or save the model to a folder first"
        )
    cfg = loading.get_pretrained_model_config(name, device=device, dtype=dtype, default_prepend_bos=False)
    state = loading.get_pretrained_state_dict(name, cfg, hf_model, dtype=dtype)
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    return model.to(device)


class TLBackend(Backend):
    """TransformerLens backend (see `steerlab.models.load_model`)."""

    kind = "tl"

    def __init__(self, *, tl_name: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.tl = build_hooked_transformer(self.hf_model, self.tokenizer, self.device, self.dtype, tl_name)
        self.tl.eval().requires_grad_(False)
        self.tl.tokenizer.padding_side = "left"
        # The HF copy is not needed for running; keep only what TL holds to save memory.
        self.hf_config = self.hf_model.config
        self.hf_model = None

    @property
    def model(self) -> torch.nn.Module:
        return self.tl

    def input_embeddings(self) -> Tensor:
        return self.tl.W_E  # TransformerLens folds Gemma's sqrt(d_model) scale into W_E

    def hook_name(self, site: Site) -> str:
        return TL_HOOKS[site.kind].format(L=self.site(site).layer)

    def _run(
        self, batch: Batch, edits: Sequence[Edit], record: Sequence[Site], grad: bool, incremental: bool, start: int = 0
    ):
        """Hooks for one call: returns (fwd_hooks for TL, module hooks to register, records dict)."""
        by_site: dict[Site, list[Edit]] = defaultdict(list)
        for edit in edits:
            by_site[edit.site].append(edit)
        records: dict[Site, Tensor] = {}
        wanted = set(record)
        fwd_hooks, module_hooks = [], []
        for site in sorted(set(by_site) | wanted, key=lambda s: s.order):
            runner = EditRunner(by_site[site], batch, incremental, start) if site in by_site else None

            def fn(act: Tensor, hook=None, site=site, runner=runner) -> Tensor:
                if runner is not None:
                    act = runner(act)
                if site in wanted:
                    records[site] = act if grad else act.detach()
                return act

            if site.kind == "mlp_in":
                module = self.tl.blocks[site.layer].ln2
                module_hooks.append((module, lambda mod, inp, out, fn=fn: fn(out)))
            else:
                fwd_hooks.append((self.hook_name(site), fn))
        return fwd_hooks, module_hooks, records

    @contextlib.contextmanager
    def _hooked(self, module_hooks, fwd_hooks):
        """PyTorch module hooks and TransformerLens hooks for one call, removed even if it raises."""
        with removing([]) as handles:
            for module, hook in module_hooks:
                handles.append(module.register_forward_hook(hook))
            with self.tl.hooks(fwd_hooks=fwd_hooks):
                yield

    def _forward(self, batch, edits, record, grad, prefix):
        full = prefix.join(batch) if prefix is not None else batch
        start = prefix.batch.prompt_len if prefix is not None else 0
        fwd_hooks, module_hooks, records = self._run(full, edits, record, grad, incremental=False, start=start)
        cache = prefix.cache if prefix is not None else None
        with self._hooked(module_hooks, fwd_hooks):
            logits = self.tl(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache)
        return ForwardOutput(logits, records)

    def _prefix(self, batch, record):
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        cache = TransformerLensKeyValueCache.init_cache(self.tl.cfg, self.device, len(batch))
        fwd_hooks, module_hooks, records = self._run(batch, (), record, False, incremental=False)
        with self._hooked(module_hooks, fwd_hooks):
            self.tl(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache, return_type=None)
        cache.freeze()  # later calls read the prefix without appending to it
        return Prefix(batch, cache, records)

    def _generate(self, batch, edits, max_new_tokens, use_cache, gen_kwargs):
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        fwd_hooks, module_hooks, _ = self._run(batch, edits, (), False, incremental=use_cache)
        ids, mask = batch.input_ids, batch.attention_mask
        cache = TransformerLensKeyValueCache.init_cache(self.tl.cfg, self.device, len(batch)) if use_cache else None
        eos = self.tokenizer.eos_token_id
        done = torch.zeros(len(batch), dtype=torch.bool, device=self.device)
        with self._hooked(module_hooks, fwd_hooks):
            logits = self.tl(ids, attention_mask=mask, past_kv_cache=cache, return_type="logits")
            for _ in range(max_new_tokens):
                token = sample_next(logits[:, -1].float(), gen_kwargs)
                token = torch.where(done, torch.full_like(token, self.tokenizer.pad_token_id), token)
                ids = torch.cat([ids, token[:, None]], dim=1)
                mask = torch.cat([mask, torch.ones_like(token)[:, None]], dim=1)
                done |= token == eos
                if bool(done.all()):
                    break
                if use_cache:
                    logits = self.tl(
                        token[:, None], attention_mask=torch.ones_like(token)[:, None], past_kv_cache=cache
                    )
                else:
                    logits = self.tl(ids, attention_mask=mask, return_type="logits")
        return ids


def sample_next(logits: Tensor, gen_kwargs: dict) -> Tensor:
    """Greedy by default; ``do_sample=True`` samples with ``temperature`` (HF-style keywords)."""
    unknown = set(gen_kwargs) - {"do_sample", "temperature"}
    if unknown:
        raise SteerlabError(
            f"the TransformerLens backend's generate takes do_sample and temperature, not {sorted(unknown)}"
        )
    if not gen_kwargs.get("do_sample"):
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / gen_kwargs.get("temperature", 1.0), dim=-1)
    return torch.multinomial(probs, 1).squeeze(-1)
