"""steerlab.notebook: a notebook run's folders, layers by depth fraction, widths, timings and lazy model."""

from pathlib import Path

import pytest

from steerlab.errors import SteerlabError
from steerlab.notebook import DATA, Run, model_label, model_slug, start


@pytest.fixture(autouse=True)
def _temporary_folders_in_tmp_path(tmp_path, monkeypatch):
    """Smoke runs make a temporary runs folder: keep it inside the test's folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def config_folder(folder: Path, n_layers: int, d_model: int) -> Path:
    """A model folder holding only a config (nothing to load but the config)."""
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4).save_pretrained(folder)
    return folder


@pytest.fixture
def smol_shaped(tmp_path):
    """A run on a config shaped like SmolLM2-135M (30 layers, d_model 576)."""
    model = config_folder(tmp_path / "smol-shaped", 30, 576)
    return start("01_test", smoke=True, figures=tmp_path / "figs", model=str(model), threads=1)


def test_layer_fractions_give_smollm2_the_layers_its_committed_results_used(smol_shaped):
    # every fraction the notebooks use, and the layer of SmolLM2-135M's 30 it stood for before
    used = {0.0: 0, 0.13: 4, 0.2: 6, 0.27: 8, 0.33: 10, 0.4: 12, 0.47: 14, 0.53: 16, 0.6: 18, 0.67: 20, 0.8: 24,
            1.0: 29}  # fmt: skip
    assert {f: smol_shaped.layer(f) for f in used} == used
    assert smol_shaped.layers(0.27, 0.47, 0.67) == (8, 14, 20)
    assert (4 * smol_shaped.d_model, 2 * smol_shaped.d_model) == (2304, 1152)  # notebook 14's SAE widths
    assert not smol_shaped.loaded  # n_layers and d_model came from the config: nothing was loaded


def test_layer_fractions_scale_to_other_depths(tmp_path):
    run = start("x", smoke=True, figures=tmp_path, model=str(config_folder(tmp_path / "m", 18, 640)), threads=1)
    assert run.layers(0.27, 0.4, 0.47, 0.67, 1.0) == (5, 7, 8, 12, 17)
    with pytest.raises(SteerlabError, match=r"layer fraction 1.2 is outside \[0, 1\].*18 layers"):
        run.layer(1.2)


def test_folders_smoke_and_full(tmp_path, smol_shaped):
    assert smol_shaped.figures.is_dir() and smol_shaped.runs.is_dir()
    assert smol_shaped.runs.parent == tmp_path and smol_shaped.runs.name.startswith("steerlab-01_test-")  # temporary
    full = start("06_saas", smoke=False, figures=tmp_path / "repo" / "figures", threads=1)
    assert full.runs == tmp_path / "repo" / "runs" / "smollm2-135m-instruct" / "06_saas"
    shared = start("03_pas", smoke=False, figures=tmp_path / "repo" / "figures", model="gemma3-270m", runs="pas",
                   threads=1)  # fmt: skip
    assert shared.runs == tmp_path / "repo" / "runs" / "gemma-3-270m" / "pas"
    assert "not loaded yet" in str(shared) and "gemma-3-270m" in str(shared)


def test_model_slug_and_label(tmp_path):
    assert model_slug(None) == model_slug("SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert model_slug("meta-llama/Llama-3.1-8B") == "meta-llama--llama-3.1-8b"
    a, b = (config_folder(tmp_path / side / "checkpoint-100", 2, 8) for side in ("a", "b"))
    assert model_slug(str(a)).startswith("checkpoint-100-") and model_slug(str(a)) != model_slug(str(b))
    assert model_label(None) == "SmolLM2-135M-Instruct" and model_label("gemma-3-270m") == "Gemma-3-270M"
    assert model_label(str(a)) == "checkpoint-100" and model_label("org/Model-7B") == "org/Model-7B"


def test_batch_caps_only_when_set(tmp_path):
    assert Run("x", True, tmp_path, tmp_path).batch(32) == 32
    assert Run("x", True, tmp_path, tmp_path, batch_size=8).batch(32) == 8
    assert Run("x", True, tmp_path, tmp_path, batch_size=8).batch(4) == 4


def test_timed_accumulates_and_records_on_error(tmp_path):
    run = Run("x", True, tmp_path, tmp_path)
    with run.timed("stage") as clock:
        first = clock()
        assert clock() >= first >= 0
    once = run.timings["stage"]
    with pytest.raises(ValueError), run.timed("stage"):
        raise ValueError
    assert run.timings["stage"] >= once
    table = run.timings_table()
    assert list(table.index) == ["stage", "total"] and list(table.columns) == ["seconds"]


def test_model_loads_once_on_first_use(tmp_path, tiny_folder):
    run = start("x", smoke=True, figures=tmp_path, model=str(tiny_folder), device="cpu", threads=1)
    assert not run.loaded and run.n_layers == 2  # from the config
    lm = run.lm
    assert run.lm is lm and lm.n_layers == run.n_layers == 2 and "load model" in run.timings
    assert repr(lm) in str(run)
    assert run.load() is not lm  # a second copy


def test_bad_settings_raise(tmp_path):
    with pytest.raises(SteerlabError, match="BATCH_SIZE 0 must be a positive integer"):
        start("x", smoke=True, figures=tmp_path, batch_size=0)
    with pytest.raises(SteerlabError, match="plain name"):
        start("../x", smoke=True, figures=tmp_path)


def test_data_folder_holds_the_notebooks_inputs():
    from steerlab.agents import load_subbehaviours

    files = sorted((DATA / "subbehaviours").glob("*.yaml"))
    assert {f.stem for f in files} >= {"agreeableness", "openness", "refusal", "hallucination"}
    assert all(load_subbehaviours(f).kept for f in files)
    assert list((DATA / "agent_cache" / model_slug(None)).rglob("*.json"))  # notebook 09's cached agent calls
