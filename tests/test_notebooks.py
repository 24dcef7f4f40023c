"""Every numbered notebook runs end to end in smoke mode and saves at least one figure.

Smoke mode (``SMOKE = True``) uses a few items and layers, so each notebook takes about a minute on
the embedded model; figures go to a temporary folder, never to ``figures/``. One notebook also runs on the
embedded Gemma-3-270M, to show that the ``MODEL`` parameter reaches every model-dependent setting.
"""

import json
from pathlib import Path

import pytest

from steerlab.notebook_runner import run_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_numbered_notebooks_exist():
    assert NOTEBOOKS, f"no numbered notebooks (NN_<name>.ipynb) in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_smoke_mode(notebook, tmp_path):
    executed = run_notebook(notebook, smoke=True, figures=tmp_path, output=tmp_path / "executed" / notebook.name)
    assert executed.is_file()
    pngs = sorted(tmp_path.glob("*.png"))
    assert pngs, f"{notebook.name} saved no .png figure in smoke mode (FIGURES={tmp_path})"


def test_a_notebook_runs_on_the_model_it_is_given(tmp_path):
    """MODEL reaches the notebook: notebook 10 in smoke mode on the embedded Gemma-3-270M (18 layers, not 30)."""
    notebook = NOTEBOOK_DIR / "10_cae_id_ood.ipynb"
    executed = run_notebook(notebook, smoke=True, figures=tmp_path, model="gemma-3-270m",
                            output=tmp_path / "executed" / notebook.name)  # fmt: skip
    nb = json.loads(executed.read_text())
    outputs = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    assert "gemma-3-270m (not loaded yet) | smoke run" in outputs  # the notebook prints its run's model
    assert "smollm2" not in outputs.lower()
    assert sorted(tmp_path.glob("*.png")), "notebook 10 saved no figure on Gemma-3-270M"
