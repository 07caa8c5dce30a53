"""Files replaced in one step: a run killed at any moment leaves the old file or the new one,
never half of one (the kill-anywhere guarantee of checkpoints, metrics, plots and recipes).

Example:
    >>> write_text_atomically(Path("runs/x/recipe.yaml"), "seed: 0\\n")
    >>> with replaced_atomically(Path("runs/x/loss.png")) as tmp:
    ...     fig.savefig(tmp, format="png")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a hidden temporary path beside `path` to write; renamed onto `path` (one atomic
    `os.replace`) once the block completes.

    Example:
        >>> with replaced_atomically("runs/x/order.npy") as tmp:
        ...     np.save(tmp, order)
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    yield tmp
    os.replace(tmp, path)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """`Path(path).write_text(text)`, atomically.

    Example:
        >>> write_text_atomically("runs/x/checkpoints/latest", "step_100\\n")
    """
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)
