"""Perplexity cost from a sweep: ratios equal direct perplexities, random bands, the matched-effect reading."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from steerlab.effects import cell_effects
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.provenance import Provenance
from steerlab.robustness.cost import at_matched_effect, perplexity_effects, tradeoff_table
from steerlab.sites import ALL, Site
from steerlab.sweeps import sweep
from steerlab.tasks import PerplexityTask
from steerlab.vectors import SteeringVector

TEXTS = ["The cat sat on the mat today.", "A quick brown fox jumps over it!", "Hello there, my old world."]


def test_perplexity_effects_equal_direct_perplexities_with_a_random_band(tiny):
    g = torch.Generator().manual_seed(0)
    prov = Provenance(model=tiny.name, d_model=tiny.d_model, method="caa")
    vec = SteeringVector({Site(0): torch.randn(tiny.d_model, generator=g),
                          Site(1): torch.randn(tiny.d_model, generator=g)}, prov)  # fmt: skip
    task = PerplexityTask(tiny, TEXTS, max_tokens=6)  # every text is cut to 6 tokens: NLL effect = log ratio
    df = sweep(tiny, vec, task, fractions=[-0.5, 0.0, 0.5], scale={Site(0): 4.0, Site(1): 4.0}, positions=ALL,
               controls=3, controls_at=[0.5], progress=False)  # fmt: skip
    eff = perplexity_effects(df).set_index(["layer", "fraction"])
    base = task.evaluate().query("example_id == 'all'").value.iloc[0]
    row = eff.loc[(1, 0.5)]
    direct = task.evaluate(steer(vec, float(row.coeff), sites=[Site(1)])).query("example_id == 'all'").value.iloc[0]
    assert row.base_perplexity == pytest.approx(base, rel=1e-6)
    assert row.ppl_ratio == pytest.approx(direct / base, rel=1e-6)
    assert row.effect == pytest.approx(math.log(direct / base), abs=1e-5)
    assert row.ratio_null_lo < row.ratio_null_hi and np.isfinite(row.null_lo)
    assert np.isnan(eff.loc[(1, -0.5)].ratio_null_lo)  # no random directions there
    with pytest.raises(SteerlabError, match="PerplexityTask"):
        perplexity_effects(df[df.metric == "nll"])


def behaviour_and_cost():
    rows = []
    for f, p, ppl in [(-1.0, 0.3, 20.0), (0.0, 0.5, 10.0), (1.0, 0.6, 12.0), (2.0, 0.9, 30.0)]:
        rows += [{"method": "caa", "seed": 0, "direction": "vector", "layer": 3, "site": "resid_post", "fraction": f,
                  "coeff": f, "metric": m, "value": v, "example_id": e}
                 for m, v, e in (("p_behaviour", p, 0), ("p_behaviour", p, 1), ("nll", math.log(ppl), 0),
                                 ("nll", math.log(ppl), 1), ("perplexity", ppl, "all"))]  # fmt: skip
    df = pd.DataFrame(rows)
    return cell_effects(df, "p_behaviour"), perplexity_effects(df)


def test_tradeoff_table_and_matched_effect_interpolate():
    behaviour, cost = behaviour_and_cost()
    table = tradeoff_table(behaviour, cost)
    assert table.fraction.tolist() == [-1.0, 0.0, 1.0, 2.0]
    assert table.ppl_ratio.tolist() == pytest.approx([2.0, 1.0, 1.2, 3.0])
    got = at_matched_effect(table, 0.25, log_cost=False).iloc[0]
    assert got.strength == pytest.approx(1.5)  # 0.1 -> 0.4 crosses 0.25 halfway
    assert got.cost == pytest.approx(2.1)
    neg = at_matched_effect(table, -0.1, log_cost=False).iloc[0]
    assert neg.strength == pytest.approx(-0.5) and neg.cost == pytest.approx(1.5)
    assert np.isnan(at_matched_effect(table, 0.9).iloc[0].strength)
    assert at_matched_effect(table, 0.25).iloc[0].cost == pytest.approx(math.sqrt(1.2 * 3.0))
    with pytest.raises(SteerlabError, match="columns"):
        at_matched_effect(table.drop(columns="ppl_ratio"), 0.1)
