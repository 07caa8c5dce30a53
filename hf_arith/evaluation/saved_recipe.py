"""The recipe `hf-arith train` saves next to a model (`final/recipe.yaml`), read back as the facts
that evaluation, generation and the model card use.

Its schema is `hf_arith.training.recipe.Recipe`, a layer above evaluation. This reads only the
keys below, with that schema's defaults, and ignores the rest, so that a recipe saved by an
older release (with keys since renamed or removed) still reads.

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())  # e.g. runs/addition_cpu/final
    >>> _ = (folder / "recipe.yaml").write_text("data: {task: add, task_args: {max_digits: 10}}")
    >>> saved = read_saved_recipe(folder)
    >>> saved.task, saved.task_args, saved.arithmetic_task
    ('add', {'max_digits': 10}, 'add')
    >>> read_saved_recipe(folder / "nowhere").found
    False
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hf_arith.data.specs import DataSpec
from hf_arith.dataclass_yaml import load_yaml
from hf_arith.tasks import DEFAULT_TASK, known_task, resolve_task

from .defaults import DEFAULT_EVAL_SEED, IN_LOOP_GRID_LENGTHS, IN_LOOP_GRID_SAMPLES


@dataclass(frozen=True)
class InLoopGrid:
    """What a recipe's in-loop `arith_grid` evaluator (`hf_arith.training.evaluators`) measured:
    its `--lengths` grid, problems per cell and seed."""

    lengths: str = IN_LOOP_GRID_LENGTHS
    samples: int = IN_LOOP_GRID_SAMPLES
    seed: int = DEFAULT_EVAL_SEED


@dataclass(frozen=True)
class SavedRecipe:
    """A model folder's saved recipe, as far as evaluation, generation and the card read it.

    Fields:
        contents: the whole file as plain data, `{}` when the folder has none (a model saved by
            other code, or a Hub id); the card's template shows parts of it.
        kind: `data.kind`, `"arithmetic"` or `"text"`.
        task: `data.task` as written (an alias such as `"add"` included); `None` when the recipe
            names none.
        task_args: `data.task_args` (e.g. `{"max_digits": 10}`).
        seed: the run's `seed`.
        train: the `train` section as written (the card's training table).
        hub_datasets: the Hub dataset ids among `data.prepare.sources`.
        in_loop_grid: the settings of the in-loop `arith_grid` evaluator, `None` when the recipe
            runs none.
    """

    contents: dict = field(default_factory=dict)
    kind: str = DataSpec.kind  # the schema's default, as training reads a recipe that names none
    task: str | None = None
    task_args: dict = field(default_factory=dict)
    seed: int | None = None
    train: dict = field(default_factory=dict)
    hub_datasets: tuple[str, ...] = ()
    in_loop_grid: InLoopGrid | None = None

    @classmethod
    def from_contents(cls, contents: dict) -> SavedRecipe:
        """The facts of a recipe read as plain data (`{}`: no recipe).

        Example:
            >>> SavedRecipe.from_contents({"eval": {"evaluators": [{"name": "arith_grid", "args": {"samples": 4}}]}}
            ...                           ).in_loop_grid
            InLoopGrid(lengths='1-20', samples=4, seed=1234)
        """
        data = contents.get("data") or {}
        evaluators = (contents.get("eval") or {}).get("evaluators") or []
        grid = next((e.get("args") or {} for e in evaluators if e.get("name") == "arith_grid"), None)
        return cls(
            contents=contents,
            kind=data.get("kind", DataSpec.kind),
            task=data.get("task"),
            task_args=dict(data.get("task_args") or {}),
            seed=contents.get("seed"),
            train=contents.get("train") or {},
            hub_datasets=tuple(s["hub"] for s in (data.get("prepare") or {}).get("sources") or [] if s.get("hub")),
            in_loop_grid=None if grid is None else InLoopGrid(**{k: grid[k] for k in ("lengths", "samples", "seed")
                                                                if k in grid}),
        )

    @property
    def found(self) -> bool:
        """Whether the folder had a (non-empty) recipe."""
        return bool(self.contents)

    @property
    def arithmetic_task(self) -> str | None:
        """The task an arithmetic run trained (`DEFAULT_TASK` where the recipe names none, as
        training reads it); `None` for a text run or when there is no recipe."""
        if not self.found or self.kind != "arithmetic":
            return None
        return self.task or DEFAULT_TASK

    def task_args_for(self, task) -> dict | None:
        """`task_args` when the run trained `task` (compared as tasks, so that an alias names the
        task it stands for; a recipe naming no task counts as any), else `None`: a model trained on
        another task has no training lengths for this one.

        Example:
            >>> saved = SavedRecipe.from_contents({"data": {"task": "sort", "task_args": {"max_count": 4}}})
            >>> saved.task_args_for("sorting"), saved.task_args_for("addition")
            ({'max_count': 4}, None)
        """
        if not self.found:
            return None
        if self.task is not None and getattr(known_task(self.task), "name", None) != resolve_task(task).name:
            return None
        return dict(self.task_args)


def read_saved_recipe(model_dir: str | os.PathLike | None) -> SavedRecipe:
    """The `SavedRecipe` of `model_dir/recipe.yaml`; an empty one (`found` False) when there is no
    such file (a model saved by other code, a Hub id, or `None`)."""
    path = Path(model_dir) / "recipe.yaml" if model_dir else None
    if path is None or not path.is_file():
        return SavedRecipe()
    return SavedRecipe.from_contents(load_yaml(path.read_text()) or {})


__all__ = ["InLoopGrid", "SavedRecipe", "read_saved_recipe"]
