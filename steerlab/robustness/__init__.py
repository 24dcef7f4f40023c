"""Robustness of contrastive activation steering (CAE, Hao et al. 2025, arXiv 2505.03189).

One concept per module: `ood` (in- vs out-of-distribution effects, probe scoring of generations),
`sample_size` (effect against the number of pairs, saturating fit and knee), `adversarial` (greedy
coordinate gradient and evolutionary searches for inputs that reverse a steered behaviour) and
`cost` (perplexity on neutral text against strength and layer, with the behaviour effect).
"""

from steerlab.robustness.adversarial import (
    AttackTarget,
    attack_loss,
    attack_target,
    evolutionary_search,
    gcg_search,
    input_cross_entropy,
    success_by_step,
)
from steerlab.robustness.cost import at_matched_effect, perplexity_cost
from steerlab.robustness.ood import (
    BehaviourProbe,
    completion_features,
    id_ood_effects,
    ood_evaluation,
    rewrite,
    strip_choices,
)
from steerlab.robustness.sample_size import fit_saturation, sample_size_study, saturation_curve

__all__ = [
    "AttackTarget",
    "BehaviourProbe",
    "at_matched_effect",
    "attack_loss",
    "attack_target",
    "completion_features",
    "evolutionary_search",
    "fit_saturation",
    "gcg_search",
    "id_ood_effects",
    "input_cross_entropy",
    "ood_evaluation",
    "perplexity_cost",
    "rewrite",
    "sample_size_study",
    "saturation_curve",
    "strip_choices",
    "success_by_step",
]
