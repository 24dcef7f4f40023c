"""Tests for steerlab.controls: norm-matched seeded random directions and the null band."""

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from steerlab.controls import DEFAULT_K, null_band, random_directions, random_like
from steerlab.errors import SteerlabError
from steerlab.vectors import Provenance, SteeringVector


def test_random_directions_norm_matched_seeded_and_prefix_stable():
    v = torch.randn(64, generator=torch.Generator().manual_seed(0)) * 7
    r = random_directions(v)
    assert r.shape == (DEFAULT_K, 64) and r.dtype == torch.float32 and r.device.type == "cpu"
    torch.testing.assert_close(r.norm(dim=1), v.norm().expand(DEFAULT_K), rtol=1e-6, atol=0)
    torch.testing.assert_close(random_directions(v, seed=0), r, rtol=0, atol=0)  # deterministic
    torch.testing.assert_close(random_directions(v, k=3), r[:3], rtol=0, atol=0)  # the first j of k
    assert not torch.allclose(random_directions(v, seed=1), r)
    # the exact recipe: unit normal draw from default_rng([seed, i]) times |v|
    x = np.random.default_rng([0, 5]).standard_normal(64)
    torch.testing.assert_close(r[5], torch.from_numpy(x / np.linalg.norm(x) * float(v.double().norm())).float())


def test_random_directions_ignore_the_vectors_dtype_and_direction():
    v = torch.randn(32)
    w = (v * 0 + 1).to(torch.float16) * float(v.norm()) / math.sqrt(32)  # same norm, other direction, fp16
    torch.testing.assert_close(random_directions(w, k=2), random_directions(v, k=2), rtol=1e-3, atol=1e-3)


def test_random_directions_are_near_orthogonal_and_isotropic():
    r = random_directions(torch.ones(512), k=64, seed=3)
    unit = r / r.norm(dim=1, keepdim=True)
    cos = unit @ unit.T
    off = cos[~torch.eye(64, dtype=torch.bool)]
    assert float(off.abs().max()) < 0.25  # ~1/sqrt(512) = 0.044 typical
    assert float(unit.mean(dim=0).norm()) < 0.3  # no common direction


def test_random_directions_errors():
    with pytest.raises(SteerlabError, match="norm 0"):
        random_directions(torch.zeros(8))
    with pytest.raises(SteerlabError, match="1-D"):
        random_directions(torch.ones(2, 8))
    with pytest.raises(SteerlabError, match="positive int"):
        random_directions(torch.ones(8), k=0)
    with pytest.raises(SteerlabError, match="NaN"):
        random_directions(torch.tensor([1.0, float("nan")]))


def test_random_like_matches_each_site_independently():
    prov = Provenance(model="tiny", d_model=16, method="caa")
    vec = SteeringVector({"resid_post.0": torch.ones(16), "resid_post.1": 3 * torch.ones(16)}, prov)
    nulls = random_like(vec, k=4, seed=2)
    assert len(nulls) == 4 and all(n.sites == vec.sites for n in nulls)
    for n in nulls:
        for s, norm in vec.norm().items():
            assert n.norm()[s] == pytest.approx(norm, rel=1e-6)
    a, b = nulls[0].directions.values()
    assert abs(float(torch.nn.functional.cosine_similarity(a, b, dim=0))) < 0.99  # sites draw independently
    assert nulls[1].provenance.method == "random(caa, seed=2, i=1)"
    first = vec.sites[0]
    torch.testing.assert_close(nulls[3][first], random_directions(vec[first], 4, 2, stream=(0, 4))[3])


def test_null_band_prediction_interval_oracle():
    x = np.array([-0.02, 0.01, 0.03, -0.01, 0.0, 0.02, -0.03, 0.01])
    lo, hi = null_band(x)
    half = sps.t.ppf(0.975, 7) * x.std(ddof=1) * math.sqrt(1 + 1 / 8)
    assert (lo, hi) == pytest.approx((x.mean() - half, x.mean() + half))
    assert null_band(x, method="range") == (-0.03, 0.03)
    lo90, hi90 = null_band(x, confidence=0.9)
    assert lo < lo90 < hi90 < hi


def test_null_band_covers_a_new_draw_95_percent():
    # the prediction band from 8 normal draws holds a 9th draw 95% of the time; the min-max range only 7/9
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(20_000, 9))
    half = sps.t.ppf(0.975, 7) * draws[:, :8].std(axis=1, ddof=1) * math.sqrt(1 + 1 / 8)
    inside = np.abs(draws[:, 8] - draws[:, :8].mean(axis=1)) <= half
    assert float(inside.mean()) == pytest.approx(0.95, abs=0.006)
    lo, hi = null_band(draws[0, :8])
    assert lo == pytest.approx(draws[0, :8].mean() - half[0]) and hi == pytest.approx(draws[0, :8].mean() + half[0])
    in_range = (draws[:, 8] >= draws[:, :8].min(axis=1)) & (draws[:, 8] <= draws[:, :8].max(axis=1))
    assert float(in_range.mean()) == pytest.approx(7 / 9, abs=0.01)


def test_null_band_too_few_and_errors():
    with pytest.warns(RuntimeWarning, match="fewer than 3"):
        lo, hi = null_band([0.1, 0.2])
    assert math.isnan(lo) and math.isnan(hi)
    assert null_band([0.1, 0.2], method="range") == (0.1, 0.2)
    with pytest.raises(SteerlabError, match="non-empty"):
        null_band([])
    with pytest.raises(SteerlabError, match="NaN"):
        null_band([0.1, float("nan"), 0.2])
    with pytest.raises(SteerlabError, match="unknown method"):
        null_band([0.1, 0.2, 0.3], method="percentile")
