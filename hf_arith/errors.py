"""Errors a user can fix: each message names the problem and what to do about it.

The CLI prints any `HfArithError` as one line (`error: ...`) and exits with status 2; anything
else is a bug and keeps its traceback.

Example:
    >>> raise RecipeError("train.lr: expected a number, got 'fast'; write e.g. lr: 3.0e-4")
    Traceback (most recent call last):
    hf_arith.errors.RecipeError: train.lr: expected a number, got 'fast'; write e.g. lr: 3.0e-4
"""

from __future__ import annotations


class HfArithError(Exception):
    """A problem with the user's input or environment, with one clear message saying what to do.

    Example:
        >>> str(HfArithError("no checkpoint in runs/x; train first or drop --resume"))
        'no checkpoint in runs/x; train first or drop --resume'
    """


class RecipeError(HfArithError):
    """A recipe (YAML or `--set` override) that cannot be used: unknown key, wrong type, bad value.

    Example:
        >>> str(RecipeError("unknown key 'lrr' in train; allowed: lr, betas, ..."))
        "unknown key 'lrr' in train; allowed: lr, betas, ..."
    """


__all__ = ["HfArithError", "RecipeError"]
