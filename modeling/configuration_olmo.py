"""Configuration of OLMo-1 (Groeneveld et al. 2024, arXiv 2402.00838): transformers' `OlmoConfig`
plus the padded embedding rows, the init scheme and the optional Abacus positions."""

from transformers import OlmoConfig

EMBEDDING_MULTIPLE = 128


class ArithOlmoConfig(OlmoConfig):
    r"""
    OLMo-1: a pre-norm decoder with parameter-free LayerNorm (fp32, eps 1e-5), no biases, SwiGLU, RoPE
    and full multi-head attention. The defaults are OLMo-1B. Optionally, digit tokens also get Abacus
    position vectors (McLeish et al. 2024) added to their embedding, on top of RoPE. Every field of
    transformers' `OlmoConfig` is accepted too (passed through); the ones below differ or are new.

    Args:
        vocab_size (`int`, defaults to 50280): tokens the tokenizer can produce, and the width of the
            logits. The padding rows (ids `vocab_size .. embedding_size-1`) have no logit: they are
            never generated and add nothing to the loss.
        embedding_size (`int`, *optional*): rows of the token embedding and the LM head. Defaults to
            `vocab_size` rounded up to a multiple of 128 (OLMo pads 50280 to 50304 for throughput);
            must be at least `vocab_size`.
        hidden_size (`int`, defaults to 2048): width of the residual stream (OLMo's `d_model`).
        num_attention_heads (`int`, defaults to 16): attention heads; `hidden_size` must divide evenly
            into heads of even width (RoPE rotates pairs).
        num_hidden_layers (`int`, defaults to 16): decoder layers.
        intermediate_size (`int`, defaults to 8192): width of the SwiGLU MLP (half of OLMo's fused
            `mlp_hidden_size`).
        max_position_embeddings (`int`, defaults to 2048): context length the model is trained for
            (OLMo's `max_sequence_length`); RoPE itself has no hard limit.
        rope_theta (`float`, *optional*): RoPE base, stored as `rope_parameters["rope_theta"]`
            (default 10000.0); a saved `rope_parameters` wins over it.
        clip_qkv (`float`, *optional*): clamp queries, keys and values to ±clip_qkv (later OLMo-1
            releases use 8.0); `None` disables it.
        init_fn (`str`, defaults to `"mitchell"`): weight initialisation. `"mitchell"` (OLMo-1's):
            truncated normal at ±3σ, σ = 1/√d for embeddings, the LM head and input projections,
            σ = 1/√(2·d·(layer+1)) for the attention output and 1/√(2·intermediate_size·(layer+1))
            for the MLP output. `"normal"`: every weight from N(0, `initializer_range`).
        initializer_range (`float`, defaults to 0.02): std of the `"normal"` init.
        abacus (`bool`, defaults to `False`): add Abacus position vectors to the embeddings of the
            tokens in `digit_token_ids`.
        digit_token_ids (`list[int]`, *optional*): ids of the tokens `0`..`9`; needed when `abacus`.
        abacus_num_positions (`int`, defaults to 256): rows of the Abacus table (row 0 is for
            non-digit tokens); a number longer than the table allows is an error.
        abacus_max_k (`int`, defaults to 100): in training a random offset k in {0..max_k} is added
            to every digit position.
        abacus_offset_mode (`str`, defaults to `"per_batch"`): one k per batch, or `"per_example"`.
        abacus_eval_offset (`int`, defaults to 0): the offset used outside training.
        pad_token_id (`int`, defaults to 1), bos_token_id (`int`, *optional*), eos_token_id (`int`,
            defaults to 50279): special tokens (OLMo-1's tokenizer has no BOS).
        tie_word_embeddings (`bool`, defaults to `True`): share the LM head with the token embedding
            (OLMo-1B ties, OLMo-7B does not).
        use_cache (`bool`, defaults to `True`): return a KV cache from forward passes outside training.

    Example:
        >>> config = ArithOlmoConfig(vocab_size=31, hidden_size=64, num_attention_heads=4,
        ...                          num_hidden_layers=2, intermediate_size=128)
        >>> config.embedding_size
        128
    """

    model_type = "arith_olmo"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]  # the KV cache under either release's name

    def __init__(
        self,
        vocab_size: int = 50280,
        embedding_size: int | None = None,
        hidden_size: int = 2048,
        num_attention_heads: int = 16,
        num_hidden_layers: int = 16,
        intermediate_size: int = 8192,
        max_position_embeddings: int = 2048,
        rope_theta: float | None = None,
        clip_qkv: float | None = None,
        init_fn: str = "mitchell",
        initializer_range: float = 0.02,
        abacus: bool = False,
        digit_token_ids: list[int] | None = None,
        abacus_num_positions: int = 256,
        abacus_max_k: int = 100,
        abacus_offset_mode: str = "per_batch",
        abacus_eval_offset: int = 0,
        pad_token_id: int | None = 1,
        bos_token_id: int | None = None,
        eos_token_id: int | None = 50279,
        tie_word_embeddings: bool = True,
        use_cache: bool = True,
        **kwargs,
    ):
        if embedding_size is None:
            embedding_size = -(-vocab_size // EMBEDDING_MULTIPLE) * EMBEDDING_MULTIPLE
        self.embedding_size = embedding_size
        self.init_fn = init_fn
        self.abacus = abacus
        self.digit_token_ids = None if digit_token_ids is None else list(digit_token_ids)
        self.abacus_num_positions = abacus_num_positions
        self.abacus_max_k = abacus_max_k
        self.abacus_offset_mode = abacus_offset_mode
        self.abacus_eval_offset = abacus_eval_offset
        if kwargs.get("rope_parameters") is None:
            kwargs["rope_parameters"] = {"rope_type": "default", "rope_theta": float(rope_theta or 10000.0)}
        super().__init__(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_attention_heads=num_attention_heads,
            num_hidden_layers=num_hidden_layers,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_position_embeddings,
            clip_qkv=clip_qkv,
            initializer_range=initializer_range,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            use_cache=use_cache,
            **kwargs,
        )
        self.validate_options()

    @property
    def uses_abacus(self) -> bool:
        """Whether digits get Abacus positions (`abacus=True`): the one spelling of it that both
        models' code and hf-arith read."""
        return bool(self.abacus)

    def validate_options(self):
        """Raises `ValueError` naming the field and the fix."""
        if self.hidden_size % self.num_attention_heads or (self.hidden_size // self.num_attention_heads) % 2:
            raise ValueError(
                f"hidden_size={self.hidden_size} must split into num_attention_heads={self.num_attention_heads} "
                f"heads of even width (RoPE rotates pairs of dimensions); pick sizes where it does"
            )
        if self.embedding_size < self.vocab_size:
            raise ValueError(
                f"embedding_size={self.embedding_size} is smaller than vocab_size={self.vocab_size}; set it to "
                f"at least vocab_size, or leave it unset to round vocab_size up to a multiple of {EMBEDDING_MULTIPLE}"
            )
        if self.init_fn not in ("mitchell", "normal"):
            raise ValueError(f"ArithOlmoConfig.init_fn={self.init_fn!r}; choose 'mitchell' or 'normal'")
        if self.clip_qkv is not None and self.clip_qkv <= 0:
            raise ValueError(f"clip_qkv={self.clip_qkv} must be positive, or None to disable clipping")
        if self.abacus_offset_mode not in ("per_batch", "per_example"):
            raise ValueError(
                f"ArithOlmoConfig.abacus_offset_mode={self.abacus_offset_mode!r}; choose 'per_batch' or 'per_example'"
            )
        if self.abacus and not self.digit_token_ids:
            raise ValueError("abacus=True needs digit_token_ids, the ids of the tokens 0..9 (the trainer fills them "
                             "in from the tokenizer); set them or turn abacus off")


__all__ = ["ArithOlmoConfig"]
