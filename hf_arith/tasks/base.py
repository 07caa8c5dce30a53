"""What every arithmetic task shares: the `Task` base class, the `Example` record and small digit
helpers.

The model reads and writes every number least-significant digit first ("model format"), so that
it can emit the answer in the order carries propagate. Helpers here convert between Python ints
and that reversed text, sample numbers of an exact length, and derive independent seeds.

Example:
    >>> Example("321+54=", "573", (3, 2)).text
    '321+54=573'
    >>> reverse_digits(4690), read_reversed("0964")
    ('0964', 4690)
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

# One or more ASCII digits; `str.isdigit` would also accept e.g. "²" or Arabic-Indic digits.
DIGITS = re.compile(r"[0-9]+")
# Text the model may emit around an answer that is not part of it (decoded special tokens).
_EOS_TEXT, _NOISE_TEXT = "<eos>", ("<pad>", "<bos>")


@dataclass(frozen=True)
class Example:
    """One problem in model format. `answer` excludes the EOS token.

    `lengths` are the operand lengths (addition, multiplication) or (count, longest number's
    digits) for sorting: the evaluation grid's cell of the example.

    Example:
        >>> ex = Example("321+54=", "573", (3, 2))
        >>> ex.text, ex.lengths
        ('321+54=573', (3, 2))
    """

    prompt: str
    answer: str
    lengths: tuple[int, ...]

    @property
    def text(self) -> str:
        """Prompt followed by answer (no EOS), the string a training row spells.

        Example:
            >>> Example("1+1=", "2", (1, 1)).text
            '1+1=2'
        """
        return self.prompt + self.answer


def check_non_negative_int(value, what: str = "operand") -> int:
    """`value` as an int, or `ValueError`: only non-negative integers (not bools) are operands.

    Example:
        >>> check_non_negative_int(7)
        7
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a non-negative int, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be non-negative, got {value}")
    return value


def reverse_digits(value: int) -> str:
    """The decimal digits of a non-negative int, least significant first (no zero padding).

    Example:
        >>> reverse_digits(123), reverse_digits(0)
        ('321', '0')
    """
    return str(check_non_negative_int(value, "number"))[::-1]


def read_reversed(text: str) -> int:
    """The int spelled by least-significant-first digits; `ValueError` on anything else.

    Example:
        >>> read_reversed("573")
        375
    """
    if not isinstance(text, str) or not DIGITS.fullmatch(text):
        raise ValueError(f"expected reversed decimal digits, got {text!r}")
    return int(text[::-1])


def uniform_int_of_length(rng: random.Random, n: int) -> int:
    """A uniform draw among the integers with exactly `n` decimal digits (1 digit: 0..9).

    Example:
        >>> len(str(uniform_int_of_length(random.Random(0), 5)))
        5
    """
    if n < 1:
        raise ValueError(f"a number has at least 1 digit, got length {n}")
    if n == 1:
        return rng.randrange(10)  # 0 is a 1-digit number; longer numbers have no leading zero
    return rng.randrange(10 ** (n - 1), 10**n)


def clean_prediction(text: str) -> str:
    """A generated answer without what is not part of it: everything from the first `<eos>`,
    `<pad>`/`<bos>` texts, surrounding whitespace.

    Example:
        >>> clean_prediction(" 573<eos><pad>")
        '573'
    """
    text = text.split(_EOS_TEXT, 1)[0]
    for noise in _NOISE_TEXT:
        text = text.replace(noise, "")
    return text.strip()


def derive_seed(*parts) -> int:
    """A 64-bit seed from any printable parts, stable across processes and Python versions
    (unlike `hash()`), so that e.g. an evaluation cell's stream ("eval", task, seed, cell) is the
    same everywhere and shares nothing with another cell's.

    Example:
        >>> derive_seed("eval", "addition", 0, (3, 3)) == derive_seed("eval", "addition", 0, (3, 3))
        True
    """
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def check_length_range(low: int, high: int, what: str) -> None:
    """`ValueError` unless 1 <= low <= high.

    Example:
        >>> check_length_range(1, 20, "digits")
    """
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        raise ValueError(f"{what} range must satisfy 1 <= min <= max, got [{low}, {high}]")


class Task:
    """What a task knows about itself, so that evaluation, generation and the model card ask the
    task instead of comparing names (like lm-eval-harness keeps a task's knowledge on its class).

    A task's problems fall in cells of a two-axis grid: `Example.lengths` is the cell, `axes`
    names its two lengths and `axis_labels` says them in words. Subclasses set `name`, `axes`,
    `axis_labels` and implement `format`, `parse_prompt`, `answer_budget`, `longest_digit_run`,
    `training_region` and `card_example`.

    Example:
        >>> from hf_arith.tasks import get_task
        >>> task = get_task("sorting")
        >>> task.axes, task.training_region(), task.answer_budget((3, 5))
        (('count', 'max_digits'), (10, 10), 6)
    """

    name = ""
    axes: tuple[str, str] = ("len_a", "len_b")
    axis_labels: tuple[str, str] = ("digits of a", "digits of b")

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def format(self, *operands) -> Example:  # pragma: no cover - abstract
        raise NotImplementedError

    def parse_prompt(self, prompt: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def example_of(self, prompt: str) -> Example:
        """The example of a model-format prompt, its answer computed by the task (from Python ints);
        `ValueError` when the prompt is not one of this task's.

        Example:
            >>> from hf_arith.tasks import get_task
            >>> get_task("addition").example_of("321+54=")  # 123 + 45 = 168
            Example(prompt='321+54=', answer='861', lengths=(3, 2))
        """
        return self.format(*self.parse_prompt(prompt))

    def answer_budget(self, lengths: Sequence[int]) -> int:  # pragma: no cover - abstract
        """New tokens (the EOS included) that suffice for the longest answer of cell `lengths`,
        from the lengths alone (never from a ground truth): generation's `max_new_tokens`."""
        raise NotImplementedError

    def longest_digit_run(self, lengths: Sequence[int]) -> int:  # pragma: no cover - abstract
        """The most digits in one number (operand or answer) that cell `lengths` puts through the
        model: what an Abacus table must be able to position."""
        raise NotImplementedError

    def training_region(self) -> tuple[int, int]:  # pragma: no cover - abstract
        """The largest length per axis that this task's training draws: a cell is in distribution
        when each of its lengths is at most the region's."""
        raise NotImplementedError

    def card_example(self) -> dict:  # pragma: no cover - abstract
        """The problem a model card's how-to snippet solves, inside the training region."""
        raise NotImplementedError


class BinaryOperationTask(Task):
    """Shared by addition and multiplication: `a OP b=` with reversed digits, answer reversed.

    Each operand's length is drawn from [min_digits, max_digits], then the operand uniformly among
    the numbers of exactly that length, so short operands are not drowned by the 9x more numbers of
    each extra digit. `length_sampling` chooses the length distribution:

    - "uniform" (the paper's, SPEC "Data format"): every (len_a, len_b) cell equally frequent;
    - "linear": P(length n) proportional to n - min_digits + 1, so the longest, hardest lengths of
      the training range are seen most (10 digits 10x as often as 1 digit at max_digits=10).
      A study option (README, "Length-generalisation study"); the evaluation grid draws per cell
      (`sample(rng, lengths)`) and never uses it.

    Subclasses set `name`, `operator`, `default_max_digits`, `apply` and `answer_digits`.

    Raises:
        ValueError: a length range that is not 1 <= min_digits <= max_digits, or an unknown
            `length_sampling`.
    """

    operator = ""
    default_max_digits = 20
    length_samplings = ("uniform", "linear")

    def __init__(self, min_digits: int = 1, max_digits: int | None = None, length_sampling: str = "uniform"):
        max_digits = self.default_max_digits if max_digits is None else max_digits
        check_length_range(min_digits, max_digits, "operand digits")
        if length_sampling not in self.length_samplings:
            raise ValueError(f"unknown length_sampling {length_sampling!r}; choose one of "
                             f"{list(self.length_samplings)} ('uniform' is the paper's)")
        self.min_digits, self.max_digits, self.length_sampling = min_digits, max_digits, length_sampling

    def __repr__(self) -> str:
        sampling = "" if self.length_sampling == "uniform" else f", length_sampling={self.length_sampling!r}"
        return f"{type(self).__name__}(min_digits={self.min_digits}, max_digits={self.max_digits}{sampling})"

    def apply(self, a: int, b: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def answer_digits(self, lengths: Sequence[int]) -> int:  # pragma: no cover - abstract
        """The most digits `apply` can give for operands of lengths (len_a, len_b)."""
        raise NotImplementedError

    def answer_budget(self, lengths: Sequence[int]) -> int:
        """New tokens for the longest answer of cell (len_a, len_b): its digits, then EOS.

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask().answer_budget((3, 5))  # 99999 + 999 = 100998: 6 digits, then EOS
            7
        """
        return self.answer_digits(lengths) + 1

    def longest_digit_run(self, lengths: Sequence[int]) -> int:
        """The longest number cell (len_a, len_b) puts through the model: an operand or the answer.

        Example:
            >>> from hf_arith.tasks import MultiplicationTask
            >>> MultiplicationTask().longest_digit_run((3, 5))  # 999 * 99999 has 8 digits
            8
        """
        return max(*lengths, self.answer_digits(lengths))

    def training_region(self) -> tuple[int, int]:
        """(max_digits, max_digits): training draws both operands of 1..max_digits digits.

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask(max_digits=10).training_region()
            (10, 10)
        """
        return (self.max_digits, self.max_digits)

    def card_example(self) -> dict:
        """The card's problem `a OP b` (a = 123, b = 4567, cut to `max_digits`), with its prompt,
        reversed `answer`, the answer in normal notation (`expected`) and `max_new_tokens`.

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask(max_digits=2).card_example()["prompt"]
            '21+54='
        """
        a, b = int("123"[:min(self.max_digits, 3)]), int("4567"[:min(self.max_digits, 4)])
        example = self.format(a, b)
        return {"a": a, "b": b, "operator": self.operator, "prompt": example.prompt, "answer": example.answer,
                "expected": example.answer[::-1], "max_new_tokens": self.answer_budget(example.lengths)}

    def length_grid(self) -> list[tuple[int, int]]:
        """Every (len_a, len_b) cell of the training distribution, row by row.

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask(max_digits=2).length_grid()
            [(1, 1), (1, 2), (2, 1), (2, 2)]
        """
        span = range(self.min_digits, self.max_digits + 1)
        return [(la, lb) for la in span for lb in span]

    def sample(self, rng: random.Random, lengths: tuple[int, int] | None = None) -> Example:
        """A random example; `lengths=(la, lb)` forces the operand lengths (may lie outside the
        training range, for evaluation).

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask().sample(random.Random(0), lengths=(3, 2)).lengths
            (3, 2)
        """
        la, lb = (self._draw_length(rng), self._draw_length(rng)) if lengths is None else lengths
        return self.format(uniform_int_of_length(rng, la), uniform_int_of_length(rng, lb))

    def _draw_length(self, rng: random.Random) -> int:
        if self.length_sampling == "uniform":  # randint keeps the random stream of earlier runs
            return rng.randint(self.min_digits, self.max_digits)
        span = range(self.min_digits, self.max_digits + 1)
        return rng.choices(span, weights=range(1, len(span) + 1))[0]

    def format(self, a: int, b: int) -> Example:
        """The example for Python ints `a` and `b` (normal values, reversed here).

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask().format(123, 45)
            Example(prompt='321+54=', answer='861', lengths=(3, 2))
        """
        ra, rb = reverse_digits(a), reverse_digits(b)
        return Example(f"{ra}{self.operator}{rb}=", reverse_digits(self.apply(a, b)), (len(ra), len(rb)))

    def parse_prompt(self, prompt: str) -> tuple[int, int]:
        """The operands of a model-format prompt, as Python ints (the inverse of `format`).

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask().parse_prompt("321+54=")
            (123, 45)
        """
        body = prompt[:-1] if prompt.endswith("=") else prompt
        parts = body.split(self.operator)
        if len(parts) != 2:
            raise ValueError(f"expected a {self.name} prompt like '21{self.operator}3=', got {prompt!r}")
        return read_reversed(parts[0]), read_reversed(parts[1])

    def parse_answer(self, text: str) -> int:
        """The int a model-format answer spells; `ValueError` when it is not reversed digits.

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> AdditionTask().parse_answer("573")
            375
        """
        return read_reversed(clean_prediction(text))

    def score(self, prediction: str, example: Example) -> bool:
        """Exact match of the whole answer string (after dropping EOS/padding text), so a
        trailing zero or an extra digit is wrong even where the integer would be equal.

        Example:
            >>> from hf_arith.tasks import AdditionTask
            >>> ex = Example("321+54=", "573", (3, 2))
            >>> AdditionTask().score("573<eos>", ex), AdditionTask().score("5730", ex)
            (True, False)
        """
        return clean_prediction(prediction) == example.answer


__all__ = [
    "BinaryOperationTask",
    "Task",
    "DIGITS",
    "Example",
    "check_length_range",
    "check_non_negative_int",
    "clean_prediction",
    "derive_seed",
    "read_reversed",
    "reverse_digits",
    "uniform_int_of_length",
]
