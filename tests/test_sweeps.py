"""Sweeps: prepared evaluation, prefix reuse, resumable grids (a killed sweep resumes), layer scores."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from steerlab.claims import cell_name
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.metrics import behaviour_probability
from steerlab.sites import LAST_PROMPT, Site
from steerlab.sweeps import SWEEP_COLUMNS, choose_layer, layer_scores, sweep, sweep_effect
from steerlab.tasks import ChoiceTask
from steerlab.vectors import Provenance, SteeringVector

PAIRS = [
    SimpleNamespace(prompt=q, positive=a, negative=b, meta={"id": f"q{i}"})
    for i, (q, a, b) in enumerate(
        [
            ("Pick (A) or (B)?", "(A)", "(B)"),
            ("Is it so?", "Yes", "No"),
            ("Choose: (A) x (B) y", "(B)", "(A)"),
            ("Ok?", "No", "Yes"),
        ]
    )
]


def vector(lm, seed=0, layers=(0, 1)):
    g = torch.Generator().manual_seed(seed)
    dirs = {Site(L): torch.randn(lm.d_model, generator=g) for L in layers}
    return SteeringVector(dirs, Provenance(model=lm.name, d_model=lm.d_model, n_layers=lm.n_layers, method="rand"))


def test_choice_task_matches_behaviour_probability(tiny):
    task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=3)
    edits = steer(vector(tiny), 2.0)
    got = task.evaluate(edits)
    ref = behaviour_probability(tiny, PAIRS, edits=edits)
    p = got[got.metric == "p_behaviour"].value.to_numpy()
    assert p == pytest.approx(ref.p_behaviour.to_numpy(), abs=1e-5)


def test_prefix_reuse_gives_the_same_cells(tiny):
    task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=3)
    edits = steer(vector(tiny), 3.0, positions=LAST_PROMPT)
    a = task.evaluate(edits, reuse_prefix=False)
    b = task.evaluate(edits, reuse_prefix=True)
    assert b.value.to_numpy() == pytest.approx(a.value.to_numpy(), abs=1e-5)
    assert not a.equals(task.evaluate())  # the edit does something


def test_mcq_task_accuracy_is_one_for_the_models_own_answers(tiny):
    items = [SimpleNamespace(question=f"q{i}", choices=("x", "y", "z"), answer=0, meta={}) for i in range(3)]
    probe = ChoiceTask.from_mcq(tiny, items)
    preds = [int(lg[c].argmax()) for lg, c in zip(torch.cat(probe.last_logits()), probe.candidates, strict=True)]
    own = [SimpleNamespace(question=f"q{i}", choices=("x", "y", "z"), answer=p, meta={}) for i, p in enumerate(preds)]
    df = ChoiceTask.from_mcq(tiny, own).evaluate()
    assert df[df.metric == "accuracy"].value.eq(1.0).all()


def test_sweep_is_tidy_and_baseline_is_shared(tiny, tmp_path):
    task = ChoiceTask.from_pairs(tiny, PAIRS)
    computed = []
    df = sweep(tiny, {"a": vector(tiny), ("b", 1): vector(tiny, 1)}, task, coeffs=[-2, 0, 2], out=tmp_path,
               progress=False, on_cell=computed.append)  # fmt: skip
    assert list(df.columns) == [*SWEEP_COLUMNS, "label"]
    assert len(df) == 2 * 2 * 3 * len(PAIRS) * 2  # methods x layers x coeffs x examples x metrics
    assert len(computed) == 2 * 2 * 2 + 1  # the unsteered cell is computed once
    assert (tmp_path / "results.csv").exists()
    eff = sweep_effect(df, "p_behaviour")
    assert set(eff.columns) == {"method", "site", "layer", "effect", "rank"}



def test_choose_layer_picks_the_largest_effect_and_ranks_the_automatic_choice():
    effects = {0: 0.1, 1: 0.5, 2: 0.5, 3: -0.2}  # layers 1 and 2 tie: the lower one wins
    rows = [
        {"method": "caa", "seed": seed, "layer": layer, "site": "resid_post", "coeff": c, "metric": metric,
         "value": (0.5 + c * eff / 2) if metric == "p_behaviour" else 9.0, "example_id": ex}
        for layer, eff in effects.items() for c in (-1.0, 0.0, 1.0) for seed in (0, 1) for ex in range(2)
        for metric in ("p_behaviour", "logit_diff")
    ]  # fmt: skip
    df = pd.DataFrame(rows)
    scores = pd.DataFrame({"layer": [3, 0], "site": ["resid_post"] * 2, "score": [2.0, 1.0]})
    choice = choose_layer(df, "p_behaviour", scores)
    assert choice.site == Site(1) and choice.effect == pytest.approx(0.5) and choice.baseline == pytest.approx(0.5)
    assert choice.effects.layer.tolist() == [1, 2, 0, 3] and choice.effects["rank"].tolist() == [1, 1, 3, 4]
    assert (choice.auto, choice.auto_score, choice.auto_rank) == (Site(3), 2.0, 4)
    assert choice.auto_effect == pytest.approx(-0.2)
    plain = choose_layer(df[df.coeff != 0], "p_behaviour")
    assert plain.auto is None and plain.baseline is None and plain.site == Site(1)
    with pytest.raises(SteerlabError, match="one method at one site kind"):
        choose_layer(pd.concat([df, df.assign(method="pca_diff")]), "p_behaviour")
    with pytest.raises(SteerlabError, match="did not include"):
        choose_layer(df, "p_behaviour", scores.assign(layer=[7, 0]))

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    from steerlab.testing import tiny_backend
    from steerlab.sweeps import sweep
    from steerlab.tasks import ChoiceTask
    sys.path.insert(0, {tests!r})
    from test_sweeps import PAIRS, vector
    lm = tiny_backend("nnsight", {folder!r})
    task = ChoiceTask.from_pairs(lm, PAIRS)
    sweep(lm, {{"a": vector(lm)}}, task, coeffs=[-3, -1, 0, 1, 3], out={out!r}, progress=False,
          on_cell=lambda key: time.sleep(0.4))
    """
)


def test_a_killed_sweep_resumes_without_recomputing_or_losing_rows(tiny_folder, tmp_path):
    from steerlab.testing import tiny_backend

    out = tmp_path / "run"
    code = SCRIPT.format(tests=os.path.dirname(__file__), folder=str(tiny_folder), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "cells").glob("*.csv"))) < 3:
        assert proc.poll() is None, "the sweep finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = len(list((out / "cells").glob("*.csv")))
    assert 3 <= saved < 9  # 2 layers x 4 nonzero coeffs + 1 baseline
    assert not (out / "results.csv").exists()

    lm = tiny_backend("nnsight", tiny_folder)
    task = ChoiceTask.from_pairs(lm, PAIRS)
    computed = []
    resumed = sweep(lm, {"a": vector(lm)}, task, coeffs=[-3, -1, 0, 1, 3], out=out, progress=False,
                    on_cell=computed.append)  # fmt: skip
    assert len(computed) == 9 - saved  # nothing recomputed
    fresh = sweep(lm, {"a": vector(lm)}, task, coeffs=[-3, -1, 0, 1, 3], progress=False)
    key = ["method", "seed", "layer", "site", "coeff", "metric", "example_id"]
    a = resumed.sort_values(key, ignore_index=True)
    b = fresh.sort_values(key, ignore_index=True)
    assert len(a) == len(b) == 2 * 5 * len(PAIRS) * 2  # no row lost
    pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"), check_dtype=False)
    assert a.value.to_numpy() == pytest.approx(b.value.to_numpy(), abs=1e-6)


def test_resuming_with_another_task_is_refused(tiny, tmp_path):
    sweep(tiny, {"a": vector(tiny)}, ChoiceTask.from_pairs(tiny, PAIRS), coeffs=[1], out=tmp_path, progress=False)
    with pytest.raises(SteerlabError, match="different task"):
        sweep(
            tiny, {"a": vector(tiny)}, ChoiceTask.from_pairs(tiny, PAIRS[:2]), coeffs=[1], out=tmp_path, progress=False
        )


def test_empty_task_is_refused(tiny):
    with pytest.raises(SteerlabError, match="empty"):
        ChoiceTask.from_pairs(tiny, [])


def test_layer_scores_rank_a_separable_layer_first():
    torch.manual_seed(0)
    n, d = 40, 16
    signal_dir = torch.zeros(d)
    signal_dir[0] = 1.0
    base = torch.randn(n, d)
    pos = {Site(0): base + torch.randn(n, d) * 0.1 + 3 * signal_dir, Site(1): torch.randn(n, d)}
    neg = {Site(0): base + torch.randn(n, d) * 0.1, Site(1): torch.randn(n, d)}
    df = layer_scores(pos, neg)
    assert df.iloc[0].layer == 0 and df.iloc[0]["rank"] == 1


# ------------------------------------------------------------------- fractions of the norm, random controls


def test_fractions_are_the_typical_norm_times_the_fraction(tiny):
    from steerlab.scale import typical_norm

    task = ChoiceTask.from_pairs(tiny, PAIRS)
    vec = vector(tiny)
    df = sweep(tiny, vec, task, fractions=[-0.5, 0, 0.5], progress=False)
    scale = typical_norm(tiny, task.prompts, [Site(0), Site(1)])
    for site in (Site(0), Site(1)):
        cell = df[(df.layer == site.layer) & (df.fraction == 0.5)]
        coeff = 0.5 * scale[site] / float(vec[site].norm())
        assert cell.coeff.unique() == pytest.approx([coeff], rel=1e-6)  # |coeff * v| = 0.5 * T
        expected = task.evaluate(steer({site: vec[site]}, coeff))
        assert cell.value.to_numpy() == pytest.approx(expected.value.to_numpy(), abs=1e-5)  # float32 logits
    assert df[df.fraction == 0].coeff.eq(0).all() and set(df.direction) == {"vector"}
    with pytest.raises(SteerlabError, match="exactly one of coeffs"):
        sweep(tiny, vec, task, coeffs=[1], fractions=[0.5], progress=False)
    with pytest.raises(SteerlabError, match="finite"):
        sweep(tiny, vec, task, coeffs=[float("nan")], progress=False)


def test_random_controls_are_norm_matched_seeded_and_at_the_same_strength(tiny, tmp_path):
    from steerlab.controls import random_like

    task = ChoiceTask.from_pairs(tiny, PAIRS)
    vec = vector(tiny)
    computed = []
    kwargs = dict(fractions=[-0.5, 0, 0.25, 0.5], controls=3, controls_at=[0.5], control_seed=7, progress=False)
    df = sweep(tiny, vec, task, out=tmp_path, on_cell=computed.append, **kwargs)
    assert len(computed) == 2 * 3 + 1 + 2 * 3  # vector cells, the unsteered cell once, 3 random x 2 sites at 0.5
    randoms = random_like(vec, 3, seed=7)
    for i, rnd in enumerate(randoms):
        for site in vec.sites:
            assert float(rnd[site].norm()) == pytest.approx(float(vec[site].norm()), rel=1e-5)
            cell = df[(df.direction == f"random:{i}") & (df.layer == site.layer)]
            assert set(cell.fraction) == {0.5}
            vcell = df[(df.direction == "vector") & (df.layer == site.layer) & (df.fraction == 0.5)]
            assert cell.coeff.iloc[0] == pytest.approx(vcell.coeff.iloc[0], rel=1e-6)  # same norm, same strength
            expected = task.evaluate(steer({site: rnd[site]}, float(cell.coeff.iloc[0])))
            assert cell.value.to_numpy() == pytest.approx(expected.value.to_numpy(), abs=1e-5)
    assert all(torch.equal(a[s], b[s]) for a, b in zip(randoms, random_like(vec, 3, seed=7), strict=True)
               for s in vec.sites)  # fmt: skip
    assert not torch.equal(randoms[0][Site(0)], random_like(vec, 3, seed=8)[0][Site(0)])

    again = []  # a resumed sweep recomputes nothing
    resumed = sweep(tiny, vec, task, out=tmp_path, on_cell=again.append, **kwargs)
    assert again == [] and resumed.value.to_numpy() == pytest.approx(df.value.to_numpy(), abs=1e-12)
    with pytest.raises(SteerlabError, match="different scale"):
        sweep(tiny, vec, task, out=tmp_path, scale={Site(0): 1.0, Site(1): 1.0}, **kwargs)
    with pytest.raises(SteerlabError, match="not among the strengths"):
        sweep(tiny, vec, task, fractions=[0, 0.5], controls=2, controls_at=[0.25], progress=False)


def test_a_runner_and_store_can_be_plugged_in(tiny, tmp_path):
    """The seam for several workers: sweep hands the runner every key, a store and a compute function."""
    from steerlab.claims import CellStore
    from steerlab.sweeps import run_serial

    seen = {}

    def runner(store, keys, compute, **kwargs):
        seen["keys"], seen["store"] = list(keys), store
        return run_serial(store, keys, compute, **kwargs)

    task = ChoiceTask.from_pairs(tiny, PAIRS)
    df = sweep(tiny, vector(tiny), task, coeffs=[-1, 0, 1], out=tmp_path, runner=runner, progress=False)
    assert isinstance(seen["store"], CellStore) and seen["keys"][-1] == "base"  # the unsteered cell last
    assert len(seen["keys"]) == 5 and set(seen["store"].done(seen["keys"])) == set(seen["keys"])
    assert len(df) == 2 * 3 * len(PAIRS) * 2


def test_a_custom_edit_builds_each_cell(tiny):
    from steerlab.interventions import clamp

    task = ChoiceTask.from_pairs(tiny, PAIRS)
    vec = vector(tiny, layers=(1,))
    seen = []

    def clamped(site, direction, coeff, positions):
        seen.append(coeff)
        return [clamp(site, direction, coeff, positions)]

    df = sweep(tiny, vec, task, coeffs=[0, 2.0], edit=clamped, progress=False)
    assert seen == [2.0]  # strength 0 is the unsteered model, never passed to the edit
    expected = task.evaluate([clamp(Site(1), vec[Site(1)], 2.0)])
    assert df[df.coeff == 2.0].value.to_numpy() == pytest.approx(expected.value.to_numpy(), abs=1e-5)


# ------------------------------------------------------------------------------- many workers on one folder


def _done_by(calls) -> dict[str, list[int]]:
    """``{cell file name: [pid of each worker that computed it]}`` from the workers' ``done.*`` files."""
    out: dict[str, list[int]] = {}
    for path in calls.glob("done.*"):
        _, name, pid = path.name.split(".")
        out.setdefault(name, []).append(int(pid))
    return out


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal frames: every column but ``value`` exactly, ``value`` to float32 rounding (threads may differ)."""
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="value"), b.drop(columns="value"))
    assert a.value.to_numpy() == pytest.approx(b.value.to_numpy(), abs=1e-6)


def _single_process(tiny_folder):
    from _claims_workers import SWEEP, sweep_setup

    lm, task, vec = sweep_setup(str(tiny_folder))
    return sweep(lm, vec, task, progress=False, **SWEEP)


N_CELLS = 2 * 2 * 3 + 1  # 2 layers x 2 nonzero strengths x (the vector + 2 random directions), and the zero cell


def test_two_processes_share_a_sweep_folder(tiny_folder, tmp_path):
    from _claims_workers import sweep_worker

    from steerlab.claims import run_workers

    calls, out = tmp_path / "calls", tmp_path / "run"
    calls.mkdir()
    run_workers(2, sweep_worker, str(tiny_folder), str(out), str(calls), delay=0.2, barrier=2)
    done = _done_by(calls)
    assert len(done) == N_CELLS and all(len(pids) == 1 for pids in done.values())  # every cell exactly once
    assert len({pid for pids in done.values() for pid in pids}) == 2  # both workers computed cells
    assert not list((out / "claims").iterdir())
    _same_rows(pd.read_csv(out / "results.csv"), _single_process(tiny_folder))


def test_a_worker_killed_mid_cell_is_taken_over(tiny_folder, tmp_path):
    import multiprocessing

    from _claims_workers import SWEEP, hanging_add, sweep_setup, sweep_worker

    from steerlab.claims import CellStore

    calls, out, hung = tmp_path / "calls", tmp_path / "run", tmp_path / "hung"
    calls.mkdir()
    proc = multiprocessing.get_context("spawn").Process(
        target=sweep_worker, args=(str(tiny_folder), str(out), str(calls)),
        kwargs=dict(stale_after=1.0, hang=f"resid_post.1|2@{hung}"),
    )  # fmt: skip
    proc.start()
    deadline = time.time() + 180
    while not hung.exists():
        assert time.time() < deadline and proc.is_alive(), "the worker never reached the cell it hangs on"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    held = CellStore(out).held()
    assert [c["pid"] for c in held] == [proc.pid]  # the dead worker's claim is left behind
    before = _done_by(calls)

    lm, task, vec = sweep_setup(str(tiny_folder))
    computed: list[str] = []
    start = time.time()
    df = sweep(lm, vec, task, out=out, stale_after=1.0, edit=hanging_add, progress=False, on_cell=computed.append,
               **SWEEP)  # fmt: skip
    assert time.time() - start >= 0.5  # it waited for the claim to go stale
    assert held[0]["key"] in computed and not set(before) & {cell_name(k) for k in computed}  # nothing twice
    assert len(before) + len(computed) == N_CELLS
    assert not list((out / "claims").iterdir())
    _same_rows(df, _single_process(tiny_folder))


def test_shards_split_the_grid_and_the_last_one_gathers(tiny_folder, tmp_path):
    from _claims_workers import SWEEP, sweep_setup

    from steerlab.claims import GridIncomplete

    lm, task, vec = sweep_setup(str(tiny_folder))
    computed: dict[int, list[str]] = {0: [], 1: []}
    with pytest.raises(GridIncomplete, match=r"shard 0/2 .* cells are not done yet") as info:
        sweep(lm, vec, task, out=tmp_path, shard=(0, 2), progress=False, on_cell=computed[0].append, **SWEEP)
    assert 0 < info.value.done < info.value.total == N_CELLS and not (tmp_path / "results.csv").exists()
    df = sweep(lm, vec, task, out=tmp_path, shard=(1, 2), progress=False, on_cell=computed[1].append, **SWEEP)
    assert len(computed[0]) == info.value.done and len(computed[0]) + len(computed[1]) == N_CELLS
    assert not set(computed[0]) & set(computed[1])
    _same_rows(df, _single_process(tiny_folder))
    assert sweep(lm, vec, task, out=tmp_path, shard=(0, 2), progress=False, **SWEEP).equals(df)  # complete now
    with pytest.raises(SteerlabError, match="give out="):
        sweep(lm, vec, task, shard=(0, 2), progress=False, **SWEEP)


def test_fraction_sweeps_measure_the_norms_once_per_folder(tiny, tmp_path, monkeypatch):
    from steerlab.sweeps import measure_scale

    task = ChoiceTask.from_pairs(tiny, PAIRS)
    first = measure_scale(tiny, task, [Site(1), Site(0)], tmp_path)
    cells = sorted((tmp_path / "cells").glob("*.csv"))
    assert len(cells) == 1 and first == measure_scale(tiny, task, [Site(0), Site(1)])  # the same as measured now
    monkeypatch.setattr("steerlab.scale.typical_norm", lambda *args, **kwargs: pytest.fail("measured again"))
    assert measure_scale(tiny, task, [Site(0), Site(1)], tmp_path) == first  # read back from the folder
