"""Tests for steerlab.data.download and steerlab.data.fetching against a local HTTP server (no internet).

A fixture tree of a few small persona-style files is served on 127.0.0.1 through the mirror setting
(``STEERLAB_DATA_MIRROR``), with its own sources table, so nothing depends on the real 107 MB.
"""

from __future__ import annotations

import json

import pytest
from _data_server import COMMIT, HOST, REPO, FileServer, fixture_tree, offline_data

from steerlab import data as sd
from steerlab.data import DataError


def _persona_lines(n: int, tag: str) -> bytes:
    rows = [
        {"question": f"Is this {tag} statement {i} yours?", "statement": f"{tag} {i}",
         "answer_matching_behavior": " Yes", "answer_not_matching_behavior": " No"}
        for i in range(n)
    ]  # fmt: skip
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


FILES = {
    "anthropic-evals/persona/kind.jsonl": _persona_lines(3, "kind"),
    "anthropic-evals/persona/calm.jsonl": _persona_lines(4, "calm"),
    "anthropic-evals/persona/big.jsonl": _persona_lines(3000, "big"),  # about 300 kB: dropped halfway in a test
}


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The fixture tree behind a local HTTP server, steerlab pointed at it as its mirror; yields (server, cache)."""
    table = fixture_tree(tmp_path / "served", FILES)
    cache = offline_data(monkeypatch, tmp_path, table)
    server = FileServer(tmp_path / "served")
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", server.url)
    yield server, cache
    server.close()


def _leftovers(cache):
    return sorted(p.name for p in cache.rglob("*.part"))


def test_fetch_downloads_checks_and_loads(served):
    server, cache = served
    report = sd.fetch("persona", progress=False)
    assert sorted(report["path"]) == sorted(FILES)
    assert set(report["status"]) == {"downloaded"}
    for rel, raw in FILES.items():
        assert (cache / rel).read_bytes() == raw
    assert _leftovers(cache) == []
    assert {path for path, _ in server.requests} == {f"/{HOST}/{REPO}/{COMMIT}/persona/{n}.jsonl"
                                                     for n in ("kind", "calm", "big")}  # fmt: skip
    pairs = sd.load_dataset("persona:kind")
    assert [p.meta["statement"] for p in pairs] == ["kind 0", "kind 1", "kind 2"]
    assert pairs[0].meta["source"] == "anthropic-evals/persona/kind.jsonl"  # same label as from a local root
    # a second fetch verifies the cached files and downloads nothing
    n_requests = len(server.requests)
    assert set(sd.fetch("persona", progress=False)["status"]) == {"cached"}
    assert len(server.requests) == n_requests


def test_fetch_spec_downloads_only_what_the_loader_reads(served):
    server, cache = served
    report = sd.fetch("persona:calm", progress=False)
    assert list(report["path"]) == ["anthropic-evals/persona/calm.jsonl"]
    assert not (cache / "anthropic-evals/persona/kind.jsonl").exists()
    assert sd.list_persona_behaviours() == ["big", "calm", "kind"]  # listed from the sources table
    status = sd.list_datasets().set_index("name").loc["persona"]
    assert (status["files"], status["cached"], status["status"]) == (3, 1, "partial")


def test_checksum_mismatch_is_an_error_and_leaves_nothing(tmp_path, monkeypatch):
    tampered = {"anthropic-evals/persona/kind.jsonl": _persona_lines(3, "evil")}
    table = fixture_tree(tmp_path / "served", FILES, tamper=tampered)
    cache = offline_data(monkeypatch, tmp_path, table)
    server = FileServer(tmp_path / "served")
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", server.url)
    try:
        with pytest.raises(DataError, match="checksum mismatch for anthropic-evals/persona/kind.jsonl.*deleted"):
            sd.fetch("persona:kind", progress=False)
    finally:
        server.close()
    assert not (cache / "anthropic-evals/persona/kind.jsonl").exists()
    assert _leftovers(cache) == []


def test_interrupted_download_resumes_with_a_range_request(served):
    server, cache = served
    url_path = f"/{HOST}/{REPO}/{COMMIT}/persona/big.jsonl"
    size = len(FILES["anthropic-evals/persona/big.jsonl"])
    server.drop_once.add(url_path)
    sd.fetch("persona:big", progress=False, retries=1)
    gets = [rng for path, rng in server.requests if path == url_path]
    assert gets == [None, f"bytes={size // 2}-"]  # the second request asks only for the missing half
    assert (cache / "anthropic-evals/persona/big.jsonl").read_bytes() == FILES["anthropic-evals/persona/big.jsonl"]
    assert _leftovers(cache) == []


def test_interrupted_download_is_kept_and_resumed_by_a_later_fetch(served):
    server, cache = served
    url_path = f"/{HOST}/{REPO}/{COMMIT}/persona/big.jsonl"
    size = len(FILES["anthropic-evals/persona/big.jsonl"])
    server.drop_once.add(url_path)
    with pytest.raises(DataError, match=r"closed after .* a rerun resumes there.*steerlab data fetch persona"):
        sd.fetch("persona:big", progress=False, retries=0)
    part = cache / "anthropic-evals/persona/big.jsonl.part"
    assert part.stat().st_size == size // 2
    assert not (cache / "anthropic-evals/persona/big.jsonl").exists()
    sd.fetch("persona:big", progress=False, retries=0)
    assert server.requests[-1] == (url_path, f"bytes={size // 2}-")
    assert (cache / "anthropic-evals/persona/big.jsonl").read_bytes() == FILES["anthropic-evals/persona/big.jsonl"]
    assert not part.exists()


def test_offline_fetch_names_the_mirror_setting(tmp_path, monkeypatch):
    table = fixture_tree(tmp_path / "served", FILES)
    offline_data(monkeypatch, tmp_path, table)
    server = FileServer(tmp_path / "served")  # start and stop a server to get a port nobody listens on
    dead = server.url
    server.close()
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", dead)
    with pytest.raises(DataError, match=r"could not download .*STEERLAB_DATA_MIRROR.*`steerlab data fetch persona`"):
        sd.fetch("persona:kind", progress=False, retries=1, timeout=2.0)


def test_loading_without_fetching_names_fetch_and_the_settings(tmp_path, monkeypatch):
    offline_data(monkeypatch, tmp_path, fixture_tree(tmp_path / "served", FILES))
    with pytest.raises(DataError) as err:
        sd.load_dataset("persona:kind")
    message = str(err.value)
    for needle in ("`steerlab data fetch persona`", "STEERLAB_DATA=", "STEERLAB_DATA_MIRROR", "STEERLAB_DATA_DOWNLOAD"):
        assert needle in message
    with pytest.raises(DataError, match="did you mean 'kind'"):  # unknown names still get close matches
        sd.load_persona("kinder")


def test_download_on_load_is_opt_in(served, monkeypatch):
    _, cache = served
    monkeypatch.setenv("STEERLAB_DATA_DOWNLOAD", "1")
    assert len(sd.load_persona("calm")) == 4
    assert (cache / "anthropic-evals/persona/calm.jsonl").is_file()


def test_mirror_as_a_local_folder(tmp_path, monkeypatch):
    table = fixture_tree(tmp_path / "served", FILES)
    cache = offline_data(monkeypatch, tmp_path, table)
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", str(tmp_path / "served"))
    sd.fetch("persona:kind", progress=False)
    assert (cache / "anthropic-evals/persona/kind.jsonl").read_bytes() == FILES["anthropic-evals/persona/kind.jsonl"]
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="the mirror has no file .*HOST/PATH"):
        sd.fetch("persona:calm", progress=False)


def test_missing_on_the_mirror_is_not_retried(served):
    server, _ = served
    (server.folder / HOST / REPO / COMMIT / "persona/calm.jsonl").unlink()
    with pytest.raises(DataError, match="HTTP 404.*mirror lacks it"):
        sd.fetch("persona:calm", progress=False, retries=3)
    assert sum(path.endswith("calm.jsonl") for path, _ in server.requests) == 1


def test_unknown_fetch_names(served):
    with pytest.raises(DataError, match="unknown dataset 'persna' \\(did you mean 'persona'\\?\\)"):
        sd.fetch("persna", progress=False)
    with pytest.raises(DataError, match="nothing to fetch"):
        sd.fetch([], progress=False)
