"""steerlab.plotting.saas: the SAAS figures draw what their frames hold (band, intervals, zero line)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from steerlab.errors import SteerlabError
from steerlab.plotting import plot_dose_response, plot_saas_effect, plot_saas_labels, plot_saas_methods


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _effects():
    return pd.DataFrame({"method": ["caa", "saas@1"], "effect": [0.02, -0.01], "lo": [0.0, -0.03],
                         "hi": [0.04, 0.01], "null_lo": [-0.05, np.nan], "null_hi": [0.05, np.nan]})  # fmt: skip


def test_methods_plot_draws_band_where_measured_and_points_with_intervals():
    ax = plot_saas_methods(_effects(), label="openness", order=["saas@1", "caa"])
    bars = [p for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 1 and bars[0].get_y() == pytest.approx(-0.05) and bars[0].get_height() == pytest.approx(0.1)
    assert bars[0].get_x() + bars[0].get_width() / 2 == pytest.approx(1.0)  # caa is second in the given order
    points = ax.lines[0].get_ydata()
    assert list(points) == [-0.01, 0.02]
    assert any(list(line.get_ydata()) == [0, 0] for line in ax.lines)  # the unsteered reference
    assert [t.get_text() for t in ax.get_xticklabels()] == ["saas@1", "caa"] and ax.get_title() == "openness"


def test_labels_plot_one_series_per_label():
    labels = pd.DataFrame({"method": ["caa", "caa", "saas", "saas"], "label": ["Yes", "No", "Yes", "No"],
                           "effect": [0.1, -0.1, 0.05, 0.0], "lo": [0.0, -0.2, 0.0, -0.1], "hi": [0.2, 0.0, 0.1, 0.1]})
    ax = plot_saas_labels(labels)
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["answer No", "answer Yes", "unsteered"]
    no = next(c for c in ax.containers if c.get_label() == "answer No")
    assert list(no.lines[0].get_ydata()) == [-0.1, 0.0]


def test_dose_response_draws_each_method_with_its_band():
    eff = pd.DataFrame({"method": ["caa"] * 2 + ["saas"] * 2, "fraction": [-0.5, 0.5] * 2,
                        "effect": [-0.1, 0.1, -0.2, 0.2], "lo": [-0.15, 0.05, -0.3, 0.1],
                        "hi": [-0.05, 0.15, -0.1, 0.3],
                        "null_lo": [-0.03, -0.03, -0.04, -0.04], "null_hi": [0.03, 0.03, 0.02, 0.02]})  # fmt: skip
    ax = plot_dose_response(eff, hue="method")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"method caa", "method saas", "unsteered", "random directions (95% band)"} <= set(labels)
    caa = next(c for c in ax.containers if c.get_label() == "method caa")
    assert list(caa.lines[0].get_ydata()) == [-0.1, 0.1]


def test_effect_plot_numeric_and_categorical_x():
    df = pd.DataFrame({"layer": [8, 12, 8, 12], "method": ["caa", "caa", "saas", "saas"],
                       "effect": [0.1, 0.2, 0.0, 0.1], "lo": [0.0, 0.1, -0.1, 0.0], "hi": [0.2, 0.3, 0.1, 0.2]})
    ax = plot_saas_effect(df, "layer")
    assert ax.get_xlabel() == "layer" and len(ax.containers) == 2
    taus = pd.DataFrame({"tau": [1.0, np.inf, 0.3], "method": "saas", "effect": [0.1, 0.0, 0.2], "lo": 0.0, "hi": 0.3})
    ax = plot_saas_effect(taus, "tau")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.3", "1", "inf"]
    assert list(ax.containers[0].lines[0].get_ydata()) == [0.2, 0.1, 0.0]


@pytest.mark.parametrize("fn", [plot_saas_methods, plot_saas_labels, plot_dose_response])
def test_plots_name_missing_columns(fn):
    with pytest.raises(SteerlabError, match="effect|label|fraction"):
        fn(pd.DataFrame({"method": ["caa"]}))
