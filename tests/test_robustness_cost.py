"""Perplexity cost curve: strength 0 is the plain perplexity, cells equal direct calls, matched-effect reading."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.interventions import steer
from steerlab.metrics import perplexity_on
from steerlab.robustness.cost import at_matched_effect, perplexity_cost
from steerlab.sites import Site
from steerlab.tasks import ChoiceTask

TEXTS = ["The cat sat on the mat.", "A quick brown fox jumps over the lazy dog!", "Hello there, world."]
PAIRS = [SimpleNamespace(prompt=q, positive=a, negative=b, meta={"id": i})
         for i, (q, a, b) in enumerate([("Is it?", "Yes", "No"), ("Pick (A) or (B)", "(B)", "(A)")])]  # fmt: skip


def test_cost_cells_equal_direct_perplexity(tiny):
    g = torch.Generator().manual_seed(0)
    vec = {Site(0): torch.randn(tiny.d_model, generator=g), Site(1): torch.randn(tiny.d_model, generator=g)}
    task = ChoiceTask.from_pairs(tiny, PAIRS)
    df = perplexity_cost(tiny, vec, [-2.0, 0.0, 2.0], TEXTS, task=task, max_tokens=16, progress=False)
    ppl = df[df.metric == "perplexity"].set_index(["layer", "coeff"]).value
    base = perplexity_on(tiny, TEXTS, max_tokens=16)
    assert ppl[(0, 0.0)] == pytest.approx(base, rel=1e-6)
    assert ppl[(1, 0.0)] == pytest.approx(base, rel=1e-6)
    direct = perplexity_on(tiny, TEXTS, edits=steer(vec, 2.0, sites=[Site(1)]), max_tokens=16)
    assert ppl[(1, 2.0)] == pytest.approx(direct, rel=1e-6)
    assert ppl[(1, 2.0)] != pytest.approx(base, rel=1e-3)  # the edit does something
    ratio = df[df.metric == "log_ppl_ratio"].set_index(["layer", "coeff"]).value
    assert ratio[(1, 2.0)] == pytest.approx(np.log(direct / base), rel=1e-6)
    p = df[df.metric == "p_behaviour"].set_index(["layer", "coeff"]).value
    want = task.evaluate(steer(vec, -2.0, sites=[Site(0)])).query("metric == 'p_behaviour'").value.mean()
    assert p[(0, -2.0)] == pytest.approx(want, abs=1e-6)


def test_matched_effect_interpolates():
    rows = []
    for c, pb, ppl in [(-1, 0.3, 20), (0, 0.5, 10), (1, 0.6, 12), (2, 0.9, 30)]:
        rows += [{"layer": 3, "coeff": float(c), "metric": "p_behaviour", "value": pb},
                 {"layer": 3, "coeff": float(c), "metric": "perplexity", "value": ppl}]  # fmt: skip
    df = pd.DataFrame(rows)
    got = at_matched_effect(df, 0.25).iloc[0]
    assert got.coeff == pytest.approx(1.5)  # 0.6 -> 0.9 crosses 0.75 halfway
    assert got.cost == pytest.approx(21.0)
    neg = at_matched_effect(df, -0.1).iloc[0]
    assert neg.coeff == pytest.approx(-0.5) and neg.cost == pytest.approx(15.0)
    assert np.isnan(at_matched_effect(df, 0.9).iloc[0].coeff)
    assert at_matched_effect(df, 0.25, log_cost=True).iloc[0].cost == pytest.approx(np.sqrt(12 * 30))
