"""Downloading data files: resumable, checksummed, with one progress bar (standard library only).

Each file is written to ``<name>.part`` next to its final place, resumed with an HTTP ``Range`` request
after an interruption (within a call, up to ``retries`` times, and across calls), and renamed to its
final name only once its size and sha256 match the sources table. A mismatch deletes the partial file
and raises `DataError`; so a file in the cache is always a verified copy. Downloads into one cache
are serialised by a lock file, so several processes (workers of a sweep) can fetch at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from steerlab.data.records import DataError
from steerlab.data.sources import _MIRROR_ENV, SourceFile, _dataset_of, _mirrored

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_BACKOFF = 0.5  # seconds before the first retry; doubles after each failure
_RETRYABLE_HTTP = {408, 425, 429, 500, 502, 503, 504}


class _Interrupted(Exception):
    """A transfer that stopped early for a reason that may go away (network, server hiccup)."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _verified(path: Path, f: SourceFile) -> bool:
    return path.is_file() and path.stat().st_size == f.size and _sha256(path) == f.sha256


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock`` (POSIX ``flock``; no lock where it is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _open(source: str, offset: int, timeout: float):
    """A byte stream of ``source`` (URL or local mirror file) and whether it starts at ``offset`` (else at 0)."""
    if "://" not in source:
        path = Path(source)
        if not path.is_file():
            raise DataError(
                f"the mirror has no file {path}; {_MIRROR_ENV} must be a folder laid out as HOST/PATH of the "
                "source URLs (see `steerlab data list`), or a URL prefix serving that layout"
            )
        fh = open(path, "rb")
        fh.seek(offset)
        return fh, True
    headers = {"User-Agent": "steerlab-data"} | ({"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(urllib.request.Request(source, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the partial file is not a prefix the server accepts: start over
            return _open(source, 0, timeout)
        if exc.code in _RETRYABLE_HTTP:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from exc
        raise DataError(
            f"{source} answered HTTP {exc.code} {exc.reason}: the file is not there. If {_MIRROR_ENV} is set, the "
            "mirror lacks it (it must serve HOST/PATH of the source URL); otherwise the source moved (report it)"
        ) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Interrupted(str(getattr(exc, "reason", exc))) from exc
    return response, bool(offset) and getattr(response, "status", None) == 206


def _transfer(source: str, part: Path, have: int, timeout: float, advance: Callable[[int], None]) -> None:
    """Append ``source`` from byte ``have`` to ``part`` (or rewrite it when the server cannot resume)."""
    stream, resumed = _open(source, have, timeout)
    with stream, open(part, "ab" if resumed else "wb") as out:
        if not resumed and have:
            advance(-have)
        try:
            while chunk := stream.read(_CHUNK):
                out.write(chunk)
                advance(len(chunk))
        except (OSError, http.client.HTTPException) as exc:  # timeout, reset, incomplete read
            raise _Interrupted(f"connection lost ({exc!r})") from exc
        finally:
            out.flush()
            os.fsync(out.fileno())


def _download_one(f: SourceFile, target: Path, bar: tqdm, timeout: float, retries: int) -> None:
    source = _mirrored(f.url)
    part = target.with_name(target.name + ".part")
    counted = 0

    def advance(n: int) -> None:
        nonlocal counted
        counted += n
        bar.update(n)

    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if have > f.size:
            part.unlink()
            have = 0
        advance(have - counted)
        try:
            if have < f.size:
                _transfer(source, part, have, timeout, advance)
            got = part.stat().st_size
            if got < f.size:
                raise _Interrupted(f"the connection closed after {got} of {f.size} bytes")
            break
        except _Interrupted as exc:
            failures += 1
            if failures > retries:
                kept = part.stat().st_size if part.exists() else 0
                name = _dataset_of(f.path) or f.path
                raise DataError(
                    f"could not download {f.path} from {source}: {exc} ({failures} tries). {kept} of {f.size} bytes "
                    f"are kept in {part}; a rerun resumes there. Check the network, or set {_MIRROR_ENV} to a mirror "
                    "(URL prefix or folder laid out as HOST/PATH) or STEERLAB_DATA to a local copy of the data root, "
                    f"then run `steerlab data fetch {name}` again"
                ) from None
            logger.warning("download of %s interrupted (%s); retrying (%d of %d)", f.path, exc, failures, retries)
            time.sleep(_BACKOFF * 2 ** (failures - 1))
    digest = _sha256(part)
    if digest != f.sha256 or part.stat().st_size != f.size:
        size = part.stat().st_size
        part.unlink()
        advance(-counted)
        raise DataError(
            f"checksum mismatch for {f.path} from {source}: expected {f.size} bytes with sha256 {f.sha256}, got "
            f"{size} bytes with sha256 {digest}. The partial file was deleted. The source (or mirror) serves a "
            "different file; check the mirror, or report it if it is the original source"
        )
    os.replace(part, target)


def download(
    files: Sequence[SourceFile], dest: Path, *, progress: bool = True, timeout: float = 30.0, retries: int = 3
) -> dict[str, str]:
    """Bring ``files`` into ``dest`` (laid out like the data root), each checked against its sha256.

    Args:
        files: Entries of the sources table.
        dest: The cache folder.
        progress: Show one tqdm bar over the bytes to download.
        timeout: Seconds to wait for a connection and for each read.
        retries: How often one file's transfer is resumed after an interruption before giving up.

    Returns:
        ``{path: "cached" | "downloaded"}`` for every file.

    Raises:
        DataError: A file cannot be downloaded (no network, not on the mirror) or fails its checksum.
    """
    status: dict[str, str] = {}
    todo = []
    for f in files:
        if f.url is None:
            raise DataError(f"{f.path} is not a byte copy of a public file and cannot be downloaded")
        if _verified(dest / f.path, f):
            status[f.path] = "cached"
        else:
            todo.append(f)
    total = sum(f.size for f in todo)
    with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="steerlab data",
              disable=not progress or not todo) as bar:  # fmt: skip
        for f in todo:
            target = dest / f.path
            target.parent.mkdir(parents=True, exist_ok=True)
            bar.set_postfix_str(f.path.rsplit("/", 1)[-1], refresh=False)
            with _locked(dest / ".download.lock"):
                if _verified(target, f):  # another process finished it while we waited
                    bar.update(f.size)
                    status[f.path] = "cached"
                    continue
                _download_one(f, target, bar, timeout, retries)
            status[f.path] = "downloaded"
            logger.info("downloaded %s (%d bytes)", f.path, f.size)
    return status
