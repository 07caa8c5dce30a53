"""`generate` through the KV cache equals full recomputation, for both models, under the installed
transformers (and, through `make test-compat`, under the oldest and newest we declare).

transformers 5.24 renamed the cache keyword from `past_key_values` to `cache`; a forward that
missed it started every step from an empty cache and generated other tokens, with no error. The
reference here is the model's own forward over the whole generated sequence, with no cache.
"""

import pytest
import torch
from transformers import pipeline

from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
from hf_arith.modeling.layers import CACHE_NAME, either_cache
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
from hf_arith.tokenization import build_arith_tokenizer

DIGITS = list(range(4, 14))


def abacus_model(**overrides):
    torch.manual_seed(0)
    values = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
                  num_recurrences=2, abacus_num_positions=64, abacus_max_k=8, initializer_range=0.2)
    return AbacusForCausalLM(AbacusConfig(**{**values, **overrides})).eval()


def olmo_model(**overrides):
    torch.manual_seed(0)
    values = dict(vocab_size=31, hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
                  pad_token_id=0, bos_token_id=2, eos_token_id=3, init_fn="normal", initializer_range=0.2)
    return ArithOlmoForCausalLM(ArithOlmoConfig(**{**values, **overrides})).eval()


MODELS = {
    "abacus": abacus_model,
    "abacus-fire": lambda: abacus_model(attention_positions="fire"),
    "abacus-rope-3x": lambda: abacus_model(attention_positions="rope", num_recurrences=3),
    "olmo": olmo_model,
    "olmo-abacus": lambda: olmo_model(abacus=True, digit_token_ids=DIGITS, abacus_num_positions=64),
}


def left_padded():
    ids = torch.tensor([[0, 0, 0, 5, 6, 14, 7, 18], [5, 6, 7, 14, 8, 9, 10, 18], [0, 0, 0, 0, 9, 14, 4, 18]])
    return ids, (ids != 0).long()


@pytest.mark.parametrize("name", MODELS)
def test_cached_scores_equal_full_recomputation(name):
    model = MODELS[name]()
    ids, mask = left_padded()
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0,
                  eos_token_id=None, output_scores=True, return_dict_in_generate=True)
    cached = model.generate(**kwargs)
    uncached = model.generate(**kwargs, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(torch.stack(cached.scores), torch.stack(uncached.scores), atol=1e-4, rtol=1e-4)
    # The independent reference: one forward over the whole sequence, no cache, no generate.
    full_mask = torch.cat([mask, torch.ones(3, 6, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        logits = model(input_ids=cached.sequences, attention_mask=full_mask, use_cache=False).logits
    expected = logits[:, ids.shape[1] - 1 : -1].transpose(0, 1)
    torch.testing.assert_close(torch.stack(cached.scores), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["abacus", "olmo"])
def test_beam_search_with_cache_equals_without(name):
    model = MODELS[name]()
    ids, mask = left_padded()
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=5, num_beams=3, do_sample=False,
                  pad_token_id=0, eos_token_id=None, output_scores=True, return_dict_in_generate=True)
    cached, uncached = model.generate(**kwargs), model.generate(**kwargs, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["abacus", "olmo"])
def test_the_cache_is_taken_under_either_name_and_returned_under_the_installed_one(name):
    model = MODELS[name]()
    ids = torch.tensor([[5, 6, 14, 7, 8, 18, 9, 4]])
    with torch.no_grad():
        full = model(input_ids=ids).logits
        for keyword in ("cache", "past_key_values"):
            first = model(input_ids=ids[:, :5], use_cache=True)
            cache = getattr(first, CACHE_NAME)
            assert cache is not None and cache.get_seq_length() == 5
            rest = model(input_ids=ids[:, 5:], **{keyword: cache}).logits
            torch.testing.assert_close(rest, full[:, 5:], atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="not both"):
            model(input_ids=ids, cache=cache, past_key_values=cache)
    assert either_cache(None, "pkv") == "pkv" and either_cache("c", None) == "c"


@pytest.mark.parametrize("name", ["abacus", "olmo"])
def test_pipeline_generates_what_the_model_generates(name):
    model = MODELS[name]()
    tokenizer = build_arith_tokenizer()
    prompt = "21+43="
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    expected = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generator(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None, return_full_text=False)
    assert text[0]["generated_text"] == tokenizer.decode(expected[0, ids.shape[1]:], skip_special_tokens=True)
