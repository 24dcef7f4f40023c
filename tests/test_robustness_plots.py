"""CAE plot functions draw from the robustness helpers' tidy frames and reject bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from steerlab.errors import SteerlabError  # noqa: E402
from steerlab.plotting import (  # noqa: E402
    plot_attack_success,
    plot_cost_curve,
    plot_cost_tradeoff,
    plot_id_ood,
    plot_sample_size,
)
from steerlab.robustness.sample_size import fit_saturation  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_plots_draw():
    eff = pd.DataFrame({"behaviour": ["a", "a", "b", "b"], "form": ["id", "open"] * 2, "effect": [0.2, 0.0, 0.1, 0.05],
                        "lo": [0.1, -0.1, 0.0, -0.05], "hi": [0.3, 0.1, 0.2, 0.15]})  # fmt: skip
    ax = plot_id_ood(eff)
    assert len(ax.patches) == 4
    eff = eff.assign(dz=eff.effect * 2, dz_lo=eff.lo * 2, dz_hi=eff.hi * 2)
    assert plot_id_ood(eff, value="dz").get_ylabel().startswith("standardised")
    n = np.repeat([1, 2, 4, 8, 16, 32], 5).astype(float)
    ss = pd.DataFrame({"n_pairs": n, "metric": "cosine", "value": 1 - np.exp(-n / 5)})
    ax = plot_sample_size(ss, fit_saturation(ss), metric="cosine")
    assert ax.get_xscale() == "log"
    curve = pd.DataFrame({"method": ["gcg"] * 3, "step": [0, 1, 2], "success_rate": [0.0, 0.5, 0.5]})
    assert plot_attack_success(curve).get_ylabel().startswith("success")
    cost = pd.DataFrame([{"layer": L, "coeff": c, "metric": m, "value": v}
                         for L in (3, 6) for c in (-1.0, 0.0, 1.0)
                         for m, v in (("perplexity", 10 + c * c), ("p_behaviour", 0.5 + 0.1 * c))])  # fmt: skip
    assert len(plot_cost_curve(cost).lines) == 2
    assert len(plot_cost_tradeoff(cost).lines) == 2
    with pytest.raises(SteerlabError, match="metric"):
        plot_cost_curve(cost, metric="kl")
    with pytest.raises(SteerlabError, match="columns"):
        plot_id_ood(eff.drop(columns="lo"))
