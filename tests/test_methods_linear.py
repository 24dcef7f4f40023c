"""Tests for steerlab.methods.linear on synthetic activations with planted directions."""

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from steerlab.errors import SteerlabError
from steerlab.methods.linear import (
    DEFAULT_CS,
    MeanDiffAccumulator,
    fisher_scores,
    mean_diff,
    pca_center,
    pca_diff,
    probe_direction,
)

D = 32


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=0))


def planted(n=200, d=D, seed=0, noise=0.3, varying=True, spread=3.0):
    """pos = base + a_i * u + noise, neg = base - a_i * u + noise; ``a_i`` varies across pairs if ``varying``.

    ``base`` has sd ``spread`` in every dimension: with the default the pairs' shared variation swamps
    the contrast, which only the paired methods see through."""
    g = torch.Generator().manual_seed(seed)
    u = _unit(torch.randn(d, generator=g))
    base = spread * torch.randn(n, d, generator=g)
    a = (0.5 + 2.5 * torch.rand(n, 1, generator=g)) if varying else torch.ones(n, 1)
    pos = base + a * u + noise * torch.randn(n, d, generator=g)
    neg = base - a * u + noise * torch.randn(n, d, generator=g)
    return pos, neg, u


# ---------------------------------------------------------------------------------------------- mean_diff


def test_mean_diff_exact_oracle():
    pos = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    neg = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
    out = mean_diff(pos, neg)
    assert out.dtype == torch.float32 and out.shape == (3,)
    torch.testing.assert_close(out, torch.tensor([2.0, 1.0, 1.0]))


def test_mean_diff_allows_unequal_counts():
    out = mean_diff(torch.ones(3, 2), torch.zeros(5, 2))
    torch.testing.assert_close(out, torch.ones(2))


def test_accumulator_matches_batch_over_many_chunks():
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(1000, D, generator=g) + 0.5, torch.randn(1000, D, generator=g)
    acc = MeanDiffAccumulator(D)
    for start in range(0, 1000, 37):
        acc.add(pos[start : start + 37], neg[start : start + 37])
    assert acc.n_pos == acc.n_neg == 1000
    torch.testing.assert_close(acc.result(), mean_diff(pos, neg), rtol=1e-5, atol=1e-6)


def test_accumulator_errors():
    acc = MeanDiffAccumulator(4)
    with pytest.raises(SteerlabError, match="empty"):
        acc.result()
    with pytest.raises(SteerlabError, match="d_model=4"):
        acc.add(torch.ones(2, 5), torch.zeros(2, 5))
    with pytest.raises(SteerlabError, match="positive int"):
        MeanDiffAccumulator(0)


# ---------------------------------------------------------------------------------------------- PCA


@pytest.mark.parametrize(("method", "spread"), [(pca_center, 0.5), (pca_diff, 3.0)])
def test_pca_recovers_planted_direction(method, spread):
    pos, neg, u = planted(spread=spread)
    v = method(pos, neg)
    md = mean_diff(pos, neg)
    assert v.dtype == torch.float32 and v.shape == (D,)
    assert abs(_cos(v, u)) > 0.99
    assert float(v @ md) > 0
    # scale convention: v is the projection of the mean difference on its unit direction
    torch.testing.assert_close(v.norm(), (md @ _unit(v)).abs(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", [pca_center, pca_diff])
def test_pca_sign_follows_pair_order(method):
    pos, neg, _ = planted(seed=3, spread=0.5)
    torch.testing.assert_close(method(neg, pos), -method(pos, neg), rtol=1e-4, atol=1e-5)


def test_pca_center_and_pca_diff_match_sklearn_components():
    pos, neg, _ = planted(n=60, seed=2, spread=1.0)
    pooled = torch.cat([pos, neg]).double().numpy()  # scikit-learn centres on the pooled mean
    diffs = (pos - neg).double().numpy()
    for method, train in [(pca_center, pooled), (pca_diff, diffs)]:
        comp = torch.from_numpy(PCA(n_components=1).fit(train).components_[0])
        assert abs(_cos(method(pos, neg), comp)) > 1 - 1e-6


def test_pca_center_hand_computed_and_differs_from_pca_diff():
    # differences (2, 1) and (2, 3): their mean is (2, 2) and they vary along (0, 1) only
    neg = torch.tensor([[-1.0, -1.0], [-1.0, -1.5]])
    pos = neg + torch.tensor([[2.0, 1.0], [2.0, 3.0]])
    # pooled rows (1, 0), (1, 1.5), (-1, -1), (-1, -1.5); mean (0, -0.25); scatter [[4, 4], [4, 5.25]]
    a, b, c = 4.0, 4.0, 5.25
    lam = (a + c) / 2 + math.sqrt(((a - c) / 2) ** 2 + b**2)
    u = torch.tensor([b, lam - a], dtype=torch.float64)
    u = u / u.norm()
    md = torch.tensor([2.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(pca_center(pos, neg), ((u @ md) * u).float())
    # pca_diff takes the axis along which the differences vary: (0, 1), scaled to md's projection (0, 2)
    torch.testing.assert_close(pca_diff(pos, neg), torch.tensor([0.0, 2.0]))


def test_pca_center_pools_so_shared_variation_can_hide_the_contrast():
    # a nuisance axis that pos and neg share (spread 3) wins the pooled PCA; pca_diff still finds u
    pos, neg, u = planted(spread=0.0, noise=0.3)
    w = _unit(torch.randn(D, generator=torch.Generator().manual_seed(9)))
    shared = 6.0 * torch.randn(pos.shape[0], 1, generator=torch.Generator().manual_seed(8)) * w
    assert abs(_cos(pca_center(pos, neg), u)) > 0.99  # without the nuisance: the contrast dominates
    assert abs(_cos(pca_diff(pos + shared, neg + shared), u)) > 0.99
    assert abs(_cos(pca_center(pos + shared, neg + shared), u)) < 0.5


def test_pca_center_takes_unpaired_rows_and_finds_a_constant_shift():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20, 8, generator=g)
    shift = torch.zeros(8)
    shift[2] = 20.0
    assert abs(_cos(pca_center(base + shift, base), shift)) > 0.999
    assert abs(_cos(pca_center(base[:5] + shift, base), shift)) > 0.99  # 5 positive rows, 20 negative
    with pytest.raises(SteerlabError, match="use mean_diff"):
        pca_diff(base + shift, base)  # centred pair differences have nothing left


# ---------------------------------------------------------------------------------------------- probe


def probe_data(n=400, d=D, seed=0, data_seed=None, signal=1.0):
    """Classes separated along u; a high-variance nuisance axis w carries no label information.

    ``seed`` fixes u and w; ``data_seed`` (default ``seed``) draws the activations.
    """
    g = torch.Generator().manual_seed(seed)
    u = _unit(torch.randn(d, generator=g))
    w = torch.randn(d, generator=g)
    w = _unit(w - (w @ u) * u)
    g = torch.Generator().manual_seed(1000 + (seed if data_seed is None else data_seed))
    base = torch.randn(n, d, generator=g) + 4.0 * torch.randn(n, 1, generator=g) * w
    pos = base + signal * u + 0.5 * torch.randn(n, d, generator=g)
    neg = base - signal * u + 0.5 * torch.randn(n, d, generator=g)
    return pos, neg, u


@pytest.mark.parametrize("standardize", [False, True])
def test_probe_recovers_planted_direction(standardize):
    pos, neg, u = probe_data()
    v, info = probe_direction(pos, neg, standardize=standardize)
    md = mean_diff(pos, neg)
    assert v.dtype == torch.float32 and v.shape == (D,)
    assert _cos(v, u) > 0.95
    assert float(v @ md) > 0
    torch.testing.assert_close(v.norm(), (md @ _unit(v)).abs(), rtol=1e-4, atol=1e-5)
    assert set(info["val_accuracy"]) == set(DEFAULT_CS)
    assert info["n_train"] + info["n_val"] == 400 and info["n_val"] == 80
    assert info["standardize"] is standardize


def test_probe_picks_c_on_validation():
    pos, neg, _ = probe_data(n=30, d=64, seed=1)  # fewer pairs than dimensions: large C can overfit
    val_pos, val_neg, _ = probe_data(n=200, d=64, seed=1, data_seed=2)  # same u and w, fresh activations
    Cs = (1e-4, 1e-2, 1.0, 100.0)
    _, info = probe_direction(pos, neg, val_pos, val_neg, Cs=Cs)
    accs = info["val_accuracy"]
    assert set(accs) == set(Cs)
    best = max(accs.values())
    assert accs[info["C"]] == best
    tied = [c for c in Cs if accs[c] == best]
    assert info["C"] == min(tied, key=lambda c: (info["val_log_loss"][c], c))
    assert info["n_val"] == 200 and info["n_train"] == 30
    assert best > 0.7  # well above chance
    assert accs[100.0] < best and info["C"] != 100.0  # the weakest penalty overfits 30 pairs in 64 dims


def test_probe_validation_split_keeps_pairs_together():
    # pairs are identical apart from the label direction: a pair-straddling split would leak
    pos, neg, _ = probe_data(n=10)
    _, info = probe_direction(pos, neg, seed=3)
    assert info["n_train"] == 8 and info["n_val"] == 2


def test_probe_input_errors():
    pos, neg, _ = probe_data(n=20)
    with pytest.raises(SteerlabError, match="both val_pos and val_neg"):
        probe_direction(pos, neg, val_pos=pos)
    with pytest.raises(SteerlabError, match="Cs must be"):
        probe_direction(pos, neg, Cs=(0.0,))
    with pytest.raises(SteerlabError, match="same site"):
        probe_direction(pos, neg, pos[:, :5], neg[:, :5])


# ---------------------------------------------------------------------------------------------- fisher


def test_fisher_scores_separable_layer_beats_noise_layer():
    pos, neg, _ = planted(n=100, seed=4)
    g = torch.Generator().manual_seed(5)
    noise_pos, noise_neg = torch.randn(100, D, generator=g), torch.randn(100, D, generator=g)
    good, bad = fisher_scores(pos, neg), fisher_scores(noise_pos, noise_neg)
    assert good["discriminability"] > bad["discriminability"]
    assert good["consistency"] > bad["consistency"]
    assert good["score"] > bad["score"]
    assert set(good) == {"discriminability", "consistency", "score"}


def test_fisher_scores_exact_oracle():
    neg = torch.tensor([[0.0, 1.0], [0.0, -1.0], [1.0, 0.0]])
    pos = neg + torch.tensor([3.0, 0.0])
    s = fisher_scores(pos, neg)
    # projections on u = e0: pos [3, 3, 4], neg [0, 0, 1]; gap 3, variances 1/3 each
    assert s["discriminability"] == pytest.approx(9 / (2 / 3))
    assert s["consistency"] == pytest.approx(1.0)
    assert s["score"] == pytest.approx(13.5 / 14.5 + 1.0)


def test_fisher_scores_zero_spread_is_infinite():
    s = fisher_scores(torch.ones(3, 2), torch.zeros(3, 2))
    assert math.isinf(s["discriminability"]) and s["score"] == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------- validation


ALL_PAIRED = [pca_diff, fisher_scores, lambda p, n: probe_direction(p, n)[0]]


@pytest.mark.parametrize("fn", [mean_diff, pca_center, *ALL_PAIRED])
def test_width_mismatch_names_the_site(fn):
    with pytest.raises(SteerlabError, match=r"pos has shape \(10, 576\) but neg has \(10, 640\).*same site"):
        fn(torch.randn(10, 576), torch.randn(10, 640))


@pytest.mark.parametrize("fn", ALL_PAIRED)
def test_paired_methods_need_equal_rows(fn):
    with pytest.raises(SteerlabError, match="paired rows"):
        fn(torch.randn(10, 4), torch.randn(9, 4))


@pytest.mark.parametrize("fn", ALL_PAIRED)
def test_too_few_pairs(fn):
    with pytest.raises(SteerlabError, match="at least 2"):
        fn(torch.randn(1, 4), torch.randn(1, 4))


@pytest.mark.parametrize("fn", [mean_diff, pca_center, *ALL_PAIRED])
def test_missing_class(fn):
    with pytest.raises(SteerlabError, match="empty"):
        fn(torch.randn(4, 4), torch.empty(0, 4))


@pytest.mark.parametrize("fn", [mean_diff, pca_center, *ALL_PAIRED])
def test_nan_is_rejected(fn):
    pos = torch.randn(6, 4)
    pos[2, 1] = float("nan")
    with pytest.raises(SteerlabError, match=r"non-finite.*rows \[2\]"):
        fn(pos, torch.randn(6, 4))


@pytest.mark.parametrize("fn", [mean_diff, pca_center, *ALL_PAIRED])
def test_wrong_rank(fn):
    with pytest.raises(SteerlabError, match="2-D"):
        fn(torch.randn(4, 3, 8), torch.randn(4, 3, 8))
    with pytest.raises(SteerlabError, match="unsqueeze"):
        fn(torch.randn(8), torch.randn(8))


@pytest.mark.parametrize("fn", [mean_diff, pca_center, *ALL_PAIRED])
def test_zero_mean_difference(fn):
    x = torch.randn(6, 4)
    with pytest.raises(SteerlabError, match="same mean"):
        fn(x, x.clone())


def test_inputs_not_modified_and_other_dtypes_accepted():
    pos, neg, _ = planted(n=20)
    pos16, keep = pos.to(torch.bfloat16), pos.clone()
    pca_center(pos, neg)
    torch.testing.assert_close(pos, keep)
    assert mean_diff(pos16, neg.to(torch.bfloat16)).dtype == torch.float32
    assert mean_diff(pos.numpy(), np.asarray(neg)).shape == (D,)
