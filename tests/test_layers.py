"""hf-arith's layers point one way (docs/DESIGN.md): every module imports only its own layer and the
layers below it, no import runs in a circle, and imports sit at module level unless they defer a
heavy optional library. Read from the source with `ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hf_arith"

# Bottom to top; a module may import from its own layer and any layer below it.
LAYERS = [
    {"errors", "atomic", "dataclass_yaml", "model_files", "plotting", "modeling"},  # foundations, and the Hub code
    {"tasks"},
    {"tokenization"},
    {"data"},
    {"evaluation"},
    {"training"},
    {"hub", "convert"},
    {"cli", "__main__"},
]
# Imports inside a function are for libraries heavy to import and needed by one path only.
DEFERRED_OK = {"matplotlib", "py3langid", "pydoc_data", "deepspeed", "tensorboard"}
# The CLI imports each subcommand's library when that subcommand runs, so `hf-arith --help` and
# argument errors answer without importing torch.
DEFERRING_MODULES = {"hf_arith.cli"}


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "metrics" in path.relative_to(PACKAGE).parts:  # an `evaluate` module folder, loaded by path
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((ROOT / "modeling").glob("*.py")):  # installed as hf_arith.modeling
        name = "hf_arith.modeling" + ("" if path.stem == "__init__" else f".{path.stem}")
        files[name] = path
    return files


MODULES = module_files()


def imports_of(name: str, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import of module `name`, relative ones
    resolved; `from package import submodule` counts as importing the submodule."""
    path = modules[name]
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                found.append((target, node.lineno, id(node) in top))
    return found


def internal_imports(name: str, modules: dict[str, Path]) -> list[tuple[str, int, bool]]:
    return [(t, line, top) for t, line, top in imports_of(name, modules) if t in modules and t != "hf_arith"]


def layer_of(module: str) -> int:
    component = module.split(".")[1]
    for index, names in enumerate(LAYERS):
        if component in names:
            return index
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py; add it to LAYERS and docs/DESIGN.md")


def upward_imports(name: str, modules: dict[str, Path]) -> list[str]:
    return [f"{t} (line {line})" for t, line, _ in internal_imports(name, modules) if layer_of(t) > layer_of(name)]


def deferred_imports(name: str, modules: dict[str, Path]) -> list[str]:
    if name in DEFERRING_MODULES:
        return []
    return [f"{t} (line {line})" for t, line, top in imports_of(name, modules)
            if not top and t.split(".")[0] not in DEFERRED_OK]


def find_cycle(modules: dict[str, Path]) -> list[str] | None:
    """One import cycle among `modules` (as a path that returns to its start), or None."""
    graph = {name: sorted({t for t, _, _ in internal_imports(name, modules)}) for name in modules if name != "hf_arith"}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in graph.get(node, []):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, trail + [nxt])):
                return cycle
        state[node] = "done"
        return None

    for name in graph:
        if name not in state and (cycle := visit(name, [name])):
            return cycle
    return None


INTERNAL = [m for m in MODULES if m != "hf_arith"]


@pytest.mark.parametrize("name", INTERNAL)
def test_imports_point_down(name):
    upward = upward_imports(name, MODULES)
    assert not upward, f"{name} (layer {layer_of(name)}) imports upward: {upward}"


@pytest.mark.parametrize("name", INTERNAL)
def test_imports_at_module_level(name):
    deferred = deferred_imports(name, MODULES)
    assert not deferred, (f"{name} imports inside functions: {deferred}; import at module level "
                          f"(deferring is for heavy optional libraries: {sorted(DEFERRED_OK)})")


def test_no_import_cycle():
    cycle = find_cycle(MODULES)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name", [m for m in INTERNAL if m.startswith("hf_arith.modeling")])
def test_modeling_imports_nothing_of_hf_arith(name):
    """modeling/ travels to the Hub: it may import only its sibling files (relative imports)."""
    source = ast.parse(MODULES[name].read_text())
    absolute = [n.module for n in ast.walk(source) if isinstance(n, ast.ImportFrom) and not n.level
                and (n.module or "").startswith("hf_arith")]
    absolute += [a.name for n in ast.walk(source) if isinstance(n, ast.Import) for a in n.names
                 if a.name.startswith("hf_arith")]
    assert not absolute, f"{name} imports {absolute}; use `from .sibling import ...`"


def test_checks_find_what_they_look_for(tmp_path):
    """Not vacuous: in a made-up package an upward import, a deferred import and a cycle are found."""
    (tmp_path / "x.py").write_text("from hf_arith.training.y import f\n")
    (tmp_path / "y.py").write_text("def f():\n    from hf_arith.tasks.x import g\n")
    fake = {"hf_arith.tasks.x": tmp_path / "x.py", "hf_arith.training.y": tmp_path / "y.py"}
    assert upward_imports("hf_arith.tasks.x", fake) == ["hf_arith.training.y (line 1)"]
    assert deferred_imports("hf_arith.training.y", fake) == ["hf_arith.tasks.x (line 2)"]
    assert find_cycle(fake) == ["hf_arith.tasks.x", "hf_arith.training.y", "hf_arith.tasks.x"]
