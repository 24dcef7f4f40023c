"""Activation collection and `extract`: shared-prefix reading equals CAA's full-text reading."""

from types import SimpleNamespace

import pytest
import torch

from steerlab.activations import collect_pairs, collect_prompts
from steerlab.errors import SteerlabError
from steerlab.extraction import METHODS, extract, extract_from_labels, stream_mean_diff
from steerlab.methods.linear import mean_diff, pca_diff
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
        pos, neg = caa_reference(tiny, PAIRS, site, read)  # on the model's device; collected ones on the CPU
        torch.testing.assert_close(acts.pos[site], pos.cpu(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(acts.neg[site], neg.cpu(), rtol=1e-5, atol=1e-5)


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
        alone = tiny.record([p], [Site(1)])[Site(1)][0, -1].cpu()  # collected activations are kept on the CPU
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


LABELLED = [SimpleNamespace(text=t, label=y, meta={}) for t, y in
            [("happy sunny day", 1), ("gloomy wet night", 0), ("bright smile", 1), ("sad grey sky", 0),
             ("joy and laughter", 1), ("cold tears", 0), ("lovely warm hug", 0)]]  # fmt: skip


def test_extract_from_labels_caa_is_the_mean_difference_of_last_tokens(tiny):
    vec, acts = extract_from_labels(tiny, LABELLED, [0, 1], seed=2, read="prompt_last", dataset="mood", progress=False)
    for site in (Site(0), Site(1)):
        last = {y: collect_prompts(tiny, [it.text for it in LABELLED if it.label == y], [site], progress=False)[site]
                for y in (1, 0)}  # fmt: skip
        torch.testing.assert_close(vec[site], mean_diff(last[1], last[0]), rtol=1e-5, atol=1e-6)
        # the random pairing keeps 3 texts of each label (label 1 has 3, label 0 has 4), all from the right label
        assert acts.pos[site].shape[0] == acts.neg[site].shape[0] == 3
        assert all(any(torch.allclose(row, x) for x in last[1]) for row in acts.pos[site])
        assert all(any(torch.allclose(row, x) for x in last[0]) for row in acts.neg[site])
    assert acts.read == vec.provenance.read_position == "prompt_last"
    assert vec.provenance.extra["pairing"] == "random label-1/label-0 pairs, seed 2"


def test_extract_from_labels_reads_the_mean_over_tokens_without_the_first(tiny):
    """The default: each text is the mean of its token activations after the first (an attention sink)."""
    vec, acts = extract_from_labels(tiny, LABELLED, [1], progress=False)
    site = Site(1)

    def text_mean(text):
        h = tiny.record([text], [site])[site][0]  # [pos, d]: one text, no padding
        return h[1:].float().mean(dim=0)

    means = {y: torch.stack([text_mean(it.text) for it in LABELLED if it.label == y]) for y in (1, 0)}
    torch.testing.assert_close(vec[site], means[1].mean(0) - means[0].mean(0), rtol=1e-5, atol=1e-5)
    assert acts.read == vec.provenance.read_position == "token_mean"


def test_extract_from_labels_pca_uses_the_random_pairs(tiny):
    vec, acts = extract_from_labels(tiny, LABELLED, [1], "pca-diff", seed=0, progress=False)
    torch.testing.assert_close(vec[Site(1)], pca_diff(acts.pos[Site(1)], acts.neg[Site(1)]))
    assert vec.provenance.method == "pca_diff"


def test_extract_from_labels_refuses_pair_methods_and_one_label(tiny):
    with pytest.raises(SteerlabError, match="needs contrast pairs"):
        extract_from_labels(tiny, LABELLED, [0], "probe", progress=False)
    with pytest.raises(SteerlabError, match="both labels"):
        extract_from_labels(tiny, [it for it in LABELLED if it.label == 1], [0], progress=False)
