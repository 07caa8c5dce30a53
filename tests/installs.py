"""hf-arith as others install it, for the checks that must not see this checkout's environment:
clean virtualenvs (`make test-compat`, `make test-wheel`) and the sdist and wheel a release builds
(`tests/test_packaging.py`, `make test-wheel`).

A virtualenv gets the pinned CPU torch first, so that pip never pulls a multi-GB CUDA build, and
pip's cache stays on, so that making one again reinstalls from disk.

    python = make_venv(Path("/tmp/env"), "transformers==5.0.0", "pytest")
    sdist, wheel = build_dists(Path("/tmp/dist"))
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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


def checkout_files() -> list[str]:
    """The files of this checkout that a fresh clone would have, as they are now: tracked or new,
    not ignored, not deleted."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        raise RuntimeError(f"{ROOT} is not a git checkout (the files a clone has are unknown): {listed.stderr.strip()}")
    return [name for name in listed.stdout.split("\0") if name and (ROOT / name).is_file()]


def copy_checkout(dest: Path) -> Path:
    """`checkout_files()` copied to `dest`. Builds start from such a copy because setuptools reuses
    the file list a former build left in the source folder (`hf_arith.egg-info/`), which hides a
    file that a build from a clean clone leaves out."""
    for name in checkout_files():
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    return dest


def build_dists(out: Path) -> tuple[Path, Path]:
    """(sdist, wheel) in `out`, as `python -m build` makes a release: the sdist from a clean copy
    of the checkout, then the wheel from the unpacked sdist."""
    with tempfile.TemporaryDirectory(prefix="hf-arith-src-") as source:
        copy_checkout(Path(source))
        # --no-isolation: the setuptools of this environment, so no download.
        done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), source],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"python -m build failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return sdist, wheel
