"""Answer arithmetic problems written the normal way: "123+4567" in, "4690" out.

The model reads and writes digits least-significant first; `answer` converts with the task
helpers (`to_model_format`, `from_model_answer`) so that users never reverse digits by hand.

Example (with a trained model, e.g. from `make quickstart`)::

    from hf_arith.evaluation.commands import load_model

    model, tokenizer = load_model("runs/addition_cpu/final")
    answer(model, tokenizer, ["123+4567", "99+1"])  # a list of answers in normal notation: "4690", "100"
"""

from __future__ import annotations

import re

from .grid import abacus_capacity, answer_digit_bound, answer_token_budget, greedy_generate

# Operator -> task, for the answer budget; the conversion itself is the task helpers' job.
OPERATOR_TASKS = (("+", "addition"), ("x", "multiplication"), ("*", "multiplication"), (":", "sorting"),
                  (",", "sorting"))


def task_of_problem(problem) -> str | None:
    """Which task a normal-notation problem belongs to, from its operator (a list of ints is a
    sorting problem).

    Example:
        >>> task_of_problem("12x34"), task_of_problem("a:3,b:12"), task_of_problem([3, 12])
        ('multiplication', 'sorting', 'sorting')
    """
    if not isinstance(problem, str):
        return "sorting"
    for op, task in OPERATOR_TASKS:
        if op in problem:
            return task
    return None


def _number_lengths(problem) -> list[int]:
    """Digits of every number in a problem (a string, or a list of ints to sort)."""
    if not isinstance(problem, str):
        return [len(str(n)) for n in problem]
    return [len(n.lstrip("0") or "0") for n in re.findall(r"[0-9]+", problem)]


def _budget(problem, prompt: str) -> int:
    """New tokens for the longest possible answer (and EOS), from the problem's lengths."""
    task = task_of_problem(problem)
    numbers = _number_lengths(problem)
    if task == "sorting":
        lengths = (len(numbers), max(numbers, default=1))
    else:
        lengths = tuple(numbers) or (1,)
    budget = answer_token_budget(task, lengths) if task else None
    # An unknown shape still gets a bounded, generous budget.
    return budget or len(prompt) + 2


def answer(
    model, tokenizer, problems: list[str] | str, num_recurrences: int | None = None, batch_size: int = 256
) -> list[str]:
    """Greedy answers, in normal notation, to problems in normal notation: `"123+4567"`,
    `"12x34"` / `"12*34"`, sorting as `"a:3,b:12"`, `"3,12"` or a list of ints (the answer is
    then the labels in ascending order, e.g. `"a,b"`).

    Accepts a list or one string. Raises `ValueError` with one message naming the problem when it
    has a character outside the vocabulary, or a number longer than the model's Abacus table can
    position. A model that never emits EOS gets the whole generated text back.

    Example (with a trained model)::

        answer(model, tokenizer, ["123+4567", "12x34", "a:3,b:12"])  # the answers, e.g. "4690" for the first

    Problems are checked before anything is generated, so an untrained model shows the errors:

    >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
    >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
    >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
    >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
    ...                                        num_hidden_layers=1, abacus_num_positions=16))
    >>> answer(model, ArithTokenizer(), "12?3")
    Traceback (most recent call last):
    ValueError: problem '12?3': ... '?' ...
    >>> answer(model, ArithTokenizer(), "1" * 20 + "+1")  # the table has rows for 15 digits
    Traceback (most recent call last):
    ValueError: problem '11111111111111111111+1': its numbers (and answer) need up to 21 digit positions, ...
    """
    from hf_arith.tasks import from_model_answer, to_model_format

    problems = [problems] if isinstance(problems, str) else list(problems)
    capacity = abacus_capacity(model)
    prompts, budgets = [], []
    for problem in problems:
        # `raise ... from None`: the message already says everything; a chained traceback from the
        # tokenizer or the task helpers would bury it.
        try:
            prompt = to_model_format(problem)
            tokenizer(prompt)  # the tokenizer names a character outside the vocabulary
        except ValueError as err:
            raise ValueError(f"problem {problem!r}: {err}") from None
        budget = _budget(problem, prompt)
        if capacity is not None:
            numbers, task = _number_lengths(problem), task_of_problem(problem)
            # A sum or product's digits are fed back too, and get Abacus positions like the operands.
            needed = max(numbers, default=0)
            if task in ("addition", "multiplication") and len(numbers) == 2:
                needed = answer_digit_bound(task, numbers)
            if needed > capacity:
                raise ValueError(
                    f"problem {problem!r}: its numbers (and answer) need up to {needed} digit positions, but this "
                    f"model's Abacus table positions at most {capacity} digits (abacus_num_positions="
                    f"{model.config.abacus_num_positions}); use shorter numbers"
                ) from None
        prompts.append(prompt)
        budgets.append(budget)

    # Similar lengths together keeps left padding small.
    order = sorted(range(len(prompts)), key=lambda k: (len(prompts[k]), budgets[k]))
    results = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        try:
            outputs = greedy_generate(
                model, tokenizer, [prompts[k] for k in batch], max(budgets[k] for k in batch), num_recurrences
            )
        except ValueError as err:  # e.g. the model's own Abacus-table check
            raise ValueError(f"{err}") from None
        for k, (text, _stopped) in zip(batch, outputs):
            try:
                results[k] = from_model_answer(text)
            except ValueError:
                results[k] = text  # not an answer the helpers can read; show it as produced
    return results


__all__ = ["answer", "task_of_problem"]
