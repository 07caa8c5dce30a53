"""Saved model folders for the Hub-facing checks, made with hf-arith under its own transformers.

`python tests/compat/make_folders.py OUT` writes, under OUT:

- `abacus/`: a 2×2 Abacus looped model with FIRE attention and the reference code's embedding norm,
  post-norm layers and MLP head, the arithmetic tokenizer, remote code;
- `olmo/`: an OLMo-1 model (vocabulary 31 padded to 128 embedding rows), same tokenizer, remote code;
- `olmo_native/`: the same OLMo weights in transformers' own `olmo` format (no remote code);
- `reference.json`: the prompts and the logits both models gave here, so that another
  transformers release can be checked against this one.

Weights are random but drawn wide (σ 0.2), so logits are O(1) and a wrong cache or mask shows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

PROMPTS = ["321+7654=", "12+3=", "98765+4321="]


def build(out: Path) -> Path:
    from hf_arith.convert import convert
    from hf_arith.modeling.configuration_abacus import AbacusConfig
    from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
    from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
    from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
    from hf_arith.tokenization import build_arith_tokenizer
    from hf_arith.training.trainer import greedy_generation_config

    out = Path(out)
    tokenizer = build_arith_tokenizer()
    special = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    abacus = AbacusForCausalLM(AbacusConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=2,
        num_recurrences=2, attention_positions="fire", abacus_num_positions=64, abacus_max_k=8,
        embedding_norm=True, norm_position="post", layer_norm_bias=True, head="mlp",  # the reference's model
        initializer_range=0.2, **special))
    torch.manual_seed(0)
    olmo = ArithOlmoForCausalLM(ArithOlmoConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64,
        init_fn="normal", initializer_range=0.2, tie_word_embeddings=False, **special))
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    reference = {"prompts": PROMPTS}
    for name, model in (("abacus", abacus), ("olmo", olmo)):
        model.generation_config = greedy_generation_config(tokenizer)  # what training saves
        model.eval().save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
        with torch.no_grad():
            reference[name] = model(**batch).logits[..., : len(tokenizer)].tolist()
    convert(out / "olmo", out / "olmo_native", to="native")
    (out / "reference.json").write_text(json.dumps(reference))
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
