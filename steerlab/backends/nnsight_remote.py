"""The nnsight backend on NDIF: the same traces, run remotely on models too large for this machine.

``load_model(name, backend="nnsight", remote=True)`` returns a `RemoteNNsightBackend`. Only the model's
config and tokenizer are loaded here (weights on the meta device); each forward pass or generation is one
nnsight remote request (nnsight 0.8 remote execution, https://nnsight.net), run by the NDIF service
against the model it hosts. Following nnsight's rules for remote code:

* steerlab's own code is registered with ``nnsight.register("steerlab")``: the server does not have
  steerlab installed, so the functions and classes a trace calls (edits, `EditRunner`, the visiting code
  below) are shipped by value with each request;
* only light objects enter a traced block: the model's envoys (sent as references to the server's
  modules), token tensors, and the edits. The backend itself, the local HF module and the tokenizer stay
  here; results come back as saved values;
* no key/value cache is kept between requests: `prefix` records the prompt prefix and each later call
  runs the whole sequence (prefix + suffix) and returns the suffix's logits and activations, the same
  numbers the cached path gives locally;
* inputs stay on the CPU (the server places them), ``dtype`` is the remote model's from its config, and
  gradients cannot flow back (``grad=True`` is refused);
* the positions each edit touched are counted on the server and not sent back: ``last_edit_counts`` is
  None and the check that an edit touched some token (``allow_noop``) does not run remotely.

``remote="local"`` builds the same requests for a model loaded here and runs them through nnsight's
serverless simulation, which deserialises each request with steerlab hidden, as a server would: a check,
without network or API key, that a steered trace will run remotely. Requests are serialised by nnsight
(source code, not bytecode, for functions), but dataclass methods (`Site`, `Edit`, `Positions`) travel
as bytecode, so the client's Python minor version must match the server's (``nnsight.ndif.compare()``).
"""

from __future__ import annotations

import logging
import os
import warnings

import torch
from torch import Tensor

from steerlab.backends.base import Backend
from steerlab.backends.nnsight_backend import NNsightBackend, _inputs
from steerlab.errors import SteerlabError
from steerlab.sites import Batch, ForwardOutput, Prefix, Site

logger = logging.getLogger(__name__)

__all__ = ["RemoteNNsightBackend", "register_steerlab"]

_KEY_HELP = (
    "set the environment variable NDIF_API_KEY=<key> or call nnsight.CONFIG.set_default_api_key('<key>') "
    "(keys: https://login.ndif.us); remote='local' runs the same requests through nnsight's local simulation"
)


def register_steerlab() -> None:
    """Ship steerlab's code with remote requests (``nnsight.register``): NDIF servers do not install steerlab."""
    import nnsight

    nnsight.register("steerlab")


def _api_key() -> str:
    """The NDIF API key nnsight will send; one set in the environment after nnsight was imported is adopted."""
    from nnsight import CONFIG

    key = CONFIG.API.APIKEY or os.environ.get("NDIF_API_KEY")
    if not key:
        raise SteerlabError(f"remote=True needs an NDIF API key and none is configured: {_KEY_HELP}")
    CONFIG.API.APIKEY = key  # nnsight reads NDIF_API_KEY only at import
    return key


def _config_dtype(config) -> torch.dtype:
    """The dtype a model's config declares (``dtype`` in transformers 5, ``torch_dtype`` before), else bf16."""
    text = getattr(config, "text_config", None) or config
    value = getattr(text, "dtype", None) or getattr(text, "torch_dtype", None)
    if isinstance(value, str):
        value = getattr(torch, value.removeprefix("torch."), None)
    return value if isinstance(value, torch.dtype) else torch.bfloat16


def _run_plan(plan: list, start: int) -> dict:
    """Inside a trace: edit and read sites in model order; returns the recorded activations by site name.

    ``plan`` holds ``(envoy, attr, index, runner, name)`` per site (``runner`` None: nothing to edit;
    ``name`` None: nothing to record). With ``start`` > 0 only positions from ``start`` on are edited
    and returned (the suffix after a prefix that is recomputed instead of cached).
    """
    acts = {}
    for envoy, attr, index, runner, name in plan:
        value = getattr(envoy, attr)
        h = value if index is None else value[index]
        if runner is not None:
            h = runner(h) if start == 0 else torch.cat([h[:, :start], runner(h[:, start:])], dim=1)
            setattr(envoy, attr, h if index is None else (*value[:index], h, *value[index + 1 :]))
        if name is not None:
            acts[name] = h[:, start:].detach()
    return acts


class RemoteNNsightBackend(NNsightBackend):
    """An `NNsightBackend` whose traces run on NDIF (or through nnsight's local simulation).

    Build it with ``load_model(name, backend="nnsight", remote=True)`` (NDIF; needs an API key),
    ``remote="https://host"`` (another NDIF deployment) or ``remote="local"`` (the simulation).
    """

    def __init__(self, *, target: bool | str = True, **kwargs):
        super().__init__(**kwargs)
        self.target = target  # nnsight's remote= argument: True, a host URL, or "local"
        register_steerlab()

    @classmethod
    def connect(cls, name: str, *, host: str | None = None, tokenizer=None) -> RemoteNNsightBackend:
        """A backend for the NDIF-hosted model ``name`` (a Hugging Face repo id); loads only config and tokenizer.

        Args:
            name: The repo id, as NDIF lists it.
            host: Another NDIF deployment (``https://...``); default ``nnsight.CONFIG.API.HOST``.
            tokenizer: A tokenizer to use instead of the repo's own.

        Raises:
            SteerlabError: No NDIF API key is configured, or the model's config cannot be read.
        """
        if host is not None and not host.startswith(("http://", "https://")):
            raise SteerlabError(f"remote={host!r}: give True (NDIF), 'local' (the simulation) or an http(s):// URL")
        _api_key()
        from nnsight.modeling.transformers import TransformersModel

        try:
            lm = TransformersModel(name, tokenizer=tokenizer, task="text-generation")  # meta weights
        except Exception as exc:  # hub or config errors surface as many types
            raise SteerlabError(
                f"could not read the config and tokenizer of {name!r} for remote use: {exc}. Give the Hugging Face "
                "repo id of a model NDIF hosts (nnsight.ndif.status() lists them); this needs internet"
            ) from exc
        dtype = _config_dtype(lm._module.config)
        return cls(name=name, hf_model=lm._module, tokenizer=lm.tokenizer, device=torch.device("cpu"), dtype=dtype,
                   lm=lm, target=host or True)  # fmt: skip

    def _counts_come_back(self) -> bool:
        return False  # edits run on the server, and their position counts stay there: no idle-edit check

    # ------------------------------------------------------------------ requests
    def _request_plan(self, sites, runners, wanted) -> list:
        plan = []
        for site in sites:
            envoy, path = self._module(site)
            plan.append((envoy, path.attr, path.index, runners.get(site), str(site) if site in wanted else None))
        return plan

    def _remote_trace(self, inputs: dict, sites, runners, record, grad: bool, start: int = 0,
                      logits: bool | int = True) -> ForwardOutput:  # fmt: skip
        if grad:
            raise SteerlabError("gradients cannot flow back from a remote model; run grad=True on a local model")
        plan = self._request_plan(sites, runners, set(record))
        import nnsight

        lm = self.lm
        out = None
        with lm.trace(inputs, remote=self.target):
            acts = nnsight.save(_run_plan(plan, start))
            if logits is not False:  # only the logits asked for travel back
                out = lm.output.logits[:, start if logits is True else -logits :].save()
        return ForwardOutput(out, {site: acts[str(site)] for site in record})

    def _forward(self, batch, edits, record, grad, prefix, logits=True):
        if prefix is None:
            sites, runners = self._plan(batch, edits, record, incremental=False)
            return self._remote_trace(_inputs(batch.input_ids, batch), sites, runners, record, grad, 0, logits)
        full = prefix.join(batch)  # no cache across requests: recompute the prefix, edit and return the suffix
        start = prefix.batch.prompt_len
        sites, runners = self._plan(full, edits, record, incremental=False, start=start)
        return self._remote_trace(_inputs(full.input_ids, full), sites, runners, record, grad, start, logits)

    def _prefix(self, batch: Batch, record: list[Site], blocks: int | None) -> Prefix:
        acts = {}
        if record:
            sites, runners = self._plan(batch, (), record, incremental=False)
            acts = self._remote_trace(_inputs(batch.input_ids, batch), sites, runners, record, False, 0,
                                      False).activations  # fmt: skip
        return Prefix(batch, None, acts, blocks)

    _forward_many = Backend._forward_many  # one request with the k copies stacked (no cache to start mid-stack)

    def _generate(self, batch, edits, max_new_tokens, use_cache, gen_kwargs) -> Tensor:
        kwargs = dict(max_new_tokens=max_new_tokens, use_cache=use_cache, pad_token_id=self.tokenizer.pad_token_id)
        kwargs.update(gen_kwargs)
        sites, runners = self._plan(batch, edits, (), incremental=use_cache)
        plan = self._request_plan(sites, runners, set())
        inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        lm = self.lm
        with warnings.catch_warnings(), lm.generate(remote=self.target, **kwargs) as tracer:
            warnings.filterwarnings("ignore", message=".*was never reached.*")  # the open step loop, by design
            with tracer.invoke(inputs):
                for _ in tracer.all():  # every generation step, prompt included
                    _run_plan(plan, 0)
            with tracer.invoke():
                result = tracer.result.save()
        return result
