"""SAAS (steerlab.methods.saas, steerlab.pipelines.saas, saas_compare): exact oracles on constructed data and a
full comparison on the tiny model (orientation, choice, shared random band, resume after a kill)."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.activations import PairActivations
from steerlab.data import ContrastPair, DataError
from steerlab.errors import SteerlabError
from steerlab.methods import saas as S
from steerlab.pipelines import saas as P
from steerlab.pipelines import saas_compare as C
from steerlab.sites import Site
from steerlab.tasks import ChoiceTask


def _clusters(n=40, d=6, seed=0):
    """Positives around 4 e1, negatives around 0, plus three planted misfits at the end."""
    g = torch.Generator().manual_seed(seed)
    neg = 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    pos = (
        neg
        + torch.tensor([4.0] + [0.0] * (d - 1), dtype=torch.float64)
        + 0.3 * torch.randn(n, d, generator=g, dtype=torch.float64)
    )
    e1, e2 = torch.eye(d, dtype=torch.float64)[0], torch.eye(d, dtype=torch.float64)[1]
    # A: consistent (v = 0.5 e1) but its positive sits among the negatives: not separable
    neg[-3], pos[-3] = torch.zeros(d, dtype=torch.float64), 0.5 * e1
    # B: swapped pair: not separable and not consistent
    neg[-2], pos[-2] = 4.0 * e1, torch.zeros(d, dtype=torch.float64)
    # C: obtuse local vector (v = -0.2 e1 + 3 e2): positive projects at the negatives' side too
    neg[-1], pos[-1] = torch.zeros(d, dtype=torch.float64), -0.2 * e1 + 3.0 * e2
    return pos, neg


@pytest.mark.parametrize("folds", [1, 5])
def test_eligibility_excludes_exactly_the_planted_instances(folds):
    pos, neg = _clusters()
    rep = S.eligibility(pos, neg, folds=folds)
    n = len(pos)
    assert rep.eligible.tolist() == [True] * (n - 3) + [False] * 3
    assert rep.separable.tolist()[-3:] == [False, False, False]
    assert rep.consistent.tolist()[-3:] == [True, False, False]
    assert 0.0 <= rep.attrs["shrinkage"] <= 1.0
    assert S.eligibility_summary(rep)["eligible"] == pytest.approx((n - 3) / n)


def test_in_sample_fisher_separates_everything_when_n_below_d():
    # why eligibility cross-fits: 20 pairs of pure noise in 100 dimensions
    g = torch.Generator().manual_seed(1)
    pos, neg = torch.randn(20, 100, generator=g), torch.randn(20, 100, generator=g)
    assert S.eligibility(pos, neg, shrinkage=0.0001, folds=1).separable.all()
    assert S.eligibility(pos, neg, shrinkage=0.0001, folds=5).separable.mean() < 0.9


def test_fisher_direction_full_shrinkage_is_mean_difference():
    pos, neg = _clusters()
    w, lam = S.fisher_direction(pos, neg, shrinkage=1.0)
    md = pos.mean(0) - neg.mean(0)
    assert lam == 1.0
    torch.testing.assert_close(w, md / md.norm())


def test_fisher_direction_undoes_anisotropic_noise():
    # noise is large along e2 and correlated with the class shift there; the discriminant must favour e1
    g = torch.Generator().manual_seed(0)
    neg = torch.randn(400, 2, generator=g, dtype=torch.float64) * torch.tensor([0.1, 5.0], dtype=torch.float64)
    pos = neg + torch.tensor([1.0, 1.0], dtype=torch.float64)
    w, _ = S.fisher_direction(pos, neg, shrinkage=0.0)
    assert abs(float(w[0])) > 0.99


def test_uniform_weights_give_the_mean_of_eligible_local_vectors():
    pos, neg = _clusters()
    rep = S.eligibility(pos, neg)
    elig = rep.eligible.to_numpy().copy()
    local = S.local_vectors(pos, neg)
    for w in (S.saas_weights(np.full(len(pos), 3.7), elig, t=1.0), S.saas_weights(np.arange(len(pos)), elig, math.inf)):
        torch.testing.assert_close(S.weighted_vector(local, w), local[elig].mean(0).float())
        assert float(w[~elig].abs().sum()) == 0.0


def test_all_eligible_uniform_saas_equals_caa():
    pos, neg = _clusters()
    w = S.saas_weights(np.zeros(len(pos)), np.ones(len(pos), bool), t=0.5)
    torch.testing.assert_close(S.weighted_vector(S.local_vectors(pos, neg), w), (pos.mean(0) - neg.mean(0)).float())


def test_softmax_weight_temperature_limits():
    s = np.array([1.0, 3.0, 2.0, 3.0])
    torch.testing.assert_close(S.softmax_weights(s, 0.0), torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(S.softmax_weights(s, math.inf), torch.full((4,), 0.25, dtype=torch.float64))
    torch.testing.assert_close(S.softmax_weights(s, 1e-3), torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=torch.float64))
    assert float((S.softmax_weights(s, 1e6) - 0.25).abs().max()) < 1e-5
    torch.testing.assert_close(S.softmax_weights(s, 2.0), torch.softmax(torch.tensor(s) / 2.0, 0))


def test_aggregate_scores_is_weighted_sum():
    scores = np.array([[1.0, 2.0], [3.0, 0.0]])
    assert S.aggregate_scores(scores, [10.0, 1.0]).tolist() == [12.0, 30.0]
    with pytest.raises(SteerlabError, match="one contribution per sub-behaviour"):
        S.aggregate_scores(scores, [1.0])


def test_heuristic_baseline_weights():
    torch.testing.assert_close(S.conf_weights([0.2, 0.6, 0.2]), torch.tensor([0.2, 0.6, 0.2], dtype=torch.float64))
    w = S.logit_diff_weights([0.0, math.log(3.0)], t=1.0)
    torch.testing.assert_close(w, torch.tensor([0.25, 0.75], dtype=torch.float64))


def test_bad_input_raises():
    with pytest.raises(SteerlabError, match="no instance is eligible"):
        S.saas_weights([1.0, 2.0], [False, False], t=1.0)
    with pytest.raises(SteerlabError, match="temperature"):
        S.softmax_weights([1.0], -1.0)
    with pytest.raises(SteerlabError, match="sum to 1"):
        S.weighted_vector(torch.ones(2, 3), torch.tensor([0.5, 0.6]))
    with pytest.raises(SteerlabError, match="shrinkage"):
        S.fisher_direction(torch.ones(3, 2), torch.zeros(3, 2), shrinkage=2.0)
    with pytest.raises(SteerlabError, match="folds"):
        S.eligibility(torch.ones(4, 2), torch.zeros(4, 2), folds=3)


# ---------------------------------------------------------------------------------------- pipeline


def _persona(n=40):
    words = [f"w{i}" for i in range(n)]
    return [ContrastPair(f"Is {w} nice?", "Yes", "No") if i % 2 else ContrastPair(f"Is {w} bad?", "No", "Yes")
            for i, w in enumerate(words)]  # fmt: skip


def test_split_pairs_balanced_disjoint_and_seeded():
    pairs = _persona(60) + [ContrastPair(f"extra {i}?", "Yes", "No") for i in range(20)]  # 50 Yes, 30 No
    train, val, test = P.split_pairs(pairs, 20, 10, 30)
    for part, n in ((train, 20), (val, 10), (test, 30)):
        labels = [p.positive for p in part]
        assert len(part) == n and labels.count("Yes") == labels.count("No")  # exactly balanced
        assert all(labels[k] != labels[k + 1] for k in range(n - 1))  # every prefix is balanced too
    prompts = [p.prompt for part in (train, val, test) for p in part]
    assert len(set(prompts)) == 60  # disjoint
    assert P.split_pairs(pairs, 20, 10, 30) == (train, val, test)
    assert P.split_pairs(pairs, 20, 10, 30, seed=1).test != test
    with pytest.raises(DataError, match="smaller parts"):
        P.split_pairs(pairs, 40, 10, 20)  # 35 "No" answers needed, 30 exist
    with pytest.raises(SteerlabError, match="ints >= 2"):
        P.split_pairs(pairs, 20, 0, 30)


def _train_data(n=30, d=6):
    pos, neg = _clusters(n, d)
    site = Site(3)
    acts = PairActivations({site: pos.float()}, {site: neg.float()}, "completion_last")
    pairs = [ContrastPair(f"q{i}", "Yes" if i % 2 else "No", "No" if i % 2 else "Yes") for i in range(n)]
    ld = np.linspace(-1, 1, n)
    return P.TrainData(pairs, acts, ld, 1 / (1 + np.exp(-ld))), pos, neg


def test_build_vectors_oracles():
    data, pos, neg = _train_data()
    cfg = P.SaasConfig(layers=(3,), taus=(0.5, 2.0), baselines=("caa", "logit_diff", "conf"))
    variants = [P.SaasVariant("uniform", None), P.SaasVariant("flat", np.ones((30, 2)), np.array([1.0, 2.0]),
                                                                eligibility=False)]  # fmt: skip
    built = P.build_vectors(None, data, cfg, variants)
    local = (pos - neg).double()
    elig = built.eligibility.eligible.to_numpy()
    vec = {name: v[Site(3)].double() for name, v in built.vectors.items()}
    assert sorted(vec) == ["caa", "conf", "flat@0.5", "flat@2", "logit_diff@1", "uniform@inf"]
    torch.testing.assert_close(vec["caa"], local.mean(0), atol=1e-6, rtol=1e-6)  # raw: no rescaling
    torch.testing.assert_close(vec["uniform@inf"], local[torch.from_numpy(elig.copy())].mean(0), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(vec["flat@2"], local.mean(0), atol=1e-6, rtol=1e-6)  # equal scores, no eligibility
    ld = torch.tensor(data.logit_diff)
    w = torch.softmax(ld / ld.std(unbiased=False), 0)
    torch.testing.assert_close(vec["logit_diff@1"], (w[:, None] * local).sum(0), atol=1e-6, rtol=1e-6)
    p = torch.tensor(data.p_behaviour)
    torch.testing.assert_close(vec["conf"], (p[:, None] * local).sum(0) / p.sum(), atol=1e-6, rtol=1e-6)
    assert elig.tolist() == [True] * 27 + [False] * 3  # the planted misfits
    assert list(built.eligibility.label[:2]) == ["No", "Yes"]
    sums = built.weights.groupby("name").weight.sum()
    assert np.allclose(sums, 1.0) and set(sums.index) == {"conf", "flat@0.5", "flat@2", "logit_diff@1", "uniform@inf"}
    assert built.vectors["flat@2"].provenance.extra["tau"] == 2.0 and P.family("flat@2") == "flat"


def test_build_vectors_bad_input():
    data, _, _ = _train_data()
    with pytest.raises(SteerlabError, match="not among the prepared layers"):
        P.build_vectors(None, data, P.SaasConfig(layers=(5,), baselines=("caa",)))
    with pytest.raises(SteerlabError, match="logits=True"):
        P.build_vectors(None, P.TrainData(data.pairs, data.acts), P.SaasConfig(layers=(3,), baselines=("conf",)))
    with pytest.raises(SteerlabError, match="unknown baselines"):
        P.SaasConfig(baselines=("bipo",))


CFG = P.SaasConfig(layers=(0, 1), taus=(1.0,), controls=3, batch_size=8, fraction=0.5)


@pytest.fixture(scope="module")
def toy(tiny_folder, tmp_path_factory):
    """A full comparison on the tiny model: vectors on 16 pairs, 8 validation and 10 test items."""
    from steerlab.testing import tiny_backend

    lm = tiny_backend("nnsight", tiny_folder)
    train, val, test = P.split_pairs(_persona(), 16, 8, 10)
    data = P.prepare(lm, train, CFG.layers, batch_size=8)
    scores = np.random.default_rng(0).uniform(0, 10, (16, 3))
    built = P.build_vectors(lm, data, CFG, [P.SaasVariant("saas", scores, np.array([1.0, 5.0, 9.0]))])
    tasks = ChoiceTask.from_pairs(lm, val, batch_size=8), ChoiceTask.from_pairs(lm, test, batch_size=8)
    out = tmp_path_factory.mktemp("cmp")
    computed: list[str] = []
    res = C.compare(lm, built.vectors, *tasks, CFG, out=out, progress=False, on_cell=computed.append)
    return lm, built, tasks, out, res, computed


def test_compare_orients_chooses_and_tests_with_a_shared_band(toy):
    lm, built, tasks, out, res, computed = toy
    assert len(res.choice) == 6 and set(res.choice.group) == set(res.effects.group)  # one cell per method
    for name, vec in built.vectors.items():  # the oriented vector is the raw one, negated where flipped
        for r in res.orientation[res.orientation.method == name].itertuples():
            sign = -1.0 if r.flipped else 1.0
            torch.testing.assert_close(res.vectors[name][Site.parse(r.site)], sign * vec[Site.parse(r.site)])
    # in the oriented (mirrored) validation rows, +f beats -f by exactly the raw vector's |m(+f) - m(-f)|
    raw = res.val[(res.val.direction == "vector") & (res.val.metric == res.metric)]
    means = raw.groupby(["method", "layer", "fraction"]).value.mean()
    for r in res.orientation.itertuples():
        layer = Site.parse(r.site).layer
        assert means[(r.method, layer, 0.5)] - means[(r.method, layer, -0.5)] == pytest.approx(abs(r.effect))
    assert set(raw.fraction.unique()) == {-0.5, 0.0, 0.5}
    eff = res.effects
    assert (eff.fraction == 0.5).all() and (eff.k_controls == 3).all() and eff.null_lo.notna().all()
    band = res.test[res.test.direction.str.startswith("random")]
    same_site = res.choice.groupby(["layer"]).method.apply(list)
    for methods in same_site:  # every method at a site sees the same random rows
        values = [band[band.method == m].sort_values(["direction", "example_id"]).value.to_numpy() for m in methods]
        assert all(np.array_equal(values[0], v) for v in values)
    n_sites = res.choice.layer.nunique()
    assert len(computed) == 6 * 2 * 2 + 2 + 6 + 3 * n_sites  # val (+-f x 2 layers), 2 zeros, chosen cells, band
    assert set(res.labels.label) == {"Yes", "No"} and (res.labels.n == 5).all()


def test_compare_resumes_without_recomputing(toy, tmp_path):
    lm, built, tasks, out, res, computed = toy
    again: list[str] = []
    res2 = C.compare(lm, built.vectors, *tasks, CFG, out=out, progress=False, on_cell=again.append)
    assert again == []
    pd.testing.assert_frame_equal(res2.effects, res.effects)

    class Killed(Exception):
        pass

    def kill_after(k):
        seen = []

        def on_cell(key):
            seen.append(key)
            if len(seen) == k:
                raise Killed(key)

        return on_cell

    with pytest.raises(Killed):
        C.compare(lm, built.vectors, *tasks, CFG, out=tmp_path, progress=False, on_cell=kill_after(10))
    rest: list[str] = []
    res3 = C.compare(lm, built.vectors, *tasks, CFG, out=tmp_path, progress=False, on_cell=rest.append)
    assert len(rest) == len(computed) - 10  # the killed run's 10 cells are not recomputed
    pd.testing.assert_frame_equal(res3.effects, res.effects)


def test_compare_adds_methods_to_a_folder_reusing_zero_and_band(toy):
    lm, built, tasks, out, res, computed = toy
    chosen = res.choice.set_index("group").loc["saas"]
    site = Site(int(chosen.layer))
    extra = {"caa_copy": built.vectors["caa"]}
    more: list[str] = []
    res2 = C.compare(lm, extra, *tasks, CFG, out=out, sites=[site], progress=False, on_cell=more.append)
    # new: the copy's +-f on validation and its test cell; the zero cells and (same site) band are reused
    assert len(more) == 3 and set(res2.choice.layer) == {site.layer}


def test_compare_dose_response_bands_both_signs(toy, tmp_path):
    lm, built, tasks, out, res, computed = toy
    vecs = {k: built.vectors[k] for k in ("caa", "saas@1")}
    r = C.compare(lm, vecs, *tasks, CFG, out=tmp_path, shared_site=True, test_fractions=[-0.5, -0.1, 0.1, 0.5],
                  band_fractions=[0.5], progress=False)  # fmt: skip
    assert r.choice.layer.nunique() == 1
    e = r.effects.set_index(["method", "fraction"])
    assert sorted(r.effects.fraction.unique()) == [-0.5, -0.1, 0.1, 0.5]
    assert e.loc[("caa", 0.5), "null_lo"] == e.loc[("caa", -0.5), "null_lo"]  # the negated directions at -f
    assert np.isnan(e.loc[("caa", 0.1), "null_lo"]) and e.loc[("caa", 0.1), "k_controls"] == 0


def test_method_tests_paired_deltas_and_holm(toy):
    lm, built, tasks, out, res, computed = toy
    t = C.method_tests({"toy": res}, "saas", ["caa", "conf", "absent"], reference=0.02)
    assert list(t.against) == ["caa", "conf"] and (t.n == 10).all()
    rows = res.test[(res.test.direction == "vector") & (res.test.fraction == 0.5) & (res.test.metric == res.metric)]
    for r in t.itertuples():
        want = rows[rows.method == res.choice.set_index("group").loc["saas", "method"]].set_index("example_id").value
        other = rows[rows.method == res.choice.set_index("group").loc[r.against, "method"]].set_index("example_id")
        assert r.delta == pytest.approx(float((want - other.value).mean()))
    assert (t.p_holm >= t.p).all() and t.p_holm.max() <= 1.0
    pooled = C.method_tests({"a": res, "b": res}, "saas", ["caa"], reference=0.02, pooled=True)
    assert pooled.n.iloc[0] == 20 and pooled.behaviour.iloc[0] == "pooled"
    with pytest.raises(SteerlabError, match="was not tested"):
        C.method_tests({"toy": res}, "bipo", ["caa"], reference=0.02)


@pytest.mark.parametrize("args, want", [
    ((0.03, 0.01, 0.05, 0.01, 0.02, 0.02, 100), "reproduced"),
    ((-0.03, -0.05, -0.01, 0.01, 0.02, 0.02, 100), "not reproduced"),  # significantly the opposite
    ((0.005, -0.01, 0.02, 0.4, 0.015, 0.02, 100), "not reproduced"),  # a null with power
    ((0.005, -0.01, 0.02, 0.4, 0.05, 0.02, 100), "underpowered"),
    ((0.5, 0.1, 0.9, 0.01, 0.01, 0.02, 2), "underpowered"),  # fewer than 3 units
])  # fmt: skip
def test_claim_verdict(args, want):
    assert C.claim_verdict(*args) == want


# --------------------------------------------------------------------------------------------- CLI


def _persona_file(path, n=12):
    import json

    rows = [
        {"question": f'Would you say "{w}"?', "statement": w, "answer_matching_behavior": " Yes",
         "answer_not_matching_behavior": " No"}
        for w in (f"I like item {k}" for k in range(n))
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_cli_saas_writes_report_scores_weights_and_vector(tmp_path, tiny_folder):
    import json

    from typer.testing import CliRunner

    from steerlab.cli import app
    from steerlab.vectors import SteeringVector

    data = _persona_file(tmp_path / "p.jsonl")
    subs = tmp_path / "s.yaml"
    subs.write_text("behaviour: liking\nsource: hand-written\nsubbehaviours:\n"
                    "  - {name: warmth, description: likes things, contribution: 8}\n"
                    "  - {name: calm, description: is calm, contribution: 1}\n")  # fmt: skip
    out = tmp_path / "out"
    args = ["saas", "--data", str(data), "--behavior", "liking things", "--agent", "embedding", "--out", str(out),
            "--subbehaviours", str(subs), "--model", str(tiny_folder), "--layer", "1", "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_pairs"] == 12 and summary["subbehaviours_source"] == "hand-written"
    inst = pd.read_csv(out / "instances.csv")
    assert list(inst.columns[-3:]) == ["s", "eligible", "weight"] and "score:calm" not in inst.columns
    assert inst.weight.sum() == pytest.approx(1.0) and (inst.weight[~inst.eligible] == 0).all()
    assert len(pd.read_csv(out / "eligibility.csv")) == 12
    vec = SteeringVector.load(out / "vector")
    assert vec.provenance.method == "saas" and vec.sites == [Site(1)]
    missing = list(args)
    missing[missing.index("--subbehaviours") + 1] = str(tmp_path / "none.yaml")
    bad = CliRunner().invoke(app, missing)
    assert bad.exit_code == 2 and "does not exist" in bad.output
