"""Resuming a checkpoint on another number of processes or another launch config, as a requeued
job or a user with fewer machines does: it continues where the format allows it, and otherwise
every process stops with the same one-line error naming how the checkpoint was written, how the
run was launched, and the command that resumes it.

Each writer trains the shipped quickstart recipe (with `test_launch_matrix.py`'s small model) for
4 steps; each reader resumes its step-2 checkpoint to step 4. Where it continues, the losses of
steps 3 (the restored weights and data position) and 4 (the restored optimizer state too) equal the
uninterrupted one-process run's, float reduction order aside. (Final weights are compared loosely:
with the recipe's AdamW eps of 1e-12, a parameter whose gradient is ~0 moves by ±lr on reduction
noise alone, without changing the loss.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_distributed import deepspeed_ops, free_port, launch_env  # noqa: F401 (a fixture)
from test_launch_matrix import ARITH_EVAL, REPO, SMALL_ABACUS, losses

pytestmark = pytest.mark.slow

ARGS = [str(REPO / "recipes/abacus/addition_cpu.yaml"), "--save-every", "1", "--set", "train.keep_last=3",
        "--set", "train.log_every=1", "--set", "train.eval_every=0", "--set", "train.progress_bar=false",
        "--set", "train.report_to=[]", "--set", "train.time_budget_minutes=null", "--set", "eval.evaluators=[]",
        *SMALL_ABACUS[:-len(ARITH_EVAL)]]  # the small model, without the evaluator
# (launch config, processes): "one" is plain `hf-arith train`.
ONE, DDP2, FSDP1, FSDP2, ZERO2, ZERO3 = ("one", 1), ("ddp", 2), ("fsdp", 1), ("fsdp", 2), \
    ("deepspeed_zero2", 2), ("deepspeed_zero3", 2)


def run(launch: tuple[str, int], out: Path, *extra: str) -> subprocess.CompletedProcess:
    config, processes = launch
    if config == "one":
        command = [sys.executable, "-m", "hf_arith", "train"]
    else:
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(REPO / "recipes/accelerate" / f"{config}.yaml"), "--num_processes", str(processes),
                   "--main_process_port", str(free_port()), "-m", "hf_arith", "train"]
    return subprocess.run([*command, *ARGS, "--output-dir", str(out), *extra], env=launch_env(), cwd=out.parent,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def written(tmp_path_factory, request):
    """launch -> a run trained for 3 steps under it (checkpoints after each), made on first use."""
    root, runs = tmp_path_factory.mktemp("writers"), {}

    def get(launch):
        if launch not in runs:
            if launch[0].startswith("deepspeed"):
                request.getfixturevalue("deepspeed_ops")
            runs[launch] = root / f"{launch[0]}_{launch[1]}"
            done = run(launch, runs[launch], "--max-steps", "4")
            assert done.returncode == 0, done.stderr[-4000:]
        return runs[launch]
    return get


def resume(writer_run: Path, reader, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "resumed"
    shutil.copytree(writer_run / "checkpoints" / "step_2", out / "checkpoints" / "step_2")
    (out / "checkpoints" / "latest").write_text("step_2\n")
    return run(reader, out, "--max-steps", "4", "--resume", "latest"), out


@pytest.mark.parametrize("writer, reader", [
    (DDP2, ONE), (ONE, DDP2), (FSDP2, ONE), (FSDP2, DDP2), (FSDP2, FSDP1), (FSDP1, FSDP2), (ZERO2, ZERO2),
], ids=lambda launch: f"{launch[0]}{launch[1]}")
def test_a_checkpoint_continues_on_another_number_of_processes(writer, reader, written, tmp_path):
    done, out = resume(written(writer), reader, tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    reference = written(ONE)
    assert sorted(losses(out)) == [3, 4]
    for step in (3, 4):
        assert losses(out)[step][0] == pytest.approx(losses(reference)[step][0], rel=1e-5), step
    expected, got = load_file(reference / "final" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=5e-3, msg=key)  # lr 1e-3, 4 steps
    assert json.loads((out / "checkpoints" / "step_3" / "launch.json").read_text())["num_processes"] == reader[1]


@pytest.mark.parametrize("writer, reader, written_as, launched_as", [
    (ONE, FSDP2, "one process", "FSDP on 2 processes"),
    (ZERO2, ONE, "DeepSpeed ZeRO-2 on 2 processes", "one process"),
    (ZERO2, ZERO3, "DeepSpeed ZeRO-2 on 2 processes", "DeepSpeed ZeRO-3 on 2 processes"),
    (ZERO3, DDP2, "DeepSpeed ZeRO-3 on 2 processes", "DDP on 2 processes"),
], ids=lambda value: f"{value[0]}{value[1]}" if isinstance(value, tuple) else None)
def test_a_checkpoint_that_cannot_continue_stops_every_process_with_one_line(writer, reader, written_as, launched_as,
                                                                           written, tmp_path, request):
    if reader[0].startswith("deepspeed"):
        request.getfixturevalue("deepspeed_ops")
    done, out = resume(written(writer), reader, tmp_path)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == reader[1], done.stderr[-4000:]  # one per process, all the same
    assert len(set(lines)) == 1
    assert f"was written by {written_as}, and this run was launched as {launched_as}" in lines[0]
    assert "--resume" in lines[0] and ("hf-arith train RECIPE" if writer == ONE else "recipes/accelerate/") in lines[0]
    assert not (out / "final").exists() and not (out / "checkpoints" / "step_3").exists()
