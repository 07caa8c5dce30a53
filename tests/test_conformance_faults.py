"""What transformers' common model tests found wrong (issue 21), each as a test of ours with a value
computed independently of the code under test:

- packed (padding-free) sequences: the logits of one row of packed sequences equal each sequence
  run alone, for both families, eager and sdpa, in evaluation and training;
- `shift_labels` replaces the shifted labels in the loss, as cross-entropy against it computes;
- what the compile flags say is true: ArithOlmo compiles full-graph, Abacus declares it does not;
- resizing gives new tokens rows around the mean of the existing token rows;
- `inputs_embeds` (with `abacus_positions` where Abacus positions are on) gives what `input_ids` gives,
  in `forward` and in `generate`;
- the deprecated cache name warns, `GenerationMixin` is a direct base, static caches are refused
  with a message.
"""

import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache, GenerationMixin

from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
from hf_arith.modeling.layers import CACHE_NAME
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM, compute_abacus_positions
from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM

VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", *"0123456789", *"+-x*=,:", *"abcdefghij"]
IDS = {c: i for i, c in enumerate(VOCAB)}
DIGITS = list(range(4, 14))


def ids_of(text: str) -> torch.LongTensor:
    return torch.tensor([[IDS[c] for c in text]])


def abacus_model(attn="eager", **overrides):
    torch.manual_seed(0)
    values = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
                  num_recurrences=2, abacus_num_positions=64, abacus_max_k=0, initializer_range=0.2)
    config = AbacusConfig(**{**values, **overrides})
    config._attn_implementation = attn
    return AbacusForCausalLM(config).eval()


def olmo_model(attn="eager", **overrides):
    torch.manual_seed(0)
    values = dict(vocab_size=31, hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
                  pad_token_id=0, bos_token_id=2, eos_token_id=3, init_fn="normal", initializer_range=0.2,
                  abacus_max_k=0)
    config = ArithOlmoConfig(**{**values, **overrides})
    config._attn_implementation = attn
    return ArithOlmoForCausalLM(config).eval()


FAMILIES = {
    "abacus-nope": lambda attn: abacus_model(attn),
    "abacus-fire": lambda attn: abacus_model(attn, attention_positions="fire"),
    "abacus-rope": lambda attn: abacus_model(attn, attention_positions="rope"),
    "abacus-off": lambda attn: abacus_model(attn, embedding_positions="none", attention_positions="rope"),
    "olmo": lambda attn: olmo_model(attn),
    "olmo-abacus": lambda attn: olmo_model(attn, abacus=True, digit_token_ids=DIGITS, abacus_num_positions=64),
}
ABACUS_ON = ["abacus-nope", "abacus-fire", "abacus-rope", "olmo-abacus"]

# Reversed-digit problems; the second starts with digits right where the first ends in digits, so
# a digit count that crosses the boundary shows.
SEQUENCES = ["21+43=55", "987+1=889", "5+5=01"]


# 1. Packed sequences ----------------------------------------------------------------------------


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_packed_logits_equal_each_sequence_alone(name, attn, mode):
    model = FAMILIES[name](attn).train(mode == "train")
    alone = [ids_of(text) for text in SEQUENCES]
    packed = torch.cat(alone, dim=1)
    position_ids = torch.cat([torch.arange(ids.shape[1]) for ids in alone])[None]
    with torch.no_grad():
        expected = torch.cat([model(input_ids=ids, use_cache=False).logits for ids in alone], dim=1)
        got = model(input_ids=packed, position_ids=position_ids, use_cache=False).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["abacus-nope", "olmo-abacus"])
def test_packed_training_loss_equals_the_loss_of_the_sequences_alone(name):
    # What `DataCollatorWithFlattening` gives: one row, labels -100 at each sequence start.
    model = FAMILIES[name]("sdpa").train()
    alone = [ids_of(text) for text in SEQUENCES]
    packed = torch.cat(alone, dim=1)
    position_ids = torch.cat([torch.arange(ids.shape[1]) for ids in alone])[None]
    labels = torch.cat([torch.cat([torch.tensor([[-100]]), ids[:, 1:]], 1) for ids in alone], 1)
    with torch.no_grad():
        loss = model(input_ids=packed, position_ids=position_ids, labels=labels).loss
        sums = [model(input_ids=ids, labels=ids).loss * (ids.shape[1] - 1) for ids in alone]
    expected = sum(sums) / sum(ids.shape[1] - 1 for ids in alone)
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-5)


def test_abacus_positions_restart_at_a_packed_boundary():
    ids = ids_of("12+3=4" + "56+7=21")
    sequence_ids = torch.tensor([[0] * 6 + [1] * 7])
    expected = [1, 2, 0, 1, 0, 1] + [1, 2, 0, 1, 0, 1, 2]  # SPEC.md's rule, per sequence
    assert compute_abacus_positions(ids, DIGITS, sequence_ids)[0].tolist() == expected


# 2. shift_labels --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["abacus-nope", "olmo", "olmo-abacus"])
def test_shift_labels_replace_the_shifted_labels(name):
    model = FAMILIES[name]("eager")
    ids = ids_of("21+43=55")
    shift_labels = torch.tensor([[6, 14, 7, 8, 18, 9, 9, -100]])
    other_labels = torch.randint(4, 14, ids.shape)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        loss = model(input_ids=ids, labels=ids, shift_labels=shift_labels).loss
        ignored = model(input_ids=ids, labels=other_labels, shift_labels=shift_labels).loss
    expected = F.cross_entropy(logits[0].float(), shift_labels[0], ignore_index=-100)
    torch.testing.assert_close(loss, expected)
    assert torch.equal(loss, ignored)


def test_shift_labels_in_the_progressive_loss():
    model = abacus_model(progressive_loss_alpha=1.0).train()
    ids = ids_of("21+43=55")
    shift_labels = torch.tensor([[6, 14, 7, 8, 18, 9, 9, -100]])
    losses = []
    for labels in (ids, torch.randint(4, 14, ids.shape)):
        torch.manual_seed(1)
        losses.append(model(input_ids=ids, labels=labels, shift_labels=shift_labels).loss)
    assert torch.equal(losses[0], losses[1])
    torch.manual_seed(1)
    assert not torch.equal(losses[0], model(input_ids=ids, labels=ids).loss)


# 3. Compile flags -------------------------------------------------------------------------------


def test_abacus_declares_no_fullgraph_compile_and_no_flash_or_flex():
    assert AbacusForCausalLM._can_compile_fullgraph is False
    assert AbacusForCausalLM._supports_flash_attn is False
    assert AbacusForCausalLM._supports_flex_attn is False


@pytest.mark.slow
def test_olmo_with_abacus_compiles_full_graph():
    assert ArithOlmoForCausalLM._can_compile_fullgraph
    model = FAMILIES["olmo-abacus"]("sdpa")
    ids = ids_of("21+43=55")
    with torch.no_grad():
        expected = model(input_ids=ids, use_cache=False).logits
        compiled = torch.compile(model.forward, fullgraph=True)
        torch.testing.assert_close(compiled(input_ids=ids, use_cache=False).logits, expected, atol=1e-5, rtol=1e-5)
        # The row limit still holds inside the graph: 70 digits need row 70 of 64.
        with pytest.raises(RuntimeError, match="Abacus"):
            compiled(input_ids=ids_of("1" * 70), use_cache=False)


# 4. Resize --------------------------------------------------------------------------------------


def test_resize_gives_new_tokens_rows_around_the_mean_of_the_old_ones():
    model = olmo_model(vocab_size=99, tie_word_embeddings=False)
    assert model.config.embedding_size == 128  # 29 padding rows, which are no tokens
    old_in = model.get_input_embeddings().weight[:99].detach().clone()
    old_out = model.get_output_embeddings().weight[:99].detach().clone()
    padding_rows = model.get_input_embeddings().weight[99:109].detach().clone()
    model.resize_token_embeddings(109)
    assert (model.config.vocab_size, model.config.embedding_size) == (109, 109)
    for old, new in ((old_in, model.get_input_embeddings().weight), (old_out, model.get_output_embeddings().weight)):
        assert new.shape == (109, 32)
        torch.testing.assert_close(new[:99], old)
        mean = old.mean(0, keepdim=True).expand(10, -1)
        torch.testing.assert_close(new[99:].detach(), mean, atol=1e-3, rtol=0)
    assert not torch.allclose(model.get_input_embeddings().weight[99:].detach(), padding_rows)
    assert model(input_ids=torch.tensor([[108, 5, 6]])).logits.shape == (1, 3, 109)


def test_resize_with_padding_keeps_padding_rows_out_of_the_logits():
    model = olmo_model(vocab_size=99)
    model.resize_token_embeddings(101, pad_to_multiple_of=8)
    assert (model.config.vocab_size, model.config.embedding_size) == (101, 104)
    assert model(input_ids=torch.tensor([[100, 5]])).logits.shape[-1] == 101


# 5. inputs_embeds -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
def test_inputs_embeds_equal_input_ids_in_forward(name):
    model = FAMILIES[name]("eager")
    ids = ids_of("21+43=55")
    embeds = model.get_input_embeddings()(ids)
    extra = {"abacus_positions": compute_abacus_positions(ids, DIGITS)} if name in ABACUS_ON else {}
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        got = model(inputs_embeds=embeds, **extra).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ABACUS_ON)
def test_inputs_embeds_without_abacus_positions_is_one_clear_error(name):
    model = FAMILIES[name]("eager")
    with pytest.raises(ValueError, match="abacus_positions"):
        model(inputs_embeds=model.get_input_embeddings()(ids_of("21+43=")))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("prompt", ["21+43=", "21+43=5"])  # the second ends inside the answer's digits
def test_generate_from_inputs_embeds_equals_generate_from_input_ids(name, prompt):
    model = FAMILIES[name]("eager")
    ids = ids_of(prompt)
    kwargs = dict(max_new_tokens=5, do_sample=False, eos_token_id=None, pad_token_id=0)
    expected = model.generate(input_ids=ids, **kwargs)[:, ids.shape[1]:]
    extra = {"abacus_positions": compute_abacus_positions(ids, DIGITS)} if name in ABACUS_ON else {}
    got = model.generate(inputs_embeds=model.get_input_embeddings()(ids), **extra, **kwargs)
    assert torch.equal(got[:, -5:], expected)


# 6. Cache name, bases, static caches ------------------------------------------------------------


@pytest.mark.skipif(CACHE_NAME != "cache", reason="this transformers release has not renamed the cache keyword")
@pytest.mark.parametrize("name", ["abacus-nope", "olmo-abacus"])
def test_the_deprecated_cache_name_warns(name):
    model = FAMILIES[name]("eager")
    ids = ids_of("21+43=")
    with pytest.warns(FutureWarning, match="`past_key_values` is deprecated"):
        model(input_ids=ids, past_key_values=DynamicCache())
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        model(input_ids=ids, cache=DynamicCache())


@pytest.mark.parametrize("cls", [AbacusForCausalLM, ArithOlmoForCausalLM])
def test_generation_mixin_is_a_direct_base(cls):
    assert GenerationMixin in cls.__bases__


def test_olmo_forward_says_it_can_return_attentions():
    for forward in (ArithOlmoForCausalLM.forward, type(olmo_model().model).forward):
        annotation = inspect.signature(forward).parameters["kwargs"].annotation
        assert "output_attentions" in annotation.__args__[0].__annotations__


def test_abacus_refuses_a_static_cache_with_a_message():
    model = FAMILIES["abacus-nope"]("eager")
    with pytest.raises(ValueError, match="dynamic cache"):
        model.generate(input_ids=ids_of("21+43="), max_new_tokens=3, do_sample=False, cache_implementation="static")


def test_olmo_generates_with_a_static_cache_as_with_the_dynamic_one():
    model = FAMILIES["olmo-abacus"]("eager")
    kwargs = dict(input_ids=ids_of("21+43="), max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert torch.equal(model.generate(**kwargs, cache_implementation="static"), model.generate(**kwargs))
