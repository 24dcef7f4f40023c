"""Activation collection and `extract`: shared-prefix reading equals CAA's full-text reading."""

from types import SimpleNamespace

import pytest
import torch

from steerlab.activations import collect_pairs, collect_prompts, stream_mean_diff
from steerlab.errors import SteerlabError
from steerlab.extraction import METHODS, extract
from steerlab.methods.linear import mean_diff
from steerlab.prompts import answer_stem, encode, pair_prompts
from steerlab.sites import Site

PAIRS = [
    SimpleNamespace(prompt=f"Question {i}: (A) yes (B) no", positive=a, negative=b, meta={})
    for i, (a, b) in enumerate([("(A)", "(B)"), ("(B)", "(A)")] * 6)
] + [SimpleNamespace(prompt="Do you agree?", positive="Yes", negative="No, never", meta={})]
SITES = [Site(0), Site(1, "mlp_out"), Site(1, "attn_out")]


def caa_reference(lm, pairs, site, read):
    """CAA's way: run each full text (prompt + answer) and read the answer's last token (or mean)."""
    prompts = pair_prompts(lm, pairs)
    out = []
    for side in ("positive", "negative"):
        enc = encode(lm, prompts, [answer_stem(getattr(p, side)) for p in pairs])
        acts = lm.forward(enc.batch, record=[site]).activations[site]
        out.append(enc.read(acts, read))
    return out


@pytest.mark.parametrize("read", ["completion_last", "completion_mean"])
def test_shared_prefix_reading_equals_full_texts(tiny, read):
    acts = collect_pairs(tiny, PAIRS, SITES, read=read, batch_size=5, progress=False)
    for site in SITES:
        pos, neg = caa_reference(tiny, PAIRS, site, read)
        torch.testing.assert_close(acts.pos[site], pos, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(acts.neg[site], neg, rtol=1e-5, atol=1e-5)


def test_streaming_mean_diff_equals_batch_mean_diff(tiny):
    acts = collect_pairs(tiny, PAIRS, SITES, batch_size=4, progress=False)
    streamed = stream_mean_diff(tiny, PAIRS, SITES, batch_size=3, progress=False)
    for site in SITES:
        torch.testing.assert_close(streamed[site], mean_diff(acts.pos[site], acts.neg[site]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "bipo"])
def test_extract_returns_a_vector_with_provenance(tiny, method):
    vec = extract(tiny, PAIRS, [0, 1], method=method, dataset="toy", progress=False, val_pairs=PAIRS[:4])
    assert vec.sites == [Site(0), Site(1)]
    assert vec.provenance.method == method and vec.provenance.model == tiny.name
    assert vec.provenance.n_pairs == len(PAIRS) and vec.provenance.backend == tiny.kind
    assert vec.provenance.read_position == "completion_last"
    md = stream_mean_diff(tiny, PAIRS, [Site(1)], progress=False)[Site(1)]
    assert float(vec[Site(1)] @ md) > 0  # every method is sign-aligned with the mean difference


def test_collect_prompts_reads_the_last_token(tiny):
    prompts = [tiny.chat("hello"), tiny.chat("a much longer message")]
    got = collect_prompts(tiny, prompts, [Site(1)], progress=False)[Site(1)]
    for i, p in enumerate(prompts):
        alone = tiny.record([p], [Site(1)])[Site(1)][0, -1]
        torch.testing.assert_close(got[i], alone, rtol=1e-4, atol=1e-4)


def test_bad_inputs_are_explained(tiny):
    with pytest.raises(SteerlabError, match="no contrast pairs"):
        extract(tiny, [], [0], progress=False)
    with pytest.raises(SteerlabError, match="unknown method"):
        extract(tiny, PAIRS, [0], method="magic", progress=False)
    with pytest.raises(SteerlabError, match="identical positive and negative"):
        collect_pairs(tiny, PAIRS, [0], read="prompt_last", progress=False)
    with pytest.raises(SteerlabError, match="out of range"):
        extract(tiny, PAIRS, [7], progress=False)


def test_precomputed_activations_give_the_same_vector(tiny):
    acts = collect_pairs(tiny, PAIRS, [0, 1], progress=False)
    for method in ("caa", "pca_diff"):
        a = extract(tiny, PAIRS, [0, 1], method=method, progress=False)
        b = extract(tiny, PAIRS, [0, 1], method=method, progress=False, activations=acts)
        for s in a.sites:
            torch.testing.assert_close(a[s], b[s], rtol=1e-5, atol=1e-6)
    with pytest.raises(SteerlabError, match="lack sites"):
        extract(tiny, PAIRS, [0, 1], activations=collect_pairs(tiny, PAIRS, [0], progress=False), progress=False)
