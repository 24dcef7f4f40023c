"""Tests for steerlab.vectors: exact-oracle arithmetic, file round trips, GGUF export, errors."""

import dataclasses
import json
import logging
import types

import pytest
import torch
from safetensors.torch import load_file

from steerlab.errors import SteerlabError
from steerlab.sites import Site
from steerlab.vectors import Provenance, SteeringVector, dataset_hash

D = 8


def prov(**kw) -> Provenance:
    base = dict(model="tiny-llama", d_model=D, method="caa", n_layers=4, model_type="llama", backend="tl",
                dataset="toy", dataset_hash="0123456789abcdef", read_position="last_prompt", n_pairs=3,
                extra={"note": "test"})
    return Provenance(**(base | kw))


def vec(layers, seed=0, method="caa", kind="resid_post", **kw) -> SteeringVector:
    g = torch.Generator().manual_seed(seed)
    dirs = {Site(layer, kind): torch.randn(D, generator=g) for layer in layers}
    return SteeringVector(dirs, prov(method=method, **kw))


def backend(name="tiny-llama", d_model=D, n_layers=4):
    return types.SimpleNamespace(name=name, d_model=d_model, n_layers=n_layers, weight_processing="none")


# ---------------------------------------------------------------- construction
def test_directions_are_float32_cpu_copies_sorted_and_keyed_by_site():
    raw = torch.arange(D, dtype=torch.float64)
    v = SteeringVector({"resid_post.3": raw, Site(1, "attn_out"): raw, 2: raw}, prov())
    raw += 100
    assert v.sites == [Site(1, "attn_out"), Site(2), Site(3)]
    assert v.layers == [1, 2, 3]
    assert len(v) == 3 and "resid_post.2" in v and Site(0) not in v
    for t in v.directions.values():
        assert t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
        assert torch.equal(t, torch.arange(D, dtype=torch.float32))


def test_negative_layers_resolve_with_n_layers():
    v = SteeringVector({"resid_post.-1": torch.ones(D)}, prov(n_layers=4))
    assert v.sites == [Site(3)]
    assert torch.equal(v[-1], v["resid_post.3"])


def test_frozen():
    v = vec([1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.provenance = prov()


def test_empty_rejected():
    with pytest.raises(SteerlabError, match="at least one site"):
        SteeringVector({}, prov())


@pytest.mark.parametrize("shape", [(D + 1,), (2, D), ()])
def test_wrong_shape_rejected_with_site_and_d_model(shape):
    with pytest.raises(SteerlabError, match=rf"resid_post\.2 has shape .* expected \({D},\)"):
        SteeringVector({"resid_post.2": torch.zeros(shape)}, prov())


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_rejected(bad):
    t = torch.ones(D)
    t[[1, 4]] = bad
    with pytest.raises(SteerlabError, match=r"resid_post\.2 has 2 NaN/inf entries.*degenerate activations"):
        SteeringVector({"resid_post.2": t}, prov())


def test_missing_site_is_key_error_listing_sites():
    with pytest.raises(KeyError, match=r"resid_post\.1"):
        vec([1])["resid_post.2"]


# ---------------------------------------------------------------- arithmetic
def test_arithmetic_exact_with_missing_sites_as_zero():
    a, b = vec([1, 2], seed=0), vec([2, 3], seed=1, method="pca-diff")
    c = 2 * a - b
    assert c.sites == [Site(1), Site(2), Site(3)]
    assert torch.equal(c[2], 2 * a[2] - b[2])
    assert torch.equal(c[1], 2 * a[1])
    assert torch.equal(c[3], -b[3])
    assert c.provenance.method == "(2*caa - pca-diff)"
    assert [p["method"] for p in c.provenance.extra["parts"]] == ["2*caa", "pca-diff"]
    s = a + b
    assert torch.equal(s[2], a[2] + b[2]) and torch.equal(s[3], b[3])


def test_scalar_ops_exact():
    a = vec([1, 2])
    for s in a.sites:
        assert torch.equal((a * 3)[s], a[s] * 3)
        assert torch.equal((3 * a)[s], 3 * a[s])
        assert torch.equal((a / 3)[s], a[s] / 3)
        assert torch.equal((-a)[s], -a[s])
        assert torch.equal(a.scaled(0.5)[s], a[s] * 0.5)
    assert (a / 2).provenance.method == "caa/2"
    assert (-a).provenance.method == "-caa"


def test_sum_of_vectors():
    a, b = vec([1], seed=0), vec([1], seed=1)
    assert torch.equal(sum([a, b])[1], (a + b)[1])


def test_bad_scalars_rejected():
    a = vec([1])
    with pytest.raises(SteerlabError, match="divide"):
        a / 0
    with pytest.raises(SteerlabError, match="finite"):
        a * float("inf")
    with pytest.raises(TypeError):
        a * "2"


def test_combining_vectors_of_different_models_raises():
    a, b = vec([1]), vec([1], model="other-model")
    with pytest.raises(SteerlabError, match="tiny-llama.*other-model"):
        a + b
    with pytest.raises(SteerlabError, match="d_model"):
        a - SteeringVector({1: torch.ones(D + 1)}, prov(d_model=D + 1))


def test_combined_provenance_keeps_shared_fields_only():
    a, b = vec([1]), vec([1], dataset="other", backend="nnsight")
    c = a + b
    assert c.provenance.model == "tiny-llama" and c.provenance.d_model == D
    assert c.provenance.dataset is None and c.provenance.backend is None
    assert c.provenance.read_position == "last_prompt"


def test_normalized_unit_norm_and_zero_rejected():
    n = (vec([1, 2, 3]) * 7).normalized()
    assert all(abs(x - 1.0) < 1e-6 for x in n.norm().values())
    with pytest.raises(SteerlabError, match=r"resid_post\.2"):
        SteeringVector({1: torch.ones(D), 2: torch.zeros(D)}, prov()).normalized()


def test_to_casts_copies_and_leaves_vector_alone(device):
    a = vec([1])
    half = a.to(device, torch.float16)
    assert half[Site(1)].dtype == torch.float16 and half[Site(1)].device.type == device.type
    same = a.to()
    same[Site(1)].zero_()
    assert a[1].dtype == torch.float32 and a[1].abs().sum() > 0


def test_repr_is_short():
    r = repr(vec(range(4)))
    assert "tiny-llama" in r and "caa" in r and "+0 more" not in r and len(r) < 200


# ---------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", ["", ".safetensors", ".json"])
def test_save_load_round_trip_exact(tmp_path, suffix):
    a = vec([0, 3], seed=2) - vec([2], seed=3, method="pca")
    a.save(tmp_path / f"sub/v{suffix}")
    assert (tmp_path / "sub/v.safetensors").exists() and (tmp_path / "sub/v.json").exists()
    assert set(load_file(tmp_path / "sub/v.safetensors")) == {"resid_post.0", "resid_post.2", "resid_post.3"}
    meta = json.loads((tmp_path / "sub/v.json").read_text())
    assert meta["sites"] == ["resid_post.0", "resid_post.2", "resid_post.3"] and meta["format_version"] == 1
    b = SteeringVector.load(tmp_path / "sub/v", backend=backend())
    assert b.sites == a.sites
    assert all(torch.equal(a[s], b[s]) for s in a.sites)
    assert b.provenance == a.provenance


def test_load_onto_other_model_warns_and_strict_refuses_naming_both(tmp_path, caplog):
    vec([1]).save(tmp_path / "v")
    with caplog.at_level(logging.WARNING, logger="steerlab.vectors"):
        loaded = SteeringVector.load(tmp_path / "v", backend=backend(name="other"))
    assert loaded.provenance.model == "tiny-llama" and "made on tiny-llama" in caplog.text and "'other'" in caplog.text
    with pytest.raises(SteerlabError, match="made on tiny-llama.*'other'.*strict=False"):
        SteeringVector.load(tmp_path / "v", backend=backend(name="other"), strict=True)
    with pytest.raises(SteerlabError, match=rf"tiny-llama \(d_model {D}\).*tiny-llama \(d_model 16\)"):
        SteeringVector.load(tmp_path / "v", backend=backend(d_model=16))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="steerlab.vectors"):
        SteeringVector.load(tmp_path / "v", backend=backend(name="other"), check_model=False, strict=True)
    assert "made on" not in caplog.text
    with pytest.raises(SteerlabError, match="d_model"):
        SteeringVector.load(tmp_path / "v", backend=backend(name="other", d_model=16), check_model=False)


def test_load_checks_layers_fit(tmp_path):
    vec([3]).save(tmp_path / "v")
    with pytest.raises(SteerlabError, match=r"resid_post\.3.*2 layers"):
        SteeringVector.load(tmp_path / "v", backend=backend(n_layers=2))


@pytest.mark.parametrize("missing", ["v.json", "v.safetensors"])
def test_missing_file_is_clear(tmp_path, missing):
    vec([1]).save(tmp_path / "v")
    (tmp_path / missing).unlink()
    with pytest.raises(SteerlabError, match=missing.replace(".", r"\.") + " does not exist"):
        SteeringVector.load(tmp_path / "v")


def test_provenance_from_dict_ignores_unknown_and_fills_missing(caplog):
    d = prov().to_dict()
    d["from_the_future"] = 1
    del d["created"], d["backend"]
    with caplog.at_level(logging.WARNING, logger="steerlab.vectors"):
        p = Provenance.from_dict(d)
    assert "from_the_future" in caplog.text
    assert p.backend is None and p.created == "unknown" and p.model == "tiny-llama"
    with pytest.raises(SteerlabError, match="d_model"):
        Provenance.from_dict({"model": "m", "method": "caa"})


def test_dataset_hash_stable_and_canonical():
    @dataclasses.dataclass
    class Pair:
        positive: str
        negative: str

    pairs = [Pair("yes", "no"), Pair("a", "b")]
    h = dataset_hash(pairs)
    assert len(h) == 16 and int(h, 16) >= 0
    assert h == dataset_hash([{"negative": "no", "positive": "yes"}, {"positive": "a", "negative": "b"}])
    assert h != dataset_hash(pairs[::-1])
    assert dataset_hash("abc") == dataset_hash(["abc"])


# ---------------------------------------------------------------- GGUF
def _field(reader, key):
    return reader.get_field(key).contents()


def test_gguf_export_read_back(tmp_path):
    gguf = pytest.importorskip("gguf")
    a = vec([1, 3], seed=5)
    out = a.export_gguf(tmp_path / "cv")
    assert out.name == "cv.gguf"
    reader = gguf.GGUFReader(str(out))
    assert _field(reader, "general.architecture") == "controlvector"
    assert _field(reader, "controlvector.model_hint") == "llama"
    assert _field(reader, "controlvector.layer_count") == 2
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == {"direction.1", "direction.3"}  # resid_post.L -> direction.L
    for layer in (1, 3):
        t = tensors[f"direction.{layer}"]
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        assert torch.allclose(torch.from_numpy(t.data.copy()), a[layer])
    back = SteeringVector.from_gguf(out)
    assert back.sites == a.sites and all(torch.equal(back[s], a[s]) for s in a.sites)
    assert back.provenance == a.provenance


def test_gguf_model_hint_override_and_plain_import(tmp_path):
    gguf = pytest.importorskip("gguf")
    writer = gguf.GGUFWriter(str(tmp_path / "x.gguf"), "controlvector")
    writer.add_string("controlvector.model_hint", "qwen2")
    writer.add_tensor("direction.2", torch.ones(D).numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    v = SteeringVector.from_gguf(tmp_path / "x.gguf")
    assert v.sites == [Site(2)] and v.provenance.model_type == "qwen2" and v.provenance.d_model == D
    out = vec([1]).export_gguf(tmp_path / "y.gguf", model_hint="gemma3")
    assert _field(gguf.GGUFReader(str(out)), "controlvector.model_hint") == "gemma3"


def test_gguf_rejects_non_resid_post_sites(tmp_path):
    pytest.importorskip("gguf")
    v = vec([1]) + vec([2], kind="attn_out")
    with pytest.raises(SteerlabError, match=r"not resid_post: \['attn_out\.2'\]"):
        v.export_gguf(tmp_path / "cv")


def test_gguf_rejects_layer_zero(tmp_path):
    pytest.importorskip("gguf")
    with pytest.raises(SteerlabError, match=r"resid_post\.0.*direction\.0"):
        vec([0, 1]).export_gguf(tmp_path / "cv")
    vec([0, 1]).select(["resid_post.1"]).export_gguf(tmp_path / "cv")


def test_rescaled_sets_each_site_norm_to_a_fraction_of_the_given_norm():
    vec = SteeringVector({Site(0): torch.tensor([3.0, 4.0]), Site(1): torch.tensor([0.0, 2.0])}, prov(d_model=2))
    out = vec.rescaled({Site(0): 10.0, Site(1): 4.0}, fraction=0.5)
    assert out.norm() == pytest.approx({Site(0): 5.0, Site(1): 2.0})
    torch.testing.assert_close(out[Site(0)], torch.tensor([3.0, 4.0]))
    assert "norm(" in out.provenance.method
    with pytest.raises(SteerlabError, match="no norm given"):
        vec.rescaled({Site(0): 1.0})


# ---------------------------------------------------------------- vectors that travel
def test_rescaled_records_the_scale_and_arithmetic_keeps_it_true():
    v = vec([0, 1]).rescaled({Site(0): 10.0, Site(1): 4.0}, fraction=0.5)
    assert v.provenance.fraction == 0.5 and v.provenance.typical_norm == {"resid_post.0": 10.0, "resid_post.1": 4.0}
    fractions = [(2 * v).provenance.fraction, (-v).provenance.fraction, (v / 4).provenance.fraction]
    assert fractions == [1.0, -0.5, 0.125]
    assert v.normalized().provenance.fraction is None and (v + v).provenance.fraction is None
    assert (v + v).provenance.typical_norm == v.provenance.typical_norm


def test_describe_spells_sites_in_hugging_face_terms():
    v = SteeringVector({Site(0, "resid_pre"): torch.ones(D), Site(2): torch.ones(D), Site(3): torch.ones(D),
                        Site(1, "mlp_in"): torch.ones(D)}, prov(operation="ablate"))  # fmt: skip
    usage = v.describe()
    assert usage["operation"] == "ablate" and usage["formula"].startswith("h - (h . u) u")
    hf = {k: x["hf"] for k, x in usage["sites"].items()}
    assert hf["resid_pre.0"].startswith("hidden_states[0]") and hf["resid_post.2"].startswith("hidden_states[3]")
    assert "final norm" in hf["resid_post.3"] and "final norm" not in hf["resid_post.2"]  # n_layers is 4
    assert "post" not in hf["mlp_in.1"] and "MLP" in hf["mlp_in.1"]
    assert usage["sites"]["resid_post.2"]["norm"] == pytest.approx(D**0.5)


def test_fingerprints_ignore_dtype_and_names_but_not_shape():
    from steerlab.provenance import config_hash

    a = types.SimpleNamespace(hidden_size=8, num_hidden_layers=2, dtype="float32", _name_or_path="/a")
    b = types.SimpleNamespace(hidden_size=8, num_hidden_layers=2, dtype="bfloat16", _name_or_path="/b")
    c = types.SimpleNamespace(hidden_size=8, num_hidden_layers=3)
    assert config_hash(a) == config_hash(b) != config_hash(c)
    assert config_hash(types.SimpleNamespace(text_config=c)) == config_hash(c)


def test_same_name_and_fingerprints_is_the_same_model(tmp_path, caplog):
    same = backend()
    same._steerlab_fingerprint = {"config_hash": "v1:x", "tokenizer_hash": "v1:y"}
    v = vec([1], config_hash="v1:x", tokenizer_hash="v1:y")
    with caplog.at_level(logging.WARNING, logger="steerlab.vectors"):
        v.check_compatible(same, strict=True)
    assert caplog.text == ""
    same._steerlab_fingerprint = {"config_hash": "v1:x", "tokenizer_hash": "v1:z"}
    with pytest.raises(SteerlabError, match="tokenizer_hash v1:y vs v1:z"):
        v.check_compatible(same, strict=True)
