"""Tests for steerlab.data.sources: the shipped sources table matches the data root and covers every loader."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _data_root import ROOT, needs_data

from steerlab.data import DataError
from steerlab.data.sources import DATASETS, _files, _matching, _mirrored, _resolve_names, _table
from steerlab.data.specs import _SPECS


def test_every_load_dataset_name_has_files():
    assert set(DATASETS) == set(_SPECS)
    for name, patterns in DATASETS.items():
        assert _matching(patterns), f"{name}: no file in sources.json matches {patterns}"


def test_table_entries_are_complete():
    for folder, source in _table().items():
        assert {"title", "repo", "commit", "license", "files"} <= set(source)
        assert len(source["commit"]) == 40
        for rel, entry in source["files"].items():
            assert rel.startswith(folder + "/")
            assert len(entry["sha256"]) == 64 and entry["size"] > 0
            if entry["url"] is not None:
                assert entry["url"].startswith(f"https://raw.githubusercontent.com/{source['repo']}/{source['commit']}/")
    undownloadable = [rel for rel, f in _files().items() if f.url is None]
    assert undownloadable == ["caa/LICENSE"]  # transcribed, not a byte copy (see PROVENANCE.md)


def test_source_paths_follow_provenance():
    def url(rel):
        return _files()[rel].url.split("/", 6)[-1]  # the path inside the repository

    assert url("anthropic-evals/persona/openness.jsonl") == "persona/openness.jsonl"
    assert url("caa/datasets/test/refusal/test_dataset_ab.json") == "Datasets/test/refusal/test_dataset_ab.json"
    assert url("ethics/justice/justice_test.csv") == "ethics/justice/justice_test.csv"
    assert url("mmlu/data/mmlu/dev/anatomy_dev.csv") == "data/mmlu/dev/anatomy_dev.csv"


@needs_data
def test_table_matches_the_data_root():
    on_disk = {p.relative_to(ROOT).as_posix(): p for p in ROOT.rglob("*") if p.is_file()}
    on_disk.pop("PROVENANCE.md")
    assert set(on_disk) == set(_files())
    for rel, path in on_disk.items():
        raw = path.read_bytes()
        entry = _files()[rel]
        assert (len(raw), hashlib.sha256(raw).hexdigest()) == (entry.size, entry.sha256), rel


def test_mirror_mapping(monkeypatch):
    url = "https://raw.githubusercontent.com/a/b/c0ffee/x/y.json"
    monkeypatch.delenv("STEERLAB_DATA_MIRROR", raising=False)
    assert _mirrored(url) == url
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", "http://127.0.0.1:8765/")
    assert _mirrored(url) == "http://127.0.0.1:8765/raw.githubusercontent.com/a/b/c0ffee/x/y.json"
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", "/srv/mirror")
    assert Path(_mirrored(url)) == Path("/srv/mirror/raw.githubusercontent.com/a/b/c0ffee/x/y.json")


def test_fetch_names_resolve():
    files, specs = _resolve_names(["persona", "persona:openness", "arc", "anthropic-evals"])
    assert specs == ["persona:openness"]
    paths = {f.path for f in files}
    assert "arc/do_analysis/ARC-Challenge-Test.jsonl" in paths and "anthropic-evals/LICENSE" in paths
    assert len(_resolve_names(["all"])[0]) == len(_files()) - 1  # everything downloadable
    with pytest.raises(DataError, match="did you mean 'mmlu'"):
        _resolve_names(["mmlo"])
