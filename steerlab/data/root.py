"""The data root: the one folder that holds the shared datasets, and how a loader finds a file in it.

Loaders never join paths onto the root themselves. They name a file by its POSIX path relative to
the root (``"arc/do_analysis/ARC-Challenge-Test.jsonl"``) and ask this module for it:

* `_dataset_path` resolves one such path to a file (or raises `DataError` with close names);
* `_dataset_file` resolves a file named by a pattern (``"{}.jsonl"``) and a user-given name, listing
  the names available when it is absent;
* `_available` lists those names (for ``list_*`` functions and error messages);
* `_dataset_folder` gives a folder whose files a loader globs (the text corpora);
* `_source` gives the ``meta["source"]`` label of a resolved file.

Where files are found: a local data root (``root=``, ``$STEERLAB_DATA``, or ``../shared/data``) wins when
there is one. Without one, the same paths are looked up in the download cache (``$STEERLAB_CACHE/data``,
filled by `steerlab.data.fetch`), and names are listed from the shipped sources table, so a loader
behaves the same on a machine that has never seen the data root; a file that is not cached raises a
`DataError` naming ``steerlab data fetch NAME`` (or is downloaded, with ``STEERLAB_DATA_DOWNLOAD=1``).
While `fetch` runs a loader, every file it asks for is downloaded into the cache.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from steerlab.data.download import download
from steerlab.data.readers import _existing_file
from steerlab.data.records import DataError, _close
from steerlab.data.sources import _download_on_load, _files, _not_fetched, cache_dir

__all__ = ["data_root"]

_ROOT_ENV = "STEERLAB_DATA"


def _candidates() -> list[Path]:
    """The ``../shared/data`` folders looked at when neither ``root=`` nor ``STEERLAB_DATA`` is given."""
    cwd = Path.cwd()
    return [
        cwd / ".." / "shared" / "data",
        cwd.parent / ".." / "shared" / "data",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data",
    ]


def _find_root(root: str | Path | None) -> Path | None:
    """The local data root, or None when there is none (a bad ``root=`` or ``STEERLAB_DATA`` raises)."""
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
    return next((path.resolve() for path in _candidates() if path.is_dir()), None)


def _tried() -> str:
    return f"root=None, {_ROOT_ENV} unset, no folder at " + ", ".join(str(p.resolve()) for p in _candidates())


def data_root(root: str | Path | None = None) -> Path:
    """The local folder that holds the shared datasets.

    Looks, in order, at ``root``, the environment variable ``STEERLAB_DATA``, ``../shared/data``
    relative to the current directory and to its parent (notebooks run from ``notebooks/``), and
    ``../shared/data`` relative to the repository that holds the ``steerlab`` package. Without one,
    loaders read from the download cache instead (see `steerlab.data.fetch`).

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
    path = _find_root(root)
    if path is None:
        raise DataError(
            f"no local data root found ({_tried()}); set {_ROOT_ENV}=/path/to/shared/data or pass root=. "
            f"Loaders then use downloaded files: `steerlab data fetch NAME` fills {cache_dir()}"
        )
    return path


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


def _names_listed(folder: str, pattern: str) -> list[str]:
    """The names that fill the ``{}`` of ``pattern`` for the sources-table files under ``folder``."""
    prefix, suffix = pattern.split("{}")
    regex = re.compile(re.escape(f"{folder}/{prefix}") + "([^/]+)" + re.escape(suffix))
    return sorted(m.group(1) for rel in _files() if (m := regex.fullmatch(rel)))


# ----------------------------------------------------------------- the download cache


@dataclass
class _Fetching:
    """Set while `fetch` runs a loader: every file the loader asks for is downloaded into the cache."""

    progress: bool = True
    timeout: float = 30.0
    retries: int = 3
    status: dict[str, str] = field(default_factory=dict)


_FETCHING: ContextVar[_Fetching | None] = ContextVar("steerlab_data_fetching", default=None)


def _local_root(root: str | Path | None) -> Path | None:
    """The local data root loaders read, or None to read the download cache (always None inside `fetch`)."""
    return None if _FETCHING.get() is not None else _find_root(root)


def _cached(rels: list[str]) -> None:
    """Make sure the sources-table files ``rels`` are in the cache: download them inside `fetch` (or with
    ``STEERLAB_DATA_DOWNLOAD=1``), else raise a DataError naming ``steerlab data fetch``."""
    cache = cache_dir()
    files = [_files()[rel] for rel in rels if _files()[rel].url]
    mode = _FETCHING.get()
    if mode is None:
        missing = [f for f in files if not (cache / f.path).is_file()]
        if not missing:
            return
        if not _download_on_load():
            raise _not_fetched(missing[0].path, _tried())
        files, mode = missing, _Fetching()
    mode.status.update(download(files, cache, progress=mode.progress, timeout=mode.timeout, retries=mode.retries))


# ----------------------------------------------------------------- a dataset's files under the root


def _dataset_folder(rel: str, root: str | Path | None) -> Path:
    """The folder ``rel`` (a POSIX path relative to the data root)."""
    base = _local_root(root)
    if base is not None:
        return base / rel
    inside = [path for path in _files() if path.startswith(rel.rstrip("/") + "/")]
    if not inside:
        raise DataError(f"no folder {rel} in steerlab's data sources; check the data root layout")
    _cached(inside)
    return cache_dir() / rel


def _dataset_path(rel: str, root: str | Path | None) -> Path:
    """The file ``rel`` (a POSIX path relative to the data root), or a DataError that suggests close names."""
    base = _local_root(root)
    if base is not None:
        return _existing_file(base / rel)
    if rel not in _files():
        close = _close(rel, list(_files()))
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(f"{rel} is not a file of steerlab's data sources (no local data root: {_tried()}){hint}")
    _cached([rel])
    return cache_dir() / rel


def _available(folder: str, pattern: str, root: str | Path | None) -> list[str]:
    """The names that fill the ``{}`` of ``pattern`` for the files under the root's ``folder``.

    Without a local root: every name in the sources table, fetched or not.
    """
    base = _local_root(root)
    return _names_in(base / folder, pattern) if base is not None else _names_listed(folder, pattern)


def _source(path: Path, root: str | Path | None) -> str:
    """The ``meta["source"]`` label of a resolved dataset file: its path relative to the data root."""
    base = _local_root(root)
    return _relative(path, base if base is not None else cache_dir())


def _dataset_file(root: str | Path | None, folder: str, name: str, pattern: str, what: str) -> Path:
    """The file ``<root>/<folder>/<pattern with name>``, or a DataError that lists the alternatives."""
    base = _local_root(root)
    rel = f"{folder}/{pattern.format(name)}"
    if base is not None and (base / rel).is_file():
        return base / rel
    if base is None and rel in _files():
        _cached([rel])
        return cache_dir() / rel
    available = _available(folder, pattern, root)
    where = str(base / rel) if base is not None else f"{rel} is not in steerlab's data sources"
    listing = ", ".join(available) if available else f"none (is {base / folder if base else folder} there?)"
    if rel in _KNOWN_MISSING:
        raise DataError(
            f"{what} {name!r} is missing from this copy of the data: {rel} is larger than 4 MiB and could not "
            f"be copied (see PROVENANCE.md). Available: {listing}"
        )
    close = _close(name, available)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    detail = f"{where} does not exist" if base is not None else where
    raise DataError(f"no {what} named {name!r} ({detail}); {hint}available: {listing}")
