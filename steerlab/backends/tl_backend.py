"""TransformerLens backend. The only module (with `nnsight_backend`) that imports transformer_lens.

The HookedTransformer is built without weight processing (no LayerNorm folding, no centring), so
its activations equal the Hugging Face model's: ``blocks.L.hook_resid_post`` is HF
``hidden_states[L + 1]``. Hooks are attached with ``HookedTransformer.hooks`` (removed in a
``finally``) and, for ``mlp_in``, a PyTorch forward hook on ``blocks.L.ln2`` (TransformerLens has no
hook point after the norm's weight), removed the same way.

The TransformerLens config is read from the Hugging Face model's own config (`tl_config_dict`), never
from its name or folder (TransformerLens guesses Llama or Gemma from a path's name, then crashes on a
local ``Llama-2-7b-chat-hf`` folder). Where it equals an official TransformerLens model's config,
that model's name is kept in ``TLBackend.tl_name``. The conversion runs where the Hugging Face model
is (give it on the CPU: `steerlab.models.load_model` does), and only the converted model is moved
to the device, after the Hugging Face copy is dropped.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from steerlab.backends.base import Backend, removing, shared_blocks, tile
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


# Architectures whose TransformerLens config is read from the Hugging Face config (TransformerLens's own
# conversion, given the config alone), and those TransformerLens knows only by official name: Gemma-2/3,
# whose config is the official one of the same family with the sizes of the model at hand.
FROM_CONFIG = (
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM",
    "GPT2LMHeadModel", "GPTNeoXForCausalLM",
)  # fmt: skip
GEMMA_FAMILIES = {"Gemma2ForCausalLM": "google/gemma-2-2b", "Gemma3ForCausalLM": "google/gemma-3-270m"}
TL_ARCHITECTURES = (*FROM_CONFIG, *GEMMA_FAMILIES)
# What must agree for a model to be an official TransformerLens model (weights aside).
IDENTITY = (
    "original_architecture", "d_model", "d_head", "n_heads", "d_mlp", "n_layers", "d_vocab", "n_key_value_heads",
    "act_fn", "eps", "normalization_type", "positional_embedding_type", "rotary_base", "rotary_base_local",
    "rotary_scaling_factor", "use_NTK_by_parts_rope", "NTK_by_parts_factor", "window_size", "attn_types",
    "attn_scores_soft_cap", "output_logits_soft_cap",
)  # fmt: skip


def architecture(hf_model: torch.nn.Module) -> str:
    """The Hugging Face class name (``LlamaForCausalLM``), as a checkpoint's ``architectures`` names it."""
    return type(hf_model).__name__


def _gemma_config(hf_config, family: dict[str, Any]) -> dict[str, Any]:
    """TransformerLens's config of an official Gemma-2/3 model, with the sizes of ``hf_config``."""
    rope = dict(getattr(hf_config, "rope_parameters", None) or {})
    full = rope.get("full_attention", rope)
    local = rope.get("sliding_attention", rope)
    for params in (full, local):
        if params.get("rope_type", "default") not in ("default", "linear"):
            raise SteerlabError(
                f"rope scaling {params.get('rope_type')!r} of this Gemma model has no TransformerLens equivalent; "
                "use backend='nnsight'"
            )
    cfg = {
        **family,
        "d_model": hf_config.hidden_size, "d_head": hf_config.head_dim, "n_heads": hf_config.num_attention_heads,
        "d_mlp": hf_config.intermediate_size, "n_layers": hf_config.num_hidden_layers, "eps": hf_config.rms_norm_eps,
        "n_ctx": min(hf_config.max_position_embeddings, family["n_ctx"]), "d_vocab": hf_config.vocab_size,
        "act_fn": hf_config.hidden_activation, "n_key_value_heads": hf_config.num_key_value_heads,
        "window_size": hf_config.sliding_window, "use_local_attn": True,
        "attn_types": ["local" if t == "sliding_attention" else "global" for t in hf_config.layer_types],
        "rotary_base": full.get("rope_theta", family["rotary_base"]),
        "attn_scale": float(hf_config.query_pre_attn_scalar) ** 0.5,
        "attn_scores_soft_cap": getattr(hf_config, "attn_logit_softcapping", None) or -1.0,
        "output_logits_soft_cap": getattr(hf_config, "final_logit_softcapping", None) or -1.0,
    }  # fmt: skip
    if "rotary_base_local" in family:
        cfg["rotary_base_local"] = local.get("rope_theta", family["rotary_base_local"])
    if full.get("rope_type") == "linear":
        cfg["rotary_scaling_factor"] = float(full["factor"])
    return cfg


@functools.lru_cache(maxsize=1)
def _official_configs() -> dict[str, dict[str, Any]]:
    """TransformerLens's configs of the official models it defines without downloading (Llama and Gemma names)."""
    from transformer_lens import loading
    from transformer_lens.supported_models import OFFICIAL_MODEL_NAMES

    configs = {}
    for name in OFFICIAL_MODEL_NAMES:
        if not any(family in name.lower() for family in ("llama", "gemma")):
            continue  # TransformerLens would fetch these configs from the hub
        with contextlib.suppress(Exception):  # some names need the hub after all
            configs[name] = loading.convert_hf_model_config(name)
    return configs


def _identity(cfg: dict[str, Any]) -> tuple:
    from transformer_lens.config import HookedTransformerConfig

    defaults = {f.name: f.default for f in dataclasses.fields(HookedTransformerConfig)}
    values = {key: cfg.get(key, defaults.get(key)) for key in IDENTITY}
    if values["n_key_value_heads"] is None:
        values["n_key_value_heads"] = values["n_heads"]
    return tuple(float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in values.values())


def official_tl_name(cfg: dict[str, Any]) -> str | None:
    """The official TransformerLens model whose config equals ``cfg`` (sizes, norms, rotary, windows), if any;
    the first of several (base and chat models share one)."""
    identity = _identity(cfg)
    return next((name for name, official in _official_configs().items() if _identity(official) == identity), None)


def tl_config_dict(hf_model: torch.nn.Module) -> dict[str, Any]:
    """The TransformerLens config of ``hf_model``, read from its Hugging Face config (never from its name or path)."""
    from transformer_lens import loading

    arch = architecture(hf_model)
    if arch in GEMMA_FAMILIES:
        return _gemma_config(hf_model.config, loading.convert_hf_model_config(GEMMA_FAMILIES[arch]))
    if arch not in FROM_CONFIG:
        raise SteerlabError(
            f"the TransformerLens backend does not support {arch}; supported: {', '.join(TL_ARCHITECTURES)}. "
            "Use backend='nnsight'"
        )
    config = copy.deepcopy(hf_model.config)
    config.architectures = [arch]
    if arch == "GPT2LMHeadModel" and not hasattr(config, "n_ctx"):  # older GPT-2 configs carry both
        config.n_ctx = config.n_positions
    # TransformerLens reads a config from a folder, and guesses Llama/Gemma from the folder's *name*;
    # a fresh folder holding only config.json sidesteps both.
    with tempfile.TemporaryDirectory(prefix="steerlab-tl-") as tmp:
        config.to_json_file(Path(tmp) / "config.json")
        return loading.convert_hf_model_config(tmp)


def build_hooked_transformer(hf_model, tokenizer, device, dtype, name: str = "model"):
    """A HookedTransformer with the HF model's weights, no weight processing, built on the CPU and moved
    to ``device`` only then, so the device never holds it beside a copy. Returns ``(model, official_name)``.

    The config comes from the HF model's own config (`tl_config_dict`); where it equals an official
    TransformerLens model's, that model's name is returned (``None`` otherwise).
    """
    from transformer_lens import HookedTransformer, loading
    from transformer_lens.config import HookedTransformerConfig

    cfg_dict = tl_config_dict(hf_model)
    official = official_tl_name(cfg_dict)
    if official is not None:
        cfg_dict = loading.convert_hf_model_config(official)
    cfg_dict.update(
        model_name=Path(name).name, init_weights=False, device="cpu", n_devices=1, dtype=dtype,
        default_prepend_bos=False, from_checkpoint=False, d_vocab=hf_model.config.vocab_size,
    )  # fmt: skip
    cfg = HookedTransformerConfig.from_dict(cfg_dict)
    if next(hf_model.parameters()).device.type != "cpu":
        logger.warning(
            "converting %s to TransformerLens on %s holds both copies there; load the Hugging Face model on the "
            "CPU (TLBackend moves the converted model to the device)", name, next(hf_model.parameters()).device
        )
    with tempfile.TemporaryDirectory(prefix="steerlab-tl-") as tmp:
        # the state dict converter wants an official name or an existing path; it reads only hf_model
        state = loading.get_pretrained_state_dict(official or tmp, cfg, hf_model, dtype=dtype)
    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(
        state, fold_ln=False, center_writing_weights=False, center_unembed=False, fold_value_biases=False
    )
    del state
    return model, official


def store_as_read(model) -> None:
    """Store weights in the memory layout TransformerLens's forward reads them in, so it stops copying them.

    TransformerLens rearranges each attention weight (``W_Q``: ``[head, d_model, d_head]`` read as
    ``[(head d_head), d_model]``) and transposes each gated MLP and unembedding weight with ``.contiguous()`` on
    every forward pass: a copy of most of the model per call, which dominates a one-token decode step
    (generation was 4x slower than Hugging Face's). Here each such parameter keeps its shape and values but is
    stored as that rearranged tensor, so the rearrangement is a view and ``.contiguous()`` a no-op. No extra
    memory; the numbers do not change.
    """

    def stored_as(param, order: tuple[int, ...]) -> None:
        inverse = tuple(order.index(i) for i in range(len(order)))
        param.data = param.data.permute(*order).contiguous().permute(*inverse)

    for block in model.blocks:
        for name, param in block.attn.named_parameters(recurse=False):
            if name in ("W_Q", "W_K", "W_V", "_W_K", "_W_V"):  # [head, d_model, d_head] read as [head, d_head, d_model]
                stored_as(param, (0, 2, 1))
            elif name == "W_O":  # [head, d_head, d_model] read as [d_model, head, d_head]
                stored_as(param, (2, 0, 1))
        if type(block.mlp).__name__ == "GatedMLP":  # W.T.contiguous() on every call
            for name in ("W_in", "W_gate", "W_out"):
                stored_as(getattr(block.mlp, name), (1, 0))
    stored_as(model.unembed.W_U, (1, 0))


class TLBackend(Backend):
    """TransformerLens backend (see `steerlab.models.load_model`)."""

    kind = "tl"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tl, self.tl_name = build_hooked_transformer(
            self.hf_model, self.tokenizer, self.device, self.dtype, self.name
        )
        self.tl.eval().requires_grad_(False)
        self.tl.tokenizer.padding_side = "left"
        # The HF copy is not needed for running: drop it before the converted model goes to the device.
        self.hf_config = self.hf_model.config
        self.hf_model = None
        self.tl.to(str(self.device), print_details=False)
        store_as_read(self.tl)

    @property
    def model(self) -> torch.nn.Module:
        return self.tl

    def input_embeddings(self) -> Tensor:
        return self.tl.W_E  # TransformerLens folds Gemma's sqrt(d_model) scale into W_E

    def hook_name(self, site: Site) -> str:
        return TL_HOOKS[site.kind].format(L=self.site(site).layer)

    def _hooks(self, runners: dict, record: Sequence[Site], grad: bool):
        """Hooks for one call: returns (fwd_hooks for TL, module hooks to register, records dict)."""
        records: dict[Site, Tensor] = {}
        wanted = set(record)
        fwd_hooks, module_hooks = [], []
        for site in sorted(set(runners) | wanted, key=lambda s: s.order):
            runner = runners.get(site)

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

    def _run(
        self, batch: Batch, edits: Sequence[Edit], record: Sequence[Site], grad: bool, incremental: bool, start: int = 0
    ):
        """Hooks for one call's edits and records (see `_hooks`)."""
        return self._hooks(self._edit_runners(edits, batch, incremental, start), record, grad)

    @contextlib.contextmanager
    def _hooked(self, module_hooks, fwd_hooks):
        """PyTorch module hooks and TransformerLens hooks for one call, removed even if it raises."""
        with removing([]) as handles:
            for module, hook in module_hooks:
                handles.append(module.register_forward_hook(hook))
            with self.tl.hooks(fwd_hooks=fwd_hooks):
                yield

    def _head(self, residual: Tensor) -> Tensor:
        """Logits from the residual stream after the last block: final norm, unembedding, soft cap."""
        from transformer_lens.utilities.activation_functions import apply_softcap

        if self.tl.cfg.normalization_type is not None:
            residual = self.tl.ln_final(residual)
        return apply_softcap(self.tl.unembed(residual), self.tl.cfg.output_logits_soft_cap)

    def _forward(self, batch, edits, record, grad, prefix, logits=True):
        full = prefix.join(batch) if prefix is not None else batch
        start = prefix.batch.prompt_len if prefix is not None else 0
        fwd_hooks, module_hooks, records = self._run(full, edits, record, grad, incremental=False, start=start)
        cache = prefix.cache if prefix is not None else None
        stop = None  # every block, the final norm and the unembedding
        if logits is False:  # no logits: stop after the deepest recorded site's block
            stop = max(self.blocks_for(s) for s in record)
        elif logits is not True:  # the last k positions' logits: stop before the final norm, then `_head`
            stop = self.n_layers
        with self._hooked(module_hooks, fwd_hooks):
            out = self.tl(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache,
                          stop_at_layer=stop)  # fmt: skip
        if logits is False:
            out = None
        elif logits is not True:
            out = self._head(out[:, -logits:])
        return ForwardOutput(out, records)

    def _prefix(self, batch, record, blocks):
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        cache = TransformerLensKeyValueCache.init_cache(self.tl.cfg, self.device, len(batch))
        fwd_hooks, module_hooks, records = self._run(batch, (), record, False, incremental=False)
        with self._hooked(module_hooks, fwd_hooks):  # a prefix's logits are never used: no final norm, no unembedding
            self.tl(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache,
                    stop_at_layer=blocks or self.n_layers)  # fmt: skip
        cache.freeze()  # later calls read the prefix without appending to it
        return Prefix(batch, cache, records, blocks)

    def _forward_many(self, batch, edits, copy_of, k, prefix, keep):
        full = prefix.join(batch) if prefix is not None else batch
        start = prefix.batch.prompt_len if prefix is not None else 0
        tiled = tile(full, k)
        runners = self._edit_runners(edits, tiled, incremental=False, start=start)
        shared = shared_blocks(edits)
        cache = prefix.cache if prefix is not None else None
        if shared > 0:  # the blocks before the first edit run once, on the batch itself
            trunk = self.tl(batch.input_ids, attention_mask=batch.attention_mask, past_kv_cache=cache,
                            stop_at_layer=shared).repeat(k, 1, 1)  # fmt: skip
            at_trunk = runners.pop(Site(shared - 1, "resid_post"), None)  # edits at the trunk's end act on it
            if at_trunk is not None:
                trunk = at_trunk(trunk)
            fwd_hooks, module_hooks, _ = self._hooks(runners, (), False)
            with self._hooked(module_hooks, fwd_hooks):
                # started mid-stack, the blocks take the whole sequence's padding mask (prefix and suffix)
                h = self.tl(trunk, start_at_layer=shared, stop_at_layer=self.n_layers,
                            attention_mask=tiled.attention_mask,
                            past_kv_cache=None if cache is None else _tiled_cache(cache, k, shared))  # fmt: skip
        else:
            fwd_hooks, module_hooks, _ = self._hooks(runners, (), False)
            with self._hooked(module_hooks, fwd_hooks):
                h = self.tl(batch.input_ids.repeat(k, 1), attention_mask=batch.attention_mask.repeat(k, 1),
                            past_kv_cache=None if cache is None else _tiled_cache(cache, k, 0),
                            stop_at_layer=self.n_layers)  # fmt: skip
        return (h if keep is None else h[:, -keep:]), self._head

    def _generate(self, batch, edits, max_new_tokens, use_cache, gen_kwargs):
        from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache

        fwd_hooks, module_hooks, _ = self._run(batch, edits, (), False, incremental=use_cache)
        ids, mask = batch.input_ids, batch.attention_mask
        cache = TransformerLensKeyValueCache.init_cache(self.tl.cfg, self.device, len(batch)) if use_cache else None
        eos = self.tokenizer.eos_token_id
        done = torch.zeros(len(batch), dtype=torch.bool, device=self.device)
        with self._hooked(module_hooks, fwd_hooks):
            logits = self.tl(ids, attention_mask=mask, past_kv_cache=cache, return_type="logits")
            for step in range(max_new_tokens):
                token = sample_next(logits[:, -1].float(), gen_kwargs)
                token = torch.where(done, torch.full_like(token, self.tokenizer.pad_token_id), token)
                ids = torch.cat([ids, token[:, None]], dim=1)
                mask = torch.cat([mask, torch.ones_like(token)[:, None]], dim=1)
                done |= token == eos
                if step == max_new_tokens - 1 or bool(done.all()):
                    break
                if use_cache:
                    logits = self.tl(
                        token[:, None], attention_mask=torch.ones_like(token)[:, None], past_kv_cache=cache
                    )
                else:
                    logits = self.tl(ids, attention_mask=mask, return_type="logits")
        return ids


def _tiled_cache(cache, k: int, start: int):
    """A frozen copy of a TransformerLens key/value cache whose entries from ``start`` on (and whose padding mask)
    hold ``k`` stacked copies of the batch; the entries before ``start`` are not read by the call using it."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    entries = [
        e if i < start else TransformerLensKeyValueCacheEntry(e.past_keys.repeat(k, 1, 1, 1),
                                                              e.past_values.repeat(k, 1, 1, 1), frozen=True)
        for i, e in enumerate(cache.entries)
    ]  # fmt: skip
    return TransformerLensKeyValueCache(entries, cache.previous_attention_mask.repeat(k, 1), frozen=True)


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
