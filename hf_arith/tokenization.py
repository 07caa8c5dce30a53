"""Tokenizers, for library code: the arithmetic tokenizer and byte-level BPE training (OLMo).

`build_arith_tokenizer()` and the vocabulary: the class itself lives in
`hf_arith.modeling.tokenization_arith` because it travels to the Hub with every model; this
module is the stable import path for everything else.

`train_bpe_tokenizer(texts, vocab_size, out)`: a byte-level BPE trained with `tokenizers`, saved
as a folder `AutoTokenizer.from_pretrained` loads (`hf-arith tokenizer train`).

Example:
    >>> tok = build_arith_tokenizer()
    >>> tok("321+54=")["input_ids"], DIGIT_TOKEN_IDS[0], ARITH_VOCAB[3]
    ([7, 6, 5, 14, 9, 8, 18], 4, '<eos>')
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from hf_arith.atomic import folder_written_atomically
from hf_arith.errors import HfArithError
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


# GPT-NeoX's special tokens, which OLMo-1 kept: end of text (EOS, also the document separator) and padding.
BPE_EOS, BPE_PAD = "<|endoftext|>", "<|padding|>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, out: str | os.PathLike | None = None,
                        min_frequency: int = 2):
    """Trains a byte-level BPE (GPT-2/NeoX style, as OLMo's) on the strings `texts` and returns it
    as a `PreTrainedTokenizerFast`, saved to `out` when given. (`hf_arith.data.text.iter_texts`
    reads them from files or the built-in corpus.) Special tokens: `<|endoftext|>` (id 0, EOS) and `<|padding|>` (id 1,
    pad); no BOS. Encoding adds no special token: `tokenizer(prompt)` is ready for generation,
    and the data pipeline appends EOS to every document itself.

    Example:
        >>> tok = train_bpe_tokenizer(["the cat sat on the mat"] * 50, vocab_size=270)
        >>> tok.eos_token_id, tok.pad_token_id, tok.bos_token_id, len(tok), tok.padding_side
        (0, 1, None, 270, 'left')
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 2:
        raise HfArithError(f"--vocab-size {vocab_size} is too small: a byte-level BPE needs the {len(alphabet)} "
                           f"byte symbols and 2 special tokens; use at least {len(alphabet) + 2}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[BPE_EOS, BPE_PAD],
                                  initial_alphabet=alphabet, show_progress=False)
    seen = [0]

    def counted(texts):
        for text in texts:  # a string, or a batch of them
            seen[0] += any(t.strip() for t in ([text] if isinstance(text, str) else text))
            yield text

    backend.train_from_iterator(counted(texts), trainer)
    if not seen[0]:  # the trainer would return the bare byte alphabet, with no merge learned
        raise HfArithError("the corpus has no text to train a tokenizer on (empty files, or a --text-field that "
                           "no record has); give files with text")
    # Left padding: a decoder-only model generates after the prompt's last token, so batched
    # generation needs the padding before the prompt.
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=BPE_EOS, pad_token=BPE_PAD,
                                        padding_side="left")
    if out is not None:
        # tokenizer.json written in place was left empty or cut short by a full disk.
        with folder_written_atomically(out) as tmp:
            tokenizer.save_pretrained(tmp)
    return tokenizer


__all__ = ["ARITH_VOCAB", "BPE_EOS", "BPE_PAD", "DIGIT_TOKEN_IDS", "SPECIAL_TOKENS", "ArithTokenizer",
           "build_arith_tokenizer", "train_bpe_tokenizer"]
