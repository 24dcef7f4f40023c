"""Fetch datasets from their public sources into the download cache, and list what is where.

Every file of the data root is a byte copy of a file in a public GitHub repository at a fixed commit
(``sources.json`` in the package: URL, size, sha256, license). `fetch` downloads the files a dataset
needs into ``$STEERLAB_CACHE/data`` (laid out like the data root) and checks each one; after that the
loaders work on a machine with no local data root. A local root, when there is one, still wins.

Example:
    >>> from steerlab import data
    >>> data.fetch("persona")                  # all 123 persona files, 44 MB          # doctest: +SKIP
    >>> data.fetch(["persona:openness", "arc"])  # one file, and one dataset            # doctest: +SKIP
    >>> data.list_datasets()[["name", "license", "mb", "status"]]                     # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from steerlab.data.download import download
from steerlab.data.records import DataError
from steerlab.data.root import _FETCHING, _Fetching, _find_root
from steerlab.data.sources import DATASETS, _matching, _resolve_names, _source_of, cache_dir
from steerlab.data.specs import _SPECS, load_dataset

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["fetch", "list_datasets"]

logger = logging.getLogger(__name__)


def fetch(
    names: str | Sequence[str], *, progress: bool = True, timeout: float = 30.0, retries: int = 3
) -> pd.DataFrame:
    """Download datasets from their public sources into the cache, checking every file's sha256.

    Files already in the cache are checked and kept; an interrupted download resumes where it stopped
    (also on a later call); a file whose checksum does not match is deleted and reported. Set
    ``STEERLAB_DATA_MIRROR`` to download from a mirror (``https://HOST/PATH`` is read from
    ``$STEERLAB_DATA_MIRROR/HOST/PATH``, a URL prefix or a local folder).

    Args:
        names: One name or several: a `load_dataset` name (``"persona"``: every file it can read), a full
            spec (``"persona:openness"``: only the files that spec reads), a top-level folder of the data
            root (``"anthropic-evals"``), or ``"all"`` (107 MB).
        progress: Show a progress bar over the bytes to download.
        timeout: Seconds to wait for a connection and for each read.
        retries: How often a file's transfer is resumed after an interruption before giving up.

    Returns:
        One row per file: ``path`` (relative to the data root), ``bytes``, ``status`` (``"downloaded"`` or
        ``"cached"``).

    Raises:
        DataError: An unknown name, no network (naming ``STEERLAB_DATA_MIRROR``), or a checksum mismatch.
    """
    import pandas as pd

    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise DataError("nothing to fetch: name a dataset (`steerlab data list` shows them), a spec such as "
                        "'persona:openness', or 'all'")  # fmt: skip
    files, specs = _resolve_names(names)
    mode = _Fetching(progress=progress, timeout=timeout, retries=retries)
    token = _FETCHING.set(mode)
    try:
        if files:
            mode.status.update(download(files, cache_dir(), progress=progress, timeout=timeout, retries=retries))
        for spec in specs:
            load_dataset(spec)  # the loader asks for exactly the files it reads; each is downloaded
    finally:
        _FETCHING.reset(token)
    try:
        local = _find_root(None)
    except DataError:
        local = None
    if local is not None:
        logger.warning("a local data root %s exists; loaders read it, not the fetched copies in %s", local, cache_dir())
    sizes = {f.path: f.size for f in _matching(["*"])}
    rows = [{"path": path, "bytes": sizes[path], "status": status} for path, status in sorted(mode.status.items())]
    return pd.DataFrame(rows, columns=["path", "bytes", "status"])


def list_datasets() -> pd.DataFrame:
    """Every `load_dataset` name with its source, license, size, and whether its files are here.

    Returns:
        One row per name: ``name``, ``usage`` (the spec syntax), ``source`` (repository @ commit),
        ``license``, ``files``, ``mb``, ``local`` (all files in a local data root), ``cached`` (files in
        the download cache) and ``status`` (``"local"``, ``"cached"``, ``"partial"`` or ``"not fetched"``).
    """
    import pandas as pd

    try:
        local = _find_root(None)
    except DataError:
        local = None
    cache = cache_dir()
    rows = []
    for name, patterns in DATASETS.items():
        files = _matching(patterns)
        folders = sorted({f.folder for f in files})
        in_local = local is not None and all((local / f.path).is_file() for f in files)
        cached = sum((cache / f.path).is_file() and (cache / f.path).stat().st_size == f.size for f in files)
        status = "local" if in_local else "cached" if cached == len(files) else "partial" if cached else "not fetched"
        rows.append({
            "name": name,
            "usage": _SPECS[name][0],
            "source": "; ".join(f"{_source_of(d)['repo']}@{_source_of(d)['commit'][:7]}" for d in folders),
            "license": "; ".join(dict.fromkeys(_source_of(d)["license"] for d in folders)),
            "files": len(files),
            "mb": round(sum(f.size for f in files) / 1e6, 2),
            "local": in_local,
            "cached": cached,
            "status": status,
        })  # fmt: skip
    return pd.DataFrame(rows)
