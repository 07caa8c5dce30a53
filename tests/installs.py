"""hf-arith as others install it, for the checks that must not see this checkout's environment:
clean virtualenvs (`make test-compat`).

A virtualenv gets the pinned CPU torch first, so that pip never pulls a multi-GB CUDA build, and
pip's cache stays on, so that making one again reinstalls from disk.

    python = make_venv(Path("/tmp/env"), "transformers==5.0.0", "pytest")
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH_PIN = os.environ.get("TORCH_PIN", "torch==2.13.0")


def run(cmd, **kwargs):
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(list(map(str, cmd)), check=True, **kwargs)


def make_venv(env: Path, *requirements: str, constraints: Path | None = None) -> Path:
    """A fresh virtualenv at `env` (emptied first) with TORCH_PIN, then `requirements` under the
    pins of `constraints`; returns its python."""
    if env.exists():
        shutil.rmtree(env)
    venv.EnvBuilder(with_pip=True, clear=True).create(env)
    python = env / "bin" / "python"
    pip = [python, "-m", "pip", "install", "-qq", "--disable-pip-version-check"]  # errors only
    run([*pip, TORCH_PIN])
    run([*pip, *(["-c", constraints] if constraints else []), *requirements])
    return python
