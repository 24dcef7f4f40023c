"""Tests for steerlab.plotting on small synthetic tidy frames (Agg backend, nothing shown)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from steerlab.errors import SteerlabError  # noqa: E402
from steerlab.plotting import (  # noqa: E402
    plot_delta_bars,
    plot_layer_heatmap,
    plot_metric_vs_coeff,
    plot_metric_vs_layer,
    plot_steerability,
    save_figure,
)
from steerlab.stats import delta_table, steerability  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def sweep():
    rng = np.random.default_rng(0)
    rows = [
        dict(
            layer=layer,
            site="resid_post",
            coeff=coeff,
            method=method,
            seed=seed,
            metric="p_behaviour",
            value=0.5 + 0.05 * coeff * (layer == 2) * (1 + (method == "caa")) + 0.02 * rng.normal(),
        )
        for method in ("caa", "pca")
        for layer in (0, 1, 2, 3)
        for coeff in (-2.0, 0.0, 2.0)
        for seed in range(3)
    ]
    return pd.DataFrame(rows)


def test_layer_heatmap(sweep):
    ax = plot_layer_heatmap(sweep[sweep.method == "caa"])
    assert isinstance(ax, Axes)
    assert ax.get_xlabel() and ax.get_ylabel() == "layer"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["3", "2", "1", "0"]


def test_layer_heatmap_metric_choice(sweep):
    two = pd.concat([sweep, sweep.assign(metric="ppl")])
    caa = two[two.method == "caa"]
    with pytest.raises(SteerlabError, match=r"2 metrics \['p_behaviour', 'ppl'\].*metric="):
        plot_layer_heatmap(caa)
    assert plot_layer_heatmap(caa, metric="ppl").get_title() == "ppl"
    with pytest.raises(SteerlabError, match="not in the frame"):
        plot_layer_heatmap(caa, metric="kl")
    with pytest.raises(SteerlabError, match="'method'"):
        plot_layer_heatmap(sweep)


def test_metric_vs_coeff_draws_one_line_per_method(sweep):
    _, ax = plt.subplots()
    out = plot_metric_vs_coeff(sweep[sweep.layer == 2], ax=ax)
    assert out is ax
    assert ax.get_xlabel() == "steering strength (coeff)" and ax.get_ylabel() == "p_behaviour"
    assert len(ax.get_lines()) >= 2
    assert len(ax.collections) >= 2  # the CI bands


def test_metric_vs_layer(sweep):
    ax = plot_metric_vs_layer(sweep[sweep.method == "caa"])
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "p_behaviour"
    caa = sweep[sweep.method == "caa"]
    with pytest.raises(SteerlabError, match="'coeff'"):
        plot_metric_vs_layer(caa, hue=None)
    assert plot_metric_vs_layer(caa[caa.coeff == 2.0], hue=None).get_xlabel() == "layer"


def test_steerability_plot():
    rows = [dict(example_id=ex, coeff=c, value=s * c) for ex, s in enumerate([1.0, 0.5, -0.5, 2.0]) for c in (0, 1, 2)]
    slopes = steerability(pd.DataFrame(rows))
    ax = plot_steerability(slopes)
    assert "25%" in ax.get_title() and "4 examples" in ax.get_title()
    assert ax.get_xlabel() and ax.get_ylabel()
    assert any(np.allclose(line.get_xdata(), 0.0) for line in ax.get_lines())
    assert "0%" in plot_steerability(pd.Series([0.1, 0.2])).get_title()


def test_delta_bars(sweep):
    table = delta_table(sweep[sweep.layer == 2], by=["method", "coeff"])
    ax = plot_delta_bars(table, x="coeff", hue="method")
    assert len(ax.patches) == len(table) == 4
    assert ax.get_ylabel() and ax.get_xlabel() == "coeff"
    assert ax.get_legend() is not None
    one = pd.DataFrame({"task": ["a", "b"], "delta": [0.2, 0.1], "ci_low": [0.1, np.nan], "ci_high": [0.3, np.nan]})
    assert len(plot_delta_bars(one).patches) == 2


def test_delta_bars_needs_one_row_per_bar(sweep):
    table = delta_table(sweep, by=["method", "layer", "coeff"])
    with pytest.raises(SteerlabError, match="one row per"):
        plot_delta_bars(table, x="method")


@pytest.mark.parametrize(
    "fn", [plot_layer_heatmap, plot_metric_vs_coeff, plot_metric_vs_layer, plot_steerability, plot_delta_bars]
)
def test_empty_frame_is_a_clear_error(fn):
    with pytest.raises(SteerlabError, match="empty DataFrame"):
        fn(
            pd.DataFrame(
                columns=["layer", "coeff", "method", "seed", "metric", "value", "slope", "delta", "ci_low", "ci_high"]
            )
        )


def test_missing_columns_are_named(sweep):
    with pytest.raises(SteerlabError, match=r"\['layer'\]"):
        plot_layer_heatmap(sweep.drop(columns="layer"))
    with pytest.raises(SteerlabError, match=r"\['method'\]"):
        plot_metric_vs_coeff(sweep.drop(columns="method"))
    with pytest.raises(SteerlabError, match="average over 4 values of 'layer'"):
        plot_metric_vs_coeff(sweep)


def test_save_figure_writes_png_and_pdf(tmp_path, sweep):
    ax = plot_metric_vs_coeff(sweep[sweep.layer == 2])
    paths = save_figure(ax.figure, "fig_test", folder=tmp_path / "out")
    assert paths == [tmp_path / "out" / "fig_test.png", tmp_path / "out" / "fig_test.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"


def test_save_figure_default_folder(tmp_path, monkeypatch):
    fig, _ = plt.subplots()
    monkeypatch.setenv("STEERLAB_FIGURES", str(tmp_path / "env"))
    assert save_figure(fig, "a")[0].parent == tmp_path / "env"
    monkeypatch.delenv("STEERLAB_FIGURES")
    monkeypatch.chdir(tmp_path)
    assert save_figure(fig, "b")[1] == tmp_path / "figures" / "b.pdf"


def test_save_figure_rejects_bad_names(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(SteerlabError, match="extension"):
        save_figure(fig, "a.png", folder=tmp_path)
    with pytest.raises(SteerlabError, match="plain file stem"):
        save_figure(fig, "sub/a", folder=tmp_path)
    with pytest.raises(SteerlabError, match="Figure"):
        save_figure(fig.axes[0], "a", folder=tmp_path)
