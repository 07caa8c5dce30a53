"""hf-arith's models, by model type: the one architecture registry of hf-arith.

`CAUSAL_LMS[model_type]` is the causal-LM class of a `config.json`'s `model_type`; the config class
is its `config_class`. Training (`model.arch`), publishing and conversion look models up here, and
transformers' own mappings for its model types.

Not registered with transformers' `AutoConfig`/`AutoModelForCausalLM`: transformers lets a
registered class take precedence over a folder's own code even with `trust_remote_code=True`, so
importing hf_arith would change how every saved folder loads, old ones included (whose tensor
names may differ). Folders carry their code through `auto_map` instead.

This file does not travel to the Hub: `save_pretrained` copies only the modules a model's classes
come from.
"""

from .configuration_abacus import AbacusConfig
from .configuration_olmo import ArithOlmoConfig
from .modeling_abacus import AbacusForCausalLM, AbacusModel
from .modeling_olmo import ArithOlmoForCausalLM, ArithOlmoModel

CAUSAL_LMS = {cls.config_class.model_type: cls for cls in (AbacusForCausalLM, ArithOlmoForCausalLM)}

__all__ = ["CAUSAL_LMS", "AbacusConfig", "AbacusForCausalLM", "AbacusModel", "ArithOlmoConfig",
           "ArithOlmoForCausalLM", "ArithOlmoModel"]
