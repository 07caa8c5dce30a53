"""Which model a recipe's `model` section builds.

`model.arch` names a model type: hf-arith's (`hf_arith.modeling.CAUSAL_LMS`: `abacus`, and `olmo`
for hf-arith's OLMo, model type `arith_olmo`) or any causal LM transformers ships, e.g. `llama` as
a plain baseline.

Example:
    >>> architecture_classes("abacus")[1].__name__
    'AbacusForCausalLM'
    >>> from hf_arith.tokenization import build_arith_tokenizer
    >>> model = build_model(ModelSpec("abacus", {"hidden_size": 32, "num_attention_heads": 2,
    ...     "intermediate_size": 64, "num_hidden_layers": 1, "num_recurrences": 2}), build_arith_tokenizer())
    >>> model.config.vocab_size, model.config.eos_token_id
    (31, 3)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

from hf_arith.errors import RecipeError
from hf_arith.modeling import CAUSAL_LMS

# Recipe names that differ from the model type: `olmo` is hf-arith's OLMo, not transformers' own.
MODEL_TYPES = {"olmo": "arith_olmo"}


@dataclass
class ModelSpec:
    """What model to build.

    Fields:
        arch: `"abacus"` (`AbacusForCausalLM`), `"olmo"` (`ArithOlmoForCausalLM`), or a model type
            transformers ships with a causal LM (e.g. `"llama"`, a plain baseline).
        config: keyword arguments of the architecture's config class (`AbacusConfig`, ...), checked
            against its signature. `vocab_size`, the pad/bos/eos ids and (Abacus) `digit_token_ids`
            are filled in from the tokenizer unless given here.
        attn_implementation: `"sdpa"`, `"eager"`, ... or null for the transformers default.

    Example:
        >>> ModelSpec("abacus", {"hidden_size": 64, "num_hidden_layers": 2, "num_recurrences": 2}).arch
        'abacus'
    """

    arch: str = "abacus"
    config: dict = field(default_factory=dict)
    attn_implementation: str | None = None


def architecture_classes(arch: str):
    """`(config_class, causal_lm_class)` for a `model.arch`: hf-arith's models, else transformers'
    Auto mappings; `RecipeError` naming the choices when there is no such causal LM.

    Example:
        >>> architecture_classes("llama")[1].__name__
        'LlamaForCausalLM'
    """
    model_type = MODEL_TYPES.get(arch, arch)
    if model_type in CAUSAL_LMS:
        return CAUSAL_LMS[model_type].config_class, CAUSAL_LMS[model_type]
    try:
        config_class = CONFIG_MAPPING[model_type]
        return config_class, MODEL_FOR_CAUSAL_LM_MAPPING[config_class]
    except KeyError:
        raise RecipeError(f"model.arch={arch!r} is unknown; choose abacus, olmo, or a causal LM model type "
                          f"of transformers such as llama") from None


def config_keys(config_class) -> list[str]:
    """The keyword arguments a config class accepts (its `__init__` signature).

    Example:
        >>> "hidden_size" in config_keys(architecture_classes("llama")[0])
        True
    """
    skip = {"self", "args", "kwargs"}
    return [name for name in inspect.signature(config_class.__init__).parameters if name not in skip]


# Sizes and offsets that no config class refuses but that fail later: a width of 0 divides by
# zero deep inside a layer, a negative Abacus offset only at the first training step, after the
# run folder was written. Checked with the recipe, before anything is built or written.
SIZES = ("vocab_size", "embedding_size", "hidden_size", "num_attention_heads", "num_key_value_heads",
         "intermediate_size", "num_hidden_layers", "num_recurrences", "max_position_embeddings",
         "abacus_num_positions")
OFFSETS = ("abacus_max_k", "abacus_eval_offset")


def check_model_config(model: ModelSpec) -> None:
    """Every key of `model.config` must be an argument of the architecture's config class
    (`PretrainedConfig` would otherwise keep a misspelt key as an inert attribute), every size
    at least 1 and every Abacus offset at least 0.

    Example:
        >>> check_model_config(ModelSpec("llama", {"hidden_sise": 64}))
        Traceback (most recent call last):
        ...
        hf_arith.errors.RecipeError: unknown key 'model.config.hidden_sise' for LlamaConfig; allowed: ...
        >>> check_model_config(ModelSpec("abacus", {"hidden_size": 0}))
        Traceback (most recent call last):
        hf_arith.errors.RecipeError: model.config.hidden_size=0 must be a whole number of at least 1; ...
    """
    config_class, _ = architecture_classes(model.arch)
    allowed = config_keys(config_class)
    for key in model.config:
        if key not in allowed:
            raise RecipeError(f"unknown key 'model.config.{key}' for {config_class.__name__}; allowed: {', '.join(allowed)}")
    for key, value in model.config.items():
        if value is None or not (key in SIZES or key in OFFSETS):  # None: the config's own default
            continue
        least = 1 if key in SIZES else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            why = ("it is a size (of a layer, a table or the vocabulary)" if key in SIZES else
                   "it is an offset added to digit positions (0: none)")
            raise RecipeError(f"model.config.{key}={value!r} must be a whole number of at least {least}; {why}")


def build_model(spec: ModelSpec, tokenizer=None):
    """A freshly initialised causal LM for `spec` (initialised from torch's global RNG: seed first).

    `vocab_size`, `pad/bos/eos_token_id` and, where the config takes it, `digit_token_ids` come
    from the tokenizer unless the recipe sets them. Config errors become `RecipeError`.

    Example:
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> model = build_model(ModelSpec("abacus", {"hidden_size": 32, "num_attention_heads": 2,
        ...     "intermediate_size": 64, "num_hidden_layers": 1, "num_recurrences": 2}), build_arith_tokenizer())
        >>> model.config.vocab_size, model.config.eos_token_id
        (31, 3)
    """
    config_class, model_class = architecture_classes(spec.arch)
    kwargs = dict(spec.config)
    accepted = config_keys(config_class)
    if tokenizer is not None:
        vocab = len(tokenizer)
        if kwargs.get("vocab_size", vocab) < vocab:
            raise RecipeError(f"model.config.vocab_size={kwargs['vocab_size']} is smaller than the tokenizer's "
                              f"{vocab} tokens; remove it (it is filled in from the tokenizer) or raise it")
        kwargs.setdefault("vocab_size", vocab)
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(tokenizer, name, None) is not None:
                kwargs.setdefault(name, getattr(tokenizer, name))
        if "digit_token_ids" in accepted and "digit_token_ids" not in kwargs:
            vocab_map = tokenizer.get_vocab()
            if all(d in vocab_map for d in "0123456789"):
                kwargs["digit_token_ids"] = [vocab_map[d] for d in "0123456789"]
    try:
        config = config_class(**kwargs)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"model.config: {err}") from None
    extra = {"attn_implementation": spec.attn_implementation} if spec.attn_implementation else {}
    model = model_class._from_config(config, **extra)
    return model.train()


__all__ = ["ModelSpec", "architecture_classes", "build_model", "check_model_config", "config_keys"]
