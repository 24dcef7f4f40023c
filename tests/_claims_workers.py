"""Worker functions for tests/test_claims.py: module-level, so spawned processes can import them."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pandas as pd

from steerlab.claims import CellStore, cell_name, run_cells


def compute(key: str, calls: str, *, hang_on: str | None = None, delay: float = 0.0) -> pd.DataFrame:
    """A deterministic tidy result for ``key``; leaves a file per started and per finished computation."""
    folder = Path(calls)
    tag = f"{cell_name(key)}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    (folder / f"started.{tag}").touch()
    if key == hang_on:
        time.sleep(600)  # killed by the test
    time.sleep(delay)
    index = int(key.split("|")[1])
    df = pd.DataFrame({"example_id": range(3), "value": [index * 0.1 + j / 7 for j in range(3)], "metric": "p"})
    (folder / f"finished.{tag}").touch()
    return df


def worker(folder: str, keys: list[str], calls: str, stale_after: float, hang_on: str | None = None,
           delay: float = 0.0, barrier: int = 1) -> None:
    """`run_cells` over ``keys``; with ``barrier=n`` it starts only once n workers are ready (so they overlap)."""
    (Path(calls) / f"ready.{os.getpid()}").touch()
    while len(list(Path(calls).glob("ready.*"))) < barrier:
        time.sleep(0.01)
    store = CellStore(folder, stale_after=stale_after)
    run_cells(store, keys, lambda k: compute(k, calls, hang_on=hang_on, delay=delay), progress=False)
