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
