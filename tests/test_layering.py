"""The import graph of `steerlab` follows one layer order: no module imports a module of a higher layer.

Every module under ``steerlab/`` is parsed with `ast`; every ``steerlab`` import it makes, at module level
or inside a function, is checked against `LAYERS` below. A module may import its own layer and any layer
below it. Imports inside ``if TYPE_CHECKING:`` are for annotations only and are not checked; imports by a
computed name (``importlib.import_module(f"...")``, used by the lazy ``__init__`` files) are not seen.

Layers, bottom to top:

| layer | modules                          | why there                                                        |
|-------|----------------------------------|------------------------------------------------------------------|
| 0     | errors, sites, stats, caching,   | no steerlab dependency: the error type, the values every module  |
|       | claims, memory                   | passes (`Site`, `Positions`, `Edit`, `Batch`, `Prefix`), tests   |
|       |                                  | and intervals, the notebook cache, shared sweep-folder claims,   |
|       |                                  | memory settings and the out-of-memory backoff                    |
| 1     | data                             | records and datasets                                             |
| 2     | prompts, positions               | renders records into model inputs; `mcq_pairs` builds            |
|       |                                  | `ContrastPair`s, so it sits right above data (data renders none);|
|       |                                  | positions finds the chat template's spans in rendered prompts    |
| 3     | activations                      | runs a backend over records and reads activations                |
| 4     | methods                          | directions from activations, tensors in and out. BiPO trains     |
|       |                                  | through the model: it builds `Edit`s from `steerlab.sites` and   |
|       |                                  | calls the backend it is given, so it imports no backend          |
| 5     | vectors, provenance, extraction  | `SteeringVector` and its `Provenance`, and extraction:           |
|       |                                  | directions -> vectors with                                       |
|       |                                  | provenance (`pas_vector` is here, so methods stay below vectors) |
| 6     | interventions                    | vectors -> `Edit`s                                               |
| 7     | backends, models                 | run edits on a model; `models` loads a backend                   |
| 8     | metrics                          | measure an (edited) backend; `text_nll` is the one token loss    |
| 9     | tasks                            | prepared evaluations; `TextLoglikTask` uses `metrics.text_nll`   |
| 10    | sweeps, effects                  | grids of task evaluations -> tidy DataFrame; effects reads them  |
|       |                                  | (intervals, random bands, per-label effects, MDE, verdicts)      |
| 11    | robustness, sae, orientation,    | analyses built on sweeps, metrics and methods -> DataFrames; the |
|       | protocol                         | evaluation protocol (orient, choose on validation, test)         |
| 12    | plotting                         | draws those frames (the CAE sample-size plot evaluates           |
|       |                                  | `robustness.sample_size.saturation_curve`, so it is above them)  |
| 13    | pipelines, agents, cli,          | applications: the paper pipelines and their agents, the command |
|       | notebook_runner, testing,        | line, the notebook runner, the tiny test models, and the lazy    |
|       | steerlab (``__init__``),         | top-level package                                                |
|       | __main__                         |                                                                  |

This is the data flow of the issue that asked for the check, ``data -> activations -> methods ->
vectors -> interventions -> backends -> tasks/metrics -> sweeps -> plotting`` (metrics below tasks,
since a task computes metrics), with the value types and tools at the bottom and the applications on
top. Modules below `backends` take a backend as an argument and use it through its methods; they
import `Backend` only under ``if TYPE_CHECKING:``. A new module fails `test_every_module_has_a_layer`
until it is placed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "steerlab"

LAYERS: list[tuple[str, ...]] = [
    ("steerlab.errors", "steerlab.sites", "steerlab.stats", "steerlab.caching", "steerlab.power", "steerlab.verdicts",
     "steerlab.claims", "steerlab.memory"),
    ("steerlab.data",),
    ("steerlab.prompts", "steerlab.positions"),
    ("steerlab.activations", "steerlab.scale"),
    ("steerlab.methods",),
    ("steerlab.vectors", "steerlab.provenance", "steerlab.extraction", "steerlab.controls"),
    ("steerlab.interventions",),
    ("steerlab.backends", "steerlab.models"),
    ("steerlab.metrics",),
    ("steerlab.tasks",),
    ("steerlab.sweeps", "steerlab.effects"),
    ("steerlab.robustness", "steerlab.sae", "steerlab.orientation", "steerlab.protocol",
     "steerlab.positive_controls"),
    ("steerlab.plotting",),
    ("steerlab.pipelines", "steerlab.agents", "steerlab.scorers", "steerlab.cli", "steerlab.notebook_runner",
     "steerlab.notebook", "steerlab.testing", "steerlab", "steerlab.__main__"),
]  # fmt: skip


def layer_of(module: str) -> int | None:
    """The layer of ``module``: that of the longest name in `LAYERS` equal to it or a package above it
    (``steerlab`` itself names only the top-level ``__init__``, not everything under it)."""
    best, layer = "", None
    for index, names in enumerate(LAYERS):
        for name in names:
            below = name != "steerlab" and module.startswith(name + ".")
            if (module == name or below) and len(name) > len(best):
                best, layer = name, index
    return layer


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[str, bool]]:
    """``{module name: (source, is_package)}`` for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join(parts)] = (path.read_text(), is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def steerlab_imports(source: str, module: str, is_package: bool, known: set[str]) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every ``steerlab`` import in ``source``, at any depth, except
    inside ``if TYPE_CHECKING:``. ``from steerlab.x import y`` counts as importing ``steerlab.x.y``
    when that is a module, else ``steerlab.x``; relative imports are resolved against ``module``."""
    found: list[tuple[str, int]] = []
    package = module if is_package else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "steerlab")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "steerlab":
                for alias in node.names:
                    child = f"{base}.{alias.name}"
                    found.append((child if child in known else base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """One line per import that goes up the layer order, or per module that has no layer."""
    known = set(sources)
    problems = []
    for module, (source, is_package) in sources.items():
        own = layer_of(module)
        if own is None:
            problems.append(f"{module} has no layer; place it in LAYERS (tests/test_layering.py)")
            continue
        for target, line in dict.fromkeys(steerlab_imports(source, module, is_package, known)):
            other = layer_of(target)
            if other is not None and other > own:
                problems.append(f"{module}:{line} imports {target} (layer {other}) from layer {own}")
    return problems


# ------------------------------------------------------------------------------------------ the package


def test_every_module_has_a_layer():
    unplaced = [m for m in package_sources() if layer_of(m) is None]
    assert unplaced == [], f"place these modules in LAYERS: {unplaced}"


def test_no_import_goes_up_the_layers():
    problems = violations(package_sources())
    assert problems == [], "imports against the layer order:\n" + "\n".join(problems)


def test_the_package_is_what_the_layers_name():
    """Every name in LAYERS is a module or package that exists (a renamed module must be renamed here)."""
    modules = set(package_sources())
    missing = [name for names in LAYERS for name in names if name not in modules]
    assert missing == []


# ------------------------------------------------------------------------------------------ the checker


def fake(**sources: str) -> dict[str, tuple[str, bool]]:
    """Sources keyed by module name (``__`` for dots), with the real package's other modules known."""
    out = {name: ("", False) for name in package_sources()}
    out.update({name.replace("__", "."): (text, False) for name, text in sources.items()})
    return out


@pytest.mark.parametrize(
    "source",
    [
        "from steerlab.methods.linear import MeanDiffAccumulator",  # module level
        "def f():\n    from steerlab.methods import linear\n    return linear",  # inside a function
        "import steerlab.methods.linear",
        "from steerlab import methods",
        "class A:\n    def f(self):\n        if True:\n            from steerlab.sweeps import sweep",
        "from .methods.linear import mean_diff",  # relative
    ],
)
def test_an_upward_import_is_caught(source):
    problems = violations(fake(steerlab__activations=source))
    assert len(problems) == 1 and problems[0].startswith("steerlab.activations:") and "from layer 3" in problems[0]


@pytest.mark.parametrize(
    "source",
    [
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from steerlab.backends.base import Backend",
        "import typing\nif typing.TYPE_CHECKING:\n    from steerlab.sweeps import sweep",
        "from steerlab.prompts import encode\nfrom steerlab.sites import Site\nfrom steerlab.data import ContrastPair",
        "from steerlab.activations import collect_pairs",  # the same layer
        "import numpy as np\nfrom torch import Tensor",
    ],
)
def test_downward_and_annotation_imports_pass(source):
    assert violations(fake(steerlab__activations=source)) == []


def test_the_else_branch_of_type_checking_is_checked():
    source = "if TYPE_CHECKING:\n    pass\nelse:\n    from steerlab.sweeps import sweep"
    assert len(violations(fake(steerlab__activations=source))) == 1


def test_a_module_without_a_layer_is_reported():
    assert violations({"steerlab.newthing": ("", False)}) == [
        "steerlab.newthing has no layer; place it in LAYERS (tests/test_layering.py)"
    ]


def test_layer_of_takes_the_longest_match():
    assert layer_of("steerlab") == layer_of("steerlab.cli.sweep") == len(LAYERS) - 1
    assert layer_of("steerlab.sites") == 0 and layer_of("steerlab.sweeps") == 10
    assert layer_of("steerlab.methods.bipo") == 4 and layer_of("steerlab.backends.tl_backend") == 7
    assert layer_of("numpy") is None
