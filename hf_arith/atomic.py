"""Files replaced in one step: a run killed at any moment leaves the old file or the new one,
never half of one (the kill-anywhere guarantee of checkpoints, metrics, plots and recipes).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hf_arith.atomic import replaced_atomically, write_text_atomically
    >>> run = Path(tempfile.mkdtemp())
    >>> write_text_atomically(run / "recipe.yaml", "seed: 0\\n")
    >>> import torch
    >>> with replaced_atomically(run / "state.pt") as tmp:  # for writers that take a path
    ...     torch.save({"step": 100}, tmp)
    >>> sorted(p.name for p in run.iterdir())  # no temporary file left behind
    ['recipe.yaml', 'state.pt']
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
        >>> import tempfile
        >>> import numpy as np
        >>> path = Path(tempfile.mkdtemp()) / "order.npy"
        >>> with replaced_atomically(path) as tmp:
        ...     with tmp.open("wb") as f:  # a file object: given a name, np.save would append ".npy" to it
        ...         np.save(f, np.arange(4))
        >>> np.load(path)
        array([0, 1, 2, 3])
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    yield tmp
    os.replace(tmp, path)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """`Path(path).write_text(text)`, atomically.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "latest"
        >>> write_text_atomically(path, "step_100\\n")
        >>> path.read_text()
        'step_100\\n'
    """
    with replaced_atomically(path) as tmp:
        tmp.write_text(text)
