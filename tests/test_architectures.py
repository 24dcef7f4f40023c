"""The architecture matrix: tiny random models of every supported architecture, through both backends.

Each architecture is the real Hugging Face class at a tiny size (2 layers, d_model 32, sliding windows of
8 tokens where the architecture has them; `steerlab.testing.make_tiny_model`). The prompts are longer
than the windows, so windowed attention, its key/value cache and prefix reuse are all exercised.
"""

import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.interventions import add
from steerlab.sites import ALL, LAST_PROMPT, SITE_KINDS, Batch, Site
from steerlab.testing import TINY_ARCHITECTURES, make_tiny_model, tiny_backend, tiny_config

PROMPTS = ["the quick brown fox jumps over the dog", "a shorter prompt, still > 8"]  # both beyond the window
WINDOW = 8
FINAL_NORM = {"gpt2": "ln_f", "gpt_neox": "final_layer_norm"}  # the others call it `norm`


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("archs")
    return {arch: make_tiny_model(root / arch, arch=arch, sliding_window=WINDOW) for arch in TINY_ARCHITECTURES}


_backends: dict = {}


@pytest.fixture(params=TINY_ARCHITECTURES)
def arch(request):
    return request.param


def loaded(arch, kind, folders, device):
    if (arch, kind) not in _backends:
        _backends[arch, kind] = tiny_backend(kind, folders[arch], device)
    return _backends[arch, kind]


@pytest.fixture
def lm(arch, backend_kind, folders, device):
    return loaded(arch, backend_kind, folders, device)


def hf_reference(folder, device):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").to(device).eval()


def test_tiny_configs_have_windows_shorter_than_the_prompts(arch):
    cfg = tiny_config(arch, vocab_size=100)
    window = getattr(cfg, "sliding_window", None)
    assert window in (None, WINDOW)
    assert cfg.num_hidden_layers == 2


def test_resid_post_equals_hf_hidden_states(lm, arch, folders):
    """``resid_post[L]`` is HF ``hidden_states[L + 1]``; the last layer's, once HF's final norm is applied."""
    hf = hf_reference(folders[arch], lm.device)
    b = lm.tokenize(PROMPTS)
    sites = [Site(L) for L in range(lm.n_layers)]
    acts = lm.record(b, sites)
    with torch.no_grad():
        out = hf(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                 output_hidden_states=True)  # fmt: skip
        final_norm = getattr(hf.base_model, FINAL_NORM.get(arch, "norm"))
        last = final_norm(acts[sites[-1]])
    real = b.attention_mask.bool()
    for L in range(lm.n_layers - 1):
        torch.testing.assert_close(acts[Site(L)][real], out.hidden_states[L + 1][real], rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(last[real], out.hidden_states[-1][real], rtol=1e-4, atol=2e-5)


def test_every_site_kind_is_a_real_module_and_the_blocks_add_up(lm):
    """Each site reads an existing module; resid_post = resid_pre + attn_out + mlp_out in every layer."""
    if lm.kind == "nnsight":
        for kind in SITE_KINDS:
            module = lm.hook_name(Site(0, kind)).rsplit(".", 1)[0]
            assert lm.hf_model.get_submodule(module) is not None
    sites = [Site(L, k) for L in range(lm.n_layers) for k in SITE_KINDS]
    acts = lm.record(PROMPTS, sites)
    for L in range(lm.n_layers):
        a = {k: acts[Site(L, k)] for k in SITE_KINDS}
        assert all(x.shape == a["resid_post"].shape for x in a.values())
        torch.testing.assert_close(a["resid_post"], a["resid_pre"] + a["attn_out"] + a["mlp_out"], rtol=1e-4, atol=1e-4)
        assert not torch.allclose(a["mlp_in"], a["resid_pre"])  # a normalised input, not the residual itself


@pytest.mark.backends("tl", "nnsight")
def test_backends_agree_at_every_site(arch, folders, device):
    """The nnsight layout table and TransformerLens's own hooks read the same activations."""
    tl, nn = loaded(arch, "tl", folders, device), loaded(arch, "nnsight", folders, device)
    sites = [Site(L, k) for L in range(2) for k in SITE_KINDS]
    edit = add(Site(0, "attn_out"), torch.randn(tl.d_model))
    a, b = tl.forward(PROMPTS, record=sites, edits=edit), nn.forward(PROMPTS, record=sites, edits=edit)
    real = tl.tokenize(PROMPTS).attention_mask.bool()
    for s in sites:
        torch.testing.assert_close(a.activations[s][real], b.activations[s][real], rtol=1e-4, atol=2e-5)
    torch.testing.assert_close(a.logits[real], b.logits[real], rtol=1e-4, atol=5e-5)


def test_cached_steered_generation_equals_uncached_and_counts_every_step(lm):
    b = lm.tokenize(PROMPTS)
    edit = add(Site(1), torch.randn(lm.d_model) * 4, 1.0, ALL)
    cached = lm.generate_ids(b, edits=edit, max_new_tokens=6, use_cache=True)
    counts = lm.last_edit_counts.per_forward[0]
    uncached = lm.generate_ids(b, edits=edit, max_new_tokens=6, use_cache=False)
    assert torch.equal(cached, uncached)
    n_new = cached.shape[1] - b.prompt_len
    assert counts == (int(b.attention_mask.sum()),) + (len(b),) * (n_new - 1)  # prefill, then one per row per step


def test_prefix_reuse_equals_full_forward_beyond_the_window(lm):
    """A cached prefix longer than the sliding window is reusable, and a 3-token suffix sees what a full pass sees."""
    b = lm.tokenize(PROMPTS)
    assert b.prompt_len - 3 > WINDOW
    sites = [Site(L, k) for L in range(lm.n_layers) for k in SITE_KINDS]
    edit = add(Site(1, "mlp_out"), torch.randn(lm.d_model) * 3, 2.0, LAST_PROMPT)
    full = lm.forward(b, edits=edit, record=sites)
    pre = lm.prefix(Batch(b.input_ids[:, :-3], b.attention_mask[:, :-3]))
    suffix = Batch(b.input_ids[:, -3:], b.attention_mask[:, -3:])
    for _ in range(2):  # reusable: the suffix's keys and values do not stay in the prefix's cache
        out = lm.forward(suffix, prefix=pre, edits=edit, record=sites)
        torch.testing.assert_close(out.logits, full.logits[:, -3:], rtol=1e-4, atol=2e-5)
        for s in sites:
            torch.testing.assert_close(out.activations[s], full.activations[s][:, -3:], rtol=1e-4, atol=2e-5)
        assert out.edit_counts.per_forward == ((len(b),),)


@pytest.mark.backends("tl")
def test_a_local_folder_named_like_an_official_model_loads_in_tl(tmp_path, device):
    """TransformerLens guesses Llama from a folder's name and then crashes; steerlab reads the config instead."""
    folder = make_tiny_model(tmp_path / "Llama-2-7b-chat-hf")
    lm = tiny_backend("tl", folder, device)
    assert lm.tl_name is None  # a tiny model is no official one
    assert lm.logits(lm.tokenize(PROMPTS)).isfinite().all()


LLAMA2_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                 vocab_size=32000, rms_norm_eps=1e-5)  # fmt: skip
GEMMA2_9B = dict(hidden_size=3584, intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
                 num_key_value_heads=8, head_dim=256, vocab_size=256000, query_pre_attn_scalar=256,
                 sliding_window=4096)  # fmt: skip
GEMMA3_270M = dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=256, vocab_size=262144, query_pre_attn_scalar=256,
                   sliding_window=512)  # fmt: skip


@pytest.mark.backends("tl")
@pytest.mark.parametrize(
    "config,kwargs,official",
    [
        ("LlamaConfig", LLAMA2_7B, "meta-llama/Llama-2-7b"),
        ("Gemma2Config", GEMMA2_9B, "google/gemma-2-9b"),
        ("Gemma3TextConfig", GEMMA3_270M, "google/gemma-3-270m"),
        ("LlamaConfig", {**LLAMA2_7B, "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}}, "codellama/"),
        ("LlamaConfig", {**LLAMA2_7B, "rope_parameters": {"rope_type": "default", "rope_theta": 5e5}}, None),
    ],
)
def test_configs_map_to_official_transformer_lens_names(config, kwargs, official):
    """Sizes, norms, rotary settings and windows decide the official name (weights on the meta device)."""
    import transformers

    from steerlab.backends.tl_backend import official_tl_name, tl_config_dict

    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(getattr(transformers, config)(**kwargs))
    name = official_tl_name(tl_config_dict(model))
    assert name == official if official is None else name.startswith(official)


@pytest.mark.backends("tl")
def test_tl_conversion_keeps_the_device_for_the_converted_model(folders):
    """The HF model stays where it was given (the CPU); only the TransformerLens copy goes to the device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from steerlab.backends.tl_backend import TLBackend

    hf = AutoModelForCausalLM.from_pretrained(folders["llama"])
    tok = AutoTokenizer.from_pretrained(folders["llama"])
    lm = TLBackend(name="tiny", hf_model=hf, tokenizer=tok, device=torch.device("meta"), dtype=torch.float32)
    assert lm.hf_model is None
    assert {p.device.type for p in lm.tl.parameters()} == {"meta"}
    assert {p.device.type for p in hf.parameters()} == {"cpu"}


def test_unknown_architectures_are_refused_with_the_supported_list(backend_kind):
    from transformers import AutoModelForCausalLM, FalconConfig

    from steerlab.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = FalconConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    hf = AutoModelForCausalLM.from_config(cfg)
    common = dict(name="falcon", hf_model=hf, tokenizer=tok, device=torch.device("cpu"), dtype=torch.float32)
    if backend_kind == "nnsight":
        from steerlab.backends.nnsight_backend import NNsightBackend

        with pytest.raises(SteerlabError, match=r"does not know .*'falcon'.*supported: llama, mistral"):
            NNsightBackend(**common)
    else:
        from steerlab.backends.tl_backend import TLBackend

        with pytest.raises(SteerlabError, match=r"does not support FalconForCausalLM; supported: LlamaForCausalLM"):
            TLBackend(**common)
