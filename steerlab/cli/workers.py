"""Helper processes for ``steerlab sweep --workers N``: N-1 processes beside the main one on one ``--out``.

Each helper runs `steerlab.cli.sweep.run_sweep` with the same options and ``gather=False``: it loads the
model, takes the vector extracted once for the folder, and claims cells of the protocol's sweeps
(`steerlab.claims`) until they are done, writing no outputs; the main process writes them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def helpers(n: int, options: dict[str, Any], threads: int | None) -> Iterator[None]:
    """``n`` helper processes computing cells beside this one while the block runs (``threads`` each, default
    1); they are stopped if the block fails, and waited for when it ends (a helper that failed is logged:
    this process computed the cells it left)."""
    if n < 1:
        yield
        return
    from steerlab.claims import GridIncomplete, join_workers, start_workers

    helper = {**options, "workers": 1, "gather": False, "progress": False, "threads": threads or 1}
    procs = start_workers(n, run_helper, helper, threads=threads or 1)
    try:
        yield
    except GridIncomplete:  # the end of a shard, not a failure: the helpers end the same way
        raise
    except BaseException:
        for proc in procs:
            proc.terminate()
        raise
    finally:
        failed = join_workers(procs)
        if failed:
            logger.warning("helper workers failed: %s; the main process computed the cells they left", failed)


def run_helper(options: dict[str, Any]) -> None:
    """One helper process: `run_sweep` with ``options`` (``gather=False``); the end of its shard is no error."""
    from steerlab.claims import GridIncomplete
    from steerlab.cli.sweep import run_sweep

    with contextlib.suppress(GridIncomplete):  # its shard is done; another worker gathers
        run_sweep(**options)
