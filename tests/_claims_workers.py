"""Worker functions for tests/test_claims.py and test_sweeps.py: module-level, so spawned processes can import them."""

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


# ---------------------------------------------------------------- workers of a `sweep` on the tiny model (test_sweeps)

SWEEP = dict(coeffs=[-2.0, 0.0, 2.0], controls=2, control_seed=3)
"""The grid the workers sweep: 2 layers x 2 nonzero strengths x (the vector + 2 random directions), and 0."""
HANG = "STEERLAB_TEST_HANG_ON"


def sweep_setup(folder: str):
    """The tiny model (nnsight), a choice task and a seeded vector: the same in every process."""
    from types import SimpleNamespace

    import torch

    from steerlab.sites import Site
    from steerlab.tasks import ChoiceTask
    from steerlab.testing import tiny_backend
    from steerlab.vectors import Provenance, SteeringVector

    lm = tiny_backend("nnsight", folder)
    pairs = [SimpleNamespace(prompt=f"Question {i}: do you agree?", positive="Yes" if i % 2 else "No",
                             negative="No" if i % 2 else "Yes", meta={"id": f"q{i}"}) for i in range(6)]  # fmt: skip
    g = torch.Generator().manual_seed(0)
    provenance = Provenance(model=lm.name, d_model=lm.d_model, n_layers=lm.n_layers, method="rand")
    vec = SteeringVector({Site(layer): torch.randn(lm.d_model, generator=g) for layer in (0, 1)}, provenance)
    return lm, ChoiceTask.from_pairs(lm, pairs), vec


def hanging_add(site, direction, coeff, positions):
    """`steerlab.interventions.steer`, except that it hangs on the cell named by $STEERLAB_TEST_HANG_ON."""
    from steerlab.interventions import steer

    marker = os.environ.get(HANG, "")
    if marker and marker.split("@")[0] == f"{site}|{coeff:g}":
        Path(marker.split("@")[1]).touch()
        time.sleep(600)  # killed by the test
    return steer({site: direction}, coeff, positions=positions)


def sweep_worker(folder: str, out: str, calls: str, *, stale_after: float = 30.0, hang: str | None = None,
                 delay: float = 0.0, barrier: int = 1) -> None:
    """`sweep` on the shared folder ``out``; leaves ``done.<cell>.<pid>`` in ``calls`` for each cell it computed."""
    from steerlab.sweeps import sweep

    if hang:
        os.environ[HANG] = hang
    lm, task, vec = sweep_setup(folder)
    (Path(calls) / f"ready.{os.getpid()}").touch()
    while len(list(Path(calls).glob("ready.*"))) < barrier:
        time.sleep(0.01)

    def record(key: str) -> None:
        (Path(calls) / f"done.{cell_name(key)}.{os.getpid()}").touch()
        time.sleep(delay)

    sweep(lm, vec, task, out=out, stale_after=stale_after, edit=hanging_add, progress=False, on_cell=record, **SWEEP)
