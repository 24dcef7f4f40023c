"""Execute the numbered notebooks with papermill, in a smoke mode (CI) or in full (``make reproduce``).

Each notebook starts with a code cell tagged ``parameters`` (papermill style) that sets
``SMOKE = False`` and ``FIGURES = "..."``. `run_notebook` injects ``SMOKE`` and ``FIGURES`` after that
cell, sets ``$STEERLAB_FIGURES`` (read by `steerlab.plotting.save_figure`) for the kernel, and runs
the kernel ``python3`` in the notebook's own folder.

* Full mode (``smoke=False``) writes the executed notebook back in place, so committed notebooks carry
  their outputs. The run goes to a temporary file first: a failing run never overwrites the notebook.
* Smoke mode (``smoke=True``) writes the executed copy to a temporary folder (or to ``output``).
* The kernel's ``$TMPDIR`` is a scratch folder removed after the run, so notebooks' temporary run
  folders (smoke mode) do not pile up.

Example:
    >>> run_notebook("notebooks/01_caa_layers.ipynb", smoke=True, figures=Path("/tmp/figs"))  # doctest: +SKIP
    PosixPath('/tmp/steerlab-nb-x1y2/01_caa_layers.ipynb')
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

KERNEL = "python3"
FIGURES_ENV = "STEERLAB_FIGURES"  # the variable steerlab.plotting.save_figure reads
DEFAULT_TIMEOUT = 3600  # seconds per cell
_METADATA_FIX = (
    'set the notebook metadata to {"kernelspec": {"name": "python3", "display_name": "Python 3", '
    '"language": "python"}, "language_info": {"name": "python"}} (Jupyter: Kernel > Change kernel > Python 3)'
)


class NotebookError(RuntimeError):
    """A notebook cell raised while it was executed; the message names the cell and the executed copy."""


def check_notebook(path: str | Path):
    """Read a notebook and check it can be run: a ``parameters``-tagged code cell and python3 metadata.

    Returns:
        The notebook (an ``nbformat.NotebookNode``).

    Raises:
        SteerlabError: If the file is missing or unreadable, has no ``parameters`` cell, or its kernel
            metadata is missing or names another kernel or language.
    """
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise SteerlabError(f"notebook not found: {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for bad JSON
        raise SteerlabError(f"{path}: not a readable notebook ({type(exc).__name__}: {exc})") from None
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise SteerlabError(
            f"{path}: no cell is tagged 'parameters'; add a first code cell with `SMOKE = False` and "
            "`FIGURES = \"../figures\"` and give it the tag 'parameters' (Jupyter: View > Cell toolbar > Tags)"
        )
    if nb.cells[tagged[0]].cell_type != "code":
        raise SteerlabError(f"{path}: the cell tagged 'parameters' (cell {tagged[0]}) is not code; tag a code cell")
    if "SMOKE" not in nb.cells[tagged[0]].source:
        logger.warning("%s: the parameters cell does not set SMOKE; smoke mode will not change what it runs", path)
    kernelspec = nb.metadata.get("kernelspec") or {}
    language = (nb.metadata.get("language_info") or {}).get("name") or kernelspec.get("language")
    problems = []
    if not kernelspec.get("name"):
        problems.append("has no kernelspec metadata")
    elif kernelspec["name"] != KERNEL:
        problems.append(f"names kernel {kernelspec['name']!r}, not {KERNEL!r}")
    if not language:
        problems.append("has no language_info metadata")
    elif language != "python":
        problems.append(f"is in language {language!r}, not 'python'")
    if problems:
        raise SteerlabError(f"{path}: the notebook {' and '.join(problems)}; {_METADATA_FIX}")
    return nb


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """Set one environment variable (inherited by the kernel) for the duration of a run."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def run_notebook(
    path: str | Path,
    *,
    smoke: bool,
    figures: str | Path,
    output: str | Path | None = None,
    timeout: int = DEFAULT_TIMEOUT,
) -> Path:
    """Execute one notebook with papermill and return the path of the executed notebook.

    Args:
        path: The notebook; it needs a code cell tagged ``parameters`` and python3 kernel metadata.
        smoke: Injected as ``SMOKE``: a quick run (few items, few layers) for CI.
        figures: Folder for the notebook's figures, injected as ``FIGURES`` and set as
            ``$STEERLAB_FIGURES`` (made absolute, since the kernel runs in the notebook's folder).
        output: Where to write the executed notebook. Default: the notebook itself in full mode,
            a new temporary folder in smoke mode. Writing in place goes through a temporary file,
            so a failed run leaves the notebook untouched.
        timeout: Seconds each cell may run.

    Raises:
        SteerlabError: If the notebook cannot be run (see `check_notebook`) or papermill is missing.
        NotebookError: If a cell raises; the message names the cell and where the executed copy is.
    """
    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError
    except ImportError:
        raise SteerlabError("running notebooks needs papermill: pip install -e '.[dev]' (or make setup)") from None
    path = Path(path).resolve()
    check_notebook(path)
    figures = Path(figures).resolve()
    figures.mkdir(parents=True, exist_ok=True)
    if output is None:
        output = path if not smoke else Path(tempfile.mkdtemp(prefix="steerlab-nb-")) / path.name
    output = Path(output).resolve()
    in_place = output == path
    target = Path(tempfile.mkdtemp(prefix="steerlab-nb-")) / path.name if in_place else output
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("running %s (%s mode) -> %s", path, "smoke" if smoke else "full", output)
    scratch = tempfile.TemporaryDirectory(prefix="steerlab-kernel-")
    try:
        with scratch, _environ(FIGURES_ENV, str(figures)), _environ("TMPDIR", scratch.name):
            papermill.execute_notebook(
                str(path), str(target), parameters={"SMOKE": bool(smoke), "FIGURES": str(figures)},
                kernel_name=KERNEL, language="python", cwd=str(path.parent), execution_timeout=timeout,
                progress_bar=False, log_output=False,
            )  # fmt: skip
    except PapermillExecutionError as exc:
        raise NotebookError(
            f"{path}: cell {exc.cell_index} (execution count {exc.exec_count}) raised {exc.ename}: {exc.evalue}; "
            f"the executed notebook with the traceback is at {target}"
        ) from None
    if in_place:
        staged = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(target, staged)
        staged.replace(path)
        shutil.rmtree(target.parent, ignore_errors=True)
    return output
