"""Every numbered notebook runs end to end in smoke mode and saves at least one figure.

Smoke mode (``SMOKE = True``) uses a few items and layers, so each notebook takes about a minute on
the embedded model; figures go to a temporary folder, never to ``figures/``.
"""

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
