"""Sorting: labelled numbers with reversed digits in, their labels in ascending order out.

Labels are the letters `a`..`j`, which can never be mistaken for a digit or for the separators
`:` `,` `=` (the reference code used digits as labels, which collide with the numbers).

Example:
    >>> SortingTask().format(321, 54).text  # 321 and 54 are normal values; 54 < 321
    'a:123,b:45=b,a'
"""

from __future__ import annotations

import random
import re

from .base import (
    Example,
    Task,
    check_length_range,
    check_non_negative_int,
    clean_prediction,
    read_reversed,
    reverse_digits,
    uniform_int_of_length,
)

LABELS = "abcdefghij"
# A model-format answer: one or more labels separated by commas.
_ANSWER = re.compile(rf"[{LABELS}](?:,[{LABELS}])*")


def sorted_labels(numbers: list[int]) -> list[str]:
    """The labels of `numbers` (labelled a, b, ... in order) by ascending value, ties by label.

    Example:
        >>> sorted_labels([5, 3, 5])
        ['b', 'a', 'c']
    """
    order = sorted(range(len(numbers)), key=lambda k: (numbers[k], k))
    return [LABELS[k] for k in order]


class SortingTask(Task):
    """`count` numbers (min_count..max_count, at most 10) of up to `max_digits` digits.

    The length cell of an example is (count, digits of its longest number). Sampling draws the
    cell uniformly from the grid, then gives each number a length uniform in [1, digits] and one
    random number exactly `digits`, so that the cell is what the example really contains.

    Example:
        >>> task = SortingTask()
        >>> task.format(12, 3).prompt, task.format(12, 3).answer, task.format(12, 3).lengths
        ('a:21,b:3=', 'b,a', (2, 2))
        >>> task.sample(random.Random(0), lengths=(4, 7)).lengths
        (4, 7)
    """

    name = "sorting"
    axes = ("count", "max_digits")
    axis_labels = ("numbers to sort", "digits per number (max)")

    def __init__(self, min_count: int = 1, max_count: int = 10, max_digits: int = 10, min_digits: int = 1):
        check_length_range(min_count, max_count, "count")
        if max_count > len(LABELS):
            raise ValueError(f"sorting has {len(LABELS)} labels ({LABELS}); max_count={max_count} is too many")
        check_length_range(min_digits, max_digits, "digits")
        self.min_count, self.max_count = min_count, max_count
        self.min_digits, self.max_digits = min_digits, max_digits

    def __repr__(self) -> str:
        return (f"SortingTask(min_count={self.min_count}, max_count={self.max_count}, "
                f"max_digits={self.max_digits}, min_digits={self.min_digits})")

    def answer_budget(self, lengths) -> int:
        """New tokens for the answer of cell (count, digits): `count` labels, `count - 1` commas
        between them, then EOS.

        Example:
            >>> SortingTask().answer_budget((4, 10))  # "a,b,c,d" then EOS
            8
        """
        return 2 * lengths[0]

    def longest_digit_run(self, lengths) -> int:
        """The longest number of cell (count, digits): `digits` (the answer is labels, no digits).

        Example:
            >>> SortingTask().longest_digit_run((10, 3))
            3
        """
        return lengths[1]

    def training_region(self) -> tuple[int, int]:
        """(max_count, max_digits): training draws up to `max_count` numbers of up to `max_digits`.

        Example:
            >>> SortingTask(max_count=5, max_digits=8).training_region()
            (5, 8)
        """
        return (self.max_count, self.max_digits)

    def card_example(self) -> dict:
        """The card's problem: sort 321, 54, 7 (as many of them as `max_count` allows, cut to
        `max_digits`), with its prompt, labels `answer` and `max_new_tokens`.

        Example:
            >>> SortingTask().card_example()
            {'numbers': [321, 54, 7], 'prompt': 'a:123,b:45,c:7=', 'answer': 'c,b,a', 'max_new_tokens': 6}
        """
        digits = min(self.max_digits, 3)
        numbers = [int("321"[:digits]), int("54"[:min(digits, 2)]), 7][:max(self.max_count, 1)]
        example = self.format(numbers)
        return {"numbers": numbers, "prompt": example.prompt, "answer": example.answer,
                "max_new_tokens": self.answer_budget(example.lengths)}

    def length_grid(self) -> list[tuple[int, int]]:
        """Every (count, longest number's digits) cell of the training distribution.

        Example:
            >>> SortingTask(max_count=2, max_digits=2).length_grid()
            [(1, 1), (1, 2), (2, 1), (2, 2)]
        """
        counts = range(self.min_count, self.max_count + 1)
        digits = range(self.min_digits, self.max_digits + 1)
        return [(n, d) for n in counts for d in digits]

    def sample(self, rng: random.Random, lengths: tuple[int, int] | None = None) -> Example:
        """A random example; `lengths=(count, digits)` forces the cell.

        Example:
            >>> SortingTask().sample(random.Random(1), lengths=(3, 2)).lengths
            (3, 2)
        """
        if lengths is None:
            count = rng.randint(self.min_count, self.max_count)
            digits = rng.randint(self.min_digits, self.max_digits)
        else:
            count, digits = lengths
        if not 1 <= count <= len(LABELS) or digits < 1:
            raise ValueError(f"sorting cell (count, digits) must have 1 <= count <= 10 and digits >= 1, got {lengths}")
        sizes = [rng.randint(1, digits) for _ in range(count)]
        sizes[rng.randrange(count)] = digits  # the cell's longest number has exactly `digits` digits
        return self.format(*(uniform_int_of_length(rng, size) for size in sizes))

    def format(self, *numbers) -> Example:
        """The example for Python ints (normal values), given as arguments or as one list.

        Example:
            >>> SortingTask().format([321, 54]).text
            'a:123,b:45=b,a'
        """
        if len(numbers) == 1 and isinstance(numbers[0], (list, tuple)):
            numbers = tuple(numbers[0])
        if not 1 <= len(numbers) <= len(LABELS):
            raise ValueError(f"sorting takes 1 to {len(LABELS)} numbers, got {len(numbers)}")
        numbers = [check_non_negative_int(n, "number to sort") for n in numbers]
        texts = [reverse_digits(n) for n in numbers]
        prompt = ",".join(f"{label}:{text}" for label, text in zip(LABELS, texts)) + "="
        answer = ",".join(sorted_labels(numbers))
        return Example(prompt, answer, (len(numbers), max(len(t) for t in texts)))

    def parse_prompt(self, prompt: str) -> list[int]:
        """The numbers of a model-format prompt, as Python ints in label order.

        Example:
            >>> SortingTask().parse_prompt("a:123,b:45=")
            [321, 54]
        """
        body = prompt[:-1] if prompt.endswith("=") else prompt
        numbers = []
        for k, item in enumerate(body.split(",")):
            label, _, digits = item.partition(":")
            if k >= len(LABELS) or label != LABELS[k]:
                raise ValueError(f"expected labels a, b, c, ... in order in {prompt!r}, got {label!r}")
            numbers.append(read_reversed(digits))
        return numbers

    def parse_answer(self, text: str) -> list[str]:
        """The labels of a model-format answer; `ValueError` when it is not `label(,label)*`.

        Example:
            >>> SortingTask().parse_answer("b,a<eos>")
            ['b', 'a']
        """
        text = clean_prediction(text)
        if not _ANSWER.fullmatch(text):
            raise ValueError(f"expected comma-separated labels {LABELS[0]}..{LABELS[-1]}, got {text!r}")
        return text.split(",")

    def score(self, prediction: str, example: Example) -> bool:
        """Exact match of the whole label list.

        Example:
            >>> ex = SortingTask().format(2, 1)
            >>> SortingTask().score("b,a", ex), SortingTask().score("a,b", ex)
            (True, False)
        """
        return clean_prediction(prediction) == example.answer


__all__ = ["LABELS", "SortingTask", "sorted_labels"]
