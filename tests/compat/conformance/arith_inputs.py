"""Batches of real arithmetic for the testers: reversed-digit additions `a+b=` in the hf-arith
vocabulary (pad 0, digits 4..13, `+` 14, `=` 18), left-padded to one length, as `generate` and the
trainer see them."""

import random

import torch

PAD, PLUS, EQUALS = 0, 14, 18
DIGITS = list(range(4, 14))


def addition_ids(a: int, b: int) -> list[int]:
    digits = lambda n: [DIGITS[int(c)] for c in str(n)[::-1]]  # noqa: E731
    return [*digits(a), PLUS, *digits(b), EQUALS]


def left_padded_additions(batch_size: int, seq_length: int, seed: int = 0):
    """(input_ids, attention_mask), each (batch_size, seq_length); the first row fills the length."""
    rng = random.Random(seed)
    rows = []
    for row in range(batch_size):
        while True:
            a, b = rng.randrange(10 ** rng.randint(1, 5)), rng.randrange(10 ** rng.randint(1, 5))
            ids = addition_ids(a, b)
            if len(ids) <= seq_length and (row or len(ids) == seq_length):
                break
        rows.append([PAD] * (seq_length - len(ids)) + ids)
    input_ids = torch.tensor(rows)
    return input_ids, (input_ids != PAD).long()
