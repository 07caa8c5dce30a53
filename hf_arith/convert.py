"""OLMo-1 checkpoints in three layouts, and the conversions between them.

- `ours`: a folder written by `ArithOlmoForCausalLM.save_pretrained`: `config.json` (model_type
  `arith_olmo`, with `auto_map`), `model.safetensors` with transformers' `olmo` tensor names, and
  the model code. Loads with `trust_remote_code=True`. Folders saved before 2026-11-30 hold fused
  `qkv_proj`/`gate_up_proj` tensors; they are read too, so `--to ours` upgrades one to today's code.
- `native`: transformers' own `olmo`: `config.json` (model_type `olmo`) and the same tensors
  (`q/k/v/o_proj`, `gate/up/down_proj`). Loads with plain `AutoModelForCausalLM.from_pretrained(dst)`:
  no remote code. Between `ours` and `native` only the config changes.
- `original`: allenai/OLMo's: `config.yaml` whose `model:` section is OLMo's `ModelConfig`
  (`d_model`, `n_heads`, `n_layers`, `mlp_hidden_size`, `weight_tying`, ...) and `model.safetensors`
  with OLMo's names (`transformer.wte.weight`, `transformer.blocks.{i}.att_proj.weight` = [q; k; v],
  `attn_out`, `ff_proj` = [up; gate], `ff_out`, and `transformer.ff_out.weight` when untied). An OLMo
  unsharded checkpoint's `model.pt` is read too, with `torch.load(weights_only=True)`; OLMo's own
  `OLMo.from_checkpoint` reads `model.pt`, which is
  `torch.save(safetensors.torch.load_file("model.safetensors"), "model.pt")` away.

Every conversion goes through our layout (a config and a state dict with our names); the tensors are
only renamed, split or concatenated, so any round trip is bit-exact. Tokenizer files travel along.

What native `olmo` cannot express is refused: the Abacus embedding. Padding rows
(`embedding_size > vocab_size`) are fine: native gets `vocab_size = embedding_size` and, since it
does not mask those logits as we do, a `generation_config.json` whose `suppress_tokens` lists them,
so that they are never generated there either; converting back reads `vocab_size` off that list.
Not carried, for want of a field: `bos_token_id` to allenai/OLMo (which has no BOS),
`init_fn="mitchell"` to native (which always draws N(0, initializer_range)), and the inert Abacus
settings of a model without Abacus; none of them changes what the converted weights compute.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from transformers import AutoModelForCausalLM
    >>> from hf_arith.convert import convert
    >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
    >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
    >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
    ...                                              num_hidden_layers=2, intermediate_size=128))
    >>> tmp = Path(tempfile.mkdtemp())
    >>> model.save_pretrained(tmp / "final")  # as `hf-arith train` leaves it, e.g. runs/olmo_tiny_cpu/final
    >>> convert(tmp / "final", tmp / "native", to="native")
    PosixPath('.../native')
    >>> native = AutoModelForCausalLM.from_pretrained(tmp / "native")  # no remote code
    >>> native.config.model_type
    'olmo'
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml
from huggingface_hub import save_torch_state_dict
from safetensors.torch import load_file
from transformers import GenerationConfig, OlmoConfig, OlmoForCausalLM

from hf_arith.atomic import folder_written_atomically
from hf_arith.errors import HfArithError
from hf_arith.model_files import CHECKPOINT_FORMATS, check_finite
from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM

# Files of a tokenizer folder (and the tokenizer code its tokenizer_config.json may name).
TOKENIZER_PATTERNS = ("tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.*", "merges.txt",
                      "tokenization_*.py", "chat_template*")

# allenai/OLMo's `ModelConfig` defaults (olmo/config.py) for the fields read here: a config.yaml that
# leaves a field out means this value, as it does for OLMo itself.
ORIGINAL_DEFAULTS = {
    "d_model": 768, "n_heads": 12, "n_kv_heads": None, "n_layers": 12, "mlp_ratio": 4, "mlp_hidden_size": None,
    "activation_type": "swiglu", "block_type": "sequential", "alibi": False, "rope": False, "rope_theta": 10000,
    "clip_qkv": None, "multi_query_attention": False, "attention_layer_norm": False, "layer_norm_type": "default",
    "layer_norm_with_affine": True, "layer_norm_eps": 1e-5, "include_bias": True, "scale_logits": False,
    "norm_after": False, "vocab_size": 50257, "embedding_size": 50304, "weight_tying": True, "eos_token_id": 50256,
    "pad_token_id": 50256, "max_sequence_length": 1024, "init_fn": "normal", "init_std": 0.02,
}
# OLMo-1's architecture, which is what ArithOlmoForCausalLM implements: field -> allowed values.
ORIGINAL_REQUIRED = {
    "activation_type": ("swiglu",), "block_type": ("sequential",), "alibi": (False,), "rope": (True,),
    "multi_query_attention": (False,), "attention_layer_norm": (False,), "layer_norm_with_affine": (False,),
    "layer_norm_type": ("default", "low_precision"), "layer_norm_eps": (1e-5,), "include_bias": (False,),
    "scale_logits": (False,), "norm_after": (False,),
}
# Fields that change neither the weights' layout nor what they compute: dropout, precision, how fresh
# weights are drawn, training-only losses, FSDP grouping. Any field outside these and the above is
# refused rather than guessed at: it may describe a later architecture.
ORIGINAL_IGNORED = {
    "rope_full_precision", "flash_attention", "attention_dropout", "residual_dropout", "embedding_dropout",
    "bias_for_layer_norm", "attention_layer_norm_with_affine", "alibi_bias_max", "block_group_size", "init_device",
    "init_cutoff_factor", "emb_init_std", "scale_emb_init", "precision", "softmax_auxiliary_loss",
    "auxiliary_loss_multiplier",
}


def _olmo_classes():
    return ArithOlmoConfig, ArithOlmoForCausalLM


# ---------------------------------------------------------------------------------------------
# Configs


def config_to_native(config):
    """transformers' `OlmoConfig` for our config; `HfArithError` for what native cannot express.

    Example:
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> config_to_native(ArithOlmoConfig(vocab_size=50280)).vocab_size  # the embedding rows
        50304
    """
    if config.uses_abacus:
        raise HfArithError("this model adds Abacus embeddings to digit tokens, which transformers' native olmo "
                           "has no place for; keep it in the hf-arith format (`--to ours`) and load it with "
                           "trust_remote_code=True")
    return OlmoConfig(
        vocab_size=config.embedding_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_attention_heads,
        hidden_act="silu",
        max_position_embeddings=config.max_position_embeddings,
        initializer_range=config.initializer_range,
        use_cache=config.use_cache,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        tie_word_embeddings=config.tie_word_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": _rope_theta(config)},
        attention_bias=False,
        clip_qkv=config.clip_qkv,
    )


def _rope_theta(config) -> float:
    return float((config.rope_parameters or {}).get("rope_theta", 10000.0))


def config_from_native(native, vocab_size: int | None = None):
    """Our `ArithOlmoConfig` for a transformers `OlmoConfig`. `vocab_size` (default: all embedding
    rows) marks the rows beyond it as padding. `HfArithError` for a native config outside OLMo-1.

    Example:
        >>> from transformers import OlmoConfig
        >>> config_from_native(OlmoConfig(vocab_size=50304), vocab_size=50280).embedding_size
        50304
    """
    ArithOlmoConfig, _ = _olmo_classes()
    rope = dict(native.rope_parameters or {})
    checks = {
        "hidden_act": (native.hidden_act, "silu"),
        "num_key_value_heads": (native.num_key_value_heads, native.num_attention_heads),
        "attention_bias": (native.attention_bias, False),
        "rope_parameters.rope_type": (rope.get("rope_type", "default"), "default"),
    }
    for name, (found, needed) in checks.items():
        if found != needed:
            raise HfArithError(f"the olmo config has {name}={found!r}, but OLMo-1 (and ArithOlmoForCausalLM) "
                               f"needs {needed!r}; this checkpoint cannot be converted")
    return ArithOlmoConfig(
        vocab_size=native.vocab_size if vocab_size is None else vocab_size,
        embedding_size=native.vocab_size,
        hidden_size=native.hidden_size,
        num_attention_heads=native.num_attention_heads,
        num_hidden_layers=native.num_hidden_layers,
        intermediate_size=native.intermediate_size,
        max_position_embeddings=native.max_position_embeddings,
        rope_theta=float(rope.get("rope_theta", 10000.0)),
        clip_qkv=native.clip_qkv,
        init_fn="normal",  # how native draws fresh weights
        initializer_range=native.initializer_range,
        pad_token_id=native.pad_token_id,
        bos_token_id=native.bos_token_id,
        eos_token_id=native.eos_token_id,
        tie_word_embeddings=native.tie_word_embeddings,
        use_cache=native.use_cache,
    )


def config_to_original(config) -> dict:
    """The `model:` section of allenai/OLMo's config.yaml (its `ModelConfig` field names).

    `rope_theta` and `clip_qkv` are written only when they differ from OLMo's defaults, so that OLMo
    versions from before those fields existed still read the file.

    Example:
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> config_to_original(ArithOlmoConfig())["mlp_hidden_size"]  # fused: up and gate
        16384
    """
    if config.uses_abacus:
        raise HfArithError("this model adds Abacus embeddings to digit tokens, which allenai/OLMo's model has no "
                           "place for; keep it in the hf-arith format (`--to ours`)")
    model = {
        "d_model": config.hidden_size,
        "n_heads": config.num_attention_heads,
        "n_layers": config.num_hidden_layers,
        "mlp_hidden_size": 2 * config.intermediate_size,
        "activation_type": "swiglu",
        "block_type": "sequential",
        "alibi": False,
        "rope": True,
        "rope_full_precision": True,
        "multi_query_attention": False,
        "attention_layer_norm": False,
        "attention_dropout": 0.0,
        "residual_dropout": 0.0,
        "embedding_dropout": 0.0,
        "layer_norm_type": "default",
        "layer_norm_with_affine": False,
        "include_bias": False,
        "bias_for_layer_norm": False,
        "scale_logits": False,
        "max_sequence_length": config.max_position_embeddings,
        "vocab_size": config.vocab_size,
        "embedding_size": config.embedding_size,
        "weight_tying": config.tie_word_embeddings,
        "init_fn": config.init_fn,
        "init_std": config.initializer_range,
    }
    # OLMo has no pad-less tokenizers: its pad defaults to EOS.
    pad = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
    model.update({k: v for k, v in (("eos_token_id", config.eos_token_id), ("pad_token_id", pad)) if v is not None})
    if _rope_theta(config) != 10000.0:
        model["rope_theta"] = _rope_theta(config)
    if config.clip_qkv is not None:
        model["clip_qkv"] = config.clip_qkv
    return model


def config_from_original(model: dict):
    """Our `ArithOlmoConfig` from the `model:` section of an allenai/OLMo config.yaml; `HfArithError`
    naming the field when it describes something other than OLMo-1's architecture.

    Example:
        >>> config_from_original({"d_model": 64, "n_heads": 4, "n_layers": 2, "mlp_hidden_size": 256,
        ...     "rope": True, "include_bias": False, "layer_norm_with_affine": False}).intermediate_size
        128
    """
    ArithOlmoConfig, _ = _olmo_classes()
    unknown = sorted(set(model) - set(ORIGINAL_DEFAULTS) - ORIGINAL_IGNORED)
    m = {**ORIGINAL_DEFAULTS, **model}
    for name, allowed in ORIGINAL_REQUIRED.items():
        if m[name] not in allowed:
            raise HfArithError(f"config.yaml has model.{name}={m[name]!r}; OLMo-1's architecture (which "
                               f"ArithOlmoForCausalLM implements) needs {' or '.join(map(repr, allowed))}")
    if m["n_kv_heads"] not in (None, m["n_heads"]):
        raise HfArithError(f"config.yaml has model.n_kv_heads={m['n_kv_heads']} (grouped-query attention); "
                           f"ArithOlmoForCausalLM has full multi-head attention (n_kv_heads = n_heads)")
    if unknown:
        raise HfArithError(f"config.yaml's model section has fields this converter does not know: "
                           f"{', '.join(unknown)}; it may describe a later OLMo architecture than OLMo-1")
    mlp = m["mlp_hidden_size"] if m["mlp_hidden_size"] is not None else m["mlp_ratio"] * m["d_model"]
    if mlp % 2:
        raise HfArithError(f"config.yaml's MLP width {mlp} is odd; SwiGLU splits it into equal up and gate halves")
    try:
        return ArithOlmoConfig(
            vocab_size=m["vocab_size"],
            embedding_size=m["embedding_size"] or m["vocab_size"],
            hidden_size=m["d_model"],
            num_attention_heads=m["n_heads"],
            num_hidden_layers=m["n_layers"],
            intermediate_size=mlp // 2,
            max_position_embeddings=m["max_sequence_length"],
            rope_theta=float(m["rope_theta"]),
            clip_qkv=m["clip_qkv"],
            # Only how fresh weights would be drawn; OLMo's other schemes have no equivalent here.
            init_fn=m["init_fn"] if m["init_fn"] in ("mitchell", "normal") else "normal",
            initializer_range=m["init_std"],
            pad_token_id=m["pad_token_id"],
            bos_token_id=None,
            eos_token_id=m["eos_token_id"],
            tie_word_embeddings=m["weight_tying"],
        )
    except ValueError as err:
        raise HfArithError(f"config.yaml: {err}") from None


# ---------------------------------------------------------------------------------------------
# State dicts: ours is the hub, every other layout maps to and from it.


class _Tensors:
    """Takes tensors out of a state dict by name, with an error that names what is missing, and
    complains about leftovers (tensors of something this model does not have)."""

    def __init__(self, state: dict, layout: str):
        self.state, self.layout = dict(state), layout

    def take(self, name: str) -> torch.Tensor:
        if name not in self.state:
            raise HfArithError(f"the {self.layout} weights have no tensor {name!r}; the checkpoint is incomplete "
                               f"or does not match its config")
        return self.state.pop(name)

    def done(self) -> None:
        if self.state:
            names = ", ".join(sorted(self.state)[:5])
            raise HfArithError(f"the {self.layout} weights have tensors OLMo-1 has no place for ({names}"
                               f"{', ...' if len(self.state) > 5 else ''}); this is not an OLMo-1 checkpoint")


def _ours(state: dict, config) -> _Tensors:
    tensors = _Tensors(state, "hf-arith")
    if config.tie_word_embeddings:
        tensors.state.pop("lm_head.weight", None)  # the embedding, if a writer kept it
    return tensors


def _unfused(state: dict) -> dict:
    """`state` with the fused q/k/v (`qkv_proj`, [q; k; v] rows) and gate/up (`gate_up_proj`,
    [gate; up] rows) tensors of hf-arith folders saved before 2026-11-30 split into today's names."""
    out = {}
    for name, tensor in state.items():
        if name.endswith("self_attn.qkv_proj.weight"):
            base = name[: -len("qkv_proj.weight")]
            out.update({f"{base}{n}_proj.weight": t.clone() for n, t in zip("qkv", tensor.chunk(3))})
        elif name.endswith("mlp.gate_up_proj.weight"):
            base = name[: -len("gate_up_proj.weight")]
            out.update({f"{base}{n}_proj.weight": t.clone() for n, t in zip(("gate", "up"), tensor.chunk(2))})
        else:
            out[name] = tensor
    return out


def _checked_ours(state: dict, config, layout: str = "hf-arith") -> dict:
    """`state` (our names) without a tied head's duplicate; `HfArithError` unless it holds exactly
    the tensors of `ArithOlmoForCausalLM(config)`."""
    _, ArithOlmoForCausalLM = _olmo_classes()
    with torch.device("meta"):
        expected = set(ArithOlmoForCausalLM(config).state_dict())
    state = dict(state)
    if config.tie_word_embeddings:
        expected.discard("lm_head.weight")
        state.pop("lm_head.weight", None)
    tensors = _Tensors(state, layout)
    checked = {name: tensors.take(name) for name in sorted(expected)}
    tensors.done()
    return checked


def state_dict_to_native(state: dict, config) -> dict:
    """Our tensors for transformers' `olmo`: the same names, checked to be exactly OLMo-1's.

    Example:
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> sorted(state_dict_to_native(model.state_dict(), model.config))[:2]  # tied: no lm_head.weight
        ['model.embed_tokens.weight', 'model.layers.0.mlp.down_proj.weight']
    """
    return _checked_ours(state, config)


def state_dict_from_native(state: dict, config) -> dict:
    """transformers `olmo` tensors for our model: the same names, checked.

    Example:
        >>> from transformers import OlmoConfig, OlmoForCausalLM
        >>> native = OlmoForCausalLM(OlmoConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
        ...                                     num_hidden_layers=2, num_attention_heads=4))
        >>> ours = state_dict_from_native(native.state_dict(), config_from_native(native.config))
        >>> ours["model.layers.0.self_attn.q_proj.weight"].shape[0] == native.config.hidden_size
        True
    """
    return _checked_ours(state, config, layout="native olmo")


def state_dict_to_original(state: dict, config) -> dict:
    """Our tensors under allenai/OLMo's names; `ff_proj` holds up first, then gate.

    Example:
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> original = state_dict_to_original(model.state_dict(), model.config)
        >>> original["transformer.blocks.0.att_proj.weight"].shape  # [q; k; v] of hidden size 64
        torch.Size([192, 64])
    """
    src = _ours(state, config)
    out = {"transformer.wte.weight": src.take("model.embed_tokens.weight")}
    for i in range(config.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"transformer.blocks.{i}."
        out.update({
            b + "att_proj.weight": torch.cat([src.take(f"{p}self_attn.{n}_proj.weight") for n in "qkv"]),
            b + "attn_out.weight": src.take(p + "self_attn.o_proj.weight"),
            b + "ff_proj.weight": torch.cat([src.take(p + "mlp.up_proj.weight"), src.take(p + "mlp.gate_proj.weight")]),
            b + "ff_out.weight": src.take(p + "mlp.down_proj.weight"),
        })
    if not config.tie_word_embeddings:
        out["transformer.ff_out.weight"] = src.take("lm_head.weight")
    src.done()
    return out


def state_dict_from_original(state: dict, config) -> dict:
    """allenai/OLMo tensors under our names.

    Example:
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> original = state_dict_to_original(model.state_dict(), model.config)
        >>> ours = state_dict_from_original(original, model.config)
        >>> torch.equal(ours["model.layers.0.mlp.gate_proj.weight"], model.model.layers[0].mlp.gate_proj.weight)
        True
    """
    src = _Tensors(state, "allenai/OLMo")
    out = {"model.embed_tokens.weight": src.take("transformer.wte.weight")}
    for i in range(config.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"transformer.blocks.{i}."
        q, k, v = src.take(b + "att_proj.weight").chunk(3)
        up, gate = src.take(b + "ff_proj.weight").chunk(2)
        # Clones: the safetensors writer refuses views into one shared storage.
        out.update({
            p + "self_attn.q_proj.weight": q.clone(), p + "self_attn.k_proj.weight": k.clone(),
            p + "self_attn.v_proj.weight": v.clone(),
            p + "self_attn.o_proj.weight": src.take(b + "attn_out.weight"),
            p + "mlp.gate_proj.weight": gate.clone(), p + "mlp.up_proj.weight": up.clone(),
            p + "mlp.down_proj.weight": src.take(b + "ff_out.weight"),
        })
    if not config.tie_word_embeddings:
        out["lm_head.weight"] = src.take("transformer.ff_out.weight")
    src.done()
    return out


# ---------------------------------------------------------------------------------------------
# Models in memory


def model_from_state(config, state: dict):
    """An `ArithOlmoForCausalLM` (eval mode) holding exactly the tensors of `state` (our names).

    Built on the meta device and filled by assignment: no random init, no second copy (a fresh,
    randomly initialised model of a recipe is `hf_arith.training.build_model`).

    Example:
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> copy = model_from_state(model.config, model.state_dict())
        >>> torch.equal(copy.model.embed_tokens.weight, model.model.embed_tokens.weight), copy.training
        (True, False)
    """
    _, ArithOlmoForCausalLM = _olmo_classes()
    with torch.device("meta"):
        model = ArithOlmoForCausalLM(config)
    state = dict(state)
    if config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    # RoPE's inverse frequencies are a non-persistent buffer, in no state dict: compute them on the CPU.
    model.model.rotary_emb = type(model.model.rotary_emb)(model.config)
    return model.eval()


def from_native(native, vocab_size: int | None = None):
    """Our `ArithOlmoForCausalLM` with a copy of the weights of a transformers `OlmoForCausalLM`.

    Example:
        >>> from transformers import OlmoConfig, OlmoForCausalLM
        >>> ours = from_native(OlmoForCausalLM(OlmoConfig(vocab_size=128, hidden_size=64,
        ...     intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)))
        >>> ours.config.model_type
        'arith_olmo'
    """
    config = config_from_native(native.config, vocab_size)
    # Copies: the two models must not share (and so jointly train) any tensor.
    state = {name: tensor.detach().clone() for name, tensor in native.state_dict().items()}
    return model_from_state(config, state_dict_from_native(state, config))


def to_native(model):
    """A transformers `OlmoForCausalLM` (eval mode) with the weights of our `ArithOlmoForCausalLM`.

    Example:
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> type(to_native(model)).__name__
        'OlmoForCausalLM'
    """
    native = OlmoForCausalLM(config_to_native(model.config))
    state = state_dict_to_native(model.state_dict(), model.config)
    if model.config.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    native.load_state_dict(state, strict=True)
    return native.eval()


# ---------------------------------------------------------------------------------------------
# Folders


def detect_format(path) -> str:
    """`"ours"`, `"native"` or `"original"` for a checkpoint folder; `HfArithError` saying what was
    found otherwise.

    Example:
        >>> import tempfile
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> folder = Path(tempfile.mkdtemp())
        >>> model.save_pretrained(folder)
        >>> detect_format(folder)
        'ours'
        >>> to_native(model).save_pretrained(folder)  # transformers' olmo over it
        >>> detect_format(folder)
        'native'
    """
    path = Path(path)
    if not path.is_dir():
        raise HfArithError(f"{path} is not a folder; give a checkpoint folder (with config.json or config.yaml)")
    expected = ("convert takes OLMo checkpoints: model_type 'arith_olmo' (hf-arith), 'olmo' (transformers) or an "
                "allenai/OLMo folder (config.yaml with a model: section)")
    if (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text())
        model_type = config.get("model_type")
        if model_type == "arith_olmo":
            return "ours"
        if model_type == "olmo" and "d_model" in config:
            raise HfArithError(f"{path} is in allenai's hf_olmo layout (model_type 'olmo' with OLMo's own field "
                               f"names, made for `ai2-olmo`); use its transformers-native release (the '-hf' "
                               f"repositories) instead")
        if model_type == "olmo":
            return "native"
        raise HfArithError(f"{path} holds a {model_type!r} model (config.json model_type={model_type!r}); {expected}")
    if (path / "config.yaml").is_file():
        config = yaml.safe_load((path / "config.yaml").read_text())
        if isinstance(config, dict) and isinstance(config.get("model"), dict) and "d_model" in config["model"]:
            return "original"
        raise HfArithError(f"{path}/config.yaml has no model: section with d_model; {expected}")
    raise HfArithError(f"{path} has neither config.json nor config.yaml; {expected}")


def _read_weights(path: Path, allow_pickle: bool = False) -> dict:
    """All tensors of `model.safetensors` (or its shards); an OLMo `model.pt` with `allow_pickle`."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(path / shard).items()}
    if (path / "model.safetensors").is_file():
        return load_file(path / "model.safetensors")
    if allow_pickle and (path / "model.pt").is_file():
        # Unavoidable for OLMo's own checkpoints; weights_only refuses anything but tensors.
        try:
            return torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        except Exception as err:  # pickle.UnpicklingError and friends, for anything but plain tensors
            raise HfArithError(f"{path / 'model.pt'} is not a plain state dict of tensors ({type(err).__name__}); "
                               f"only tensors are loaded from pickles, never code") from None
    wanted = "model.safetensors or model.pt" if allow_pickle else "model.safetensors"
    raise HfArithError(f"{path} has no {wanted} (pickled weights such as pytorch_model.bin are not read); give "
                       f"the folder that holds the weights, or re-save them with save_pretrained")


def _suppressed(path: Path) -> list[int]:
    file = path / "generation_config.json"
    return list(json.loads(file.read_text()).get("suppress_tokens") or []) if file.is_file() else []


def read_olmo_checkpoint(path):
    """`(format, config, state)` of an OLMo checkpoint folder in any of `CHECKPOINT_FORMATS`, as
    our `ArithOlmoConfig` and a state dict with our names: weights only (a training run's
    checkpoints, with optimizer state, are `hf_arith.training.checkpoints`).

    Example:
        >>> import tempfile
        >>> from transformers import OlmoConfig, OlmoForCausalLM
        >>> native = OlmoForCausalLM(OlmoConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
        ...                                     num_hidden_layers=2, num_attention_heads=4))
        >>> folder = Path(tempfile.mkdtemp())
        >>> native.save_pretrained(folder)
        >>> fmt, config, state = read_olmo_checkpoint(folder)
        >>> fmt, config.model_type
        ('native', 'arith_olmo')
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "ours":
        ArithOlmoConfig, _ = _olmo_classes()
        config = ArithOlmoConfig.from_pretrained(path)
        return fmt, config, _checked_ours(_unfused(_read_weights(path)), config)
    if fmt == "native":
        native = OlmoConfig.from_pretrained(path)
        # Rows that `to native` marked as never-to-generate are our padding rows.
        suppressed, vocab = set(_suppressed(path)), native.vocab_size
        while vocab - 1 in suppressed:
            vocab -= 1
        config = config_from_native(native, vocab_size=vocab)
        return fmt, config, state_dict_from_native(_read_weights(path), config)
    raw = yaml.safe_load((path / "config.yaml").read_text())
    config = config_from_original(raw["model"])
    return fmt, config, state_dict_from_original(_read_weights(path, allow_pickle=True), config)


def generation_config_for(src: Path, config, to: str):
    """SRC's generation config (or one from the model config), with the padding rows in
    `suppress_tokens` for native (which does not mask them) and out of it for ours (which does)."""
    if (src / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(src)
    else:
        generation = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                                      pad_token_id=config.pad_token_id)
    padding = list(range(config.vocab_size, config.embedding_size))
    kept = [t for t in (generation.suppress_tokens or []) if t not in set(padding)]
    generation.suppress_tokens = (kept + padding if to == "native" else kept) or None
    return generation


def write_olmo_checkpoint(config, state: dict, dst, to: str, generation_config=None) -> Path:
    """Writes `config` (ours) and `state` (our names) to the folder `dst` in the layout `to`, one of
    `CHECKPOINT_FORMATS`; `HfArithError` for another.

    Example:
        >>> import os
        >>> import tempfile
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> dst = Path(tempfile.mkdtemp()) / "original"
        >>> _ = write_olmo_checkpoint(model.config, model.state_dict(), dst, to="original")
        >>> sorted(os.listdir(dst))
        ['config.yaml', 'model.safetensors']
    """
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    if to == "ours":
        model = model_from_state(config, state)
        if generation_config is not None:
            model.generation_config = generation_config
        model.save_pretrained(dst)
    elif to == "native":
        native = config_to_native(config)
        native.architectures = ["OlmoForCausalLM"]
        native.dtype = state["model.embed_tokens.weight"].dtype
        native.save_pretrained(dst)
        save_torch_state_dict(state_dict_to_native(state, config), dst)
        if generation_config is not None:
            generation_config.save_pretrained(dst)
    elif to == "original":
        model = config_to_original(config)
        (dst / "config.yaml").write_text(yaml.safe_dump({"model": model}, sort_keys=False))
        save_torch_state_dict(state_dict_to_original(state, config), dst)
    else:
        raise HfArithError(f"unknown checkpoint format {to!r}; choose one of {', '.join(CHECKPOINT_FORMATS)}")
    return dst


def convert(src, dst, to: str) -> Path:
    """Converts the OLMo-1 checkpoint folder `src` (any layout, detected) into a new folder `dst`
    in the layout `to` (`"ours"`, `"native"` or `"original"`; see the module docstring). Tensors
    are bit-identical after any round trip; tokenizer files are copied along. `HfArithError` for
    a checkpoint of another architecture, a model part the target cannot hold, or a non-empty `dst`.

    Example:
        >>> import tempfile
        >>> from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
        >>> from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
        >>> model = ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=128, hidden_size=64, num_attention_heads=4,
        ...                                              num_hidden_layers=2, intermediate_size=128))
        >>> tmp = Path(tempfile.mkdtemp())
        >>> model.save_pretrained(tmp / "final")
        >>> convert(tmp / "final", tmp / "original", to="original")
        PosixPath('.../original')
        >>> convert(tmp / "original", tmp / "ours", to="ours")  # and back, bit for bit
        PosixPath('.../ours')
        >>> convert(tmp / "final", tmp / "ours", to="native")
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: ...ours already exists and is not an empty folder; choose a new destination
    """
    src, dst = Path(src), Path(dst)
    if to not in CHECKPOINT_FORMATS:
        raise HfArithError(f"unknown target format {to!r}; choose one of {', '.join(CHECKPOINT_FORMATS)}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise HfArithError(f"{dst} already exists and is not an empty folder; choose a new destination")
    _, config, state = read_olmo_checkpoint(src)
    check_finite(state.items(), src)
    generation = generation_config_for(src, config, to) if to != "original" else None
    with folder_written_atomically(dst) as tmp:  # a failure leaves no half-written checkpoint behind
        write_olmo_checkpoint(config, state, tmp, to, generation)
        for pattern in TOKENIZER_PATTERNS:
            for file in src.glob(pattern):
                if file.is_file():
                    shutil.copy2(file, tmp / file.name)
    return dst


__all__ = [
    "config_from_native",
    "config_from_original",
    "config_to_native",
    "config_to_original",
    "convert",
    "detect_format",
    "from_native",
    "model_from_state",
    "read_olmo_checkpoint",
    "state_dict_from_native",
    "state_dict_from_original",
    "state_dict_to_native",
    "state_dict_to_original",
    "to_native",
    "write_olmo_checkpoint",
]
