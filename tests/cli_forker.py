"""Runs `hf-arith` commands in forked children of one process that imported hf-arith once, with
optional fault injection: the child SIGKILLs itself at a chosen moment of a save.

Why a forker: a fresh `hf-arith train` spends about 6 s importing torch, transformers, datasets
and accelerate, and the kill test restarts a run about ten times. A forked child starts in
milliseconds with those modules loaded and nothing computed (no thread pool, no Accelerate state)
and then runs exactly `hf_arith.cli.main(argv)`. The kill test checks that these children end
bit-identical to a plain `hf-arith train` process.

Protocol: one JSON request per stdin line, `{"argv": [...], "log": PATH, "fault": {...} | null,
"file_size_limit": BYTES | null}`; the forker answers `{"pid": N}` when the child starts and
`{"returncode": RC}` when it ends (negative: killed by that signal). The child's stdout and stderr
go to `log`.

fault: `{"call": "replace", "match": REGEX, "when": "before" | "after", "nth": K}` kills the child
before or after its K-th `os.replace` onto a path whose name matches; `{"call": "rmtree", ...}`
kills it halfway through deleting its K-th matching folder (half of the files gone).
`file_size_limit`: `RLIMIT_FSIZE` of the child, with SIGXFSZ ignored, so that writing past it
fails with a real `EFBIG` from the kernel.

Example:
    >>> forker = Forker()
    >>> forker.run(["train", "r.yaml", "--output-dir", "out"], log="out.log").returncode
    0
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["torch", "transformers", "accelerate", "datasets", "safetensors.torch", "matplotlib.pyplot", "tqdm.auto",
           "hf_arith.cli", "hf_arith.training.trainer", "hf_arith.modeling.modeling_abacus",
           "hf_arith.modeling.configuration_abacus", "hf_arith.data.arithmetic", "hf_arith.evaluation.grid"]


# ---------------------------------------------------------------------------------------------
# The test side


@dataclass
class Run:
    pid: int
    returncode: int | None = None


class Forker:
    """The forker process; `start` a command, optionally kill it, `wait` for it (one at a time)."""

    def __init__(self, env: dict | None = None):
        self.process = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env)
        assert self._reply() == {"ready": True}

    def _reply(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the forker exited ({self.process.wait()})")
        return json.loads(line)

    def start(self, argv, log, fault=None, file_size_limit=None) -> Run:
        request = {"argv": [str(a) for a in argv], "log": str(log), "fault": fault, "file_size_limit": file_size_limit}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return Run(self._reply()["pid"])

    def wait(self, run: Run) -> Run:
        run.returncode = self._reply()["returncode"]
        return run

    def run(self, argv, log, fault=None, file_size_limit=None) -> Run:
        return self.wait(self.start(argv, log, fault, file_size_limit))

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)


# ---------------------------------------------------------------------------------------------
# The forker side


def _kill_myself():
    os.kill(os.getpid(), signal.SIGKILL)


def _install_fault(fault: dict) -> None:
    """Wraps `os.replace` or `shutil.rmtree` (looked up at call time by hf-arith) to die on cue."""
    seen = [0]

    def due(path) -> bool:
        if re.fullmatch(fault["match"], Path(os.fspath(path)).name):
            seen[0] += 1
            return seen[0] == fault.get("nth", 1)
        return False

    if fault["call"] == "replace":
        replace = os.replace

        def faulty_replace(src, dst, *args, **kwargs):
            hit = due(dst)
            if hit and fault["when"] == "before":
                _kill_myself()
            replace(src, dst, *args, **kwargs)
            if hit and fault["when"] == "after":
                _kill_myself()

        os.replace = faulty_replace
    elif fault["call"] == "rmtree":
        rmtree = shutil.rmtree

        def faulty_rmtree(path, *args, **kwargs):
            if os.path.isdir(path) and due(path):
                files = sorted(p for p in Path(path).rglob("*") if p.is_file())
                for file in files[: len(files) // 2]:
                    file.unlink()
                _kill_myself()
            return rmtree(path, *args, **kwargs)

        shutil.rmtree = faulty_rmtree
    else:
        raise ValueError(f"unknown fault {fault}")


def _child(request: dict) -> None:
    import resource

    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    code = 1
    try:
        if request.get("fault"):
            _install_fault(request["fault"])
        if request.get("file_size_limit"):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (request["file_size_limit"],) * 2)
        from hf_arith.cli import main

        code = main(request["argv"])
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:  # noqa: BLE001 - a traceback in the log, like a real process
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import importlib

    import matplotlib

    matplotlib.use("Agg")
    for name in PRELOAD:
        importlib.import_module(name)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    serve()
