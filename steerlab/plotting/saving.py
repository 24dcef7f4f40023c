"""`save_figure`: one call writes a figure as png and pdf into the figures folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from matplotlib.figure import Figure

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

__all__ = ["FIGURES_ENV", "save_figure"]

FIGURES_ENV = "STEERLAB_FIGURES"
"""Environment variable naming the default folder of `save_figure`."""


def save_figure(fig: Figure, name: str, folder: str | os.PathLike | None = None) -> list[Path]:
    """Write ``fig`` as ``<folder>/<name>.png`` (150 dpi) and ``<folder>/<name>.pdf``.

    Args:
        fig: The figure (e.g. ``ax.figure``).
        name: File stem, without extension or folders, e.g. ``"fig1_caa_layers"``.
        folder: Target folder; default ``$STEERLAB_FIGURES`` if set, else ``figures/`` under the
            current directory. Created if missing.

    Returns:
        The two paths written, png first.

    Example:
        >>> ax = plot_steerability(pd.DataFrame({"slope": [0.5, -0.1]}))
        >>> paths = save_figure(ax.figure, "steerability", folder=tempfile.mkdtemp())  # doctest: +SKIP
        >>> [p.suffix for p in paths]  # doctest: +SKIP
        ['.png', '.pdf']
    """
    if not isinstance(fig, Figure):
        raise SteerlabError(f"save_figure needs a matplotlib Figure, got {type(fig).__name__}; pass ax.figure")
    if not name or Path(name).name != name or name in (".", ".."):
        raise SteerlabError(
            f"figure name {name!r} must be a plain file stem like 'fig1_layers'; pass folder= for the folder"
        )
    if Path(name).suffix.lower() in (".png", ".pdf"):
        raise SteerlabError(
            f"figure name {name!r} has an extension; give the stem only, both .png and .pdf are written"
        )
    if folder is None:
        folder = os.environ.get(FIGURES_ENV) or Path.cwd() / "figures"
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    logger.info("saved figure %s (png, pdf)", out / name)
    return paths
