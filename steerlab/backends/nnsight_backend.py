"""nnsight backend. The only module (with `tl_backend`) that imports nnsight.

Edits live inside one ``model.trace(...)`` / ``model.generate(...)`` block, so nothing outlives a
call (nnsight's lexical scoping). Modules are visited in the order the model runs them (nnsight
raises ``OutOfOrderError`` otherwise), which is the `Site.order` of the sites involved.

In transformers 5, a decoder layer's output is a plain ``[batch, pos, d_model]`` tensor and the
attention module's output is a tuple ``(attn_out, weights)``.

Where each site lives comes from `LAYOUTS`, one `Layout` per family of Hugging Face ``model_type``
(Llama, Mistral, Qwen2/3 and Phi-3 share one; Gemma-2/3 read their post-norms; GPT-2 and GPT-NeoX
name things their own way), checked against the loaded model when the backend is built; another
architecture raises, or takes a `Layout` passed as ``layout=``.

A cached prefix (`Backend.prefix`) is reused by restoring its cache's layers after each call
(`kept`): cropping cannot undo an append to a sliding-window layer whose window is full.

Scale-out: ``load_model(name, backend="nnsight", remote=True)`` gives the subclass in `nnsight_remote`,
whose traces run on NDIF.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from steerlab.backends.base import Backend, shared_blocks, tile
from steerlab.errors import SteerlabError
from steerlab.sites import Batch, ForwardOutput, Prefix, Site

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SitePath:
    """Where a site lives below a decoder layer: a submodule (or the layer itself, ``module=""``),
    ``output`` or ``input``, and an index into a tuple output (``None`` for a tensor)."""

    module: str
    attr: str = "output"
    index: int | None = None


@dataclass(frozen=True)
class Layout:
    """Where an architecture keeps its decoder layers (``layers``, a path from the HF model) and each site
    below a layer. ``model_types`` are the Hugging Face ``model_type`` values it serves."""

    model_types: tuple[str, ...]
    layers: str
    sites: dict[str, SitePath]


# Llama, Mistral, Qwen2/3, Phi-3: x + attn(norm(x)), then + mlp(post_attention_layernorm(.)).
PRE_NORM = {
    "resid_pre": SitePath("", "input"),
    "attn_out": SitePath("self_attn", "output", 0),
    "mlp_in": SitePath("post_attention_layernorm"),
    "mlp_out": SitePath("mlp"),
    "resid_post": SitePath(""),
}
# Gemma 2/3 normalise each block's output before adding it to the residual stream.
POST_NORM = {
    **PRE_NORM,
    "attn_out": SitePath("post_attention_layernorm"),
    "mlp_in": SitePath("pre_feedforward_layernorm"),
    "mlp_out": SitePath("post_feedforward_layernorm"),
}
LAYOUTS: tuple[Layout, ...] = (
    Layout(("llama", "mistral", "qwen2", "qwen3", "phi3"), "model.layers", PRE_NORM),
    Layout(("gemma2", "gemma3_text"), "model.layers", POST_NORM),
    Layout(("gpt2",), "transformer.h", {
        **PRE_NORM, "attn_out": SitePath("attn", "output", 0), "mlp_in": SitePath("ln_2"),
    }),
    # GPT-NeoX (Pythia): attention and MLP read the same residual when use_parallel_residual is set.
    Layout(("gpt_neox",), "gpt_neox.layers", {**PRE_NORM, "attn_out": SitePath("attention", "output", 0)}),
)  # fmt: skip
SUPPORTED_MODEL_TYPES = tuple(t for layout in LAYOUTS for t in layout.model_types)


def _submodule(root: torch.nn.Module, path: str) -> torch.nn.Module | None:
    for part in filter(None, path.split(".")):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def find_layout(hf_model: torch.nn.Module, model_type: str, n_layers: int, layout: Layout | None = None) -> Layout:
    """The `Layout` of ``hf_model``, checked against the loaded model: its layer list has ``n_layers``
    layers and every layer has every site's submodule. Unknown architectures raise."""
    if layout is None:
        layout = next((lo for lo in LAYOUTS if model_type in lo.model_types), None)
    if layout is None:
        raise SteerlabError(
            f"the nnsight backend does not know where architecture {model_type!r} keeps its sites; supported: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}. Describe it with nnsight_backend.Layout(...) and pass "
            "layout= to NNsightBackend, or use backend='tl' if TransformerLens supports it"
        )
    layers = _submodule(hf_model, layout.layers)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) != n_layers:
        raise SteerlabError(
            f"expected {n_layers} decoder layers at {layout.layers!r} of this {model_type} model "
            f"({type(hf_model).__name__}), found {type(layers).__name__}; the model's layout differs from the "
            "supported one: pass a matching nnsight_backend.Layout as layout="
        )
    for kind, path in layout.sites.items():
        missing = [i for i in (0, n_layers - 1) if _submodule(layers[i], path.module) is None]
        if missing:
            raise SteerlabError(
                f"site {kind!r} expects submodule {path.module!r} in each layer of {layout.layers!r}, but layer "
                f"{missing[0]} of this {model_type} model has none; pass a matching nnsight_backend.Layout as layout="
            )
    return layout


class NNsightBackend(Backend):
    """nnsight backend (see `steerlab.models.load_model`)."""

    kind = "nnsight"

    def __init__(self, *, lm=None, layout: Layout | None = None, **kwargs):
        super().__init__(**kwargs)
        self.layout = find_layout(self.hf_model, self.model_type, self.n_layers, layout)
        if lm is None:
            from nnsight.modeling.transformers import TransformersModel

            # nnsight wraps the model in a transformers pipeline, which moves a model it is not told the
            # device of to the first GPU: keep it where it is (a map spread by accelerate stays as it is).
            placed = {} if getattr(self.hf_model, "hf_device_map", None) else {"device": self.device}
            lm = TransformersModel(self.hf_model, tokenizer=self.tokenizer, task="text-generation", **placed)
        self.lm = lm

    @property
    def model(self) -> torch.nn.Module:
        return self.hf_model

    def input_embeddings(self) -> Tensor:
        emb = self.hf_model.get_input_embeddings()
        scale = getattr(emb, "embed_scale", None)  # Gemma scales embeddings by sqrt(d_model) in forward
        return emb.weight if scale is None else emb.weight * scale.to(emb.weight.dtype)

    def hook_name(self, site: Site) -> str:
        site = self.site(site)
        path = self.layout.sites[site.kind]
        name = f"{self.layout.layers}.{site.layer}" + (f".{path.module}" if path.module else "") + f".{path.attr}"
        return name + (f"[{path.index}]" if path.index is not None else "")

    # ------------------------------------------------------------------ reading and writing sites
    def _module(self, site: Site):
        path = self.layout.sites[site.kind]
        module = self._layer(site.layer)
        for part in filter(None, path.module.split(".")):
            module = getattr(module, part)
        return module, path

    def _get(self, site: Site) -> Tensor:
        module, path = self._module(site)
        value = getattr(module, path.attr)
        return value if path.index is None else value[path.index]

    def _set(self, site: Site, new: Tensor) -> None:
        module, path = self._module(site)
        if path.index is None:
            setattr(module, path.attr, new)
        else:
            old = getattr(module, path.attr)
            setattr(module, path.attr, (*old[: path.index], new, *old[path.index + 1 :]))

    def _visit(self, sites, runners, wanted, records, grad):
        """Inside a trace: apply edits and record activations, site by site in model order."""
        for site in sites:
            h = self._get(site)
            if site in runners:
                h = runners[site](h)
                self._set(site, h)
            if site in wanted:
                records[site] = (h if grad else h.detach()).save()

    def _plan(self, batch: Batch, edits, record, incremental: bool, start: int = 0):
        runners = self._edit_runners(edits, batch, incremental, start)
        sites = sorted(set(runners) | set(record), key=lambda s: s.order)
        return sites, runners

    def blocks_for(self, site: Site) -> int:
        return site.layer + (site.kind != "resid_pre")  # a trace can stop at a layer's input, before it runs

    def _layer(self, index: int):
        module = self.lm
        for part in self.layout.layers.split("."):
            module = getattr(module, part)
        return module[index]

    @functools.cached_property
    def _head_path(self) -> str:
        """Where the output embedding (``lm_head``, GPT-NeoX's ``embed_out``) lives in the HF model."""
        head = self.hf_model.get_output_embeddings()
        return next(name for name, module in self.hf_model.named_modules() if module is head)

    def _head(self, h: Tensor) -> Tensor:
        """Logits from the final (normalised) hidden states: the output embedding, then Gemma's soft cap."""
        logits = self.hf_model.get_output_embeddings()(h)
        cap = getattr(getattr(self.hf_model.config, "text_config", None) or self.hf_model.config,
                      "final_logit_softcapping", None)  # fmt: skip
        if cap:  # as Gemma's forward does it
            logits = torch.tanh(logits / cap) * cap
        return logits

    # ------------------------------------------------------------------ primitives
    def _trace(self, inputs: dict, sites, runners, record, grad, logits: bool | int = True, blocks: int | None = None):
        """One trace: edits and records at ``sites``; logits as asked (`Backend._forward`). Without logits the
        run stops after the last site, or after block ``blocks - 1`` when that is deeper."""
        records: dict[Site, Tensor] = {}
        if logits is not True and logits is not False:
            inputs = {**inputs, "logits_to_keep": logits}
        out = None
        with self.lm.trace(inputs) as tracer:
            self._visit(sites, runners, set(record), records, grad)
            if logits is False:
                if blocks is not None and (not sites or self.blocks_for(sites[-1]) < blocks):
                    self._layer(blocks - 1).output  # noqa: B018  (run up to the end of this block)
                tracer.stop()
            else:
                out = self.lm.output.logits.save()
        return ForwardOutput(out, {s: records[s] for s in record})

    def _forward(self, batch, edits, record, grad, prefix, logits=True):
        full = prefix.join(batch) if prefix is not None else batch
        start = prefix.batch.prompt_len if prefix is not None else 0
        sites, runners = self._plan(full, edits, record, incremental=False, start=start)
        if logits is False:  # the run stops at the deepest recorded site: edits after it cannot act
            sites = [s for s in sites if s.order <= record[-1].order]
        if prefix is None:
            return self._trace(_inputs(batch.input_ids, batch), sites, runners, record, grad, logits)
        with kept(prefix.cache):  # the suffix's keys and values are dropped, so the prefix can be reused
            return self._trace(_inputs(batch.input_ids, full, prefix.cache), sites, runners, record, grad, logits)

    def _prefix(self, batch, record, blocks):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.hf_model.config)
        sites, runners = self._plan(batch, (), record, incremental=False)
        # a prefix's own logits are never used: stop after the last block it needs (every block by default)
        out = self._trace(_inputs(batch.input_ids, batch, cache), sites, runners, record, False, False,
                          blocks or self.n_layers)  # fmt: skip
        return Prefix(batch, cache, out.activations, blocks)

    def _forward_many(self, batch, edits, copy_of, k, prefix, keep):
        full = prefix.join(batch) if prefix is not None else batch
        start = prefix.batch.prompt_len if prefix is not None else 0
        tiled = tile(full, k)
        runners = self._edit_runners(edits, tiled, incremental=False, start=start)
        shared = shared_blocks(edits)
        trunk = None
        if shared > 0:  # the blocks before the first edit run once, on the batch itself
            inputs = _inputs(batch.input_ids, full, None if prefix is None else prefix.cache)
            with kept(prefix.cache) if prefix is not None else contextlib.nullcontext():
                with self.lm.trace(inputs) as tracer:
                    trunk = self._layer(shared - 1).output.save()
                    tracer.stop()
            trunk = trunk.repeat(k, 1, 1)
            at_trunk = runners.pop(Site(shared - 1, "resid_post"), None)  # edits at the trunk's end act on it
            if at_trunk is not None:
                trunk = at_trunk(trunk)
        cache = None if prefix is None else _tiled_cache(prefix.cache, k, shared)
        inputs = _inputs(batch.input_ids.repeat(k, 1), tiled, cache)
        if keep is not None:
            inputs["logits_to_keep"] = keep
        sites = sorted(runners, key=lambda s: s.order)
        head = self.lm
        for part in self._head_path.split("."):
            head = getattr(head, part)
        with self.lm.trace(inputs) as tracer:
            for i in range(shared):  # skipped: their output is the (edited) trunk
                self._layer(i).skip(trunk)
            self._visit(sites, runners, set(), {}, False)
            hidden = head.input.save()  # the final hidden states; the output embedding runs per copy (`_head`)
            tracer.stop()
        return hidden, self._head

    def _generate(self, batch, edits, max_new_tokens, use_cache, gen_kwargs):
        kwargs = dict(max_new_tokens=max_new_tokens, use_cache=use_cache, pad_token_id=self.tokenizer.pad_token_id)
        kwargs.update(gen_kwargs)
        if not edits:
            return self.hf_model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kwargs)
        sites, runners = self._plan(batch, edits, (), incremental=use_cache)
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        with warnings.catch_warnings(), self.lm.generate(**kwargs) as tracer:
            # the open step loop ends when generation stops; nnsight warns about that by design
            warnings.filterwarnings("ignore", message=".*was never reached.*")
            with tracer.invoke(inputs):
                for _ in tracer.all():  # every generation step, prompt included
                    self._visit(sites, runners, set(), {}, False)
            with tracer.invoke():  # an unbounded step loop never returns, so read the result here
                result = tracer.result.save()
        return result


def _tiled_cache(cache, k: int, start: int):
    """A copy of a `DynamicCache` whose layers from ``start`` on hold ``k`` stacked copies of the batch (the
    layers before ``start`` are skipped by the call that uses it, and keep their single copy)."""
    tiled = copy.copy(cache)
    tiled.layers = []
    for i, layer in enumerate(cache.layers):
        layer = copy.copy(layer)
        if i >= start and getattr(layer, "keys", None) is not None and layer.keys.numel():
            layer.keys, layer.values = layer.keys.repeat(k, 1, 1, 1), layer.values.repeat(k, 1, 1, 1)
        tiled.layers.append(layer)
    return tiled


@contextlib.contextmanager
def kept(cache) -> Iterator[None]:
    """Put a `DynamicCache` back as it was after a call that appended to it.

    Cropping cannot undo an append to a sliding-window layer once the window is full (it has already
    dropped its oldest keys), so each layer's state is restored instead. Updates replace a layer's
    tensors (``torch.cat``) rather than write into them, so keeping references costs no copy.
    """
    n_layers = len(cache.layers)
    saved = [dict(vars(layer)) for layer in cache.layers]
    try:
        yield
    finally:
        del cache.layers[n_layers:]
        for layer, state in zip(cache.layers, saved, strict=True):
            vars(layer).clear()
            vars(layer).update(state)


def _inputs(input_ids: Tensor, context: Batch, cache=None) -> dict:
    """HF keyword inputs for ``input_ids``, the last tokens of ``context`` (whose mask covers any cached prefix)."""
    n = input_ids.shape[1]
    inputs = {
        "input_ids": input_ids,
        "attention_mask": context.attention_mask,
        "position_ids": context.position_ids[:, -n:],
    }
    if cache is not None:
        inputs.update(past_key_values=cache, use_cache=True)
    return inputs
