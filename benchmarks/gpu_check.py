"""The Python half of `benchmarks/gpu_check.sh`: the GPU's bf16 peak, the OLMo-1B training step,
and the markdown report of every part.

    python benchmarks/gpu_check.py olmo1b --out step.json [--tiny]   # one OLMo-1B step, timed
    python benchmarks/gpu_check.py report --work DIR [--tiny]          # the table, from the parts' outputs

Throughput of the Abacus parts is read from the run's own `metrics.jsonl` (the trainer's logged
windows of examples/s, tokens/s and padding; the first window, with start-up and kernel warm-up, is
left out). Their model FLOPs are the matmul FLOPs `flops.training_matmul_flops` counts, over the
positions actually computed (padding included, as it is computed), for the recurrences each step
really ran: the progressive loss runs n recurrences without gradient (1/3 of a training pass's
FLOPs) and k with, drawn per step from (seed, step) exactly as the trainer draws them
(`hf_arith.training.trainer.step_inputs`). Attention's T^2 term uses the mean padded length: an
approximation, small at these lengths (<3% of the total).

The fraction of peak is of the GPU's dense bf16 tensor-core peak, from `BF16_PEAK_TFLOPS` by the
name torch reports, or `HF_ARITH_PEAK_TFLOPS` (TFLOP/s) when set. Without a GPU (the tiny mode
the tests run) it is this project's CI CPU's measured bf16 matmul peak (`flops.PEAK_GFLOPS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from flops import PEAK_GFLOPS, training_matmul_flops  # benchmarks/flops.py, beside this script

ROOT = Path(__file__).resolve().parents[1]

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets; the first
# entry whose name is in torch.cuda.get_device_name() wins (so the H100 variants come before "H100").
BF16_PEAK_TFLOPS = [
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM: "NVIDIA H100 80GB HBM3"
    ("A100", 312.0),
    ("L40S", 362.0),
    ("B200", 2250.0),
]

# The parts, in the order the shell script runs them: (name, what it measures).
PARTS = {
    "quickstart": "1. quickstart recipe (`addition_cpu.yaml`), bf16",
    "paper": "2. paper recipe (`addition_paper.yaml`, 8x2 d=1024), bf16",
    "fsdp": "3. quickstart recipe under `fsdp.yaml` (FSDP2) on 1 process, bf16",
    "olmo1b": "4. OLMo-1B (`olmo_1b.yaml`'s model), one training step, bf16",
}


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def peak_tflops() -> tuple[float | None, str]:
    """The bf16 peak the fractions are of, and where it comes from."""
    override = os.environ.get("HF_ARITH_PEAK_TFLOPS")
    if override:
        return float(override), "HF_ARITH_PEAK_TFLOPS"
    if not torch.cuda.is_available():
        return PEAK_GFLOPS["bf16"] / 1e3, "the CI CPU's measured 2-thread bf16 matmul peak (benchmarks/flops.py)"
    name = torch.cuda.get_device_name()
    for key, tflops in BF16_PEAK_TFLOPS:
        if key in name:
            return tflops, f"{key} dense bf16 data-sheet peak"
    return None, f"no peak known for {name}: set HF_ARITH_PEAK_TFLOPS"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = f"{os.cpu_count()} CPU cores ({cpu})"
    if not torch.cuda.is_available():
        return f"no GPU; {cores}"
    props = torch.cuda.get_device_properties(0)
    return (f"{torch.cuda.device_count()} x {props.name} ({props.total_memory / 2**30:.0f} GiB, "
            f"{props.multi_processor_count} SMs, CUDA {torch.version.cuda}); {cores}")


def versions() -> str:
    import accelerate
    import transformers

    return (f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
            f"accelerate {accelerate.__version__}")


# ---------------------------------------------------------------------------------------------
# OLMo-1B step


def olmo1b(args) -> dict:
    """Builds the model of recipes/olmo/olmo_1b.yaml on the device (the recipe's init and seed),
    then trains on random token ids: fp32 weights and AdamW (the trainer's `build_optimizer`), bf16
    autocast (the trainer's `mixed_precision: bf16`), clipping at the recipe's limit. The first
    micro-batch size of `--micro-batches` that fits is kept."""
    from hf_arith.training import load_recipe
    from hf_arith.training.models import build_model
    from hf_arith.training.optim import build_optimizer

    recipe = load_recipe(ROOT / "recipes" / "olmo" / "olmo_1b.yaml")
    config = dict(recipe.model.config)
    seq = recipe.data.sequence_length
    if args.tiny:
        config.update(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=128,
                      vocab_size=500, embedding_size=512, max_position_embeddings=64, eos_token_id=499,
                      pad_token_id=1)
        seq = 64
    dev = device()
    torch.manual_seed(recipe.seed)
    with torch.device(dev):
        model = build_model(dataclasses.replace(recipe.model, config=config)).train()
    params = sum(p.numel() for p in model.parameters())
    vocab = model.config.vocab_size
    result = {"params": params, "seq": seq, "device": str(dev), "tried": [], "steps": args.steps,
              "warmup": args.warmup}
    generator = torch.Generator(device=dev).manual_seed(1)
    for micro in args.micro_batches:
        optimizer = build_optimizer(model, recipe.train)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            times, losses = _olmo_steps(model, optimizer, micro, seq, vocab, generator, recipe.train.grad_clip, args)
        except torch.OutOfMemoryError:  # this function's frames (and their tensors) are gone once handled
            result["tried"].append(f"{micro}: out of memory")
            del optimizer
            model.zero_grad(set_to_none=True)
            gc.collect()
            continue
        step_s = statistics.median(times)
        flops = training_matmul_flops(model.config.hidden_size, model.config.intermediate_size,
                                      model.config.num_hidden_layers, vocab, micro, seq)
        result.update(micro_batch=micro, step_s=step_s, tokens_s=micro * seq / step_s, flops_per_step=flops,
                      loss_first=losses[0], loss_last=losses[-1])
        if dev.type == "cuda":
            result["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            result["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
        result["tried"].append(f"{micro}: fits")
        break
    return result


def _olmo_steps(model, optimizer, micro, seq, vocab, generator, grad_clip, args) -> tuple[list, list]:
    """Warm-up and timed training steps on random ids; (seconds of the timed ones, every loss)."""
    dev = next(model.parameters()).device
    times, losses = [], []
    for step in range(args.warmup + args.steps):
        ids = torch.randint(0, vocab, (micro, seq), device=dev, generator=generator)
        synchronize(dev)
        started = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        synchronize(dev)
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    return times, losses


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------
# Abacus runs: throughput and FLOPs from metrics.jsonl


def training_windows(run: Path) -> list[dict]:
    """The logged training windows of a run: steps `(first, last]`, examples, tokens, positions, seconds."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = sorted((r for r in rows if "examples_per_s" in r), key=lambda r: r["step"])
    windows, step, examples = [], 0, 0
    for r in rows:
        seconds = (r["examples"] - examples) / r["examples_per_s"]
        tokens = r["tokens_per_s"] * seconds
        windows.append({"first": step, "last": r["step"], "examples": r["examples"] - examples, "tokens": tokens,
                        "positions": tokens / max(1.0 - r["padding"], 1e-9), "seconds": seconds})
        step, examples = r["step"], r["examples"]
    return windows


class _Draws:
    """What `step_inputs` reads of a model: its config and `draw_progressive_depth`."""

    def __init__(self, config):
        from hf_arith.modeling.modeling_abacus import AbacusForCausalLM

        self.config = config
        self._draw = AbacusForCausalLM.draw_progressive_depth

    def draw_progressive_depth(self, generator=None, num_recurrences=None):
        return self._draw(self, generator, num_recurrences)


def block_passes(config, seed: int, steps: range) -> float:
    """Mean over `steps` (0-based) of the training-pass equivalents of the recurrent block run per
    step: n/3 + k with the progressive loss (n recurrences without gradient, k with), plus R for
    the full-depth term when alpha < 1."""
    alpha, recurrences = config.progressive_loss_alpha, config.num_recurrences
    if not alpha:
        return float(recurrences)
    from hf_arith.training.trainer import step_inputs

    model = _Draws(config)
    total = 0.0
    for step in steps:
        n, k = step_inputs(model, seed, step)["progressive_depth"]
        total += n / 3 + k + (recurrences if alpha < 1 else 0)
    return total / len(steps)


def abacus_row(run: Path) -> dict:
    """Throughput over the logged windows after the first, and model FLOP/s."""
    from hf_arith.modeling.configuration_abacus import AbacusConfig
    from hf_arith.training import load_recipe

    windows = training_windows(run)
    if not windows:
        raise RuntimeError(f"{run}/metrics.jsonl has no training windows")
    timed = windows[1:] or windows
    recipe = load_recipe(run / "recipe.yaml")  # written when the run starts
    if (run / "final" / "config.json").is_file():
        config = AbacusConfig.from_pretrained(run / "final")
    else:  # a run stopped at its time limit: the recipe's model with the arithmetic vocabulary
        from hf_arith.tokenization import build_arith_tokenizer

        config = AbacusConfig(**{"vocab_size": len(build_arith_tokenizer()), **recipe.model.config})
    seed = recipe.seed
    flops = 0.0
    for w in timed:
        passes = config.num_hidden_layers * block_passes(config, seed, range(w["first"], w["last"]))
        heads = (1 if config.progressive_loss_alpha > 0 else 0) + (1 if config.progressive_loss_alpha < 1 else 0)
        head_rows = config.vocab_size  # the LM head; the MLP head adds a gated MLP and a d x d adapter before it
        if getattr(config, "head", None) == "mlp":
            head_rows += config.hidden_size + 3 * config.intermediate_size
        seq = w["positions"] / w["examples"]
        flops += (training_matmul_flops(config.hidden_size, config.intermediate_size, passes, 0, w["examples"], seq)
                  + heads * training_matmul_flops(config.hidden_size, 0, 0, head_rows, w["examples"], seq))
    seconds = sum(w["seconds"] for w in timed)
    steps = sum(w["last"] - w["first"] for w in timed)
    return {"steps": steps, "step_s": seconds / steps, "examples_s": sum(w["examples"] for w in timed) / seconds,
            "tokens_s": sum(w["tokens"] for w in timed) / seconds, "flops_s": flops / seconds,
            "params": None, "padding": 1 - sum(w["tokens"] for w in timed) / sum(w["positions"] for w in timed)}


# ---------------------------------------------------------------------------------------------
# The report


def read_parts(work: Path) -> list[dict]:
    """What the shell script recorded per part: name, exit status, seconds, limit, command."""
    parts = []
    path = work / "parts.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, rc, wall, limit, command = line.split("\t", 4)
        parts.append({"name": name, "rc": int(rc), "wall": int(wall), "limit": int(limit), "command": command})
    return parts


def last_error(log: Path) -> str:
    if not log.is_file():
        return "no log"
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error:", "Traceback")) or "Error" in line]
    text = (errors or lines or ["(empty log)"])[-1]
    return text.replace("|", "\\|")[:200]


def fmt(value, spec: str, unit: str = "") -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:{spec}}{unit}"


def report(args) -> str:
    work = Path(args.work)
    peak, peak_source = peak_tflops()
    lines = []
    title = "GPU check" if not args.tiny else "GPU check, TINY MODE (HF_ARITH_GPU_CHECK_TINY=1: shrunken models, not a measurement)"
    lines.append(f"### {title}\n")
    lines.append(f"**Machine**: {machine()}. **Versions**: {versions()}. "
                 f"**Date**: {datetime.date.today().isoformat()}. **Peak**: "
                 f"{fmt(peak, ',.4g', ' TFLOP/s')} ({peak_source}). **Command**: `bash benchmarks/gpu_check.sh`"
                 f"{' with HF_ARITH_GPU_CHECK_TINY=1' if args.tiny else ''} (every part's command below).\n")
    lines.append("| part | steps timed | step (ms) | examples/s | tokens/s | model TFLOP/s | of bf16 peak "
                 "| peak GPU memory | wall (s) | result |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    recorded = {p["name"]: p for p in read_parts(work)}
    setup = work / "setup.status"
    missing = ("not run: setup failed (see the setup log)" if setup.is_file() and setup.read_text().strip() != "0"
               else "not run (out of time)")
    commands = []
    for name, what in PARTS.items():
        part = recorded.get(name)
        if part is None:
            lines.append(f"| {what} | | | | | | | | | {missing} |")
            continue
        commands.append(f"{len(commands) + 1}. `{part['command']}`")
        row, result = None, "ok"
        timed_out = part["rc"] in (124, 137)
        if part["rc"] != 0 and not timed_out:
            result = f"**failed** (exit {part['rc']}): {last_error(work / f'{name}.log')}"
        else:
            try:
                if name == "olmo1b":
                    row = olmo_row(json.loads((work / "olmo1b.json").read_text()))
                    result = row.pop("result")
                else:  # a run cut at its limit still has the windows it logged
                    row = abacus_row(work / name)
            except Exception as err:  # a part that left no readable output
                result = f"**no figures**: {type(err).__name__}: {err}"
            if timed_out:
                result = (f"**timed out** at its {part['limit']} s limit"
                          + ("; figures from the steps logged before" if row is not None else ""))
        if row is None:
            lines.append(f"| {what} | | | | | | | | {part['wall']} | {result} |")
            continue
        tflops = row["flops_s"] / 1e12
        fraction = fmt(tflops / peak if peak else None, ".1%")
        lines.append(f"| {what} | {row['steps']} | {fmt(row['step_s'] * 1e3, ',.1f')} | {fmt(row['examples_s'], ',.0f')} "
                     f"| {fmt(row['tokens_s'], ',.0f')} | {fmt(tflops, ',.3g')} | {fraction} "
                     f"| {row.get('memory', 'n/a')} | {part['wall']} | {result} |")
    lines.append("")
    lines.append("Commands (`hf-arith` is `python -m hf_arith`; runs write to a temporary folder):\n")
    lines.extend(commands)
    lines.append("")
    lines.append("Abacus rows: windows of the trainer's own metrics.jsonl after the first (start-up left out); "
                 "tokens/s count non-padding tokens, model FLOPs count every computed position (padding "
                 "included) for the recurrences each step ran (progressive loss: n without gradient at 1/3 "
                 "the cost, k with); FIRE's small position MLP (quickstart) is not counted (about 2%). OLMo row: examples/s are sequences/s; step time is the median of the "
                 "timed steps after warm-up; FLOPs are 6 x matmul parameters x tokens plus causal attention "
                 "(benchmarks/flops.py).")
    return "\n".join(lines) + "\n"


def params(count: int) -> str:
    return f"{count / 1e9:.2f}B" if count >= 1e9 else f"{count / 1e6:.2f}M"


def olmo_row(step: dict) -> dict:
    if "step_s" not in step:
        return {"result": f"**failed**: no micro-batch fitted ({'; '.join(step['tried'])})", "steps": "",
                "step_s": None, "examples_s": None, "tokens_s": None, "flops_s": float("nan")}
    memory = (f"{step['peak_memory_gib']:.1f} GiB ({step['peak_reserved_gib']:.1f} reserved)"
              if "peak_memory_gib" in step else "n/a (CPU)")
    return {"steps": step["steps"], "step_s": step["step_s"], "examples_s": step["micro_batch"] / step["step_s"],
            "tokens_s": step["tokens_s"], "flops_s": step["flops_per_step"] / step["step_s"], "memory": memory,
            "result": (f"ok: micro-batch {step['micro_batch']} x {step['seq']}, {params(step['params'])} "
                       f"parameters, loss {step['loss_first']:.3f} -> {step['loss_last']:.3f}"
                       + (f" (tried {', '.join(step['tried'])})" if len(step["tried"]) > 1 else ""))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    step = sub.add_parser("olmo1b", help="time the OLMo-1B training step; JSON to --out")
    step.add_argument("--out", required=True)
    step.add_argument("--tiny", action="store_true", help="a small OLMo, for CPU tests")
    step.add_argument("--micro-batches", type=lambda s: [int(x) for x in s.split(",")], default=[8, 4, 2, 1],
                      help="micro-batch sizes to try in turn until one fits (default 8,4,2,1; OLMo used 8)")
    step.add_argument("--steps", type=int, default=5, help="timed steps")
    step.add_argument("--warmup", type=int, default=2)
    rep = sub.add_parser("report", help="the markdown table of the parts recorded in --work")
    rep.add_argument("--work", required=True)
    rep.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "olmo1b":
        result = olmo1b(args)
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        if "step_s" not in result:
            sys.exit("no micro-batch size fitted: " + "; ".join(result["tried"]))
    else:
        print(report(args), end="")


if __name__ == "__main__":
    main()
