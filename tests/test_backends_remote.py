"""Tests for steerlab.backends.nnsight_remote: steered traces as NDIF requests, without network.

Two checks stand in for a server: nnsight's local simulation (``remote="local"``) serialises each request,
deserialises it with every non-installed module hidden (steerlab included, as on NDIF) and runs it on the
tiny model; and a ``remote=True`` request is built with the network layer replaced, its payload inspected
and deserialised the same way. No test reaches NDIF itself.
"""

from __future__ import annotations

import sys

import pytest
import torch

from steerlab import GENERATED, LAST_PROMPT
from steerlab.errors import SteerlabError
from steerlab.interventions import add
from steerlab.models import load_model
from steerlab.sites import Batch
from steerlab.testing import tiny_backend


@pytest.fixture
def no_editable_finder(monkeypatch):
    """Hide steerlab the way a server lacks it: drop the editable-install finder that would re-import it."""
    def editable(finder) -> bool:  # setuptools puts its finder class itself on sys.meta_path
        return "editable" in (getattr(finder, "__module__", "") + type(finder).__module__)

    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if not editable(f)])


@pytest.fixture(scope="module")
def pair(tiny_folder):
    local = tiny_backend("nnsight", tiny_folder)
    simulated = load_model(str(tiny_folder), backend="nnsight", device="cpu", dtype=torch.float32, remote="local")
    return local, simulated


def _batch():
    ids = torch.tensor([[3, 4, 5, 6, 7], [0, 8, 9, 10, 11]])
    return Batch(ids, (ids != 0).long())


def test_simulated_remote_forward_matches_local(pair, no_editable_finder):
    local, remote = pair
    sites = [local.site(0), local.site(1)]
    edits = [add(local.site(1), torch.randn(local.d_model, generator=torch.Generator().manual_seed(0)), 3.0)]
    want = local.forward(_batch(), edits=edits, record=sites)
    got = remote.forward(_batch(), edits=edits, record=sites)
    torch.testing.assert_close(got.logits, want.logits)
    for site in sites:
        torch.testing.assert_close(got.activations[site], want.activations[site])
    assert not torch.allclose(want.logits, local.forward(_batch()).logits)  # the edit did something


def test_simulated_remote_prefix_recomputes_instead_of_caching(pair, no_editable_finder):
    local, remote = pair
    batch, site = _batch(), local.site(1)
    head = Batch(batch.input_ids[:, :3], batch.attention_mask[:, :3])
    tail = Batch(batch.input_ids[:, 3:], batch.attention_mask[:, 3:])
    edits = [add(site, torch.ones(local.d_model), 2.0, LAST_PROMPT)]
    pre_local, pre_remote = local.prefix(head, record=[site]), remote.prefix(head, record=[site])
    assert pre_remote.cache is None  # nothing is kept between requests
    torch.testing.assert_close(pre_remote.activations[site], pre_local.activations[site])
    want = local.forward(tail, prefix=pre_local, edits=edits, record=[site])
    got = remote.forward(tail, prefix=pre_remote, edits=edits, record=[site])
    assert got.logits.shape == want.logits.shape == (2, 2, want.logits.shape[-1])
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.activations[site], want.activations[site], atol=1e-5, rtol=1e-5)


def test_simulated_remote_steered_generation_matches_local(pair, no_editable_finder):
    local, remote = pair
    edits = [add(local.site(0), torch.ones(local.d_model), 4.0)]
    want = local.generate_ids(_batch(), edits=edits, max_new_tokens=6)
    assert torch.equal(remote.generate_ids(_batch(), edits=edits, max_new_tokens=6), want)


def test_simulated_remote_runs_return_no_edit_counts_and_do_not_call_edits_idle(pair, no_editable_finder):
    """Counts stay on the server: an edit that touches no token (GENERATED in a plain forward) raises locally,
    but remotely there is nothing to check, so no spurious 'steering did nothing'."""
    local, remote = pair
    idle = [add(local.site(1), torch.ones(local.d_model), 1.0, GENERATED)]
    with pytest.raises(SteerlabError, match="steering did nothing"):
        local.forward(_batch(), edits=idle)
    torch.testing.assert_close(remote.forward(_batch(), edits=idle).logits, local.forward(_batch()).logits)
    assert remote.last_edit_counts is None
    remote.generate_ids(_batch(), edits=[add(local.site(0), torch.ones(local.d_model), 4.0)], max_new_tokens=2)
    assert remote.last_edit_counts is None


def test_registration_is_what_ships_steerlab(pair, no_editable_finder, monkeypatch):
    import cloudpickle.cloudpickle as cp

    _, remote = pair
    monkeypatch.setattr(cp, "_PICKLE_BY_VALUE_MODULES", set())  # as if nnsight.register("steerlab") was never called
    with pytest.raises(Exception, match="No module named 'steerlab'"):
        remote.forward(_batch(), edits=[add(remote.site(1), torch.ones(remote.d_model), 1.0)])


def test_remote_refuses_gradients(pair):
    _, remote = pair
    with pytest.raises(SteerlabError, match="gradients cannot flow back"):
        remote.forward(_batch(), grad=True)


def test_remote_request_serialises_without_sending(tiny_folder, monkeypatch, no_editable_finder):
    import zstandard
    from nnsight import CONFIG
    from nnsight.intervention.backends.local import LocalSimulationBackend
    from nnsight.intervention.backends.remote import RemoteBackend
    from nnsight.modeling import huggingface
    from nnsight.schema.request import RequestModel
    from transformers import AutoTokenizer

    from steerlab.backends.nnsight_remote import RemoteNNsightBackend

    folder = str(tiny_folder)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setitem(huggingface._ID_CACHE, folder, folder)  # the model key's hub lookup, offline
    sent = {}

    class Sent(Exception):
        pass

    def network(self, request, tracer):  # replaces the websocket + HTTP layer
        sent.update(blob=self._serialize(tracer), meta=request.model_dump(), key=self.api_key, host=self.host)
        raise Sent

    monkeypatch.setattr(RemoteBackend, "request", network)
    remote = RemoteNNsightBackend.connect(folder, tokenizer=AutoTokenizer.from_pretrained(folder))
    assert remote.device == torch.device("cpu") and remote.dtype == torch.float32  # the tiny config's dtype
    with pytest.raises(Sent):
        remote.forward(_batch(), edits=[add(remote.site(1), torch.ones(remote.d_model), 2.0)], record=[remote.site(0)])
    assert sent["key"] == "test-key" and sent["meta"]["compress"]
    assert f'"repo_id": "{folder}"' in sent["meta"]["model_key"]
    payload = zstandard.ZstdDecompressor().decompress(sent["blob"])
    assert len(payload) < 200_000  # the block, its functions and the edit's vector: no weights
    for client_side in (b"NNsightBackend", b"hf_model", b"LlamaForCausalLM"):
        assert client_side not in payload
    simulation = LocalSimulationBackend(remote.lm)
    hidden = simulation._hide_local_modules()  # as on a server: steerlab is not importable
    try:
        assert "steerlab" not in sys.modules
        tracer = RequestModel.deserialize(sent["blob"], remote.lm._remoteable_persistent_objects(), compress=True)
    finally:
        simulation._restore(hidden)
    assert "_run_plan" in tracer.info.frame.f_globals or "_run_plan" in str(tracer.info.code.co_names)


def test_remote_needs_an_api_key(monkeypatch):
    from nnsight import CONFIG

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(CONFIG.API, "APIKEY", None)
    with pytest.raises(SteerlabError, match="needs an NDIF API key.*NDIF_API_KEY"):
        load_model("meta-llama/Llama-3.1-8B", backend="nnsight", remote=True)
    with pytest.raises(SteerlabError, match="http"):
        load_model("meta-llama/Llama-3.1-8B", backend="nnsight", remote="ndif.example")
