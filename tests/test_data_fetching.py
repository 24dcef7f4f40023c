"""End to end: with no local data root, `steerlab data fetch persona` from a mirror, then load and sweep a persona file.

The mirror is a local HTTP server over a folder laid out like the source URLs
(``raw.githubusercontent.com/anthropics/evals/<commit>/persona/...``) whose files are symlinks to the
shared data root, so the real sources table (sizes, sha256) is checked against real files.
"""

from __future__ import annotations

from pathlib import Path

from _data_root import ROOT, needs_data
from _data_server import FileServer, offline_data
from typer.testing import CliRunner

from steerlab import data as sd
from steerlab.cli.data import data_app
from steerlab.data.sources import DATASETS, _matching


def _mirror_of(files, root: Path, mirror: Path) -> None:
    for f in files:
        target = mirror / f.url.split("://", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(root / f.path)


@needs_data
def test_fetch_persona_from_a_mirror_then_load_and_sweep(tmp_path, monkeypatch, tiny_folder):
    expected = sd.load_dataset("persona:psychopathy", root=ROOT)
    persona = _matching(DATASETS["persona"])
    _mirror_of(persona, ROOT, tmp_path / "mirror")
    cache = offline_data(monkeypatch, tmp_path)
    server = FileServer(tmp_path / "mirror")
    monkeypatch.setenv("STEERLAB_DATA_MIRROR", server.url)
    try:
        runner = CliRunner()
        result = runner.invoke(data_app, ["fetch", "persona", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert f"{len(persona)} files" in result.output and "123 downloaded" in result.output
        listing = runner.invoke(data_app, ["list"])
        assert listing.exit_code == 0
        row = next(line for line in listing.output.splitlines() if line.split()[:1] == ["persona"])
        assert "cached" in row and "anthropics/evals@84fcc67" in row
    finally:
        server.close()
    assert sd.load_dataset("persona:psychopathy") == expected
    assert sd.load_persona("psychopathy")[0].meta["source"] == "anthropic-evals/persona/psychopathy.jsonl"
    fetched = cache / "anthropic-evals/persona/psychopathy.jsonl"
    from steerlab.cli import app

    result = runner.invoke(app, [
        "sweep", "--data", str(fetched), "--format", "persona", "--method", "caa", "--model", str(tiny_folder),
        "--layers", "1", "--coeffs=-2,0,2", "--n-train", "16", "--n-test", "8", "--out", str(tmp_path / "run"),
        "--device", "cpu", "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "results.csv").is_file()


def test_cli_fetch_errors_exit_2(tmp_path, monkeypatch):
    offline_data(monkeypatch, tmp_path)
    runner = CliRunner()
    result = runner.invoke(data_app, ["fetch"])
    assert result.exit_code == 2 and "--all" in result.output
    result = runner.invoke(data_app, ["fetch", "nonsense"])
    assert result.exit_code == 2 and "unknown dataset 'nonsense'" in result.output
