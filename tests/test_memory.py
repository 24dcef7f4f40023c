"""Memory that scales: global settings, out-of-memory halving (simulated), bounded prefix caches, last-position logits.

Out-of-memory is simulated by wrapping the backend's calls: a call on more rows than the "device" holds raises
``torch.OutOfMemoryError``, as CUDA's allocator does; the results must equal those of an unconstrained run.
"""

import logging
from types import SimpleNamespace

import pytest
import torch

from steerlab import memory
from steerlab.activations import collect_pairs, collect_prompts
from steerlab.errors import SteerlabError
from steerlab.interventions import steer
from steerlab.metrics import text_nll
from steerlab.sites import AFTER_INSTRUCTION, LAST_PROMPT, Site
from steerlab.tasks import ChoiceTask, GenerationTask, PerplexityTask

PAIRS = [SimpleNamespace(prompt=f"Question {i}: pick (A) or (B)?", positive="(A)" if i % 2 else "(B)",
                         negative="(B)" if i % 2 else "(A)", meta={"id": i}) for i in range(7)]  # fmt: skip
TEXTS = ["what a lovely happy day", "such a sad gloomy night", "sunny and bright", "grey cold rain", "a b c"]


class Scarce:
    """Makes ``lm``'s calls on more than ``rows`` rows raise an out-of-memory error, and counts them."""

    def __init__(self, lm, rows: int, error=torch.OutOfMemoryError):
        self.lm, self.rows, self.error, self.raised = lm, rows, error, 0
        self.saved = {name: getattr(lm, name) for name in ("forward", "forward_many", "prefix", "generate_ids")}

    def __enter__(self):
        for name, fn in self.saved.items():
            setattr(self.lm, name, self._guard(fn, copies=name == "forward_many"))
        return self

    def _guard(self, fn, copies: bool):
        def call(prompts, *args, **kwargs):
            rows = len(prompts) if not isinstance(prompts, str) else 1
            rows *= len(args[0]) if copies else 1
            if rows > self.rows:
                self.raised += 1
                raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
            return fn(prompts, *args, **kwargs)

        return call

    def __exit__(self, *exc):
        for name in self.saved:
            delattr(self.lm, name)


def test_settings_validate_and_restore():
    with memory.configured(batch_size=3, prefix_cache_mb=1.5, retry_oom=False):
        assert memory.batch_size(None) == 3 and memory.batch_size(5) == 5
        assert memory.settings.prefix_cache_mb == 1.5 and not memory.settings.retry_oom
    assert memory.settings.batch_size is None and memory.batch_size(None, 8) == 8
    with pytest.raises(SteerlabError, match="batch_size must be a positive int"):
        memory.configure(batch_size=0)
    with pytest.raises(SteerlabError, match="unknown memory settings"):
        memory.configure(batchsize=4)
    with pytest.raises(SteerlabError, match="prefix_cache_mb must be a number"):
        memory.configure(prefix_cache_mb=-1)


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STEERLAB_BATCH_SIZE", "4")
    monkeypatch.setenv("STEERLAB_RETRY_OOM", "0")
    monkeypatch.setenv("STEERLAB_PREFIX_CACHE_MB", "256")
    assert memory._from_environment() == memory.MemorySettings(4, False, 256.0)
    monkeypatch.setenv("STEERLAB_BATCH_SIZE", "four")
    with pytest.raises(SteerlabError, match="STEERLAB_BATCH_SIZE takes a positive int"):
        memory._from_environment()


def test_is_oom_knows_both_kinds_of_error():
    assert memory.is_oom(torch.OutOfMemoryError("x"))
    assert memory.is_oom(RuntimeError("CUDA error: out of memory"))
    assert not memory.is_oom(RuntimeError("shape mismatch"))
    assert not memory.is_oom(ValueError("out of memory"))


def test_halving_retries_a_chunk_in_halves_and_keeps_the_smaller_size(caplog):
    seen = []

    def run(a, b):
        seen.append((a, b))
        if b - a > 2:
            raise torch.OutOfMemoryError("out of memory")
        return list(range(a, b))

    with caplog.at_level(logging.WARNING, logger="steerlab.memory"):
        out = list(memory.halving(9, 8, run))
    assert [x for part in out for x in part] == list(range(9))
    assert seen == [(0, 8), (0, 4), (0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]
    assert "retrying with 4" in caplog.text
    with pytest.raises(torch.OutOfMemoryError):
        list(memory.halving(3, 1, lambda a, b: (_ for _ in ()).throw(torch.OutOfMemoryError("oom"))))
    with memory.configured(retry_oom=False), pytest.raises(torch.OutOfMemoryError):
        list(memory.halving(9, 8, run))
    with pytest.raises(ValueError):  # other errors are not retried
        list(memory.halving(4, 4, lambda a, b: int("x")))


@pytest.mark.parametrize("positions", [None, LAST_PROMPT, AFTER_INSTRUCTION])
def test_choice_task_halves_its_batch_on_out_of_memory(tiny, positions):
    edits = () if positions is None else steer({Site(1): torch.ones(tiny.d_model)}, 2.0, positions=positions)
    expected = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=8).evaluate(edits, reuse_prefix=positions is not None)
    task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=8)
    with Scarce(tiny, rows=2) as scarce:
        got = task.evaluate(edits, reuse_prefix=positions is not None)
    assert scarce.raised >= 2 and task.batch_size == 2
    assert got.value.to_numpy() == pytest.approx(expected.value.to_numpy(), abs=1e-5)
    assert got.example_id.tolist() == expected.example_id.tolist()


def test_evaluate_many_halves_the_batch_of_copies(tiny):
    sets = [steer({Site(0): torch.ones(tiny.d_model)}, c) for c in (1.0, 2.0, 3.0)]
    expected = [f.value.to_numpy() for f in ChoiceTask.from_pairs(tiny, PAIRS).evaluate_many(sets)]
    task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=8)
    with Scarce(tiny, rows=7):  # 3 copies of 8 rows do not fit; of 2 rows they do
        got = task.evaluate_many(sets)
    assert task.batch_size == 2
    for g, e in zip(got, expected, strict=True):
        assert g.value.to_numpy() == pytest.approx(e, abs=1e-5)


def test_a_runtime_error_saying_out_of_memory_counts_and_retry_can_be_turned_off(tiny):
    task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=4)
    expected = task.evaluate().value.to_numpy()
    with Scarce(tiny, rows=1, error=RuntimeError):
        assert task.evaluate().value.to_numpy() == pytest.approx(expected, abs=1e-5)
    assert task.batch_size == 1
    task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=4)
    with memory.configured(retry_oom=False), Scarce(tiny, rows=1), pytest.raises(torch.OutOfMemoryError):
        task.evaluate()


def test_activation_collection_and_token_losses_halve_on_out_of_memory(tiny):
    sites = [Site(0), Site(1)]
    pairs = collect_pairs(tiny, PAIRS, sites, batch_size=8, progress=False)
    prompts = collect_prompts(tiny, TEXTS, sites, batch_size=8, progress=False)
    nll, n = text_nll(tiny, TEXTS, batch_size=8)
    with Scarce(tiny, rows=2) as scarce:
        pairs2 = collect_pairs(tiny, PAIRS, sites, batch_size=8, progress=False)
        prompts2 = collect_prompts(tiny, TEXTS, sites, batch_size=8, progress=False)
        nll2, n2 = text_nll(tiny, TEXTS, batch_size=8)
    assert scarce.raised >= 3
    for s in sites:
        torch.testing.assert_close(pairs2.pos[s], pairs.pos[s], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pairs2.neg[s], pairs.neg[s], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prompts2[s], prompts[s], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nll2, nll, rtol=1e-5, atol=1e-5)
    assert torch.equal(n2, n)


def test_generation_and_perplexity_tasks_halve_on_out_of_memory(tiny):
    scorer = type("Length", (), {"name": "length", "__call__": lambda self, t: [len(x) for x in t]})()
    gen = GenerationTask(tiny, ["Say hi.", "Say bye.", "Count."], scorer, max_new_tokens=3, batch_size=4)
    ppl = PerplexityTask(tiny, TEXTS, batch_size=4)
    expected = gen.evaluate(), ppl.evaluate()
    with Scarce(tiny, rows=1) as scarce:
        got = gen.evaluate(), ppl.evaluate()
    assert scarce.raised >= 2
    assert got[0].text.tolist() == expected[0].text.tolist()
    assert got[1].value.to_numpy() == pytest.approx(expected[1].value.to_numpy(), abs=1e-5)


def test_the_global_batch_size_reaches_every_task(tiny):
    with memory.configured(batch_size=3):
        assert ChoiceTask.from_pairs(tiny, PAIRS).batch_size == 3
        assert PerplexityTask(tiny, TEXTS).batch_size == 3
    assert ChoiceTask.from_pairs(tiny, PAIRS).batch_size == 16
    assert PerplexityTask(tiny, TEXTS).batch_size == 8


def test_the_prefix_cache_is_bounded_and_the_rest_recomputed(tiny):
    """A budget that holds one batch's prefix keeps the first and recomputes the others, with equal results;
    the default budget is half the model's weights."""
    edits = steer({Site(1): torch.ones(tiny.d_model)}, 2.0, positions=LAST_PROMPT)
    free = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=2, prefix_cache_mb=1000)
    expected = free.evaluate(edits, reuse_prefix=True).value.to_numpy()
    assert len(free._prefixes) == 4  # 7 items in 4 batches: all kept
    one = max(memory_of(p) for p in free._prefixes.values())
    weights = sum(p.numel() * p.element_size() for p in tiny.model.parameters())
    assert ChoiceTask.from_pairs(tiny, PAIRS).prefix_budget == weights // 2
    for mb in (0, 1.5 * one / 2**20):
        task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=2, prefix_cache_mb=mb)
        for _ in range(2):
            assert task.evaluate(edits, reuse_prefix=True).value.to_numpy() == pytest.approx(expected, abs=1e-5)
        assert task._prefix_bytes == sum(memory_of(p) for p in task._prefixes.values()) <= task.prefix_budget
        assert len(task._prefixes) < 4 and (mb > 0 or not task._prefixes)
        assert mb == 0 or (0, 1) in task._prefixes  # the first batch's prefix is the one kept
    with memory.configured(prefix_cache_mb=0):
        task = ChoiceTask.from_pairs(tiny, PAIRS, batch_size=2)
        task.evaluate(edits, reuse_prefix=True)
        assert task._prefixes == {}


def memory_of(prefix) -> int:
    from steerlab.backends.base import cache_nbytes

    return cache_nbytes(prefix.cache)


def test_choice_task_scores_last_position_logits_only(tiny):
    """Every forward of a ChoiceTask asks for the last position's logits alone (not a row per token)."""
    asked = []
    forward = tiny.forward

    def spy(*args, **kwargs):
        asked.append(kwargs.get("logits", True))
        return forward(*args, **kwargs)

    tiny.forward = spy
    try:
        ChoiceTask.from_pairs(tiny, PAIRS).evaluate(steer({Site(1): torch.ones(tiny.d_model)}, 1.0))
    finally:
        del tiny.forward
    assert asked and set(asked) == {1}
