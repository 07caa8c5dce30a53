"""Answer arithmetic problems written the normal way: "123+4567" in, "4690" out.

The model reads and writes digits least-significant first; `answer` converts with the task
helpers (`to_model_format`, `from_model_answer`) so that users never reverse digits by hand.

Example (with a trained model, e.g. from `make quickstart`)::

    from hf_arith.evaluation.commands import load_for_inference

    model, tokenizer = load_for_inference("runs/addition_cpu/final")
    answer(model, tokenizer, ["123+4567", "99+1"])  # a list of answers in normal notation: "4690", "100"
"""

from __future__ import annotations

from hf_arith.tasks import from_model_answer, task_for_prompt, to_model_format

from .decoding import greedy_generate
from .grid import abacus_capacity_of


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
    problems = [problems] if isinstance(problems, str) else list(problems)
    capacity = abacus_capacity_of(model.config)
    prompts, budgets = [], []
    for problem in problems:
        # `raise ... from None`: the message already says everything; a chained traceback from the
        # tokenizer or the task helpers would bury it.
        try:
            prompt = to_model_format(problem)
            tokenizer(prompt)  # the tokenizer names a character outside the vocabulary
            task = task_for_prompt(prompt)
        except ValueError as err:
            raise ValueError(f"problem {problem!r}: {err}") from None
        cell = task.example_of(prompt).lengths
        budget = task.answer_budget(cell)  # from the lengths alone, as in the grid
        if capacity is not None:
            # A sum or product's digits are fed back too, and get Abacus positions like the operands.
            needed = task.longest_digit_run(cell)
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


__all__ = ["answer"]
