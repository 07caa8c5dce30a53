"""Preemption: SIGTERM (Slurm, Kubernetes, spot instances) and SIGINT (Ctrl-C) finish the current
step, save it, and end `hf-arith train` with 143 / 130 and one line saying how to resume; resumed,
the run ends as if it had never stopped.

References: an uninterrupted `hf-arith train` process (bit for bit on one process; within float
tolerance for 2 DDP processes, whose reductions add in another order), the signals sent by the
kernel from outside (to the process, to an `accelerate launch` launcher, or to one rank only), and
the status a shell reports for a process a signal ended (128 + the signal's number).
"""

import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_distributed import LAUNCH, free_port, launch_env
from test_reliability import ENV, assert_complete_checkpoint, tiny_raw, write_recipe

from hf_arith.training import TrainingStopped, recipe_from_dict, train
from hf_arith.training.metrics_log import read_metrics
from hf_arith.training.preemption import StopSignals

# 2 micro-batches per step (one per process under DDP); saves every 10 steps, logs every 2 (a
# resumed run must log the same averages), evaluates every 5 (no record lost or repeated).
RAW = tiny_raw(max_steps=40, micro_batch_size=8, global_batch_size=16, schedule="wcc", warmup=2, cooldown=10,
               log_every=2, save_every=10, keep_last=2, eval_every=5)
RAW["eval"] = {"evaluators": [{"name": "arith_loss", "args": {"samples": 16}}]}
SEED = 20261207


def last_logged_step(out: Path) -> int:
    return max((r["step"] for r in read_metrics(out / "metrics.jsonl")), default=0)


def wait_for_step(out: Path, step: int, process: subprocess.Popen, where: str) -> None:
    """Returns once metrics.jsonl shows `step` (the run is then inside step `step + 1` or later)."""
    deadline = time.monotonic() + 300
    while last_logged_step(out) < step:
        assert process.poll() is None, f"{where}: the run ended before step {step}: {process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, where
        time.sleep(0.002)


def stop_line(stderr: str, where: str) -> tuple[str, int]:
    """The one `stopped by ...` line and the step it names."""
    lines = [line for line in stderr.splitlines() if line.startswith("stopped by ")]
    assert len(lines) == 1, f"{where}: {stderr[-4000:]}"
    return lines[0], int(re.search(r"after step (\d+):", lines[0]).group(1))


def weights(run: Path) -> dict:
    return load_file(run / "final" / "model.safetensors")


def log(run: Path) -> list[dict]:
    """metrics.jsonl without its wall-clock fields; every other number must match."""
    return [{k: v for k, v in r.items() if k not in ("examples_per_s", "tokens_per_s", "elapsed_s")}
            for r in read_metrics(run / "metrics.jsonl")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run: a plain `hf-arith train` process."""
    folder = tmp_path_factory.mktemp("reference")
    recipe = write_recipe(folder / "tiny.yaml", RAW)
    done = subprocess.run(["hf-arith", "train", str(recipe), "--output-dir", str(folder / "run")], env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder / "run"


# ---------------------------------------------------------------------------------------------
# One process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_the_step_and_the_printed_resume_ends_bit_identical(tmp_path, reference, signum):
    name = signal.Signals(signum).name
    k = random.Random(f"{SEED}-{name}").randint(3, 28)
    where = f"{name} sent once metrics.jsonl showed step >= k={k} (random.Random('{SEED}-{name}'))"
    recipe, run = write_recipe(tmp_path / "tiny.yaml", RAW), tmp_path / "run"
    first = subprocess.Popen(["hf-arith", "train", str(recipe), "--output-dir", str(run)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_step(run, k, first, where)
    first.send_signal(signum)
    stderr = first.communicate(timeout=300)[1]

    assert first.returncode == 128 + signum == {"SIGTERM": 143, "SIGINT": 130}[name], f"{where}: {stderr[-3000:]}"
    line, step = stop_line(stderr, where)
    assert k <= step < 40 and "Traceback" not in stderr, f"{where}: {stderr[-3000:]}"
    command = f"hf-arith train {recipe} --output-dir {run} --resume latest"
    assert line == f"stopped by {name} after step {step}: saved {run}/checkpoints/step_{step}; continue with: {command}"
    # The step it stopped at is saved and `latest`, though save_every is 10; nothing else was written.
    assert (run / "checkpoints" / "latest").read_text() == f"step_{step}\n", where
    assert_complete_checkpoint(run / "checkpoints" / f"step_{step}")
    assert json.loads((run / "checkpoints" / f"step_{step}" / "trainer_state.json").read_text())["step"] == step
    assert not (run / "final").exists() and last_logged_step(run) <= step

    resumed = subprocess.run(shlex.split(line.split("continue with: ")[1]), env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, f"{where}: {resumed.stderr[-3000:]}"
    a, b = weights(reference), weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), where
    assert log(run) == log(reference), where  # no record lost, none repeated, every value equal


def test_handlers_are_restored_and_save_every_0_still_saves(tmp_path, monkeypatch):
    """In this process: a signal during step 3 (raised by the step itself) stops the run after it."""
    from hf_arith.training import trainer

    real, calls = trainer.train_step, []

    def signalled(*args, **kwargs):
        calls.append(1)
        stats = real(*args, **kwargs)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGTERM)
        return stats

    monkeypatch.setattr(trainer, "train_step", signalled)
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    out = tmp_path / "run"
    with pytest.raises(TrainingStopped) as caught:
        train(recipe_from_dict({**tiny_raw(max_steps=8, save_every=0), "output_dir": str(out)}))
    assert {s: signal.getsignal(s) for s in before} == before
    assert (caught.value.step, caught.value.exit_status) == (3, 143)
    assert caught.value.checkpoint == out / "checkpoints" / "step_3"
    assert (out / "checkpoints" / "latest").read_text() == "step_3\n" and not (out / "final").exists()
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]


def test_a_repeated_sigterm_is_ignored_and_a_later_second_ctrl_c_gives_up(monkeypatch):
    from hf_arith.training import preemption

    with StopSignals() as signals:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # a launcher forwarding what the scheduler sent everyone
        signal.raise_signal(signal.SIGINT)  # within a moment: the same Ctrl-C, delivered twice
        assert signals.name == "SIGTERM"
        monkeypatch.setattr(preemption, "_REPEAT_WINDOW_S", 0.0)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


# ---------------------------------------------------------------------------------------------
# Two DDP processes


def launch_train(recipe: Path, out: Path, *args: str) -> subprocess.Popen:
    """`accelerate launch --config_file recipes/accelerate/ddp.yaml --num_processes 2 -m hf_arith
    train`, in its own session (as under a scheduler: signals reach it from outside)."""
    return subprocess.Popen(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(LAUNCH / "ddp.yaml"),
         "--num_processes", "2", "--main_process_port", str(free_port()),
         "-m", "hf_arith", "train", str(recipe), "--output-dir", str(out), *args],
        env=launch_env(), cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def rank_pid(launcher: int, rank: int) -> int:
    """The worker of `rank` among the launcher's children (its RANK environment variable)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == launcher \
                    and f"RANK={rank}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                return int(proc.name)
        except OSError:  # gone meanwhile
            continue
    raise AssertionError(f"no rank {rank} under process {launcher}")


@pytest.mark.slow
def test_two_ddp_processes_stop_at_one_step_and_resume_to_the_uninterrupted_weights(tmp_path, reference):
    rng = random.Random(SEED)
    recipe, run = write_recipe(tmp_path / "tiny.yaml", RAW), tmp_path / "run"
    resume = ("--resume", "latest")
    steps = []
    # 1. SIGTERM to the launcher, which forwards it to both processes; 2. to rank 1 alone: rank 0
    # never gets it and must still stop at the same step (the flag is all-reduced every step).
    for target in ("launcher", "rank 1"):
        k = rng.randint(last_logged_step(run) + 2, last_logged_step(run) + 12)
        where = f"SIGTERM to the {target} once metrics.jsonl showed step >= k={k} (random.Random({SEED}))"
        launcher = launch_train(recipe, run, *resume)
        try:
            wait_for_step(run, k, launcher, where)
            os.kill(launcher.pid if target == "launcher" else rank_pid(launcher.pid, 1), signal.SIGTERM)
            stderr = launcher.communicate(timeout=300)[1]
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)
        assert launcher.returncode != 0, f"{where}: {stderr[-3000:]}"
        line, step = stop_line(stderr, where)  # printed once, by the main process
        assert line == (f"stopped by SIGTERM after step {step}: saved {run}/checkpoints/step_{step}; continue with: "
                        f"accelerate launch ... -m hf_arith train {recipe} --output-dir {run} --resume latest"), where
        assert k <= step < 40 and (run / "checkpoints" / "latest").read_text() == f"step_{step}\n", where
        assert_complete_checkpoint(run / "checkpoints" / f"step_{step}")
        assert (run / "checkpoints" / f"step_{step}" / "random_states_1.pkl").is_file()
        steps.append(step)
    assert steps[0] < steps[1]

    finished = launch_train(recipe, run, *resume)
    stderr = finished.communicate(timeout=600)[1]
    assert finished.returncode == 0, stderr[-3000:]
    a, b = weights(reference), weights(run)
    assert a.keys() == b.keys(), (a.keys(), b.keys())
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key} {steps}: {m}")
