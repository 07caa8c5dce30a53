"""The Abacus looped model against the paper's definitions and a hand-written reference decoder."""

import itertools
import math

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


def reference_logits(model: AbacusForCausalLM, input_ids, layer_order, inject_before=(), logn_base=None):
    """A plain pre-norm decoder written out with torch ops: NoPE + Abacus embedding, causal
    softmax attention, gated GELU. `layer_order` lists layer indices; `inject_before` the steps at
    which the embedded input is added (input injection). With `logn_base`, the logits of query i
    (which sees i + 1 keys) are multiplied by max(1, log(i + 1) / log(logn_base)) (Chiang & Cholak
    2022, §5)."""
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
        if logn_base is not None:
            keys_seen = torch.arange(1, seq + 1, dtype=torch.float)
            scores = scores * (keys_seen.log() / math.log(logn_base)).clamp(min=1)[:, None]
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


def test_log_length_temperature_scales_the_logits_of_later_queries():
    ids = ids_of("4321+987=1234")  # 13 tokens: queries from the 5th on see more than 4 keys
    scaled = tiny_model(num_hidden_layers=2, num_recurrences=2, attention_logn_base=4)
    plain = tiny_model(num_hidden_layers=2, num_recurrences=2)
    with torch.no_grad():
        expected = reference_logits(scaled, ids, [0, 1] * 2, inject_before=(0, 2), logn_base=4)
        torch.testing.assert_close(scaled(ids).logits, expected, atol=1e-5, rtol=1e-5)
        # Up to `base` keys the scale is 1, so the first 4 positions match the unscaled model.
        torch.testing.assert_close(scaled(ids).logits[:, :4], plain(ids).logits[:, :4], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(scaled(ids).logits[:, 4:], plain(ids).logits[:, 4:])


POSITION_OPTIONS = [
    dict(embedding_positions="abacus", attention_positions="none"),
    dict(embedding_positions="abacus", attention_positions="fire"),
    dict(embedding_positions="abacus", attention_positions="rope"),
    dict(embedding_positions="none", attention_positions="fire"),
    dict(embedding_positions="none", attention_positions="rope"),
    dict(embedding_positions="none", attention_positions="none"),
    dict(embedding_positions="learned", attention_positions="none"),
    dict(embedding_positions="abacus", attention_positions="none", norm_position="post", hidden_act="silu"),
    dict(embedding_positions="abacus", attention_positions="none", attention_logn_base=3),
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


@pytest.mark.parametrize(
    "field,value", [("embedding_positions", "sinusoidal"), ("hidden_act", "relu"), ("attention_logn_base", 1)]
)
def test_bad_options_are_named(field, value):
    with pytest.raises(ValueError, match=field):
        tiny_config(**{field: value})


def test_heads_must_divide_hidden():
    with pytest.raises(ValueError, match="not divisible"):
        tiny_config(hidden_size=30, num_attention_heads=4)


def test_all_option_combinations_build():
    for emb, att, norm in itertools.product(("abacus", "learned", "none"), ("none", "rope", "fire"), ("pre", "post")):
        tiny_model(embedding_positions=emb, attention_positions=att, norm_position=norm)(ids_of("1+2="))


# ---------------------------------------------------------------------------------------------
# The reference code's model (mcleish7/arithmetic, crammed-depthrecurrent), as options

REFERENCE_OPTIONS = dict(embedding_norm=True, norm_position="post", layer_norm_bias=True, layer_norm_eps=1e-12,
                         head="mlp", initializer="deepnet", initial_state_std=0.02)


def reference_code_logits(model: AbacusForCausalLM, input_ids, layer_order, inject_before, initial_state):
    """The reference's forward written out with torch ops: LayerNorm(tokens + Abacus), the state
    started at `initial_state`, post-norm layers (norm(x + f(x)), LayerNorms with bias), input
    injection by addition, then the MLP head, a final LayerNorm, the untied d×d adapter and the
    vocabulary projection."""
    m, eps = model.model, model.config.layer_norm_eps
    heads, d = model.config.num_attention_heads, model.config.hidden_size
    head_dim, seq = d // heads, input_ids.shape[1]

    def norm(x, ln):
        return F.layer_norm(x, (d,), ln.weight, ln.bias, eps)

    def mlp(x, module):
        gate, up = (x @ module.gate_up_proj.weight.T).chunk(2, dim=-1)
        return (F.gelu(gate) * up) @ module.down_proj.weight.T

    embedded = norm(m.embed_tokens(input_ids) + m.abacus.embedding(compute_abacus_positions(input_ids, DIGITS)),
                    m.embed_norm)
    hidden = initial_state
    future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), 1)
    for step, index in enumerate(layer_order):
        if step in inject_before:
            hidden = hidden + embedded
        layer = m.layers[index]
        q, k, v = (hidden @ layer.self_attn.qkv_proj.weight.T).chunk(3, dim=-1)
        q, k, v = (t.view(1, seq, heads, head_dim).transpose(1, 2) for t in (q, k, v))
        attn = ((q @ k.transpose(-1, -2)) / head_dim**0.5).masked_fill(future, float("-inf")).softmax(-1) @ v
        hidden = norm(hidden + attn.transpose(1, 2).reshape(1, seq, -1) @ layer.self_attn.o_proj.weight.T,
                      layer.input_layernorm)
        hidden = norm(hidden + mlp(hidden, layer.mlp), layer.post_attention_layernorm)
    hidden = norm(mlp(hidden, m.head), m.norm)
    return hidden @ m.head_adapter.weight.T @ model.lm_head.weight.T


@pytest.mark.parametrize("initial_state_std", [0.02, None], ids=["noise-start", "zero-start"])
def test_reference_options_compute_the_reference_forward(initial_state_std):
    options = {**REFERENCE_OPTIONS, "initial_state_std": initial_state_std}
    model = tiny_model(num_hidden_layers=2, num_recurrences=2, **options)
    with torch.no_grad():  # non-trivial norm parameters, so that a swapped weight or bias shows
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(torch.randn_like(param) * 0.3)
    ids = ids_of("4321+987=")
    shape = (1, ids.shape[1], model.config.hidden_size)

    def start():  # the reference's `state_init: embed`: N(0, 1) * 0.02, drawn in every pass
        torch.manual_seed(5)
        return torch.zeros(shape) if initial_state_std is None else torch.randn(shape) * initial_state_std

    with torch.no_grad():
        expected = reference_code_logits(model, ids, [0, 1, 0, 1], inject_before=(0, 2), initial_state=start())
        torch.manual_seed(5)
        torch.testing.assert_close(model(ids).logits, expected, atol=1e-4, rtol=1e-4)
        if initial_state_std is not None:
            # Fresh noise on the next call, and noise large enough for a zero start to fail the check.
            assert not torch.allclose(model(ids).logits, expected, atol=1e-4, rtol=1e-4)
            zero_start = reference_code_logits(model, ids, [0, 1, 0, 1], inject_before=(0, 2),
                                               initial_state=torch.zeros(shape))
            assert not torch.allclose(zero_start, expected, atol=1e-4, rtol=1e-4)
        every = tiny_model(num_hidden_layers=3, num_recurrences=1, inject_every_layer=True, **options)
        expected = reference_code_logits(every, ids, [0, 1, 2], inject_before=(0, 1, 2), initial_state=start())
        torch.manual_seed(5)
        torch.testing.assert_close(every(ids).logits, expected, atol=1e-4, rtol=1e-4)


def test_noise_initial_state_needs_input_injection():
    with pytest.raises(ValueError, match="initial_state_std.*input_injection=True"):
        tiny_config(input_injection=False, initial_state_std=0.02)
    with pytest.raises(ValueError, match="initial_state_std"):
        tiny_config(initial_state_std=0.0)


# The paper's counts (section 3, vocabulary 19) are rounded to the million; the reference code
# gives exactly 7,344,128·L + 4,761,600 (per layer 7d² + 4d; embeddings, the 512-row Abacus table,
# the embedding norm, MLP head, final norm, d×d adapter and decoder).
PAPER_PARAMETERS = {(16, 1): 122e6, (8, 2): 64e6, (4, 4): 34e6, (2, 8): 19e6, (1, 16): 12e6}


@pytest.mark.parametrize("layers,recurrences", PAPER_PARAMETERS)
def test_reference_configs_have_the_papers_parameter_counts(layers, recurrences):
    config = AbacusConfig(vocab_size=19, hidden_size=1024, num_attention_heads=16, intermediate_size=1024,
                          num_hidden_layers=layers, num_recurrences=recurrences, abacus_num_positions=512,
                          **REFERENCE_OPTIONS)
    with torch.device("meta"):
        count = sum(p.numel() for p in AbacusForCausalLM(config).parameters())
    assert count == 7_344_128 * layers + 4_761_600
    assert round(count / 1e6) == PAPER_PARAMETERS[layers, recurrences] / 1e6  # the paper's rounding
    assert abs(count / PAPER_PARAMETERS[layers, recurrences] - 1) < (0.025 if layers == 2 else 0.01)


def test_the_paper_recipe_builds_the_reference_model():
    from hf_arith.training.recipe import load_recipe
    from pathlib import Path

    recipe = load_recipe(Path(__file__).parents[1] / "recipes/abacus/addition_paper.yaml")
    config = AbacusConfig(vocab_size=19, **recipe.model.config)
    for name, value in REFERENCE_OPTIONS.items():
        assert getattr(config, name) == value, name
    assert (config.abacus_num_positions, recipe.train.eps, recipe.train.decay_embeddings) == (512, 1e-12, True)
    with torch.device("meta"):
        assert sum(p.numel() for p in AbacusForCausalLM(config).parameters()) == 63_514_624  # 8x2: "64M"



@pytest.mark.parametrize("name", ["addition_cpu", "addition_paper", "multiplication", "sorting"])
def test_every_abacus_recipe_states_its_progressive_cap(name):
    """The reference caps the progressive loss's k at max(R // 2, 1) by default, AbacusConfig leaves
    it open (None): a shipped recipe must say which it trains with, not inherit a default silently."""
    from hf_arith.training.recipe import load_recipe
    from pathlib import Path

    recipes = Path(__file__).parents[1] / "recipes/abacus"
    assert sorted(p.stem for p in recipes.glob("*.yaml")) == ["addition_cpu", "addition_paper", "multiplication",
                                                              "sorting"]
    config = load_recipe(recipes / f"{name}.yaml").model.config
    assert "progressive_max_k" in config
    cap, recurrences = config["progressive_max_k"], config["num_recurrences"]
    assert cap is None or 1 <= cap <= recurrences

def test_deepnet_init_follows_the_reference():
    d, layers, recurrences = 256, 2, 4
    torch.manual_seed(0)
    model = AbacusForCausalLM(tiny_config(hidden_size=d, intermediate_size=256, num_attention_heads=4,
                                          num_hidden_layers=layers, num_recurrences=recurrences,
                                          abacus_num_positions=256, **REFERENCE_OPTIONS))
    gain = (8 * layers * recurrences) ** -0.25

    def xavier(fan_in, fan_out, g=gain):
        return g * (2 / (fan_in + fan_out)) ** 0.5

    layer = model.model.layers[0]
    q, k, v = layer.self_attn.qkv_proj.weight.chunk(3)
    expected = {"q": (q, xavier(d, d, 1.0)), "k": (k, xavier(d, d, 1.0)), "v": (v, xavier(d, d)),
                "o": (layer.self_attn.o_proj.weight, xavier(d, d)),
                "gate_up": (layer.mlp.gate_up_proj.weight, xavier(d, 512)),
                "down": (layer.mlp.down_proj.weight, xavier(256, d)),
                "adapter": (model.model.head_adapter.weight, xavier(d, d)),
                "tokens": (model.model.embed_tokens.weight, d**-0.5), "abacus": (model.model.abacus.embedding.weight, d**-0.5)}
    for name, (weight, std) in expected.items():
        assert abs(weight.std().item() / std - 1) < 0.08, name
    assert torch.equal(model.model.norm.weight, torch.ones(d)) and torch.equal(model.model.norm.bias, torch.zeros(d))


def test_fire_threshold_is_512_times_a_learned_multiplier():
    model = tiny_model(attention_positions="fire")
    fire = model.model.layers[0].self_attn.fire
    assert fire.threshold_scale.item() == 1.0 and fire.c.item() == pytest.approx(0.1)
    positions, slots = torch.tensor([[0, 1, 2, 700]]), torch.arange(4)
    with torch.no_grad():
        fire.threshold_scale.fill_(0.5)  # L = 256: position 700 normalises by itself, the others by L
        bias = fire(positions, slots, 4)
        psi = lambda x: torch.log(torch.abs(fire.c * x) + 1)  # noqa: E731
        distance = (slots[:, None] - slots[None, :]).clamp(min=0).float()
        normaliser = psi(torch.tensor([256.0, 256.0, 256.0, 700.0])) + 1e-6
        expected = fire.mlp((psi(distance) / normaliser[:, None])[None, ..., None]).permute(0, 3, 1, 2)
    torch.testing.assert_close(bias, expected)


def test_asking_for_attention_weights_changes_no_logit():
    model = tiny_model(seed=3)  # sdpa, no padding, no cache: the path that leaves causality to the kernel
    ids = ids_of("4321+987=")
    with torch.no_grad():
        plain = model(ids).logits
        out = model(ids, output_attentions=True)
    torch.testing.assert_close(out.logits, plain, atol=1e-5, rtol=1e-5)
    future = torch.triu(torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool), 1)
    assert all(float(w[..., future].abs().max()) == 0.0 for w in out.attentions)  # causal weights


@pytest.mark.parametrize("positions", ["rope", "fire"])
def test_bf16_forward_and_generation(positions):
    model = tiny_model(attention_positions=positions).to(torch.bfloat16)
    ids = ids_of("12+345=")
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    out = model.generate(input_ids=ids, max_new_tokens=4, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert out.shape == (1, ids.shape[1] + 4)
