"""SAAS (steerlab.methods.saas, steerlab.pipelines.saas): exact oracles on constructed data."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.data import ContrastPair
from steerlab.errors import SteerlabError
from steerlab.methods import saas as S
from steerlab.pipelines import saas as P


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


def test_split_indices_ratios_disjoint_and_seeded():
    splits = P.split_indices(100, 5, (7, 2, 1), seed=0)
    assert len(splits) == 5
    for train, val, test in splits:
        assert (len(train), len(val), len(test)) == (70, 20, 10)
        assert len(set(train) | set(val) | set(test)) == 100
    assert not np.array_equal(splits[0][2], splits[1][2])
    assert all(np.array_equal(a, b) for a, b in zip(P.split_indices(100, 1)[0], splits[0], strict=True))


def _prepared(n=30, d=6):
    pos, neg = _clusters(n, d)
    site = P.Site(3)
    acts = P.PairActivations({site: pos.float()}, {site: neg.float()}, "completion_last")
    pairs = [ContrastPair(f"q{i}", "Yes", "No") for i in range(n)]
    ld = np.linspace(-1, 1, n)
    return P.Prepared("toy", pairs, acts, ld, 1 / (1 + np.exp(-ld))), pos, neg


def test_split_directions_oracles():
    prep, pos, neg = _prepared()
    cfg = P.SaasConfig(layers=(3,), taus=(1.0,), baselines=("caa", "logit_diff", "conf"), fraction=0.5)
    train = np.arange(30)
    variants = [
        P.SaasVariant("uniform", None),
        P.SaasVariant("flat", np.ones((30, 2)), np.array([1.0, 2.0]), eligibility=False),
    ]
    dirs, reports, weights = P.split_directions(None, prep, train, cfg, variants)
    norm = float(torch.cat([pos, neg]).norm(dim=-1).mean())
    local = (pos - neg).double()
    elig = reports[("uniform", 3)].eligible.to_numpy().copy()

    def scaled(v):
        return (v / v.norm() * 0.5 * norm).float()

    torch.testing.assert_close(dirs[P.Cell("caa", 3)], scaled(local.mean(0)))
    torch.testing.assert_close(dirs[P.Cell("uniform", 3, math.inf)], scaled(local[elig].mean(0)))
    torch.testing.assert_close(dirs[P.Cell("flat", 3, 1.0)], scaled(local.mean(0)))  # equal scores, no eligibility
    assert weights[P.Cell("uniform", 3, math.inf)].sum() == pytest.approx(1.0)
    assert set(dirs) == {P.Cell("caa", 3), P.Cell("logit_diff", 3, 1.0), P.Cell("conf", 3),
                         P.Cell("uniform", 3, math.inf), P.Cell("flat", 3, 1.0)}  # fmt: skip
    assert all(float(v.norm()) == pytest.approx(0.5 * norm, rel=1e-5) for v in dirs.values())


def test_cell_reads_nan_tau_and_numpy_layer_as_row_values_do():
    row = pd.DataFrame({"method": ["caa", "saas"], "layer": [12, 16], "tau": [math.nan, 0.5]})
    caa, saas = (P.Cell(r.method, r.layer, r.tau) for r in row.itertuples())
    assert caa == P.Cell("caa", 12) and caa.tau is None and math.isnan(caa.row_tau)
    assert saas == P.Cell("saas", 16, 0.5) and type(saas.layer) is int and saas.site == P.Site(16)
    assert {caa: 1}[P.Cell("caa", np.int64(12), float("nan"))] == 1  # hashes equal, so dict lookups work
    assert P.Cell("uniform", 3, math.inf).row_tau == math.inf


def test_test_table_and_effects_from_rows():
    rows = pd.DataFrame(
        [
            {"behaviour": "b", "split": 0, "method": "base", "layer": -1, "tau": math.nan, "coeff": 0.0,
             "stage": "test", "example_id": i, "p_behaviour": 0.5, "chosen": True}
            for i in range(2)
        ]
        + [
            {"behaviour": "b", "split": 0, "method": "saas", "layer": 3, "tau": 1.0, "coeff": c, "stage": "test",
             "example_id": i, "p_behaviour": 0.5 + 0.1 * c * (i + 1), "chosen": True}
            for i in range(2) for c in (-1.0, 1.0)
        ]
    )  # fmt: skip
    t = P.test_table(rows).set_index("method")
    assert t.loc["base", "p_plus"] == 0.5
    assert t.loc["saas", "effect"] == pytest.approx(0.3)
    assert P.effects(rows).effect.tolist() == pytest.approx([0.3])


def test_run_split_on_tiny_model(tiny_folder):
    from steerlab.testing import tiny_backend

    lm = tiny_backend("nnsight", tiny_folder)
    pairs = [ContrastPair(f"Is {w} nice?", "Yes", "No") if i % 2 else ContrastPair(f"Is {w} bad?", "No", "Yes")
             for i, w in enumerate("abcdefghijklmnopqrst")]  # fmt: skip
    cfg = P.SaasConfig(layers=(0, 1), taus=(1.0,), n_splits=1, baselines=("caa", "conf"), batch_size=8)
    prep = P.prepare(lm, "toy", pairs, cfg.layers, batch_size=8)
    assert prep.acts.pos[P.Site(1)].shape == (20, lm.d_model)
    assert np.all((prep.p_behaviour > 0) & (prep.p_behaviour < 1))
    variants = [P.SaasVariant("saas", np.random.default_rng(0).uniform(0, 10, (20, 3)), np.array([1.0, 5.0, 9.0]))]
    idx = P.split_indices(20, 1, (7, 2, 1))[0]
    rows, elig, dirs, weights = P.run_split(lm, prep, 0, idx, cfg, variants)
    for c in P.chosen_cells(rows).itertuples():  # every chosen row names a direction
        assert dirs[P.Cell(c.method, c.layer, c.tau)].shape == (lm.d_model,)
    val = rows[rows.stage == "val"]
    assert set(val.method) == {"base", "caa", "conf", "saas"}
    assert len(val[val.method == "caa"]) == 2 * 2 * len(idx[1])  # 2 layers x 2 strengths x items
    table = P.test_table(rows)
    assert set(table.method) == {"base", "caa", "conf", "saas"}
    assert set(elig.layer) == {0, 1}


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
    assert vec.provenance.method == "saas" and vec.sites == [P.Site(1)]
    missing = list(args)
    missing[missing.index("--subbehaviours") + 1] = str(tmp_path / "none.yaml")
    bad = CliRunner().invoke(app, missing)
    assert bad.exit_code == 2 and "does not exist" in bad.output
