"""The data root: the one folder that holds the shared datasets, and how a loader finds a file in it.

Loaders never join paths onto the root themselves. They name a file by its POSIX path relative to
the root (``"arc/do_analysis/ARC-Challenge-Test.jsonl"``) and ask this module for it:

* `_dataset_path` resolves one such path to a file (or raises `DataError` with close names);
* `_dataset_file` resolves a file named by a pattern (``"{}.jsonl"``) and a user-given name, listing
  the names available when it is absent;
* `_available` lists those names (for ``list_*`` functions and error messages);
* `_source` gives the ``meta["source"]`` label of a resolved file.

Only these functions touch the root's layout, so a second place to look (for instance a download
cache laid out like the root, consulted after the local root) slots in here without changing a loader.
"""

from __future__ import annotations

import os
from pathlib import Path

from steerlab.data.readers import _existing_file
from steerlab.data.records import DataError, _close

__all__ = ["data_root"]

_ROOT_ENV = "STEERLAB_DATA"


def data_root(root: str | Path | None = None) -> Path:
    """The folder that holds the shared datasets.

    Looks, in order, at ``root``, the environment variable ``STEERLAB_DATA``, ``../shared/data``
    relative to the current directory and to its parent (notebooks run from ``notebooks/``), and
    ``../shared/data`` relative to the repository that holds the ``steerlab`` package.

    Args:
        root: An explicit data root; wins over everything else.

    Returns:
        The resolved data root.

    Raises:
        DataError: If the chosen folder does not exist, naming every place that was tried.

    Example:
        >>> data_root("/work/shared/data")
        PosixPath('/work/shared/data')
    """
    if root is not None:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise DataError(
                f"data root {path} (passed as root=) is not a directory; pass the folder with PROVENANCE.md"
            )
        return path.resolve()
    env = os.environ.get(_ROOT_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataError(f"{_ROOT_ENV}={env} is not a directory; point it at the shared data folder or unset it")
        return path.resolve()
    cwd = Path.cwd()
    candidates = [
        cwd / ".." / "shared" / "data",
        cwd.parent / ".." / "shared" / "data",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data",
    ]
    for path in candidates:
        if path.is_dir():
            return path.resolve()
    tried = ", ".join(str(p.resolve()) for p in candidates)
    raise DataError(f"no data root found (tried {tried}); set {_ROOT_ENV}=/path/to/shared/data or pass root=")


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form, or the full path if it is elsewhere."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


# Files named in PROVENANCE.md that could not be copied (larger than 4 MiB).
_KNOWN_MISSING = {
    "ethics/commonsense/cm_train.csv",
    "bbq/data/Gender_identity.jsonl",
    "bbq/data/Race_ethnicity.jsonl",
    "bbq/data/SES.jsonl",
    "bbq/data/Race_x_gender.jsonl",
    "bbq/data/Race_x_SES.jsonl",
    "caa/datasets/raw/sycophancy/dataset.json",
    "caa/datasets/raw/hallucination/dataset.json",
    "wikitext2/word_language_model/data/wikitext-2/train.txt",
}


def _names_in(folder: Path, pattern: str) -> list[str]:
    """The names that fill the ``{}`` of ``pattern`` for the files that exist under ``folder``."""
    prefix, suffix = pattern.split("{}")
    names = []
    for path in folder.glob(pattern.format("*")):
        rel = path.relative_to(folder).as_posix()
        names.append(rel[len(prefix) : len(rel) - len(suffix)])
    return sorted(names)


# ----------------------------------------------------------------- a dataset's files under the root


def _dataset_folder(rel: str, root: str | Path | None) -> Path:
    """The folder ``rel`` (a POSIX path relative to the data root)."""
    return data_root(root) / rel


def _dataset_path(rel: str, root: str | Path | None) -> Path:
    """The file ``rel`` (a POSIX path relative to the data root), or a DataError that suggests close names."""
    return _existing_file(data_root(root) / rel)


def _available(folder: str, pattern: str, root: str | Path | None) -> list[str]:
    """The names that fill the ``{}`` of ``pattern`` for the files present under the root's ``folder``."""
    return _names_in(_dataset_folder(folder, root), pattern)


def _source(path: Path, root: str | Path | None) -> str:
    """The ``meta["source"]`` label of a resolved dataset file: its path relative to the data root."""
    return _relative(path, data_root(root))


def _dataset_file(root: str | Path | None, folder: str, name: str, pattern: str, what: str) -> Path:
    """The file ``<root>/<folder>/<pattern with name>``, or a DataError that lists the alternatives."""
    base = data_root(root)
    path = base / folder / pattern.format(name)
    if path.is_file():
        return path
    available = _names_in(base / folder, pattern)
    listing = ", ".join(available) if available else f"none (is {base / folder} there?)"
    if _relative(path, base) in _KNOWN_MISSING:
        raise DataError(
            f"{what} {name!r} is missing from this copy of the data: {path} is larger than 4 MiB and could not "
            f"be copied (see PROVENANCE.md). Available: {listing}"
        )
    close = _close(name, available)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise DataError(f"no {what} named {name!r} ({path} does not exist); {hint}available: {listing}")

