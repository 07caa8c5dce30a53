"""Conversion between normal notation (what people type) and model format (reversed digits).

Accepted problems, whitespace ignored, a trailing `=` optional:
- `"123+4567"` -> `"321+7654="`; `"12x34"` and `"12*34"` -> `"21x43="` (`*` becomes `x`, the
  operator the multiplication task trains on);
- sorting, as a list of ints `[3, 12]`, as comma-separated numbers `"3,12"`, or labelled
  `"a:3,b:12"` (labels must be a, b, c, ... in order) -> `"a:3,b:21="`.
Leading zeros are dropped (`"007+1"` is `7+1`): training data never zero-pads a number.

Example:
    >>> to_model_format("123+4567"), to_model_format([123, 45])
    ('321+7654=', 'a:321,b:54=')
    >>> from_model_answer("0964"), from_model_answer("b,a")
    ('4690', 'b,a')
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .base import DIGITS, clean_prediction
from .sorting import LABELS, SortingTask

_BINARY = re.compile(r"([0-9]+)([+x*])([0-9]+)")
_LABELLED = re.compile(rf"([{LABELS}]):([0-9]+)")
_ALLOWED = "0123456789+x*=,:" + LABELS
_SORTING = SortingTask()


def _check_characters(problem: str) -> None:
    """`ValueError` naming every character that no problem can contain."""
    if "-" in problem:  # the tokenizer has a "-" token, but no task writes one
        raise ValueError("no task has negative numbers or subtraction ('-'): the tasks add, multiply and sort "
                         "non-negative integers")
    bad = sorted(set(problem) - set(_ALLOWED))
    if bad:
        names = ", ".join(repr(c) for c in bad)
        raise ValueError(f"unexpected character(s) {names} in {problem!r}; allowed: {_ALLOWED} and spaces")


def _sorting_prompt(items: list[str], problem: str) -> str:
    """Model-format sorting prompt from the items of a comma-separated list."""
    numbers = []
    for k, item in enumerate(items):
        labelled = _LABELLED.fullmatch(item)
        if labelled:
            if labelled.group(1) != LABELS[k:k + 1]:
                raise ValueError(f"labels must be a, b, c, ... in order in {problem!r}")
            item = labelled.group(2)
        if not DIGITS.fullmatch(item):
            raise ValueError(f"cannot read {item!r} in {problem!r} as a number to sort")
        numbers.append(int(item))
    return _SORTING.format(numbers).prompt


def to_model_format(problem: str | Sequence[int]) -> str:
    """The model-format prompt (ending in `=`) of a problem in normal notation; see the module
    docstring for what is accepted. `ValueError` names what cannot be read.

    Example:
        >>> to_model_format("123+4567"), to_model_format("12*34"), to_model_format("a:3,b:12")
        ('321+7654=', '21x43=', 'a:3,b:21=')
    """
    if not isinstance(problem, str):
        return _SORTING.format(list(problem)).prompt
    text = "".join(problem.split())
    _check_characters(text)
    text = text[:-1] if text.endswith("=") else text
    binary = _BINARY.fullmatch(text)
    if binary:
        a, op, b = binary.groups()
        op = "x" if op == "*" else op
        return f"{str(int(a))[::-1]}{op}{str(int(b))[::-1]}="
    if "," in text or ":" in text:
        return _sorting_prompt(text.split(","), problem)
    raise ValueError(
        f"cannot read {problem!r}: expected 'a+b', 'axb' or 'a*b' with non-negative integers, "
        "or numbers to sort like '3,12' / 'a:3,b:12'"
    )


def from_model_answer(text: str) -> str:
    """An answer in normal notation: reversed digits are put back in order; sorting labels pass
    through. EOS/padding text and whitespace are dropped. `ValueError` on anything else.

    Example:
        >>> from_model_answer("0964"), from_model_answer("b,a<eos>")
        ('4690', 'b,a')
    """
    answer = clean_prediction(text)
    if DIGITS.fullmatch(answer):
        return answer[::-1]
    try:
        return ",".join(_SORTING.parse_answer(answer))
    except ValueError:
        raise ValueError(f"{text!r} is neither reversed digits nor sorting labels") from None


def task_of(problem: str | Sequence[int]) -> str:
    """The task a problem in normal notation belongs to: `"addition"`, `"multiplication"` or
    `"sorting"`; `ValueError` as `to_model_format` for one that is none.

    Example:
        >>> task_of("123+4567"), task_of("12*3"), task_of([3, 12])
        ('addition', 'multiplication', 'sorting')
    """
    formatted = to_model_format(problem)
    if ":" in formatted:
        return "sorting"
    return "multiplication" if "x" in formatted else "addition"


__all__ = ["from_model_answer", "task_of", "to_model_format"]
