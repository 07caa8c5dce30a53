"""Resumable checkpoints: `output_dir/checkpoints/step_N` folders and a `latest` pointer.

A checkpoint is Accelerate's `save_state` (model, optimizer, scheduler, gradient scaler, the RNG
states of every process; under FSDP and DeepSpeed each process writes its shard of the model and
optimizer) plus `trainer_state.json` (the step, hence the data position) and the resolved
`recipe.yaml`. Where hf-arith shards the model itself (FSDP on CPU), the model and optimizer
shards go to `sharded/` (`distributed.save_sharded_state`). It is written to a hidden temporary
folder and renamed when complete; the `latest` file is replaced atomically and only ever names a
complete checkpoint, so a run killed at any moment leaves a usable `latest`.

Example:
    >>> save_checkpoint(accelerator, "runs/x", TrainState(step=100), recipe, keep_last=3)
    PosixPath('runs/x/checkpoints/step_100')
    >>> find_checkpoint("runs/x", "latest")
    PosixPath('runs/x/checkpoints/step_100')
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from hf_arith.errors import HfArithError

from .distributed import load_sharded_state, save_sharded_state, shards_itself
from .recipe import Recipe, recipe_to_dict, save_recipe

logger = logging.getLogger("hf_arith.training")

STATE_FILE = "trainer_state.json"
LATEST = "latest"
_STEP_DIR = re.compile(r"step_(\d+)")


@dataclass
class TrainState:
    """Where a run is, beyond what Accelerate saves.

    Fields: `step` (optimizer steps done; the next global batch is `BatchSchedule.span(step)`),
    `examples` and `tokens` trained on, `skipped_steps` (non-finite loss or gradient),
    `elapsed_s` (training wall-clock time, summed over resumes).

    Example:
        >>> TrainState(step=5).to_json()
        '{"step": 5, "examples": 0, "tokens": 0, "skipped_steps": 0, "elapsed_s": 0.0}'
    """

    step: int = 0
    examples: int = 0
    tokens: int = 0
    skipped_steps: int = 0
    elapsed_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TrainState:
        return cls(**json.loads(Path(path).read_text()))


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first.

    Example:
        >>> [p.name for p in list_checkpoints("runs/x")]
        ['step_50', 'step_100']
    """
    root = checkpoint_root(output_dir)
    found = [p for p in root.glob("step_*") if _STEP_DIR.fullmatch(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def save_checkpoint(accelerator, output_dir, state: TrainState, recipe: Recipe, keep_last: int,
                    model=None, optimizer=None) -> Path:
    """Writes `checkpoints/step_<state.step>` (all processes must call it), points `latest` at it
    and deletes all but the newest `keep_last` checkpoints. `model` and `optimizer` are needed
    where hf-arith shards the model itself (Accelerate saves the ones it prepared).

    Example:
        >>> save_checkpoint(accelerator, "runs/x", TrainState(step=10), recipe, keep_last=2).name
        'step_10'
    """
    root = checkpoint_root(output_dir)
    final = root / f"step_{state.step}"
    tmp = root / f".tmp_step_{state.step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if shards_itself(accelerator):
        save_sharded_state(model, optimizer, tmp)
    accelerator.wait_for_everyone()  # every process's RNG file is in before the rename
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(state.to_json())
        save_recipe(recipe, tmp / "recipe.yaml")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(final.name + "\n")
        os.replace(pointer, root / LATEST)
        for old in list_checkpoints(output_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: Path, model=None, optimizer=None) -> TrainState:
    """Restores what `save_checkpoint` wrote (all processes must call it) and returns the run's
    `TrainState`. Sharded state loads on the same number of processes it was saved from.

    Example:
        >>> load_checkpoint(accelerator, Path("runs/x/checkpoints/step_100"), model, optimizer).step
        100
    """
    accelerator.load_state(str(checkpoint))
    if shards_itself(accelerator):
        load_sharded_state(model, optimizer, checkpoint)
    return TrainState.from_file(Path(checkpoint) / STATE_FILE)


def find_checkpoint(output_dir, resume: str | os.PathLike | None) -> Path | None:
    """The checkpoint folder `resume` names: `"latest"` (what `checkpoints/latest` names; None,
    with a warning, when the run has none yet), or a path to a `step_N` folder. None for None.

    Example:
        >>> find_checkpoint("runs/x", "latest").name
        'step_100'
    """
    if resume in (None, "", False):
        return None
    if str(resume) == LATEST:
        pointer = checkpoint_root(output_dir) / LATEST
        if not pointer.is_file():
            logger.warning(f"--resume latest: no checkpoint in {checkpoint_root(output_dir)} yet; starting from scratch")
            return None
        path = checkpoint_root(output_dir) / pointer.read_text().strip()
    else:
        path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise HfArithError(
            f"{path} is not a complete checkpoint (no {STATE_FILE}); pass 'latest' or a "
            f"{checkpoint_root(output_dir)}/step_N folder"
        )
    return path


def check_resumable(checkpoint: Path, recipe: Recipe) -> None:
    """Refuses a checkpoint whose model differs from the recipe's; warns about other differences
    (e.g. a longer `max_steps` is a legitimate reason to resume).

    Example:
        >>> check_resumable(Path("runs/x/checkpoints/step_100"), recipe)
    """
    import yaml

    saved_path = checkpoint / "recipe.yaml"
    if not saved_path.is_file():
        return
    saved, current = _flatten(yaml.safe_load(saved_path.read_text()) or {}), _flatten(recipe_to_dict(recipe))
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k != "output_dir")
    model_changes = [k for k in changed if k == "model.arch" or k.startswith("model.config.")]
    if model_changes:
        raise HfArithError(
            f"checkpoint {checkpoint} was trained with a different model ({', '.join(model_changes)}); "
            f"resume with the recipe it was saved with ({saved_path})"
        )
    if changed:
        logger.warning(f"resuming {checkpoint} with a recipe that differs in: {', '.join(changed)}")


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


__all__ = ["TrainState", "check_resumable", "find_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint"]
