"""transformers' common model tests against hf-arith's models: `python tests/compat/run.py` fetches
the test sources of the transformers release it tests and names the folder it laid them out in
(`HF_ARITH_TRANSFORMERS_TESTS`: transformers' tests as the package `transformers_tests`, and a copy
of `modeling/`). Without it (the main suite) there is nothing to run against, so nothing is collected.

Here, and only here, our model types join transformers' auto mappings, as a model that ships inside
transformers is listed: the common tests tell a base model from a causal LM by those lists (which
get labels, which are skipped in training tests). The library itself registers nothing (see
`modeling/__init__.py`).
"""

import os
import sys

_FOLDER = os.environ.get("HF_ARITH_TRANSFORMERS_TESTS")
collect_ignore = ["stand_ins"]  # copied into transformers' tests by run.py, never run from here
collect_ignore_glob = [] if _FOLDER else ["test_*.py"]

if _FOLDER:
    sys.path.insert(0, _FOLDER)
    from modeling import AbacusForCausalLM, AbacusModel, ArithOlmoForCausalLM, ArithOlmoModel
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM
    from transformers.models.auto import modeling_auto

    for base, causal_lm in ((AbacusModel, AbacusForCausalLM), (ArithOlmoModel, ArithOlmoForCausalLM)):
        config_class = causal_lm.config_class
        AutoConfig.register(config_class.model_type, config_class)
        AutoModel.register(config_class, base)
        AutoModelForCausalLM.register(config_class, causal_lm)
        modeling_auto.MODEL_MAPPING_NAMES[config_class.model_type] = base.__name__
        modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[config_class.model_type] = causal_lm.__name__
