"""Evaluation tasks: what a sweep measures in each cell, prepared once and evaluated under any edits.

| task | what it measures | target |
|---|---|---|
| `ChoiceTask` | next token over answers: behaviour probability (CAA), MCQ accuracy (PAS)| p_behaviour, accuracy |
| `BlockTask` | a subset of blocks of `ChoiceTask`s sharing their cached prefixes (PAS's splits) | as its blocks |
| `GenerationTask` | greedy generations scored per text (ActAdd-style open-ended steering) | the scorer's name |
| `TextLoglikTask` | token log-likelihood of labelled raw texts, label 1 against label 0 | ``loglik_toward`` |
| `PerplexityTask` | token NLL of raw texts (the fluency cost of an edit) | ``nll`` |

Every task follows the `Task` protocol (`steerlab.tasks.base`): ``metrics``, ``fingerprint()``,
``evaluate(edits)``, ``can_reuse_prefix``, ``resolve_positions(positions)`` and ``norm_prompts()``.

Example:
    >>> task = ChoiceTask.from_pairs(lm, test_pairs)                                       # doctest: +SKIP
    >>> task.evaluate(steer(vec, 4.0, positions=AFTER_INSTRUCTION), reuse_prefix=True)     # doctest: +SKIP
"""

from steerlab.tasks.base import BaseTask, Task
from steerlab.tasks.blocks import BlockTask
from steerlab.tasks.choice import ChoiceTask, answer_label
from steerlab.tasks.generation import GenerationTask
from steerlab.tasks.text import PerplexityTask, TextLoglikTask

__all__ = ["BaseTask", "BlockTask", "ChoiceTask", "GenerationTask", "PerplexityTask", "Task", "TextLoglikTask",
           "answer_label"]
