"""The shared data root for the steerlab.data tests; tests marked ``needs_data`` skip without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from steerlab import data as sd
from steerlab.data import DataError

try:
    ROOT: Path | None = sd.data_root()
    NO_DATA_REASON = ""
except DataError as exc:
    ROOT = None
    NO_DATA_REASON = f"shared data root not found ({exc})"

needs_data = pytest.mark.skipif(ROOT is None, reason=NO_DATA_REASON or "data root present")
