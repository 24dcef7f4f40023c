"""Shared fixtures: tiny random models (unit tier) and the real embedded model (slow tier).

Tests that take a ``backend_kind`` argument run once per backend; choose with
``pytest --backend tl`` or ``--backend nnsight`` (default: both). ``pytest --device cuda`` builds the tiny
models (and loads the real one) on that device instead of the CPU, so the same unit tests exercise a GPU;
tests read it from the ``device`` fixture.

A test parametrised by a backend whose package is not installed is skipped (a GPU machine may have nnsight
but not transformer-lens). Tests that compare backends or exercise one backend's own machinery say so with
``@pytest.mark.backends("tl", ...)``: they run only when ``--backend`` selects every backend named and its
package is installed. The ``tiny_pair`` and ``real_pair`` fixtures need both backends in the same way.
"""

import importlib.util
import os
import warnings

os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_FP16")  # bf16 on this CPU: see ENVIRONMENT.md

import pytest  # noqa: E402

warnings.filterwarnings("ignore", message=".*deprecated.*")

BACKENDS = ("tl", "nnsight")
PACKAGES = {"tl": "transformer_lens", "nnsight": "nnsight"}  # the module each backend imports


def pytest_addoption(parser):
    parser.addoption("--backend", default=",".join(BACKENDS), help="comma-separated backends to test: tl,nnsight")
    parser.addoption("--device", default="cpu", help="device for the models under test: cpu (default), cuda, cuda:1")


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*kinds): runs only when --backend selects these backends")


def selected_backends(config) -> list[str]:
    return [k for k in config.getoption("--backend").split(",") if k]


def missing_backends(config, kinds) -> str | None:
    """Why the backends ``kinds`` cannot be tested in this run (``None`` if they can)."""
    left_out = [k for k in kinds if k not in selected_backends(config)]
    if left_out:
        return f"needs backend {left_out[0]!r}, left out by --backend {config.getoption('--backend')}"
    absent = [k for k in kinds if importlib.util.find_spec(PACKAGES[k]) is None]
    if absent:
        return f"needs backend {absent[0]!r}, whose package {PACKAGES[absent[0]]} is not installed"
    return None


def pytest_generate_tests(metafunc):
    if "backend_kind" in metafunc.fixturenames:
        metafunc.parametrize("backend_kind", selected_backends(metafunc.config))


def pytest_collection_modifyitems(config, items):
    for item in items:
        kinds = [k for marker in item.iter_markers("backends") for k in marker.args]
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "backend_kind" in callspec.params:
            kinds.append(callspec.params["backend_kind"])
        reason = missing_backends(config, kinds)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def device(pytestconfig):
    """The device the models under test live on (``--device``, default cpu)."""
    import torch

    dev = torch.device(pytestconfig.getoption("--device"))
    if dev.type == "cuda":
        # Exact oracles compare fp32 results: keep fp32 matmuls in full precision (no TF32; torch's default,
        # which an environment variable or another library could have changed).
        torch.set_float32_matmul_precision("highest")
    return dev


@pytest.fixture(scope="session")
def both_backends(pytestconfig):
    """Skips a test that compares the backends unless both are selected and installed."""
    reason = missing_backends(pytestconfig, BACKENDS)
    if reason:
        pytest.skip(f"compares both backends; {reason}")


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
def tiny_pair(tiny_folder, device, both_backends):
    """The tiny model behind both backends."""
    from steerlab.testing import tiny_backend

    return tuple(_cached(("tiny", k), lambda k=k: tiny_backend(k, tiny_folder, device)) for k in BACKENDS)


@pytest.fixture
def real(backend_kind, device):
    """SmolLM2-135M-Instruct (the embedded model) behind the backend under test."""
    from steerlab.models import load_model

    return _cached(("real", backend_kind), lambda: load_model(backend=backend_kind, device=device, dtype="float32"))


@pytest.fixture
def real_pair(device, both_backends):
    from steerlab.models import load_model

    return tuple(
        _cached(("real", k), lambda k=k: load_model(backend=k, device=device, dtype="float32")) for k in BACKENDS
    )
