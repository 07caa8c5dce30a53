"""OLMo-1 (Groeneveld et al. 2024) as transformers' own `olmo` plus what hf-arith adds.

The decoder, attention, RoPE, parameter-free LayerNorm, SwiGLU, cache handling and the output
conventions (`output_hidden_states`, `output_attentions`, `return_dict`) are transformers'
`Olmo*` classes, inherited unchanged. The delta, as allenai/OLMo has it:

- embedding rows padded beyond the vocabulary (`config.embedding_size`), which are no tokens
  (logits have `config.vocab_size` columns), and no `padding_idx` (the pad token's row trains
  like any other);
- the "mitchell" init;
- optional Abacus positions added to digit embeddings (McLeish et al. 2024);
- position ids that skip left padding when none are given;
- with Abacus, a digit count that restarts where a packed sequence does (the attention restarts
  there in transformers' own mask).

Tensor names are native, so `hf_arith.convert --to native` is a config change.
"""

import math

import torch
from torch import nn
from transformers import GenerationMixin
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.olmo.modeling_olmo import OlmoForCausalLM, OlmoModel, OlmoPreTrainedModel
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple

from .configuration_olmo import ArithOlmoConfig
from .layers import (
    CACHE_NAME,
    AbacusEmbedding,
    CausalLMMixin,
    either_cache,
    packed_sequence_ids,
    padding_free_position_ids,
)


class ArithOlmoPreTrainedModel(OlmoPreTrainedModel):
    config_class = ArithOlmoConfig
    config: ArithOlmoConfig

    def _init_weights(self, module):
        # Per Linear/Embedding, with σ looked up by identity; everything else (RoPE buffers) as native.
        if not isinstance(module, (nn.Linear, nn.Embedding)):
            return super()._init_weights(module)
        if self.config.init_fn == "normal":
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        else:
            std = self._mitchell_std(module)
            init.trunc_normal_(module.weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

    def _mitchell_std(self, module: nn.Module) -> float:
        """σ of OLMo-1's "mitchell" init, as allenai/OLMo's `olmo/model.py` sets it
        (`OLMo.reset_parameters`, `OLMoBlock.reset_parameters`, `OLMoSequentialBlock.reset_parameters`):
        1/√d for the token embedding, the untied LM head and the q/k/v and MLP input projections;
        1/√(2·d·(layer+1)) for the attention output; 1/√(2·intermediate_size·(layer+1)) for the MLP
        output (OLMo divides by its `ff_out.in_features`, not d). Abacus rows, an absolute position
        table like OLMo's `wpe`, get 1/√d.
        """
        d, intermediate = self.config.hidden_size, self.config.intermediate_size
        for i, layer in enumerate(self.base_model.layers):
            if module is layer.self_attn.o_proj:
                return 1 / math.sqrt(2 * d * (i + 1))
            if module is layer.mlp.down_proj:
                return 1 / math.sqrt(2 * intermediate * (i + 1))
        return 1 / math.sqrt(d)


class ArithOlmoModel(ArithOlmoPreTrainedModel, OlmoModel):
    """transformers' `OlmoModel` with `embedding_size` rows, no `padding_idx`, and optional Abacus
    positions on digit tokens. Returns the final (normalised) hidden states."""

    def __init__(self, config: ArithOlmoConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.embedding_size, config.hidden_size)
        self.abacus = AbacusEmbedding(config) if config.uses_abacus else None
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        abacus_positions: torch.LongTensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ):
        r"""
        abacus_positions (`torch.LongTensor` of shape `(batch, seq)`, *optional*): with `config.uses_abacus`,
            the Abacus positions of `input_ids` before any offset; computed from `input_ids` when omitted,
            needed with `inputs_embeds`.
        cache / past_key_values (`Cache`, *optional*): the KV cache under either transformers name.

        Everything else is `OlmoModel.forward`'s, passed through.
        """
        cache = either_cache(cache, past_key_values)
        if self.training and kwargs.get("use_cache") is None:
            kwargs["use_cache"] = False  # a training step builds no cache (native's default would)
        if self.abacus is not None:
            use_cache = self.config.use_cache if kwargs.get("use_cache") is None else kwargs["use_cache"]
            # Native's mask separates packed sequences exactly when it builds no cache; so does the count.
            caching = cache is not None or bool(use_cache)
            sequence_ids = packed_sequence_ids(position_ids, attention_mask, cache if not caching else True)
            abacus = self.abacus(abacus_positions, input_ids, sequence_ids)
            if inputs_embeds is None:
                inputs_embeds = self.embed_tokens(input_ids)
            inputs_embeds, input_ids = inputs_embeds + abacus, None
        if position_ids is None and attention_mask is not None and attention_mask.dim() == 2:
            # A left-padded batch gives each row the positions it would have alone, as `generate` does.
            q_len = (input_ids if input_ids is not None else inputs_embeds).shape[1]
            past_len = cache.get_seq_length() if cache is not None else 0
            position_ids = padding_free_position_ids(attention_mask, q_len, past_len, attention_mask.device)
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **{CACHE_NAME: cache},
            **kwargs,
        )


class ArithOlmoForCausalLM(CausalLMMixin, ArithOlmoPreTrainedModel, OlmoForCausalLM, GenerationMixin):
    """transformers' `OlmoForCausalLM` over `ArithOlmoModel`. The LM head has
    `config.embedding_size` rows; logits have one column per token, `config.vocab_size`, as
    transformers expects (the padding rows are no tokens)."""

    def __init__(self, config: ArithOlmoConfig):
        # Not OlmoForCausalLM.__init__, which would first build (and initialise) a native OlmoModel.
        OlmoPreTrainedModel.__init__(self, config)
        self.model = ArithOlmoModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.embedding_size, bias=False)
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
        logits_to_keep: int | torch.Tensor = 0,
        abacus_positions: torch.LongTensor | None = None,
        cache: Cache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ):
        r"""
        `OlmoForCausalLM.forward`, with logits of shape (batch, seq, `config.vocab_size`): the
        padding rows of the LM head take no part in the logits, the softmax or the loss.

        abacus_positions (`torch.LongTensor`, *optional*): with `config.uses_abacus`, the Abacus positions
            of `input_ids` (before any offset); computed from `input_ids` when omitted.
        cache / past_key_values (`Cache`, *optional*): the KV cache under either transformers name.
        num_items_in_batch (`int`, *optional*, in kwargs): divide the summed loss by this many label
            tokens (gradient accumulation and data parallelism then match one big batch).
        """
        outputs = super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            abacus_positions=abacus_positions,
            return_dict=True,
            **{CACHE_NAME: either_cache(cache, past_key_values)},
            **kwargs,
        )
        vocab_size, logits = self.config.vocab_size, outputs.logits
        loss = None
        if self.config.embedding_size > vocab_size:
            # Rows padded for throughput are no tokens: they get no share of the softmax (masked in
            # place, so the loss needs no copy of the full width) and no column.
            logits[..., vocab_size:] = torch.finfo(logits.dtype).min
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=logits.shape[-1], **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits[..., :vocab_size],
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
        )

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        """transformers' resize, keeping our two sizes apart: `config.vocab_size` becomes the token
        count asked for (the tokenizer's), `config.embedding_size` the rows (rounded up to
        `pad_to_multiple_of`), so the padding rows stay masked and the config matches the weights.

        New tokens get new rows as transformers gives them (with `mean_resizing`, drawn around the
        mean and covariance of the existing token rows), never the old padding rows: those were no
        tokens and were never trained as such.
        """
        vocab_size = self.config.vocab_size if new_num_tokens is None else new_num_tokens
        if new_num_tokens is not None and self.get_input_embeddings().num_embeddings > self.config.vocab_size:
            # Drop the padding rows first, so that transformers grows from the real tokens only.
            super().resize_token_embeddings(self.config.vocab_size, mean_resizing=False)
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        self.config.embedding_size = embeddings.num_embeddings
        self.config.vocab_size = min(vocab_size, embeddings.num_embeddings)
        self.vocab_size = self.config.vocab_size
        return embeddings


ArithOlmoConfig.register_for_auto_class()
ArithOlmoModel.register_for_auto_class("AutoModel")
ArithOlmoForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = ["ArithOlmoForCausalLM", "ArithOlmoModel", "ArithOlmoPreTrainedModel"]
