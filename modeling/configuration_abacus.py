"""Configuration of the Abacus looped transformer (McLeish et al. 2024, arXiv 2405.17399)."""

from transformers import PretrainedConfig

# The vocabulary is the tokenizer file's; `save_pretrained` copies that sibling into the model folder too.
from .tokenization_arith import ARITH_VOCAB, DIGIT_TOKEN_IDS


class AbacusConfig(PretrainedConfig):
    r"""
    A decoder whose block of `num_hidden_layers` distinct layers is applied `num_recurrences` times
    ("L×R"), with Abacus positions for digits. 16×1 is a standard transformer.

    Args:
        vocab_size (`int`, defaults to 31, `len(ARITH_VOCAB)`): size of the character vocabulary.
        hidden_size (`int`, defaults to 1024): width of the residual stream.
        num_attention_heads (`int`, defaults to 16): attention heads (`hidden_size` must divide evenly).
        intermediate_size (`int`, defaults to 2048): width of the gated MLP.
        hidden_act (`str`, defaults to `"gelu"`): gate activation: `"gelu"` (the paper's gated GELU)
            or `"silu"` (SwiGLU).
        num_hidden_layers (`int`, defaults to 8): L, the distinct layers in the recurrent block.
        num_recurrences (`int`, defaults to 2): R, how often the block is applied; may be raised at
            inference (`model(..., num_recurrences=R)` or `generate(..., num_recurrences=R)`).
        input_injection (`bool`, defaults to `True`): add the embedded input to the hidden state
            before every application of the block.
        inject_every_layer (`bool`, defaults to `False`): with input injection, add the embedded input
            before every layer instead of every block application: the reference's "standard
            transformer with input injection" baseline (16×1, `forward_only_model_with_skip`).
        initial_state_std (`float`, *optional*): with input injection, the recurrent state starts as
            N(0, `initial_state_std`²) noise instead of zeros (`None`, the default): the reference's
            `initial_hidden_randomized: True, state_init: embed` (std 0.02). As there, the noise is
            drawn from torch's generator in training and inference alike (seed torch for repeatable
            outputs); with a KV cache each position's noise is drawn once, when it is first processed.
        embedding_positions (`str`, defaults to `"abacus"`): position signal added to the token
            embeddings: `"abacus"`, `"learned"` (absolute, up to `max_position_embeddings`) or `"none"`.
        attention_positions (`str`, defaults to `"none"`): position signal inside attention:
            `"none"`, `"rope"` or `"fire"`. `embedding_positions="none"` with `"none"` here is NoPE.
        digit_token_ids (`list[int]`, defaults to `DIGIT_TOKEN_IDS`, the hf-arith vocabulary's digits):
            tokens that are digits, whose Abacus position is their 1-based index in their run of digits.
        abacus_num_positions (`int`, defaults to 256): rows of the Abacus table (row 0 is for
            non-digit tokens). Must exceed `abacus_max_k` + the longest number seen in training;
            a longer number is an error.
        abacus_max_k (`int`, defaults to 100): in training a random offset k in {0..max_k} is added
            to every digit position.
        abacus_offset_mode (`str`, defaults to `"per_batch"`): draw one k per batch (as the paper's
            code) or `"per_example"`.
        abacus_eval_offset (`int`, defaults to 0): the offset added to digit positions outside
            training (evaluation and generation).
        max_position_embeddings (`int`, defaults to 1024): context length for learned absolute positions
            and the longest sequence the model is meant for.
        rope_theta (`float`, defaults to 10000.0): RoPE base, when `attention_positions="rope"`.
        attention_logn_base (`int`, *optional*): a log-length attention temperature (Chiang & Cholak
            2022, "Overcoming a Theoretical Limitation of Self-Attention", §5; Qwen's `logn_attn`): a
            query that sees n keys (its position without left padding, plus one) has its attention
            logits multiplied by max(1, log n / log `attention_logn_base`), so attention does not
            flatten as sequences grow beyond that many tokens. Usually the longest training
            sequence; `None` (default) leaves logits unscaled. It scales queries, so it applies with
            every attention kernel and may be set at inference only.
        norm_position (`str`, defaults to `"pre"`): LayerNorm before (`"pre"`) or after (`"post"`)
            each sub-layer (the reference: `norm_scheme: post`).
        layer_norm_eps (`float`, defaults to 1e-5): LayerNorm epsilon (the reference: 1e-12).
        layer_norm_bias (`bool`, defaults to `False`): LayerNorms with a learned bias (the reference's
            `nn.LayerNorm`).
        embedding_norm (`bool`, defaults to `False`): a LayerNorm on the sum of token and position
            embeddings, so the injected input is normalised (the reference's embedding
            `normalization: True`).
        head (`str`, defaults to `"linear"`): what turns the block's output into logits. `"linear"`:
            the LM head on the final norm (pre-norm; post-norm layers already end normalised).
            `"mlp"`: the reference's head: a gated MLP of the block MLP's shapes, a LayerNorm and a
            d×d linear map (`head_adapter`, the reference's untied `TransposedAdapter`) give the last
            hidden state, which the LM head maps to logits.
        initializer (`str`, defaults to `"normal"`): `"normal"`: every weight from
            N(0, `initializer_range`). `"deepnet"`: the reference's `deepnorm-straight`: linear
            weights Xavier-normal with gain (8·L·R)^(-1/4) (queries and keys with gain 1), embeddings
            (tokens, Abacus and learned positions) N(0, 1/√hidden_size), LayerNorms 1 and 0.
        progressive_loss_alpha (`float`, defaults to 0.0): α of the progressive loss
            `(1-α)·L(R recurrences) + α·L(n without grad, then k with grad)`, applied in training
            when labels are given. The paper's code uses 1.0.
        progressive_max_k (`int`, *optional*): cap on k, the recurrences trained with gradient in
            the progressive loss. `None` (this default) leaves k open: k ~ U{1..R-n}. The
            reference's default differs: it caps k at max(R // 2, 1) (mcleish7/arithmetic's
            `max_backprop`), so a recipe that follows it sets R // 2; every shipped recipe sets it.
        initializer_range (`float`, defaults to 0.02): std of the normal init of weights.
    """

    model_type = "abacus"
    keys_to_ignore_at_inference = ["cache", "past_key_values"]  # the KV cache under either release's name

    def __init__(
        self,
        vocab_size: int = len(ARITH_VOCAB),
        hidden_size: int = 1024,
        num_attention_heads: int = 16,
        intermediate_size: int = 2048,
        hidden_act: str = "gelu",
        num_hidden_layers: int = 8,
        num_recurrences: int = 2,
        input_injection: bool = True,
        inject_every_layer: bool = False,
        initial_state_std: float | None = None,
        embedding_positions: str = "abacus",
        attention_positions: str = "none",
        digit_token_ids: list[int] | None = None,
        abacus_num_positions: int = 256,
        abacus_max_k: int = 100,
        abacus_offset_mode: str = "per_batch",
        abacus_eval_offset: int = 0,
        max_position_embeddings: int = 1024,
        rope_theta: float = 10000.0,
        attention_logn_base: int | None = None,
        norm_position: str = "pre",
        layer_norm_eps: float = 1e-5,
        layer_norm_bias: bool = False,
        embedding_norm: bool = False,
        head: str = "linear",
        initializer: str = "normal",
        progressive_loss_alpha: float = 0.0,
        progressive_max_k: int | None = None,
        initializer_range: float = 0.02,
        pad_token_id: int = 0,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        tie_word_embeddings: bool = False,
        use_cache: bool = True,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.num_hidden_layers = num_hidden_layers
        self.num_recurrences = num_recurrences
        self.input_injection = input_injection
        self.inject_every_layer = inject_every_layer
        self.initial_state_std = initial_state_std
        self.embedding_positions = embedding_positions
        self.attention_positions = attention_positions
        self.digit_token_ids = list(DIGIT_TOKEN_IDS if digit_token_ids is None else digit_token_ids)
        self.abacus_num_positions = abacus_num_positions
        self.abacus_max_k = abacus_max_k
        self.abacus_offset_mode = abacus_offset_mode
        self.abacus_eval_offset = abacus_eval_offset
        self.max_position_embeddings = max_position_embeddings
        self.rope_theta = rope_theta
        self.attention_logn_base = attention_logn_base
        self.norm_position = norm_position
        self.layer_norm_eps = layer_norm_eps
        self.layer_norm_bias = layer_norm_bias
        self.embedding_norm = embedding_norm
        self.head = head
        self.initializer = initializer
        self.progressive_loss_alpha = progressive_loss_alpha
        self.progressive_max_k = progressive_max_k
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            tie_word_embeddings=tie_word_embeddings,
            **kwargs,
        )
        self.validate_options()

    @property
    def uses_abacus(self) -> bool:
        """Whether digits get Abacus positions (`embedding_positions="abacus"`): the one spelling of it
        that both models' code and hf-arith read."""
        return self.embedding_positions == "abacus"

    def validate_options(self):
        """Raises `ValueError` naming the field and its allowed values."""
        choices = {
            "embedding_positions": ("abacus", "learned", "none"),
            "attention_positions": ("none", "rope", "fire"),
            "abacus_offset_mode": ("per_batch", "per_example"),
            "norm_position": ("pre", "post"),
            "hidden_act": ("gelu", "silu"),
            "head": ("linear", "mlp"),
            "initializer": ("normal", "deepnet"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"AbacusConfig.{name}={getattr(self, name)!r}; choose one of {allowed}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; pick sizes where it is"
            )
        if min(self.num_hidden_layers, self.num_recurrences) < 1:
            raise ValueError("num_hidden_layers and num_recurrences must both be at least 1")
        if self.inject_every_layer and not self.input_injection:
            raise ValueError("inject_every_layer=True needs input_injection=True (it says where to inject)")
        if self.initial_state_std is not None and not (self.input_injection and self.initial_state_std > 0):
            raise ValueError(
                f"initial_state_std={self.initial_state_std} needs input_injection=True and a std above 0 "
                "(without injection the state starts as the embeddings); or None for a zero state"
            )
        if self.attention_logn_base is not None and self.attention_logn_base < 2:
            raise ValueError(
                f"attention_logn_base={self.attention_logn_base}: the log-length scale needs a base of at least 2 "
                "tokens (usually the longest training sequence), or None to turn it off"
            )
        if not 0.0 <= self.progressive_loss_alpha <= 1.0:
            raise ValueError(f"progressive_loss_alpha={self.progressive_loss_alpha} must be in [0, 1]")


__all__ = ["AbacusConfig"]
