"""Two machines on one box: the multi-node launch of recipes/README.md ("Several machines") over
loopback, one process per "machine", with the shipped DDP and FSDP launch configs.

Each machine runs its own `accelerate launch --num_machines 2 --machine_rank R --num_processes 2
--main_process_ip 127.0.0.1 --main_process_port P`, both into one output folder (the shared
filesystem of a real cluster). The reference is a one-process `hf-arith train` of the same command:
losses, gradient norms and the final evaluation within float tolerance, `final/` loads with
`AutoModelForCausalLM(trust_remote_code=True)` and gives the same logits, and every file a run
writes once (metrics, final model, checkpoint metadata) is written once, not once per machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_distributed import free_port, launch_env

from hf_arith.training.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# The quickstart recipe, shrunk; log every step so that each step's loss is compared.
COMMAND = ["recipes/abacus/addition_cpu.yaml", "--max-steps", "3", "--set", "train.eval_every=0",
           "--set", "train.report_to=[]", "--set", "train.time_budget_minutes=null",
           "--set", "model.config.hidden_size=32", "--set", "model.config.num_attention_heads=2",
           "--set", "model.config.intermediate_size=32", "--set", "train.micro_batch_size=4",
           "--set", "train.global_batch_size=16", "--set", "train.log_every=1"]


def run_logged(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=REPO, env=launch_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    """Exit statuses; on timeout every process group is killed and the test fails."""
    deadline = time.monotonic() + timeout
    try:
        return [p.wait(timeout=max(deadline - time.monotonic(), 1)) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        pytest.fail(f"a launch did not finish in {timeout:.0f} s")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "run"
    log = out.parent / "train.log"
    code = wait_all([run_logged([sys.executable, "-m", "hf_arith", "train", *COMMAND, "--output-dir", str(out)], log)],
                    300)
    assert code == [0], log.read_text()[-3000:]
    return out


def two_machines(config: str, out: Path) -> list[Path]:
    """Both machines' launches, started together; their logs."""
    port = free_port()
    logs, procs = [], []
    for rank in (0, 1):
        logs.append(out.parent / f"machine{rank}.log")
        procs.append(run_logged(
            [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"recipes/accelerate/{config}.yaml",
             "--num_machines", "2", "--machine_rank", str(rank), "--num_processes", "2",
             "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
             "-m", "hf_arith", "train", *COMMAND, "--output-dir", str(out)], logs[-1]))
    codes = wait_all(procs, 400)
    assert codes == [0, 0], "\n".join(f"--- machine {r} (exit {c})\n{log.read_text()[-3000:]}"
                                      for r, (c, log) in enumerate(zip(codes, logs)))
    return logs


@pytest.mark.parametrize("config", ["ddp", "fsdp"])
def test_two_machines_over_loopback_train_like_one_process(config, one_process, tmp_path):
    run = tmp_path / "run"
    logs = two_machines(config, run)

    rows, expected = read_metrics(run / "metrics.jsonl"), read_metrics(one_process / "metrics.jsonl")
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]  # written once, by the main process only
    for got, want in zip(steps, (r for r in expected if "loss" in r)):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5), got["step"]
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-5), got["step"]
        assert got["batch_size"] == 16
    evals = [r for r in rows if "eval/arith_loss/loss" in r]
    expected_evals = [r for r in expected if "eval/arith_loss/loss" in r]
    assert len(evals) == 1 and len(expected_evals) == 1
    assert evals[0]["eval/arith_loss/loss"] == pytest.approx(expected_evals[0]["eval/arith_loss/loss"], rel=1e-5)

    # Only machine 0 (global rank 0) reports the final save; each process wrote its RNG state.
    assert "saved " in logs[0].read_text() and "saved " not in logs[1].read_text()
    checkpoint = run / "checkpoints" / "step_3"
    assert {"random_states_0.pkl", "random_states_1.pkl", "launch.json"} <= {p.name for p in checkpoint.iterdir()}
    if config == "fsdp":
        assert {p.name for p in (checkpoint / "sharded").glob("*.distcp")} == {"__0_0.distcp", "__1_0.distcp"}

    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(run / "final", trust_remote_code=True)
    reference = AutoModelForCausalLM.from_pretrained(one_process / "final", trust_remote_code=True)
    assert type(loaded).__name__ == "AbacusForCausalLM"
    ids = torch.tensor([[5, 6, 14, 7, 8, 18]])  # "12+34="
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-5)
