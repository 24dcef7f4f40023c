"""Shared helpers for the benchmark scripts: threads, interleaved timing, tables, JSON results.

Every ratio a benchmark prints is computed from times measured in the same invocation, with the
repeats of the compared functions interleaved (A, B, A, B, ...), so a change in machine load
during the run hits both sides of a ratio alike.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# OpenMP threads that spin while waiting (the default) make every torch op wait for a descheduled
# sibling when other processes share the cores: on this shared 2-core machine that made forwards
# 2-4x slower and very noisy. Passive waiting keeps 2 threads as fast as 1 under load (and is
# inherited by the subprocesses). Must be set before torch loads; export OMP_WAIT_POLICY to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
_LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None
RESULTS = HERE / "results"
# Benchmarks run from a checkout without installing it: make `import steerlab` find the repo.
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def set_threads() -> int:
    """Use every core, the same on both sides of each ratio. Returns the thread count."""
    import torch

    n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def quiet() -> None:
    """Silence the progress bars and warnings of the libraries under test (not timed)."""
    import logging
    import warnings

    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    warmup: dict[str, Callable[[], object]] | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, list[float]]:
    """Times of each function, ``repeats`` rounds, one call of each per round in turn.

    ``warmup`` (default: ``fns``) runs once per function before the first round, untimed.
    """
    for name, fn in (warmup if warmup is not None else fns).items():
        t, _ = timed(fn)
        if log:
            log(f"  warm-up {name}: {t:.2f} s")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        for name, fn in fns.items():
            t, _ = timed(fn)
            times[name].append(t)
            if log:
                log(f"  round {r + 1}/{repeats} {name}: {t:.2f} s")
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num/den within each round (robust to load drift across rounds)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def machine() -> dict:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gpu": torch.cuda.is_available(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "loadavg_at_start": _LOAD_AT_START,  # 1, 5 and 15-minute load averages (2 cores)
        "loadavg_at_end": load,
    }


def load_line() -> str:
    """The load averages at the start and now: how busy the machine was while the benchmark ran. A 1-minute load
    above the core count (the benchmark itself keeps every core busy) means other work shared the cores."""
    now = os.getloadavg() if hasattr(os, "getloadavg") else None
    cores = os.cpu_count() or 1

    def fmt(load) -> str:
        return "n/a" if load is None else " / ".join(f"{x:.2f}" for x in load)

    busiest = max((load[0] for load in (_LOAD_AT_START, now) if load), default=0.0)
    note = " (a loaded machine: other work shared the cores)" if busiest > cores + 0.5 else ""
    return f"load average (1/5/15 min) at start {fmt(_LOAD_AT_START)}, at end {fmt(now)}, {cores} cores{note}"


def table(rows: list[dict], columns: list[str]) -> str:
    """A plain fixed-width table (floats to 3 significant decimals)."""

    def fmt(v) -> str:
        if isinstance(v, float):
            if v != 0 and abs(v) < 1e-3:
                return f"{v:.1e}"
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return "" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(vals: list[str]) -> str:  # first column left-aligned, numbers right-aligned
        return "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths, strict=True)))

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def write_results(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"
