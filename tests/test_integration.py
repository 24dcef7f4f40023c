"""Integration tests on the real embedded model (SmolLM2-135M-Instruct): backend parity and hooks."""

import pytest
import torch

from steerlab.interventions import add
from steerlab.sites import GENERATED, SITE_KINDS, Edit, Site

pytestmark = pytest.mark.slow

PROMPTS = ["Is the sky blue?", "Tell me a short story about a dragon who lives in a cave."]


@pytest.fixture(scope="module")
def real_pair_fp64():
    from steerlab.models import load_model

    return tuple(load_model(backend=k, dtype=torch.float64) for k in ("tl", "nnsight"))


def test_backends_give_the_same_activations_at_every_site(real_pair_fp64):
    """Same math, checked in float64 (in fp32, op-order rounding alone reaches 3e-4 by layer 29)."""
    tl, nn = real_pair_fp64
    sites = [Site(L, k) for L in range(tl.n_layers) for k in SITE_KINDS]
    for prompt in PROMPTS:  # unpadded: fully masked pad rows give NaN in float64 softmax
        a, b = tl.record(tl.chat(prompt), sites), nn.record(tl.chat(prompt), sites)
        for s in sites:
            # atol 1e-4 plus a relative term for large entries (up to ~24,000 at the attention sink). HF's RMSNorm
            # computes in fp32 even for fp64 inputs, so entries agree to accumulated fp32 rounding only: measured
            # worst cases 1.3e-4 absolute (on an entry of 3.3, last layer) and 4e-5 relative.
            torch.testing.assert_close(a[s], b[s], atol=1e-4, rtol=1e-4, msg=lambda m, s=s: f"{s}: {m}")


def test_tl_resid_post_is_hf_hidden_state_plus_one(real_pair):
    tl, nn = real_pair
    batch = tl.tokenize([tl.chat(PROMPTS[0])])
    with torch.no_grad():
        hidden = nn.hf_model(input_ids=batch.input_ids, output_hidden_states=True).hidden_states
    acts = tl.record(batch, range(tl.n_layers - 1))  # HF's last hidden state has the final norm applied
    for L in range(tl.n_layers - 1):
        # same math, fp32 rounding: entries reach ~25,000 at the attention sink, and CPUs differ in their kernels
        torch.testing.assert_close(acts[Site(L)], hidden[L + 1], atol=1e-3, rtol=1e-4)


def test_backends_give_the_same_steered_logits_and_text(real_pair):
    tl, nn = real_pair
    prompts = [tl.chat(p) for p in PROMPTS]
    torch.manual_seed(0)
    v = torch.randn(tl.d_model)
    v = 8.0 * v / v.norm()
    edits = [add(Site(12), v), add(Site(5, "mlp_out"), v, 0.5, GENERATED)]
    mask = tl.tokenize(prompts).attention_mask.bool()
    # the GENERATED edit has no token to touch in a plain forward: allowed here, it matters in generation
    la, lb = tl.logits(prompts, edits=edits, allow_noop=True), nn.logits(prompts, edits=edits, allow_noop=True)
    assert (la - tl.logits(prompts))[mask].abs().max() > 1.0  # the edit matters
    torch.testing.assert_close(la[mask], lb[mask], atol=1e-3, rtol=1e-4)
    text_tl = tl.generate(prompts, edits=edits, max_new_tokens=20)
    text_nn = nn.generate(prompts, edits=edits, max_new_tokens=20)
    assert text_tl == text_nn
    assert text_nn != nn.generate(prompts, max_new_tokens=20)


def test_unsteered_generation_equals_hf_generate(real_pair):
    _, nn = real_pair
    batch = nn.tokenize([nn.chat(PROMPTS[0])])
    ids = nn.generate_ids(batch, edits=add(Site(3), torch.zeros(nn.d_model)), max_new_tokens=15)
    with torch.no_grad():
        ref = nn.hf_model.generate(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            max_new_tokens=15,
            do_sample=False,
            pad_token_id=nn.tokenizer.pad_token_id,
        )
    assert torch.equal(ids, ref)


def test_no_hooks_left_after_a_raise_on_the_real_model(real, backend_kind):
    def boom(h):
        raise RuntimeError("boom")

    before = real.n_hooks()  # transformers installs its own output-capturing hooks once hidden states are asked for
    with pytest.raises(RuntimeError):
        real.generate(real.chat("Hi"), edits=[add(Site(2), torch.ones(real.d_model)), Edit(Site(20, "mlp_in"), boom)])
    assert real.n_hooks() == before


def test_gemma_loads_in_both_backends_and_they_agree():
    """The second embedded size: Gemma-3-270M base (18 layers, d_model 640, Gemma's normalised block outputs)."""
    from steerlab.models import load_model

    tl, nn = (load_model("gemma-3-270m", backend=k) for k in ("tl", "nnsight"))
    assert (tl.n_layers, tl.d_model) == (nn.n_layers, nn.d_model) == (18, 640)
    prompts = ["The capital of France is", "Once upon a time"]
    sites = [Site(L, k) for L in (0, 9, 17) for k in SITE_KINDS]
    a, b = tl.record(prompts, sites), nn.record(prompts, sites)
    mask = tl.tokenize(prompts).attention_mask.bool()
    for s in sites:
        # Gemma's residual entries reach ~90,000, so fp32 rounding is judged against each site's scale:
        # measured worst case 2.5e-4 absolute where the site's largest entry is ~88,000 (3e-9 of it)
        err, scale = float((a[s][mask] - b[s][mask]).abs().max()), float(b[s][mask].abs().max())
        assert err <= 1e-4 + 1e-5 * scale, f"{s}: max abs difference {err:.3g} at scale {scale:.3g}"
    v = torch.randn(640, generator=torch.Generator().manual_seed(0)) * 200
    edits = add(Site(6), v)
    assert tl.generate(prompts, edits=edits, max_new_tokens=8) == nn.generate(prompts, edits=edits, max_new_tokens=8)
