"""Doing less work: early exit (`forward(..., logits=False)`, `prefix(..., stop_at=)`), last-k logits, and
`forward_many` (several edit sets sharing the unedited trunk), each against the plain forward it replaces.

The oracle is always the result of the work not saved: a full forward per edit set, all logits, every block.
"""

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from steerlab.backends.base import shared_blocks
from steerlab.errors import SteerlabError
from steerlab.interventions import add, steer
from steerlab.sites import (
    AFTER_INSTRUCTION,
    ALL,
    ASSISTANT,
    LAST_PROMPT,
    PROMPT,
    SITE_KINDS,
    SYSTEM,
    USER,
    Batch,
    Edit,  # fmt: skip
    Positions,
    Site,
)
from steerlab.sweeps import sweep
from steerlab.tasks import ChoiceTask, PerplexityTask, TextLoglikTask
from steerlab.testing import make_tiny_model, tiny_backend
from steerlab.vectors import Provenance, SteeringVector

PROMPTS = ["hello there world", "hi", "abc def ghi jkl"]
POSITIONS = [ALL, PROMPT, LAST_PROMPT, Positions.from_index(-2), Positions.span(1, 3), Positions.span(-2),
             Positions.span(0, -1, generated=True)]  # fmt: skip
TAIL = 2  # suffix tokens run on a cached prefix


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("deep"), n_layers=4)


_loaded: dict = {}


@pytest.fixture
def lm(backend_kind, folder, device):
    if backend_kind not in _loaded:
        _loaded[backend_kind] = tiny_backend(backend_kind, folder, device)
    return _loaded[backend_kind]


def _direction(lm, seed=0):
    return torch.randn(lm.d_model, generator=torch.Generator().manual_seed(seed)).to(lm.device)


def _split(b: Batch, tail: int = TAIL) -> tuple[Batch, Batch]:
    head = Batch(b.input_ids[:, :-tail], b.attention_mask[:, :-tail])
    return head, Batch(b.input_ids[:, -tail:], b.attention_mask[:, -tail:])


def test_shared_blocks_counts_the_blocks_before_the_first_edit():
    fn = lambda h: h  # noqa: E731
    assert shared_blocks([Edit(Site(3), fn)]) == 4  # resid_post.3 acts on block 3's output
    assert shared_blocks([Edit(Site(3, "attn_out"), fn), Edit(Site(5), fn)]) == 3
    assert shared_blocks([Edit(Site(0, "resid_pre"), fn)]) == 0
    assert shared_blocks([]) == 0


@pytest.mark.parametrize("kind", SITE_KINDS)
@pytest.mark.parametrize("layer", [0, 2, 3])
def test_forward_many_equals_one_forward_per_edit_set(lm, kind, layer):
    """Every site kind and depth (the last layer's resid_post leaves only the head to branch), every position
    kind, an unedited set among them; all logits and the last one."""
    b = lm.tokenize(PROMPTS)
    v = _direction(lm)
    for positions in POSITIONS:
        sets = [[add(Site(layer, kind), v, c, positions)] for c in (-2.0, 1.0, 3.0)] + [[]]
        for logits in (True, 1):
            outs = lm.forward_many(b, sets, logits=logits)
            for edits, out in zip(sets, outs, strict=True):
                ref = lm.forward(b, edits=edits).logits
                ref = ref if logits is True else ref[:, -1:]
                torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["resid_pre", "attn_out", "resid_post"])
def test_forward_many_on_a_cached_prefix_equals_the_full_forward(lm, kind):
    """The cached-prefix path: the suffix's trunk once, then the branches attend to a tiled copy of the
    prefix's keys and values; the prefix itself is left as it was (a second call gives the same)."""
    b = lm.tokenize(PROMPTS)
    head, tail = _split(b)
    pre = lm.prefix(head)
    v = _direction(lm, 1)
    for positions in (LAST_PROMPT, Positions.span(-TAIL), Positions.from_index(-1)):
        sets = [[add(Site(2, kind), v, c, positions)] for c in (-3.0, 0.5, 2.0)]
        for _ in range(2):
            outs = lm.forward_many(tail, sets, prefix=pre, logits=1)
            for edits, out in zip(sets, outs, strict=True):
                ref = lm.forward(b, edits=edits).logits[:, -1:]
                torch.testing.assert_close(out.logits, ref, rtol=1e-5, atol=1e-5)


def test_forward_many_edits_at_several_sites_and_counts_per_set(lm):
    b = lm.tokenize(PROMPTS)
    v, w = _direction(lm, 2), _direction(lm, 3)
    sets = [[add(Site(1), v, 1.0), add(Site(3, "mlp_out"), w, -1.0, LAST_PROMPT)],
            [add(Site(2), v, 2.0, LAST_PROMPT)]]  # fmt: skip
    outs = lm.forward_many(b, sets)
    for edits, out in zip(sets, outs, strict=True):
        ref = lm.forward(b, edits=edits)
        torch.testing.assert_close(out.logits, ref.logits, rtol=1e-5, atol=1e-5)
        assert out.edit_counts.per_forward == ref.edit_counts.per_forward
    assert outs[1].edit_counts.totals == (len(PROMPTS),)


def test_forward_many_refuses_an_idle_edit_and_an_edit_in_the_prefix(lm):
    b = lm.tokenize(PROMPTS)
    v = _direction(lm)
    with pytest.raises(SteerlabError, match="did nothing"):
        lm.forward_many(b, [steer({Site(1): v}, 1.0, positions=Positions.window(0, 2))])
    head, tail = _split(b)
    with pytest.raises(SteerlabError, match="touches the cached prefix"):
        lm.forward_many(tail, [steer({Site(1): v}, 1.0, positions=ALL)], prefix=lm.prefix(head))
    with pytest.raises(SteerlabError, match="logits=True or a number"):
        lm.forward_many(b, [[]], logits=False)


def test_forward_many_reduce_sees_each_sets_logits(lm):
    b = lm.tokenize(PROMPTS)
    sets = [steer({Site(1): _direction(lm)}, c) for c in (0.0, 2.0)]
    losses = lm.token_losses_many(b, sets)
    for edits, (nll, mask) in zip(sets, losses, strict=True):
        ref_nll, ref_mask = lm.token_losses(b, edits=edits)
        torch.testing.assert_close(nll, ref_nll, rtol=1e-5, atol=1e-5)
        assert torch.equal(mask, ref_mask)


def test_early_exit_records_the_same_activations(lm):
    b = lm.tokenize(PROMPTS)
    sites = [Site(0, "mlp_in"), Site(1), Site(2, "resid_pre"), Site(2, "attn_out")]
    full = lm.forward(b, record=sites)
    out = lm.forward(b, record=sites, logits=False)
    assert out.logits is None
    for s in sites:
        torch.testing.assert_close(out.activations[s], full.activations[s], rtol=0, atol=0)
    recorded = lm.record(b, [Site(1)])
    torch.testing.assert_close(recorded[Site(1)], full.activations[Site(1)], rtol=0, atol=0)


def test_early_exit_really_stops(lm):
    """No block after the deepest recorded site's runs (a pre-hook on every block sees which ones start)."""
    b = lm.tokenize(PROMPTS)
    blocks = lm.tl.blocks if lm.kind == "tl" else lm.hf_model.model.layers
    ran: list[int] = []
    handles = [blk.register_forward_pre_hook(lambda m, i, n=n: ran.append(n)) for n, blk in enumerate(blocks)]
    try:
        lm.forward(b, record=[Site(1)], logits=False)
    finally:
        for h in handles:
            h.remove()
    assert ran == [0, 1]


def test_last_k_logits_equal_the_tail_of_all_logits(lm):
    b = lm.tokenize(PROMPTS)
    edits = steer({Site(1): _direction(lm)}, 2.0)
    full = lm.forward(b, edits=edits).logits
    for k in (1, 3):
        torch.testing.assert_close(lm.forward(b, edits=edits, logits=k).logits, full[:, -k:], rtol=1e-5, atol=1e-6)
    with pytest.raises(SteerlabError, match="logits must be"):
        lm.forward(b, logits=0)
    with pytest.raises(SteerlabError, match="computes nothing"):
        lm.forward(b, logits=False)


def test_a_shallow_prefix_serves_early_reads_and_refuses_logits(lm):
    b = lm.tokenize(PROMPTS)
    head, tail = _split(b)
    full = lm.forward(b, record=[Site(1)]).activations[Site(1)]
    pre = lm.prefix(head, stop_at=Site(1))
    assert pre.blocks == 2
    out = lm.forward(tail, prefix=pre, record=[Site(1)], logits=False)
    torch.testing.assert_close(out.activations[Site(1)], full[:, -TAIL:], rtol=1e-5, atol=1e-5)
    with pytest.raises(SteerlabError, match="ran only 2 of 4 blocks"):
        lm.forward(tail, prefix=pre)
    with pytest.raises(SteerlabError, match="ran only 2 of 4 blocks"):
        lm.forward(tail, prefix=pre, record=[Site(2)], logits=False)
    assert lm.prefix(head, stop_at=Site(-1)).blocks is None  # every block: a full prefix


@pytest.mark.parametrize("site", [Site(2), Site(2, "attn_out")])
def test_forward_many_runs_the_trunk_once(lm, site):
    """With k sets, the blocks before the edit see the batch once; the blocks after it see k copies (rows
    counted by a hook on each block's attention module, which a skipped block never calls)."""
    b = lm.tokenize(PROMPTS)
    blocks = lm.tl.blocks if lm.kind == "tl" else lm.hf_model.model.layers
    attns = [blk.attn if lm.kind == "tl" else blk.self_attn for blk in blocks]
    rows: dict[int, list[int]] = {}
    handles = [a.register_forward_hook(lambda m, i, o, n=n: rows.setdefault(n, []).append(len(o[0]) if
                                       isinstance(o, tuple) else len(o))) for n, a in enumerate(attns)]  # fmt: skip
    try:
        lm.forward_many(b, [steer({site: _direction(lm)}, c) for c in (1.0, 2.0, 3.0)], logits=1)
    finally:
        for h in handles:
            h.remove()
    n, k = len(PROMPTS), 3
    shared = 3 if site.kind == "resid_post" else 2
    assert rows == {i: [n] if i < shared else [n * k] for i in range(4)}


# ---------------------------------------------------------------- tasks and sweeps on the shared trunk
PAIRS = [
    SimpleNamespace(prompt=q, positive=a, negative=b, meta={"id": f"q{i}"})
    for i, (q, a, b) in enumerate([("Pick (A) or (B)?", "(A)", "(B)"), ("Is it so?", "Yes", "No"),
                                   ("Choose: (A) x (B) y", "(B)", "(A)"), ("Ok?", "No", "Yes"),
                                   ("Really (A) or (B)?", "(A)", "(B)")])
]  # fmt: skip
TEXTS = ["what a lovely happy day", "such a sad gloomy night", "sunny and bright", "grey cold rain"]
STRENGTHS = (-4.0, -1.0, 2.0, 5.0)


def _vector(lm, layers=(1, 2)):
    g = torch.Generator().manual_seed(0)
    dirs = {Site(L): torch.randn(lm.d_model, generator=g) for L in layers}
    return SteeringVector(dirs, Provenance(model=lm.name, d_model=lm.d_model, n_layers=lm.n_layers, method="rand"))


def _values(frames):
    return [f.value.to_numpy() for f in frames]


@pytest.mark.parametrize("positions", [ALL, LAST_PROMPT, AFTER_INSTRUCTION, ASSISTANT, USER, SYSTEM,
                                       Positions.span(-3)])  # fmt: skip
def test_choice_task_evaluate_many_equals_evaluate(lm, positions):
    """Every position kind, the template spans resolved per batch (A/B and Yes/No items batch apart), on the
    cached prefix where the positions allow it; the oracle is a full forward per edit set."""
    task = ChoiceTask.from_pairs(lm, PAIRS, system="Be brief.", batch_size=2)
    sets = [steer(_vector(lm), c, positions=positions) for c in STRENGTHS] + [[]]
    expected = _values([task.evaluate(e) for e in sets])
    reuse = positions.in_tail
    for got in (task.evaluate_many(sets), task.evaluate_many(sets, reuse_prefix=reuse)):
        for g, e in zip(_values(got), expected, strict=True):
            assert g == pytest.approx(e, abs=1e-5)
    assert not expected[0] == pytest.approx(expected[-1], abs=1e-3)  # the edits do something


@pytest.mark.parametrize("make", [lambda lm: PerplexityTask(lm, TEXTS, batch_size=3),
                                  lambda lm: TextLoglikTask(lm, TEXTS, [1, 0, 1, 0], list(range(4)), batch_size=3)])
def test_text_tasks_evaluate_many_equals_evaluate(lm, make):
    task = make(lm)
    sets = [steer(_vector(lm), c) for c in STRENGTHS]
    for g, e in zip(_values(task.evaluate_many(sets)), _values([task.evaluate(s) for s in sets]), strict=True):
        assert g == pytest.approx(e, abs=1e-5)


@pytest.mark.parametrize("positions", [ALL, AFTER_INSTRUCTION])
def test_a_grouped_sweep_equals_one_cell_at_a_time(lm, positions):
    task = ChoiceTask.from_pairs(lm, [p for p in PAIRS if p.positive.startswith("(")], batch_size=2)  # one format
    kw = dict(coeffs=[*STRENGTHS, 0.0], positions=positions, controls=2, progress=False)
    alone = sweep(lm, {"v": _vector(lm)}, task, group=1, **kw)
    grouped = sweep(lm, {"v": _vector(lm)}, task, **kw)
    pd.testing.assert_frame_equal(grouped.drop(columns="value"), alone.drop(columns="value"))
    assert grouped.value.to_numpy() == pytest.approx(alone.value.to_numpy(), abs=1e-5)


def test_a_grouped_sweep_resumes_a_half_done_group(lm, tmp_path):
    """Cells of a group stored by an earlier run are not recomputed; each cell still has its own file."""
    task = ChoiceTask.from_pairs(lm, PAIRS)
    first = []
    sweep(lm, {"v": _vector(lm)}, task, coeffs=[-1.0, 2.0], out=tmp_path, progress=False, on_cell=first.append)
    calls = []
    task_many = task.evaluate_many
    task.evaluate_many = lambda sets, **kw: calls.append(len(sets)) or task_many(sets, **kw)
    computed = []
    resumed = sweep(lm, {"v": _vector(lm)}, task, coeffs=[-1.0, 2.0, 5.0, 0.0], out=tmp_path, progress=False,
                    on_cell=computed.append)  # fmt: skip
    assert len(first) == 4 and len(computed) == 3  # per layer: the new strength; then the unsteered cell
    assert calls == [1, 1, 1]  # one new cell per layer, then the unsteered one: each evaluated alone
    assert len(list((tmp_path / "cells").glob("*.csv"))) == 2 * 3 + 1
    del task.evaluate_many
    fresh = sweep(lm, {"v": _vector(lm)}, task, coeffs=[-1.0, 2.0, 5.0, 0.0], progress=False)
    assert resumed.value.to_numpy() == pytest.approx(fresh.value.to_numpy(), abs=1e-5)


def test_sweep_groups_cells_by_site_and_refuses_a_bad_group(lm):
    task = ChoiceTask.from_pairs(lm, PAIRS)
    seen = []
    task_many = task.evaluate_many
    task.evaluate_many = lambda sets, **kw: seen.append(len(sets)) or task_many(sets, **kw)
    sweep(lm, {"v": _vector(lm)}, task, coeffs=[*STRENGTHS, 0.0], controls=1, group=5, progress=False)
    assert seen == [5, 3, 5, 3, 1]  # per site: 4 strengths of the vector + 4 of the random direction, by 5; base
    with pytest.raises(SteerlabError, match="group must be a positive int"):
        sweep(lm, {"v": _vector(lm)}, task, coeffs=[1.0], group=0, progress=False)
