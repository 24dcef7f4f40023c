"""Tests for steerlab.scale: the typical token norm on the tiny model against a hand computation."""

import numpy as np
import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.scale import (
    DEFAULT_FRACTIONS,
    fraction_from_strength,
    strength_from_fraction,
    token_norms,
    typical_norm,
)
from steerlab.sites import Site

PROMPTS = ["Hello there, how are you?", "Hi", "A much longer prompt than the others, with commas.", "Steer me"]
SITES = [Site(0), Site(1, "mlp_out")]


def _hand(lm, prompts, site, factor):
    """The median by hand: one prompt at a time (no padding), drop position 0, drop > factor x median."""
    norms = []
    for p in prompts:
        h = lm.record([p], [site])[site][0]  # [pos, d], a single prompt has no padding
        norms.extend(h.float().norm(dim=-1)[1:].tolist())
    norms = np.array(norms)
    return float(np.median(norms[norms <= factor * np.median(norms)]))


@pytest.mark.parametrize("factor", [10.0, 1.1])
def test_typical_norm_equals_the_hand_median(tiny, factor):
    got = typical_norm(tiny, PROMPTS, SITES, batch_size=3, sink_factor=factor)
    assert list(got) == SITES
    for site in SITES:
        assert got[site] == pytest.approx(_hand(tiny, PROMPTS, site, factor), rel=1e-5)


def test_token_norms_rows_positions_and_sinks(tiny):
    df = token_norms(tiny, PROMPTS, [Site(1)], batch_size=2, sink_factor=1.1)
    lengths = [len(tiny.tokenize([p]).input_ids[0]) for p in PROMPTS]
    assert len(df) == sum(lengths)  # every real token once, no padding
    assert df.groupby("prompt")["position"].max().tolist() == [n - 1 for n in lengths]
    assert df.loc[df.position == 0, "sink"].all()
    rest = df[df.position > 0]
    flagged = rest["norm"] > 1.1 * np.median(rest["norm"])
    assert (rest["sink"] == flagged).all() and flagged.any()
    # left padding does not change a prompt's norms: prompt 1 alone gives the same values
    alone = tiny.record([PROMPTS[1]], [Site(1)])[Site(1)][0].float().norm(dim=-1)
    np.testing.assert_allclose(df.loc[df.prompt == 1, "norm"], alone.cpu().numpy(), rtol=1e-4)


def test_typical_norm_ignores_a_planted_sink():
    # a fake backend whose first token is huge and one later token 50x the rest: neither moves the median
    from steerlab.sites import Batch

    class Fake:
        def site(self, s):
            return Site.parse(s) if not isinstance(s, int) else Site(s)

        def tokenize(self, prompts):
            n = max(len(p) for p in prompts)
            mask = torch.tensor([[0] * (n - len(p)) + [1] * len(p) for p in prompts])
            return Batch(mask.clone(), mask)

        def record(self, batch, sites):
            h = torch.zeros(*batch.input_ids.shape, 2)
            h[..., 0] = 3.0
            h[..., 1] = 4.0  # norm 5
            first = batch.attention_mask.argmax(dim=1)
            h[torch.arange(len(first)), first] = 1000.0
            h[0, -1] = 250.0
            return {s: h for s in sites}

    got = typical_norm(Fake(), ["abcd", "ab"], [Site(0)])
    assert got[Site(0)] == pytest.approx(5.0)
    df = token_norms(Fake(), ["abcd", "ab"], [Site(0)])
    assert df["sink"].sum() == 3  # two first tokens and the planted one


def test_strength_conversions_round_trip():
    v = torch.tensor([3.0, 4.0])  # norm 5
    assert strength_from_fraction(0.25, 140.0, v) == pytest.approx(7.0)
    coeffs = strength_from_fraction(DEFAULT_FRACTIONS, 140.0, v)
    np.testing.assert_allclose(fraction_from_strength(coeffs, 140.0, v), DEFAULT_FRACTIONS)
    np.testing.assert_allclose(np.abs(coeffs) * 5.0, np.abs(DEFAULT_FRACTIONS) * 140.0)  # added norm = f * T
    assert 0.0 in DEFAULT_FRACTIONS and min(DEFAULT_FRACTIONS) < 0 < max(DEFAULT_FRACTIONS)
    assert list(DEFAULT_FRACTIONS) == sorted(DEFAULT_FRACTIONS)


def test_errors(tiny):
    with pytest.raises(SteerlabError, match="norm must be finite and > 0"):
        strength_from_fraction(0.1, 100.0, torch.zeros(4))
    with pytest.raises(SteerlabError, match="typical_norm"):
        strength_from_fraction(0.1, 0.0, torch.ones(4))
    with pytest.raises(SteerlabError, match="non-empty list"):
        typical_norm(tiny, [], [Site(0)])
    with pytest.raises(SteerlabError, match="sink_factor"):
        typical_norm(tiny, PROMPTS, [Site(0)], sink_factor=0.5)
    with pytest.raises(SteerlabError, match="at least two tokens"):
        typical_norm(tiny, ["a"], [Site(0)])
