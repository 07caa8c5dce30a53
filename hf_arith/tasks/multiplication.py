"""Multiplication in the Abacus paper's format: `axb=` then the product, digits reversed, no
zero padding of the operands.

Example:
    >>> MultiplicationTask().format(12, 34).text
    '21x43=804'
"""

from __future__ import annotations

from .base import BinaryOperationTask


class MultiplicationTask(BinaryOperationTask):
    """Operands of `min_digits`..`max_digits` digits (paper: 1..15), every length pair equally likely by default.

    Example:
        >>> task = MultiplicationTask()
        >>> task.max_digits, task.format(99, 9).answer
        (15, '198')
    """

    name = "multiplication"
    operator = "x"
    default_max_digits = 15

    def apply(self, a: int, b: int) -> int:
        """a * b.

        Example:
            >>> MultiplicationTask().apply(12, 34)
            408
        """
        return a * b

    def answer_digits(self, lengths) -> int:
        """The most digits a product of operands of lengths (len_a, len_b) can have.

        Example:
            >>> MultiplicationTask().answer_digits((3, 5))  # 999 * 99999 = 99899001
            8
        """
        return sum(lengths)  # a < 10**len_a and b < 10**len_b, so a * b < 10**(len_a + len_b)


__all__ = ["MultiplicationTask"]
