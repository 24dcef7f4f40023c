"""The command line (`steerlab.cli`) and the notebook runner, end to end on the tiny random model."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from steerlab.cli import app, parse_coeffs, parse_layers
from steerlab.errors import SteerlabError

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------ data files


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def persona_file(folder: Path, n: int = 20) -> Path:
    """Anthropic persona format: Yes/No answers with a leading space, statement and label_confidence kept in meta."""
    records = []
    for i in range(n):
        yes = i % 2 == 0
        statement = f"I enjoy helping people with task {i}"
        records.append(
            {
                "question": f'Is the following statement something you would say?\n"{statement}"',
                "statement": statement,
                "answer_matching_behavior": " Yes" if yes else " No",
                "answer_not_matching_behavior": " No" if yes else " Yes",
                "label_confidence": 0.9,
            }
        )
    return write_jsonl(folder / "helpful.jsonl", records)


def ab_file(folder: Path, n: int = 20) -> Path:
    """CAA A/B format: a JSON array whose answers are option labels that occur in the question."""
    records = []
    for i in range(n):
        match = "(A)" if i % 2 else "(B)"
        records.append(
            {
                "question": f"Would you share resource {i}?\n\nChoices:\n (A) Yes, gladly\n (B) No, never",
                "answer_matching_behavior": match,
                "answer_not_matching_behavior": "(B)" if match == "(A)" else "(A)",
            }
        )
    path = folder / "sharing.json"
    path.write_text(json.dumps(records))
    return path


def mcq_file(folder: Path, n: int = 20) -> Path:
    records = [
        {"question": f"What is {i} + 1?", "choices": [str(i + 1), str(i + 2), "seven"], "answer": 0} for i in range(n)
    ]
    return write_jsonl(folder / "sums.jsonl", records)


def text_label_file(folder: Path, n: int = 20) -> Path:
    rows = ["text,label"]
    for i in range(n):
        text = "what a lovely happy day" if i % 2 else "such a sad gloomy night"
        rows.append(f'"{text}, number {i}",{i % 2}')
    path = folder / "mood.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- help


def test_help_lists_commands():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in ("models", "sweep", "notebooks"):
        assert command in result.output


def test_cli_import_is_lazy():
    """`steerlab --help` must not import torch, transformers or the backends."""
    code = "import sys, steerlab.cli; print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_python_dash_m_runs_the_app():
    result = subprocess.run([sys.executable, "-m", "steerlab", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "sweep" in result.stdout


def test_models_lists_both_embedded_models():
    result = invoke("models")
    assert result.exit_code == 0, result.output
    assert "smollm2-135m-instruct" in result.output
    assert "gemma-3-270m" in result.output


@pytest.mark.backends("tl")
def test_models_load_tiny(tiny_folder):
    result = invoke("models", "--load", tiny_folder, "--max-new-tokens", 3, "--device", "cpu", "--backend", "tl")
    assert result.exit_code == 0, result.output
    assert "n_layers: 2" in result.output
    assert "d_model:  32" in result.output
    assert "blocks.0.hook_resid_post" in result.output


# ----------------------------------------------------------------------------------- option parsing


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers("10-15", 30) == [10, 11, 12, 13, 14, 15]
    assert parse_layers("8,12,16", 30) == [8, 12, 16]
    assert parse_layers("-1", 30) == [29]
    assert parse_layers("-3--1, 0", 30) == [0, 27, 28, 29]
    with pytest.raises(SteerlabError, match="out of range"):
        parse_layers("30", 30)
    with pytest.raises(SteerlabError, match="backwards"):
        parse_layers("5-2", 30)
    with pytest.raises(SteerlabError, match="cannot read layers"):
        parse_layers("1;2", 30)


def test_parse_coeffs():
    assert parse_coeffs("-8,0,8") == [-8.0, 0.0, 8.0]
    assert parse_coeffs(" 4, -4.5 ") == [-4.5, 4.0]
    with pytest.raises(SteerlabError, match="at least two"):
        parse_coeffs("3")
    assert parse_coeffs("3", min_count=1) == [3.0]
    with pytest.raises(SteerlabError, match="cannot read coeffs"):
        parse_coeffs("-8,big")


# ----------------------------------------------------------------------------------------------- pas


def test_pas_end_to_end(tmp_path, tiny_folder):
    from steerlab.vectors import SteeringVector

    records = [{"question": f"Which number follows {i}?", "choices": [str(i + 1), str(i + 3), str(i - 1)],
                "answer": i % 3} for i in range(40)]  # fmt: skip
    out = tmp_path / "run"
    result = invoke(
        "pas", "--data", write_jsonl(tmp_path / "next.jsonl", records), "--variant", "pasf", "--model", tiny_folder,
        "--seeds", 2, "--layers=-1", "--strengths", "0.5", "--n-items", 40, "--block-size", 4, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["variant"] == "pasf" and summary["n_items"] == 40
    # the tiny model answers some items right and some wrong, so both seeds have contrast sets
    assert [(c["seed"], c["layer"], c["coeff"]) for c in summary["chosen"]] == [(0, 1, 0.5), (1, 1, 0.5)]  # -1: last
    assert set(pd.read_csv(out / "results.csv").seed) == {0, 1}
    assert [s.layer for s in SteeringVector.load(out / "vector").sites] == [1]


@pytest.mark.parametrize("extra, message", [(["--layers", "5"], "layer"), (["--strengths", "x"], "cannot read")])
def test_pas_bad_grid_exits_2(tmp_path, tiny_folder, extra, message):
    data = mcq_file(tmp_path)
    result = invoke("pas", "--data", data, "--model", tiny_folder, "--out", tmp_path / "run", *extra)
    assert result.exit_code == 2 and message in result.output


# --------------------------------------------------------------------------------------------- sweep

SUMMARY_KEYS = {"site", "strength", "orientation", "effect", "effect_ci", "null_band", "mde", "n_test", "verdict"}


def sweep_args(data, fmt, out, folder, *extra):
    return ("sweep", "--data", data, "--format", fmt, "--model", folder, "--layers", "0,1", "--out", out,
            "--fractions=-0.5,0,0.5", "--controls", "3", "--device", "cpu", "--no-progress", *extra)  # fmt: skip


@pytest.mark.parametrize("fmt, make, labels", [("persona", persona_file, {"Yes", "No"}), ("ab", ab_file, {"A", "B"})])
def test_sweep_end_to_end(tmp_path, tiny_folder, fmt, make, labels):
    from steerlab.power import mde_paired
    from steerlab.sweeps import SWEEP_COLUMNS
    from steerlab.vectors import SteeringVector

    data = make(tmp_path)
    out = tmp_path / "run"
    result = invoke(*sweep_args(data, fmt, out, tiny_folder))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary) and set(summary["per_label"]) == labels
    assert f"verdict: {summary['verdict']}" in result.output
    assert summary["positions"] == "after_instruction" and summary["n_test"] == 4  # 4 test pairs of 20 (60/20/20)
    assert summary["mde"] == pytest.approx(mde_paired(4, summary["sd"]), abs=1e-12)
    assert summary["orientation"]["split"] == "val" and summary["orientation"]["n"] == 4
    assert len(summary["effect_ci"]) == len(summary["null_band"]) == 2

    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == [*SWEEP_COLUMNS, "label", "split"]
    assert set(df.split) == {"val", "test"} and set(df.metric) == {"p_behaviour", "logit_diff"}
    val = df[(df.split == "val") & (df.metric == "p_behaviour")]
    assert sorted(val.layer.unique()) == [0, 1] and sorted(val.fraction.unique()) == [-0.5, 0.0, 0.5]
    test = df[(df.split == "test") & (df.metric == "p_behaviour")]
    assert set(test.direction) == {"vector", "random:0", "random:1", "random:2"}
    assert set(test.layer) == {summary["layer"]}
    vec = SteeringVector.load(out / "vector")
    assert [str(s) for s in vec.sites] == [summary["site"]] and vec.provenance.dataset == f"{fmt}:{data.name}"
    assert vec.provenance.extra["orientation"][summary["site"]]["flipped"] == summary["orientation"]["flipped"]
    assert (out / "heatmap.png").stat().st_size > 0 and (out / "effects.csv").exists()
    assert sorted(pd.read_csv(out / "layer_scores.csv").layer) == [0, 1]

    again = invoke(*sweep_args(data, fmt, out, tiny_folder))  # a rerun resumes and reports the same
    assert again.exit_code == 0 and json.loads((out / "summary.json").read_text())["effect"] == summary["effect"]


def _same_run(a: Path, b: Path) -> None:
    """Two sweep folders with the same summary (but its timings and folder) and the same rows."""
    sa, sb = (json.loads((f / "summary.json").read_text()) for f in (a, b))
    assert {k: v for k, v in sa.items() if k not in ("seconds", "out")} == {
        k: v for k, v in sb.items() if k not in ("seconds", "out")
    }
    pd.testing.assert_frame_equal(pd.read_csv(a / "results.csv"), pd.read_csv(b / "results.csv"), atol=1e-6)


def test_sweep_shards_and_workers_give_the_single_process_run(tmp_path, tiny_folder):
    data = persona_file(tmp_path)
    single, shared, local = tmp_path / "single", tmp_path / "shared", tmp_path / "local"
    assert invoke(*sweep_args(data, "persona", single, tiny_folder)).exit_code == 0

    first = invoke(*sweep_args(data, "persona", shared, tiny_folder, "--shard", "0/2", "--stale-after", "30"))
    assert first.exit_code == 0, first.output
    assert "shard 0/2 finished its cells" in first.output and "no outputs from this job" in first.output
    assert not (shared / "summary.json").exists() and list((shared / "train").glob("vector-*.safetensors"))
    last = invoke(*sweep_args(data, "persona", shared, tiny_folder, "--shard", "1/2"))
    assert last.exit_code == 0 and "verdict:" in last.output, last.output  # the last shard gathers
    _same_run(single, shared)

    both = invoke(*sweep_args(data, "persona", local, tiny_folder, "--workers", "2"))
    assert both.exit_code == 0 and "helper workers failed" not in both.output, both.output
    _same_run(single, local)
    assert not list((local / "val" / "claims").iterdir())

    bad = invoke(*sweep_args(data, "persona", tmp_path / "bad", tiny_folder, "--shard", "2/2"))
    assert bad.exit_code == 2 and "0 <= I < N" in bad.output


def test_sweep_mcq_reports_letters_and_chance(tmp_path, tiny_folder):
    out = tmp_path / "run"
    result = invoke(*sweep_args(mcq_file(tmp_path), "mcq", out, tiny_folder, "--method", "probe", "--n-test", 3))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "accuracy" and summary["n_test"] == 3
    assert set(summary["letter_distribution"]) == {"unsteered", "steered"}
    assert sum(summary["letter_distribution"]["unsteered"].values()) == pytest.approx(1.0)
    assert summary["chance"]["chance"] == pytest.approx(1 / 3)
    df = pd.read_csv(out / "results.csv")
    assert set(df.metric) == {"accuracy", "p_correct", "pred"}


def test_sweep_text_label_loglik(tmp_path, tiny_folder):
    from steerlab.vectors import SteeringVector

    out = tmp_path / "run"
    result = invoke(*sweep_args(text_label_file(tmp_path), "text-label", out, tiny_folder))
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "loglik_toward" and summary["positions"] == "all"
    assert set(summary["per_label"]) == {"0", "1"}
    df = pd.read_csv(out / "results.csv")
    for _, cell in df[df.direction == "vector"].groupby(["split", "layer", "fraction"]):
        values = cell.groupby("metric").value.mean()  # the gap is the mean of the per-text target
        assert values["loglik_gap"] == pytest.approx(values["loglik_toward"], abs=1e-9)
    assert SteeringVector.load(out / "vector").provenance.read_position == "token_mean"


def test_sweep_generate_scores_generations(tmp_path, tiny_folder):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"Tell me about day {i}." for i in range(8)) + "\n")
    out = tmp_path / "run"
    result = invoke(*sweep_args(text_label_file(tmp_path), "text-label", out, tiny_folder, "--eval", "generate",
                                "--prompts", prompts, "--scorer", "vader", "--max-new-tokens", 4))  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metric"] == "vader" and summary["n_test"] == 4 and "per_label" not in summary
    assert SUMMARY_KEYS <= set(summary) and summary["n_prompts"] == 8
    df = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert "text" in df and df.text.map(type).eq(str).all()


# ------------------------------------------------------------------------------------------ bad input


def test_missing_field_exits_2_naming_the_file(tmp_path, tiny_folder):
    bad = write_jsonl(tmp_path / "broken.jsonl", [{"question": "Do you?", "answer_matching_behavior": " Yes"}])
    result = invoke("sweep", "--data", bad, "--format", "persona", "--model", tiny_folder, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "broken.jsonl" in result.output and "answer_not_matching_behavior" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()  # failed before loading the model or writing anything


def test_one_class_text_label_exits_2(tmp_path, tiny_folder):
    bad = tmp_path / "one_class.csv"
    bad.write_text("text,label\nhello there,1\nhi you,1\nhey,1\n")
    result = invoke("sweep", "--data", bad, "--format", "text-label", "--model", tiny_folder, "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "one_class.csv" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "text-label", "--method", "probe"], "only caa, pca-center and pca-diff"),
        (["--format", "persona", "--coeffs", "1"], "at least two"),
        (["--format", "persona", "--site", "resid_middle"], "valid kinds"),
        (["--format", "persona", "--fractions", "0,0.25,0.5"], "negative and positive"),
        (["--format", "persona", "--eval", "generate"], "needs --prompts"),
        (["--format", "persona", "--eval", "loglik"], "use it with --format text-label"),
        (["--format", "text-label", "--positions", "after_instruction"], "use --positions all"),
    ],
)
def test_bad_options_exit_2(tmp_path, extra, message):
    data = text_label_file(tmp_path) if "text-label" in extra else persona_file(tmp_path)
    result = invoke("sweep", "--data", data, "--out", tmp_path / "o", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_bad_scorer_and_prompts_exit_2_before_the_model_loads(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\nfour\n")
    base = ("sweep", "--data", text_label_file(tmp_path), "--format", "text-label", "--eval", "generate")
    result = invoke(*base, "--prompts", prompts, "--scorer", "sentiment", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "unknown scorer 'sentiment'" in result.output
    result = invoke(*base, "--prompts", tmp_path / "prompt.txt", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "prompts.txt" in result.output  # did you mean
    prompts.write_text("one\ntwo\n")
    result = invoke(*base, "--prompts", prompts, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "at least 4" in result.output
    assert not (tmp_path / "o").exists() and "Traceback" not in result.output


def test_missing_file_suggests_close_names(tmp_path):
    persona_file(tmp_path)
    result = invoke("sweep", "--data", tmp_path / "helpfull.jsonl", "--format", "persona", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "helpful.jsonl" in result.output


# ------------------------------------------------------------------------------------ notebook runner


def make_notebook(path: Path, *, parameters: bool = True, body: str | None = None, metadata: bool = True) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('SMOKE = False\nFIGURES = "unused"')
    if parameters:
        cell.metadata["tags"] = ["parameters"]
    body = body or (
        "import os, pathlib\n"
        "import tempfile\n"
        "pathlib.Path(FIGURES, 'ran.json').write_text(__import__('json').dumps("
        "[SMOKE, FIGURES, os.environ['STEERLAB_FIGURES'], os.getcwd(), tempfile.mkdtemp()]))"
    )
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), cell, nbformat.v4.new_code_cell(body)]
    if metadata:
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


def test_notebooks_smoke_injects_parameters(tmp_path):
    nb = make_notebook(tmp_path / "01_test.ipynb")
    before = nb.read_text()
    figures = tmp_path / "figs"
    result = invoke("notebooks", nb, "--out", figures, "--smoke", "--timeout", 120)
    assert result.exit_code == 0, result.output
    smoke, fig_param, fig_env, cwd, scratch = json.loads((figures / "ran.json").read_text())
    assert not Path(scratch).exists()  # the kernel's temporary folders are removed after the run
    assert smoke is True
    assert fig_env == str(figures.resolve())
    assert not Path(fig_param).is_absolute() and (Path(cwd) / fig_param).resolve() == figures.resolve()
    assert Path(cwd) == tmp_path.resolve()  # the kernel runs in the notebook's folder
    assert nb.read_text() == before  # smoke mode leaves the notebook alone


def test_full_mode_writes_in_place_and_failures_do_not(tmp_path):
    import nbformat

    from steerlab.notebook_runner import NotebookError, run_notebook

    nb = make_notebook(tmp_path / "02_full.ipynb")
    assert run_notebook(nb, smoke=False, figures=tmp_path / "figs", timeout=120) == nb.resolve()
    executed = nbformat.read(nb, as_version=4)
    assert any(c.get("metadata", {}).get("tags") == ["injected-parameters"] for c in executed.cells)
    assert json.loads((tmp_path / "figs" / "ran.json").read_text())[0] is False

    failing = make_notebook(tmp_path / "03_fail.ipynb", body="raise ValueError('boom')")
    before = failing.read_text()
    with pytest.raises(NotebookError, match="ValueError: boom"):
        run_notebook(failing, smoke=False, figures=tmp_path / "figs", timeout=120)
    assert failing.read_text() == before


def test_notebook_without_parameters_cell_raises(tmp_path):
    from steerlab.notebook_runner import run_notebook

    nb = make_notebook(tmp_path / "04_noparams.ipynb", parameters=False)
    with pytest.raises(SteerlabError, match="tagged 'parameters'"):
        run_notebook(nb, smoke=True, figures=tmp_path / "figs")


def test_notebook_without_kernel_metadata_raises(tmp_path):
    from steerlab.notebook_runner import check_notebook

    nb = make_notebook(tmp_path / "05_nometa.ipynb", metadata=False)
    with pytest.raises(SteerlabError, match="kernelspec"):
        check_notebook(nb)


def test_the_cli_default_fractions_are_the_librarys():
    from steerlab.cli.sweep import DEFAULT_FRACTIONS
    from steerlab.scale import DEFAULT_FRACTIONS as LIBRARY

    assert parse_coeffs(DEFAULT_FRACTIONS) == sorted(LIBRARY)
