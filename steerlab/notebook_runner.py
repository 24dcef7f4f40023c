"""Execute the numbered notebooks with papermill, in a smoke mode (CI) or in full (``make reproduce``).

Each notebook starts with a code cell tagged ``parameters`` (papermill style) that sets ``SMOKE``,
``FIGURES``, ``MODEL``, ``DEVICE``, ``DTYPE`` and ``BATCH_SIZE`` (see `steerlab.notebook`). `run_notebook`
injects ``SMOKE``, ``FIGURES`` and those of the others that are given after that cell, sets
``$STEERLAB_FIGURES`` (read by `steerlab.plotting.save_figure`) for the kernel, and runs the kernel
``python3`` in the notebook's own folder.

* Full mode (``smoke=False``) writes the executed notebook back in place, so committed notebooks carry
  their outputs. The run goes to a temporary file first: a failing run never overwrites the notebook.
* Smoke mode (``smoke=True``) writes the executed copy to a temporary folder (or to ``output``).
* No machine paths in the executed notebook: ``FIGURES`` is injected relative to the notebook's folder,
  and paths under the notebook's folder or its parent (the checkout) are made relative in the outputs
  and papermill's metadata (`relative_paths`).
* The kernel's ``$TMPDIR`` is a scratch folder removed after the run, so notebooks' temporary run
  folders (smoke mode) do not pile up.

Example:
    >>> run_notebook("notebooks/01_caa_layers.ipynb", smoke=True, figures=Path("/tmp/figs"),
    ...              model="gemma-3-270m")                                           # doctest: +SKIP
    PosixPath('/tmp/steerlab-nb-x1y2/01_caa_layers.ipynb')
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


def check_notebook(path: str | Path, parameters: tuple[str, ...] = ()):
    """Read a notebook and check it can be run: a ``parameters``-tagged code cell and python3 metadata.

    Args:
        path: The notebook.
        parameters: Names that will be injected; each must be set in the ``parameters`` cell, or the
            notebook would silently ignore it.

    Returns:
        The notebook (an ``nbformat.NotebookNode``).

    Raises:
        SteerlabError: If the file is missing or unreadable, has no ``parameters`` cell, its parameters cell
            does not set one of ``parameters``, or its kernel metadata is missing or names another kernel or
            language.
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
    source = nb.cells[tagged[0]].source
    if "SMOKE" not in source:
        logger.warning("%s: the parameters cell does not set SMOKE; smoke mode will not change what it runs", path)
    unset = [p for p in parameters if p != "SMOKE" and not re.search(rf"^\s*{p}\s*=", source, flags=re.M)]
    if unset:
        raise SteerlabError(
            f"{path}: the parameters cell does not set {', '.join(unset)}, so the notebook would ignore the value "
            f"given; add `{unset[0]} = None` to its parameters cell and use it (see steerlab.notebook)"
        )
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


def _relative_to(target: Path, folder: Path) -> str:
    """``target`` relative to ``folder`` (absolute if there is no relative path, e.g. another drive)."""
    try:
        return os.path.relpath(target, folder)
    except ValueError:
        return str(target)


def relative_paths(nb: Any, folder: str | Path, also: Mapping[str, str] | None = None) -> int:
    """Rewrite absolute paths under ``folder`` (a notebook's folder) and its parent as relative ones, in place.

    Covers what papermill and the kernel write into an executed notebook: papermill's metadata (input and
    output path, parameters), the injected-parameters cell and every output (streams, results, tracebacks).
    ``/repo/notebooks/x.csv`` becomes ``x.csv`` and ``/repo/figures/a.png`` becomes ``../figures/a.png``.

    Args:
        nb: A notebook as ``nbformat`` or ``json`` reads it; changed in place.
        folder: The folder the notebook lives in (and runs in).
        also: More ``{absolute folder: replacement}`` pairs, e.g. the kernel's site-packages and scratch folder
            (`run_notebook` passes both), replaced before ``folder``.

    Returns:
        The number of strings changed.
    """
    folder = Path(folder).resolve()
    prefixes = [(f"{Path(k).resolve()}{os.sep}", v) for k, v in (also or {}).items()]
    prefixes += [(f"{folder}{os.sep}", ""), (f"{folder.parent}{os.sep}", f"..{os.sep}")]
    changed = 0

    def fix(value: Any) -> Any:
        nonlocal changed
        if isinstance(value, str):
            new = value
            for prefix, repl in prefixes:
                new = new.replace(prefix, repl)
            changed += new != value
            return new
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        return value

    meta = nb.get("metadata", {}).get("papermill")
    if meta:
        for key in ("input_path", "output_path"):
            if meta.get(key):
                changed += meta[key] != Path(meta[key]).name
                meta[key] = Path(meta[key]).name
        if meta.get("parameters"):
            meta["parameters"] = fix(dict(meta["parameters"]))
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = fix(cell["source"])
        if "outputs" in cell:
            cell["outputs"] = fix(list(cell["outputs"]))
    return changed


def run_notebook(
    path: str | Path,
    *,
    smoke: bool,
    figures: str | Path,
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
    output: str | Path | None = None,
    timeout: int = DEFAULT_TIMEOUT,
) -> Path:
    """Execute one notebook with papermill and return the path of the executed notebook.

    Args:
        path: The notebook; it needs a code cell tagged ``parameters`` and python3 kernel metadata.
        smoke: Injected as ``SMOKE``: a quick run (few items, few layers) for CI.
        figures: Folder for the notebook's figures, injected as ``FIGURES`` relative to the notebook's
            folder (the kernel runs there) and set as ``$STEERLAB_FIGURES`` (absolute).
        model, device, dtype, batch_size: Injected as ``MODEL``, ``DEVICE``, ``DTYPE`` and ``BATCH_SIZE``
            when given (a hub name or local folder, the folder made relative to the notebook's; ``"cuda"``;
            ``"bfloat16"``; an upper bound on batch sizes). ``None`` leaves the notebook's own value (the
            embedded SmolLM2, the best device, its default dtype, its own batch sizes).
        output: Where to write the executed notebook. Default: the notebook itself in full mode,
            a new temporary folder in smoke mode. Writing in place goes through a temporary file,
            so a failed run leaves the notebook untouched.
        timeout: Seconds each cell may run.

    Raises:
        SteerlabError: If the notebook cannot be run (see `check_notebook`), the parameters cell lacks a
            parameter that is given, or papermill is missing.
        NotebookError: If a cell raises; the message names the cell and where the executed copy is.
    """
    try:
        import papermill
        from papermill.exceptions import PapermillExecutionError
    except ImportError:
        raise SteerlabError("running notebooks needs papermill: pip install -e '.[dev]' (or make setup)") from None
    path = Path(path).resolve()
    figures = Path(figures).resolve()
    parameters: dict[str, Any] = {"SMOKE": bool(smoke), "FIGURES": _relative_to(figures, path.parent)}
    if model is not None and Path(model).expanduser().exists():  # a local folder: the kernel runs elsewhere
        model = _relative_to(Path(model).expanduser().resolve(), path.parent)
    given = {"MODEL": model, "DEVICE": device, "DTYPE": dtype}
    parameters.update({name: str(value) for name, value in given.items() if value is not None})
    if batch_size is not None:
        parameters["BATCH_SIZE"] = int(batch_size)
    check_notebook(path, tuple(parameters))
    figures.mkdir(parents=True, exist_ok=True)
    if output is None:
        output = path if not smoke else Path(tempfile.mkdtemp(prefix="steerlab-nb-")) / path.name
    output = Path(output).resolve()
    in_place = output == path
    target = Path(tempfile.mkdtemp(prefix="steerlab-nb-")) / path.name if in_place else output
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("running %s (%s mode, %s) -> %s", path, "smoke" if smoke else "full", parameters, output)
    scratch = tempfile.TemporaryDirectory(prefix="steerlab-kernel-")
    try:
        with scratch, _environ(FIGURES_ENV, str(figures)), _environ("TMPDIR", scratch.name):
            papermill.execute_notebook(
                str(path), str(target), parameters=parameters, kernel_name=KERNEL, language="python",
                cwd=str(path.parent), execution_timeout=timeout, progress_bar=False, log_output=False,
            )  # fmt: skip
    except PapermillExecutionError as exc:
        raise NotebookError(
            f"{path}: cell {exc.cell_index} (execution count {exc.exec_count}) raised {exc.ename}: {exc.evalue}; "
            f"the executed notebook with the traceback is at {target}"
        ) from None
    import nbformat

    nb = nbformat.read(target, as_version=4)
    machine = {sysconfig.get_paths()["purelib"]: f"site-packages{os.sep}", scratch.name: f"tmp{os.sep}"}
    if relative_paths(nb, path.parent, machine):
        nbformat.write(nbformat.from_dict(nb), target)
    if in_place:
        staged = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(target, staged)
        staged.replace(path)
        shutil.rmtree(target.parent, ignore_errors=True)
    return output
