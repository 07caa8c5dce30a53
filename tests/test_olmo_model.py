"""ArithOlmoForCausalLM against transformers' native OlmoForCausalLM (the independent reference),
OLMo-1's init formulas, and the Hub round trip."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoTokenizer,
    OlmoConfig,
    OlmoForCausalLM,
    PreTrainedTokenizerFast,
)

from helpers import run_isolated
from hf_arith.convert import from_native, to_native
from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
from hf_arith.modeling.layers import CACHE_NAME
from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM

VOCAB = 96
# Std of a standard normal truncated at ±3: sqrt(1 - 2·3·φ(3) / (2Φ(3) - 1)).
TRUNCATED_STD = math.sqrt(1 - 6 * math.exp(-4.5) / math.sqrt(2 * math.pi) / math.erf(3 / math.sqrt(2)))


def native_config(**overrides) -> OlmoConfig:
    # A larger init than OLMo's 0.02 so that logits are O(1) and a wrong weight mapping shows.
    values = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  max_position_embeddings=64, initializer_range=0.15, pad_token_id=0, bos_token_id=None,
                  eos_token_id=3, tie_word_embeddings=False)
    values.update(overrides)
    return OlmoConfig(**values)


def native_model(seed=0, attn="eager", **overrides) -> OlmoForCausalLM:
    torch.manual_seed(seed)
    return OlmoForCausalLM._from_config(native_config(**overrides), attn_implementation=attn).eval()


def ours_config(**overrides) -> ArithOlmoConfig:
    values = dict(vocab_size=40, hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96,
                  max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    values.update(overrides)
    return ArithOlmoConfig(**values)


def ours_model(seed=0, attn="sdpa", **overrides) -> ArithOlmoForCausalLM:
    torch.manual_seed(seed)
    return ArithOlmoForCausalLM._from_config(ours_config(**overrides), attn_implementation=attn).eval()


def copied_by_hand(native: OlmoForCausalLM) -> ArithOlmoForCausalLM:
    """Our model holding the native weights, mapped here rather than by hf_arith.convert."""
    c = native.config
    config = ArithOlmoConfig(
        vocab_size=c.vocab_size, embedding_size=c.vocab_size, hidden_size=c.hidden_size,
        num_attention_heads=c.num_attention_heads, num_hidden_layers=c.num_hidden_layers,
        intermediate_size=c.intermediate_size, clip_qkv=c.clip_qkv, rope_theta=c.rope_parameters["rope_theta"],
        tie_word_embeddings=c.tie_word_embeddings, pad_token_id=c.pad_token_id, eos_token_id=c.eos_token_id,
    )
    ours = ArithOlmoForCausalLM._from_config(config, attn_implementation=c._attn_implementation).eval()
    with torch.no_grad():
        ours.model.embed_tokens.weight.copy_(native.model.embed_tokens.weight)
        for mine, theirs in zip(ours.model.layers, native.model.layers):
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(mine.self_attn, name).weight.copy_(getattr(theirs.self_attn, name).weight)
            for name in ("gate_proj", "up_proj", "down_proj"):
                getattr(mine.mlp, name).weight.copy_(getattr(theirs.mlp, name).weight)
        if not c.tie_word_embeddings:
            ours.lm_head.weight.copy_(native.lm_head.weight)
    return ours


def left_padded_batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, VOCAB, (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :5], mask[1, :2] = 0, 0
    return ids.masked_fill(mask == 0, 0), mask


def char_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A WordLevel tokenizer of `vocab_size` single-character tokens (ids 0..3 special)."""
    tokens = ["<pad>", "<unk>", "<bos>", "<eos>"] + [chr(ord("!") + i) for i in range(vocab_size - 4)]
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>", padding_side="left")


# ---------------------------------------------------------------------------------------------
# Parity with native transformers


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("clip_qkv", [None, 0.5], ids=["noclip", "clip"])
def test_logits_match_native(attn, tied, clip_qkv):
    native = native_model(attn=attn, tie_word_embeddings=tied, clip_qkv=clip_qkv)
    ids, mask = left_padded_batch()
    # What `generate` passes, and what our model uses by default: positions that skip left padding.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = native(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        unpadded = native(input_ids=ids).logits
        for ours in (from_native(native), copied_by_hand(native)):
            ours.config._attn_implementation = attn
            got = ours(input_ids=ids, attention_mask=mask).logits
            # Padding positions attend to nothing; their outputs are meaningless in both models.
            assert (got - expected)[mask.bool()].abs().max() <= 1e-5
            assert (ours(input_ids=ids).logits - unpadded).abs().max() <= 1e-5
    assert expected.abs().max() > 1.0  # O(1) logits: the 1e-5 bound is meaningful


def test_gradients_match_native_and_the_models_share_no_tensor():
    # No pad id: native's embedding would get `padding_idx` (a row without lookup gradient), which
    # allenai/OLMo's and ours do not have.
    native = native_model(seed=11, tie_word_embeddings=True, clip_qkv=1.0, pad_token_id=None).train()
    ours = from_native(native).train()
    ours_storage = {p.data_ptr() for p in ours.parameters()}
    assert not ours_storage & {p.data_ptr() for p in native.parameters()}
    ids, _ = left_padded_batch(seed=11)
    native(input_ids=ids, labels=ids).loss.backward()
    ours(input_ids=ids, labels=ids).loss.backward()
    for mine, theirs in zip(ours.model.layers, native.model.layers):
        a, m = theirs.self_attn, theirs.mlp
        expected = {"qkv": torch.cat([a.q_proj.weight.grad, a.k_proj.weight.grad, a.v_proj.weight.grad]),
                    "gate_up": torch.cat([m.gate_proj.weight.grad, m.up_proj.weight.grad]),
                    "o": a.o_proj.weight.grad, "down": m.down_proj.weight.grad}
        b, n = mine.self_attn, mine.mlp
        got = {"qkv": torch.cat([b.q_proj.weight.grad, b.k_proj.weight.grad, b.v_proj.weight.grad]),
               "gate_up": torch.cat([n.gate_proj.weight.grad, n.up_proj.weight.grad]),
               "o": b.o_proj.weight.grad, "down": n.down_proj.weight.grad}
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)
    torch.testing.assert_close(ours.model.embed_tokens.weight.grad, native.model.embed_tokens.weight.grad,
                               atol=1e-6, rtol=1e-5)


def test_parity_check_would_catch_a_swapped_gate_and_up():
    native = native_model()
    ours = from_native(native)
    with torch.no_grad():
        mlp = ours.model.layers[0].mlp
        gate, up = mlp.gate_proj.weight.clone(), mlp.up_proj.weight.clone()
        mlp.gate_proj.weight.copy_(up)
        mlp.up_proj.weight.copy_(gate)
        ids, _ = left_padded_batch()
        assert (ours(input_ids=ids).logits - native(input_ids=ids).logits).abs().max() > 1e-2


def test_clip_qkv_is_active_in_the_check():
    ids, _ = left_padded_batch()
    with torch.no_grad():
        clipped = native_model(clip_qkv=0.5)(input_ids=ids).logits
        free = native_model()(input_ids=ids).logits
    assert (clipped - free).abs().max() > 1e-2


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_greedy_generation_matches_native(attn, tied):
    native = native_model(seed=1, attn=attn, tie_word_embeddings=tied, clip_qkv=1.0)
    ours = from_native(native)
    ours.config._attn_implementation = attn
    ids, mask = left_padded_batch(seed=1)
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0,
                  eos_token_id=None)
    expected = native.generate(**kwargs)
    assert torch.equal(ours.generate(**kwargs), expected)
    assert torch.equal(ours.generate(**kwargs, use_cache=False), expected)


def test_loss_matches_native_with_ignored_labels():
    native = native_model(seed=2)
    ours = from_native(native)
    # The same kernel as native: a pad position's query attends to nothing, and transformers' eager
    # and sdpa paths fill such rows differently; the loss counts pad -> first-token predictions.
    ours.config._attn_implementation = native.config._attn_implementation
    ids, mask = left_padded_batch(seed=2)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = native(input_ids=ids, attention_mask=mask, position_ids=positions, labels=labels)
        got = ours(input_ids=ids, attention_mask=mask, labels=labels)
        torch.testing.assert_close(got.loss, expected.loss, atol=1e-6, rtol=1e-6)
        summed = ours(input_ids=ids, attention_mask=mask, labels=labels, num_items_in_batch=1).loss
        count = int((labels[:, 1:] != -100).sum())
        torch.testing.assert_close(summed / count, expected.loss, atol=1e-5, rtol=1e-5)


def test_our_init_carries_over_to_native():
    ours = ours_model(seed=3, tie_word_embeddings=False, clip_qkv=8.0, rope_theta=500.0)
    native = to_native(ours)
    assert native.config.vocab_size == 128 and native.config.rope_parameters["rope_theta"] == 500.0
    ids = torch.randint(4, 40, (2, 9))
    with torch.no_grad():
        diff = ours(input_ids=ids).logits[..., :40] - native(input_ids=ids).logits[..., :40]
    assert diff.abs().max() <= 1e-5


# ---------------------------------------------------------------------------------------------
# OLMo-1's structure


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_no_norm_parameters_and_no_biases(tied):
    model = ours_model(tie_word_embeddings=tied)
    names = {name for name, _ in model.named_parameters()}
    per_layer = {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
                 "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"}
    expected = {"model.embed_tokens.weight"} | {f"model.layers.{i}.{n}" for i in range(2) for n in per_layer}
    assert names == expected | (set() if tied else {"lm_head.weight"})
    assert not list(model.model.norm.parameters()) and not list(model.model.layers[0].input_layernorm.parameters())
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied


def test_layer_norm_is_parameter_free_fp32():
    model = ours_model()
    x = torch.randn(2, 5, 64, dtype=torch.bfloat16) * 3 + 1
    out = model.model.norm(x)
    x32 = x.float()
    reference = (x32 - x32.mean(-1, keepdim=True)) / torch.sqrt(x32.var(-1, unbiased=False, keepdim=True) + 1e-5)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, reference.to(torch.bfloat16))


def test_embedding_rows_default_to_a_multiple_of_128():
    assert ArithOlmoConfig().embedding_size == 50304  # OLMo-1: 50280 padded
    for vocab, rows in [(31, 128), (128, 128), (129, 256)]:
        assert ours_config(vocab_size=vocab).embedding_size == rows
    model = ours_model(vocab_size=100, tie_word_embeddings=False)
    assert model.model.embed_tokens.weight.shape == (128, 64) and model.lm_head.weight.shape == (128, 64)
    assert model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, 100)  # one per token


def test_padding_rows_never_win_even_with_huge_weights():
    model = ours_model(vocab_size=40, tie_word_embeddings=False)
    ids = torch.randint(4, 40, (2, 6))
    with torch.no_grad():
        model.lm_head.weight[40:] = 1e4
        out = model(input_ids=ids, labels=ids, output_hidden_states=True)
    # One logit per token of the vocabulary, as transformers expects (its 5.0 beam search reshapes
    # the scores by config.vocab_size): the padding rows are never generated, no share of the softmax.
    assert out.logits.shape == (2, 6, 40)
    expected = out.hidden_states[-1] @ model.lm_head.weight[:40].T
    torch.testing.assert_close(out.logits, expected)
    generated = model.generate(input_ids=ids, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert generated.max() < 40
    reference = F.cross_entropy(expected[:, :-1].reshape(-1, 40), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, reference)


def test_kv_cache_has_one_entry_per_layer_and_matches_recomputation():
    model = ours_model(num_hidden_layers=3)
    ids = torch.randint(4, 40, (1, 7))
    with torch.no_grad():
        full = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :4], use_cache=True)
        cache = getattr(first, CACHE_NAME)
        assert len(cache.layers) == 3
        rest = model(input_ids=ids[:, 4:], **{CACHE_NAME: cache}).logits
    torch.testing.assert_close(rest, full[:, 4:], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Initialisation


def mitchell_stds(d, intermediate, layers):
    """allenai/OLMo's "mitchell" σ per parameter name (olmo/model.py reset_parameters)."""
    stds = {"model.embed_tokens.weight": 1 / math.sqrt(d), "lm_head.weight": 1 / math.sqrt(d)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"):
            stds[p + name + ".weight"] = 1 / math.sqrt(d)
        stds[p + "self_attn.o_proj.weight"] = 1 / math.sqrt(d) / math.sqrt(2 * (i + 1))
        stds[p + "mlp.down_proj.weight"] = 1 / math.sqrt(intermediate) / math.sqrt(2 * (i + 1))
    return stds


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_mitchell_init_follows_olmo(tied):
    d, intermediate, layers = 256, 512, 3
    model = ours_model(hidden_size=d, intermediate_size=intermediate, num_hidden_layers=layers,
                       tie_word_embeddings=tied, vocab_size=200, abacus=True, digit_token_ids=list(range(4, 14)))
    stds = mitchell_stds(d, intermediate, layers) | {"model.abacus.embedding.weight": 1 / math.sqrt(d)}
    for name, param in model.named_parameters():
        sigma = stds[name]
        assert abs(param.std().item() / (sigma * TRUNCATED_STD) - 1) < 0.04, name
        assert abs(param.mean().item()) < 0.05 * sigma, name
        # Truncated at exactly ±3σ (torch's default cut is ±2 absolute, which would be no cut here).
        assert 2.9 * sigma < param.abs().max().item() <= 3 * sigma + 1e-7, name


def test_normal_init_uses_initializer_range_untruncated():
    model = ours_model(hidden_size=256, intermediate_size=512, init_fn="normal", initializer_range=0.05)
    for name, param in model.named_parameters():
        assert abs(param.std().item() / 0.05 - 1) < 0.04, name
    assert model.model.layers[0].mlp.up_proj.weight.abs().max() > 3.5 * 0.05


# ---------------------------------------------------------------------------------------------
# Training, options and errors


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = torch.randint(4, 40, (2, 10))
    grads = []
    for checkpointing in (False, True):
        model = ours_model(seed=4).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().max() > 0
    torch.testing.assert_close(grads[0], grads[1])


def spec_abacus_positions(ids: list[int], digits: set[int]) -> list[int]:
    """SPEC.md: a digit's position is its 1-based index in its run of digits; others get 0."""
    positions, run = [], 0
    for token in ids:
        run = run + 1 if token in digits else 0
        positions.append(run)
    return positions


def test_abacus_is_opt_in_and_adds_rows_to_digit_embeddings():
    digits = list(range(4, 14))
    assert ours_model(digit_token_ids=digits).model.abacus is None  # the trainer sets ids; abacus stays off
    model = ours_model(abacus=True, digit_token_ids=digits, abacus_num_positions=32)
    ids = torch.tensor([[5, 6, 14, 7, 8, 9, 18, 30, 4]])
    seen = []
    model.model.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model(input_ids=ids)
        rows = torch.tensor(spec_abacus_positions(ids[0].tolist(), set(digits)))
        expected = model.model.embed_tokens.weight[ids[0]] + model.model.abacus.embedding.weight[rows]
    torch.testing.assert_close(seen[0][0], expected)
    with pytest.raises(ValueError, match="digit_token_ids"):
        ours_config(abacus=True)


def test_abacus_generation_with_cache_equals_recomputation():
    model = ours_model(seed=5, abacus=True, digit_token_ids=list(range(4, 14)), abacus_num_positions=32)
    ids = torch.tensor([[0, 0, 5, 6, 14, 7, 18], [5, 6, 7, 14, 8, 9, 18]])
    mask = (ids != 0).long()
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0,
                  eos_token_id=None)
    assert torch.equal(model.generate(**kwargs), model.generate(**kwargs, use_cache=False))


@pytest.mark.parametrize("overrides,field", [
    (dict(hidden_size=60, num_attention_heads=8), "hidden_size"),
    (dict(embedding_size=32), "embedding_size"),
    (dict(init_fn="xavier"), "init_fn"),
    (dict(clip_qkv=0.0), "clip_qkv"),
    (dict(abacus=True, digit_token_ids=list(range(4, 14)), abacus_offset_mode="random"), "abacus_offset_mode"),
])
def test_bad_configs_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        ours_config(**overrides)


# ---------------------------------------------------------------------------------------------
# Saving and loading


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("olmo") / "model"
    model = ours_model(seed=6, vocab_size=40, tie_word_embeddings=False, clip_qkv=2.0)
    model.save_pretrained(folder)
    char_tokenizer(40).save_pretrained(folder)
    return folder, model


def test_save_and_load_in_process(saved):
    folder, model = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_olmo.ArithOlmoConfig",
                                  "AutoModel": "modeling_olmo.ArithOlmoModel",
                                  "AutoModelForCausalLM": "modeling_olmo.ArithOlmoForCausalLM"}
    assert {"configuration_olmo.py", "modeling_olmo.py", "layers.py"} <= {p.name for p in folder.iterdir()}
    loaded = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = tokenizer(["!#%&", "()"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(loaded(**ids).logits, model(**ids).logits)
        base = AutoModel.from_pretrained(folder, trust_remote_code=True)
        assert torch.equal(base(**ids).last_hidden_state, model.model(**ids).last_hidden_state)
    assert AutoConfig.from_pretrained(folder, trust_remote_code=True).clip_qkv == 2.0


def test_load_without_hf_arith_installed(saved):
    folder, model = saved
    code = f"""
        import json, torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        model = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        tokenizer = AutoTokenizer.from_pretrained({str(folder)!r}, trust_remote_code=True)
        batch = tokenizer(["!#%&", "()"], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = model(**batch).logits
        out = model.generate(**batch, max_new_tokens=5, do_sample=False, eos_token_id=None)
        print(json.dumps({{"logits": logits[..., :40].tolist(), "generated": out.tolist()}}))
    """
    out = json.loads(run_isolated(code, cwd=folder.parent).splitlines()[-1])
    batch = char_tokenizer(40)(["!#%&", "()"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**batch).logits[..., :40]
    assert torch.equal(torch.tensor(out["logits"]), expected)
    generated = model.generate(**batch, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert out["generated"] == generated.tolist()
