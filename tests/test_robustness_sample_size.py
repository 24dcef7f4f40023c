"""Sample-size study: subsets are drawn as promised and swept as vectors, the saturating fits recover known
parameters."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.methods.linear import mean_diff
from steerlab.provenance import Provenance
from steerlab.robustness.sample_size import (
    fit_saturation,
    sample_size_effects,
    sample_size_study,
    saturation_curve,
    subset_draws,
    subset_vectors,
)
from steerlab.sites import Site

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
    df = sample_size_study(pos, neg, [1, 10, 50], draws=4)
    assert set(df.metric) == {"cosine", "norm"}
    counts = df[df.metric == "cosine"].groupby("n_pairs").size().to_dict()
    assert counts == {1: 4, 10: 4, 50: 1}  # the full pool has one distinct subset
    full = df[(df.metric == "cosine") & (df.n_pairs == 50)].value.iloc[0]
    assert full == pytest.approx(1.0, abs=1e-9)
    assert (df[(df.metric == "cosine") & (df.n_pairs == 1)].value < 1.0).all()
    # a single pair's direction is that pair's difference: its norm matches one of the pool's
    diffs = (pos - neg).norm(dim=1)
    for v in df[(df.metric == "norm") & (df.n_pairs == 1)].value:
        assert float((diffs - v).abs().min()) < 1e-5


def test_subset_vectors_are_the_studied_subsets_oriented_like_the_pool():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(30, 6, generator=g) + 1.0, torch.randn(30, 6, generator=g)
    prov = Provenance(model="m", d_model=6, method="caa", n_pairs=30)
    vecs = subset_vectors(pos, neg, [3, 30], Site(2), prov, draws=2, sign=-1.0, seed=5)
    assert sorted(vecs) == [("n=3", 0), ("n=3", 1), ("n=30", 0)]
    draws = subset_draws(30, [3, 30], draws=2, seed=5)
    study = sample_size_study(pos, neg, [3, 30], draws=2, seed=5)
    for n, d, idx in draws:
        v = vecs[(f"n={n}", d)]
        assert torch.allclose(v[Site(2)], -mean_diff(pos[idx], neg[idx]))
        assert v.provenance.n_pairs == n and v.provenance.extra["subset"] == {"n": n, "draw": d, "seed": 5}
        norm = study.query(f"metric == 'norm' and n_pairs == {n} and draw == {d}").value.iloc[0]
        assert float(v[Site(2)].norm()) == pytest.approx(norm, rel=1e-6)  # the study describes the same vectors
    with pytest.raises(SteerlabError, match="sign"):
        subset_vectors(pos, neg, [3], Site(2), prov, sign=0.5)


def test_subset_vectors_sweep_and_read_back_by_size(tiny):
    from steerlab.data import ContrastPair
    from steerlab.effects import cell_effects
    from steerlab.sweeps import sweep
    from steerlab.tasks import ChoiceTask

    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(12, tiny.d_model, generator=g) + 0.5, torch.randn(12, tiny.d_model, generator=g)
    prov = Provenance(model=tiny.name, d_model=tiny.d_model, method="caa")
    vecs = subset_vectors(pos, neg, [2, 12], Site(1), prov, draws=2)
    task = ChoiceTask.from_pairs(tiny, [ContrastPair(f"Is {i} odd?", "Yes", "No", {}) for i in range(4)])
    df = sweep(tiny, vecs, task, fractions=[0.0, 0.5], scale={Site(1): 3.0}, progress=False)
    eff = sample_size_effects(cell_effects(df, "p_behaviour"))
    assert eff[["n_pairs", "draw"]].values.tolist() == [[2, 0], [2, 1], [12, 0]]
    one = sweep(tiny, {"whole": vecs[("n=12", 0)]}, task, fractions=[0.0, 0.5], scale={Site(1): 3.0},
                progress=False)  # fmt: skip
    want = cell_effects(one, "p_behaviour").effect.iloc[0]
    assert eff.effect.iloc[-1] == pytest.approx(want, abs=1e-9)
    with pytest.raises(SteerlabError, match="subset vectors"):
        sample_size_effects(cell_effects(one, "p_behaviour"))


def test_bad_inputs_raise():
    x = torch.zeros(5, 3)
    with pytest.raises(SteerlabError, match="sizes"):
        sample_size_study(x, x, [0, 6])
    with pytest.raises(SteerlabError, match="paired"):
        sample_size_study(x, torch.zeros(4, 3), [1])
    with pytest.raises(SteerlabError, match="distinct"):
        fit_saturation(pd.DataFrame({"n_pairs": [1, 2], "value": [0.1, 0.2]}))
    with pytest.raises(SteerlabError, match="unknown saturation model"):
        fit_saturation(pd.DataFrame({"n_pairs": N, "value": N}), model="log")
