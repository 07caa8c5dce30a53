"""Pieces of the Abacus looped decoder, and what both models share: Abacus positions, the names
of the KV cache, save and generation behaviour.

This file travels to the Hub next to the model files, so it imports only torch and transformers.
What is transformers' own (the attention interface and its eager kernel, cache classes,
gradient checkpointing, the loss) is imported, so that upstream changes land upstream; what is
written here is Abacus's own: Abacus positions, FIRE, the looped cache layout and the mask that
FIRE adds to. Both configs name the Abacus fields alike: `abacus_num_positions`, `abacus_max_k`,
`abacus_offset_mode`, `abacus_eval_offset`, `digit_token_ids`.
"""

import math
import warnings

import torch
from torch import nn
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicLayer
from transformers.masking_utils import find_packed_sequence_indices
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, eager_attention_forward

# transformers 5.24 renamed the KV cache's forward keyword and output field from `past_key_values`
# to `cache`; `generate` passes and reads the installed release's name. Saved models run under any
# release, so this is the one place that knows both names: forwards accept either (`either_cache`)
# and return it under the installed one (`CACHE_NAME`).
CACHE_NAME = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def either_cache(cache: Cache | None, past_key_values: Cache | None) -> Cache | None:
    """The cache given under either name; `ValueError` if both are given.

    Under a release that renamed it, the old name still works but warns, as transformers' own models
    do (`deprecate_kwarg`), so that code written for older releases learns of the rename.
    """
    if cache is not None and past_key_values is not None:
        raise ValueError("pass the KV cache once, as `cache` or as `past_key_values`, not both")
    if past_key_values is not None and CACHE_NAME == "cache" and not torch.compiler.is_compiling():
        warnings.warn(
            "`past_key_values` is deprecated for the KV cache since transformers 5.24; use `cache` instead",
            FutureWarning,
            stacklevel=3,
        )
    return past_key_values if cache is None else cache


class GatedMLP(nn.Module):
    """`down(act(gate(x)) * up(x))`; SwiGLU with `silu`, gated GELU with `gelu`.

    Gate and up are one fused matmul (`gate_up_proj`, gate rows first): one larger GEMM is faster
    than two small ones, most of all on CPU.
    """

    def __init__(self, config):
        super().__init__()
        self.intermediate_size = config.intermediate_size
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        return self.down_proj(self.act_fn(gate) * up)


class RotaryEmbedding(nn.Module):
    """Rotate-half (NeoX) RoPE; cos/sin computed in fp32 from `position_ids`.

    The frequencies are recomputed per call rather than kept in a buffer: it costs head_dim/2
    values and leaves no non-persistent buffer to re-create when `from_pretrained` builds the
    model on the meta device.
    """

    def __init__(self, config):
        super().__init__()
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.theta = config.rope_theta

    @torch.no_grad()
    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        exponents = torch.arange(0, self.head_dim, 2, dtype=torch.float, device=position_ids.device) / self.head_dim
        inv_freq = 1.0 / (self.theta**exponents)
        freqs = position_ids[..., None].float() * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def compute_abacus_positions(
    input_ids: torch.LongTensor,
    digit_token_ids: list[int],
    sequence_ids: torch.LongTensor | None = None,
    carry: torch.LongTensor | None = None,
) -> torch.LongTensor:
    """The Abacus position of every token: its 1-based index in its run of consecutive digits, 0 for
    non-digits.

    `sequence_ids` (batch, seq), as `packed_sequence_ids` gives them, end a run where a packed
    sequence starts. `carry` (batch, 1) is the Abacus position of the token just before `input_ids`
    (the end of a prompt given as embeddings): a run of digits at the start continues it.

    Example:
        >>> ids = torch.tensor([[5, 6, 14, 7, 8, 9, 18]])  # "12+345=" in the hf-arith vocabulary
        >>> compute_abacus_positions(ids, list(range(4, 14))).tolist()
        [[1, 2, 0, 1, 2, 3, 0]]
        >>> packed = torch.tensor([[5, 6, 7, 8, 9]])  # "12" and "345", packed in one row
        >>> compute_abacus_positions(packed, list(range(4, 14)), sequence_ids=torch.tensor([[0, 0, 1, 1, 1]])).tolist()
        [[1, 2, 1, 2, 3]]
    """
    is_digit = torch.isin(input_ids, torch.tensor(digit_token_ids, device=input_ids.device))
    digits_so_far = is_digit.long().cumsum(-1)
    run_ends = ~is_digit
    if sequence_ids is not None:
        # A digit that opens a sequence starts a run as if a non-digit stood before it.
        starts = torch.ones_like(is_digit)
        starts[:, 1:] = sequence_ids[:, 1:] != sequence_ids[:, :-1]
        run_ends = run_ends | starts
    # Count of digits before the current run: the cumulative count just before its first digit.
    run_start = torch.where(run_ends, digits_so_far - is_digit.long(), 0).cummax(-1).values
    positions = (digits_so_far - run_start) * is_digit
    if carry is not None:
        leading = is_digit & (run_ends.long().cumsum(-1) == 0)
        positions = positions + carry.to(positions.device) * leading
    return positions


def packed_sequence_ids(position_ids, attention_mask, cache) -> torch.LongTensor | None:
    """Which packed sequence each token belongs to (batch, seq), or None when the row holds one.

    As transformers' masks decide it (`find_packed_sequence_indices`): sequences are packed when the
    position ids restart within a row and neither an attention mask nor a cache is given, which is
    what `DataCollatorWithFlattening` and TRL's padding-free packing produce for training.
    """
    if position_ids is None or attention_mask is not None or cache is not None:
        return None
    return find_packed_sequence_indices(position_ids)


def abacus_capacity(config) -> int | None:
    """The longest number (in digits) the Abacus table of `config` (either model's) positions
    outside training, or `None` when the model adds no Abacus positions (`config.uses_abacus`).

    Digit position p uses row p + `abacus_eval_offset`, and rows run 0..`abacus_num_positions`-1;
    `AbacusEmbedding` raises for a longer number. hf-arith asks this before it evaluates or
    generates, so that a too-long problem is named before any decoding.

    Example:
        >>> from types import SimpleNamespace
        >>> abacus_capacity(SimpleNamespace(uses_abacus=True, abacus_num_positions=64, abacus_eval_offset=3))
        60
    """
    if not config.uses_abacus:
        return None
    return int(config.abacus_num_positions) - 1 - int(config.abacus_eval_offset)


class AbacusEmbedding(nn.Module):
    """A learned row per Abacus position; training shifts digit positions by a random offset k so
    that rows beyond the training lengths are trained too."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.abacus_num_positions, config.hidden_size)

    def offset(self, positions: torch.LongTensor) -> torch.LongTensor:
        config = self.config
        if self.training:
            rows = positions.shape[0] if config.abacus_offset_mode == "per_example" else 1
            k = torch.randint(0, config.abacus_max_k + 1, (rows, 1)).to(positions.device)
        else:
            k = config.abacus_eval_offset
        return torch.where(positions > 0, positions + k, 0)

    def forward(
        self,
        positions: torch.LongTensor | None,
        input_ids: torch.LongTensor | None = None,
        sequence_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """Abacus vectors (batch, seq, hidden) for `positions` (before any offset), computed from
        `input_ids` (and packed `sequence_ids`) when not given (`generate` gives them: a cached step
        sees only new tokens)."""
        if positions is None:
            if input_ids is None:
                raise ValueError(
                    "this model adds Abacus positions to digit tokens, which it computes from input_ids; with "
                    "inputs_embeds, also pass abacus_positions (batch, seq): each digit's 1-based index in its run "
                    "of digits, 0 for other tokens (`compute_abacus_positions` of the token ids)"
                )
            positions = compute_abacus_positions(input_ids, self.config.digit_token_ids, sequence_ids)
        rows = self.offset(positions)
        if torch.compiler.is_compiling():
            # A compiled graph cannot branch on a value; the check runs inside it instead.
            torch._assert_async(
                (rows < self.config.abacus_num_positions).all(),
                "a number has more digits than the Abacus table has rows (abacus_num_positions)",
            )
        elif rows.numel() and int(rows.max()) >= self.config.abacus_num_positions:
            longest = int(positions.max())
            raise ValueError(
                f"a number of {longest} digits needs Abacus row {int(rows.max())}, but the table has "
                f"{self.config.abacus_num_positions} rows (offset up to {self.config.abacus_max_k} in training, "
                f"{self.config.abacus_eval_offset} at inference); use shorter operands, or train a model with a "
                f"larger `abacus_num_positions`"
            )
        return self.embedding(rows)


class FireBias(nn.Module):
    """FIRE (Li et al. 2023): a learned attention bias from normalised relative distance, as the
    reference code (mcleish7/arithmetic `embeddings.py`, `FIRE`) computes it.

    `b(i, j) = MLP(psi(i - j) / (psi(max(i, L)) + 1e-6))` with `psi(x) = log(|c x| + 1)`, an MLP
    1 -> 32 -> ReLU -> heads, learned `c` (init 0.1) and threshold `L = |s| · 512` with a learned
    multiplier `s` (init 1): under Adam a multiplier moves L hundreds of times faster than L itself.

    `c` and `s` have shape (1,), not (): FSDP2 and DeepSpeed ZeRO shard every parameter along a
    dimension and refuse 0-dim ones. Weights saved as scalars (hf-arith before 2026-12-08) still
    load; `PreTrainedModel` subclasses reshape them in `_load_legacy_fire_scalars`.
    """

    THRESHOLD = 512.0

    def __init__(self, num_heads: int, mlp_width: int = 32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, mlp_width), nn.ReLU(), nn.Linear(mlp_width, num_heads))
        self.c = nn.Parameter(torch.tensor([0.1]))
        self.threshold_scale = nn.Parameter(torch.tensor([1.0]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # `load_state_dict` (checkpoints, peft, hand-made loads) of weights saved as scalars.
        for name in ("c", "threshold_scale"):
            value = state_dict.get(prefix + name)
            if value is not None and value.dim() == 0:
                state_dict[prefix + name] = value.reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def psi(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.abs(self.c.float() * x) + 1)

    def forward(self, query_positions: torch.Tensor, query_cache_index: torch.Tensor, kv_len: int) -> torch.Tensor:
        """Bias of shape (batch, heads, q, kv).

        `query_positions` (batch, q) are token positions that ignore left padding, so the normaliser
        `max(i, L)` does not depend on padding; the distance `i - j` is measured in cache slots
        (`query_cache_index`, (q,)), where padding cancels out.
        """
        key_index = torch.arange(kv_len, device=query_positions.device)
        distance = (query_cache_index[:, None] - key_index[None, :]).clamp(min=0).float()
        threshold = self.threshold_scale.float().abs() * self.THRESHOLD
        normaliser = self.psi(torch.maximum(query_positions.float(), threshold)) + 1e-6
        features = self.psi(distance)[None] / normaliser[..., None]  # fp32, then the MLP's dtype
        return self.mlp(features.unsqueeze(-1).to(self.mlp[0].weight.dtype)).permute(0, 3, 1, 2)


def causal_mask(attention_mask, batch_size, q_len, past_len, dtype, device, sequence_ids=None) -> torch.Tensor:
    """Additive mask (batch, 1, q, past + q): 0 where a query may attend, dtype-min elsewhere.

    Built here instead of with `transformers.masking_utils` because FIRE adds a learned bias to
    it per layer and the looped cache holds more entries than there are layers. With packed
    `sequence_ids` (batch, q; no cache), a query sees only its own sequence.
    """
    kv_len = past_len + q_len
    query_index = torch.arange(past_len, kv_len, device=device)
    allowed = query_index[:, None] >= torch.arange(kv_len, device=device)[None, :]
    allowed = allowed[None, None].expand(batch_size, 1, q_len, kv_len)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, -kv_len:].bool()
    if sequence_ids is not None:
        allowed = allowed & (sequence_ids[:, None, :, None] == sequence_ids[:, None, None, :])
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


class Attention(nn.Module):
    """Causal multi-head attention, no biases, through transformers' attention interface.

    q, k and v are one fused projection (`qkv_proj`, in that order) for speed. Position signal
    inside attention: RoPE (`position_embeddings` = cos, sin), FIRE (a bias per layer) or none;
    optionally a log-length temperature on the queries (`attention_logn_base`).
    """

    is_causal = True

    def __init__(self, config, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.num_key_value_groups = 1
        self.scaling = self.head_dim**-0.5
        self.qkv_proj = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=False)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size, bias=False)
        self.fire = FireBias(config.num_attention_heads) if config.attention_positions == "fire" else None

    def logn_scale(self, position_ids: torch.Tensor) -> torch.Tensor:
        """max(1, log n / log base) for a query that sees n = position + 1 keys, as (batch, 1, q, 1)."""
        keys_seen = (position_ids + 1).float()
        scale = keys_seen.log() / math.log(self.config.attention_logn_base)
        return scale.clamp(min=1.0)[:, None, :, None]

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        past_key_values: Cache | None = None,
        cache_index: int | None = None,
        output_attentions: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(output, weights)`; weights (batch, heads, q, kv) only with `output_attentions`, for
        which the eager kernel runs whatever `config._attn_implementation` says."""
        batch, q_len, _ = hidden_states.shape
        qkv = self.qkv_proj(hidden_states)
        query, key, value = qkv.view(batch, q_len, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)

        if position_embeddings is not None:  # rotated in fp32 (cos/sin are), then back to the model's dtype
            rotated = apply_rotary_pos_emb(query.float(), key.float(), *position_embeddings)
            query, key = (t.to(value.dtype) for t in rotated)
        if self.config.attention_logn_base is not None:
            query = query * self.logn_scale(position_ids).to(query.dtype)
        if past_key_values is not None:
            slot = self.layer_idx if cache_index is None else cache_index
            key, value = past_key_values.update(key, value, slot)
        if self.fire is not None:
            kv_len = key.shape[2]
            cache_slots = torch.arange(kv_len - q_len, kv_len, device=query.device)
            attention_mask = attention_mask + self.fire(position_ids, cache_slots, kv_len).to(query.dtype)

        attention_interface = eager_attention_forward
        if self.config._attn_implementation != "eager" and not output_attentions:
            attention_interface = ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]
        output, weights = attention_interface(self, query, key, value, attention_mask, scaling=self.scaling, dropout=0.0)
        return self.o_proj(output.reshape(batch, q_len, -1)), weights


class DecoderLayer(GradientCheckpointingLayer):
    """Attention + gated MLP with residuals, normalised before (pre-norm) or after (post-norm)."""

    def __init__(self, config, layer_idx: int, norm_factory):
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        self.self_attn = Attention(config, layer_idx)
        self.mlp = GatedMLP(config)
        self.input_layernorm = norm_factory()
        self.post_attention_layernorm = norm_factory()

    def forward(self, hidden_states: torch.Tensor, **attention_kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(hidden_states, attention weights or None)`."""
        if self.pre_norm:
            attended, weights = self.self_attn(self.input_layernorm(hidden_states), **attention_kwargs)
            hidden_states = hidden_states + attended
            return hidden_states + self.mlp(self.post_attention_layernorm(hidden_states)), weights
        attended, weights = self.self_attn(hidden_states, **attention_kwargs)
        hidden_states = self.input_layernorm(hidden_states + attended)
        return self.post_attention_layernorm(hidden_states + self.mlp(hidden_states)), weights


def ensure_cache_slots(cache: Cache, num_slots: int) -> None:
    """Grows a cache to `num_slots` layers.

    A looped block stores one entry per layer per recurrence, and the recurrence count may be
    raised at inference, so `generate`'s cache (sized from the config) can be too short.
    """
    while len(cache.layers) < num_slots:
        cache.layers.append(DynamicLayer())


def padding_free_position_ids(attention_mask, q_len, past_len, device) -> torch.Tensor:
    """Token positions that skip left padding (what `generate` passes), for direct calls."""
    if attention_mask is None:
        return torch.arange(past_len, past_len + q_len, device=device)[None]
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.clamp(min=0)[:, -q_len:]


class CausalLMMixin:
    """What both causal LMs add to `PreTrainedModel` and `GenerationMixin` (list it first among the
    bases). The base model is `self.model`; its `abacus` is the Abacus embedding or None."""

    def save_pretrained(self, save_directory, *args, **kwargs):
        # transformers writes `auto_map` only for the class being saved; name the base model too,
        # so that `AutoModel` loads it (returning hidden states).
        base = type(self.model)
        module = base.__module__.rsplit(".", 1)[-1]
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoModel": f"{module}.{base.__name__}"}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def prepare_inputs_for_generation(self, input_ids, inputs_embeds=None, **kwargs):
        # `inputs_embeds` is named: `generate` accepts a prompt as embeddings only from models whose
        # `prepare_inputs_for_generation` names it.
        prompt_positions = kwargs.get("abacus_positions")
        inputs = super().prepare_inputs_for_generation(input_ids, inputs_embeds=inputs_embeds, **kwargs)
        # A cached step sees only the new tokens, but a digit's Abacus position depends on the
        # digits before it: compute positions on the whole sequence and keep the new ones.
        if self.model.abacus is not None and inputs.get("input_ids") is not None:
            carry = None
            if inputs_embeds is not None:
                # The prompt was embeddings (with its `abacus_positions`), so `input_ids` holds only
                # the generated tokens; a number the prompt ended in continues into them.
                if prompt_positions is None:
                    raise ValueError(
                        "generating from inputs_embeds with Abacus positions needs abacus_positions (batch, seq) "
                        "for the prompt: each digit's 1-based index in its run of digits, 0 for other tokens"
                    )
                carry = prompt_positions[:, -1:]
            new = inputs["input_ids"].shape[1]
            positions = compute_abacus_positions(input_ids, self.config.digit_token_ids, carry=carry)
            inputs["abacus_positions"] = positions[:, -new:]
        return inputs
