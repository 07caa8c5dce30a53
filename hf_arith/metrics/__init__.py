"""Metrics as `evaluate` modules: plain folders that `evaluate.load(path)` reads, also outside hf-arith.

Example:
    >>> import evaluate
    >>> metric = evaluate.load(ARITHMETIC_EXACT_MATCH)
    >>> metric.compute(predictions=["573<eos>", "5730"], references=["573", "573"])["exact_match"]
    0.5
"""

from pathlib import Path

ARITHMETIC_EXACT_MATCH = str(Path(__file__).parent / "arithmetic_exact_match")

__all__ = ["ARITHMETIC_EXACT_MATCH"]
