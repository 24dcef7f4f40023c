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

COLUMNS = ["method", "seed", "layer", "site", "coeff", "metric", "value", "example_id"]


@pytest.mark.parametrize("fmt, make", [("persona", persona_file), ("ab", ab_file)])
def test_sweep_end_to_end(tmp_path, tiny_folder, fmt, make):
    from steerlab.vectors import SteeringVector

    data = make(tmp_path)
    out = tmp_path / "run"
    result = invoke(
        "sweep", "--data", data, "--format", fmt, "--method", "caa", "--model", tiny_folder, "--layers", "0,1",
        "--coeffs", "-2,0,2", "--out", out, "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "best layer" in result.output and "automatic layer choice" in result.output

    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == COLUMNS
    assert sorted(df.layer.unique()) == [0, 1]
    assert sorted(df.coeff.unique()) == [-2.0, 0.0, 2.0]
    assert set(df.metric) == {"p_behaviour", "logit_diff"}
    assert df.groupby(["layer", "coeff", "metric"]).size().eq(4).all()  # 4 test pairs out of 20 (60/20/20)
    # the unsteered cell is computed once and shared by both layers
    base = df[df.coeff == 0].pivot_table(index="example_id", columns="layer", values="value", aggfunc="first")
    assert (base[0] == base[1]).all()

    summary = json.loads((out / "summary.json").read_text())
    vec = SteeringVector.load(out / "vector")
    assert [s.layer for s in vec.sites] == [summary["best_layer"]]
    assert vec.provenance.method == "caa" and vec.provenance.d_model == 32
    assert vec.provenance.dataset == f"{fmt}:{data.name}"
    assert (out / "heatmap.png").stat().st_size > 0
    scores = pd.read_csv(out / "layer_scores.csv")
    assert sorted(scores.layer) == [0, 1] and summary["auto_layer"] == scores.layer.iloc[0]


def test_sweep_mcq_negative_layer_probe(tmp_path, tiny_folder):
    out = tmp_path / "run"
    result = invoke(
        "sweep", "--data", mcq_file(tmp_path), "--format", "mcq", "--method", "probe", "--model", tiny_folder,
        "--layers", "-1", "--coeffs=-2,2", "--positions", "last_prompt", "--n-test", 3, "--out", out, "--device",
        "cpu", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert set(df.layer) == {1}
    assert set(df.metric) == {"accuracy", "p_correct"}
    assert df.example_id.nunique() == 3
    assert set(df[df.metric == "accuracy"].value) <= {0.0, 1.0}


def test_sweep_text_label(tmp_path, tiny_folder):
    from steerlab.vectors import SteeringVector

    out = tmp_path / "run"
    result = invoke(
        "sweep", "--data", text_label_file(tmp_path), "--format", "text-label", "--model", tiny_folder,
        "--layers", "all", "--coeffs", "-2,0,2", "--out", out, "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == COLUMNS
    assert set(df.metric) == {"loglik_pos", "loglik_neg", "loglik_gap"}
    for _, cell in df.groupby(["layer", "coeff"]):  # the gap is mean(label 1) - mean(label 0) of the per-text rows
        values = cell.groupby("metric").value.mean()
        assert values["loglik_gap"] == pytest.approx(values["loglik_pos"] - values["loglik_neg"], abs=1e-9)
        assert (cell.metric == "loglik_gap").sum() == 1
    assert (df[df.metric != "loglik_gap"].value < 0).all()  # log-likelihoods
    assert SteeringVector.load(out / "vector").provenance.read_position == "prompt_last"
    assert (out / "heatmap.png").exists()


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
    ],
)
def test_bad_options_exit_2(tmp_path, extra, message):
    data = text_label_file(tmp_path) if "text-label" in extra else persona_file(tmp_path)
    result = invoke("sweep", "--data", data, "--out", tmp_path / "o", *extra)
    assert result.exit_code == 2, result.output
    assert message in result.output


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
