"""Evaluation: exact-match accuracy over operand-length grids, and answers in normal notation.

Example:
    >>> from hf_arith.evaluation import evaluate_grid, answer
    >>> evaluate_grid(model, tokenizer, "addition", range(1, 41), samples=100).summary()
    >>> answer(model, tokenizer, ["123+4567"])
    ['4690']
"""

from .generate import answer
from .grid import evaluate_dataset, evaluate_equal_lengths, evaluate_grid
from .results import GridResult

__all__ = ["GridResult", "answer", "evaluate_dataset", "evaluate_equal_lengths", "evaluate_grid"]
