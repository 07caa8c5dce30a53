"""OLMo-1 (Groeneveld et al. 2024) on the shared decoder layers.

OLMo's delta from the shared pieces: parameter-free LayerNorm everywhere, the "mitchell" init,
embedding rows padded beyond the vocabulary (whose logits are masked), and optional Abacus
positions for digits. Numerically it is transformers' native `OlmoForCausalLM` (see
`hf_arith.convert` for moving weights between the two and allenai/OLMo's checkpoints), except
that, as in allenai/OLMo, the embedding has no `padding_idx`: the pad token's row trains like any
other.
"""

import math

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_olmo import ArithOlmoConfig
from .layers import (
    CACHE_NAME,
    AbacusEmbedding,
    CausalLMMixin,
    DecoderLayer,
    ParameterFreeLayerNorm,
    RotaryEmbedding,
    causal_mask,
    compute_abacus_positions,
    either_cache,
    padding_free_position_ids,
    shifted_cross_entropy,
)


class ArithOlmoPreTrainedModel(PreTrainedModel):
    config_class = ArithOlmoConfig
    config: ArithOlmoConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DecoderLayer"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        # Per Linear/Embedding, with σ looked up by identity: transformers does not call this for
        # remote-code modules without parameters of their own, such as DecoderLayer.
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            return
        if self.config.init_fn == "normal":
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        else:
            std = self._mitchell_std(module)
            init.trunc_normal_(module.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def _mitchell_std(self, module: nn.Module) -> float:
        """σ of OLMo-1's "mitchell" init, as allenai/OLMo's `olmo/model.py` sets it
        (`OLMo.reset_parameters`, `OLMoBlock.reset_parameters`, `OLMoSequentialBlock.reset_parameters`):
        1/√d for the token embedding, the untied LM head and the fused q/k/v and MLP input
        projections; 1/√(2·d·(layer+1)) for the attention output; 1/√(2·intermediate_size·(layer+1))
        for the MLP output (OLMo divides by its `ff_out.in_features`, not d). Abacus rows, an absolute
        position table like OLMo's `wpe`, get 1/√d.
        """
        d, intermediate = self.config.hidden_size, self.config.intermediate_size
        for i, layer in enumerate(self.base_model.layers):
            if module is layer.self_attn.o_proj:
                return 1 / math.sqrt(2 * d * (i + 1))
            if module is layer.mlp.down_proj:
                return 1 / math.sqrt(2 * intermediate * (i + 1))
        return 1 / math.sqrt(d)


class ArithOlmoModel(ArithOlmoPreTrainedModel):
    """The decoder without the LM head: returns the final (normalised) hidden states."""

    def __init__(self, config: ArithOlmoConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.embedding_size, config.hidden_size)
        self.abacus = AbacusEmbedding(config) if config.abacus else None
        self.rotary_emb = RotaryEmbedding(config)
        norm = lambda: ParameterFreeLayerNorm(config.hidden_size)  # noqa: E731
        self.layers = nn.ModuleList([DecoderLayer(config, i, norm) for i in range(config.num_hidden_layers)])
        self.norm = norm()
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        abacus_positions: torch.LongTensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        past_key_values = either_cache(cache, past_key_values)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if self.abacus is not None:
            if abacus_positions is None:
                if input_ids is None:
                    raise ValueError("Abacus embeddings need input_ids or abacus_positions")
                abacus_positions = compute_abacus_positions(input_ids, self.config.digit_token_ids)
            hidden = hidden + self.abacus(abacus_positions)

        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None and not self.training:
            past_key_values = DynamicCache(config=self.config)
        batch, q_len = hidden.shape[:2]
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            position_ids = padding_free_position_ids(attention_mask, q_len, past_len, hidden.device)
        position_ids = position_ids.expand(batch, q_len)

        padded = attention_mask is not None and not bool(attention_mask.all())
        if self.config._attn_implementation == "sdpa" and not padded and past_len == 0:
            mask = None  # sdpa's own causal path (flash on GPU)
        else:
            mask = causal_mask(attention_mask, batch, q_len, past_len, hidden.dtype, hidden.device)
        layer_kwargs = {
            "attention_mask": mask,
            "position_ids": position_ids,
            "position_embeddings": self.rotary_emb(position_ids),
            "past_key_values": past_key_values,
        }
        for layer in self.layers:
            hidden = layer(hidden, **layer_kwargs)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden), **{CACHE_NAME: past_key_values})


class ArithOlmoForCausalLM(CausalLMMixin, ArithOlmoPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ArithOlmoConfig):
        super().__init__(config)
        self.model = ArithOlmoModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
        self.post_init()

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
        num_items_in_batch: int | torch.Tensor | None = None,
        abacus_positions: torch.LongTensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        r"""
        logits_to_keep (`int`, defaults to 0): compute logits for the last this many positions only
            (0: all); generation passes 1.
        num_items_in_batch (`int`, *optional*): divide the summed loss by this many label tokens
            (gradient accumulation and data parallelism then match one big batch).
        abacus_positions (`torch.LongTensor`, *optional*): with `config.abacus`, the Abacus positions
            of `input_ids` (before any offset); computed from `input_ids` when omitted.

        Logits have `config.embedding_size` columns; the padding columns (ids >= `vocab_size`) hold
        the dtype's minimum.

        Example:
            >>> out = model(**tokenizer("321+54=", return_tensors="pt"), labels=labels)
            >>> out.logits.shape[-1] == model.config.embedding_size, out.loss.ndim
            (True, 0)
        """
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=either_cache(cache, past_key_values),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            abacus_positions=abacus_positions,
        )
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        if self.config.embedding_size > self.config.vocab_size:
            # Rows padded for throughput are no tokens: never generated, no share of the softmax.
            logits[..., self.config.vocab_size :] = torch.finfo(logits.dtype).min
        loss = None if labels is None else shifted_cross_entropy(logits, labels, num_items_in_batch)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_NAME: getattr(outputs, CACHE_NAME)})


ArithOlmoConfig.register_for_auto_class()
ArithOlmoModel.register_for_auto_class("AutoModel")
ArithOlmoForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["ArithOlmoForCausalLM", "ArithOlmoModel", "ArithOlmoPreTrainedModel"]
