"""Length grids as users write them (`--lengths`, evaluator `lengths:`): `"1-40"`, `"1-40x1-20"`,
`"101-160:equal"`, parsed into the cells an evaluation covers.
"""

from __future__ import annotations

import re


def parse_range(text: str) -> list[int]:
    """`"1-40"` -> 1..40, `"5"` -> [5], `"1-10,20,30-32"` -> the union.

    Example:
        >>> parse_range("1-3,7")
        [1, 2, 3, 7]
    """
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise ValueError(f"bad length range {text!r}: use e.g. 1-40, 5 or 1-10,20")
        lo, hi = int(match[1]), int(match[2] or match[1])
        if lo < 1 or hi < lo:
            raise ValueError(f"bad length range {part.strip()!r} in {text!r}: need 1 <= start <= end")
        values.update(range(lo, hi + 1))
    return sorted(values)


def parse_lengths(spec: str) -> dict:
    """Keyword arguments of `evaluate_grid` for a `--lengths` value.

    `"1-40"`: the square grid; `"1-40x1-20"`: len_a x len_b (sorting: count x max digits);
    `"101-160:equal"`: only equal lengths (the paper's extreme-length check).

    Example:
        >>> parse_lengths("1-2x3")
        {'lengths_a': [1, 2], 'lengths_b': [3], 'pairs': None}
        >>> parse_lengths("101-102:equal")["pairs"]
        [(101, 101), (102, 102)]
    """
    spec = spec.strip()
    if spec.endswith(":equal"):
        lengths = parse_range(spec.removesuffix(":equal"))
        return {"lengths_a": None, "lengths_b": None, "pairs": [(n, n) for n in lengths]}
    if ":" in spec:
        raise ValueError(f"bad --lengths {spec!r}: the only suffix is ':equal' (e.g. 101-160:equal)")
    parts = spec.lower().split("x")
    if len(parts) > 2:
        raise ValueError(f"bad --lengths {spec!r}: use A, AxB or A:equal (e.g. 1-40, 1-40x1-20, 101-160:equal)")
    lengths_a = parse_range(parts[0])
    lengths_b = parse_range(parts[1]) if len(parts) == 2 else None
    return {"lengths_a": lengths_a, "lengths_b": lengths_b, "pairs": None}


def cells_of(spec: str) -> list[tuple[int, int]]:
    """The (len_a, len_b) cells a `--lengths` value names.

    Example:
        >>> cells_of("1-2")
        [(1, 1), (1, 2), (2, 1), (2, 2)]
    """
    parsed = parse_lengths(spec)
    if parsed["pairs"] is not None:
        return parsed["pairs"]
    lengths_b = parsed["lengths_b"] or parsed["lengths_a"]
    return [(a, b) for a in parsed["lengths_a"] for b in lengths_b]


__all__ = ["cells_of", "parse_lengths", "parse_range"]
