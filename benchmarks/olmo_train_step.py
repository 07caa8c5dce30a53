"""One training step, side by side: hf-arith's ArithOlmoForCausalLM vs transformers' OlmoForCausalLM.

Same config, same weights (ours is converted from the native model), same batches, same dtype.
Each step is forward + backward + AdamW (fused where the device has it). The two models take turns
step by step (and swap who goes first every step) so that both see the same machine state; the
median of the timed steps after warm-up is reported, with tokens/s. The first batch's losses are
compared before any update (the parity check), and the last ones are printed too.

Peak memory is measured in a fresh subprocess per model (a process's high-water mark cannot be
reset, and each process holds one model only): on CUDA `torch.cuda.max_memory_allocated`; on CPU
the peak resident set size, `VmHWM` of /proc/self/status (tracemalloc does not see torch's
allocator, and `getrusage`'s `ru_maxrss` survives `exec`, so a child would inherit the parent's
peak), also given as the growth over the size before the first step (activations, gradients,
optimizer state).

`--dtype bf16` means what the trainer does with `mixed_precision: bf16`: fp32 weights and optimizer
state, bf16 autocast for the forward pass.

Usage:
    python benchmarks/olmo_train_step.py                          # CPU, fp32, a small OLMo
    python benchmarks/olmo_train_step.py --device cuda --dtype bf16 --hidden 1024 --layers 8 --seq 1024 --batch 16
    python benchmarks/olmo_train_step.py --attn eager --compile
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from flops import PEAK_GFLOPS, training_matmul_flops  # benchmarks/flops.py, beside this script
from transformers import OlmoConfig, OlmoForCausalLM

from hf_arith.convert import config_from_native, from_native
from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--intermediate", type=int, help="MLP width (default: 4 x hidden, as OLMo-1B)")
    parser.add_argument("--vocab", type=int, default=4096, help="a multiple of 128, so both models have the same rows")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--attn", choices=["sdpa", "eager"], default="sdpa")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--no-fused", action="store_true", help="plain AdamW instead of the fused kernel")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--peak-gflops", type=float,
                        help="the device's matmul peak for the fraction-of-peak row (default: this project's "
                             "measured 2-thread CPU peak, 135 fp32 / 370 bf16; none on other devices)")
    parser.add_argument("--memory-of", choices=["ours", "native"], help=argparse.SUPPRESS)  # subprocess mode
    return parser.parse_args(argv)


def build(args, which=("ours", "native")):
    """The models named in `which` (the same weights when both), their optimizers, and the batches."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = OlmoConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=args.intermediate or 4 * args.hidden, max_position_embeddings=max(args.seq, 2048),
        tie_word_embeddings=False, pad_token_id=None, eos_token_id=None,
    )
    built = {}
    if "native" in which:
        built["native"] = OlmoForCausalLM(config)
    if "ours" in which:
        # Alone (memory runs), ours is initialised directly: no native copy inflates the process.
        alone = "native" not in built
        built["ours"] = ArithOlmoForCausalLM(config_from_native(config)) if alone else from_native(built["native"])
    models = {}
    for name in which:
        model = built[name]
        model.set_attn_implementation(args.attn)
        model.to(args.device).train()
        optimizer = adamw(model, fused=not args.no_fused)
        models[name] = (torch.compile(model) if args.compile else model, optimizer)
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, args.vocab, (args.batch, args.seq), generator=generator).to(args.device)
               for _ in range(4)]
    return models, batches


def adamw(model, fused: bool):
    kwargs = dict(lr=1e-4, betas=(0.9, 0.95), eps=1e-5, weight_decay=0.1)
    if fused:
        try:
            return torch.optim.AdamW(model.parameters(), fused=True, **kwargs)
        except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device
            pass
    return torch.optim.AdamW(model.parameters(), **kwargs)


def autocast(args):
    if args.dtype == "bf16":
        return torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def train_step(model, optimizer, ids, args) -> float:
    with autocast(args):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def first_losses(models, batch, args) -> dict[str, float]:
    with torch.no_grad(), autocast(args):
        return {name: model(input_ids=batch, labels=batch).loss.item() for name, (model, _) in models.items()}


def time_steps(models, batches, args) -> tuple[dict, dict]:
    times = {name: [] for name in models}
    losses = {}
    order = list(models)
    for step in range(args.warmup + args.steps):
        ids = batches[step % len(batches)]
        for name in order if step % 2 == 0 else order[::-1]:
            model, optimizer = models[name]
            synchronize(args.device)
            start = time.perf_counter()
            losses[name] = train_step(model, optimizer, ids, args)
            synchronize(args.device)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - start)
    return times, losses


def peak_memory(args) -> dict[str, float]:
    """Run in a subprocess for one model: a few steps, then the peak (MiB)."""
    models, batches = build(args, which=(args.memory_of,))
    model, optimizer = models[args.memory_of]
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = rss_mib("VmHWM")
    for step in range(max(args.warmup, 2)):
        train_step(model, optimizer, batches[step % len(batches)], args)
    if torch.device(args.device).type == "cuda":
        return {"peak": torch.cuda.max_memory_allocated() / 2**20, "growth": None}
    peak = rss_mib("VmHWM")
    return {"peak": peak, "growth": peak - before}


def rss_mib(field: str) -> float:
    """`VmHWM` (peak) or `VmRSS` (now) of this process, in MiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status; peak-RSS measurement needs Linux (use --no-memory)")


def measure_memory(argv) -> dict[str, dict]:
    out = {}
    for name in ("ours", "native"):
        done = subprocess.run([sys.executable, __file__, *argv, "--memory-of", name], capture_output=True, text=True,
                              env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, check=True)
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.memory_of:
        print(json.dumps(peak_memory(args)))
        return
    models, batches = build(args)
    parity = first_losses(models, batches[0], args)
    times, last = time_steps(models, batches, args)
    memory = None if args.no_memory else measure_memory(argv)

    tokens = args.batch * args.seq
    median = {name: statistics.median(t) for name, t in times.items()}
    fused = "plain" if args.no_fused else "fused where available"
    print(f"OLMo d={args.hidden} L={args.layers} H={args.heads} ffn={args.intermediate or 4 * args.hidden} "
          f"V={args.vocab}; batch {args.batch} x {args.seq} tokens; {args.device} {args.dtype}; attn {args.attn}"
          f"{'; compiled' if args.compile else ''}; AdamW {fused}; median of {args.steps} steps after {args.warmup} "
          f"warm-up, interleaved; torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| | ours (ArithOlmoForCausalLM) | native (OlmoForCausalLM) | ours / native |")
    print("|---|---:|---:|---:|")
    print(f"| step time, median (ms) | {median['ours'] * 1e3:.1f} | {median['native'] * 1e3:.1f} | "
          f"{median['ours'] / median['native']:.3f} |")
    print(f"| throughput (tokens/s) | {tokens / median['ours']:,.0f} | {tokens / median['native']:,.0f} | "
          f"**{median['native'] / median['ours']:.3f}x** |")
    peak = args.peak_gflops or (PEAK_GFLOPS[args.dtype] if args.device == "cpu" else None)
    step_gflop = training_matmul_flops(args.hidden, args.intermediate or 4 * args.hidden, args.layers, args.vocab,
                                       args.batch, args.seq) / 1e9
    gflops = {name: step_gflop / median[name] for name in median}
    print(f"| counted matmul GFLOP/s{f' (of a {peak:.0f} GFLOP/s peak)' if peak else ''} | "
          + " | ".join(f"{gflops[n]:.0f}{f' ({gflops[n] / peak:.0%})' if peak else ''}" for n in ("ours", "native"))
          + f" | {gflops['ours'] / gflops['native']:.3f} |")
    if memory:
        label = "peak GPU memory allocated (MiB)" if memory["ours"]["growth"] is None else "peak RSS (MiB)"
        print(f"| {label} | {memory['ours']['peak']:,.0f} | {memory['native']['peak']:,.0f} | "
              f"{memory['ours']['peak'] / memory['native']['peak']:.3f} |")
        if memory["ours"]["growth"] is not None:
            growth = memory["ours"]["growth"], memory["native"]["growth"]
            print(f"| RSS growth in training (MiB) | {growth[0]:,.0f} | {growth[1]:,.0f} | "
                  f"{growth[0] / max(growth[1], 1e-9):.3f} |")
    diff = abs(parity["ours"] - parity["native"])
    print(f"\nloss parity, first batch before any update: ours {parity['ours']:.6f}, native {parity['native']:.6f}, "
          f"|diff| {diff:.2e}")
    print(f"loss after {args.warmup + args.steps} steps: ours {last['ours']:.6f}, native {last['native']:.6f}")
    tolerance = 1e-4 if args.dtype == "fp32" else 2e-2
    if diff > tolerance:
        sys.exit(f"loss parity FAILED: |diff| {diff:.2e} > {tolerance}")


if __name__ == "__main__":
    main()
