"""PAS (Cui & Chen 2025): contrast sets, vectors, the cached pipeline against independent full passes."""

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.data import MCQItem, split
from steerlab.effects import label_effects, letter_distribution
from steerlab.errors import SteerlabError
from steerlab.extraction import pas_vector
from steerlab.interventions import steer
from steerlab.methods.pas import (
    ContrastSetError,
    PASActivations,
    contrast_sets,
    ipas_pairs,
    predictions,
    read_site,
)
from steerlab.metrics import mcq_accuracy
from steerlab.pipelines.pas import PASConfig, prepare, run_pas, run_seed, summarize
from steerlab.prompts import mcq_setup
from steerlab.sites import LAST_PROMPT, Batch, Site

WORDS = ["red", "blue", "cat", "dog", "sun", "moon", "tree", "rock", "fish", "bird", "rain", "snow"]


def make_items(n=30, k=3, seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        words = rng.choice(WORDS, size=k, replace=False).tolist()
        q = "Which is it? " + " ".join(rng.choice(WORDS, size=1 + i % 4).tolist())
        items.append(MCQItem(q, tuple(words), int(rng.integers(k)), {"id": i}))
    return items


def toy_acts(correct):
    n = len(correct)
    g = torch.Generator().manual_seed(0)
    s = Site(0)
    mk = lambda: {s: torch.randn(n, 4, generator=g)}  # noqa: E731
    return PASActivations(torch.tensor(correct), mk(), mk(), mk())


# ------------------------------------------------------------------------------ contrast sets (exact)


def test_contrast_set_membership():
    acts = toy_acts([True, False, True, False, False])
    s = Site(0)
    right, wrong = [0, 2], [1, 3, 4]
    pos, neg = contrast_sets("pasf", acts, s)
    assert torch.equal(pos, acts.full[s][right]) and torch.equal(neg, acts.full[s][wrong])
    pos, neg = contrast_sets("ipasa", acts, s)
    assert torch.equal(pos, acts.q_correct[s][right]) and torch.equal(neg, acts.q_chosen[s][wrong])
    pos, neg = contrast_sets("ipaswo", acts, s)
    assert torch.equal(pos, acts.q_correct[s][wrong]) and torch.equal(neg, acts.q_chosen[s][wrong])


def test_vector_is_mean_difference():
    acts = toy_acts([True, False, True, False, False])
    s = Site(0)
    vec = pas_vector("pasf", acts, [s])
    expected = acts.full[s][[0, 2]].mean(0) - acts.full[s][[1, 3, 4]].mean(0)
    torch.testing.assert_close(vec[s], expected)
    assert vec.provenance.method == "pas_pasf" and vec.provenance.extra["n_pos"] == 2


def test_one_class_predictions_raise():
    all_right, all_wrong = toy_acts([True] * 4), toy_acts([False] * 4)
    for variant in ("pasf", "ipasa", "ipaswo"):
        with pytest.raises(ContrastSetError, match="answered 4 of 4"):
            contrast_sets(variant, all_right, Site(0))
    for variant in ("pasf", "ipasa"):
        with pytest.raises(SteerlabError, match="answered 0 of 4"):
            contrast_sets(variant, all_wrong, Site(0))
    pos, neg = contrast_sets("ipaswo", all_wrong, Site(0))  # wrong answers alone suffice
    assert len(pos) == len(neg) == 4


def test_empty_and_bad_inputs_raise():
    with pytest.raises(SteerlabError, match="no training items"):
        contrast_sets("pasf", toy_acts([]), Site(0))
    with pytest.raises(SteerlabError, match="unknown PAS variant"):
        contrast_sets("pas", toy_acts([True, False]), Site(0))
    with pytest.raises(SteerlabError, match="no items"):
        predictions(torch.zeros(0, 3), [])
    with pytest.raises(SteerlabError, match="unknown read site"):
        read_site(Site(3), "previous")
    with pytest.raises(SteerlabError, match="no strength to choose"):
        PASConfig(fractions=(0.0, -0.5), coeffs=())
    with pytest.raises(SteerlabError, match="finite"):
        PASConfig(coeffs=(float("nan"),))
    with pytest.raises(SteerlabError, match="sides"):
        PASConfig(sides="negative")
    assert PASConfig(fractions=(0.0, -0.5), coeffs=(), sides="both").fractions == (-0.5,)  # 0 is implicit


def test_read_site_switch():
    assert read_site(Site(5, "mlp_out"), "same") == Site(5, "mlp_out")
    assert read_site(Site(5, "mlp_out"), "resid_prev") == Site(5, "resid_pre")


def test_predictions_and_ipas_pairs():
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, -torch.inf]])
    pred, correct = predictions(logits, [1, 1])
    assert pred.tolist() == [1, 0] and correct.tolist() == [True, False]
    items = [MCQItem("q1", ("a", "b", "c"), 1), MCQItem("q2", ("x", "y"), 1)]
    pairs = ipas_pairs(items, pred.tolist())
    assert (pairs[0].positive, pairs[0].negative) == ("b", "c")  # answered right: the next option
    assert (pairs[1].prompt, pairs[1].positive, pairs[1].negative) == ("q2", "y", "x")


# ------------------------------------------------------------------ the cached pipeline on a tiny model


@pytest.fixture
def prepared(tiny):
    items = make_items()
    sites = PASConfig(layers=(0, 1), read="resid_prev").sites + [Site(0), Site(1)]
    return items, prepare(tiny, items, sites, block_size=5, progress=False)


def test_prepare_matches_independent_passes(tiny, prepared):
    items, prep = prepared
    ref = mcq_accuracy(tiny, prep.items)  # full forward passes, no cache
    assert prep.pred.tolist() == ref.pred.tolist()
    assert prep.acts.correct.tolist() == ref.correct.tolist()
    assert 0 < int(prep.acts.correct.sum()) < len(items), "the tiny model should get some right and some wrong"
    prompts = [mcq_setup(tiny, it)[0] for it in prep.items]
    full = torch.cat([tiny.record(prompts[i : i + 5], [Site(1)])[Site(1)][:, -1] for i in range(0, len(prompts), 5)])
    torch.testing.assert_close(prep.acts.full[Site(1)], full.float(), atol=1e-4, rtol=1e-4)
    # PASf from the pipeline's activations equals the mean difference of the independently read prompts
    c = torch.as_tensor(ref.correct.to_numpy().copy())
    expected = full[c].mean(0) - full[~c].mean(0)
    got = pas_vector("pasf", prep.acts, [Site(1)])[Site(1)]
    torch.testing.assert_close(got, expected.float(), atol=1e-4, rtol=1e-4)
    # iPAS: question (user turn) + option text (assistant turn), read at the option's last token
    i = int(torch.nonzero(~c)[0])
    it = prep.items[i]
    chosen = it.choices[int(prep.pred[i])]
    for text, store in ((it.choices[it.answer], prep.acts.q_correct), (chosen, prep.acts.q_chosen)):
        h = tiny.record([tiny.chat(it.question) + text], [Site(1)])[Site(1)][0, -1]
        torch.testing.assert_close(store[Site(1)][i], h.float(), atol=1e-4, rtol=1e-4)
    # CAA baseline: the full prompt followed by the correct letter, read at the letter
    letter = mcq_setup(tiny, it)[1][it.answer]
    ids = torch.cat([tiny.tokenize([prompts[i]]).input_ids, torch.tensor([[letter]])], dim=1)
    h = tiny.record(Batch(ids, torch.ones_like(ids)), [Site(1)])[Site(1)][0, -1]
    torch.testing.assert_close(prep.caa_pos[Site(1)][i], h.float(), atol=1e-4, rtol=1e-4)


def test_cached_steered_accuracy_equals_full_forward(tiny, prepared):
    _, prep = prepared
    v = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(1)) * 3
    edits = steer({Site(0): v}, 1.0, positions=LAST_PROMPT)
    blocks = [0, 2, 4]
    got = prep.correct(blocks, edits)
    items = [prep.items[i] for i in prep.item_ids(blocks)]
    ref = mcq_accuracy(tiny, items, edits=edits).correct.to_numpy().astype(float)
    np.testing.assert_array_equal(got, ref)
    assert not np.array_equal(prep.correct(blocks), got), "a strong vector should change some answers"


def test_run_seed_grid_and_splits(prepared):
    _, prep = prepared
    # (resid_pre.0 at the last token is the same token embedding for every prompt: nothing to contrast)
    cfg = PASConfig(layers=(0, 1), fractions=(-0.5, 0.5), coeffs=(2.0,), controls=3)
    results, grid, chosen, tests = run_seed(prep, 3, cfg)
    prev = run_seed(prep, 3, PASConfig(layers=(1,), fractions=(0.5,), coeffs=(), read="resid_prev", controls=0))
    assert set(prev.results.layer) == {1} and prev.results.delta.notna().all()
    assert set(results.method) == {"pasf", "ipasa", "ipaswo", "caa"}
    assert (results.n_train + results.n_val + results.n_test == len(prep.items)).all()
    # every cell of both scales, 0 included once per layer and unit
    g = grid[grid.method == "pasf"]
    assert sorted(zip(g.unit, g.layer, g.strength, strict=True)) == sorted(
        (u, lay, s) for lay in (0, 1) for u, ss in (("fraction", (-0.5, 0.0, 0.5)), ("coeff", (0.0, 2.0))) for s in ss
    )
    for method, g in grid[grid.strength > 0].groupby("method"):
        row = results[(results.method == method) & (results.selection == "grid")].iloc[0]
        assert row.val_accuracy == g.value.max()  # the grid's choice is the best positive validation cell
        assert row.strength > 0 and np.isclose(row.delta, row.steered - row.base)
        assert row.lo <= row.delta <= row.hi and row.null_lo <= row.null_hi
    # the chosen test cell ran with 3 random directions beside the vector; rows carry the correct letter
    t = tests[(tests.method == "pasf") & (tests.selection == "grid")]
    assert set(t.direction) == {"vector", "random:0", "random:1", "random:2"}
    assert set(t.label) <= {"A", "B", "C"} and t.example_id.nunique() == results.n_test.iloc[0]
    assert ("pasf", "grid") in chosen
    table = summarize(results)
    assert {"delta", "ci_low", "ci_high", "p"} <= set(table.columns)
    labels = label_effects(t[t.direction == "vector"], "accuracy")
    assert set(labels.label) <= {"A", "B", "C"} and labels.n.sum() == results.n_test.iloc[0]
    shares = letter_distribution(t, n_options=3).groupby(["direction", "fraction"]).share.sum()
    assert len(shares) == 5 and np.isclose(shares, 1.0).all()  # the vector at 0 and 0.5, 3 random directions


def test_sweep_grid_equals_the_old_per_cell_path(tiny, prepared):
    """Each validation cell of the sweep equals the old loop's `CachedMCQ.correct` (the cached last-token path)
    and independent full forward passes (`mcq_accuracy`), item by item."""
    _, prep = prepared
    cfg = PASConfig(methods=("pasf",), layers=(1,), fractions=(0.5,), coeffs=(-3.0, 3.0), controls=0,
                    auto_layer=False)  # fmt: skip
    scale = {Site(1): 7.0}
    results, grid, chosen, tests = run_seed(prep, 2, cfg, scale=scale)
    _, va, te = split(list(range(len(prep.blocks))), (0.6, 0.2, 0.2), 2)
    vec = pas_vector("pasf", prep.acts.subset(prep.item_ids(split(list(range(len(prep.blocks))), (0.6, 0.2, 0.2),
                                                                         2)[0])), [Site(1)])[Site(1)]  # fmt: skip
    items = [prep.items[i] for i in prep.item_ids(va)]
    for row in grid.itertuples():
        coeff = row.strength * 7.0 / float(vec.norm()) if row.unit == "fraction" else row.strength
        assert np.isclose(row.coeff, coeff)
        edits = steer({Site(1): vec}, coeff, positions=LAST_PROMPT)
        old = prep.correct(va, edits)
        ref = mcq_accuracy(tiny, items, edits=edits).correct.to_numpy().astype(float)
        np.testing.assert_array_equal(old, ref)
        assert row.value == old.mean()
    r = results.iloc[0]
    edits = steer({Site(1): vec}, r.coeff, positions=LAST_PROMPT)
    assert np.isclose(r.steered, prep.correct(te, edits).mean()) and np.isclose(r.base, prep.correct(te).mean())


def test_killed_run_resumes_without_recomputing(prepared, tmp_path):
    """A PAS run killed mid-grid resumes from its sweep folders: only the cells it had not stored run again."""
    _, prep = prepared
    cfg = PASConfig(methods=("pasf", "caa"), layers=(0, 1), fractions=(-0.25, 0.5), coeffs=(1.0,), controls=2)
    full = []
    first = run_pas(prep, cfg, [0, 1], out=tmp_path / "ref", progress=False, on_cell=full.append)
    total = len(full)

    class Killed(Exception):
        pass

    done = []

    def kill_after(key):
        done.append(key)
        if len(done) == total // 2:
            raise Killed

    with pytest.raises(Killed):
        run_pas(prep, cfg, [0, 1], out=tmp_path / "run", progress=False, on_cell=kill_after)
    again = []
    resumed = run_pas(prep, cfg, [0, 1], out=tmp_path / "run", progress=False, on_cell=again.append)
    # every stored cell is read back; only the cells of the group being computed at the kill (held in memory,
    # not yet stored) run twice
    assert 0 < len(again) < total
    assert total <= len(done) + len(again) < total + 8
    keep = [c for c in first.results.columns if c != "seconds"]
    pd.testing.assert_frame_equal(resumed.results[keep], first.results[keep])
    pd.testing.assert_frame_equal(resumed.grid, first.grid)
    nothing = []
    run_pas(prep, cfg, [0, 1], out=tmp_path / "run", progress=False, on_cell=nothing.append)
    assert nothing == []


def test_prepare_rejects_empty_and_tiny_data(tiny):
    with pytest.raises(SteerlabError, match="no items"):
        prepare(tiny, [], [Site(0)])
    with pytest.raises(SteerlabError, match="fewer than 3 blocks"):
        prepare(tiny, make_items(8), [Site(0)], block_size=5)


def test_flip_binary_equals_preparing_flipped_labels(tiny):
    from steerlab.pipelines.pas import flip_binary

    items = make_items(20, k=2, seed=4)
    flipped_items = [MCQItem(it.question, it.choices, 1 - it.answer, it.meta) for it in items]
    sites = [Site(1)]
    flipped = flip_binary(prepare(tiny, items, sites, block_size=5, progress=False))
    direct = prepare(tiny, flipped_items, sites, block_size=5, progress=False)
    assert [it.answer for it in flipped.items] == [it.answer for it in direct.items]
    assert torch.equal(flipped.acts.correct, direct.acts.correct)
    for name in ("full", "q_correct", "q_chosen"):
        torch.testing.assert_close(getattr(flipped.acts, name)[Site(1)], getattr(direct.acts, name)[Site(1)])
    torch.testing.assert_close(flipped.caa_pos[Site(1)], direct.caa_pos[Site(1)])
    np.testing.assert_array_equal(flipped.correct([0, 1]), direct.correct([0, 1]))
    with pytest.raises(SteerlabError, match="two-option"):
        flip_binary(prepare(tiny, make_items(15), sites, block_size=5, progress=False))


def test_pas_plots():
    import pandas as pd

    from steerlab.plotting import plot_pas_sample_size, plot_pas_sites

    t = pd.DataFrame({"kind": ["resid_post", "mlp_in"], "read": "same", "method": "pasf", "delta": [0.1, -0.1],
                      "ci_low": [0.0, -0.2], "ci_high": [0.2, 0.0]})  # fmt: skip
    assert plot_pas_sites(t).get_ylabel() == "Δ test accuracy (95% CI)"
    r = pd.DataFrame(
        {"train_size": [12, 24, 12, 24], "delta": [0.0, 0.1, 0.05, 0.1], "method": "pasf", "seed": [0, 0, 1, 1]}
    )
    assert plot_pas_sample_size(r).get_xlabel() == "training items"


def test_long_task_caps_name_real_tasks():
    from steerlab.pipelines.pas_tasks import LONG_TASKS, TASKS, char_cap

    assert set(LONG_TASKS) <= set(TASKS)
    assert char_cap("lsat_rc") == LONG_TASKS["lsat_rc"] and char_cap("arc") == 600
