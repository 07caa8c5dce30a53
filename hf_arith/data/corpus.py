"""The built-in corpus: English text that ships with CPython, so that `builtin` needs no download.

Two parts, each usable as a path in a recipe's `data.prepare.sources[].paths` and in
`hf-arith tokenizer train`; `builtin` means both:

- `builtin:pydoc`: `pydoc_data.topics.topics`, the Python documentation topics that `help()` shows
  (the language reference and library chapters on statements, types, operators...), one document
  per topic: 79 documents, about 465k characters on CPython 3.11.
- `builtin:docstrings`: the docstrings of the pure-Python standard library, read with `ast` from
  the `.py` files under `sysconfig.get_paths()["stdlib"]` (nothing is imported; tests, demos,
  IDLE and bundled packages are left out), one document per module: the module docstring, then
  each class's and function's docstring under its qualified name. 490 documents and 1.7M
  characters on CPython 3.11.

The text depends on the Python version; `describe()` says which, and the manifest records it.

Example:
    >>> from hf_arith.data.corpus import builtin_documents
    >>> docs = builtin_documents("builtin:pydoc")  # one document per help() topic, in name order
    >>> docs[0]["id"], sorted(docs[0])
    ('pydoc/assert', ['id', 'text'])
"""

from __future__ import annotations

import ast
import functools
import platform
import sysconfig
from pathlib import Path

PARTS = ("pydoc", "docstrings")
# Folders of the standard library that hold tests, demos, GUIs or vendored packages, not library docs.
_SKIPPED_DIRS = {"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3", "ensurepip", "site-packages",
                 "dist-packages", "__pycache__", "venv", "tkinter", "pydoc_data"}


def is_builtin(path: str) -> bool:
    """Whether a corpus path names the built-in corpus (`builtin`, `builtin:pydoc`, `builtin:docstrings`).

    Example:
        >>> is_builtin("builtin:pydoc"), is_builtin("notes.txt")
        (True, False)
    """
    return path == "builtin" or path.startswith("builtin:")


def builtin_parts(path: str) -> tuple[str, ...]:
    """The parts a built-in path names; `ValueError` naming the valid ones otherwise.

    Example:
        >>> builtin_parts("builtin")
        ('pydoc', 'docstrings')
    """
    if path == "builtin":
        return PARTS
    part = path.partition(":")[2]
    if part not in PARTS:
        raise ValueError(f"unknown built-in corpus {path!r}; use builtin, " + ", ".join(f"builtin:{p}" for p in PARTS))
    return (part,)


def builtin_documents(path: str = "builtin") -> list[dict]:
    """The documents of a built-in corpus path, as `{"id", "text"}` rows in a fixed order.

    Example:
        >>> builtin_documents("builtin:pydoc")[0]["id"]
        'pydoc/assert'

    `builtin:docstrings` parses the whole standard library, which takes seconds::

        builtin_documents("builtin:docstrings")[0]["id"]  # "docstrings/__future__"
    """
    rows = []
    for part in builtin_parts(path):
        rows += _pydoc() if part == "pydoc" else _docstrings()
    return [dict(row) for row in rows]


def describe(path: str = "builtin") -> str:
    """Where a built-in corpus comes from, for the manifest.

    Example:
        >>> describe("builtin:pydoc")  # then the Python version, e.g. 3.11.7
        'pydoc_data.topics of CPython 3...'
    """
    where = {"pydoc": "pydoc_data.topics", "docstrings": "standard-library docstrings (ast)"}
    parts = " + ".join(where[p] for p in builtin_parts(path))
    return f"{parts} of {platform.python_implementation()} {platform.python_version()}"


@functools.lru_cache(maxsize=1)
def _pydoc() -> tuple[dict, ...]:
    from pydoc_data.topics import topics

    return tuple({"id": f"pydoc/{name}", "text": text.strip()} for name, text in sorted(topics.items()))


@functools.lru_cache(maxsize=1)
def _docstrings() -> tuple[dict, ...]:
    root = Path(sysconfig.get_paths()["stdlib"])
    rows = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if any(part in _SKIPPED_DIRS or part.startswith("test") for part in relative.parts):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        text = _module_docstrings(path, module)
        if text:
            rows.append({"id": f"docstrings/{module}", "text": text})
    return tuple(rows)


def _module_docstrings(path: Path, module: str) -> str:
    """The module's docstrings as one document: the module's first, then `qualified.name:` and
    each class's and function's, in source order."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):  # a few stdlib files are deliberately broken
        return ""
    sections = []
    if doc := ast.get_docstring(tree):
        sections.append(doc)

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}.{child.name}"
                if doc := ast.get_docstring(child):
                    sections.append(f"{name}:\n{doc}")
                visit(child, name)

    visit(tree, module)
    return "\n\n".join(sections).strip()


__all__ = ["PARTS", "builtin_documents", "builtin_parts", "describe", "is_builtin"]
