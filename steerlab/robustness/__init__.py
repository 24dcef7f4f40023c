"""Robustness of contrastive activation steering (CAE, Hao et al. 2025, arXiv 2505.03189).

One concept per module: `behaviour` (one behaviour's vector under the evaluation protocol, shared by the CAE
notebooks), `ood` (out-of-distribution prompts scored by a behaviour probe on generations), `sample_size`
(vectors from subsets of the pairs, saturating fit and knee), `adversarial` (greedy coordinate gradient and
evolutionary searches for inputs that reverse a steered behaviour) and `cost` (perplexity on neutral text
against strength and layer, beside the behaviour effect). Every grid runs through `steerlab.sweeps.sweep`.
"""

from steerlab.robustness.adversarial import (
    AttackTarget,
    attack_loss,
    attack_target,
    evolutionary_search,
    gcg_search,
    input_cross_entropy,
    success_by_step,
    with_adversarial_text,
)
from steerlab.robustness.behaviour import CAE_POSITIONS, BehaviourRun, p_values, run_behaviour
from steerlab.robustness.cost import at_matched_effect, perplexity_effects, tradeoff_table
from steerlab.robustness.ood import (
    BehaviourProbe,
    ProbeScorer,
    completion_features,
    ood_task,
    rewrite,
    strip_choices,
)
from steerlab.robustness.sample_size import (
    fit_saturation,
    sample_size_effects,
    sample_size_study,
    saturation_curve,
    subset_draws,
    subset_vectors,
)

__all__ = [
    "CAE_POSITIONS",
    "AttackTarget",
    "BehaviourProbe",
    "BehaviourRun",
    "ProbeScorer",
    "at_matched_effect",
    "attack_loss",
    "attack_target",
    "completion_features",
    "evolutionary_search",
    "fit_saturation",
    "gcg_search",
    "input_cross_entropy",
    "ood_task",
    "p_values",
    "perplexity_effects",
    "rewrite",
    "run_behaviour",
    "sample_size_effects",
    "sample_size_study",
    "saturation_curve",
    "strip_choices",
    "subset_draws",
    "subset_vectors",
    "success_by_step",
    "tradeoff_table",
    "with_adversarial_text",
]
