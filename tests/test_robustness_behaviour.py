"""One behaviour under the protocol (the CAE notebooks' shared step): resumes without recomputing, shares cells."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from steerlab.data import ContrastPair
from steerlab.errors import SteerlabError
from steerlab.robustness.behaviour import p_values, run_behaviour
from steerlab.stats import holm
from steerlab.sweeps import run_serial
from steerlab.tasks import ChoiceTask

PAIRS = [ContrastPair(f"Statement {i}: is it {'true' if i % 3 else 'so'}?",
                      *(("Yes", "No") if i % 2 else ("No", "Yes")), {"behaviour": "x"}) for i in range(24)]  # fmt: skip
SIZES = (8, 6, 6)  # train, validation, test
FRACTIONS = (-0.5, 0.5)  # the validation grid: +-0.5 and 0 (the orientation reads +-0.5)
CELLS = (2 * 2 + 1) + (2 + 3)  # validation: 2 sites x 2 strengths and one 0; test: 0, chosen, 3 random


def counting(log: list, stop_after: int | None = None):
    """A sweep runner that records each computed cell as (sweep folder, key), and can die after a few cells
    like a killed run."""

    def runner(store, keys, compute, **kw):
        def step(key):
            if stop_after is not None and len(log) >= stop_after:
                raise KeyboardInterrupt("killed")
            log.append((store.cells.parent.name, key))
            return compute(key)

        return run_serial(store, keys, step, **kw)

    return runner


def run(tiny, out, runner=None):
    return run_behaviour(tiny, "x", PAIRS, [0, 1], out=out, sizes=SIZES, fractions=FRACTIONS, controls=3,
                         batch_size=4, runner=runner)  # fmt: skip


def test_a_rerun_computes_nothing_and_a_killed_run_resumes(tiny, tmp_path):
    first: list = []
    with pytest.raises(KeyboardInterrupt):
        run(tiny, tmp_path, counting(first, stop_after=4))
    assert len(first) == 4
    second: list = []
    res = run(tiny, tmp_path, counting(second))
    assert not set(first) & set(second)  # the killed run's cells were kept
    assert len(first) + len(second) == CELLS
    third: list = []
    again = run(tiny, tmp_path, counting(third))
    assert third == []  # nothing recomputed
    pd.testing.assert_frame_equal(res.result.effects, again.result.effects)
    assert again.result.summary == res.result.summary


def test_the_run_holds_the_protocol_choice_and_evaluate_shares_the_unsteered_cell(tiny, tmp_path):
    res = run(tiny, tmp_path)
    s = res.result.summary
    assert str(res.site) == s["site"] and res.fraction == s["strength"] and res.coeff == s["coeff"]
    assert res.oriented.sites == [res.site]
    assert len(res.train) == 8 and len(res.test) == 6
    assert not {p.prompt for p in res.train} & {p.prompt for p in res.test}
    assert sorted(p.positive for p in res.test) == ["No"] * 3 + ["Yes"] * 3  # label-balanced
    # the chosen cell on the test task again: everything is read back (the protocol computed it)
    log: list = []
    df = res.evaluate(tiny, res.test_task, res.test_folder, controls=3, on_cell=log.append)
    assert log == []
    eff = df[(df.direction == "vector") & (df.fraction == res.fraction) & (df.metric == "p_behaviour")]
    assert eff.value.mean() == pytest.approx(s["steered"], abs=1e-9)
    # another task at the chosen cell: its own folder, the base computed once, random directions there
    other = ChoiceTask.from_pairs(tiny, res.val[:4], batch_size=4)
    log = []
    res.evaluate(tiny, other, tmp_path / "other", controls=3, on_cell=log.append)
    assert len(log) == 1 + 1 + 3
    direct = other.evaluate(res.edits()).query("metric == 'p_behaviour'").value.to_numpy()
    got = pd.read_csv(tmp_path / "other" / "results.csv").query(
        "metric == 'p_behaviour' and direction == 'vector' and fraction != 0").value.to_numpy()
    assert got == pytest.approx(direct, abs=1e-6)


def test_bad_sizes_are_refused(tiny, tmp_path):
    with pytest.raises(SteerlabError, match="train, validation, test"):
        run_behaviour(tiny, "x", PAIRS, [0], out=tmp_path, sizes=(8, 6))


def test_p_values_are_paired_t_tests_with_holm_within_a_family():
    rng = np.random.default_rng(0)
    diffs = [rng.normal(m, 1.0, 30) for m in (0.0, 0.3, 0.6, 0.1)]
    eff = pd.DataFrame({"claim": ["a", "a", "b", "b"], "effect": [d.mean() for d in diffs],
                        "sd": [d.std(ddof=1) for d in diffs], "n": 30})  # fmt: skip
    got = p_values(eff, family=["claim"])
    want = [sps.ttest_1samp(d, 0.0).pvalue for d in diffs]
    assert got.p.to_numpy() == pytest.approx(want, rel=1e-9)
    assert got.p_holm.to_numpy() == pytest.approx(np.r_[holm(want[:2]), holm(want[2:])], rel=1e-9)
    few = p_values(pd.DataFrame({"effect": [0.5], "sd": [0.1], "n": [2]}))
    assert np.isnan(few.p.iloc[0]) and np.isnan(few.p_holm.iloc[0])  # no p-value from fewer than 3 units
