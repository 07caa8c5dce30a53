"""Addition in the Abacus paper's format: `a+b=` then the sum, every number's digits reversed.

Example:
    >>> AdditionTask().format(36001, 711271888385599787).text  # the example line of the spec
    '10063+787995583888172117=887536583888172117'
"""

from __future__ import annotations

from .base import BinaryOperationTask


class AdditionTask(BinaryOperationTask):
    """Operands of `min_digits`..`max_digits` digits (paper: 1..20), every length pair equally likely by default.

    Example:
        >>> import random
        >>> task = AdditionTask(max_digits=20)
        >>> task.format(123, 4567).prompt, task.format(123, 4567).answer
        ('321+7654=', '0964')
        >>> task.sample(random.Random(0)).lengths[0] in range(1, 21)
        True
    """

    name = "addition"
    operator = "+"
    default_max_digits = 20

    def apply(self, a: int, b: int) -> int:
        """a + b.

        Example:
            >>> AdditionTask().apply(2, 3)
            5
        """
        return a + b

    def answer_digits(self, lengths) -> int:
        """The most digits a sum of operands of lengths (len_a, len_b) can have.

        Example:
            >>> AdditionTask().answer_digits((3, 5))  # 999 + 99999 = 100998
            6
        """
        return max(lengths) + 1  # a carry out of the longest operand adds one digit


__all__ = ["AdditionTask"]
