"""How a looped model's training step time and memory grow with sequence length, hidden size and
the number of recurrences (a markdown table and a PNG plot).

Each point is one configuration in a fresh subprocess (a process's memory high-water mark cannot
be reset): a few warm-up steps, then the median of timed steps of forward + backward + AdamW on a
batch of random digit sequences of exactly that length (no padding, full depth: progressive loss
off). Memory is the peak resident set size growth over the size before the first step (`VmHWM` of
/proc/self/status on Linux; `torch.cuda.max_memory_allocated` on CUDA): activations, gradients and
optimizer state. One knob varies at a time around the base point (d=128, 2x2, T=64, batch 64).

Example:
    python benchmarks/scaling.py --out benchmarks/results/scaling.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE = {"hidden": 128, "layers": 2, "recurrences": 2, "seq": 64, "batch": 64}
SWEEPS = {
    "seq": [32, 64, 128, 256, 512],
    "hidden": [64, 128, 256, 512],
    "recurrences": [1, 2, 4, 8, 16],
}
# --quick: a smoke run of the whole script in seconds (the test suite's).
QUICK_BASE = {"hidden": 64, "layers": 1, "recurrences": 1, "seq": 32, "batch": 2}
QUICK_SWEEPS = {"seq": [32, 64], "hidden": [64, 128], "recurrences": [1, 2]}


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(point: dict, steps: int, device: str) -> dict:
    """Runs in the subprocess: builds the model, times `steps` steps, reports time and memory."""
    import torch

    from hf_arith.modeling.configuration_abacus import AbacusConfig
    from hf_arith.modeling.modeling_abacus import AbacusForCausalLM

    torch.manual_seed(0)
    d = point["hidden"]
    config = AbacusConfig(hidden_size=d, num_attention_heads=max(1, d // 32), intermediate_size=2 * d,
                          num_hidden_layers=point["layers"], num_recurrences=point["recurrences"],
                          abacus_num_positions=point["seq"] + 2, abacus_max_k=0, attn_implementation="sdpa")
    model = AbacusForCausalLM(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(4, 14, (point["batch"], point["seq"]), device=device)  # digits only
    cuda = device.startswith("cuda")
    before = torch.cuda.memory_allocated() if cuda else rss_mib("VmHWM")
    times = []
    for i in range(steps + 2):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss_mib("VmHWM")
    return {"step_ms": 1000 * statistics.median(times), "memory_mib": peak - (before / 2**20 if cuda else before)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/results/scaling.png")
    parser.add_argument("--quick", action="store_true", help="two small points per knob (a smoke run)")
    parser.add_argument("--point", help=argparse.SUPPRESS)  # subprocess mode: one JSON point
    args = parser.parse_args(argv)
    if args.point:
        print(json.dumps(measure(json.loads(args.point), args.steps, args.device)))
        return

    base_point, sweeps = (QUICK_BASE, QUICK_SWEEPS) if args.quick else (BASE, SWEEPS)
    results = {}
    for knob, values in sweeps.items():
        for value in values:
            point = {**base_point, knob: value}
            done = subprocess.run([sys.executable, __file__, "--point", json.dumps(point), "--steps", str(args.steps),
                                   "--device", args.device], capture_output=True, text=True, check=True)
            results[(knob, value)] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{knob}={value}: {results[(knob, value)]}", file=sys.stderr)

    print(f"\nbase: d={base_point['hidden']}, {base_point['layers']}x{base_point['recurrences']}, T={base_point['seq']}, "
          f"batch {base_point['batch']}, {args.device}; one knob varies at a time\n")
    print("| knob | value | step (ms) | x base | memory (MiB) | x base |")
    print("|---|---:|---:|---:|---:|---:|")
    for knob, values in sweeps.items():
        base = results[(knob, base_point[knob])]
        for value in values:
            r = results[(knob, value)]
            print(f"| {knob} | {value} | {r['step_ms']:.1f} | {r['step_ms'] / base['step_ms']:.2f} | "
                  f"{r['memory_mib']:.0f} | {r['memory_mib'] / max(base['memory_mib'], 1e-9):.2f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.6))
    for ax, (knob, values) in zip(axes, sweeps.items()):
        ax.plot(values, [results[(knob, v)]["step_ms"] for v in values], marker="o", color="tab:blue")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(knob)
        ax.set_ylabel("step time (ms)", color="tab:blue")
        mem = ax.twinx()
        mem.plot(values, [results[(knob, v)]["memory_mib"] for v in values], marker="s", color="tab:red")
        mem.set_yscale("log")
        mem.set_ylabel("peak memory growth (MiB)", color="tab:red")
    fig.suptitle(f"Looped Abacus model, training step on {args.device} "
                 f"(base d={base_point['hidden']}, {base_point['layers']}x{base_point['recurrences']}, "
                 f"T={base_point['seq']}, batch {base_point['batch']})")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
