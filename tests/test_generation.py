"""`generate` through the KV cache equals full recomputation, for both models and the position
options the saved folders of `tests/compat/` do not cover, under the installed transformers (beam
search, the cache under either keyword and `pipeline` are checked there, on the oldest and newest
releases too).

transformers 5.24 renamed the cache keyword from `past_key_values` to `cache`; a forward that
missed it started every step from an empty cache and generated other tokens, with no error. The
reference here is the model's own forward over the whole generated sequence, with no cache.
"""

import pytest
import torch

from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM

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
