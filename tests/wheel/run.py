"""`make test-wheel`: hf-arith as a user installs it, end to end.

Builds the sdist and the wheel as a release does (`tests/installs.py`), installs the wheel into a
clean virtualenv in a temporary folder outside the checkout (the pinned CPU torch first, then the
wheel under constraints.txt, so nothing unpinned comes in), and from a working folder outside the
checkout runs the installed `hf-arith` through every stage on a 5-step model: --version, train,
eval, generate, publish --local-dir, then `AutoModelForCausalLM.from_pretrained` of the published
folder and one forward. One line per step; exits non-zero at the first failure (and keeps the
temporary folder to look into). A few minutes, most of them pip installing from its cache.

    python tests/wheel/run.py
    python tests/wheel/run.py --keep     # keep the temporary folder after a pass too
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the clean virtualenvs and builds of make test-compat and the suite
from installs import build_dists, make_venv  # noqa: E402

# The smallest run that still goes through every stage: 5 steps of a d=32, 1-layer model on 1-3 digits.
RECIPE = """\
seed: 0
model:
  arch: abacus
  config: {hidden_size: 32, num_attention_heads: 2, intermediate_size: 64, num_hidden_layers: 1,
           num_recurrences: 2, abacus_num_positions: 32, abacus_max_k: 8}
data:
  task: addition
  task_args: {max_digits: 3}
train: {max_steps: 5, micro_batch_size: 16, global_batch_size: 16, warmup: 0, cooldown: 0,
        save_every: 0, eval_every: 0, report_to: [], progress_bar: false}
eval: {evaluators: []}
"""

# What a Hub user runs on the published folder, in the virtualenv's python.
LOAD_AND_FORWARD = """\
import sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
inputs = tokenizer("21+43=", return_tensors="pt")  # 12+34, written reversed as the model reads it
with torch.no_grad():
    logits = model(**inputs).logits
assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all(), logits.shape
print(type(model).__module__, type(model).__name__, tuple(logits.shape))
"""


class StepFailed(Exception):
    pass


def step(name: str, cmd: list, cwd: Path, env: dict, expect=None) -> str:
    """Runs `cmd`, prints one line for it and returns its stdout; raises `StepFailed` (after
    printing the end of its output) when it exits non-zero or `expect(stdout)` names a problem."""
    start = time.time()
    try:
        done = subprocess.run(list(map(str, cmd)), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as err:
        print(f"test-wheel: FAILED {name}: still running after {err.timeout:.0f} s", flush=True)
        raise StepFailed(name) from err
    problem = f"exit status {done.returncode}" if done.returncode else (expect(done.stdout) if expect else None)
    if problem:
        print(f"test-wheel: FAILED {name}: {problem}\n$ {' '.join(map(str, cmd))}\n"
              f"{done.stdout[-2000:]}{done.stderr[-4000:]}", flush=True)
        raise StepFailed(name)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    print(f"test-wheel: ok     {name} ({time.time() - start:.0f} s){': ' + last if last else ''}", flush=True)
    return done.stdout


def has(*paths: Path):
    """An `expect` that names the first of `paths` the step did not write."""
    return lambda _stdout: next((f"it wrote no {p}" for p in paths if not p.exists()), None)


def check(tmp: Path, version: str, python: Path) -> None:
    bin_dir, work = python.parent, tmp / "work"
    work.mkdir()
    (work / "tiny.yaml").write_text(RECIPE)
    # Only the virtualenv: no PYTHONPATH into the checkout, no Hub, caches inside the temporary folder.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HF_HOME=str(tmp / "hf_home"), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    cli = bin_dir / "hf-arith"

    step("hf-arith --version", [cli, "--version"], work, env,
         expect=lambda out: None if out.strip() == f"hf-arith {version}" else f"printed {out.strip()!r}")
    step("hf_arith is the installed one", [python, "-c", "import hf_arith.hub, hf_arith.modeling as m; print(m.__file__)"],
         work, env, expect=lambda out: None if out.strip().startswith(str(bin_dir.parent)) else "imported from elsewhere")
    step("hf-arith train", [cli, "train", "tiny.yaml", "--output-dir", "run"], work, env,
         expect=has(work / "run" / "final" / "model.safetensors"))
    step("hf-arith eval", [cli, "eval", "run/final", "--task", "addition", "--lengths", "1-3", "--samples", "2",
                           "--out", "eval"], work, env, expect=has(work / "eval" / "results.json"))
    step("hf-arith generate", [cli, "generate", "run/final", "12+34"], work, env,
         expect=lambda out: None if len(out.strip().splitlines()) == 1 else f"printed {out!r}, not one answer")
    step("hf-arith publish --local-dir", [cli, "publish", "run/final", "--repo-id", "local/tiny-abacus",
                                          "--local-dir", "published", "--eval-dir", "eval"], work, env,
         expect=has(*(work / "published" / name for name in ("README.md", "config.json", "modeling_abacus.py"))))
    # The folder's own code loads, not the installed hf_arith: transformers puts it in transformers_modules.
    step("from_pretrained(published, trust_remote_code=True) and a forward",
         [python, "-c", LOAD_AND_FORWARD, work / "published"], work, env,
         expect=lambda out: None if out.startswith("transformers_modules") else "did not load the folder's code")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder after a pass too")
    args = parser.parse_args()
    start = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="hf-arith-wheel-")).resolve()
    if tmp == ROOT or ROOT in tmp.parents:
        print(f"error: the temporary folder {tmp} is inside the checkout; set TMPDIR to a folder outside {ROOT}")
        return 2
    # constraints.txt is resolved on Python 3.11 (some pins need it); older Pythons resolve freely, as `make setup`.
    constraints = ROOT / "constraints.txt" if sys.version_info >= (3, 11) else None
    try:
        sdist, wheel = build_dists(tmp / "dist")
        print(f"test-wheel: ok     build ({time.time() - start:.0f} s): {sdist.name}, {wheel.name}", flush=True)
        began = time.time()
        python = make_venv(tmp / "venv", str(wheel), constraints=constraints)
        print(f"test-wheel: ok     clean virtualenv ({time.time() - began:.0f} s): the pinned torch, then the wheel"
              f"{' under constraints.txt' if constraints else ''}", flush=True)
        check(tmp, wheel.name.split("-")[1], python)
    except (StepFailed, RuntimeError, subprocess.CalledProcessError) as err:
        if not isinstance(err, StepFailed):
            print(f"test-wheel: FAILED {err}")
        print(f"test-wheel: failed after {time.time() - start:.0f} s; the virtualenv, run and folders are in {tmp}")
        return 1
    if args.keep:
        print(f"test-wheel: kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"test-wheel: passed in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
