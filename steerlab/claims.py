"""A folder of grid cells shared by many workers: claim a cell, compute it, write it once, move on.

A sweep is a list of cells (one key each, e.g. ``"caa|0|resid_post.12|8"``) and a function that turns
a key into a tidy DataFrame. `CellStore` keeps the cells of one sweep folder so that several processes,
on one machine or on many machines sharing a filesystem, can work on it at once:

* a worker **claims** a cell by creating ``claims/<name>.claim`` with ``O_CREAT | O_EXCL`` (so exactly one
  worker wins), holding its host, pid, start time and a random token; while it computes, a background
  thread refreshes the file's modification time (the **heartbeat**);
* it **writes** the result atomically (``cells/<name>.csv`` via a temporary file, fsync and rename), then
  removes its claim;
* a claim whose heartbeat is older than ``stale_after`` seconds belongs to a dead worker and is **taken
  over**: renamed aside (atomic, only one worker can move it), checked to be the claim that was judged
  stale, deleted, and created anew.

The result is each cell computed exactly once, whatever the number of workers. The one exception is
harmless: a worker that stalls longer than ``stale_after`` without dying loses its claim, and the cell
may be computed twice; both writes are atomic and equal, so nothing is lost or torn. Heartbeats are
file modification times set by the file server, so machines need no synchronised clocks beyond
``stale_after`` (default ten minutes).

`run_cells` is the loop `steerlab.sweeps.sweep` runs on its ``out`` folder: it computes the cells of its
shard that nobody holds, waits for cells other workers hold (taking over stale claims), and returns every
finished cell read back from the folder. ``shard=(I, N)`` splits the keys by a stable hash for array
jobs; a sweep whose shard is done while other cells are not raises `GridIncomplete` (the last worker
gathers). `run_workers` (or `start_workers` and `join_workers`) runs N local processes. Cells are stored
as ``cells/<sha1[:16]>.csv`` with a ``cell`` column.

Example:
    >>> store = CellStore("runs/persona")                                         # doctest: +SKIP
    >>> cells = run_cells(store, keys, compute, shard=(0, 4))                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from steerlab.errors import SteerlabError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CellStore", "Claim", "GridIncomplete", "join_workers", "parse_shard", "run_cells", "run_workers",
           "shard_of", "start_workers"]

logger = logging.getLogger(__name__)


def cell_name(key: str) -> str:
    """The file stem of a cell: the first 16 hex digits of the key's sha1 (as `steerlab.sweeps` names them)."""
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def shard_of(key: str, n: int) -> int:
    """The shard (0..n-1) a cell belongs to: a stable hash of its key (the same on every machine and run)."""
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % n


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (as in ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``) as ``(I, N)``, 0 <= I < N."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise SteerlabError(f"shard {text!r} is not I/N (two integers, e.g. 0/4)") from None
    if count < 1 or not 0 <= index < count:
        raise SteerlabError(
            f"shard {text!r}: need 0 <= I < N; SLURM array indices must then run 0..N-1 (--array=0-{max(count, 1) - 1})"
        )
    return index, count


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened and synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_claim(path: Path) -> dict:
    """The owner record of a claim file ({} if it is empty or half-written)."""
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


class Claim:
    """One worker's hold on one cell. A context manager: heartbeats while open, removes the claim on exit."""

    def __init__(self, store: CellStore, key: str, path: Path, token: str):
        self.store, self.key, self.path, self.token = store, key, path, token
        self.lost = False  # set when another worker took the claim over (this one stalled too long)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {key}", daemon=True)

    def _owned(self) -> bool:
        try:
            return _read_claim(self.path).get("token") == self.token
        except FileNotFoundError:
            return False

    def _beat(self) -> None:
        while not self._stop.wait(self.store.heartbeat):
            if not self._owned():
                self.lost = True
                logger.warning("lost the claim on cell %s (no heartbeat for %.0f s?)", self.key, self.store.stale_after)
                return
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path)

    def __enter__(self) -> Claim:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def release(self) -> None:
        """Stop heartbeating and remove the claim file, if it is still this worker's."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._owned():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class CellStore:
    """The cells of one sweep folder: finished results, and claims of the cells being computed.

    Args:
        folder: The sweep folder (``cells/`` and ``claims/`` are created inside it).
        worker_id: Names this worker in its claims (default ``host:pid``).
        stale_after: Seconds without a heartbeat after which a claim is taken over. Make it much longer
            than a pause of a healthy worker (and than clock skew between machines).
        heartbeat: Seconds between heartbeats (default ``stale_after / 4``).
    """

    def __init__(
        self, folder: str | Path, *, worker_id: str | None = None, stale_after: float = 600.0,
        heartbeat: float | None = None,
    ):  # fmt: skip
        if stale_after <= 0:
            raise SteerlabError(f"stale_after must be positive seconds, got {stale_after}")
        self.folder = Path(folder)
        self.cells = self.folder / "cells"
        self.claims = self.folder / "claims"
        self.cells.mkdir(parents=True, exist_ok=True)
        self.claims.mkdir(parents=True, exist_ok=True)
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.stale_after = float(stale_after)
        self.heartbeat = float(heartbeat) if heartbeat is not None else self.stale_after / 4

    # ------------------------------------------------------------------ results
    def result_path(self, key: str) -> Path:
        return self.cells / f"{cell_name(key)}.csv"

    def is_done(self, key: str) -> bool:
        return self.result_path(key).is_file()

    def write(self, key: str, df: pd.DataFrame) -> None:
        """Store a cell's result atomically (temporary file, fsync, rename), with its key in a ``cell`` column."""
        path = self.result_path(key)
        tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp")
        try:
            df.assign(cell=key).to_csv(tmp, index=False)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.cells)

    def done(self, keys: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
        """The finished cells: ``{key: DataFrame}`` (without the ``cell`` column), for ``keys`` or for all."""
        import pandas as pd

        out: dict[str, pd.DataFrame] = {}
        if keys is not None:
            for key in keys:
                if self.is_done(key):
                    out[key] = pd.read_csv(self.result_path(key)).drop(columns="cell")
            return out
        for path in sorted(self.cells.glob("*.csv")):
            df = pd.read_csv(path)
            if df.empty:  # an empty result keeps no key in its rows; ask with keys= to get it
                logger.debug("skipping empty cell file %s", path)
                continue
            out[str(df["cell"].iloc[0])] = df.drop(columns="cell")
        return out

    # ------------------------------------------------------------------ claims
    def claim_path(self, key: str) -> Path:
        return self.claims / f"{cell_name(key)}.claim"

    def claim(self, key: str) -> Claim | None:
        """Claim ``key`` for this worker, or None if it is done or held by a live worker.

        Use the claim as a context manager around computing and writing the cell.
        """
        if self.is_done(key):
            return None
        path = self.claim_path(key)
        for _ in range(3):
            token = uuid.uuid4().hex
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._take_over_if_stale(path):
                    return None
                continue
            record = {"key": key, "worker": self.worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                      "claimed": time.time(), "token": token}  # fmt: skip
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(record))
                fh.flush()
                os.fsync(fh.fileno())
            claim = Claim(self, key, path, token)
            if self.is_done(key):  # finished by another worker between our check and our claim
                claim.release()
                return None
            return claim
        return None

    def _take_over_if_stale(self, path: Path) -> bool:
        """Remove ``path`` if its heartbeat is older than ``stale_after``; True if the claim can be retried."""
        try:
            age = time.time() - path.stat().st_mtime
            owner = _read_claim(path)
        except FileNotFoundError:
            return True
        if age <= self.stale_after:
            return False
        aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(path, aside)  # atomic: of several workers taking over, one moves it
        except FileNotFoundError:
            return True
        moved = _read_claim(aside)
        if moved.get("token") != owner.get("token"):  # a fresh claim replaced the stale one meanwhile: put it back
            with contextlib.suppress(FileExistsError):
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "w") as fh:
                    fh.write(json.dumps(moved))
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        logger.warning("taking over cell %s from %s (no heartbeat for %.0f s)", owner.get("key", path.stem),
                       owner.get("worker", "an unknown worker"), age)  # fmt: skip
        return True

    def held(self) -> list[dict]:
        """The live and stale claims: one owner record each, with ``age`` (seconds since the last heartbeat)."""
        out = []
        for path in sorted(self.claims.glob("*.claim")):
            with contextlib.suppress(FileNotFoundError):
                out.append({**_read_claim(path), "age": time.time() - path.stat().st_mtime})
        return out


def run_cells(
    store: CellStore,
    keys: Sequence[str],
    compute: Callable[[str], pd.DataFrame],
    *,
    shard: tuple[int, int] | None = None,
    wait: bool = True,
    poll: float | None = None,
    progress: bool = True,
    on_cell: Callable[[str], None] | None = None,
) -> dict[str, pd.DataFrame]:
    """Compute every cell of ``keys`` (of this worker's shard) that is not done, sharing the folder with others.

    Each cell is claimed, computed with ``compute(key)`` (a tidy DataFrame), written atomically and released.
    Cells held by other workers are skipped and revisited; with ``wait`` this worker then waits until
    every cell of its shard is done, taking over the claims of dead workers after ``store.stale_after``.

    Args:
        store: The sweep folder.
        keys: All cell keys of the sweep, in the order to compute them (duplicates are ignored).
        compute: Turns a key into its result. If it raises, the claim is released and the error propagates.
        shard: ``(I, N)``: only cells with ``shard_of(key, N) == I`` are this worker's (array jobs).
        wait: Wait for this shard's cells that other workers hold (default). False returns after one pass.
        poll: Seconds between passes while waiting (default ``stale_after / 20``, between 0.05 and 5).
        progress: Show a tqdm bar over this shard's cells.
        on_cell: Called with each key this worker computed.

    Returns:
        Every finished cell of ``keys`` read back from the folder (all shards), ``{key: DataFrame}``; the
        sweep is complete when it has ``len(keys)`` entries.
    """
    keys = list(dict.fromkeys(keys))
    if shard is not None:
        index, count = shard
        if count < 1 or not 0 <= index < count:
            raise SteerlabError(f"shard {shard}: need (I, N) with 0 <= I < N")
    mine = [k for k in keys if shard is None or shard_of(k, shard[1]) == shard[0]]
    longest = poll if poll is not None else min(max(store.stale_after / 20, 0.05), 5.0)
    pause = min(0.05, longest)  # short waits stay short: the pause doubles up to `longest` while nothing changes
    pending = [k for k in mine if not store.is_done(k)]
    with tqdm(total=len(mine), initial=len(mine) - len(pending), desc="cells", disable=not progress) as bar:
        while pending:
            for key in pending:
                claim = store.claim(key)
                if claim is None:
                    continue
                with claim:
                    store.write(key, compute(key))
                if on_cell is not None:
                    on_cell(key)
            still = [k for k in pending if not store.is_done(k)]
            bar.update(len(pending) - len(still))
            pause = min(0.05, longest) if len(still) < len(pending) else min(2 * pause, longest)
            pending = still
            if pending and not wait:
                logger.info("%d cells are held by other workers; not waiting for them", len(pending))
                break
            if pending:
                time.sleep(pause)
    return store.done(keys)


class GridIncomplete(Exception):  # noqa: N818 (not an error: the normal end of a worker that is not the last)
    """A shard's worker finished its cells while other cells of the grid are not done yet.

    Raised by `steerlab.sweeps.sweep` (and so `steerlab.protocol.evaluate_vector`) with ``shard=``: this
    worker's share is written to the folder and the worker can exit; the worker that finds the grid complete
    gathers it. Attributes: ``folder``, ``shard``, ``done`` and ``total`` (cells of the whole grid).
    """

    def __init__(self, folder: str | Path, shard: tuple[int, int] | None, done: int, total: int):
        self.folder, self.shard, self.done, self.total = Path(folder), shard, done, total
        who = f"shard {shard[0]}/{shard[1]}" if shard else "this worker"
        super().__init__(
            f"{who} finished its cells of {folder}; {total - done} of {total} cells are not done yet (other shards, or "
            "workers still computing them). The worker that finds the grid complete gathers it; a rerun of a shard "
            "whose job died, or a run without a shard, on this folder finishes the grid."
        )


def _child(threads: int | None, worker: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
        import sys

        if "torch" in sys.modules:  # imported while unpickling the worker: set its pool directly
            sys.modules["torch"].set_num_threads(threads)
    worker(*args, **kwargs)


def start_workers(n: int, worker: Callable[..., Any], *args: Any, threads: int | None = 1,
                  **kwargs: Any) -> list[multiprocessing.process.BaseProcess]:  # fmt: skip
    """Start ``worker(*args, **kwargs)`` in ``n`` fresh processes (``spawn``); `join_workers` waits for them.

    ``worker`` must be importable (a module-level function). ``threads``: intra-op threads per process
    (``OMP_NUM_THREADS`` and ``torch.set_num_threads``); None leaves the default.
    """
    if n < 0:
        raise SteerlabError(f"start_workers needs n >= 0 processes, got {n}")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(threads, worker, args, kwargs), name=f"steerlab-worker-{i}")
             for i in range(n)]  # fmt: skip
    for proc in procs:
        proc.start()
    return procs


def join_workers(procs: Sequence[multiprocessing.process.BaseProcess]) -> list[str]:
    """Wait for the processes of `start_workers`; returns ``"name (exit code c)"`` for each one that failed."""
    for proc in procs:
        proc.join()
    return [f"{p.name} (exit code {p.exitcode})" for p in procs if p.exitcode != 0]


def run_workers(n: int, worker: Callable[..., Any], *args: Any, threads: int | None = 1, **kwargs: Any) -> None:
    """Run ``worker(*args, **kwargs)`` in ``n`` fresh processes (``spawn``) and wait for all of them.

    Each process typically loads the model and calls `steerlab.sweeps.sweep` (or `run_cells`) on the same
    folder; the claims share the cells out. ``worker`` must be importable (a module-level function).

    Args:
        n: Number of processes.
        worker: The function each process runs.
        threads: Intra-op threads per process (``OMP_NUM_THREADS`` and ``torch.set_num_threads``); None
            leaves the default.

    Raises:
        SteerlabError: If a worker exits with an error (the others are left to finish).
    """
    if n < 1:
        raise SteerlabError(f"workers must be at least 1, got {n}")
    failed = join_workers(start_workers(n, worker, *args, threads=threads, **kwargs))
    if failed:
        raise SteerlabError(
            f"{len(failed)} of {n} workers failed: {', '.join(failed)}; a rerun on the same folder finishes the grid "
            "(claims of workers that died are taken over after stale_after seconds)"
        )
