"""`make test-compat`: the Hub-facing checks and transformers' own common model tests, under the
oldest and the newest transformers we declare.

For each release it makes a clean virtualenv under `.compat/` (the pinned CPU torch, that
transformers, peft, pytest and parameterized; no hf_arith), then runs there:

1. `tests/compat/`: what a Hub user does with folders that hf-arith saved under its own transformers;
2. the conformance suite, `tests/compat/conformance/`: transformers' `ModelTesterMixin` and
   `ConfigTester`, from the test sources of that very release (its source distribution, fetched
   with `pip download --no-binary :all:`; never copied into this repository), on our models,
   imported from a copy of `modeling/` as the Hub loads them. The source distribution ships only
   the top-level `tests/*.py`; the modules they import from subfolders are replaced by the
   stand-ins in `conformance/stand_ins/` (see its README).

The oldest release is the lower bound in pyproject.toml; the newest is whatever PyPI serves today,
below our declared upper bound.

Then, once, the 2-rank launch matrix of the quickstart recipe (`tests/test_launch_matrix.py -k
addition_cpu`: single, DDP, FSDP, ZeRO-2, ZeRO-3 on 2 CPU processes) in a virtualenv with this
checkout and the newest accelerate and DeepSpeed releases, so that their next release cannot break
a launch config unseen (the lock pins the ones `make test` uses).

    python tests/compat/run.py                          # lowest and newest, both suites
    python tests/compat/run.py --versions 5.10.0
    python tests/compat/run.py --only conformance --python .venv/bin/python   # in an existing env
    python tests/compat/run.py --only launch                                  # the launch matrix only
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the clean virtualenvs of `make test-wheel` too
from installs import make_venv, run  # noqa: E402
CONFORMANCE = ROOT / "tests" / "compat" / "conformance"


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
    return make_venv(ROOT / ".compat" / name, f"transformers{requirement}", "peft", "pytest", "parameterized")


def lay_out_conformance(python: Path, version: str, folder: Path) -> Path:
    """`folder` with transformers `version`'s test sources as the package `transformers_tests` (its
    source distribution's `tests/`, stand-ins where a module is missing) and a copy of `modeling/`."""
    if folder.exists():
        shutil.rmtree(folder)
    sdist = folder / "sdist"
    run([python, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-binary", ":all:", "--no-deps",
         f"transformers=={version}", "-d", sdist])
    package = folder / "transformers_tests"
    with tarfile.open(next(sdist.glob("transformers-*.tar.gz"))) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) > 2 and parts[1] == "tests" and member.name.endswith(".py"):
                target = package.joinpath(*parts[2:])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    for directory in [package, *(p for p in package.rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()
    stand_ins = CONFORMANCE / "stand_ins"
    for stand_in in stand_ins.rglob("*.py"):
        target = package / stand_in.relative_to(stand_ins)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(stand_in, target)
            print(f"  stand-in: transformers_tests/{stand_in.relative_to(stand_ins)}", flush=True)
    shutil.copytree(ROOT / "modeling", folder / "modeling", ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def run_conformance(python: Path, version: str, folder: Path, env: dict) -> int:
    """Runs transformers `version`'s common model tests on our models; pytest's exit code."""
    lay_out_conformance(python, version, folder)
    env = {**env, "HF_ARITH_TRANSFORMERS_TESTS": str(folder)}
    # -rs lists every skip with its reason: they are declared in the README's "Supported transformers".
    return subprocess.run([python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", CONFORMANCE,
                           "-c", os.devnull, CONFORMANCE], cwd=folder, env=env).returncode


def installed(python: Path) -> str:
    code = "import transformers, torch, peft; print(transformers.__version__, torch.__version__, peft.__version__)"
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="*", help="transformers versions (default: lowest declared and newest)")
    parser.add_argument("--only", choices=("hub", "conformance", "launch"), help="run one of the three suites")
    parser.add_argument("--python", type=Path, help="an existing environment's python instead of fresh virtualenvs")
    args = parser.parse_args()
    lowest, spec = declared_range()
    targets = [(f"=={v}", f"transformers-{v}") for v in args.versions] if args.versions else [
        (f"=={lowest}", f"transformers-{lowest}"), (spec, "transformers-newest")]
    if args.python:
        targets = [(None, "transformers-given")]

    if args.only == "launch":
        return launch_matrix()
    folders = ROOT / ".compat" / "folders"
    if args.only != "conformance":
        subprocess.run(["rm", "-rf", str(folders)], check=True)
        run([sys.executable, ROOT / "tests" / "compat" / "make_folders.py", folders])
    failed = []
    for requirement, name in targets:
        start = time.time()
        python = args.python.absolute() if args.python else make_env(requirement, name)
        versions = installed(python)
        version = versions.split()[0]
        print(f"== transformers{requirement or ''}: transformers, torch, peft = {versions}", flush=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(HF_ARITH_COMPAT_FOLDERS=str(folders), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   HF_MODULES_CACHE=str(ROOT / ".compat" / name / "hf_modules"), TOKENIZERS_PARALLELISM="false")
        for suite in ("hub", "conformance"):
            if args.only not in (None, suite):
                continue
            suite_start = time.time()
            if suite == "hub":
                # From a folder outside the repository, so that nothing of hf_arith is importable.
                code = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                                       ROOT / "tests" / "compat", "-c", os.devnull, ROOT / "tests" / "compat"],
                                      cwd=ROOT / ".compat", env=env).returncode
            else:
                code = run_conformance(python, version, ROOT / ".compat" / name / "conformance", env)
            print(f"== transformers {version}, {suite}: {'passed' if code == 0 else 'FAILED'} "
                  f"in {time.time() - suite_start:.0f} s", flush=True)
            if code:
                failed.append(f"{version} ({suite})")
        print(f"== transformers {version}: done in {time.time() - start:.0f} s", flush=True)
    if args.only is None and not args.python and launch_matrix():
        failed.append("the newest accelerate and DeepSpeed (launch matrix)")
    if failed:
        print(f"test-compat: failed under {', '.join(failed)}")
        return 1
    print("test-compat: passed under every release tested")
    return 0


def launch_matrix() -> int:
    """The quickstart recipe under every launch config on 2 CPU processes, with this checkout
    installed beside the newest accelerate and DeepSpeed (torch stays pinned: a newer one would be
    a multi-GB CUDA build); returns pytest's exit status."""
    start = time.time()
    python = make_venv(ROOT / ".compat" / "launch-newest", "-e", f"{ROOT}[test]", constraints=ROOT / "constraints.txt")
    run([python, "-m", "pip", "install", "-qq", "--disable-pip-version-check", "--upgrade", "accelerate", "deepspeed",
         os.environ.get("TORCH_PIN", "torch==2.13.0")])
    versions = subprocess.run([python, "-c", "import accelerate, deepspeed; print(accelerate.__version__, "
                               "deepspeed.__version__)"], capture_output=True, text=True).stdout.split()
    print(f"== launch matrix: accelerate, deepspeed = {' '.join(versions[-2:])}", flush=True)
    code = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_launch_matrix.py",
                           "-k", "addition_cpu"], cwd=ROOT).returncode
    print(f"== launch matrix: {'passed' if code == 0 else 'FAILED'} in {time.time() - start:.0f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
