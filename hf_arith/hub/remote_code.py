"""The check every published folder passes: its Python files may only compute.

Each `.py` may import only `REMOTE_CODE_IMPORTS` and sibling files and use none of the builtins
and library parts that read or write files, run code or reach the network. Written by hand (an
`ast` walk) because no library states this policy for `trust_remote_code` folders.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from hf_arith.errors import HfArithError

# What the published code may import: the model's own libraries, and standard modules without I/O.
# `tokenizers` is a dependency of transformers that the tokenizer file builds on.
REMOTE_CODE_IMPORTS = {"torch", "transformers", "tokenizers", "__future__", "math", "typing", "dataclasses",
                       "functools", "itertools", "collections", "enum", "re", "warnings"}
REMOTE_CODE_BUILTINS = {"open", "exec", "eval", "compile", "__import__", "breakpoint", "input"}
# Parts of the allowed libraries that read or write files or reach the network.
REMOTE_CODE_DENIED = {"torch.load", "torch.save", "torch.hub", "transformers.utils.hub",
                      "transformers.dynamic_module_utils"}


def check_remote_code(folder: str | os.PathLike) -> list[Path]:
    """Every `.py` of `folder` (the code `trust_remote_code=True` runs on a user's machine) may
    import only `REMOTE_CODE_IMPORTS` and sibling files, and use none of `open`, `exec`, `eval`, ..., `torch.load`/`save`, `torch.hub`, transformers' Hub helpers:
    it computes, and touches neither network nor disk. A guard against accidents in our own code
    (it reads the source; it is not a sandbox). Returns the files checked; `HfArithError` names the
    first offence, or a folder that does not exist (checking nothing is not a pass).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "configuration_x.py").write_text("from transformers import PretrainedConfig")
        >>> _ = (folder / "modeling_x.py").write_text("from .configuration_x import *")  # a sibling file
        >>> [p.name for p in check_remote_code(folder)]
        ['configuration_x.py', 'modeling_x.py']
        >>> _ = (folder / "extra.py").write_text("import os")
        >>> check_remote_code(folder)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_arith.errors.HfArithError: extra.py:1: imports os; the code published with a model may import only ...
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise HfArithError(f"{folder}: no such folder; give the folder whose model code is checked")
    files = sorted(folder.rglob("*.py"))
    siblings = {p.stem for p in files}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            problem = _remote_code_problem(node, siblings)
            if problem:
                raise HfArithError(f"{path.name}:{node.lineno}: {problem}; the code published with a model may "
                                   f"import only {', '.join(sorted(REMOTE_CODE_IMPORTS))} and sibling files")
    return files


def _dotted(node: ast.AST) -> str:
    """`torch.hub.load` for the expression `torch.hub.load`; "" for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _denied(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in REMOTE_CODE_DENIED)


def _remote_code_problem(node: ast.AST, siblings: set[str]) -> str | None:
    if isinstance(node, ast.Import):
        bad = [a.name for a in node.names if a.name.split(".")[0] not in REMOTE_CODE_IMPORTS or _denied(a.name)]
        return f"imports {', '.join(bad)}" if bad else None
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: a sibling file of the folder
            return None if (node.module or "").split(".")[0] in siblings else f"imports .{node.module}, not a sibling"
        names = [f"{node.module}.{a.name}" for a in node.names]
        if node.module.split(".")[0] in REMOTE_CODE_IMPORTS:
            names = [n for n in names if _denied(n) or _denied(node.module)]
        return f"imports {', '.join(names)}" if names else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in REMOTE_CODE_BUILTINS:
        return f"calls {node.func.id}()"
    if isinstance(node, ast.Attribute):
        name = _dotted(node)
        if _denied(name):
            return f"uses {name}"
    return None


__all__ = ["REMOTE_CODE_BUILTINS", "REMOTE_CODE_DENIED", "REMOTE_CODE_IMPORTS", "check_remote_code"]
