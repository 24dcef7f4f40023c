"""Sample-size study: subsets are drawn as promised, the saturating fits recover known parameters."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.methods.linear import mean_diff
from steerlab.robustness.sample_size import fit_saturation, sample_size_study, saturation_curve

N = np.array([1, 2, 3, 5, 8, 13, 20, 40, 80, 160, 320, 640], dtype=float)


@pytest.mark.parametrize(("model", "a", "scale", "knee"), [("exp", 0.3, 25.0, 25.0 * math.log(10)),
                                                          ("hyper", 0.8, 12.0, 12.0 * 9)])  # fmt: skip
def test_fit_recovers_noiseless_parameters_and_knee(model, a, scale, knee):
    df = pd.DataFrame({"n_pairs": N, "value": saturation_curve({"model": model, "a": a, "tau": scale, "k": scale}, N)})
    fit = fit_saturation(df, model=model)
    name = "tau" if model == "exp" else "k"
    assert fit["a"] == pytest.approx(a, rel=1e-6)
    assert fit[name] == pytest.approx(scale, rel=1e-6)
    assert fit["knee"] == pytest.approx(knee, rel=1e-6)
    assert fit["rmse"] < 1e-8


def test_fit_with_noise_is_within_its_standard_errors():
    rng = np.random.default_rng(0)
    n = np.repeat(N, 30)
    df = pd.DataFrame({"n_pairs": n, "value": 0.5 * (1 - np.exp(-n / 40)) + rng.normal(0, 0.02, len(n))})
    fit = fit_saturation(df, model="exp")
    assert abs(fit["tau"] - 40) < 4 * fit["tau_se"]
    assert abs(fit["a"] - 0.5) < 4 * fit["a_se"]


def test_study_draws_subsets_and_the_full_pool_equals_the_reference():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(50, 6, generator=g) + 1.0, torch.randn(50, 6, generator=g)
    seen = []
    df = sample_size_study(pos, neg, [1, 10, 50], draws=4, evaluate=lambda v: seen.append(v) or {"x": float(v[0])},
                           progress=False)  # fmt: skip
    assert set(df.metric) == {"cosine", "norm", "x"}
    counts = df[df.metric == "cosine"].groupby("n_pairs").size().to_dict()
    assert counts == {1: 4, 10: 4, 50: 1}  # the full pool has one distinct subset
    full = df[(df.metric == "cosine") & (df.n_pairs == 50)].value.iloc[0]
    assert full == pytest.approx(1.0, abs=1e-9)
    one = df[(df.metric == "cosine") & (df.n_pairs == 1)].value
    assert (one < 1.0).all()
    # a single pair's direction is that pair's difference: its norm matches one of the pool's
    diffs = (pos - neg).norm(dim=1)
    for v in df[(df.metric == "norm") & (df.n_pairs == 1)].value:
        assert float((diffs - v).abs().min()) < 1e-5
    assert torch.allclose(seen[-1], mean_diff(pos, neg))


def test_bad_inputs_raise():
    x = torch.zeros(5, 3)
    with pytest.raises(SteerlabError, match="sizes"):
        sample_size_study(x, x, [0, 6], progress=False)
    with pytest.raises(SteerlabError, match="distinct"):
        fit_saturation(pd.DataFrame({"n_pairs": [1, 2], "value": [0.1, 0.2]}))
    with pytest.raises(SteerlabError, match="unknown saturation model"):
        fit_saturation(pd.DataFrame({"n_pairs": N, "value": N}), model="log")
