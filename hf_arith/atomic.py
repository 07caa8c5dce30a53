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

import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Why a write fails for lack of room: a full disk, a quota, a read-only disk, a file-size limit.
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


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


@contextmanager
def folder_written_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a hidden temporary folder beside `path` to fill; once the block completes, its files
    move into `path` (created if missing), each in one rename. The temporary folder is removed
    whatever happens, so a write that fails (a full disk) leaves `path` as it was, with no empty or
    half-written file in it. A failure for lack of room is raised as an `OSError` naming the file
    under `path` it was writing.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "tokenizer"
        >>> with folder_written_atomically(out) as tmp:
        ...     _ = (tmp / "tokenizer.json").write_text("{}")
        >>> sorted(p.name for p in out.parent.iterdir()), sorted(p.name for p in out.iterdir())
        (['tokenizer'], ['tokenizer.json'])
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a process that was killed
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
        else:  # e.g. a tokenizer trained again into its folder
            for entry in tmp.iterdir():
                os.replace(entry, path / entry.name)
    except Exception as err:
        code = no_room_errno(err)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(_destination(err, tmp, path))) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def no_room_errno(err: BaseException) -> int | None:
    """The errno of a write that failed for lack of room (`NO_ROOM`), else None. Writers built on
    Rust (safetensors, tokenizers) raise their own exception types, with the OS error only in the
    text: "... File too large (os error 27)".

    Example:
        >>> no_room_errno(Exception("I/O error: No space left on device (os error 28)")) == errno.ENOSPC
        True
        >>> no_room_errno(FileNotFoundError(errno.ENOENT, "No such file or directory")) is None
        True
    """
    if isinstance(err, OSError):
        code = err.errno
    else:
        found = re.search(r"\(os error (\d+)\)", str(err))
        code = int(found[1]) if found else None
    return code if code in NO_ROOM else None


def _destination(err: BaseException, tmp: Path, path: Path) -> Path:
    """The file under `path` that the write into `tmp` meant, when the error names it (a copy
    names its destination second), else `path` itself."""
    for name in (getattr(err, "filename2", None), getattr(err, "filename", None)):
        if name and Path(name).is_relative_to(tmp):
            return path / Path(name).relative_to(tmp)
    return path


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
