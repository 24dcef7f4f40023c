"""Tests for steerlab.data.specs: load_dataset's short specs."""

from __future__ import annotations

import pytest
from _data_root import needs_data

from steerlab import data as sd
from steerlab.data import DataError


@needs_data
def test_load_dataset_specs():
    assert len(sd.load_dataset("persona:openness")) == 1000
    assert len(sd.load_dataset("caa-test:refusal")) == 50
    assert len(sd.load_dataset("airisk:power-seeking-inclination")) == 998
    assert len(sd.load_dataset("ethics:justice:test_hard")) == 2052
    assert len(sd.load_dataset("mmlu:anatomy:dev")) == 5
    assert len(sd.load_dataset("truthfulqa")) == 817
    assert len(sd.load_dataset("openbookqa")) == 500
    assert len(sd.load_dataset("agieval:lsat-lr")) == 510
    with pytest.raises(DataError, match=r"prefix 'nope' is not one of: persona:<behaviour>"):
        sd.load_dataset("nope:x")
    with pytest.raises(DataError, match=r"expected persona:<behaviour>"):
        sd.load_dataset("persona")
