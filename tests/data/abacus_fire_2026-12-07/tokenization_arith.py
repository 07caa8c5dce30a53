"""Character-level tokenizer for arithmetic: one token per character over a fixed vocabulary.

This file travels to the Hub with every model (`trust_remote_code=True`), so it imports only
`tokenizers` (what transformers' fast tokenizers are built on) and `transformers`, and reads no
file itself: transformers opens the saved tokenizer.json.

Example:
    >>> tok = ArithTokenizer()
    >>> tok("321+54=")["input_ids"]
    [7, 6, 5, 14, 9, 8, 18]
    >>> tok.decode([7, 6, 5, 3], skip_special_tokens=True)
    '321'
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")
# Ids are the positions in this tuple: pad 0, unk 1, bos 2, eos 3, digits 4..13. Never reorder:
# checkpoints' embedding rows and `digit_token_ids` depend on it.
ARITH_VOCAB = SPECIAL_TOKENS + tuple("0123456789") + tuple("+-x*=,:") + tuple("abcdefghij")
DIGIT_TOKEN_IDS = [ARITH_VOCAB.index(d) for d in "0123456789"]


def build_backend() -> Tokenizer:
    """The `tokenizers.Tokenizer`: WordLevel over `ARITH_VOCAB`, split into single characters,
    decoded by plain concatenation (no spaces between digits).

    Example:
        >>> build_backend().encode("12").tokens
        ['1', '2']
    """
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(ARITH_VOCAB)}, unk_token="<unk>"))
    # `[\s\S]` matches any character, newlines included; every match is its own piece.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return backend


class ArithTokenizer(PreTrainedTokenizerFast):
    """Fast tokenizer over `ARITH_VOCAB`: never adds BOS/EOS, pads on the left (for batched
    generation), and raises `ValueError` for a character outside the vocabulary instead of
    silently encoding `<unk>`.

    Example:
        >>> tok = ArithTokenizer()
        >>> tok(["1+1=", "12+3="], padding=True)["input_ids"]
        [[0, 5, 14, 5, 18], [5, 6, 14, 7, 18]]
        >>> tok("1?2")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: character '?' in '1?2' is not in the arithmetic vocabulary; ...
    """

    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "left"

    def __init__(
        self,
        tokenizer_file: str | None = None,
        tokenizer_object: Tokenizer | None = None,
        pad_token: str = "<pad>",
        unk_token: str = "<unk>",
        bos_token: str = "<bos>",
        eos_token: str = "<eos>",
        padding_side: str = "left",
        **kwargs,
    ):
        # transformers may hand over the vocabulary it read from tokenizer.json; it is fixed here,
        # and BOS/EOS are never added, whatever a saved config says.
        for key in ("vocab", "merges", "add_bos_token", "add_eos_token"):
            kwargs.pop(key, None)
        # Reloading passes saved settings back as keywords; setdefault keeps them without clashing.
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        if tokenizer_object is None and tokenizer_file is None:
            tokenizer_object, tokenizer_file = build_backend(), None
        super().__init__(
            tokenizer_file=tokenizer_file,
            tokenizer_object=tokenizer_object,
            pad_token=pad_token,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            padding_side=padding_side,
            add_bos_token=False,
            add_eos_token=False,
            **kwargs,
        )
        vocab = self._tokenizer.get_vocab()
        self._allowed_chars = frozenset(t for t in vocab if len(t) == 1)
        self._special_texts = tuple(t for t in vocab if len(t) > 1)

    def check_text(self, text: str) -> None:
        """`ValueError` naming the first character of `text` outside the vocabulary (special
        token texts such as `<eos>` are allowed).

        Example:
            >>> ArithTokenizer().check_text("12+3=")
        """
        if not isinstance(text, str):
            return  # transformers rejects non-text input itself
        if set(text) <= self._allowed_chars:
            return  # the fast path for every well-formed problem
        stripped = text
        for special in self._special_texts:
            stripped = stripped.replace(special, "")
        for char in stripped:
            if char not in self._allowed_chars:
                allowed = "".join(t for t in ARITH_VOCAB if t in self._allowed_chars)
                raise ValueError(
                    f"character {char!r} in {text!r} is not in the arithmetic vocabulary; "
                    f"allowed characters: {allowed}"
                )

    def _check_input(self, value) -> None:
        """Checks a str, a batch of str, or pre-tokenized input (lists of str) recursively."""
        if isinstance(value, str):
            self.check_text(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self._check_input(item)

    def _encode_plus(self, text, text_pair=None, *args, **kwargs):
        # Every public encoding path (`__call__`, `encode`, `tokenize`, batches) ends here.
        self._check_input(text)
        self._check_input(text_pair)
        return super()._encode_plus(text, text_pair, *args, **kwargs)


# `save_pretrained` then writes `auto_map` and copies this file next to the tokenizer.
ArithTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = ["ARITH_VOCAB", "DIGIT_TOKEN_IDS", "SPECIAL_TOKENS", "ArithTokenizer", "build_backend"]
