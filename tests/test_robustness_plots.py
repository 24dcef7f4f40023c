"""CAE plot functions draw from the robustness helpers' tidy frames (with random bands) and reject bad input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from steerlab.errors import SteerlabError  # noqa: E402
from steerlab.plotting import (  # noqa: E402
    plot_attack_success,
    plot_cell_effects,
    plot_cost_tradeoff,
    plot_dose_response,
    plot_sample_size,
)
from steerlab.robustness.sample_size import fit_saturation  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_cell_effects_draw_intervals_bands_and_the_unsteered_line():
    eff = pd.DataFrame({"behaviour": ["a", "a", "b", "b"], "form": ["id", "open"] * 2, "effect": [0.2, 0.0, 0.1, 0.05],
                        "lo": [0.1, -0.1, 0.0, -0.05], "hi": [0.3, 0.1, 0.2, 0.15],
                        "null_lo": [-0.05, np.nan, -0.04, -0.1], "null_hi": [0.05, np.nan, 0.04, 0.1]})  # fmt: skip
    ax = plot_cell_effects(eff, hue="form")
    boxes = [p for p in ax.patches if p.get_height() > 0]
    assert len(boxes) == 3  # one band per cell that has one
    assert sorted(round(b.get_y(), 3) for b in boxes) == [-0.1, -0.05, -0.04]
    assert any(line.get_ydata()[0] == 0 for line in ax.lines)  # the unsteered reference
    with pytest.raises(SteerlabError, match="columns"):
        plot_cell_effects(eff.drop(columns="lo"))


def test_dose_response_and_sample_size_draw_their_bands():
    eff = pd.DataFrame({"layer": [3, 3, 6, 6], "fraction": [-0.5, 0.5] * 2, "effect": [-0.1, 0.1, 0.0, 0.2],
                        "lo": [-0.2, 0.0, -0.1, 0.1], "hi": [0.0, 0.2, 0.1, 0.3],
                        "null_lo": [np.nan, -0.05, np.nan, -0.1], "null_hi": [np.nan, 0.05, np.nan, 0.1]})  # fmt: skip
    ax = plot_dose_response(eff)
    assert len(ax.collections) >= 2 and ax.get_xlabel().startswith("strength")
    n = np.repeat([1, 2, 4, 8, 16, 32], 5).astype(float)
    ss = pd.DataFrame({"n_pairs": n, "metric": "cosine", "value": 1 - np.exp(-n / 5)})
    ax = plot_sample_size(ss, fit_saturation(ss), reference=None)
    assert ax.get_xscale() == "log" and ax.get_ylabel() == "cosine"
    eff = pd.DataFrame({"n_pairs": n, "effect": 0.1 * (1 - np.exp(-n / 5))})
    ax = plot_sample_size(eff, y="effect", band=(-0.02, 0.03))
    (span,) = ax.patches  # the band across the plot
    assert span.get_y() == pytest.approx(-0.02) and span.get_height() == pytest.approx(0.05)
    with pytest.raises(SteerlabError, match="metrics"):
        plot_sample_size(pd.concat([ss, ss.assign(metric="norm")]))


def test_attack_and_tradeoff_plots():
    curve = pd.DataFrame({"method": ["gcg"] * 3, "step": [0, 1, 2], "success_rate": [0.0, 0.5, 0.5]})
    assert plot_attack_success(curve).get_ylabel().startswith("success")
    table = pd.DataFrame({"layer": [3] * 3 + [6] * 3, "fraction": [-0.5, 0.0, 0.5] * 2,
                          "effect": [-0.1, 0.0, 0.1, 0.0, 0.0, 0.05],
                          "ppl_ratio": [2.0, 1.0, 1.5, 3.0, 1.0, 4.0]})  # fmt: skip
    ax = plot_cost_tradeoff(table)
    assert ax.get_yscale() == "log" and len(ax.lines) == 3  # two layers and the unsteered point
