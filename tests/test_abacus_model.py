"""The Abacus looped model against the paper's definitions and a hand-written reference decoder."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
import torch.nn.functional as F

from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.layers import CACHE_NAME
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM, compute_abacus_positions

VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", *"0123456789", *"+-x*=,:", *"abcdefghij"]
IDS = {c: i for i, c in enumerate(VOCAB)}
DIGITS = list(range(4, 14))


def ids_of(text: str) -> torch.LongTensor:
    return torch.tensor([[IDS[c] for c in text]])


def spec_abacus_positions(text: str) -> list[int]:
    """SPEC.md: a digit's position is its 1-based index in its run of digits; others get 0."""
    positions, run = [], 0
    for char in text:
        run = run + 1 if char.isdigit() else 0
        positions.append(run)
    return positions


def tiny_config(**overrides) -> AbacusConfig:
    values = dict(
        hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2, num_recurrences=2,
        abacus_num_positions=64, abacus_max_k=8,
    )
    values.update(overrides)
    return AbacusConfig(**values)


def tiny_model(seed=0, **overrides) -> AbacusForCausalLM:
    torch.manual_seed(seed)
    return AbacusForCausalLM(tiny_config(**overrides)).eval()


@pytest.mark.parametrize(
    "text", ["12+345=", "1+1=2", "=+", "9876543210x0=", "a:321,b:54=b,a", "0", "12:3,,45678901234567890=1"]
)
def test_abacus_positions_follow_the_definition(text):
    assert compute_abacus_positions(ids_of(text), DIGITS)[0].tolist() == spec_abacus_positions(text)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.text(alphabet=VOCAB[4:], max_size=40), min_size=1, max_size=4))
def test_abacus_positions_of_any_token_sequences(rows):
    """Any batch of character sequences (right-padded with <pad>, a non-digit): the SPEC positions."""
    width = max(len(r) for r in rows) or 1
    ids = torch.tensor([[IDS[c] for c in r] + [IDS["<pad>"]] * (width - len(r)) for r in rows])
    expected = [spec_abacus_positions(r) + [0] * (width - len(r)) for r in rows]
    assert compute_abacus_positions(ids, DIGITS).tolist() == expected


def test_abacus_positions_batched_and_with_padding():
    texts = ["<pad><pad>12+3=", "4567+890="]
    batch = torch.tensor([[0, 0, *ids_of("12+3=")[0].tolist()], ids_of("4567+890=")[0].tolist()[:7]])
    expected = [[0, 0, 1, 2, 0, 1, 0], spec_abacus_positions("4567+89")]
    assert compute_abacus_positions(batch, DIGITS).tolist() == expected, texts


def reference_logits(model: AbacusForCausalLM, input_ids, layer_order, inject_before=()):
    """A plain pre-norm decoder written out with torch ops: NoPE + Abacus embedding, causal
    softmax attention, gated GELU. `layer_order` lists layer indices; `inject_before` the steps at
    which the embedded input is added (input injection)."""
    m = model.model
    pos = compute_abacus_positions(input_ids, DIGITS)
    embedded = m.embed_tokens(input_ids) + m.abacus.embedding(pos)
    hidden = torch.zeros_like(embedded) if inject_before else embedded
    seq = input_ids.shape[1]
    heads, head_dim = model.config.num_attention_heads, model.config.hidden_size // model.config.num_attention_heads
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)
    for step, index in enumerate(layer_order):
        if step in inject_before:
            hidden = hidden + embedded
        layer = m.layers[index]
        x = F.layer_norm(hidden, (hidden.shape[-1],), layer.input_layernorm.weight, None, 1e-5)
        q, k, v = (x @ layer.self_attn.qkv_proj.weight.T).chunk(3, dim=-1)
        q, k, v = (t.view(1, seq, heads, head_dim).transpose(1, 2) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2)) / head_dim**0.5
        attn = scores.masked_fill(future, float("-inf")).softmax(-1) @ v
        hidden = hidden + attn.transpose(1, 2).reshape(1, seq, -1) @ layer.self_attn.o_proj.weight.T
        x = F.layer_norm(hidden, (hidden.shape[-1],), layer.post_attention_layernorm.weight, None, 1e-5)
        gate, up = (x @ layer.mlp.gate_up_proj.weight.T).chunk(2, dim=-1)
        hidden = hidden + (F.gelu(gate) * up) @ layer.mlp.down_proj.weight.T
    hidden = F.layer_norm(hidden, (hidden.shape[-1],), m.norm.weight, None, 1e-5)
    return hidden @ model.lm_head.weight.T


@pytest.mark.parametrize("injection", [True, False])
def test_one_by_one_is_a_plain_decoder(injection):
    model = tiny_model(num_hidden_layers=3, num_recurrences=1, input_injection=injection)
    ids = ids_of("4321+987=")
    with torch.no_grad():
        expected = reference_logits(model, ids, [0, 1, 2], inject_before=(0,) if injection else ())
        torch.testing.assert_close(model(ids).logits, expected, atol=1e-5, rtol=1e-5)


def test_input_injection_adds_the_embedding_before_every_recurrence():
    ids = ids_of("4321+987=")
    looped = tiny_model(num_hidden_layers=2, num_recurrences=3, input_injection=True)
    plain = tiny_model(num_hidden_layers=2, num_recurrences=3, input_injection=False)
    with torch.no_grad():
        torch.testing.assert_close(
            looped(ids).logits, reference_logits(looped, ids, [0, 1] * 3, inject_before=(0, 2, 4)), atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(plain(ids).logits, reference_logits(plain, ids, [0, 1] * 3), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(looped(ids).logits, plain(ids).logits)


def test_num_recurrences_override_changes_depth():
    model = tiny_model(num_hidden_layers=1, num_recurrences=2)
    ids = ids_of("12+34=")
    with torch.no_grad():
        deeper = model(ids, num_recurrences=4).logits
        torch.testing.assert_close(deeper, reference_logits(model, ids, [0] * 4, inject_before=(0, 1, 2, 3)))


POSITION_OPTIONS = [
    dict(embedding_positions="abacus", attention_positions="none"),
    dict(embedding_positions="abacus", attention_positions="fire"),
    dict(embedding_positions="abacus", attention_positions="rope"),
    dict(embedding_positions="none", attention_positions="fire"),
    dict(embedding_positions="none", attention_positions="rope"),
    dict(embedding_positions="none", attention_positions="none"),
    dict(embedding_positions="learned", attention_positions="none"),
    dict(embedding_positions="abacus", attention_positions="none", norm_position="post", hidden_act="silu"),
]


def left_pad(rows: list[str]):
    width = max(len(r) for r in rows)
    ids = torch.tensor([[0] * (width - len(r)) + [IDS[c] for c in r] for r in rows])
    return ids, (ids != 0).long()


@pytest.mark.parametrize("options", POSITION_OPTIONS, ids=lambda o: "-".join(map(str, o.values())))
def test_cached_generation_equals_recomputation_with_left_padding(options):
    model = tiny_model(seed=1, **options)
    prompts = ["12+345=", "98765+4=", "1+2="]
    ids, mask = left_pad(prompts)
    cached = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    uncached = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, use_cache=False, pad_token_id=0
    )
    assert torch.equal(cached, uncached)
    # Each row alone, unpadded, gives the same continuation as inside the padded batch.
    for row, prompt in enumerate(prompts):
        alone = model.generate(input_ids=ids_of(prompt), max_new_tokens=8, do_sample=False, pad_token_id=0)
        continuation = alone[0, len(prompt):].tolist()
        assert continuation == cached[row, ids.shape[1]:ids.shape[1] + len(continuation)].tolist()


@pytest.mark.parametrize("options", POSITION_OPTIONS[:3], ids=lambda o: "-".join(map(str, o.values())))
def test_padding_does_not_change_logits(options):
    model = tiny_model(seed=2, **options)
    ids, mask = left_pad(["12+345=", "9+8="])
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids_of("9+8=")).logits
    torch.testing.assert_close(batched[1, -4:], alone[0], atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_agree():
    eager = tiny_model(seed=3, attention_positions="fire")
    eager.config._attn_implementation = "eager"
    sdpa = tiny_model(seed=3, attention_positions="fire")
    ids, mask = left_pad(["12+345=", "9+8="])
    with torch.no_grad():
        torch.testing.assert_close(eager(input_ids=ids, attention_mask=mask).logits,
                                   sdpa(input_ids=ids, attention_mask=mask).logits, atol=1e-5, rtol=1e-5)


def test_looped_cache_has_one_entry_per_layer_per_recurrence():
    model = tiny_model(num_hidden_layers=2, num_recurrences=3)
    out = model(ids_of("12+3="), use_cache=True)
    assert len(getattr(out, CACHE_NAME).layers) == 6
    more = model(ids_of("12+3="), use_cache=True, num_recurrences=5)
    assert len(getattr(more, CACHE_NAME).layers) == 10


def test_number_longer_than_the_abacus_table_is_a_clear_error():
    model = tiny_model(abacus_num_positions=20)
    with pytest.raises(ValueError, match="25 digits.*abacus_num_positions"):
        model(ids_of("1" * 25 + "+1="))


def test_training_offsets_shift_digit_rows_only():
    model = tiny_model(abacus_max_k=5, abacus_offset_mode="per_example").train()
    positions = compute_abacus_positions(ids_of("123+45=").repeat(64, 1), DIGITS)
    rows = model.model.abacus.offset(positions)
    shift = rows - positions
    assert torch.all(rows[positions == 0] == 0)
    per_row = shift.max(dim=1).values
    assert torch.all(shift == torch.where(positions > 0, per_row[:, None], 0))
    assert set(per_row.tolist()) == set(range(6))  # every k in {0..max_k}, one per example
    model.config.abacus_offset_mode = "per_batch"
    assert len(set((model.model.abacus.offset(positions) - positions).max(dim=1).values.tolist())) == 1


def grad_trace(model, ids, labels):
    """Runs a training forward and records, per layer call, whether autograd was recording."""
    trace = []
    hooks = [layer.register_forward_hook(lambda *_: trace.append(torch.is_grad_enabled())) for layer in model.model.layers]
    model(input_ids=ids, labels=labels).loss.backward()
    for hook in hooks:
        hook.remove()
    return trace


@pytest.mark.parametrize("cap", [None, 2])
def test_progressive_loss_sends_gradient_only_through_the_last_k_recurrences(cap):
    recurrences = 4
    model = tiny_model(num_hidden_layers=1, num_recurrences=recurrences, progressive_loss_alpha=1.0,
                       progressive_max_k=cap).train()
    ids = ids_of("12+34=64<eos>".replace("<eos>", "="))
    seen = set()
    for seed in range(60):
        torch.manual_seed(seed)
        trace = grad_trace(model, ids, ids)
        n = trace.index(True)
        k = len(trace) - n
        assert trace == [False] * n + [True] * k
        assert 0 <= n <= recurrences - 1 and 1 <= k <= recurrences - n
        if cap is not None:
            assert k <= cap
        seen.add((n, k))
    possible = {(n, k) for n in range(recurrences) for k in range(1, recurrences - n + 1) if cap is None or k <= cap}
    assert seen == possible


def test_progressive_loss_mixes_in_the_full_depth_pass():
    # NoPE, so that the only random draws are the progressive loss's n and k.
    model = tiny_model(num_hidden_layers=1, num_recurrences=3, progressive_loss_alpha=0.5,
                       embedding_positions="none").train()
    ids = ids_of("12+34=")
    torch.manual_seed(0)
    trace = grad_trace(model, ids, ids)
    assert trace[-3:] == [True] * 3  # the full pass, all with gradient
    # The loss is the stated mixture of the two passes.
    torch.manual_seed(0)
    mixed = model(input_ids=ids, labels=ids).loss
    torch.manual_seed(0)
    n = int(torch.randint(0, 3, ()))
    k = int(torch.randint(1, 3 - n + 1, ()))
    model.config.progressive_loss_alpha = 0.0
    full = model(input_ids=ids, labels=ids, num_recurrences=3).loss
    model.eval()
    with torch.no_grad():
        m = model.model
        embedded, _, kwargs = m.prepare(ids)
        hidden = m.run_block(m.initial_state(embedded), embedded, range(n + k), kwargs)
        logits = model.lm_head(m.norm(hidden))
        partial = F.cross_entropy(logits[0, :-1], ids[0, 1:])
    torch.testing.assert_close(mixed, 0.5 * partial + 0.5 * full, atol=1e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = ids_of("12+345=753")
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(seed=4).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


def test_no_biases_anywhere_but_fire():
    model = tiny_model(attention_positions="fire")
    biases = [name for name, _ in model.named_parameters() if name.endswith("bias")]
    assert biases and all(".fire." in name for name in biases)


@pytest.mark.parametrize("field,value", [("embedding_positions", "sinusoidal"), ("hidden_act", "relu")])
def test_bad_options_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="not divisible"):
        tiny_config(hidden_size=30, num_attention_heads=4)


def test_all_option_combinations_build():
    for emb, att, norm in itertools.product(("abacus", "learned", "none"), ("none", "rope", "fire"), ("pre", "post")):
        tiny_model(embedding_positions=emb, attention_positions=att, norm_position=norm)(ids_of("1+2="))
