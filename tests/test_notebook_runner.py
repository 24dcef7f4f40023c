"""steerlab.notebook_runner: parameters injected (MODEL, DEVICE, DTYPE, BATCH_SIZE), no machine paths written."""

import json
from pathlib import Path

import pytest

from steerlab.errors import SteerlabError
from steerlab.notebook_runner import relative_paths, run_notebook

PARAMETERS = 'SMOKE = False\nFIGURES = "../figures"\nMODEL = None\nDEVICE = None\nDTYPE = None\nBATCH_SIZE = None\n'
BODY = (
    "import json, os, pathlib\n"
    "pathlib.Path(FIGURES, 'ran.json').write_text(json.dumps([SMOKE, FIGURES, MODEL, DEVICE, DTYPE, BATCH_SIZE]))\n"
    "print('figures at', os.path.abspath(FIGURES))"
)


def make_notebook(path: Path, parameters: str = PARAMETERS, body: str = BODY) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


def test_relative_paths_rewrites_the_checkout_and_nothing_else():
    nb = {
        "metadata": {"papermill": {"input_path": "/repo/notebooks/01.ipynb", "output_path": "/tmp/x/01.ipynb",
                                   "parameters": {"FIGURES": "/repo/figures", "SMOKE": True}}},
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
             "source": '# Parameters\nFIGURES = "/repo/figures"\n'},
            {"cell_type": "code", "metadata": {}, "source": 'x = "/repo/figures"',
             "outputs": [{"output_type": "stream", "name": "stdout",
                          "text": ["runs: /repo/runs/a\n", "table: /repo/notebooks/t.csv /repository/x /tmp/y\n"]}]},
        ],
    }  # fmt: skip
    assert relative_paths(nb, "/repo/notebooks") == 6
    assert nb["metadata"]["papermill"] == {"input_path": "01.ipynb", "output_path": "01.ipynb",
                                           "parameters": {"FIGURES": "../figures", "SMOKE": True}}  # fmt: skip
    assert nb["cells"][0]["source"] == '# Parameters\nFIGURES = "../figures"\n'
    assert nb["cells"][1]["source"] == 'x = "/repo/figures"'  # the notebook's own code is left alone
    assert nb["cells"][1]["outputs"][0]["text"] == ["runs: ../runs/a\n", "table: t.csv /repository/x /tmp/y\n"]


def test_parameters_are_injected_and_no_absolute_path_is_written(tmp_path):
    (tmp_path / "notebooks").mkdir()
    nb = make_notebook(tmp_path / "notebooks" / "01_test.ipynb")
    figures = tmp_path / "figures"
    out = run_notebook(nb, smoke=False, figures=figures, model="gemma-3-270m", device="cpu", dtype="float32",
                       batch_size=4, timeout=120)  # fmt: skip
    assert out == nb.resolve()
    assert json.loads((figures / "ran.json").read_text()) == [False, "../figures", "gemma-3-270m", "cpu", "float32", 4]
    text = nb.read_text()
    assert str(tmp_path) not in text and '"figures at ../figures' in text


def test_a_local_model_folder_is_injected_relative_to_the_notebook(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "models" / "my-llama").mkdir(parents=True)
    nb = make_notebook(tmp_path / "notebooks" / "05_test.ipynb")
    monkeypatch.chdir(tmp_path)  # the folder is given relative to where the runner runs, not the kernel
    run_notebook(nb, smoke=True, figures=tmp_path / "figs", model="models/my-llama", timeout=120)
    assert json.loads((tmp_path / "figs" / "ran.json").read_text())[2] == "../models/my-llama"


def test_parameters_not_given_keep_the_notebooks_values(tmp_path):
    nb = make_notebook(tmp_path / "02_test.ipynb")
    run_notebook(nb, smoke=True, figures=tmp_path / "figs", timeout=120)
    assert json.loads((tmp_path / "figs" / "ran.json").read_text()) == [True, "figs", None, None, None, None]


def test_a_parameter_the_notebook_lacks_raises(tmp_path):
    nb = make_notebook(tmp_path / "03_test.ipynb", parameters='SMOKE = False\nFIGURES = "../figures"\n')
    with pytest.raises(SteerlabError, match="does not set MODEL, DEVICE.*add `MODEL = None`"):
        run_notebook(nb, smoke=True, figures=tmp_path / "figs", model="gemma-3-270m", device="cpu")


def test_cli_smoke_run_leaves_the_figures_folder_alone(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from steerlab.cli import app

    nb = make_notebook(tmp_path / "04_test.ipynb")
    before = nb.read_text()
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["notebooks", str(nb), "--smoke", "--model", "m", "--timeout", "120"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "figures").exists() and nb.read_text() == before


def test_relative_paths_also_rewrites_the_kernels_own_folders():
    """A warning from an installed package or the kernel's scratch folder names no path of this machine."""
    text = "/env/lib/site-packages/tqdm/auto.py:21: W\n/tmp/k1/ipykernel_9/3.py:1: W\n"
    nb = {"cells": [{"cell_type": "code", "metadata": {}, "source": "",
                     "outputs": [{"output_type": "stream", "name": "stderr", "text": text}]}]}  # fmt: skip
    also = {"/env/lib/site-packages": "site-packages/", "/tmp/k1": "tmp/"}
    assert relative_paths(nb, "/repo/notebooks", also) == 1
    assert nb["cells"][0]["outputs"][0]["text"] == "site-packages/tqdm/auto.py:21: W\ntmp/ipykernel_9/3.py:1: W\n"
