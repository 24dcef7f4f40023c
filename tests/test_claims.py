"""Tests for steerlab.claims: many workers on one sweep folder compute each cell exactly once."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from _claims_workers import compute, worker

from steerlab.claims import CellStore, cell_name, parse_shard, run_cells, run_workers, shard_of
from steerlab.errors import SteerlabError

KEYS = [f"caa|{i}|resid_post.{i % 3}|8" for i in range(12)]


def _counts(calls: Path, kind: str) -> dict[str, int]:
    by_name = {cell_name(key): key for key in KEYS}
    out: dict[str, int] = {}
    for path in calls.glob(f"{kind}.*"):
        key = by_name[path.name.split(".")[1]]
        out[key] = out.get(key, 0) + 1
    return out


def _single_process(tmp_path: Path) -> dict[str, pd.DataFrame]:
    calls = tmp_path / "single-calls"
    calls.mkdir()
    store = CellStore(tmp_path / "single", stale_after=5)
    return run_cells(store, KEYS, lambda k: compute(k, str(calls)), progress=False)


def _same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert sorted(a) == sorted(b) == sorted(KEYS)
    for key in KEYS:
        pd.testing.assert_frame_equal(a[key], b[key])


def test_two_processes_compute_each_cell_once(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    folder = tmp_path / "sweep"
    run_workers(2, worker, str(folder), KEYS, str(calls), 30.0, delay=0.1, barrier=2)
    assert _counts(calls, "finished") == {key: 1 for key in KEYS}
    assert len({path.name.split(".")[2] for path in calls.glob("finished.*")}) == 2  # both workers computed cells
    assert _counts(calls, "started") == {key: 1 for key in KEYS}
    assert not list((folder / "claims").iterdir())
    _same(CellStore(folder).done(KEYS), _single_process(tmp_path))
    assert sorted(CellStore(folder).done()) == sorted(KEYS)  # also readable without the keys


def test_killed_worker_claim_is_taken_over(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    folder = tmp_path / "sweep"
    victim = KEYS[3]
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=worker, args=(str(folder), KEYS, str(calls), 1.0, victim))
    proc.start()
    deadline = time.time() + 120
    while not _counts(calls, "started").get(victim):
        assert time.time() < deadline and proc.is_alive(), "the worker never reached the cell it hangs on"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    claim = folder / "claims" / f"{cell_name(victim)}.claim"
    owner = json.loads(claim.read_text())
    assert (owner["key"], owner["pid"]) == (victim, proc.pid)  # the dead worker's claim is left behind

    store = CellStore(folder, stale_after=1.0)
    start = time.time()
    assert store.claim(victim) is None  # its heartbeat is still fresh
    result = run_cells(store, KEYS, lambda k: compute(k, str(calls)), progress=False)
    assert time.time() - start >= 0.5  # the takeover waited for the claim to go stale
    finished = _counts(calls, "finished")
    assert finished == {key: 1 for key in KEYS}  # the killed computation never finished; everything else once
    assert _counts(calls, "started")[victim] == 2
    assert not claim.exists()
    _same(result, _single_process(tmp_path))


def test_claim_is_exclusive_and_released(tmp_path):
    a = CellStore(tmp_path, worker_id="a", stale_after=30)
    b = CellStore(tmp_path, worker_id="b", stale_after=30)
    claim = a.claim("k")
    assert claim is not None and b.claim("k") is None
    with claim:
        assert [c["worker"] for c in b.held()] == ["a"]
        a.write("k", pd.DataFrame({"value": [1.0]}))
    assert b.held() == [] and b.claim("k") is None  # done: nothing to claim
    assert b.done(["k"])["k"]["value"].tolist() == [1.0]


def test_failed_compute_releases_its_claim(tmp_path):
    store = CellStore(tmp_path, stale_after=30)

    def boom(key):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        run_cells(store, ["k"], boom, progress=False)
    assert store.held() == [] and not store.is_done("k")
    assert run_cells(store, ["k"], lambda k: pd.DataFrame({"value": [2.0]}), progress=False)["k"]["value"][0] == 2.0


def test_heartbeat_keeps_a_slow_cell_claimed(tmp_path):
    owner = CellStore(tmp_path, worker_id="slow", stale_after=0.6, heartbeat=0.1)
    other = CellStore(tmp_path, worker_id="other", stale_after=0.6)
    with owner.claim("k") as claim:
        time.sleep(1.2)  # twice the timeout, but heartbeats keep the claim fresh
        assert other.claim("k") is None and not claim.lost


def test_stalled_worker_notices_its_lost_claim(tmp_path):
    owner = CellStore(tmp_path, worker_id="stalled", stale_after=0.3, heartbeat=30)  # no heartbeat in time
    other = CellStore(tmp_path, worker_id="other", stale_after=0.3, heartbeat=0.05)
    claim = owner.claim("k")
    time.sleep(0.5)
    taken = other.claim("k")
    assert taken is not None and not claim._owned()
    claim.release()  # must not remove the new owner's claim
    assert [c["worker"] for c in other.held()] == ["other"]
    taken.release()


def test_shards_partition_the_grid(tmp_path):
    n = 3
    shards = [[k for k in KEYS if shard_of(k, n) == i] for i in range(n)]
    assert sorted(sum(shards, [])) == sorted(KEYS)
    assert shard_of(KEYS[0], n) == shard_of(KEYS[0], n)  # stable (sha1, not Python's salted hash)
    computed: list[str] = []
    for i in range(n):
        got = run_cells(CellStore(tmp_path), KEYS, lambda k: pd.DataFrame({"value": [len(k)]}), shard=(i, n),
                        progress=False, on_cell=computed.append)  # fmt: skip
        assert set(shards[i]) <= set(got)
    assert sorted(computed) == sorted(KEYS) and len(got) == len(KEYS)
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/4", "1", "a/b"):
        with pytest.raises(SteerlabError, match="shard"):
            parse_shard(bad)
