"""steerlab.pipelines.saas_vector: the SAAS vector's compute step (exact oracle on a tiny model) and its writer."""

import json

import pandas as pd
import pytest
import torch

from steerlab.agents import SubBehaviour, SubBehaviourSet
from steerlab.data import ContrastPair
from steerlab.errors import SteerlabError
from steerlab.pipelines.saas_vector import compute_saas_vector, read_pairs, write_saas_vector

SUBS = SubBehaviourSet("liking", (SubBehaviour("warmth", "likes things", 8.0), SubBehaviour("calm", "is calm", 1.0)),
                       source="hand-written")  # fmt: skip


def _pairs(n=12):
    return [ContrastPair(f'Would you say "I like item {k}"?', "Yes", "No") for k in range(n)]


@pytest.fixture(scope="module")
def lm(tiny_folder):
    from steerlab.testing import tiny_backend

    return tiny_backend("nnsight", tiny_folder)


@pytest.fixture(scope="module")
def result(lm):
    return compute_saas_vector(lm, _pairs(), "liking things", "embedding", subbehaviours=SUBS, layer=1,
                               dataset="toy", progress=False)  # fmt: skip


def test_compute_returns_the_weighted_mean_of_local_vectors(lm, result):
    from steerlab.activations import collect_pairs

    site = lm.site(1)
    acts = collect_pairs(lm, _pairs(), [site], progress=False)
    w = torch.tensor(result.instances.weight.to_numpy(), dtype=torch.float64)
    expected = ((acts.pos[site] - acts.neg[site]).double() * w[:, None]).sum(0)
    torch.testing.assert_close(result.vector[site].double(), expected, rtol=1e-5, atol=1e-6)
    inst = result.instances
    assert inst.weight.sum() == pytest.approx(1.0) and (inst.weight[~inst.eligible] == 0).all()
    assert list(inst.columns) == ["instance", "prompt", "positive", "score:warmth", "s", "eligible", "weight"]
    assert inst.eligible.tolist() == result.eligibility.eligible.tolist()
    assert result.vector.provenance.method == "saas" and result.vector.provenance.dataset == "toy"
    assert result.summary["n_pairs"] == 12 and result.summary["agent_calls"] is None  # no cache: no counts
    assert result.attempts.empty  # hand-written sub-behaviours and embedding scores: no chat attempts


def test_compute_writes_nothing(lm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    compute_saas_vector(lm, _pairs(6), "liking", "embedding", subbehaviours=SUBS, layer=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_writer_writes_every_frame_and_a_loadable_vector(result, tmp_path):
    from steerlab.agents import load_subbehaviours
    from steerlab.vectors import SteeringVector

    paths = write_saas_vector(result, tmp_path / "out")
    assert sorted(paths) == ["attempts.csv", "eligibility.csv", "instances.csv", "subbehaviours.yaml", "summary.json",
                             "vector.json", "vector.safetensors"]  # fmt: skip
    assert all(p.is_file() for p in paths.values())
    back = SteeringVector.load(tmp_path / "out" / "vector")
    torch.testing.assert_close(back[back.sites[0]], result.vector[result.vector.sites[0]])
    pd.testing.assert_frame_equal(pd.read_csv(paths["instances.csv"]), result.instances, check_dtype=False)
    assert json.loads(paths["summary.json"].read_text()) == result.summary
    assert load_subbehaviours(paths["subbehaviours.yaml"]) == SUBS


def test_bad_input_raises(lm, tmp_path):
    with pytest.raises(SteerlabError, match="at least 4"):
        compute_saas_vector(lm, _pairs(3), "liking", "embedding", subbehaviours=SUBS, layer=1, progress=False)
    with pytest.raises(SteerlabError, match="unknown agent 'gpt'.*valid: local, openai, embedding"):
        compute_saas_vector(lm, _pairs(), "liking", "gpt", subbehaviours=SUBS, layer=1, progress=False)
    data = tmp_path / "p.jsonl"
    data.write_text(json.dumps({"question": "Q?", "answer_matching_behavior": " Yes",
                                "answer_not_matching_behavior": " No"}) + "\n")  # fmt: skip
    with pytest.raises(SteerlabError, match="p.jsonl has 1 usable pairs"):
        read_pairs(data)


def test_agents_without_usable_subbehaviours_say_where_their_answers_are(tmp_path):
    from steerlab.testing import make_tiny_model, tiny_backend

    # a tiny random model with room for the agent prompts (character tokens) answers gibberish, so Agent-1's
    # answer never parses
    lm = tiny_backend("nnsight", make_tiny_model(tmp_path / "long", n_ctx=2048))
    with pytest.raises(SteerlabError, match=r"no usable sub-behaviours.*agent cache .*cache.*--subbehaviours FILE"):
        compute_saas_vector(lm, _pairs(), "liking", "local", layer=1, cache=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").rglob("*.json"))  # every answer was cached


def test_a_local_agent_whose_context_cannot_hold_the_prompt_says_so(lm):
    with pytest.raises(SteerlabError, match=r"prompt 0 has \d+ tokens, more than .* context of 256 tokens"):
        compute_saas_vector(lm, _pairs(), "liking", "local", layer=1, progress=False)
