"""Evaluation: exact-match accuracy over operand-length grids, and answers in normal notation.

Example (with a model trained by `make quickstart`)::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from hf_arith.evaluation import answer, evaluate_grid

    model = AutoModelForCausalLM.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    evaluate_grid(model, tokenizer, "addition", range(1, 41), samples=100).summary()
    answer(model, tokenizer, ["123+4567"])  # the sum in normal notation, "4690" when the model is right
"""

from .generate import answer
from .grid import evaluate_dataset, evaluate_equal_lengths, evaluate_grid
from .results import GridResult

__all__ = ["GridResult", "answer", "evaluate_dataset", "evaluate_equal_lengths", "evaluate_grid"]
