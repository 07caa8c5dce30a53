"""The arithmetic tokenizer, for library code: `build_arith_tokenizer()` and the vocabulary.

The class itself lives in `hf_arith.modeling.tokenization_arith` because it travels to the Hub
with every model; this module is the stable import path for everything else.

Example:
    >>> tok = build_arith_tokenizer()
    >>> tok("321+54=")["input_ids"], DIGIT_TOKEN_IDS[0], ARITH_VOCAB[3]
    ([7, 6, 5, 14, 9, 8, 18], 4, '<eos>')
"""

from __future__ import annotations

from hf_arith.modeling.tokenization_arith import ARITH_VOCAB, DIGIT_TOKEN_IDS, SPECIAL_TOKENS, ArithTokenizer


def build_arith_tokenizer(**kwargs) -> ArithTokenizer:
    """A fresh `ArithTokenizer` (pad 0, unk 1, bos 2, eos 3, digits 4..13, left padding).

    Keyword arguments go to the constructor (e.g. `padding_side="right"`).

    Example:
        >>> tok = build_arith_tokenizer()
        >>> tok.pad_token_id, tok.eos_token_id, tok.padding_side
        (0, 3, 'left')
    """
    return ArithTokenizer(**kwargs)


__all__ = ["ARITH_VOCAB", "DIGIT_TOKEN_IDS", "SPECIAL_TOKENS", "ArithTokenizer", "build_arith_tokenizer"]
