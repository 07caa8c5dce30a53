"""Batched greedy decoding for evaluation: left-padded prompts, the looped model's preallocated KV
cache (`kv_cache.py`), and answers cut at EOS.
"""

from __future__ import annotations

import torch

from hf_arith.modeling.layers import CACHE_NAME

from .kv_cache import preallocated_cache


def pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Left-pads token lists (generation continues from the right end of every row)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        if row:
            ids[k, width - len(row):] = torch.tensor(row)
            mask[k, width - len(row):] = 1
    return ids, mask


def eos_ids_of(model, tokenizer) -> set[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return set(ids)


def pad_id_of(model, tokenizer) -> int:
    for value in (tokenizer.pad_token_id, getattr(model.generation_config, "pad_token_id", None)):
        if value is not None:
            return int(value)
    return 0


def decode_answers(tokenizer, generated: torch.Tensor, eos_ids: set[int]) -> list[tuple[str, bool]]:
    """The text of each row up to its first EOS, and whether an EOS was produced.

    Tokens are mapped to their characters one by one and joined, so the text is exactly what the
    model produced whatever the tokenizer's decoder does with spaces; a stray special token shows
    up as e.g. `<pad>` and never matches an answer.

    Example:
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> tokenizer = build_arith_tokenizer()
        >>> decode_answers(tokenizer, torch.tensor([[7, 11, 7, 3, 0], [8, 9, 0, 0, 0]]), {tokenizer.eos_token_id})
        [('373', True), ('45<pad><pad><pad>', False)]
    """
    out = []
    for row in generated.tolist():
        stop = next((k for k, t in enumerate(row) if t in eos_ids), None)
        tokens = tokenizer.convert_ids_to_tokens(row if stop is None else row[:stop])
        out.append(("".join(tokens), stop is not None))
    return out


@torch.inference_mode()
def greedy_generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, num_recurrences: int | None = None,
) -> list[tuple[str, bool]]:
    """One left-padded batch of greedy decoding with the KV cache, stopping at EOS.

    Returns `(text, terminated)` per prompt, text cut before the EOS. A model with layers gets a
    cache sized for prompt + `max_new_tokens` that writes in place (`kv_cache.preallocated_cache`);
    the tokens are the same as with the default cache (`benchmarks/decode_kv_cache.py` measures
    both).

    Example:
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1, num_recurrences=1))
        >>> greedy_generate(model, build_arith_tokenizer(), ["321+54=", "7+8="], max_new_tokens=5)  # untrained
        [('<bos>ajjj', False), ('<bos>aj*i', False)]
    """
    encoded = tokenizer(prompts)["input_ids"]  # raises ValueError naming an unknown character
    pad_id = pad_id_of(model, tokenizer)
    input_ids, attention_mask = pad_left(encoded, pad_id)
    device = getattr(model, "device", torch.device("cpu"))
    eos_ids = eos_ids_of(model, tokenizer)
    kwargs = {} if num_recurrences is None else {"num_recurrences": int(num_recurrences)}
    if getattr(getattr(model, "config", None), "num_hidden_layers", None):
        kwargs[CACHE_NAME] = preallocated_cache(model, input_ids.shape[1] + max_new_tokens, num_recurrences)
    output = model.generate(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), max_new_tokens=max_new_tokens,
        do_sample=False, num_beams=1, pad_token_id=pad_id, eos_token_id=sorted(eos_ids) or None, use_cache=True,
        **kwargs,
    )
    return decode_answers(tokenizer, output[:, input_ids.shape[1]:].cpu(), eos_ids)


__all__ = ["decode_answers", "eos_ids_of", "greedy_generate", "pad_id_of", "pad_left"]
