"""OLMo-1B at its real size on one machine: `recipes/olmo/olmo_1b.yaml` launched as recipes/README.md
prints it, under one process, FSDP and DeepSpeed ZeRO-3, with each process's peak memory.

For each launch config: 3 optimizer steps with checkpoints at steps 2 and 3, then the step-3
checkpoint is removed and the run resumes from step 2 (`--resume latest`, as a requeued job
would) to the same step-3 loss and the same `final/` weights; then `hf-arith publish --local-dir`
writes safetensors shards, and `AutoModelForCausalLM.from_pretrained` of them equals `final/`.

The model is the recipe's (hidden 2048, 16 layers, 50304-row tied embedding: 1.18 B parameters);
only what the Hub or a GPU cluster provides is swapped through `--set`: a small local corpus and a
512-token tokenizer made with the CLI (the embedding stays 50304 rows), 128-token sequences,
micro-batch 1 and global batch 2, and no in-loop evaluation. The recipe's bf16 stays: FSDP keeps
fp32 weights, gradients and both AdamW moments (16 bytes per parameter) and gathers bf16 copies one
layer at a time; DeepSpeed keeps bf16 weights and gradients beside fp32 master weights and moments
(also 16 bytes per parameter).

Peak memory per process is the largest sampled footprint, `VmRSS + VmSwap`, and in brackets the
kernel's resident high-water mark `VmHWM` (/proc/PID/status, read every 0.2 s until the process
exits). Model state per process is what the parameters, gradients and AdamW moments take:
16 bytes x parameters / N. The whole state of 1.18 B parameters is 17.6 GiB however it is split;
two processes with their transients do not fit in this box's 23 GiB (FSDP was killed for memory
at step 2 without swap), so the run had 8 GiB of swap (`swapon`); a sampled footprint above the
resident peak is what went to swap.

Needs about 21 GB of free memory and 40 GB of disk; takes about 25 minutes on 2 cores. Nothing else
should run meanwhile (timings and memory).

Example:
    python benchmarks/olmo_1b_sharded.py --work /tmp/olmo1b --configs single fsdp deepspeed_zero3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes/olmo/olmo_1b.yaml"
OVERRIDES = ["--set", "data.sequence_length=128", "--set", "train.micro_batch_size=1",
             "--set", "train.global_batch_size=2",
             "--set", "train.log_every=1", "--set", "train.keep_last=2", "--set", "train.report_to=[]",
             "--set", "train.progress_bar=false", "--set", "train.time_budget_minutes=null",
             "--set", "eval.evaluators=[]", "--max-steps", "3", "--save-every", "2"]


class PeakMemory:
    """Polls /proc/PID/status of every hf_arith process below `root` (the launcher's children: one
    per rank) every 0.2 s: the kernel's resident high-water mark `VmHWM`, and the largest sampled
    footprint `VmRSS + VmSwap` (what a process needed, resident or swapped out)."""

    def __init__(self, root: int):
        self.root, self.hwm, self.footprint, self._stop = psutil.Process(root), {}, {}, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    if "hf_arith" not in " ".join(proc.cmdline()):
                        continue
                    rank = proc.environ().get("RANK", "0")
                    fields = dict(line.split(":", 1) for line in Path(f"/proc/{proc.pid}/status").read_text()
                                  .splitlines() if line.startswith(("VmHWM", "VmRSS", "VmSwap")))
                except (psutil.Error, OSError, ValueError):
                    continue
                gib = {k: int(v.split()[0]) / 2**20 for k, v in fields.items()}
                self.hwm[rank] = max(self.hwm.get(rank, 0), gib.get("VmHWM", 0))
                self.footprint[rank] = max(self.footprint.get(rank, 0), gib.get("VmRSS", 0) + gib.get("VmSwap", 0))
            time.sleep(0.2)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"resident": dict(sorted(self.hwm.items())), "footprint": dict(sorted(self.footprint.items()))}


def launch(config: str, run: Path, env: dict, *extra: str) -> tuple[float, dict]:
    processes = [] if config == "single" else ["--num_processes", "2"]
    env = {**env, "OMP_NUM_THREADS": "2" if config == "single" else "1"}  # 2 cores in all
    command = ["accelerate", "launch", "--config_file", str(REPO / f"recipes/accelerate/{config}.yaml"), *processes,
               "-m", "hf_arith", "train", str(RECIPE), *OVERRIDES, "--output-dir", str(run), *extra]
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    with open(run.parent / f"{run.name}.log", "a") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        memory = PeakMemory(proc.pid)
        code = proc.wait()
    peaks, wall = memory.stop(), time.perf_counter() - start
    if code != 0:
        sys.exit(f"{config} exited {code} after {wall:.0f} s, peaks so far {peaks}; see {run.parent / f'{run.name}.log'}")
    return wall, peaks


def losses(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def check_published(run: Path, published: Path) -> tuple[int, int]:
    """`from_pretrained` of the published shards equals `final/`; returns (shards, parameters)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(published, trust_remote_code=True, dtype=torch.float32)
    loaded, saved = model.state_dict(), tensors(run / "final")
    for name, value in saved.items():
        assert torch.equal(loaded[name].to(value.dtype), value), name
    shards = len(list(published.glob("model-*.safetensors")))
    return shards, sum(p.numel() for p in model.parameters())


def one_config(config: str, work: Path, data_args: list[str], env: dict) -> dict:
    run = work / config
    shutil.rmtree(run, ignore_errors=True)
    train_s, train_peaks = launch(config, run, env, *data_args)
    first = losses(run)

    # Requeued after step 2: the step-3 checkpoint is gone, `latest` points at step 2.
    shutil.rmtree(run / "checkpoints" / "step_3")
    (run / "checkpoints" / "latest").write_text("step_2\n")
    os.replace(run / "final", work / f"{config}_final_first")
    resume_s, resume_peaks = launch(config, run, env, *data_args, "--resume", "latest")
    again = losses(run)
    assert again[3] == first[3], (again[3], first[3])
    final, resumed_final = tensors(work / f"{config}_final_first"), tensors(run / "final")
    assert sorted(final) == sorted(resumed_final) and all((resumed_final[k] == v).all() for k, v in final.items()), \
        "resumed final/ differs"
    del final, resumed_final
    shutil.rmtree(work / f"{config}_final_first")

    published = work / f"{config}_published"
    shutil.rmtree(published, ignore_errors=True)
    subprocess.run(["hf-arith", "publish", str(run), "--repo-id", "local/olmo-1b", "--local-dir", str(published),
                    "--max-shard-size", "1GB"], check=True, env=env)
    shards, parameters = check_published(run, published)
    checkpoint_gib = sum(f.stat().st_size for f in (run / "checkpoints" / "step_3").rglob("*") if f.is_file()) / 2**30
    row = {"config": config, "processes": 1 if config == "single" else 2, "parameters": parameters,
           "losses": first, "resumed_step3_loss": again[3], "train_s": train_s, "resume_s": resume_s,
           "peak_gib_train": train_peaks, "peak_gib_resume": resume_peaks, "checkpoint_gib": checkpoint_gib,
           "published_shards": shards}
    print(json.dumps(row), flush=True)
    shutil.rmtree(run / "checkpoints")  # 14+ GB each; the next config needs the disk
    shutil.rmtree(published)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| launch | processes | peak per process, train: footprint (resident) GiB | peak, resume | model state per process "
             "(GiB) | losses 1-3 | resumed step 3 | checkpoint (GiB) | wall train / resume (s) | published |",
             "|---|---:|---|---|---:|---|---|---:|---|---|"]
    for r in rows:
        state = 16 * r["parameters"] / r["processes"] / 2**30
        peaks = lambda p: " / ".join(f"{p['footprint'][r]:.1f} ({p['resident'][r]:.1f})" for r in p["resident"])  # noqa: E731
        lines.append(f"| {r['config']} | {r['processes']} | {peaks(r['peak_gib_train'])} | "
                     f"{peaks(r['peak_gib_resume'])} | {state:.1f} | "
                     f"{', '.join(f'{v:.4f}' for v in r['losses'].values())} | {r['resumed_step3_loss']:.4f} "
                     f"(equal) | {r['checkpoint_gib']:.1f} | {r['train_s']:.0f} / {r['resume_s']:.0f} | "
                     f"{r['published_shards']} shards, equal |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/olmo_1b_sharded"))
    parser.add_argument("--configs", nargs="+", default=["single", "fsdp", "deepspeed_zero3"])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/olmo_1b_sharded.md")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}

    tokenizer, data = work / "tokenizer", work / "data"
    if not (data / "manifest.json").exists():
        subprocess.run(["hf-arith", "tokenizer", "train", "builtin", "--vocab-size", "512", "--out", str(tokenizer)],
                       check=True, env=env)
        subprocess.run(["hf-arith", "data", "prepare", str(REPO / "recipes/olmo/tiny_cpu.yaml"),
                        "--set", f"data.path={data}", "--set", f"data.tokenizer={tokenizer}",
                        "--set", "data.sequence_length=128"], check=True, env=env)
    data_args = ["--set", f"data.path={data}", "--set", f"data.tokenizer={tokenizer}"]

    rows = [one_config(config, work, data_args, env) for config in args.configs]
    text = table(rows)
    print(text)
    args.out.write_text(f"{time.strftime('%Y-%m-%d')}, {os.uname().nodename}, "
                        f"`python benchmarks/olmo_1b_sharded.py --configs {' '.join(args.configs)}`\n\n{text}\n")
    (args.out.with_suffix(".json")).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
