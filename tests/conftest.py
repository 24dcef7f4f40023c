"""Shared fixtures: tiny random models (unit tier) and the real embedded model (slow tier).

Tests that take a ``backend_kind`` argument run once per backend; choose with
``pytest --backend tl`` or ``--backend nnsight`` (default: both). ``pytest --device cuda`` builds the tiny
models (and loads the real one) on that device instead of the CPU, so the same unit tests exercise a GPU;
tests read it from the ``device`` fixture.
"""

import os
import warnings

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_FP16")  # bf16 on this CPU: see ENVIRONMENT.md

import pytest  # noqa: E402

warnings.filterwarnings("ignore", message=".*deprecated.*")

BACKENDS = ("tl", "nnsight")


def pytest_addoption(parser):
    parser.addoption("--backend", default=",".join(BACKENDS), help="comma-separated backends to test: tl,nnsight")
    parser.addoption("--device", default="cpu", help="device for the models under test: cpu (default), cuda, cuda:1")


def pytest_generate_tests(metafunc):
    if "backend_kind" in metafunc.fixturenames:
        kinds = [k for k in metafunc.config.getoption("--backend").split(",") if k]
        metafunc.parametrize("backend_kind", kinds)


@pytest.fixture(scope="session")
def device(pytestconfig):
    """The device the models under test live on (``--device``, default cpu)."""
    import torch

    return torch.device(pytestconfig.getoption("--device"))


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    from steerlab.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"))


_loaded: dict = {}


def _cached(key, make):
    if key not in _loaded:
        _loaded[key] = make()
    return _loaded[key]


@pytest.fixture
def tiny(backend_kind, tiny_folder, device):
    """A 2-layer random Llama (d_model 32) behind the backend under test."""
    from steerlab.testing import tiny_backend

    return _cached(("tiny", backend_kind), lambda: tiny_backend(backend_kind, tiny_folder, device))


@pytest.fixture
def tiny_pair(tiny_folder, device):
    """The tiny model behind both backends."""
    from steerlab.testing import tiny_backend

    return tuple(_cached(("tiny", k), lambda k=k: tiny_backend(k, tiny_folder, device)) for k in BACKENDS)


@pytest.fixture
def real(backend_kind, device):
    """SmolLM2-135M-Instruct (the embedded model) behind the backend under test."""
    from steerlab.models import load_model

    return _cached(("real", backend_kind), lambda: load_model(backend=backend_kind, device=device, dtype="float32"))


@pytest.fixture
def real_pair(device):
    from steerlab.models import load_model

    return tuple(
        _cached(("real", k), lambda k=k: load_model(backend=k, device=device, dtype="float32")) for k in BACKENDS
    )
