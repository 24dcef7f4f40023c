"""nnsight backend. The only module (with `tl_backend`) that imports nnsight.

Edits live inside one ``model.trace(...)`` / ``model.generate(...)`` block, so nothing outlives a
call (nnsight's lexical scoping). Modules are visited in the order the model runs them (nnsight
raises ``OutOfOrderError`` otherwise), which is the `Site.order` of the sites involved.

In transformers 5, a decoder layer's output is a plain ``[batch, pos, d_model]`` tensor and the
attention module's output is a tuple ``(attn_out, weights)``.

Scale-out: ``load_model(name, backend="nnsight", remote=True)`` gives the subclass in `nnsight_remote`,
whose traces run on NDIF.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import Tensor

from steerlab.backends.base import Backend, Batch, EditRunner, ForwardOutput, Prefix, Site

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SitePath:
    """Where a site lives below a decoder layer: a submodule (or the layer itself, ``module=""``),
    ``output`` or ``input``, and an index into a tuple output (``None`` for a tensor)."""

    module: str
    attr: str = "output"
    index: int | None = None


LLAMA_PATHS = {
    "resid_pre": SitePath("", "input"),
    "attn_out": SitePath("self_attn", "output", 0),
    "mlp_in": SitePath("post_attention_layernorm"),
    "mlp_out": SitePath("mlp"),
    "resid_post": SitePath(""),
}
# Gemma 2/3 normalise each block's output before adding it to the residual stream.
GEMMA_PATHS = {
    **LLAMA_PATHS,
    "attn_out": SitePath("post_attention_layernorm"),
    "mlp_in": SitePath("pre_feedforward_layernorm"),
    "mlp_out": SitePath("post_feedforward_layernorm"),
}
SITE_PATHS = {"gemma2": GEMMA_PATHS, "gemma3": GEMMA_PATHS, "gemma3_text": GEMMA_PATHS}


class NNsightBackend(Backend):
    """nnsight backend (see `steerlab.models.load_model`)."""

    kind = "nnsight"

    def __init__(self, *, lm=None, **kwargs):
        super().__init__(**kwargs)
        if lm is None:
            from nnsight.modeling.transformers import TransformersModel

            lm = TransformersModel(self.hf_model, tokenizer=self.tokenizer, task="text-generation")
        self.lm = lm
        self.paths = SITE_PATHS.get(self.model_type, LLAMA_PATHS)

    @property
    def model(self) -> torch.nn.Module:
        return self.hf_model

    def input_embeddings(self) -> Tensor:
        emb = self.hf_model.get_input_embeddings()
        scale = getattr(emb, "embed_scale", None)  # Gemma scales embeddings by sqrt(d_model) in forward
        return emb.weight if scale is None else emb.weight * scale.to(emb.weight.dtype)

    def hook_name(self, site: Site) -> str:
        site = self.site(site)
        path = self.paths[site.kind]
        name = f"model.layers.{site.layer}" + (f".{path.module}" if path.module else "") + f".{path.attr}"
        return name + (f"[{path.index}]" if path.index is not None else "")

    # ------------------------------------------------------------------ reading and writing sites
    def _module(self, site: Site):
        path = self.paths[site.kind]
        module = self.lm.model.layers[site.layer]
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
        by_site = defaultdict(list)
        for edit in edits:
            by_site[edit.site].append(edit)
        runners = {site: EditRunner(group, batch, incremental, start) for site, group in by_site.items()}
        sites = sorted(set(by_site) | set(record), key=lambda s: s.order)
        return sites, runners

    # ------------------------------------------------------------------ primitives
    def _trace(self, inputs: dict, sites, runners, record, grad):
        records: dict[Site, Tensor] = {}
        with self.lm.trace(inputs):
            self._visit(sites, runners, set(record), records, grad)
            logits = self.lm.output.logits.save()
        return ForwardOutput(logits, {s: records[s] for s in record})

    def _forward(self, batch, edits, record, grad, prefix):
        if prefix is None:
            sites, runners = self._plan(batch, edits, record, incremental=False)
            return self._trace(_inputs(batch.input_ids, batch), sites, runners, record, grad)
        full = prefix.join(batch)
        start = prefix.batch.prompt_len
        sites, runners = self._plan(full, edits, record, incremental=False, start=start)
        try:
            return self._trace(_inputs(batch.input_ids, full, prefix.cache), sites, runners, record, grad)
        finally:  # drop the suffix's keys and values so the prefix can be reused
            extra = prefix.cache.get_seq_length() - start
            if extra > 0:
                prefix.cache.crop(-extra)

    def _prefix(self, batch, record):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.hf_model.config)
        sites, runners = self._plan(batch, (), record, incremental=False)
        inputs = {**_inputs(batch.input_ids, batch, cache), "logits_to_keep": 1}  # a prefix's logits are unused
        out = self._trace(inputs, sites, runners, record, False)
        return Prefix(batch, cache, out.activations)

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
