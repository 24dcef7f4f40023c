"""Backend unit tests on a tiny random Llama, run once per backend (exact oracles, no downloads)."""

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.interventions import ablate, add, clamp, steer
from steerlab.sites import ALL, GENERATED, LAST_PROMPT, PROMPT, SITE_KINDS, Batch, Edit, Positions, Site

PROMPTS = ["hi", "a longer prompt here"]


def formatted(lm):
    return [lm.chat(p) for p in PROMPTS]


def test_steered_equals_base_plus_v(tiny):
    """The recorded activation at the edited site is exactly base + alpha * v."""
    b = tiny.tokenize(formatted(tiny))
    v = torch.randn(tiny.d_model)
    for kind in SITE_KINDS:
        site = Site(1, kind)
        base = tiny.forward(b, record=[site]).activations[site]
        steered = tiny.forward(b, edits=add(site, v, 3.0), record=[site]).activations[site]
        torch.testing.assert_close(steered, base + 3.0 * v.to(base.device), rtol=0, atol=1e-6)


def test_edit_changes_downstream_logits(tiny):
    b = tiny.tokenize(formatted(tiny))
    v = torch.randn(tiny.d_model) * 5
    assert not torch.allclose(tiny.logits(b), tiny.logits(b, edits=add(Site(0), v)))


def test_resid_pre_of_next_layer_is_resid_post(tiny):
    b = tiny.tokenize(formatted(tiny))
    acts = tiny.record(b, [Site(0, "resid_post"), Site(1, "resid_pre")])
    torch.testing.assert_close(acts[Site(0, "resid_post")], acts[Site(1, "resid_pre")], rtol=0, atol=0)


def test_ablate_and_clamp_projections(tiny):
    b = tiny.tokenize(formatted(tiny))
    v = torch.randn(tiny.d_model)
    u = (v / v.norm()).to(tiny.device)
    site = Site(1)
    ablated = tiny.forward(b, edits=ablate(site, v), record=[site]).activations[site]
    torch.testing.assert_close(ablated @ u, torch.zeros(ablated.shape[:2], device=tiny.device), rtol=0, atol=1e-5)
    clamped = tiny.forward(b, edits=clamp(site, v, 7.0), record=[site]).activations[site]
    torch.testing.assert_close(clamped @ u, torch.full(clamped.shape[:2], 7.0, device=tiny.device), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "positions,expected",
    [
        (ALL, lambda pos, P, pad: torch.ones_like(pos, dtype=torch.bool)),
        (PROMPT, lambda pos, P, pad: pos < P),
        (LAST_PROMPT, lambda pos, P, pad: pos == P - 1),
        (Positions.from_index(2), lambda pos, P, pad: pos >= pad[:, None] + 2),
        (Positions.from_index(-3), lambda pos, P, pad: pos >= P - 3),
    ],
)
def test_positions_touch_exactly_the_chosen_tokens(tiny, positions, expected):
    b = tiny.tokenize(formatted(tiny))
    v = torch.ones(tiny.d_model)
    site = Site(0)
    base = tiny.forward(b, record=[site]).activations[site]
    steered = tiny.forward(b, edits=add(site, v, 1.0, positions), record=[site]).activations[site]
    changed = (steered - base).abs().sum(-1) > 0
    pos = torch.arange(b.prompt_len, device=tiny.device)[None].expand(len(b), -1)
    assert torch.equal(changed, expected(pos, b.prompt_len, b.n_pad))


def test_generated_positions_leave_prompt_logits_alone(tiny):
    """In a plain forward, 'generated' positions touch nothing: an error, or (if allowed) the same logits."""
    b = tiny.tokenize(formatted(tiny))
    edit = add(Site(0), torch.randn(tiny.d_model) * 5, 1.0, GENERATED)
    with pytest.raises(SteerlabError, match="steering did nothing: edit 0 at resid_post.0 on generated"):
        tiny.logits(b, edits=edit)
    torch.testing.assert_close(tiny.logits(b), tiny.logits(b, edits=edit, allow_noop=True))
    assert tiny.last_edit_counts.per_forward == ((0,),)


@pytest.mark.parametrize("positions", [ALL, LAST_PROMPT, GENERATED, Positions.from_index(-2)])
def test_generation_with_cache_equals_without(tiny, positions):
    v = torch.randn(tiny.d_model) * 4
    edits = steer({Site(1): v}, 1.0, positions=positions)
    with_cache = tiny.generate_ids(formatted(tiny), edits=edits, max_new_tokens=8, use_cache=True)
    without = tiny.generate_ids(formatted(tiny), edits=edits, max_new_tokens=8, use_cache=False)
    assert torch.equal(with_cache, without)


def test_generated_only_steering_changes_text(tiny):
    v = torch.randn(tiny.d_model) * 20
    plain = tiny.generate_ids(formatted(tiny), max_new_tokens=8)
    steered = tiny.generate_ids(formatted(tiny), edits=add(Site(0), v, 1.0, GENERATED), max_new_tokens=8)
    b = tiny.tokenize(formatted(tiny))
    assert torch.equal(plain[:, : b.prompt_len + 1], steered[:, : b.prompt_len + 1])  # first new token: prompt only
    assert not torch.equal(plain, steered)


def test_prefix_reuse_equals_full_forward(tiny):
    b = tiny.tokenize(formatted(tiny))
    v = torch.randn(tiny.d_model) * 3
    edits = add(Site(1), v, 2.0, LAST_PROMPT)
    full = tiny.forward(b, edits=edits, record=[Site(1)])
    pre = tiny.prefix(Batch(b.input_ids[:, :-1], b.attention_mask[:, :-1]))
    for _ in range(2):  # the prefix is reusable
        out = tiny.forward(
            Batch(b.input_ids[:, -1:], b.attention_mask[:, -1:]), prefix=pre, edits=edits, record=[Site(1)]
        )
        torch.testing.assert_close(out.logits[:, -1], full.logits[:, -1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            out.activations[Site(1)][:, -1], full.activations[Site(1)][:, -1], rtol=1e-5, atol=1e-5
        )


def test_edits_reaching_into_a_cached_prefix_are_refused(tiny):
    b = tiny.tokenize(formatted(tiny))
    pre = tiny.prefix(Batch(b.input_ids[:, :-1], b.attention_mask[:, :-1]))
    with pytest.raises(SteerlabError, match="touches the cached prefix"):
        tiny.forward(
            Batch(b.input_ids[:, -1:], b.attention_mask[:, -1:]),
            prefix=pre,
            edits=add(Site(1), torch.ones(tiny.d_model)),
        )


@pytest.mark.parametrize("call", ["forward", "generate", "prefix_forward"])
def test_no_hook_leaks_when_an_edit_raises(tiny, call):
    def boom(h):
        raise RuntimeError("boom inside the edit")

    edit = Edit(Site(1), boom)
    before = tiny.n_hooks()
    prompts = formatted(tiny)
    with pytest.raises(RuntimeError, match="boom"):
        if call == "forward":
            tiny.forward(prompts, edits=edit, record=[Site(0, "mlp_in"), Site(1)])
        elif call == "generate":
            tiny.generate(prompts, edits=[edit, Edit(Site(0, "mlp_in"), boom)], max_new_tokens=3)
        else:
            b = tiny.tokenize(prompts)
            pre = tiny.prefix(Batch(b.input_ids[:, :-1], b.attention_mask[:, :-1]))
            tiny.forward(
                Batch(b.input_ids[:, -1:], b.attention_mask[:, -1:]), prefix=pre, edits=Edit(Site(1), boom, LAST_PROMPT)
            )
    assert tiny.n_hooks() == before == 0
    # and the model still runs unedited afterwards
    torch.testing.assert_close(tiny.logits(prompts), tiny.logits(prompts))


def test_bad_layer_names_the_range(tiny):
    with pytest.raises(SteerlabError, match=r"layer 5 is out of range .* \(2 layers: 0\.\.1\)"):
        tiny.record(formatted(tiny), [Site(5)])


def test_negative_layers_count_from_the_end(tiny):
    acts = tiny.record(formatted(tiny), [Site(-1)])
    assert list(acts) == [Site(1)]


def test_dimension_mismatch_is_explained(tiny):
    with pytest.raises(SteerlabError, match="made for another model"):
        tiny.logits(formatted(tiny), edits=add(Site(0), torch.ones(tiny.d_model + 1)))


def test_nan_direction_is_refused():
    with pytest.raises(SteerlabError, match="NaN"):
        add(Site(0), torch.tensor([1.0, float("nan")]))


def test_site_parsing_and_errors():
    assert Site.parse("mlp_out.3") == Site(3, "mlp_out")
    assert Site.parse("7") == Site(7)
    with pytest.raises(SteerlabError, match="valid kinds"):
        Site(1, "resid_mid")
    with pytest.raises(SteerlabError, match="write it as"):
        Site.parse("resid_post.twelve")


def test_left_padding_does_not_change_a_prompt(tiny):
    """A prompt's logits are the same alone and left-padded next to a longer one."""
    prompts = formatted(tiny)
    alone = tiny.logits([prompts[0]])[0]
    padded_batch = tiny.tokenize(prompts)
    padded = tiny.logits(padded_batch)[0, padded_batch.n_pad[0] :]
    torch.testing.assert_close(padded, alone, rtol=1e-4, atol=1e-4)


def test_backends_agree_on_tiny_model(tiny_pair):
    tl, nn = tiny_pair
    prompts = formatted(tl)
    sites = [Site(L, k) for L in range(2) for k in SITE_KINDS]
    v = torch.randn(tl.d_model) * 3
    edits = add(Site(0, "attn_out"), v)
    a, b = tl.forward(prompts, record=sites, edits=edits), nn.forward(prompts, record=sites, edits=edits)
    mask = tl.tokenize(prompts).attention_mask.bool()
    for s in sites:
        torch.testing.assert_close(a.activations[s][mask], b.activations[s][mask], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.logits[mask], b.logits[mask], rtol=1e-4, atol=1e-5)
    assert tl.generate(prompts, edits=edits, max_new_tokens=6) == nn.generate(prompts, edits=edits, max_new_tokens=6)


@pytest.mark.parametrize("positions", [ALL, PROMPT, GENERATED, LAST_PROMPT, Positions.from_index(2),
                                       Positions.from_index(-2)])  # fmt: skip
def test_edit_runner_reads_nothing_back_from_the_device(positions, monkeypatch):
    """Prefill and decode steps apply the edit at exactly the chosen positions, count the real (non-pad)
    ones, and never read a tensor back to the host (on a GPU that would be a sync per edit per step)."""
    from steerlab.backends.base import EditRunner, collect_counts

    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # first row: two pads
    batch = Batch(torch.zeros_like(mask), mask)
    edit = Edit(Site(0), lambda h: h + 1.0, positions)
    runner = EditRunner([edit], batch, incremental=True)
    steps = [torch.zeros(2, 5, 3)] + [torch.zeros(2, 1, 3) for _ in range(3)]  # prefill, three decode steps
    for name in ("__bool__", "__int__", "__float__", "item", "tolist", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, lambda *a, name=name, **k: pytest.fail(f"host read: {name}"))
    outs = [runner(h) for h in steps]
    monkeypatch.undo()
    counts = collect_counts([edit], [runner]).per_forward[0]
    offset = 0
    for t, (h, out) in enumerate(zip(steps, outs, strict=True)):
        want = positions.mask(offset, h.shape[1], 5, batch.n_pad)
        assert torch.equal(out[..., 0] == 1.0, want)
        real = torch.arange(offset, offset + h.shape[1])[None] >= batch.n_pad[:, None]
        assert counts[t] == int((want & real).sum())
        offset += h.shape[1]


def test_edit_counts_of_a_generation_per_step(tiny):
    """The prefill touches the last prompt token of each row; each decode step one generated token per row."""
    b = tiny.tokenize(formatted(tiny))
    v = torch.randn(tiny.d_model)
    edits = [add(Site(1), v, 1.0, LAST_PROMPT), add(Site(0, "mlp_out"), v, 0.0, GENERATED)]  # alpha 0 counts too
    ids = tiny.generate_ids(b, edits=edits, max_new_tokens=4)
    n = ids.shape[1] - b.prompt_len
    counts = tiny.last_edit_counts
    assert n > 1 and counts.per_forward == ((2,) + (0,) * (n - 1), (0,) + (2,) * (n - 1))
    assert counts.totals == (2, 2 * (n - 1))
    frame = counts.frame()
    assert list(frame.columns) == ["edit", "site", "positions", "forward", "count"] and len(frame) == 2 * n
    assert frame.groupby("positions")["count"].sum().to_dict() == {"last_prompt": 2, "generated": 2 * (n - 1)}
    out = tiny.forward(b, edits=add(Site(0), v, 1.0, Positions.from_index(2)))
    assert out.edit_counts.per_forward == ((int(b.attention_mask.sum()) - 2 * len(b),),)
