"""Batched greedy decoding of N-digit additions: our looped KV cache vs full recomputation.

The paper's code generates without a cache: every new token re-runs the whole sequence through
all L x R layer applications. `generate` with our cache (one entry per layer per recurrence) runs
only the newest token. This script times, on the same prompts:
- full recompute: the paper's loop, `argmax(model(all tokens so far, use_cache=False))` per step;
- generate: `model.generate` with its default cache (what a Hub user gets);
- eval path: `model.generate` with the cache `hf-arith eval` passes
  (`hf_arith.evaluation.kv_cache.preallocated_cache`: sized once, written in place),
checks that all three produce identical tokens, and prints a markdown table of problems/s and
the speed-ups over full recomputation.

Random weights are enough for timing: both loops run exactly `N + 2` steps (the longest answer
plus EOS) because EOS stopping is switched off, so the work does not depend on what the model
predicts.

Example:
    python benchmarks/decode_kv_cache.py                       # CPU, fp32, batch 8
    python benchmarks/decode_kv_cache.py --device cuda --dtype bfloat16 --batch-size 64 \
        --configs small quickstart paper-8x2
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.evaluation.kv_cache import preallocated_cache
from hf_arith.modeling.layers import CACHE_NAME
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM

# hf-arith vocabulary (docs/DESIGN.md): digits are ids 4..13, "+" is 14, "=" is 18.
DIGIT_IDS = list(range(4, 14))
PLUS_ID, EQUALS_ID, PAD_ID = 14, 18, 0

# Model sizes to time. `quickstart` is read from the CPU recipe when it exists, so the table
# tracks the recipe; the fallback is the 2x2 model the baseline describes.
CONFIGS = {
    "small": dict(hidden_size=256, num_attention_heads=8, intermediate_size=512,
                  num_hidden_layers=2, num_recurrences=4),
    "quickstart": dict(hidden_size=128, num_attention_heads=4, intermediate_size=256,
                       num_hidden_layers=2, num_recurrences=2),
    # The reference's GLU width 2048 is both halves: 1024 each for gate and up (as addition_paper.yaml).
    "paper-8x2": dict(hidden_size=1024, num_attention_heads=16, intermediate_size=1024,
                      num_hidden_layers=8, num_recurrences=2),
    "paper-1x16": dict(hidden_size=1024, num_attention_heads=16, intermediate_size=1024,
                       num_hidden_layers=1, num_recurrences=16),
}
QUICKSTART_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "abacus" / "addition_cpu.yaml"
MODEL_FIELDS = set(AbacusConfig().to_dict())


def quickstart_config() -> tuple[dict, str]:
    """The `model:` section of the CPU quickstart recipe, or the fallback when it is absent."""
    if QUICKSTART_RECIPE.exists():
        import yaml

        model = (yaml.safe_load(QUICKSTART_RECIPE.read_text()) or {}).get("model") or {}
        fields = {k: v for k, v in (model.get("config") or {}).items() if k in MODEL_FIELDS}
        if fields:
            return fields, f"from {QUICKSTART_RECIPE.relative_to(QUICKSTART_RECIPE.parents[2])}"
    return CONFIGS["quickstart"], "fallback (recipe not found)"


def addition_prompts(digits: int, batch: int, seed: int) -> torch.LongTensor:
    """`batch` prompts "a+b=" with both operands of exactly `digits` digits, digits reversed.

    Equal lengths means no padding, exactly as the evaluation batches a grid cell.
    """
    rng = random.Random(seed)
    rows = []
    for _ in range(batch):
        a, b = (rng.randrange(10 ** (digits - 1), 10**digits) for _ in range(2))
        row = [DIGIT_IDS[int(c)] for c in str(a)[::-1]] + [PLUS_ID]
        row += [DIGIT_IDS[int(c)] for c in str(b)[::-1]] + [EQUALS_ID]
        rows.append(row)
    return torch.tensor(rows)


@torch.inference_mode()
def decode_with_cache(model, input_ids, new_tokens: int, num_recurrences=None, preallocate=False) -> torch.LongTensor:
    """`generate` with the looped KV cache, greedy. The benchmark's two columns: `preallocate=False` is
    transformers' default cache (what a Hub user's `model.generate` gets), `preallocate=True` the
    preallocated one that `hf-arith eval` and `generate` run (`decoding.greedy_generate`)."""
    config = GenerationConfig(
        do_sample=False, max_new_tokens=new_tokens, pad_token_id=PAD_ID, use_cache=True
    )
    kwargs = {} if num_recurrences is None else {"num_recurrences": num_recurrences}
    if preallocate:
        kwargs[CACHE_NAME] = preallocated_cache(model, input_ids.shape[1] + new_tokens, num_recurrences)
    mask = torch.ones_like(input_ids)
    out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config, **kwargs)
    return out[:, input_ids.shape[1]:]


@torch.inference_mode()
def decode_full_recompute(model, input_ids, new_tokens: int, num_recurrences=None) -> torch.LongTensor:
    """The paper's generation loop: no cache, the whole sequence so far through the model every
    step, argmax of the last position appended."""
    kwargs = {} if num_recurrences is None else {"num_recurrences": num_recurrences}
    sequence = input_ids
    for _ in range(new_tokens):
        logits = model(input_ids=sequence, use_cache=False, **kwargs).logits[:, -1]
        sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=-1)
    return sequence[:, input_ids.shape[1]:]


@torch.inference_mode()
def divergence_margins(model, prompts, cached, full) -> list[float]:
    """For each problem where the two loops differ: the recompute path's top-1 minus top-2 logit
    at the first differing step, relative to the logits' spread.

    Both paths compute the same function with differently shaped kernels, so their logits differ
    by rounding only; a differing argmax is then a near-tie (a tiny margin). A cache bug shows up
    as a difference where the recompute path had a clear winner.
    """
    margins = []
    for row in (cached != full).any(-1).nonzero().flatten().tolist():
        step = int((cached[row] != full[row]).nonzero()[0])
        sequence = torch.cat([prompts[row], full[row, :step]])[None]
        logits = model(input_ids=sequence, use_cache=False).logits[0, -1].float()
        top = logits.topk(2).values
        margins.append(float((top[0] - top[1]) / (logits.std() + 1e-12)))
    return margins


def timed(fn, device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int, default=8, help="problems decoded together")
    parser.add_argument("--digits", type=int, nargs="+", default=[20, 50, 100], help="operand lengths")
    parser.add_argument("--configs", nargs="+", default=["small", "quickstart"], choices=sorted(CONFIGS))
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cell (the best is reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tie-tolerance", type=float, default=None,
        help="largest top-1/top-2 logit margin (in logit standard deviations) at which a differing argmax still "
             "counts as a rounding tie (default 1e-3 in fp32, 5e-2 in bf16/fp16)",
    )
    args = parser.parse_args(argv)

    if args.tie_tolerance is None:
        args.tie_tolerance = 1e-3 if args.dtype == "float32" else 5e-2
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    rows, mismatches = [], 0
    for name in args.configs:
        fields, source = quickstart_config() if name == "quickstart" else (CONFIGS[name], "")
        torch.manual_seed(args.seed)
        # The table must hold the longest answer's digit positions (N + 1 digits, eval offset 0).
        needed = max(args.digits) + 3 + int(fields.get("abacus_eval_offset", 0))
        fields = {**fields, "abacus_num_positions": max(int(fields.get("abacus_num_positions", 256)), needed)}
        model = AbacusForCausalLM(AbacusConfig(**fields, attn_implementation=args.attn)).to(device, dtype).eval()
        # Fixed-length decoding, so that both loops do the same number of steps whatever the random
        # weights predict. `generate(eos_token_id=None)` is not enough: it falls back to the
        # generation config's EOS and pads rows after it, which the recompute loop would not do.
        model.generation_config.eos_token_id = None
        params = sum(p.numel() for p in model.parameters())
        label = (
            f"{name} ({model.config.num_hidden_layers}x{model.config.num_recurrences}, "
            f"d={model.config.hidden_size}, {params / 1e6:.2f}M{', ' + source if source else ''})"
        )
        # Warm-up: first calls pay for allocator growth and kernel selection.
        warm = addition_prompts(5, 2, args.seed).to(device)
        decode_with_cache(model, warm, 3)
        decode_with_cache(model, warm, 3, preallocate=True)
        decode_full_recompute(model, warm, 3)
        for digits in args.digits:
            prompts = addition_prompts(digits, args.batch_size, args.seed + digits).to(device)
            new_tokens = digits + 2  # the longest sum has digits + 1 digits, then EOS
            best = {"full": float("inf"), "generate": float("inf"), "eval": float("inf")}
            runs = {
                "full": lambda: decode_full_recompute(model, prompts, new_tokens),
                "generate": lambda: decode_with_cache(model, prompts, new_tokens),
                "eval": lambda: decode_with_cache(model, prompts, new_tokens, preallocate=True),
            }
            outputs = {}
            for _ in range(args.repeats):
                for key, fn in runs.items():
                    outputs[key], seconds = timed(fn, device)
                    best[key] = min(best[key], seconds)
            full = outputs["full"]
            checks = []
            for key in ("generate", "eval"):
                if outputs[key].shape != full.shape:
                    raise SystemExit(f"generate stopped early: {tuple(outputs[key].shape)} vs {tuple(full.shape)}")
                differing = int((outputs[key] != full).any(-1).sum())
                margins = divergence_margins(model, prompts, outputs[key], full) if differing else []
                # A relative margin above the tolerance cannot be rounding: the cache computed something else.
                mismatches += sum(m > args.tie_tolerance for m in margins)
                checks.append((differing, margins))
            rate = {key: args.batch_size / seconds for key, seconds in best.items()}
            rows.append((label, digits, args.batch_size, rate, checks))
            print(f"  {label}: {digits} digits ({best['full']:.2f}s full, {best['generate']:.2f}s generate, "
                  f"{best['eval']:.2f}s eval path)", file=sys.stderr)

    torch_info = f"torch {torch.__version__}, {args.device}, {args.dtype}, {torch.get_num_threads()} threads"
    print(f"\nGreedy decoding of N-digit + N-digit additions, batch {args.batch_size}, N + 2 new tokens ({torch_info}, "
          f"{os.cpu_count()} CPUs visible)\n")
    print("| model | N digits | batch | full recompute (problems/s) | generate, KV cache (problems/s) "
          "| eval path, preallocated KV cache (problems/s) | speed-up generate | speed-up eval path "
          "| identical tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for label, digits, batch, rate, checks in rows:
        same = []
        for name, (differing, margins) in zip(("generate", "eval"), checks):
            if differing:
                same.append(f"{name}: {batch - differing}/{batch} (rest near-ties, margin ≤ {max(margins):.1e})")
        print(f"| {label} | {digits} | {batch} | {rate['full']:.1f} | {rate['generate']:.1f} | {rate['eval']:.1f} "
              f"| {rate['generate'] / rate['full']:.1f}x | {rate['eval'] / rate['full']:.1f}x "
              f"| {'; '.join(same) or 'yes'} |")
    if mismatches:
        print(f"\n{mismatches} problem(s) where the loops differ although the recompute path had a clear winner: "
              f"a cache bug", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
