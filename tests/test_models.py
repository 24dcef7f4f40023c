"""Model loading: local folders, names, device and dtype choice, pass-through to transformers, wrap, clear errors."""

import copy
import os
import shutil

import pytest
import torch

import steerlab as sl
from steerlab.errors import SteerlabError
from steerlab.models import EMBEDDED, load_model, pick_device, pick_dtype, resolve_name


def test_local_folder_loads_through_both_backends(tiny_folder, backend_kind):
    lm = load_model(str(tiny_folder), backend=backend_kind, device="cpu")
    assert (lm.n_layers, lm.d_model, lm.kind) == (2, 32, backend_kind)
    assert lm.weight_processing == "none"
    assert lm.tokenizer.padding_side == "left"


def test_no_bos_is_added_where_the_tokenizer_adds_none(tiny):
    batch = tiny.tokenize(["ab"])
    assert batch.input_ids.shape[1] == 2


def test_chat_helper_opens_the_assistant_turn(tiny):
    text = tiny.chat("Is it?", system="Be brief.", assistant_prefix="(")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n(")


def test_aliases_and_defaults():
    assert resolve_name(None) == "smollm2-135m-instruct"
    assert resolve_name("smollm2") == "smollm2-135m-instruct"
    assert set(EMBEDDED) == {"smollm2-135m-instruct", "gemma-3-270m"}


@pytest.fixture
def no_loading(monkeypatch):
    """Make any attempt to load weights fail loudly: the errors below must come before slow work."""
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained was reached")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


def test_unknown_model_and_backend_errors(tmp_path, no_loading):
    with pytest.raises(SteerlabError, match="no such folder"):
        load_model(str(tmp_path / "no-such-model"))
    with pytest.raises(SteerlabError, match="unknown backend 'jax'; valid: 'tl', 'nnsight'"):
        load_model(backend="jax")
    with pytest.raises(SteerlabError, match="backend='nnsight'"):
        load_model(backend="tl", remote=True)


def test_folders_without_a_model_are_refused_before_loading(tmp_path, tiny_folder, no_loading):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SteerlabError, match="has no config.json"):
        load_model(str(empty))
    weightless = tmp_path / "weightless"
    weightless.mkdir()
    shutil.copy(tiny_folder / "config.json", weightless)
    with pytest.raises(SteerlabError, match="config.json but no weights"):
        load_model(str(weightless), backend="tl")
    with pytest.raises(SteerlabError, match="is a file; give the folder"):
        load_model(str(tiny_folder / "config.json"))


def test_loading_options_that_cannot_work_are_refused_before_loading(tiny_folder, no_loading):
    with pytest.raises(SteerlabError, match="not both"):
        load_model(str(tiny_folder), device="cpu", device_map="auto")
    with pytest.raises(SteerlabError, match="device_map= works with backend='nnsight' only"):
        load_model(str(tiny_folder), backend="tl", device_map="auto")
    with pytest.raises(SteerlabError, match="quantization_config= works with backend='nnsight' only"):
        load_model(str(tiny_folder), backend="tl", quantization_config=object())
    with pytest.raises(SteerlabError, match="the embedded model 'smollm2-135m-instruct' has none"):
        load_model(revision="main")
    with pytest.raises(SteerlabError, match="leave out device"):
        load_model("org/model", remote=True, device="cpu")


def test_device_and_dtype_choice(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    assert pick_dtype(torch.device("cuda")) == torch.bfloat16  # accelerators default to bf16 (no GPU needed)
    assert pick_dtype(torch.device("cpu"), "fp16") == pick_dtype(torch.device("cpu"), "torch.float16") == torch.float16
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert pick_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_FP16"  # the guard against the bf16 crash


def test_bad_device_and_dtype_are_explained(monkeypatch):
    with pytest.raises(SteerlabError, match="unknown dtype 'bfloat'; valid: float32, fp32"):
        pick_dtype(torch.device("cpu"), "bfloat")
    with pytest.raises(SteerlabError, match="floating"):
        pick_dtype(torch.device("cpu"), torch.int8)
    with pytest.raises(SteerlabError, match="unknown device 'gpu'"):
        pick_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SteerlabError, match="sees no CUDA GPU"):
        pick_device("cuda")


class Recorder:
    """Stands in for ``from_pretrained``: records its keywords, then loads the tiny model for real."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, source, **kwargs):
        self.calls.append(kwargs)
        clean = {k: v for k, v in kwargs.items() if k in ("dtype", "attn_implementation", "device_map")}
        return self.real(source, **clean)


@pytest.fixture
def recorded(monkeypatch):
    import transformers

    model = Recorder(transformers.AutoModelForCausalLM.from_pretrained)
    tok = Recorder(transformers.AutoTokenizer.from_pretrained)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tok)
    return model, tok


def test_loading_keywords_reach_from_pretrained(tiny_folder, recorded):
    """A bitsandbytes config (bitsandbytes is not installed here: any object stands in) and the other
    keywords reach transformers untouched; the weights are placed by from_pretrained, not moved after."""
    model_calls, tok_calls = recorded
    quant = object()
    lm = load_model(
        str(tiny_folder), device="cpu", dtype="bf16", revision="abc123", trust_remote_code=True,
        attn_implementation="sdpa", quantization_config=quant, token="hf_x", max_memory={0: "10GiB"},
    )  # fmt: skip
    kwargs = model_calls.calls[-1]
    assert kwargs["quantization_config"] is quant
    assert kwargs["device_map"] == torch.device("cpu")  # straight onto the device: no CPU copy, then .to()
    assert (kwargs["dtype"], kwargs["revision"], kwargs["trust_remote_code"]) == (torch.bfloat16, "abc123", True)
    assert (kwargs["attn_implementation"], kwargs["token"], kwargs["max_memory"]) == ("sdpa", "hf_x", {0: "10GiB"})
    tok_kwargs = tok_calls.calls[-1]
    assert (tok_kwargs["revision"], tok_kwargs["trust_remote_code"], tok_kwargs["token"]) == ("abc123", True, "hf_x")
    assert "quantization_config" not in tok_kwargs and "max_memory" not in tok_kwargs
    assert (lm.kind, lm.dtype, lm.device) == ("nnsight", torch.bfloat16, torch.device("cpu"))


def test_device_map_replaces_device(tiny_folder, recorded):
    model_calls, _ = recorded
    lm = load_model(str(tiny_folder), device_map={"": "cpu"}, dtype="float32")
    assert model_calls.calls[-1]["device_map"] == {"": "cpu"}
    assert lm.device == torch.device("cpu")  # inputs go where the embeddings are


@pytest.mark.backends("tl")
def test_tl_reads_the_hf_model_on_the_cpu(tiny_folder, recorded, monkeypatch):
    """TransformerLens builds its own copy on the target device: the HF weights must never go there too.
    (No GPU here: CUDA is faked as present and the TransformerLens backend replaced by a recorder.)"""
    import steerlab.backends.tl_backend as tl_backend

    model_calls, _ = recorded
    built = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(tl_backend, "TLBackend", lambda **kw: built.update(kw) or "tl")
    assert load_model(str(tiny_folder), backend="tl", device="cuda") == "tl"
    assert model_calls.calls[-1]["device_map"] == torch.device("cpu")
    assert built["device"] == torch.device("cuda") and built["dtype"] == torch.bfloat16
    assert next(built["hf_model"].parameters()).device == torch.device("cpu")


@pytest.mark.backends("tl")
def test_tl_drops_the_hf_copy(tiny_folder):
    assert load_model(str(tiny_folder), backend="tl", device="cpu").hf_model is None


@pytest.mark.backends("nnsight")
def test_nnsight_leaves_the_model_where_it_was_put(tiny_folder, monkeypatch):
    """nnsight builds a transformers pipeline around the model, and a pipeline moves a model it is not told
    the device of to the first GPU: device="cpu" (or a CPU model given to `wrap`) must stay on the CPU on a
    GPU machine. (Without a GPU, the pipeline is made to believe in one: moving there would then raise.)"""
    import transformers.pipelines.base

    if not torch.cuda.is_available():
        monkeypatch.setattr(transformers.pipelines.base, "is_torch_cuda_available", lambda: True)
    lm = load_model(str(tiny_folder), backend="nnsight", device="cpu")
    wrapped = sl.wrap(copy.deepcopy(lm.hf_model), lm.tokenizer)
    for backend in (lm, wrapped):
        assert backend.device == torch.device("cpu")
        assert {p.device.type for p in backend.hf_model.parameters()} == {"cpu"}
        assert backend.logits(["ab"]).device.type == "cpu"


def test_wrap_takes_a_model_the_user_built(tiny_folder, backend_kind):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(tiny_folder, dtype=torch.float32, attn_implementation="eager")
    tok = AutoTokenizer.from_pretrained(tiny_folder)
    lm = sl.wrap(hf, tok, backend=backend_kind, name="mine")
    loaded = load_model(str(tiny_folder), backend=backend_kind, device="cpu")
    assert (lm.name, lm.kind, lm.n_layers, lm.d_model) == ("mine", backend_kind, 2, 32)
    assert not hf.training and not any(p.requires_grad for p in hf.parameters())
    prompts = ["ab", "hello there"]
    torch.testing.assert_close(lm.logits(prompts), loaded.logits(prompts), rtol=0, atol=0)


def test_wrap_refuses_what_it_cannot_run(tiny_folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_folder)
    with pytest.raises(SteerlabError, match="Hugging Face causal language model"):
        sl.wrap(torch.nn.Linear(2, 2), tok)
    hf = AutoModelForCausalLM.from_pretrained(tiny_folder)
    with pytest.raises(SteerlabError, match="needs the model's tokenizer"):
        sl.wrap(hf, None)
    with pytest.raises(SteerlabError, match="move it with model.to"):
        sl.wrap(hf, tok, device="cpu")
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(hf.config)
    with pytest.raises(SteerlabError, match="meta device"):
        sl.wrap(meta, tok)


@pytest.mark.backends("tl", "nnsight")
def test_wrap_builds_transformerlens_from_the_config_alone(tiny_folder):
    """A model built from a config has no hub name or folder: TransformerLens reads its HF config instead."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_folder)
    config = copy.deepcopy(AutoModelForCausalLM.from_pretrained(tiny_folder).config)
    config.name_or_path = ""
    torch.manual_seed(0)
    built = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    lm = sl.wrap(built, tok, backend="tl")
    assert lm.name == type(built).__name__ and lm.tl_name is None
    ids = lm.tokenize(["ab", "hello there"])
    mask = ids.attention_mask.bool()
    want = sl.wrap(built, tok, backend="nnsight").logits(ids)  # the HF model itself
    torch.testing.assert_close(lm.logits(ids)[mask], want[mask], rtol=1e-4, atol=1e-5)


def test_a_missing_backend_package_is_named_before_loading(monkeypatch, no_loading):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nnsight" else real(name, *a))
    with pytest.raises(SteerlabError, match="needs the nnsight package.*backend='tl'"):
        load_model(backend="nnsight")


def test_top_level_names_stay_functions_after_submodule_imports():
    import steerlab as sl
    import steerlab.extraction  # noqa: F401
    import steerlab.sweeps  # noqa: F401

    assert callable(sl.extract) and callable(sl.sweep) and callable(sl.steer)
    assert sl.extract.__name__ == "extract"


def test_an_architecture_transformers_does_not_know_is_explained(tmp_path, tiny_folder):
    import json

    folder = tmp_path / "unknown"
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="nosucharch", architectures=["NoSuchForCausalLM"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SteerlabError, match="(?s)transformers cannot build .*trust_remote_code=True"):
        load_model(str(folder))
