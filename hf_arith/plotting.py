"""PNG figures for files, never a screen: the display-free backend chosen in one place, and a save
that replaces the file in one step (see `atomic`), so a killed run never leaves half an image.

matplotlib is imported on first use: most commands draw nothing, and it is slow to import.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> plt = pyplot()
    >>> fig, ax = plt.subplots()
    >>> _ = ax.plot([1, 2, 3])
    >>> save_png(fig, Path(tempfile.mkdtemp()) / "plots" / "line.png").name
    'line.png'
"""

from __future__ import annotations

import os
from pathlib import Path

from .atomic import replaced_atomically


def pyplot():
    """`matplotlib.pyplot` on the Agg backend (files only: works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Writes the matplotlib figure `fig` to `path` as a PNG of `dpi` dots per inch, atomically
    (missing parent folders are made), closes the figure and returns `path` as a `Path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    pyplot().close(fig)
    return path


__all__ = ["pyplot", "save_png"]
