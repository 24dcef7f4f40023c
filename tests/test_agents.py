"""steerlab.agents: cache, parsing of messy answers, the three roles, YAML files, the OpenAI client (fake server)."""

import http.server
import json
import threading

import numpy as np
import pytest

from steerlab import agents
from steerlab.agents.base import AgentError


class Scripted:
    """A fake chat agent answering from a list, counting calls."""

    def __init__(self, answers, name="scripted"):
        self.answers = list(answers)
        self.name = name
        self.calls = []

    def complete(self, messages, **options):
        self.calls.append((messages, options))
        return self.answers[min(len(self.calls) - 1, len(self.answers) - 1)]


MSG = [{"role": "user", "content": "Rate this."}]


# ------------------------------------------------------------------------------------------- cache


def test_cache_hit_means_no_second_call(tmp_path):
    inner = Scripted(["7"])
    agent = agents.CachedAgent(inner, tmp_path)
    assert agent.complete(MSG, temperature=0.0) == "7"
    assert agent.complete(MSG, temperature=0.0) == "7"
    assert len(inner.calls) == 1 and (agent.hits, agent.misses) == (1, 1)
    agent.complete(MSG, temperature=0.7)  # other options: another call
    assert len(inner.calls) == 2
    (record,) = [r for r in agents.AgentCache(tmp_path).records() if r["options"] == {"temperature": 0.0}]
    assert record["agent"] == "scripted" and record["answer"] == "7" and record["messages"] == MSG
    # a fresh process with the same folder is served offline
    again = agents.CachedAgent(Scripted(["never"]), tmp_path, offline=True)
    assert again.complete(MSG, temperature=0.0) == "7"
    with pytest.raises(AgentError, match="offline"):
        again.complete([{"role": "user", "content": "new"}])


def test_cache_key_depends_on_agent_name(tmp_path):
    a = agents.CachedAgent(Scripted(["1"], name="a"), tmp_path)
    b = agents.CachedAgent(Scripted(["2"], name="b"), tmp_path)
    assert (a.complete(MSG), b.complete(MSG)) == ("1", "2")
    assert len(agents.AgentCache(tmp_path)) == 2


def test_complete_many_asks_only_the_misses(tmp_path):
    inner = Scripted(["x"])
    agent = agents.CachedAgent(inner, tmp_path)
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    agent.complete(convs[1])
    assert agent.complete_many(convs) == ["x", "x", "x"]
    assert len(inner.calls) == 3  # q1 once, then q0 and q2


def test_bad_messages_and_non_agents(tmp_path):
    with pytest.raises(AgentError, match="role"):
        agents.CachedAgent(Scripted(["1"]), tmp_path).complete([{"role": "robot", "content": "x"}])
    with pytest.raises(AgentError, match="not an agent"):
        agents.CachedAgent(object(), tmp_path)


# ----------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("1. 8\n2. 6\n3. 9", [8, 6, 9]),
        ("Sure! Here are my scores:\n1) **8/10**\n2) 6 out of 10\n3) Kindness: 9\nHope this helps.", [8, 6, 9]),
        ("- warmth: 8\n- trust: 6\n- modesty: 9", [8, 6, 9]),
        ("1. 8\n2. 6\n3. 9\nIn total I looked at 3 things.", [8, 6, 9]),
        ("Sub-behaviour 1: 7.5\nSub-behaviour 2: 0\nSub-behaviour 3: 10", [7.5, 0, 10]),
    ],
)
def test_parse_scores_messy(answer, expected):
    assert agents.parse_scores(answer, 3) == expected


@pytest.mark.parametrize(
    "answer, match",
    [
        ("1. 8\n2. 6", "found 2 scores, expected 3"),
        ("I cannot rate this.", "found 0 scores"),
        ("1. 8\n2. 60\n3. 9", "outside"),
        ("1.1.1.1.1.1.1.1", "expected 3"),
    ],
)
def test_parse_scores_failures(answer, match):
    with pytest.raises(agents.ParseError, match=match):
        agents.parse_scores(answer, 3)


def test_parse_subbehaviours_messy():
    answer = (
        "Here is the breakdown you asked for:\n\n"
        "1. **Warmth**: shows care for others\n"
        "2) Trust - believes people mean well\n"
        "- Example 1: Yes\n"  # an echo of the prompt's examples
        "* Modesty\n"
        "3. warmth: duplicate\n"
        "4. Cooperation: avoids conflict\n"
        "5. Altruism: helps others\n"
        "I hope this is useful!"
    )
    items = agents.parse_subbehaviours(answer, k_min=5, k_max=10)
    assert [n for n, _ in items] == ["Warmth", "Trust", "Modesty", "Cooperation", "Altruism"]
    assert items[1] == ("Trust", "believes people mean well")
    assert len(agents.parse_subbehaviours(answer, k_min=2, k_max=3)) == 3
    with pytest.raises(agents.ParseError, match="at least 6"):
        agents.parse_subbehaviours(answer, k_min=6)
    with pytest.raises(agents.ParseError):
        agents.parse_subbehaviours("1. Agreeableness: 1.1.1.1.1.1.1.1.1.1", k_min=5)


# ------------------------------------------------------------------------------------------- roles

SUBS_ANSWER = "1. a: x\n2. b: y\n3. c: z\n4. d: w\n5. e: v"


def test_decompose_retries_and_logs_failures():
    agent = Scripted(["I'm here to help you.", SUBS_ANSWER])
    log = []
    subs = agents.decompose(agent, "kindness", ["ex1", "ex2"], log=log)
    assert [s.name for s in subs.items] == ["a", "b", "c", "d", "e"]
    assert "scripted" in subs.source
    frame = agents.attempts_frame(log)
    assert frame.ok.tolist() == [False, True] and frame.attempt.tolist() == [0, 1]
    assert agent.calls[0][1]["temperature"] == 0.0 and agent.calls[1][1]["temperature"] > 0
    assert "kindness" in agent.calls[0][0][0]["content"] and "ex2" in agent.calls[0][0][0]["content"]


def test_decompose_gives_none_after_all_retries():
    log = []
    assert agents.decompose(Scripted(["no list here"]), "kindness", ["e"], retries=1, log=log) is None
    assert len(log) == 2 and not any(r["ok"] for r in log)


def test_rate_contributions_and_kept():
    subs = agents.decompose(Scripted([SUBS_ANSWER]), "kindness", ["e"])
    rated = agents.rate_contributions(Scripted(["1. 9\n2. 1\n3. 2\n4. 10\n5. 0"]), subs)
    assert [s.contribution for s in rated.items] == [9, 1, 2, 10, 0]
    assert [s.name for s in rated.kept] == ["a", "c", "d"]  # below 2 dropped
    assert rated.kept_contributions.tolist() == [9, 2, 10]
    flat = rated.without_contributions()
    assert len(flat.kept) == 5 and flat.kept_contributions.tolist() == [1] * 5


def test_score_instances_with_chat_agent_fills_failures():
    subs = agents.SubBehaviourSet("b", [agents.SubBehaviour("a", "x", 5), agents.SubBehaviour("c", "z", 5)])

    class PerInstance(Scripted):
        def complete(self, messages, **options):
            self.calls.append((messages, options))
            return "1. 2\n2. 4" if "good" in messages[0]["content"] else "no idea"

    log = []
    scores = agents.score_instances(PerInstance([]), subs, ["good one", "bad one", "good two"], retries=1, log=log)
    np.testing.assert_array_equal(scores, [[2, 4], [2, 4], [2, 4]])  # the failed row gets the column means
    assert sum(not r["ok"] for r in log) == 2  # instance 1, attempts 0 and 1


def test_score_instances_with_scorer_object():
    class Fixed:
        def score(self, texts, descriptions):
            return np.arange(len(texts) * len(descriptions), dtype=float).reshape(len(texts), len(descriptions))

    subs = agents.SubBehaviourSet("b", [agents.SubBehaviour("a", "x", 5), agents.SubBehaviour("c", "z", 1)])
    assert agents.score_instances(Fixed(), subs, ["t1", "t2"]).shape == (2, 1)  # only kept sub-behaviours


def test_instance_text_spells_out_ab_option():
    from steerlab.data import ContrastPair

    pair = ContrastPair("Do you have hobbies?\n\nChoices:\n(A) I am an AI.\n(B) I love painting.", "(A)", "(B)")
    assert agents.instance_text(pair).endswith("Answer: (A) I am an AI.")
    assert agents.instance_text(pair, compact=True) == "Do you have hobbies?\nAnswer: I am an AI."
    persona = ContrastPair('Would you say "I like people"?', "Yes", "No", {"statement": "I like people"})
    assert agents.instance_text(persona, compact=True) == '"I like people" -> Yes'


def test_prompts_are_package_data():
    for name in ("agent1_decompose", "agent2_contribution", "agent3_score"):
        assert "{behaviour}" in agents.prompt_template(name)


# ------------------------------------------------------------------------------------------- YAML


def test_subbehaviour_yaml_round_trip(tmp_path):
    subs = agents.SubBehaviourSet(
        "kindness",
        [agents.SubBehaviour("warmth", "cares", 9), agents.SubBehaviour("tact", "tact", None)],
        "hand-written",
    )
    path = agents.save_subbehaviours(subs, tmp_path / "s.yaml")
    back = agents.load_subbehaviours(path)
    assert back.items == subs.items and back.source == "hand-written" and back.behaviour == "kindness"


def test_subbehaviour_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("subbehaviours:\n  - {name: x, contribution: 11}\n")
    with pytest.raises(AgentError, match=r"contribution 11.*\[0, 10\]"):
        agents.load_subbehaviours(bad)
    with pytest.raises(AgentError, match="does not exist"):
        agents.load_subbehaviours(tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------- OpenAI-compatible client


class _Handler(http.server.BaseHTTPRequestHandler):
    requests: list = []
    plan: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        status, payload = type(self).plan.pop(0) if type(self).plan else (200, None)
        if payload is None:
            payload = {
                "choices": [{"message": {"role": "assistant", "content": f"echo {body['messages'][-1]['content']}"}}]
            }
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.requests, _Handler.plan = [], []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_openai_client_against_fake_server(server):
    agent = agents.OpenAIAgent(base_url=server, model="m1", api_key="sk-test", retries=0)
    assert agent.complete(MSG, temperature=0.0, max_tokens=5) == "echo Rate this."
    (req,) = _Handler.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"] == {"model": "m1", "messages": MSG, "temperature": 0.0, "max_tokens": 5}
    assert agent.name == f"openai:m1@{server}"


def test_openai_client_settings_from_env(server, monkeypatch):
    monkeypatch.setenv("STEERLAB_AGENT_BASE_URL", server)
    monkeypatch.setenv("STEERLAB_AGENT_MODEL", "env-model")
    monkeypatch.delenv("STEERLAB_AGENT_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    agents.OpenAIAgent().complete(MSG)
    assert _Handler.requests[0]["body"]["model"] == "env-model" and _Handler.requests[0]["auth"] is None


def test_openai_client_retries_server_errors_and_reports_others(server):
    _Handler.plan = [(503, {"error": "busy"}), (200, None)]
    agent = agents.OpenAIAgent(base_url=server, model="m", retries=1)
    assert agent.complete(MSG) == "echo Rate this."
    assert len(_Handler.requests) == 2
    _Handler.plan = [(401, {"error": "bad key"})]
    with pytest.raises(AgentError, match="HTTP 401.*bad key"):
        agent.complete(MSG)
    _Handler.plan = [(200, {"unexpected": True})]
    with pytest.raises(AgentError, match="unexpected answer"):
        agent.complete(MSG)


def test_openai_client_unreachable_and_unconfigured(monkeypatch):
    for var in ("STEERLAB_AGENT_MODEL", "OPENAI_MODEL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AgentError, match="no model name"):
        agents.OpenAIAgent(base_url="http://127.0.0.1:9")
    agent = agents.OpenAIAgent(base_url="http://127.0.0.1:9/v1", model="m", retries=0, timeout=2)
    with pytest.raises(AgentError, match="cannot reach"):
        agent.complete(MSG)


def test_cached_openai_agent_records_its_name(server, tmp_path):
    agent = agents.CachedAgent(agents.OpenAIAgent(base_url=server, model="m", retries=0), tmp_path)
    agent.complete(MSG)
    agent.complete(MSG)
    assert len(_Handler.requests) == 1
    assert agents.AgentCache(tmp_path).records()[0]["agent"].startswith("openai:m@")


# ------------------------------------------------------------------------------ local and embedding


def test_local_agent_on_tiny_model(tiny_folder):
    from steerlab.testing import tiny_backend

    agent = agents.LocalAgent(tiny_backend("nnsight", tiny_folder), max_tokens=4)
    out = agent.complete([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert isinstance(out, str) and agent.name.startswith("local:")
    again = agent.complete_many([[{"role": "user", "content": "hi"}], [{"role": "user", "content": "yo"}]])
    assert len(again) == 2
    with pytest.raises(AgentError, match="last message"):
        agent.complete([{"role": "assistant", "content": "x"}])


def test_minilm_folder_is_found_offline():
    assert (agents.minilm_folder() / "model.safetensors").exists()


@pytest.mark.slow
def test_embedding_scorer_ranks_related_text_higher():
    scorer = agents.EmbeddingScorer()
    s = scorer.score(["I love helping people in need.", "The stock market fell today."], ["altruism: helps others"])
    assert s.shape == (2, 1) and 0 <= s.min() and s.max() <= 10
    assert s[0, 0] > s[1, 0] + 1
