"""Perplexity on held-out instances (OLMo's in-loop perplexity evaluators).

Each held-out instance is `sequence_length` tokens; every position but the first is predicted
from the ones before it, as in training. The cross-entropy of a set is the mean negative
log-likelihood (nats) over all its predicted tokens, and perplexity is its exponential.

Example (on the data `make olmo` prepares)::

    from hf_arith.data.instances import heldout_instances

    instances, _ = heldout_instances("data/olmo/tiny_cpu")["pydoc"]
    result = evaluate_perplexity(model, instances)  # {"cross_entropy": ..., "perplexity": ..., "tokens": ...}
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def token_nll_sum(model, input_ids: torch.Tensor) -> tuple[float, int]:
    """Sum of next-token negative log-likelihoods (fp32) over a batch of full-length rows, and
    the number of predicted tokens.

    Example:
        >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
        >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1))
        >>> _ = model.lm_head.weight.data.zero_()  # every token equally likely: ln(31) nats each
        >>> nll, count = token_nll_sum(model, torch.tensor([[5, 7, 9]]))
        >>> round(nll / count, 4), round(math.log(31), 4), count
        (3.434, 3.434, 2)
    """
    logits = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
    predicted = logits[:, :-1].float()
    targets = input_ids[:, 1:]
    nll = F.cross_entropy(predicted.reshape(-1, predicted.size(-1)), targets.reshape(-1), reduction="sum")
    return float(nll), targets.numel()


def evaluate_perplexity(model, instances, batch_size: int = 8, max_instances: int | None = None) -> dict:
    """`{"cross_entropy", "perplexity", "tokens"}` of `model` on `instances` (a 2-D array of token
    ids, e.g. a held-out memmap), the first `max_instances` of them when given.

    Example:
        >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
        >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1))
        >>> _ = model.lm_head.weight.data.zero_()  # uniform over the 31 tokens: perplexity 31
        >>> result = evaluate_perplexity(model, np.array([[5, 7, 9, 11], [4, 4, 4, 4]]))
        >>> round(result["perplexity"], 3), result["tokens"]
        (31.0, 6)
    """
    device = next(model.parameters()).device
    count = len(instances) if max_instances is None else min(len(instances), max_instances)
    if count == 0:
        raise ValueError("no instance to evaluate")
    total, tokens = 0.0, 0
    for start in range(0, count, batch_size):
        rows = np.asarray(instances[start:min(start + batch_size, count)]).astype(np.int64)
        nll, n = token_nll_sum(model, torch.from_numpy(rows).to(device))
        total, tokens = total + nll, tokens + n
    cross_entropy = total / tokens
    perplexity = math.exp(cross_entropy) if cross_entropy < 700 else math.inf  # exp overflows a float past ~709
    return {"cross_entropy": cross_entropy, "perplexity": perplexity, "tokens": tokens}


__all__ = ["evaluate_perplexity", "token_nll_sum"]
