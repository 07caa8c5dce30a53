"""Looped-model training throughput: examples/s, tokens/s, padding waste, and what bucketing,
bf16 autocast and `torch.compile` do to them, side by side on the quickstart recipe's model.

Every variant trains its own copy of the same initial model on the same global batches (from the
trainer's `ArithmeticSource`), one step each in turn, so they all see the same machine state; the
median step time after warm-up is reported. A step is the trainer's: collate, forward, backward
(loss normalised by the global label count), clip, AdamW.

- padded: each global batch cut into micro-batches in arrival order (random lengths together);
- bucketed: the batch sorted by length first, as the trainer does (`data.bucket_by_length`).
Padding waste is the fraction of computed token positions that are padding.

FLOP/s count the matmuls of a full-depth pass (`flops.training_matmul_flops`: 6 x matmul
parameters x tokens, plus attention's causal half of 12 x layers x recurrences x d x T^2 per
sequence), so they are given only with `--alpha 0`: the
progressive loss runs a random number of recurrences with and without gradient per step, and a
full-depth count would overstate its work. The fraction is of this machine's measured 2-thread
matmul peak (135 GFLOP/s fp32, 370 GFLOP/s bf16; see BENCHMARKS.md).

Example:
    python benchmarks/abacus_train.py --micro 32          # the recipe's step; fp32 and bf16, padded and bucketed
    python benchmarks/abacus_train.py --micro 32 --alpha 0  # full depth: exact FLOP/s and fraction of peak
    python benchmarks/abacus_train.py --compile --steps 30
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from flops import PEAK_GFLOPS, training_matmul_flops  # benchmarks/flops.py, beside this script

from hf_arith.training import load_recipe
from hf_arith.training.optim import build_optimizer
from hf_arith.data.sources import ArithmeticSource, micro_batches
from hf_arith.training.trainer import build_model

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "abacus" / "addition_cpu.yaml"


def matmul_flops(config, batch: dict) -> float:
    """Training FLOPs of the matmuls of one full-depth step on `batch` (padding included)."""
    batch_size, seq = batch["input_ids"].shape
    return training_matmul_flops(config.hidden_size, config.intermediate_size,
                                 config.num_hidden_layers * config.num_recurrences, config.vocab_size, batch_size, seq)


def step(model, optimizer, batches, dtype) -> None:
    label_tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model(**batch, num_items_in_batch=label_tokens).loss
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, help="global batch (default: the recipe's)")
    parser.add_argument("--micro", type=int, help="micro-batch (default: the recipe's)")
    parser.add_argument("--alpha", type=float, help="override progressive_loss_alpha (0: exact FLOP counts)")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd variants")
    args = parser.parse_args(argv)

    recipe = load_recipe(args.recipe)
    if args.alpha is not None:
        recipe.model.config["progressive_loss_alpha"] = args.alpha
    batch_size = args.batch or recipe.train.global_batch_size
    micro = args.micro or recipe.train.micro_batch_size
    torch.manual_seed(recipe.seed)
    source = ArithmeticSource(recipe.data.task, recipe.seed, recipe.data.task_args)
    base = build_model(recipe.model, source.collate.tokenizer)

    variants = {}
    for dtype in args.dtypes:
        for bucketed in (False, True):
            for compiled in (False, True) if args.compile else (False,):
                model = copy.deepcopy(base).train()
                forward = torch.compile(model, dynamic=True) if compiled else model
                name = f"{dtype} {'bucketed' if bucketed else 'padded'}{' compiled' if compiled else ''}"
                variants[name] = dict(model=forward, optimizer=build_optimizer(model, recipe.train), dtype=dtype,
                                      bucketed=bucketed, times=[], examples=0, tokens=0, positions=0, flops=0.0)

    for i in range(args.warmup + args.steps):
        rows = source.examples(i * batch_size, (i + 1) * batch_size)
        for v in variants.values():
            batches = [source.collate(r) for r in micro_batches(rows, micro, source.length if v["bucketed"] else None)]
            started = time.perf_counter()
            step(v["model"], v["optimizer"], batches, v["dtype"])
            if i >= args.warmup:
                v["times"].append(time.perf_counter() - started)
                v["examples"] += len(rows)
                v["tokens"] += sum(int(b["attention_mask"].sum()) for b in batches)
                v["positions"] += sum(b["input_ids"].numel() for b in batches)
                v["flops"] += sum(matmul_flops(base.config, b) for b in batches)

    config = base.config
    params = sum(p.numel() for p in base.parameters())
    print(f"\n{config.num_hidden_layers}x{config.num_recurrences} d={config.hidden_size} ({params / 1e6:.2f}M params), "
          f"{recipe.data.task} up to {recipe.data.task_args.get('max_digits')} digits, global batch {batch_size} "
          f"in micro-batches of {micro}, progressive alpha {config.progressive_loss_alpha}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    reference = None
    print("| variant | step (ms, median) | examples/s | tokens/s | padding waste | GFLOP/s | of peak | vs fp32 padded |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, v in variants.items():
        median = statistics.median(v["times"])
        total = sum(v["times"])
        rate = v["examples"] / total
        reference = reference or rate
        gflops = v["flops"] / total / 1e9
        flop_columns = "n/a | n/a" if config.progressive_loss_alpha else f"{gflops:.1f} | {gflops / PEAK_GFLOPS[v['dtype']]:.0%}"
        print(f"| {name} | {1000 * median:.0f} | {rate:.0f} | {v['tokens'] / total:.0f} | "
              f"{1 - v['tokens'] / v['positions']:.1%} | {flop_columns} | {rate / reference:.2f}x |")
    if config.progressive_loss_alpha:
        print("\nGFLOP/s: n/a with the progressive loss (random depth per step); run with --alpha 0 for them.")


if __name__ == "__main__":
    main()
