"""Every `>>>` example in the docstrings of `hf_arith` and of `modeling/` runs here, so that an
example cannot drift from what the code does. One test per docstring, named after it
(`-k hf_arith.convert.convert` runs one).

The modules are imported by their installed names (`modeling/` as `hf_arith.modeling`, which its
relative imports need) rather than collected as files by `--doctest-modules`, which would import
`modeling/` a second time as a top-level package, and would have to be kept out of a `.venv/`
inside the clone. The `evaluate` metric folder is no package, so its module is loaded by path.

Examples run from the repository root, as the README's commands do, so that they may name files of
the checkout (`recipes/...`); whatever they write goes to temporary folders they make themselves.
"""

from __future__ import annotations

import doctest
import functools
import importlib
import importlib.util
import pkgutil
import tempfile
from pathlib import Path

import pytest

import hf_arith
import hf_arith.modeling
from hf_arith.metrics import ARITHMETIC_EXACT_MATCH

REPO = Path(__file__).resolve().parents[1]

MOVING = ()

# `...` stands for output an example leaves out (temporary paths, error message tails); line breaks
# in long reprs do not count.
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules():
    """All modules of the package, `hf_arith.modeling` included (in an editable install it is
    not below `hf_arith/` on disk), and the metric module, loaded from its file."""
    names = {"hf_arith", "hf_arith.modeling"}
    for package in (hf_arith, hf_arith.modeling):
        names.update(info.name for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."))
    found = [importlib.import_module(name) for name in sorted(names)]
    path = Path(ARITHMETIC_EXACT_MATCH) / "arithmetic_exact_match.py"
    spec = importlib.util.spec_from_file_location("arithmetic_exact_match", path)
    metric = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(metric)
    return found + [metric]


def docstring_examples():
    finder = doctest.DocTestFinder(exclude_empty=True)
    moving = pytest.mark.skip(reason="module moving with issue 12 (MOVING)")
    for module in modules():
        for test in sorted((t for t in finder.find(module, module.__name__) if t.examples), key=lambda t: t.name):
            yield pytest.param(test, id=test.name, marks=[moving] if test.name.startswith(MOVING) else [])


@functools.cache
def import_noisy_modules() -> None:
    """DeepSpeed, which `save_pretrained` imports when it is installed, prints the accelerator it
    picked on stdout when first imported; imported before an example runs, that line is not taken
    for the example's output."""
    if importlib.util.find_spec("deepspeed") is not None:
        importlib.import_module("deepspeed")


@pytest.mark.parametrize("test", list(docstring_examples()))
def test_docstring_examples(test, monkeypatch, tmp_path):
    import_noisy_modules()
    monkeypatch.chdir(REPO)
    # The folders examples make with `tempfile` go below pytest's own, which it cleans up.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = set(REPO.iterdir())
    # A fresh copy of the module's globals for each run: examples assign names.
    test = doctest.DocTest(test.examples, dict(test.globs), test.name, test.filename, test.lineno, test.docstring)
    report = []
    result = doctest.DocTestRunner(optionflags=FLAGS).run(test, out=report.append, clear_globs=True)
    if result.failed:
        pytest.fail("".join(report), pytrace=False)
    written = sorted(p.name for p in set(REPO.iterdir()) - before)
    assert not written, f"the example wrote {written} into the checkout; write to a tempfile folder instead"
