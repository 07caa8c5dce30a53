"""Every benchmark script runs end to end at tiny sizes and prints its table.

Smoke runs only: nothing here is timed or compared (speed lives in BENCHMARKS.md), but a script
that no longer runs, or whose built-in parity check fails, fails here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(script: str, *args: str, cwd: Path = ROOT) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_decode_benchmark_checks_identical_tokens():
    out = run("decode_kv_cache.py", "--configs", "small", "--digits", "3", "--batch-size", "2")
    rows = [line for line in out.splitlines() if line.startswith("| small")]
    assert rows and all(row.rstrip(" |").endswith("yes") for row in rows), out


def test_olmo_step_benchmark_keeps_parity():
    out = run("olmo_train_step.py", "--hidden", "32", "--layers", "1", "--heads", "2", "--vocab", "256",
              "--batch", "1", "--seq", "16", "--steps", "2", "--warmup", "1", "--no-memory")
    assert "ours / native" in out and "loss parity" in out and "counted matmul GFLOP/s" in out


def test_abacus_train_benchmark_reports_padding_both_ways():
    out = run("abacus_train.py", "--steps", "1", "--warmup", "1", "--batch", "16", "--micro", "4",
              "--dtypes", "fp32", "--alpha", "0")
    assert "fp32 padded" in out and "fp32 bucketed" in out and "n/a" not in out


def test_data_benchmark_runs(tmp_path):
    out = run("data_pipeline.py", "--repeat", "1", "--num-proc", "1", "--vocab-size", "300", "--examples", "50")
    assert "tokens/s" in out and "| addition" in out


def test_scaling_benchmark_writes_table_and_plot(tmp_path):
    png = tmp_path / "scaling.png"
    out = run("scaling.py", "--quick", "--steps", "1", "--out", str(png))
    assert "| recurrences | 2 |" in out and png.stat().st_size > 0


def test_gpu_check_runs_every_part_in_tiny_mode_and_writes_the_table(tmp_path):
    """`benchmarks/gpu_check.sh` end to end on the CPU with tiny models: each part's row, the
    report under $OUT, the Abacus runs' metrics. (The GPU figures themselves need a GPU.)"""
    out = tmp_path / "out"
    env = {**os.environ, "HF_ARITH_GPU_CHECK_TINY": "1", "HF_ARITH_GPU_CHECK_DIR": str(tmp_path / "work"),
           "OUT": str(out), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env = {k: v for k, v in env.items() if not k.startswith(("ACCELERATE_", "FSDP_"))}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout
    assert "TINY MODE" in table and "torch " in table and "transformers " in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(".")[0] for row in rows] == ["| 1", "| 2", "| 3", "| 4"], table
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[-1].startswith("ok"), row
        assert cells[6].endswith("%") and float(cells[3].replace(",", "")) > 0, row  # fraction of peak; examples/s
    assert "hf-arith train recipes/abacus/addition_paper.yaml" in table
    assert "accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 1" in table
    assert (out / "gpu_check.md").read_text() == table
    assert {"gpu_check.log", "quickstart.metrics.jsonl", "paper.metrics.jsonl", "fsdp.metrics.jsonl",
            "olmo1b.json"} <= {p.name for p in out.iterdir()}


def test_gpu_check_peak_is_looked_up_by_gpu_name_or_overridden(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_check

    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: True)
    for name, peak in [("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H200", 989.0),
                       ("NVIDIA A100-SXM4-80GB", 312.0), ("Some GPU", None)]:
        monkeypatch.setattr(gpu_check.torch.cuda, "get_device_name", lambda *a, name=name: name)
        assert gpu_check.peak_tflops()[0] == peak, name
    monkeypatch.setenv("HF_ARITH_PEAK_TFLOPS", "500")
    assert gpu_check.peak_tflops() == (500.0, "HF_ARITH_PEAK_TFLOPS")
