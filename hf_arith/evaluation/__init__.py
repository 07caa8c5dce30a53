"""Evaluation: exact-match accuracy over operand-length grids, and answers in normal notation.

Example (with a model trained by `make quickstart`)::

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from hf_arith.evaluation import answer, evaluate_grid

    model = AutoModelForCausalLM.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    evaluate_grid(model, tokenizer, "addition", range(1, 41), samples=100).summary()
    answer(model, tokenizer, ["123+4567"])  # the sum in normal notation, "4690" when the model is right
"""

import importlib

# Imported when first used, not with the package: then `.lengths` and `.compare` load without torch,
# so that `hf-arith eval` refuses a bad --lengths at once and `hf-arith compare` starts quickly.
_HOME = {"answer": "generate", "evaluate_dataset": "grid", "evaluate_equal_lengths": "grid", "evaluate_grid": "grid",
         "GridResult": "results"}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


__all__ = ["GridResult", "answer", "evaluate_dataset", "evaluate_equal_lengths", "evaluate_grid"]
