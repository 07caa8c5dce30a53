"""Test helpers shared by several test files.

`run_isolated` runs a Python snippet the way a Hub user would: `transformers` installed, but
`hf_arith` not importable, so a saved model folder must carry everything it needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Runs before the snippet. An editable install makes `hf_arith` importable in three ways, each
# undone here: a meta-path finder (setuptools' `__editable___*_finder`), a path hook with its
# placeholder entry on sys.path (editable namespace packages), and the repository's source folders
# on sys.path (a legacy `.pth`/`.egg-link` install, or the working directory).
_PRELUDE = """
import importlib, os, sys
_repo = os.path.realpath({repo!r})

def _editable(obj):
    name = getattr(obj, "__module__", "") or ""
    return "__editable__" in name or "__editable__" in getattr(obj, "__qualname__", "")

def _project_source(entry):
    # The repository's own source folders, not a virtualenv made inside the clone (`.venv/`):
    # its site-packages hold torch and transformers, which the snippet needs.
    path = os.path.realpath(entry or os.getcwd())
    inside = path == _repo or path.startswith(_repo + os.sep)
    return inside and "site-packages" not in path.split(os.sep) and "dist-packages" not in path.split(os.sep)

sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f) and not _editable(type(f))]
sys.path_hooks[:] = [h for h in sys.path_hooks if not _editable(h)]
sys.path[:] = [p for p in sys.path if "__editable__" not in p and not _project_source(p)]
for _name in [m for m in sys.modules if m == "hf_arith" or m.startswith("hf_arith.")]:
    del sys.modules[_name]
sys.path_importer_cache.clear()
importlib.invalidate_caches()
try:
    import hf_arith
except ImportError:
    pass
else:
    raise SystemExit("isolation failed: hf_arith is importable from " + str(hf_arith.__file__))
"""


def run_isolated(code: str, cwd, timeout: float = 180) -> str:
    """Runs `code` in a fresh `python -I` where `import hf_arith` fails (checked before the code
    runs) and returns its stdout; raises `AssertionError` with stderr when it exits non-zero.

    `-I` ignores PYTHONPATH and the user site; the prelude removes the editable install's hooks.
    Remote code is cached in a private `HF_MODULES_CACHE` below `cwd`, and the Hub is offline.

    Example:
        >>> run_isolated("import transformers; print('ok')", tmp_path)
        'ok\\n'
    """
    cwd = Path(cwd)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(
        HF_MODULES_CACHE=tempfile.mkdtemp(prefix="hf_modules_", dir=cwd),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    script = _PRELUDE.format(repo=str(REPO_ROOT)) + "\n" + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(f"isolated snippet failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout
