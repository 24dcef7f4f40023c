"""The shared start of a numbered notebook: its folders, its model (loaded on first use), layers, timings.

A notebook's first code cell, tagged ``parameters``, holds ``SMOKE``, ``FIGURES``, ``MODEL``, ``DEVICE``,
``DTYPE`` and ``BATCH_SIZE`` (`steerlab.notebook_runner` injects new values after it); the next cell turns
them into a `Run`, and every setting that depends on the model derives from it:

    >>> run = start("02_caa_layer_sweep", smoke=SMOKE, figures=FIGURES, model=MODEL, device=DEVICE,
    ...             dtype=DTYPE, batch_size=BATCH_SIZE)                                  # doctest: +SKIP
    >>> LAYER = run.layer(0.4)       # 40% of the depth: layer 12 of SmolLM2-135M's 30, 7 of Gemma-3-270M's 18
    >>> with run.timed("vectors"):   # doctest: +SKIP
    ...     acts = cached(run.runs / "acts.pt", lambda: collect_pairs(run.lm, pairs, [sl.Site(LAYER)]))
    >>> save_figure(fig, "02_caa_layer_sweep", run.figures)                              # doctest: +SKIP
    >>> run.timings_table().round(0)                                                     # doctest: +SKIP

* ``run.runs`` holds a notebook's cached intermediate results: ``<figures>/../runs/<model>/<notebook>`` in full
  mode, so a rerun with another model never reads SmolLM2's caches, and a fresh temporary folder in smoke mode.
* ``run.lm`` loads the model on first use (a rerun served from the caches never loads it); ``run.n_layers`` and
  ``run.d_model`` come from the model's config without loading it.
* Layers are fractions of the depth (`Run.layer`) and widths multiples of ``d_model``, chosen so that the
  embedded SmolLM2-135M-Instruct (30 layers, d_model 576) gets the settings its committed results used.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steerlab.errors import SteerlabError
from steerlab.models import model_slug

if TYPE_CHECKING:
    import pandas as pd

    from steerlab.backends.base import Backend

DATA = Path(__file__).resolve().parents[1] / "data"  # the repository's data/ folder (see data/README.md)


def model_label(name: str | None) -> str:
    """A display name for titles: ``"SmolLM2-135M-Instruct"`` and ``"Gemma-3-270M"`` for the embedded models,
    a local folder's name, or the hub name as given."""
    from steerlab.models import EMBEDDED, resolve_name

    resolved = resolve_name(name)
    if resolved in EMBEDDED:
        return EMBEDDED[resolved].description.split()[0]
    folder = Path(resolved).expanduser()
    return folder.resolve().name if folder.is_dir() else resolved


@dataclass
class Run:
    """One execution of a notebook: settings, folders, the model and stage timings (make it with `start`)."""

    name: str  # the notebook's name, e.g. "02_caa_layer_sweep"
    smoke: bool  # a quick run (few items, few layers) for CI
    figures: Path  # figures and result tables
    runs: Path  # cached intermediate results (a temporary folder in smoke mode)
    model: str | None = None  # None: the embedded SmolLM2-135M-Instruct; else a name `steerlab.load_model` takes
    device: str | None = None  # None: cuda, then mps, then cpu
    dtype: str | None = None  # None: fp32 on CPU, bf16 on accelerators
    batch_size: int | None = None  # None: the notebook's own batch sizes; an int caps them (see `batch`)
    backend: str = "nnsight"
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds (see `timed`)
    started: float = field(default_factory=time.perf_counter)
    _lm: Backend | None = field(default=None, init=False, repr=False)
    _config: Any = field(default=None, init=False, repr=False)

    @property
    def model_name(self) -> str:
        """The model's resolved name (the one `steerlab.load_model` gives ``lm.name``)."""
        from steerlab.models import resolve_name

        return resolve_name(self.model)

    @property
    def slug(self) -> str:
        """The model's name as a folder name (see `model_slug`)."""
        return model_slug(self.model)

    @property
    def label(self) -> str:
        """The model's display name, for titles (see `model_label`)."""
        return model_label(self.model)

    @property
    def data(self) -> Path:
        """The repository's ``data/`` folder: hand-written inputs and caches of the notebooks."""
        if not DATA.is_dir():
            raise SteerlabError(
                f"the data folder {DATA} is missing; it ships with a clone of the steerlab repository, not with "
                "the installed package: run the notebooks from a clone (git clone ...; pip install -e .)"
            )
        return DATA

    @property
    def loaded(self) -> bool:
        """Whether ``lm`` has been loaded."""
        return self._lm is not None

    @property
    def lm(self) -> Backend:
        """The model, loaded on first use (the time goes to ``timings["load model"]``)."""
        if self._lm is None:
            with self.timed("load model"):
                self._lm = self.load()
        return self._lm

    def load(self, name: str | None = None, *, backend: str | None = None) -> Backend:
        """A new copy of a model on the run's device and dtype (``name=None``: the run's own model)."""
        from steerlab.models import load_model

        return load_model(self.model if name is None else name, backend=backend or self.backend, device=self.device,
                          dtype=self.dtype)  # fmt: skip

    def _text_config(self) -> Any:
        if self._config is None:
            from transformers import AutoConfig

            from steerlab.models import local_folder

            self._config = AutoConfig.from_pretrained(str(local_folder(self.model))).get_text_config()
        return self._config

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks (from the loaded model, else from its config: nothing is loaded)."""
        return self._lm.n_layers if self._lm is not None else int(self._text_config().num_hidden_layers)

    @property
    def d_model(self) -> int:
        """Width of the residual stream (from the loaded model, else from its config)."""
        return self._lm.d_model if self._lm is not None else int(self._text_config().hidden_size)

    def layer(self, fraction: float) -> int:
        """The layer at ``fraction`` of the depth: ``round(fraction * n_layers)``, at most the last layer.

        On SmolLM2-135M's 30 layers, 0.2 / 0.4 / 0.6 / 0.8 give 6 / 12 / 18 / 24, and two decimals name any
        other layer (0.27 -> 8, 0.33 -> 10, 0.47 -> 14, 0.53 -> 16, 0.67 -> 20).
        """
        if not 0.0 <= fraction <= 1.0:
            raise SteerlabError(
                f"layer fraction {fraction!r} is outside [0, 1]; give a fraction of the depth (0.4: 40% of the "
                f"{self.n_layers} layers of {self.model_name})"
            )
        return min(round(fraction * self.n_layers), self.n_layers - 1)

    def layers(self, *fractions: float) -> tuple[int, ...]:
        """`layer` of each fraction, in the order given (duplicates kept)."""
        return tuple(self.layer(f) for f in fractions)

    def batch(self, size: int) -> int:
        """A batch size the notebook chose, capped at ``BATCH_SIZE`` when that is set."""
        return size if self.batch_size is None else max(1, min(size, self.batch_size))

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[Callable[[], float]]:
        """Add the seconds spent in the block to ``timings[stage]``; yields a clock of the seconds so far.

            >>> with run.timed("sweep") as clock:                    # doctest: +SKIP
            ...     for b in behaviours:
            ...         ...
            ...         print(f"{b} done at {clock():.0f} s")
        """
        t0 = time.perf_counter()
        self.timings.setdefault(stage, 0.0)  # stages keep the order they started in

        def clock() -> float:
            return time.perf_counter() - t0

        try:
            yield clock
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + clock()

    def timings_table(self) -> pd.DataFrame:
        """Seconds per stage, plus the total since `start`, as a one-column frame (``seconds``)."""
        import pandas as pd

        seconds = {**self.timings, "total": time.perf_counter() - self.started}
        return pd.Series(seconds, name="seconds").to_frame()

    def __str__(self) -> str:
        model = repr(self._lm) if self._lm is not None else f"{self.model_name} (not loaded yet)"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
        runs = os.path.relpath(self.runs) if not self.smoke else str(self.runs)
        return f"{model} | {'smoke' if self.smoke else 'full'} run | runs folder: {runs} | load average: {load}"


def start(
    name: str,
    *,
    smoke: bool,
    figures: str | os.PathLike,
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    batch_size: int | None = None,
    backend: str = "nnsight",
    runs: str | None = None,
    threads: int | None = None,
) -> Run:
    """Start a notebook run: make its folders and set torch's CPU threads; the model loads on first use.

    Args:
        name: The notebook's name (``"02_caa_layer_sweep"``).
        smoke, figures, model, device, dtype, batch_size: The notebook's parameters (see `Run`).
        backend: The backend of ``run.lm`` (``"nnsight"`` or ``"tl"``).
        runs: The runs sub-folder, when notebooks share one (02-05 share ``"pas"`` so they reuse each other's
            cached runs); default ``name``.
        threads: torch's CPU threads; default half the cores (at least one). On a machine shared with other
            jobs, more OpenMP threads than free cores make torch many times slower.

    Raises:
        SteerlabError: If ``name`` is not a plain name or ``batch_size`` is not a positive integer.
    """
    import torch

    for what, value in (("notebook name", name), ("runs folder name", runs or name)):
        if not value or Path(value).name != value or value in (".", ".."):
            raise SteerlabError(f"{what} {value!r} must be a plain name like '02_caa_layer_sweep', not a path")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise SteerlabError(f"BATCH_SIZE {batch_size!r} must be a positive integer, or None for the notebook's own")
    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    if smoke:
        folder = Path(tempfile.mkdtemp(prefix=f"steerlab-{name}-"))
    else:
        folder = figures.resolve().parent / "runs" / model_slug(model) / (runs or name)
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) // 2))
    return Run(name, bool(smoke), figures, folder, model, device, dtype, batch_size, backend)
