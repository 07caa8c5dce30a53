"""`make test-compat`: the Hub-facing checks under the oldest and the newest transformers we declare.

For each release it makes a clean virtualenv under `.compat/` (the pinned CPU torch, that
transformers, peft and pytest; no hf_arith), then runs `tests/compat/` there against folders that
hf-arith saved under its own transformers. The oldest release is the lower bound in
pyproject.toml; the newest is whatever PyPI serves today, below our declared upper bound.

    python tests/compat/run.py                 # lowest and newest
    python tests/compat/run.py --versions 5.10.0
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the clean virtualenvs of `make test-wheel` too
from installs import make_venv, run  # noqa: E402


def declared_range() -> tuple[str, str]:
    """(lowest, specifier) of transformers in pyproject.toml, e.g. ("5.0.0", ">=5.0.0,<6")."""
    found = re.search(r'"transformers\s*([^";]*)"', (ROOT / "pyproject.toml").read_text())
    if found is None:
        raise SystemExit("pyproject.toml lists no transformers dependency")
    spec = found.group(1).replace(" ", "")
    lowest = re.search(r">=\s*([\d.]+)", spec)
    if lowest is None:
        raise SystemExit(f"pyproject.toml declares transformers{spec} with no lower bound; declare one (>=X)")
    return lowest.group(1), spec


def make_env(requirement: str, name: str) -> Path:
    """A fresh virtualenv with `requirement` (a transformers pin or range) and the test tools."""
    return make_venv(ROOT / ".compat" / name, f"transformers{requirement}", "peft", "pytest")


def installed(python: Path) -> str:
    code = "import transformers, torch, peft; print(transformers.__version__, torch.__version__, peft.__version__)"
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="*", help="transformers versions (default: lowest declared and newest)")
    args = parser.parse_args()
    lowest, spec = declared_range()
    targets = [(f"=={v}", f"transformers-{v}") for v in args.versions] if args.versions else [
        (f"=={lowest}", f"transformers-{lowest}"), (spec, "transformers-newest")]

    folders = ROOT / ".compat" / "folders"
    subprocess.run(["rm", "-rf", str(folders)], check=True)
    run([sys.executable, ROOT / "tests" / "compat" / "make_folders.py", folders])
    failed = []
    for requirement, name in targets:
        start = time.time()
        python = make_env(requirement, name)
        versions = installed(python)
        print(f"== transformers{requirement}: transformers, torch, peft = {versions}", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(HF_ARITH_COMPAT_FOLDERS=str(folders), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   HF_MODULES_CACHE=str(ROOT / ".compat" / name / "hf_modules"), TOKENIZERS_PARALLELISM="false")
        # From a folder outside the repository, so that nothing of hf_arith is importable.
        done = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", ROOT / "tests" / "compat",
                               "-c", os.devnull, ROOT / "tests" / "compat"], cwd=ROOT / ".compat", env=env)
        print(f"== transformers {versions.split()[0]}: {'passed' if done.returncode == 0 else 'FAILED'} "
              f"in {time.time() - start:.0f} s", flush=True)
        if done.returncode:
            failed.append(versions.split()[0])
    if failed:
        print(f"test-compat: failed under transformers {', '.join(failed)}")
        return 1
    print("test-compat: passed under every release tested")
    return 0


if __name__ == "__main__":
    sys.exit(main())
