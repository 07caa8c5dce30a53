"""Data throughput: tokenize + pack of text (OLMo's pipeline) with 1 and 2 processes, and
arithmetic examples generated per second.

Text: the embedded corpus (`builtin`, Python's documentation and docstrings, ~2.1M characters),
repeated `--repeat` times so each timing lasts long enough to read; a byte-level BPE trained on it
(or `--tokenizer`). For each `--num-proc` the same documents go through
`hf_arith.data.text.tokenize` (EOS per document, `datasets.map(num_proc=...)`) and `pack` (flat
uint16 instances); the table gives tokens per second of the two together, side by side.

Arithmetic: `ArithmeticSource(task).examples(0, N)`, the trainer's on-demand generator (each
example seeded from (seed, index)), in examples per second.

Measured on the 2-core CPU box (`--repeat 8`, 17.2M characters, 4.4M tokens of vocabulary 8192):
tokenize + pack 1.49M tokens/s with num_proc 1, 1.57M with 2 (1.05x: in one process the Rust
tokenizer already encodes each batch on both cores); arithmetic examples/s: addition (20 digits)
129k, multiplication (15 digits) 133k, sorting 71k.

Example:
    python benchmarks/data_pipeline.py                      # repeat 4, num_proc 1 and 2
    python benchmarks/data_pipeline.py --repeat 8 --num-proc 1 2 4 --examples 50000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np

from hf_arith.data.corpus import builtin_documents
from hf_arith.data.text import iter_texts, pack, tokenize
from hf_arith.tokenization import train_bpe_tokenizer
from hf_arith.data.sources import ArithmeticSource


def time_text(docs, tokenizer, num_proc: int, sequence_length: int) -> dict:
    """Seconds and tokens of one tokenize + pack pass."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        counts = pack(tokenize(docs, tokenizer, num_proc), Path(tmp) / "train.bin", sequence_length, np.uint16)
        seconds = time.perf_counter() - started
    tokens = counts["tokens"] + counts["dropped_tokens"]
    return {"num_proc": num_proc, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}


def time_arithmetic(task: str, count: int, task_args: dict) -> dict:
    """Seconds of generating `count` examples with the trainer's source."""
    source = ArithmeticSource(task, seed=0, task_args=task_args)
    source.examples(0, 100)  # warm the imports
    started = time.perf_counter()
    source.examples(0, count)
    seconds = time.perf_counter() - started
    return {"task": task, "examples": count, "seconds": seconds, "examples_per_s": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=4, help="copies of the embedded corpus")
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--tokenizer", help="a tokenizer folder instead of training one")
    parser.add_argument("--sequence-length", type=int, default=2048)
    parser.add_argument("--examples", type=int, default=20000, help="arithmetic examples per task")
    args = parser.parse_args()
    datasets.disable_progress_bars()

    texts = [d["text"] for d in builtin_documents("builtin")] * args.repeat
    docs = datasets.Dataset.from_dict({"text": texts})
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tokenizer = train_bpe_tokenizer(iter_texts(["builtin"]), args.vocab_size)
    characters = sum(len(t) for t in texts)
    print(f"text: {len(texts)} documents, {characters / 1e6:.1f}M characters, vocabulary {len(tokenizer)}\n")
    print("| num_proc | seconds | tokens | tokens/s | vs num_proc 1 |")
    print("|---:|---:|---:|---:|---:|")
    base = None
    for num_proc in args.num_proc:
        result = time_text(docs, tokenizer, num_proc, args.sequence_length)
        base = base or result["tokens_per_s"]
        print(f"| {num_proc} | {result['seconds']:.2f} | {result['tokens']:,} | {result['tokens_per_s']:,.0f} | "
              f"{result['tokens_per_s'] / base:.2f}x |")

    print("\n| arithmetic task | examples | seconds | examples/s |")
    print("|---|---:|---:|---:|")
    for task, task_args in (("addition", {"max_digits": 20}), ("multiplication", {"max_digits": 15}),
                            ("sorting", {})):
        result = time_arithmetic(task, args.examples, task_args)
        print(f"| {task} {task_args or ''} | {result['examples']:,} | {result['seconds']:.2f} | "
              f"{result['examples_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
