"""Model-card templates (Jinja, rendered by `hf_arith.hub` with huggingface_hub's `ModelCard.from_template`),
one per architecture. Installed as `hf_arith.model_cards`."""
