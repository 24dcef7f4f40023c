"""Bad input, across the API and the command line: every case gets a `SteerlabError` (or its `DataError`) whose
message names the problem and the value or file; CLI commands exit non-zero with a one-line message (no
traceback), and bad arguments fail before the model loads (`steerlab.models.load_model` is replaced by a
function that fails the test). The tiny random model stands in wherever a model is needed.

Cases whose fix belongs to another module's owner are marked ``xfail(strict=False)`` with the owner named.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import steerlab as sl
from steerlab import agents
from steerlab.agents import AgentError
from steerlab.cli import app
from steerlab.data import ContrastPair, DataError, load_mcq_jsonl, load_persona_file, split
from steerlab.errors import SteerlabError, check_output_folder
from steerlab.interventions import add, clamp, steer
from steerlab.sites import Site
from steerlab.vectors import Provenance, SteeringVector

READ_ONLY = Path("/proc/self")  # a folder nobody (not even root) can create files in


# ----------------------------------------------------------------------------------------------- helpers


def vector(d_model: int = 32, model: str = "tiny", layers=(1,), n_layers: int = 2, **prov) -> SteeringVector:
    g = torch.Generator().manual_seed(0)
    dirs = {Site(layer): torch.randn(d_model, generator=g) for layer in layers}
    return SteeringVector(dirs, Provenance(model=model, d_model=d_model, method="caa", n_layers=n_layers, **prov))


def persona_records(n: int, *, same: bool = False) -> list[dict]:
    return [
        {"question": f'Is this something you would say?\n"I like task {0 if same else i}"',
         "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}
        for i in range(n)
    ]  # fmt: skip


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def lm(tiny_pair):
    """The tiny model behind nnsight (the default backend)."""
    return tiny_pair[1]


@pytest.fixture
def saved(tmp_path):
    """A vector saved as tmp_path/v.safetensors + tmp_path/v.json."""
    vector(d_model=8, n_layers=4).save(tmp_path / "v")
    return tmp_path / "v"


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: CLI argument errors must come first."""

    def boom(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad argument was caught")

    monkeypatch.setattr("steerlab.models.load_model", boom)


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_exit(result, *words: str) -> None:
    """Non-zero exit with a message (naming ``words``) and no traceback or stray exception."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, f"{word!r} not in:\n{result.output}"


# ================================================================== API: strengths (interventions.steer/add/clamp)


@pytest.mark.parametrize(
    "alpha, words",
    [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"), (1e30, "1e+30"), ("4", "real number"),
     (None, "real number"), (True, "real number")],
)  # fmt: skip
def test_steer_rejects_bad_strengths(alpha, words):
    with pytest.raises(SteerlabError, match="alpha") as err:
        steer(vector(), alpha)
    assert words in str(err.value) and "resid_post.1" in str(err.value)


def test_add_rejects_nan_and_names_the_fix():
    with pytest.raises(SteerlabError, match="strength_from_fraction"):
        add(Site(1), torch.ones(32), float("nan"))


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e30])
def test_clamp_rejects_bad_values(value):
    with pytest.raises(SteerlabError, match="clamp value"):
        clamp(Site(1), torch.ones(32), value)


def test_steer_unknown_mode_and_missing_site():
    with pytest.raises(SteerlabError, match="unknown mode 'mul'.*add, ablate, clamp"):
        steer(vector(), 1.0, mode="mul")
    with pytest.raises(SteerlabError, match=r"no direction at \['resid_post.0'\]"):
        steer(vector(), 1.0, sites=["resid_post.0"])


def test_huge_strength_never_reaches_the_model(lm):
    """The issue's case: steer(v, 1e30) used to return [''] with non-finite logits."""
    with pytest.raises(SteerlabError, match="beyond any residual stream"):
        lm.generate(lm.chat("hi"), edits=steer(vector(), 1e30), max_new_tokens=2)


# ================================================================== API: sweep


@pytest.mark.parametrize("coeffs", [[math.nan, 0.0], [0.0, math.inf], [0.0, 1e30]])
def test_sweep_rejects_non_finite_and_huge_coeffs(lm, coeffs):
    pairs = [ContrastPair(f"q{i}", "Yes", "No") for i in range(3)]
    task = sl.ChoiceTask.from_pairs(lm, pairs)
    with pytest.raises(SteerlabError, match="alpha|coeff"):
        sl.sweep(lm, {"caa": vector()}, task, coeffs=coeffs, progress=False)


def test_sweep_empty_coeffs_names_coeffs(lm):
    task = sl.ChoiceTask.from_pairs(lm, [ContrastPair("q", "Yes", "No")])
    with pytest.raises(SteerlabError, match="coeff"):
        sl.sweep(lm, {"caa": vector()}, task, coeffs=[], progress=False)


# ================================================================== API: prompts (Backend.tokenize / generate)


def test_over_long_prompt_is_refused_on_both_backends(tiny):
    """The issue's case: 8,300 tokens on an 8,192 context ran 265 s into garbage (nnsight) or an IndexError (TL)."""
    long = "a" * 300  # the tiny model has a 256-token context and a character tokenizer
    with pytest.raises(SteerlabError, match=r"prompt 0 has 300 tokens.*context of 256.*truncate"):
        tiny.logits(long)


def test_truncation_only_when_asked_keeps_the_end_and_warns(tiny, caplog):
    with caplog.at_level(logging.WARNING, logger="steerlab.backends.base"):
        batch = tiny.tokenize(["a" * 290 + "XYZ"], truncate="last")
    assert batch.input_ids.shape[1] == 256 and "keeping the last 256 tokens" in caplog.text
    assert tiny.tokenizer.convert_ids_to_tokens(batch.input_ids[0, -3:].tolist()) == ["X", "Y", "Z"]


def test_generation_past_the_context_is_refused(tiny):
    with pytest.raises(SteerlabError, match=r"max_new_tokens=100 exceed .* context of 256.*lower max_new_tokens"):
        tiny.generate("b" * 200, max_new_tokens=100)


@pytest.mark.parametrize(
    "prompts, words",
    [([""], "give no tokens"), ([123], "prompt 0 is a int"), (["ok", None], "prompt 1 is a NoneType"),
     ([], "no prompts")],
)  # fmt: skip
def test_bad_prompts(lm, prompts, words):
    with pytest.raises(SteerlabError, match=words):
        lm.logits(prompts)


@pytest.mark.parametrize("n", [0, -5, 2.5])
def test_bad_max_new_tokens(lm, n):
    with pytest.raises(SteerlabError, match=rf"max_new_tokens must be a positive integer, got {n}"):
        lm.generate("hi", max_new_tokens=n)


def test_bad_truncate_mode(lm):
    with pytest.raises(SteerlabError, match="truncate must be"):
        lm.tokenize("hi", truncate="middle")


# ================================================================== API: batch sizes


@pytest.mark.parametrize("batch_size", [0, -1, 2.5])
def test_extract_rejects_bad_batch_size(lm, batch_size):
    pairs = [ContrastPair("q", "Yes", "No")] * 2
    with pytest.raises(SteerlabError, match=rf"batch_size must be a positive int.*got {batch_size}"):
        sl.extract(lm, pairs, [1], batch_size=batch_size, progress=False)


def test_collect_functions_reject_bad_batch_size(lm):
    from steerlab.activations import collect_pairs, collect_prompts

    with pytest.raises(SteerlabError, match="batch_size"):
        collect_pairs(lm, [ContrastPair("q", "Yes", "No")], [1], batch_size=0)
    with pytest.raises(SteerlabError, match="batch_size"):
        collect_prompts(lm, ["q"], [1], batch_size=-3)


def test_typical_norm_rejects_bad_batch_size(lm):
    with pytest.raises(SteerlabError, match="batch_size must be a positive int"):
        sl.scale.typical_norm(lm, ["some prompt"], [1], batch_size=0)


@pytest.mark.parametrize("batch_size", [0, -2])
def test_tasks_reject_bad_batch_size(lm, batch_size):
    with pytest.raises(SteerlabError, match="batch_size"):
        sl.ChoiceTask.from_pairs(lm, [ContrastPair("q", "Yes", "No")], batch_size=batch_size)


# ================================================================== API: vector files


def corrupt(path: Path, data: bytes) -> None:
    path.write_bytes(data)


@pytest.mark.parametrize(
    "make, words",
    [(lambda p: corrupt(p, p.read_bytes()[:40]), "not a readable safetensors"),
     (lambda p: corrupt(p, bytes(range(256)) * 4), "not a readable safetensors"),
     (lambda p: corrupt(p, b""), r"is empty \(0 bytes\)")],
    ids=["truncated", "random", "zero-bytes"],
)  # fmt: skip
def test_broken_safetensors_named(saved, make, words):
    st = saved.with_suffix(".safetensors")
    make(st)
    with pytest.raises(SteerlabError, match=words) as err:
        SteeringVector.load(saved)
    assert str(st) in str(err.value)


@pytest.mark.parametrize(
    "text, words",
    [(lambda t: t[: len(t) // 2], "not valid JSON"), (lambda t: "[1, 2]", "got list"),
     (lambda t: '{"sites": ["resid_post.1"]}', "without provenance"),
     (lambda t: t.replace('"format_version": 1', '"format_version": "1"'), "format_version must be an int")],
    ids=["truncated", "a-list", "no-provenance", "version-str"],
)  # fmt: skip
def test_broken_json_named(saved, text, words):
    js = saved.with_suffix(".json")
    js.write_text(text(js.read_text()))
    with pytest.raises(SteerlabError, match=words) as err:
        SteeringVector.load(saved)
    assert str(js) in str(err.value)


def test_binary_json_named(saved):
    js = saved.with_suffix(".json")
    js.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SteerlabError, match="not a text file") as err:
        SteeringVector.load(saved)
    assert str(js) in str(err.value)


@pytest.mark.parametrize(
    "field, value, words",
    [("d_model", "8", "'d_model' must be a positive int.*got str '8'"),
     ("d_model", True, "'d_model' must be a positive int.*got bool"),
     ("model", 123, "'model' must be a string, got int 123"),
     ("n_layers", "4", "'n_layers' must be a positive int or null, got str"),
     ("extra", [1, 2], "'extra' must be a dict, got list"),
     ("operation", "mul", "'operation' must be one of add, ablate, clamp"),
     ("fraction", "half", "'fraction' must be a finite number"),
     ("typical_norm", {"resid_post.1": -3}, "'typical_norm' must be a dict of site -> positive")],
)  # fmt: skip
def test_provenance_fields_of_the_wrong_type_named(saved, field, value, words):
    js = saved.with_suffix(".json")
    meta = json.loads(js.read_text())
    meta["provenance"][field] = value
    js.write_text(json.dumps(meta))
    with pytest.raises(SteerlabError, match=words) as err:
        SteeringVector.load(saved)
    assert str(js) in str(err.value)


def test_sites_that_do_not_match_the_tensors(saved):
    js = saved.with_suffix(".json")
    meta = json.loads(js.read_text())
    meta["sites"] = ["resid_post.2"]
    js.write_text(json.dumps(meta))
    with pytest.raises(SteerlabError, match=r"lists sites \['resid_post.2'\].*holds \['resid_post.1'\]"):
        SteeringVector.load(saved)
    meta["sites"] = "resid_post.1"
    js.write_text(json.dumps(meta))
    with pytest.raises(SteerlabError, match="'sites' must be a list"):
        SteeringVector.load(saved)


def test_tensor_of_the_wrong_length_names_the_file(saved):
    from safetensors.torch import save_file

    st = saved.with_suffix(".safetensors")
    save_file({"resid_post.1": torch.ones(5)}, str(st))
    with pytest.raises(SteerlabError, match=r"shape \(5,\), expected \(8,\)") as err:
        SteeringVector.load(saved)
    assert str(st) in str(err.value)


def test_load_a_folder_and_save_under_a_file(tmp_path):
    (tmp_path / "v.json").mkdir()
    with pytest.raises(SteerlabError, match="v.json is a folder"):
        SteeringVector.load(tmp_path / "v")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SteerlabError, match="cannot save the steering vector to .*afile"):
        vector().save(tmp_path / "afile" / "v")
    with pytest.raises(SteerlabError, match="cannot write .*afile/v.gguf"):
        vector().export_gguf(tmp_path / "afile" / "v.gguf")


def test_saved_files_share_one_mode(tmp_path):
    """The issue: vector.safetensors was 0600 while its JSON was 0644."""
    vector().save(tmp_path / "v")
    modes = {(tmp_path / f"v.{ext}").stat().st_mode & 0o777 for ext in ("safetensors", "json")}
    assert len(modes) == 1


@pytest.mark.parametrize("content", [b"hello, not a gguf", b""], ids=["text", "empty"])
def test_from_gguf_on_a_non_gguf_file(tmp_path, content):
    path = tmp_path / "x.gguf"
    path.write_bytes(content)
    with pytest.raises(SteerlabError, match="is not a readable GGUF file") as err:
        SteeringVector.from_gguf(path)
    assert str(path) in str(err.value)


def test_from_gguf_missing_file(tmp_path):
    with pytest.raises(SteerlabError, match="is not a file"):
        SteeringVector.from_gguf(tmp_path / "none.gguf")


def test_old_vector_files_still_load(saved):
    """Files written before the travel fields existed: the new fields take their defaults."""
    js = saved.with_suffix(".json")
    meta = json.loads(js.read_text())
    for key in ("operation", "typical_norm", "fraction", "orientation", "config_hash", "tokenizer_hash"):
        meta["provenance"].pop(key)
    meta.pop("usage")
    js.write_text(json.dumps(meta))
    p = SteeringVector.load(saved).provenance
    assert p.operation == "add" and p.config_hash is None and p.orientation == {}


# ================================================================== API: vectors that travel


@pytest.fixture(scope="module")
def other_folder(tmp_path_factory):
    """A tiny model with the same width but three layers, in a folder of the same base name."""
    from steerlab.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("other") / "model", n_layers=3, seed=1)


def test_vector_records_what_it_is(lm, tmp_path):
    pairs = [ContrastPair(f"q{i}", "Yes", "No") for i in range(2)]
    vec = sl.extract(lm, pairs, [1], progress=False)
    p = vec.provenance
    assert p.config_hash.startswith("v1:") and p.tokenizer_hash.startswith("v1:") and p.operation == "add"
    vec.save(tmp_path / "v")
    usage = json.loads((tmp_path / "v.json").read_text())["usage"]
    assert usage["sites"]["resid_post.1"]["hf"].startswith("hidden_states[2]: output of model.layers[1]")
    assert "final norm" in usage["sites"]["resid_post.1"]["hf"]  # layer 1 is the tiny model's last
    assert usage["basis"].startswith("raw Hugging Face") and usage["sites"]["resid_post.1"]["norm"] > 0


def test_vector_for_another_model_of_the_same_width_warns_when_applied(lm, other_folder, tiny_folder, caplog):
    """The issue's case: a vector loaded without a backend, then applied to another model: no warning."""
    from steerlab.testing import tiny_backend

    other = tiny_backend("nnsight", other_folder)
    pairs = [ContrastPair(f"q{i}", "Yes", "No") for i in range(2)]
    vec = sl.extract(other, pairs, [1], progress=False)  # made on "model" (3 layers), applied to the 2-layer tiny
    fake = SteeringVector(vec.directions, Provenance(**{**vec.provenance.to_dict(), "model": lm.name}))
    with caplog.at_level(logging.WARNING, logger="steerlab.vectors"):
        lm.logits("hi", edits=steer(fake, 1.0))  # same name: only the config hash tells them apart
    assert "config_hash" in caplog.text and "same width" in caplog.text
    with pytest.raises(SteerlabError, match="config_hash.*strict=False"):
        lm.logits("hi", edits=steer(fake, 1.0, strict=True))


def test_vector_load_strict_refuses_another_model(saved):
    import types

    other = types.SimpleNamespace(name="other", d_model=8, n_layers=4, weight_processing="none")
    with pytest.raises(SteerlabError, match="made on tiny.*'other'"):
        SteeringVector.load(saved, backend=other, strict=True)


def test_vector_of_another_width_is_refused_before_running(lm):
    with pytest.raises(SteerlabError, match=r"d_model 16\).*d_model 32"):
        lm.logits("hi", edits=steer(vector(d_model=16), 1.0))


# ================================================================== API: data (duplicates, splits)


def test_duplicate_records_are_reported_when_read(tmp_path, caplog):
    path = write_jsonl(tmp_path / "same.jsonl", persona_records(40, same=True))
    with caplog.at_level(logging.WARNING, logger="steerlab.data.readers"):
        load_persona_file(path)
    assert "39 of 40 records are copies" in caplog.text and "line 2 = line 1" in caplog.text
    assert str(path) in caplog.text


def test_duplicate_mcq_items_are_reported(tmp_path, caplog):
    item = {"question": "2 + 2?", "choices": ["4", "5"], "answer": 0}
    path = write_jsonl(tmp_path / "mcq.jsonl", [item, {**item, "question": "3 + 3?"}, item])
    with caplog.at_level(logging.WARNING, logger="steerlab.data.readers"):
        load_mcq_jsonl(path)
    assert "1 of 3 records are copies" in caplog.text and "line 3 = line 1" in caplog.text


def test_forty_identical_records_cannot_be_split(tmp_path):
    """The issue's case: the same record in train and test gave 'best layer: 16 (effect +0.998)'."""
    pairs = load_persona_file(write_jsonl(tmp_path / "same.jsonl", persona_records(40, same=True)))
    with pytest.raises(DataError, match=r"val and test part\(s\) are empty because the 40 items hold only 1 distinct"):
        split(pairs, (0.6, 0.2, 0.2), seed=0)


def test_copies_never_straddle_a_split(tmp_path, caplog):
    records = persona_records(30) + persona_records(10)  # the first 10 records appear twice
    pairs = load_persona_file(write_jsonl(tmp_path / "some.jsonl", records))
    with caplog.at_level(logging.WARNING, logger="steerlab.data.splits"):
        parts = split(pairs, (0.6, 0.2, 0.2), seed=3)
    keys = [{(p.prompt, p.positive) for p in part} for part in parts]
    assert not (keys[0] & keys[1] or keys[0] & keys[2] or keys[1] & keys[2])
    assert sum(map(len, parts)) == 40 and "10 of 40 items are copies" in caplog.text


def test_split_without_copies_is_unchanged():
    """Grouping copies keeps the seeded order of distinct items (notebooks' splits do not move)."""
    import random

    items = list(range(20))
    order = list(range(20))
    random.Random(5).shuffle(order)
    assert split(items, (0.5, 0.5), seed=5).train == order[:10]


# ================================================================== API: models


def test_load_model_on_a_folder_with_no_model(tmp_path):
    (tmp_path / "notes.txt").write_text("no model here")
    with pytest.raises(SteerlabError, match="config.json") as err:
        sl.load_model(str(tmp_path))
    assert str(tmp_path) in str(err.value)


def test_load_model_unknown_dtype(tiny_folder):
    with pytest.raises(SteerlabError, match="float13"):
        sl.load_model(str(tiny_folder), dtype="float13")


def test_load_model_unknown_backend(tiny_folder):
    with pytest.raises(SteerlabError, match="unknown backend 'jax'"):
        sl.load_model(str(tiny_folder), backend="jax")


# ================================================================== API: agents


@pytest.fixture
def silent_server():
    """A server that accepts connections (the kernel completes the handshake) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()


def test_agent_that_never_answers_times_out_with_a_message_per_retry(silent_server, caplog):
    """The issue's case: 191 s of silence (60 s x 3 tries) and no option for the timeout."""
    agent = agents.OpenAIAgent(base_url=silent_server, model="m", timeout=0.3, retries=1)
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="steerlab.agents.openai"):
        with pytest.raises(AgentError, match=r"no answer within 0.3 s on each of 2 attempts.*--agent-timeout"):
            agent.complete([{"role": "user", "content": "hi"}])
    assert time.perf_counter() - start < 5
    assert "attempt 1 of 2 failed (no answer within 0.3 s); retrying" in caplog.text


@pytest.mark.parametrize("timeout", [0, -1, math.nan, "soon"])
def test_agent_bad_timeouts(timeout):
    with pytest.raises(AgentError, match="positive number of seconds"):
        agents.OpenAIAgent(base_url="http://127.0.0.1:9/v1", model="m", timeout=timeout)


def test_agent_timeout_from_the_environment(monkeypatch):
    monkeypatch.setenv("STEERLAB_AGENT_TIMEOUT", "ten")
    with pytest.raises(AgentError, match="STEERLAB_AGENT_TIMEOUT.*'ten'"):
        agents.OpenAIAgent(base_url="http://127.0.0.1:9/v1", model="m")
    monkeypatch.setenv("STEERLAB_AGENT_TIMEOUT", "7.5")
    assert agents.OpenAIAgent(base_url="http://127.0.0.1:9/v1", model="m").timeout == 7.5


@pytest.mark.parametrize("url", ["ftp://host/v1", "localhost:8000", "http://"])
def test_agent_bad_base_urls(url):
    with pytest.raises(AgentError, match="is not an http"):
        agents.OpenAIAgent(base_url=url, model="m")


def test_agent_bad_retries_and_empty_statement():
    with pytest.raises(AgentError, match="retries must be an integer >= 0, got -1"):
        agents.OpenAIAgent(base_url="http://127.0.0.1:9/v1", model="m", retries=-1)
    with pytest.raises(AgentError, match="behaviour statement is empty"):
        agents.from_statement("   ")


# ================================================================== API: SAEs and output folders


@pytest.mark.parametrize(
    "kwargs, words",
    [({"epochs": math.nan}, "epochs and lr"), ({"lr": 0.0}, "epochs and lr"), ({"l1_coefficient": -1.0}, "l1"),
     ({"n_tokens": 0}, "n_tokens")],
)  # fmt: skip
def test_sae_config_rejects_bad_numbers(kwargs, words):
    from steerlab.sae import SAEConfig

    with pytest.raises(SteerlabError, match=words):
        SAEConfig(**kwargs)


def test_sae_stats_of_one_token_are_nan_not_a_zero_division():
    from steerlab.sae.quality import latent_stats

    class Identity:  # an SAE stand-in: one latent per dimension
        cfg = type("C", (), {"d_sae": 4})()
        dtype = torch.float32
        W_dec = torch.eye(4)

        def encode(self, h):
            return h.relu()

        def decode(self, z):
            return z

    stats = latent_stats(Identity(), torch.ones(1, 4))
    assert math.isnan(stats["explained_variance"]) and stats["n_tokens"] == 1


def test_output_folder_that_is_a_file_or_read_only(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SteerlabError, match=r"output folder .*f is a file"):
        check_output_folder(tmp_path / "f")
    with pytest.raises(SteerlabError, match="cannot (write to|create)"):
        check_output_folder(READ_ONLY)


# ================================================================== CLI: every command, before the model loads


@pytest.fixture
def persona(tmp_path):
    return write_jsonl(tmp_path / "p.jsonl", persona_records(20))


@pytest.mark.parametrize(
    "extra, words",
    [(["--coeffs=nan,0"], "finite"), (["--coeffs=inf,0"], "finite"), (["--coeffs=1e30,0"], "1e+30"),
     (["--coeffs", "a,b"], "cannot read coeffs"), (["--site", "resid_middle"], "resid_middle"),
     (["--layers", "1-x"], "cannot read layers"), (["--batch-size", "0"], "--batch-size"),
     (["--format", "csv"], "--format"), (["--n-train", "0"], "--n-train"), (["--threads", "0"], "--threads")],
)  # fmt: skip
def test_cli_sweep_bad_arguments(no_model, persona, tmp_path, extra, words):
    args = ["sweep", "--data", persona, "--format", "persona", "--out", tmp_path / "o"]
    assert_clean_exit(cli(*args, *extra), words)


def test_cli_sweep_missing_and_folder_data(no_model, tmp_path):
    assert_clean_exit(cli("sweep", "--data", tmp_path / "none.jsonl", "--format", "persona", "--out", tmp_path / "o"),
                      "file not found", "none.jsonl")  # fmt: skip
    assert_clean_exit(cli("sweep", "--data", tmp_path, "--format", "persona", "--out", tmp_path / "o"), "is a folder")


def test_cli_sweep_forty_identical_records(no_model, tmp_path):
    data = write_jsonl(tmp_path / "same.jsonl", persona_records(40, same=True))
    assert_clean_exit(cli("sweep", "--data", data, "--format", "persona", "--out", tmp_path / "o"),
                      "1 distinct", "copies")  # fmt: skip


@pytest.mark.parametrize("out", ["file", "read-only"])
def test_cli_sweep_bad_out(no_model, persona, tmp_path, out):
    target = READ_ONLY if out == "read-only" else tmp_path / "taken"
    if out == "file":
        target.write_text("x")
    assert_clean_exit(cli("sweep", "--data", persona, "--format", "persona", "--out", target), str(target))


def test_cli_text_label_rerun_with_other_settings_is_refused(tmp_path, tiny_folder):
    rows = ["text,label"] + [f'"{"happy" if i % 2 else "sad"} day {i}",{i % 2}' for i in range(20)]
    data = tmp_path / "mood.csv"
    data.write_text("\n".join(rows) + "\n")
    base = ["sweep", "--data", data, "--format", "text-label", "--model", tiny_folder, "--out", tmp_path / "o",
            "--no-progress", "--layers", "1"]  # fmt: skip
    assert cli(*base, "--coeffs=-1,0,1").exit_code == 0
    assert_clean_exit(cli(*base, "--coeffs=-2,0,2"), "different")


def test_cli_models_bad_backend(no_model):
    assert_clean_exit(cli("models", "--load", "x", "--backend", "jax"), "--backend")


def test_cli_models_load_a_folder_with_no_model(tmp_path):
    assert_clean_exit(cli("models", "--load", tmp_path), "config.json")


@pytest.mark.parametrize(
    "extra, words",
    [(["--out", "FILE"], "is a file"), (["--out", str(READ_ONLY)], "cannot"), (["--fractions", "nan"], "finite"),
     (["--threads", "0"], "--threads"), (["--data", "MISSING"], "does not exist"), (["--layers", "x"], "layers")],
)  # fmt: skip
def test_cli_pas_bad_arguments(no_model, tmp_path, extra, words):
    data = write_jsonl(tmp_path / "mcq.jsonl", [{"question": "q", "choices": ["a", "b"], "answer": 0}] * 3)
    (tmp_path / "FILE").write_text("x")
    args = {"--data": str(data), "--out": str(tmp_path / "run")}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = str(tmp_path / value) if value in ("FILE", "MISSING") else value
    assert_clean_exit(cli("pas", *[x for kv in args.items() for x in kv]), words)


@pytest.mark.parametrize(
    "extra, words",
    [(["--out", "FILE"], "is a file"), (["--data", "MISSING"], "does not exist"),
     (["--subbehaviours", "MISSING"], "does not exist"), (["--agent-timeout", "0"], "--agent-timeout"),
     (["--agent-timeout", "-5"], "--agent-timeout"), (["--agent", "gpt"], "--agent"), (["--tau", "-1"], "--tau")],
)  # fmt: skip
def test_cli_saas_bad_arguments(no_model, persona, tmp_path, extra, words):
    (tmp_path / "FILE").write_text("x")
    args = {"--data": str(persona), "--behavior": "liking", "--agent": "embedding", "--out": str(tmp_path / "o")}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = str(tmp_path / value) if value in ("FILE", "MISSING") else value
    assert_clean_exit(cli("saas", *[x for kv in args.items() for x in kv]), words)


@pytest.mark.parametrize(
    "extra, words",
    [(["--site", "resid_middle"], "resid_middle"), (["--epochs", "0"], "epochs"), (["--epochs", "nan"], "epochs"),
     (["--tokens", "0"], "--tokens"), (["--l1", "-1"], "--l1"), (["--k", "5000"], "k=5000")],
)  # fmt: skip
def test_cli_sae_train_bad_arguments(no_model, extra, words):
    assert_clean_exit(cli("sae", "train", *extra), words)


def test_cli_notebooks_bad_arguments(tmp_path):
    assert_clean_exit(cli("notebooks", tmp_path / "missing.ipynb", "--out", tmp_path / "f"), "does not exist")
    (tmp_path / "f").write_text("x")
    nb = tmp_path / "01_x.ipynb"
    nb.write_text("{}")
    assert_clean_exit(cli("notebooks", nb, "--out", tmp_path / "f"), "is a file")


# ================================================================== CLI: first hour


def test_cli_errors_point_to_the_errors_page(no_model, persona, tmp_path):
    assert_clean_exit(cli("sweep", "--data", persona, "--format", "persona", "--out", tmp_path / "o", "--coeffs=nan,0"),
                      "docs/errors.md")  # fmt: skip


def test_cli_help_shows_no_bool_placeholders():
    for args in (["--help"], ["sweep", "--help"], ["notebooks", "--help"], ["sae", "train", "--help"]):
        result = cli(*args)
        assert result.exit_code == 0 and "<bool>" not in result.output, result.output


def backend_default(*names: str) -> str:
    import typer.main

    command = typer.main.get_command(app)
    for name in names:
        command = command.commands[name]
    default = next(p.default for p in command.params if p.name == "backend")
    return str(getattr(default, "value", default))


@pytest.mark.parametrize("names", [("models",), ("saas",), ("sae", "train"), ("pas",)])
def test_cli_backend_default_is_nnsight(names):
    if names == ("pas",):  # pas loads with load_model's own default, which is nnsight
        import inspect

        assert inspect.signature(sl.load_model).parameters["backend"].default == "nnsight"
        return
    assert backend_default(*names) == "nnsight"


def test_cli_sweep_backend_default_is_nnsight():
    assert backend_default("sweep") == "nnsight"


@pytest.mark.backends("tl")
def test_cli_models_load_tl_prints_nothing_from_transformer_lens(tiny_folder):
    result = cli("models", "--load", tiny_folder, "--backend", "tl", "--max-new-tokens", 2)
    assert result.exit_code == 0 and "Moving model to device" not in result.output


def test_cli_saas_works_offline_out_of_the_box(tmp_path, tiny_folder):
    """--agent embedding without --subbehaviours: the statement is the one sub-behaviour, and it says so."""
    data = write_jsonl(tmp_path / "p.jsonl", persona_records(12))
    out = tmp_path / "out"
    result = cli("saas", "--data", data, "--behavior", "liking things", "--agent", "embedding", "--out", out,
                 "--model", tiny_folder, "--layer", 1, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "behaviour statement is the single sub-behaviour" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["subbehaviours_source"] == agents.STATEMENT_SOURCE
    assert "score:liking things" in (out / "instances.csv").read_text()


def test_saas_summary_names_only_the_agents_used(tmp_path, tiny_folder):
    data = write_jsonl(tmp_path / "p.jsonl", persona_records(12))
    subs = agents.save_subbehaviours(agents.from_statement("liking"), tmp_path / "s.yaml")
    result = cli("saas", "--data", data, "--behavior", "liking", "--agent", "embedding", "--out", tmp_path / "out",
                 "--subbehaviours", subs, "--model", tiny_folder, "--layer", 1, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not str(summary.get("agent")).startswith("local:")


@pytest.mark.parametrize(
    "args, words",
    [(["sweep", "--data", "/nonexistent/x.jsonl", "--format", "persona", "--out", "/tmp/x"], "file not found"),
     (["saas", "--data", "/nonexistent/x.jsonl", "--behavior", "b", "--agent", "embedding", "--out", "/proc/self"],
      "does not exist")],
)  # fmt: skip
def test_cli_in_a_real_process_prints_no_traceback(args, words):
    done = subprocess.run([sys.executable, "-m", "steerlab", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and words in done.stderr, done.stderr


def test_cli_sae_train_on_one_token_warns_instead_of_dividing_by_zero(tmp_path, tiny_folder, monkeypatch, caplog):
    """The issue's cases: --tokens 1 raised ZeroDivisionError; -0.94 explained variance came without a warning;
    the progress bar stayed at 0."""
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="steerlab.sae.train"):
        result = cli("sae", "train", "--model", tiny_folder, "--layer", 1, "--tokens", 1, "--d-sae", 64, "--k", 4,
                     "--eval-tokens", 64)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "too few training tokens (1 distinct" in caplog.text
    assert "training SAE: 100%" in result.output and "4/4" in result.output
