"""Installing steerlab: ranges in pyproject.toml, the exact set in constraints.txt, and a wheel that keeps the
torch (and transformers) already installed, e.g. a CUDA build on a GPU machine."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What a GPU machine holds before steerlab arrives (see shared/ENVIRONMENT.md): versions the exact set does not use.
PREINSTALLED = {"torch": "2.11.0+cu130", "transformers": "5.17.0"}
OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|ProxyError")


def requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version
    return pins


def test_pyproject_states_ranges_not_pins():
    pinned = [str(r) for r in requirements() if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"exact pins belong in constraints.txt, not pyproject.toml: {pinned}"
    assert PYPROJECT["project"]["requires-python"] == ">=3.11"  # StrEnum, datetime.UTC; the Makefile looks for 3.11+


def test_the_exact_set_lies_inside_the_stated_ranges():
    """`make setup` installs constraints.txt: each pin must satisfy pyproject's range, or pip would refuse it."""
    pins = constraints()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} has no exact version in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"constraints.txt {name}=={pins[name]} vs {req}"
    assert pins["torch"] == "2.13.0"  # the local CPU wheel; the Makefile reads this line


def build_wheel(out: Path) -> Path:
    """The wheel of this checkout, built by setuptools' PEP 517 hook in a clean copy (no build/ left in the repo)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    shutil.copytree(ROOT / "steerlab", src / "steerlab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    code = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True, text=True, check=True)
    return out / done.stdout.strip().splitlines()[-1]


def env_with(folder: Path, installed: dict[str, str]) -> Path:
    """A throwaway venv (no pip) whose site-packages holds only metadata for ``installed``: enough for pip to
    believe those versions are installed, without downloading them. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    site = next(folder.glob("lib/python3*/site-packages"))
    for name, version in installed.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
        (info / "RECORD").write_text("")
    return folder / "bin" / "python"


def would_install(python: Path, args: list[str], report: Path) -> dict[str, str]:
    """``{name: version}`` that ``pip install ARGS`` would install into ``python``'s environment (dry run)."""
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--dry-run", "--quiet", "--no-input",
           "--report", str(report), *args]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # pip must see the throwaway env only
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 and OFFLINE.search(done.stderr):
        pytest.skip("the package registry is unreachable; pip needs it to resolve the dependencies' metadata")
    assert done.returncode == 0, done.stderr[-3000:]
    items = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


@pytest.mark.slow
def test_installing_the_wheel_keeps_the_torch_already_there(tmp_path):
    """A researcher's environment with a CUDA torch and an older transformers keeps both after `pip install steerlab`.

    Needs the package registry (dependency metadata only; about 30 s). With torch==2.13.0 and transformers==5.23.0
    pinned in pyproject.toml, as before this test existed, the same dry run lists both for installation.
    """
    wheel = build_wheel(tmp_path)
    python = env_with(tmp_path / "env", PREINSTALLED)
    plan = would_install(python, [str(wheel)], tmp_path / "report.json")
    assert plan.get("steerlab") == PYPROJECT["project"]["version"]
    replaced = {name: plan[name] for name in PREINSTALLED if name in plan}
    assert not replaced, f"installing steerlab would replace {replaced} (installed: {PREINSTALLED})"
    assert not [name for name in plan if name.startswith("nvidia-")]
    # The control: the harness does see the fake torch as another version (an exact pin would replace it).
    control = would_install(python, ["torch==2.13.0"], tmp_path / "control.json")
    assert control["torch"].startswith("2.13.0")
