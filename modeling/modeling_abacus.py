"""Abacus looped transformer (McLeish et al. 2024): Abacus digit positions, a recurrent block with
input injection, progressive loss, and a KV cache with one entry per layer per recurrence."""

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.utils.generic import can_return_tuple

from .configuration_abacus import AbacusConfig
from .layers import (
    CACHE_NAME,
    AbacusEmbedding,
    CausalLMMixin,
    DecoderLayer,
    FireBias,
    GatedMLP,
    RotaryEmbedding,
    causal_mask,
    compute_abacus_positions,
    either_cache,
    ensure_cache_slots,
    packed_sequence_ids,
    padding_free_position_ids,
)


class AbacusPreTrainedModel(PreTrainedModel):
    config_class = AbacusConfig
    config: AbacusConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    _supports_sdpa = True
    _supports_attention_backend = True
    # FIRE adds a learned bias to the attention logits and the looped cache holds R·L entries, so
    # attention takes a dense additive mask: no flash or flex kernels, and no static cache (whose
    # layer count is fixed by the config); the recurrence count, cache growth and Abacus row check
    # are Python control flow, so no full-graph compile either. transformers reads these flags:
    # its tests skip what they declare, and `from_pretrained` refuses the kernels.
    _supports_flash_attn = False
    _supports_flex_attn = False
    _can_compile_fullgraph = False

    def _init_weights(self, module):
        if isinstance(module, FireBias):
            init.constant_(module.c, 0.1)
            init.constant_(module.threshold_scale, 1.0)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
            if self.config.initializer == "normal":
                init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            elif isinstance(module, nn.Embedding):
                init.normal_(module.weight, mean=0.0, std=self.config.hidden_size**-0.5)
            else:
                init.copy_(module.weight, self._deepnet_weight(module))

    def _deepnet_weight(self, linear: nn.Linear) -> torch.Tensor:
        """A fresh weight for `linear` under the reference's `deepnorm-straight` init
        (mcleish7/arithmetic `components.py`, `_init_module`): Xavier-normal with gain
        (8·L·R)^(-1/4), queries and keys with gain 1. The fused q/k/v projection is drawn as three
        d×d matrices, as the reference's separate projections are."""
        config = self.config
        gain = (8 * config.num_hidden_layers * config.num_recurrences) ** -0.25
        out_features, in_features = linear.out_features, linear.in_features
        draw = lambda *shape: torch.randn(*shape, device=linear.weight.device)  # noqa: E731
        if not any(linear is layer.self_attn.qkv_proj for layer in self.base_model.layers):
            return draw(out_features, in_features) * gain * (2 / (in_features + out_features)) ** 0.5
        q, k, v = (draw(in_features, in_features) * in_features**-0.5 for _ in range(3))
        return torch.cat([q, k, v * gain])


class AbacusModel(AbacusPreTrainedModel):
    """The looped decoder without the LM head: returns the final hidden states."""

    def __init__(self, config: AbacusConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.abacus = AbacusEmbedding(config) if config.uses_abacus else None
        self.embed_positions = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size)
            if config.embedding_positions == "learned"
            else None
        )
        self.rotary_emb = RotaryEmbedding(config) if config.attention_positions == "rope" else None
        norm = lambda: nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.layer_norm_bias)  # noqa: E731
        self.embed_norm = norm() if config.embedding_norm else None
        self.layers = nn.ModuleList([DecoderLayer(config, i, norm) for i in range(config.num_hidden_layers)])
        self.head = GatedMLP(config) if config.head == "mlp" else None
        # Post-norm layers already end normalised; the MLP head is normalised after.
        self.norm = norm() if config.norm_position == "pre" or self.head is not None else nn.Identity()
        # The reference's MLP head ends in an untied d×d map (its `TransposedAdapter`) before the
        # vocabulary projection; kept here, so that the LM head maps the last hidden state to logits.
        self.head_adapter = nn.Linear(config.hidden_size, config.hidden_size, bias=False) if config.head == "mlp" else None
        self.gradient_checkpointing = False
        self.post_init()

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """The block's output to the final hidden state: the MLP head, final norm and adapter where
        configured, else the final norm (pre-norm) or nothing (post-norm)."""
        if self.head is None:
            return self.norm(hidden)
        return self.head_adapter(self.norm(self.head(hidden)))

    def prepare(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        inputs_embeds=None,
        abacus_positions=None,
        num_recurrences=None,
        output_attentions=False,
    ):
        """Embeds the input and builds what every layer application needs.

        Returns `(embedded, recurrences, layer_kwargs)`; `run_block` then applies recurrences.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        embedded = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, q_len = embedded.shape[:2]
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        if past_key_values is not None and getattr(past_key_values, "is_compileable", False):
            raise ValueError(
                "Abacus models run on a dynamic cache only (the looped block stores one entry per layer per "
                "recurrence, and the recurrence count may change at inference); drop cache_implementation='static' "
                "(or the StaticCache) and generate with the default cache"
            )
        if position_ids is None:
            position_ids = padding_free_position_ids(attention_mask, q_len, past_len, embedded.device)
        position_ids = position_ids.expand(batch, q_len)
        sequence_ids = packed_sequence_ids(position_ids, attention_mask, past_key_values)

        if self.abacus is not None:
            embedded = embedded + self.abacus(abacus_positions, input_ids, sequence_ids)
        if self.embed_positions is not None:
            if int(position_ids.max()) >= self.config.max_position_embeddings:
                raise ValueError(
                    f"sequence position {int(position_ids.max())} exceeds max_position_embeddings="
                    f"{self.config.max_position_embeddings}; use shorter inputs"
                )
            embedded = embedded + self.embed_positions(position_ids)
        if self.embed_norm is not None:
            embedded = self.embed_norm(embedded)

        recurrences = num_recurrences or self.config.num_recurrences
        if past_key_values is not None:
            ensure_cache_slots(past_key_values, recurrences * self.config.num_hidden_layers)

        padded = attention_mask is not None and not bool(attention_mask.all())
        # Without padding, cache or FIRE bias, sdpa's own causal path is fastest (flash on GPU);
        # attention weights come from the eager kernel, which needs the mask.
        plain_causal = self.config._attn_implementation == "sdpa" and self.config.attention_positions != "fire"
        if plain_causal and not padded and past_len == 0 and sequence_ids is None and not output_attentions:
            mask = None
        else:
            mask = causal_mask(attention_mask, batch, q_len, past_len, embedded.dtype, embedded.device, sequence_ids)
        layer_kwargs = {
            "attention_mask": mask,
            "position_ids": position_ids,
            "position_embeddings": self.rotary_emb(position_ids) if self.rotary_emb is not None else None,
            "past_key_values": past_key_values,
            "output_attentions": bool(output_attentions),
        }
        return embedded, recurrences, layer_kwargs

    def run_block(self, hidden, embedded, recurrences: range, layer_kwargs, states=None, attentions=None):
        """Applies the recurrent block for each recurrence index in `recurrences`; appends each layer
        application's output to `states` and its attention weights to `attentions` when given.

        With input injection the state starts at zero (or small noise, `initial_state_std`) and the
        embedded input is added before every application, so with a zero start recurrence 0 sees
        exactly the embeddings (1×1 is a plain decoder).
        """
        num_layers, config = self.config.num_hidden_layers, self.config
        for r in recurrences:
            for i, layer in enumerate(self.layers):
                if config.input_injection and (i == 0 or config.inject_every_layer):
                    hidden = hidden + embedded
                hidden, weights = layer(hidden, cache_index=r * num_layers + i, **layer_kwargs)
                if states is not None:
                    states.append(hidden)
                if attentions is not None:
                    attentions.append(weights)
        return hidden

    def initial_state(self, embedded):
        """The state before recurrence 0: with input injection zeros, or N(0, std²) noise (the
        reference's `state_init: embed`); without injection the embeddings themselves."""
        if not self.config.input_injection:
            return embedded
        if self.config.initial_state_std is None:
            return torch.zeros_like(embedded)
        return torch.randn_like(embedded) * self.config.initial_state_std

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        num_recurrences: int | None = None,
        abacus_positions: torch.LongTensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        r"""
        Returns `BaseModelOutputWithPast` (a tuple with `return_dict=False`): `last_hidden_state`
        (batch, seq, hidden), normalised; the cache; and on request:

        - `hidden_states`: R·L + 1 tensors (batch, seq, hidden): the embedded input (tokens plus
          position embeddings; with input injection, what is added before every recurrence), then
          the output of each layer application in order (recurrence 0 layers 0..L-1, recurrence 1,
          ...), the last one after the final norm (so it equals `last_hidden_state`, as in Llama).
        - `attentions`: R·L tensors (batch, heads, q, kv), one per layer application, computed by the
          eager kernel for this call.
        """
        past_key_values = either_cache(cache, past_key_values)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        if use_cache and past_key_values is None and not self.training:
            past_key_values = DynamicCache()
        embedded, recurrences, layer_kwargs = self.prepare(
            input_ids, attention_mask, position_ids, past_key_values, inputs_embeds, abacus_positions, num_recurrences,
            output_attentions,
        )
        states = [embedded] if output_hidden_states else None
        attentions = [] if output_attentions else None
        hidden = self.run_block(self.initial_state(embedded), embedded, range(recurrences), layer_kwargs, states, attentions)
        hidden = self.finish(hidden)
        if states is not None:
            states[-1] = hidden
        return BaseModelOutputWithPast(
            last_hidden_state=hidden,
            hidden_states=None if states is None else tuple(states),
            attentions=None if attentions is None else tuple(attentions),
            **{CACHE_NAME: past_key_values},
        )


class AbacusForCausalLM(CausalLMMixin, AbacusPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: AbacusConfig):
        super().__init__(config)
        self.model = AbacusModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        num_recurrences: int | None = None,
        abacus_positions: torch.LongTensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        cache: Cache | None = None,
        progressive_depth: tuple[int, int] | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        num_recurrences (`int`, *optional*): applications of the recurrent block, default
            `config.num_recurrences`; raise it at inference for more test-time compute.
        abacus_positions (`torch.LongTensor`, *optional*): Abacus positions (before any offset) of
            `input_ids`; computed from `input_ids` when omitted. `generate` passes them because a
            cached step sees only the newest token.
        num_items_in_batch (`int`, *optional*): divide the summed loss by this many label tokens.
        shift_labels (`torch.LongTensor` of shape `(batch, seq)`, *optional*, in kwargs): targets already
            aligned with the logits (sequence/context parallelism shifts before sharding); replace the
            shifted `labels` in the loss, as in every transformers causal LM. Other loss arguments
            (`ignore_index`) pass through to `loss_function` too.
        cache (`Cache`, *optional*): the KV cache, the name transformers >= 5.24 passes; the same as
            `past_key_values` (give one). The output returns it under the installed release's name.
        output_hidden_states, output_attentions: as `AbacusModel.forward` documents them.
        progressive_depth (`tuple[int, int]`, *optional*): `(n, k)` of the progressive loss's
            random-depth term (training with labels and `progressive_loss_alpha > 0`): n recurrences
            without gradient, then k with. Drawn by `draw_progressive_depth` when omitted. Where
            parameters are sharded (FSDP, DeepSpeed ZeRO-3) every process must apply the block
            equally often, so hf-arith's trainer draws one depth per optimizer step and passes it
            to every micro-batch.

        Example:
            >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
            >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
            ...                                        num_hidden_layers=1))
            >>> tokenizer = ArithTokenizer()
            >>> inputs = tokenizer("321+54=", return_tensors="pt")  # 123 + 45, every number's digits reversed
            >>> out = model(**inputs, labels=inputs["input_ids"])
            >>> out.logits.shape, out.loss.shape
            (torch.Size([1, 7, 31]), torch.Size([]))
            >>> model(**inputs, num_recurrences=4).logits.shape  # more test-time compute, the same weights
            torch.Size([1, 7, 31])

            For a model that has learned addition, `tokenizer.decode(out.logits[0, -1].argmax())` is
            `'8'`, the first digit of the answer `861`.
        """
        if labels is not None and self.training and self.config.progressive_loss_alpha > 0:
            return self._progressive_forward(
                input_ids, attention_mask, position_ids, inputs_embeds, labels, num_recurrences,
                abacus_positions, num_items_in_batch, progressive_depth, **kwargs,
            )
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=either_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            num_recurrences=num_recurrences,
            abacus_positions=abacus_positions,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            return_dict=True,
        )
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        loss = None if labels is None else self._loss(logits, labels, num_items_in_batch, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
        )

    def _loss(self, logits, labels, num_items_in_batch, **kwargs):
        """transformers' causal-LM loss: next-token cross-entropy in fp32, ignore index -100; with
        `num_items_in_batch` the sum divided by that count (accumulation equals one big batch). The
        other loss arguments (`shift_labels`, `ignore_index`) go to `loss_function` as given."""
        return self.loss_function(
            logits=logits, labels=labels, vocab_size=self.config.vocab_size, num_items_in_batch=num_items_in_batch,
            **kwargs,
        )

    def draw_progressive_depth(self, generator: torch.Generator | None = None,
                               num_recurrences: int | None = None) -> tuple[int, int]:
        """`(n, k)` for the progressive loss: n ~ U{0..R-1} recurrences without gradient, then
        k ~ U{1..R-n} (capped at `progressive_max_k`) with gradient, as the reference's
        `forward_progressive` draws them; from `generator` (torch's default one when None)."""
        recurrences = num_recurrences or self.config.num_recurrences
        n = int(torch.randint(0, recurrences, (), generator=generator))
        max_k = recurrences - n
        if self.config.progressive_max_k is not None:
            max_k = min(max_k, self.config.progressive_max_k)
        return n, int(torch.randint(1, max_k + 1, (), generator=generator))

    def _progressive_forward(
        self, input_ids, attention_mask, position_ids, inputs_embeds, labels, num_recurrences, abacus_positions,
        num_items_in_batch, progressive_depth=None, **loss_kwargs,
    ) -> CausalLMOutputWithPast:
        """(1-α)·L(R recurrences) + α·L(n recurrences without grad, then k with grad), with
        `(n, k) = progressive_depth` or drawn by `draw_progressive_depth`."""
        alpha = self.config.progressive_loss_alpha
        embedded, recurrences, layer_kwargs = self.model.prepare(
            input_ids, attention_mask, position_ids, None, inputs_embeds, abacus_positions, num_recurrences
        )

        def loss_of(hidden):
            logits = self.lm_head(self.model.finish(hidden))
            return logits, self._loss(logits, labels, num_items_in_batch, **loss_kwargs)

        n, k = progressive_depth or self.draw_progressive_depth(num_recurrences=recurrences)
        if not (0 <= n < recurrences and 1 <= k <= recurrences - n):
            raise ValueError(f"progressive_depth=({n}, {k}) does not fit {recurrences} recurrences: "
                             f"n must be in 0..{recurrences - 1} and k in 1..{recurrences} - n")
        with torch.no_grad():
            prefix = self.model.run_block(self.model.initial_state(embedded), embedded, range(n), layer_kwargs)
        logits, loss = loss_of(self.model.run_block(prefix.detach(), embedded, range(n, n + k), layer_kwargs))
        loss = alpha * loss
        if alpha < 1:
            # A second start: a noise start is drawn per pass, as the reference's one call per loss term.
            full = self.model.run_block(self.model.initial_state(embedded), embedded, range(recurrences), layer_kwargs)
            logits, full_loss = loss_of(full)
            loss = loss + (1 - alpha) * full_loss
        return CausalLMOutputWithPast(loss=loss, logits=logits)


AbacusConfig.register_for_auto_class()
AbacusModel.register_for_auto_class("AutoModel")
AbacusForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["AbacusForCausalLM", "AbacusModel", "AbacusPreTrainedModel", "compute_abacus_positions"]
