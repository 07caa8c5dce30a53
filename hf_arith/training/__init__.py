"""Training: recipes (YAML -> dataclasses), optimizer and schedules, data sources, and the one
Accelerate training loop shared by every architecture.

Example::

    from hf_arith.training import load_recipe, train

    recipe = load_recipe("recipes/abacus/addition_cpu.yaml", ["train.max_steps=200"])
    final_dir = train(recipe)                      # runs/addition_cpu/final
    final_dir = train(recipe, resume="latest")     # continue an interrupted run exactly
"""

from .models import build_model
from .preemption import TrainingStopped
from .recipe import Recipe, load_recipe, recipe_from_dict, save_recipe
from .trainer import train

__all__ = ["Recipe", "TrainingStopped", "build_model", "load_recipe", "recipe_from_dict", "save_recipe", "train"]
