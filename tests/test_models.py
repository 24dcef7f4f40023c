"""Model loading: local folders, names, device and dtype choice, clear errors."""

import os

import pytest
import torch

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


def test_unknown_model_and_backend_errors(tmp_path):
    with pytest.raises(SteerlabError, match="could not load model"):
        load_model(str(tmp_path / "no-such-model"))
    with pytest.raises(SteerlabError, match="unknown backend"):
        load_model(backend="jax")
    with pytest.raises(SteerlabError, match="backend='nnsight'"):
        load_model(backend="tl", remote=True)


def test_device_and_dtype_choice(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_dtype(torch.device("cpu")) == torch.float32
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert pick_dtype(torch.device("cpu"), "bfloat16") == torch.bfloat16
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE_FP16"  # the guard against the bf16 crash


def test_top_level_names_stay_functions_after_submodule_imports():
    import steerlab as sl
    import steerlab.extraction  # noqa: F401
    import steerlab.sweeps  # noqa: F401

    assert callable(sl.extract) and callable(sl.sweep) and callable(sl.steer)
    assert sl.extract.__name__ == "extract"
