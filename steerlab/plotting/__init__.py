"""Figures from tidy steering results: ``plot_*(df, ax=None) -> Axes`` and `save_figure`.

Every ``plot_*`` function draws on ``ax`` (or a new figure's axes), labels its axes and returns the
Axes; nothing is shown. Inputs are the tidy frames of `steerlab.sweeps` and `steerlab.stats`
(columns ``layer, site, coeff, method, seed, metric, value``). Choose a backend in your own script
or notebook; this package does not.

The general plots live in `general`, `save_figure` in `saving`, and each paper's figures in a module
of their own: `pas` (PAS), `saas` (SAAS), `cae` (CAE robustness) and `sae` (SAE latents). Import the
public names from ``steerlab.plotting`` itself.
"""

from steerlab.plotting.cae import (
    plot_attack_success,
    plot_cell_effects,
    plot_cost_tradeoff,
    plot_dose_response,
    plot_sample_size,
)
from steerlab.plotting.general import (
    plot_delta_bars,
    plot_layer_heatmap,
    plot_metric_vs_coeff,
    plot_metric_vs_layer,
    plot_steerability,
)
from steerlab.plotting.pas import plot_pas_sample_size, plot_pas_sites
from steerlab.plotting.saas import plot_saas_effect, plot_saas_labels, plot_saas_methods
from steerlab.plotting.sae import plot_cost_dose_response, plot_latent_scores, plot_method_effects
from steerlab.plotting.saving import FIGURES_ENV, save_figure

__all__ = [
    "FIGURES_ENV",
    "plot_attack_success",
    "plot_cell_effects",
    "plot_cost_dose_response",
    "plot_cost_tradeoff",
    "plot_delta_bars",
    "plot_dose_response",
    "plot_latent_scores",
    "plot_layer_heatmap",
    "plot_metric_vs_coeff",
    "plot_method_effects",
    "plot_metric_vs_layer",
    "plot_pas_sample_size",
    "plot_pas_sites",
    "plot_saas_effect",
    "plot_saas_labels",
    "plot_saas_methods",
    "plot_sample_size",
    "plot_steerability",
    "save_figure",
]
