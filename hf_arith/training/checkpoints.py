"""Resumable checkpoints: `output_dir/checkpoints/step_N` folders and a `latest` pointer.

A checkpoint is Accelerate's `save_state` (model, optimizer, scheduler, gradient scaler, the RNG
states of every process; under FSDP and DeepSpeed each process writes its shard of the model and
optimizer) plus `trainer_state.json` (the step, hence the data position), `launch.json` (how it
was written: backend, processes, ZeRO stage, precision; resuming checks it first) and the resolved
`recipe.yaml`. Where hf-arith shards the model itself (FSDP on CPU), the model and optimizer
shards go to `sharded/` (`distributed.save_sharded_state`). It is written to a hidden temporary
folder and renamed when complete; the `latest` file is replaced atomically and only ever names a
complete checkpoint, so a run killed at any moment leaves a usable `latest`. Old checkpoints are
renamed to a hidden `.trash_` name before they are deleted (a kill mid-delete leaves no half
checkpoint under a `step_N` name); the retention policy never deletes the checkpoint `latest`
names; the next save or retirement removes what a killed one left behind. A write that fails
(disk full, read-only) removes its temporary folder and leaves the previous checkpoint and
`latest` as they were.

When the training loop saves and which checkpoints it keeps is `CheckpointPolicy`'s decision,
in one place: every `train.save_every` steps, at the end and at a stop signal; never inside a run
of non-finite steps; and older checkpoints are retired only once a finite step has run from the
newest, so a diverging state never costs the good ones.

Example (in the training loop, on every process)::

    policy = CheckpointPolicy(accelerator, recipe, model, optimizer)
    policy.after_step(TrainState(step=100), skipped=False)  # save_every: 100 -> runs/x/checkpoints/step_100
    # after a restart: the same folder, whenever the run was killed
    checkpoint = find_checkpoint("runs/x", "latest")
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import SCHEDULER_NAME, load
from safetensors import SafetensorError

from hf_arith.atomic import write_text_atomically
from hf_arith.dataclass_yaml import load_yaml
from hf_arith.errors import HfArithError

from .distributed import (
    SHARDED_DIR,
    describe_layout,
    launch_config_for,
    load_sharded_state,
    resume_problem,
    save_sharded_state,
    shards_itself,
    state_layout,
)
from .recipe import Recipe, recipe_to_dict, save_recipe

logger = logging.getLogger("hf_arith.training")

STATE_FILE = "trainer_state.json"
LAYOUT_FILE = "launch.json"  # how the checkpoint was written: `distributed.state_layout`
LATEST = "latest"
_STEP_DIR = re.compile(r"step_(\d+)")
# What writing a checkpoint raises on a full or read-only disk: Python's own writes raise OSError,
# torch.save a RuntimeError ("file write failed"), safetensors a SafetensorError.
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


@dataclass
class TrainState:
    """Where a run is, beyond what Accelerate saves.

    Fields: `step` (optimizer steps done; the next global batch is `BatchSchedule.span(step)`),
    `examples` and `tokens` trained on, `skipped_steps` (non-finite loss or gradient),
    `elapsed_s` (training wall-clock time, summed over resumes), `log_window` (the sums the next
    `metrics.jsonl` record averages, so that a resumed run logs the same numbers), `config_updates`
    (config values the in-loop evaluators chose, e.g. `abacus_eval_offset`, written into the final
    model's config when the run ends).

    Example:
        >>> TrainState(step=5).to_json()
        '{"step": 5, "examples": 0, "tokens": 0, "skipped_steps": 0, "elapsed_s": 0.0, "log_window": {}, "config_updates": {}}'
    """

    step: int = 0
    examples: int = 0
    tokens: int = 0
    skipped_steps: int = 0
    elapsed_s: float = 0.0
    log_window: dict = field(default_factory=dict)
    config_updates: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> TrainState:
        return cls(**json.loads(Path(path).read_text()))


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_path(output_dir: str | os.PathLike, step: int) -> Path:
    """The folder of the checkpoint of `step`: `output_dir/checkpoints/step_<step>`."""
    return checkpoint_root(output_dir) / f"step_{step}"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> for step in (100, 9, 50):  # what these functions read of a checkpoint: its trainer_state.json
        ...     (run / f"checkpoints/step_{step}").mkdir(parents=True)
        ...     _ = (run / f"checkpoints/step_{step}/trainer_state.json").write_text(TrainState(step=step).to_json())
        >>> (run / "checkpoints/step_150").mkdir()  # a save still being written: no trainer_state.json yet
        >>> [p.name for p in list_checkpoints(run)]
        ['step_9', 'step_50', 'step_100']
    """
    root = checkpoint_root(output_dir)
    found = [p for p in root.glob("step_*") if _STEP_DIR.fullmatch(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=_step)


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("_")[1])


def any_process(accelerator, flag: bool) -> bool:
    """True when `flag` is true on any process, so that all processes take the same branch.

    Example (on every process)::

        if any_process(accelerator, error is not None):  # the same branch everywhere
            raise HfArithError("the write failed on some process")
    """
    if accelerator.num_processes == 1:
        return flag

    return bool(accelerator.reduce(torch.tensor(float(flag), device=accelerator.device), reduction="sum") > 0)


def discard(path: Path) -> None:
    """Deletes the folder `path` so that a kill at any moment leaves either all of it or nothing
    under its name: one atomic rename to a hidden `.trash_` name, then the slow delete.

    Example:
        >>> import tempfile
        >>> checkpoint = Path(tempfile.mkdtemp()) / "step_50"
        >>> checkpoint.mkdir()
        >>> _ = (checkpoint / "trainer_state.json").write_text(TrainState(step=50).to_json())
        >>> discard(checkpoint)
        >>> list(checkpoint.parent.iterdir())  # nothing left, the `.trash_step_50` folder included
        []
    """
    trash = path.with_name(f".trash_{path.name}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(accelerator, output_dir, state: TrainState, recipe: Recipe, model=None, optimizer=None) -> Path:
    """Writes `checkpoints/step_<state.step>` (all processes must call it) and points `latest` at
    it; older checkpoints stay until `retire_checkpoints`. `model` and `optimizer` are needed where
    hf-arith shards the model itself (Accelerate saves the ones it prepared). A failed write
    (disk full, read-only) is an `HfArithError`; the previous checkpoint and `latest` stay as they were.

    Example (on every process)::

        save_checkpoint(accelerator, "runs/x", TrainState(step=10), recipe)  # runs/x/checkpoints/step_10
    """
    root = checkpoint_root(output_dir)
    final = checkpoint_path(output_dir, state.step)
    tmp = root / f".tmp_step_{state.step}"
    main = accelerator.is_main_process
    error = None
    if main:
        try:
            _remove_leftovers(root)
            tmp.mkdir(parents=True)
        except OSError as err:
            error = err
    _raise_if_failed(accelerator, error, tmp, final)
    try:
        accelerator.save_state(str(tmp))
        if shards_itself(accelerator):
            save_sharded_state(model, optimizer, tmp)
    except WRITE_ERRORS as err:  # torch.save and safetensors report a full disk in their own words
        error = err
    _raise_if_failed(accelerator, error, tmp, final)  # also: every process's RNG file is in before the rename
    if main:
        try:
            (tmp / STATE_FILE).write_text(state.to_json())
            (tmp / LAYOUT_FILE).write_text(json.dumps(state_layout(accelerator)))
            save_recipe(recipe, tmp / "recipe.yaml")
            if final.exists():  # written by a run killed before it moved `latest` here
                discard(final)
            os.replace(tmp, final)
            write_text_atomically(root / LATEST, final.name + "\n")
        except OSError as err:
            error = err
    _raise_if_failed(accelerator, error, tmp, final)
    accelerator.wait_for_everyone()
    return final


def _remove_leftovers(root: Path) -> None:
    """Temporary and half-deleted folders of a run killed while saving or retiring checkpoints."""
    for leftover in [*root.glob(".tmp_step_*"), *root.glob(".trash_*")]:
        shutil.rmtree(leftover, ignore_errors=True)


def _raise_if_failed(accelerator, error: Exception | None, tmp: Path, final: Path) -> None:
    """After a failed write on any process: the temporary folder goes, `HfArithError` on every process."""
    if not any_process(accelerator, error is not None):
        return
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    previous = latest_checkpoint(final.parent.parent)
    kept = (f"the previous checkpoint {previous} is intact and the latest pointer still names it"
            if previous is not None else "no earlier checkpoint exists")
    cause = write_error_text(error, final.parent) if error is not None else "the write failed on another process"
    raise HfArithError(f"could not write checkpoint {final}: {cause}; {kept}. Free some space or make "
                       f"{final.parent} writable (or choose another --output-dir), then continue with --resume latest")


def write_error_text(error: Exception, folder: Path) -> str:
    """What went wrong in a failed write, with the free space left where it happened.

    Example:
        >>> import tempfile
        >>> error = OSError(28, "No space left on device", "runs/x/checkpoints/.tmp_step_10/model.safetensors")
        >>> write_error_text(error, Path(tempfile.mkdtemp()))
        'No space left on device (runs/x/checkpoints/.tmp_step_10/model.safetensors; ... free there)'
    """
    what = getattr(error, "strerror", None) or _first_line(error)
    where = getattr(error, "filename", None) or folder
    try:
        free = f"; {_size(shutil.disk_usage(folder if folder.exists() else folder.parent).free)} free there"
    except OSError:
        free = ""
    return f"{what} ({where}{free})"


def latest_checkpoint(output_dir) -> Path | None:
    """The checkpoint `checkpoints/latest` names, or None before the first save.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> latest_checkpoint(run) is None  # before the first save
        True
        >>> (run / "checkpoints").mkdir()
        >>> write_text_atomically(run / "checkpoints/latest", "step_100\\n")  # as save_checkpoint does
        >>> latest_checkpoint(run).name
        'step_100'
    """
    pointer = checkpoint_root(output_dir) / LATEST
    return pointer.parent / pointer.read_text().strip() if pointer.is_file() else None


def retire_checkpoints(output_dir, keep_last: int) -> None:
    """Keeps the checkpoint `latest` names and the `keep_last - 1` before it; deletes older ones,
    later ones (left by a run that this one rewound to an earlier checkpoint: `latest` no longer
    leads to them), and what a killed save left behind. Call it on the main process.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> for step in (50, 100, 150, 200):  # what these functions read of a checkpoint: its trainer_state.json
        ...     (run / f"checkpoints/step_{step}").mkdir(parents=True)
        ...     _ = (run / f"checkpoints/step_{step}/trainer_state.json").write_text(TrainState(step=step).to_json())
        >>> write_text_atomically(run / "checkpoints/latest", "step_150\\n")  # the run rewound to step 150
        >>> retire_checkpoints(run, keep_last=2)
        >>> [p.name for p in list_checkpoints(run)]
        ['step_100', 'step_150']
    """
    newest = latest_checkpoint(output_dir)
    if newest is None:
        return
    checkpoints = list_checkpoints(output_dir)
    older = [c for c in checkpoints if _step(c) < _step(newest)]
    later = [c for c in checkpoints if _step(c) > _step(newest)]
    if later:
        logger.warning(f"removing {', '.join(c.name for c in later)}: this run continued from an earlier checkpoint "
                       f"and has saved {newest.name}")
    for old in older[:max(len(older) - (keep_last - 1), 0)] + later:
        discard(old)
    _remove_leftovers(checkpoint_root(output_dir))


def weights_finite(accelerator, model: torch.nn.Module) -> bool:
    """Whether every parameter (this process's shard of it) is finite, on all processes (all must
    call it). A finite gradient can still overflow the weights (a huge learning rate, weight decay
    included).

    Example:
        >>> class OneProcess:  # what this function reads of an Accelerator
        ...     num_processes = 1
        >>> model = torch.nn.Linear(2, 2)
        >>> weights_finite(OneProcess(), model)
        True
        >>> with torch.no_grad():
        ...     model.weight[0, 0] = float("inf")
        >>> weights_finite(OneProcess(), model)
        False
    """
    local = all(bool(torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all())
                for p in model.parameters())
    return not any_process(accelerator, not local)


class CheckpointPolicy:
    """When the training loop saves a checkpoint and which ones it keeps; the loop calls
    `after_step` once per step and `at_end` once its weights are known to be finite (as torchtitan's
    loop hands this to its checkpointer). All processes call every method: saving and the weight
    check are collective.

    - When: every `train.save_every` steps and at the last step (never with `save_every: 0`), and
      at the step a stop signal ends, whatever `save_every` says (or the steps since the last save
      are lost). A due save waits while the step's update was skipped (a non-finite loss or
      gradient norm) or the weights are not finite, and happens at the next finite step: inside a
      run of non-finite steps the state may be diverging, and retention must not delete the good
      checkpoints for it.
    - What is kept: `retire_checkpoints` (`train.keep_last`) runs only once a finite step has run
      from the newest checkpoint (`unconfirmed` until then): an update that ruins the weights without
      a non-finite number shows only in the next step. A resumed checkpoint that `latest` names is
      confirmed the same way (and what killed runs left behind is removed then).
    - What it last saved: `last_saved`, the step of the newest checkpoint this run saved or resumed
      from (-1: none); `saved_at(step)`.

    `resumed`: the checkpoint the run continues from, at step `step` (None for a new run).

    Example (in the training loop, on every process)::

        policy = CheckpointPolicy(accelerator, recipe, model, optimizer)
        while state.step < recipe.train.max_steps:
            ...  # one optimizer step, its log and evaluation
            policy.after_step(state, skipped, stopping=state.step == recipe.train.max_steps)
        policy.at_end(state)
    """

    def __init__(self, accelerator: Accelerator, recipe: Recipe, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, resumed: Path | None = None, step: int = 0):
        self.accelerator, self.recipe, self.model, self.optimizer = accelerator, recipe, model, optimizer
        self.output_dir = Path(recipe.output_dir)
        self.last_saved = step if resumed is not None else -1
        self.unconfirmed = resumed is not None and resumed == latest_checkpoint(self.output_dir)
        self.due = False  # a save is due and waits for a finite step

    def after_step(self, state: TrainState, skipped: bool, stopping: bool = False, preempted: bool = False) -> None:
        """After step `state.step` and its evaluation (every record up to a checkpoint's step is
        then in metrics.jsonl before the checkpoint exists): retires older checkpoints if this step
        is the first finite one from the newest, then saves the step if a save is due and the state
        is finite. `skipped`: the step's update was skipped (non-finite); `stopping`: the run ends
        after it (`train.max_steps`, the time budget); `preempted`: a stop signal ends it."""
        if not skipped and self.unconfirmed:
            self._retire()
            self.unconfirmed = False
        every = self.recipe.train.save_every
        self.due = self.due or preempted or bool(every) and (state.step % every == 0 or stopping)
        if self.due and not skipped and weights_finite(self.accelerator, self.model):
            self._save(state)

    def at_end(self, state: TrainState) -> None:
        """After the last step, with finite weights: saves it if `save_every` asks for checkpoints
        and its save waited (the last steps were not finite), then retires older checkpoints."""
        if not self.recipe.train.save_every:
            return
        if self.last_saved != state.step:
            self._save(state)
        self._retire()

    def _save(self, state: TrainState) -> None:
        """`save_checkpoint` of `state` (the log window included); the newest is unconfirmed."""
        save_checkpoint(self.accelerator, self.output_dir, state, self.recipe, self.model, self.optimizer)
        self.last_saved, self.due, self.unconfirmed = state.step, False, True

    def _retire(self) -> None:
        """`retire_checkpoints` with `train.keep_last`, on the main process."""
        if self.accelerator.is_main_process:
            retire_checkpoints(self.output_dir, self.recipe.train.keep_last)

    def saved_at(self, step: int) -> Path | None:
        """The checkpoint this run saved (or resumed from) at `step`, or None."""
        return checkpoint_path(self.output_dir, step) if self.last_saved == step else None


def load_checkpoint(accelerator, checkpoint: Path, model=None, optimizer=None, scheduler=None) -> TrainState:
    """Restores what `save_checkpoint` wrote (all processes must call it) and returns the run's
    `TrainState`. First checks that this launch can read the checkpoint's layout
    (`distributed.resume_problem`): unsharded state on any number of processes, FSDP-sharded
    state on any number of FSDP processes or gathered into one process or DDP; otherwise an
    `HfArithError`, the same on every process, naming how it was written, how this run was
    launched, and the command that resumes it.

    Every pickled file (optimizer, scheduler, RNG states) is read with `torch.load(weights_only=True)`
    (Accelerate's `load`): a file asking to run code when unpickled, or a corrupt one, is an
    `HfArithError` naming it, and nothing in it runs.

    Example (on every process, after `accelerator.prepare`)::

        state = load_checkpoint(accelerator, Path("runs/x/checkpoints/step_100"), model, optimizer, scheduler)
        state.step  # 100: training continues with the 101st global batch
    """
    checkpoint = Path(checkpoint)
    written, launched = written_layout(checkpoint), state_layout(accelerator)
    problem = resume_problem(written, launched)
    if problem is not None:
        raise HfArithError(f"checkpoint {checkpoint} was written by {describe_layout(written)}, and this run was "
                           f"launched as {describe_layout(launched)}: {problem}; resume it with "
                           f"`{launch_config_for(written)} RECIPE --resume {checkpoint}`, "
                           f"or start a new --output-dir")
    if written["state"] == "dcp" and launched["state"] == "full":
        _load_gathered(checkpoint, model, optimizer, scheduler)
        return TrainState.from_file(checkpoint / STATE_FILE)
    # Accelerate only logs an RNG file it cannot read and goes on with other random numbers: read it
    # first, so that a bad one is an error. A process the writing run did not have has none; the
    # training draws do not need it (they are keyed by step and micro-batch).
    if accelerator.process_index < written["num_processes"]:
        _load_tensors_only(checkpoint, checkpoint / f"random_states_{accelerator.process_index}.pkl")
    try:
        accelerator.load_state(str(checkpoint))
    except (pickle.UnpicklingError, SafetensorError, RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        for path in sorted(checkpoint.glob("*")):  # which file: probed only now, on the error path
            if path.suffix in (".bin", ".pkl", ".pt"):
                _load_tensors_only(checkpoint, path)
        raise HfArithError(f"checkpoint {checkpoint} cannot be loaded ({_first_line(err)}); resume from another "
                           f"checkpoint (--resume {checkpoint.parent}/step_N) or start a new --output-dir") from None
    if shards_itself(accelerator):
        check_sharded_metadata(checkpoint / SHARDED_DIR / ".metadata")
        load_sharded_state(model, optimizer, checkpoint)
    return TrainState.from_file(checkpoint / STATE_FILE)


def _load_gathered(checkpoint: Path, model, optimizer, scheduler) -> None:
    """FSDP-sharded state into an unsharded model and optimizer (one process, or each DDP
    process): the shards through `torch.distributed.checkpoint`, which gathers them; the
    schedule from Accelerate's scheduler file (the only thing Accelerate saved there)."""
    check_sharded_metadata(checkpoint / SHARDED_DIR / ".metadata")
    load_sharded_state(model, optimizer, checkpoint)
    scheduler.load_state_dict(_load_tensors_only(checkpoint, checkpoint / f"{SCHEDULER_NAME}.bin"))


def written_layout(checkpoint: Path) -> dict:
    """How `checkpoint` was written (`distributed.state_layout`): its `launch.json`, or for a
    checkpoint from before that file (hf-arith before 2026-12-08), what its files show.

    Example:
        >>> import tempfile
        >>> written_layout(Path(tempfile.mkdtemp()))["state"]   # no shards: one process or DDP
        'full'
    """
    path = checkpoint / LAYOUT_FILE
    if path.is_file():
        return json.loads(path.read_text())
    ranks = lambda pattern: len(list(checkpoint.glob(pattern)))  # noqa: E731
    if (checkpoint / SHARDED_DIR).is_dir():
        return {"state": "dcp", "backend": "fsdp", "num_processes": max(1, ranks(f"{SHARDED_DIR}/*.distcp"))}
    zero = ranks("*/zero_pp_rank_*_mp_rank_00_optim_states.pt")
    if zero:
        stage = 3 if ranks("*/zero_pp_rank_*_mp_rank_00_model_states.pt") else 2
        return {"state": f"zero{stage}", "backend": "deepspeed", "num_processes": zero}
    processes = max(1, ranks("random_states_*.pkl"))
    return {"state": "full", "backend": "ddp" if processes > 1 else "single", "num_processes": processes}


# `torch.distributed.checkpoint` reads its `.metadata` with plain `pickle.load`, which runs whatever
# the file asks for. The same bytes are read here first by an unpickler that builds only DCP's own
# metadata types, torch sizes, dtypes and layouts, and paths.
_SHARDED_METADATA_GLOBALS = {
    ("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib._local", "PosixPath"),
    ("pathlib._local", "WindowsPath"),
}


class _ShardedMetadataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        allowed = ((module, name) in _SHARDED_METADATA_GLOBALS
                   or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype))
                   or module == "torch.distributed.checkpoint.metadata")
        if allowed:
            found = super().find_class(module, name)
            if module != "torch.distributed.checkpoint.metadata" or (isinstance(found, type) and
                                                                     found.__module__ == module):
                return found
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name}")


def check_sharded_metadata(path: Path) -> None:
    """`HfArithError` unless the sharded checkpoint's `.metadata` (a pickle) holds only
    `torch.distributed.checkpoint`'s own metadata: nothing in it runs.

    Example:
        >>> import tempfile
        >>> metadata = Path(tempfile.mkdtemp()) / "step_100/sharded/.metadata"
        >>> metadata.parent.mkdir(parents=True)
        >>> _ = metadata.write_bytes(pickle.dumps(os.system))  # a pickle that would call os.system
        >>> check_sharded_metadata(metadata)
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: ...sharded/.metadata cannot be loaded: it asks to run ...system when unpickled...
    """
    checkpoint = path.parent.parent
    if not path.is_file():
        raise HfArithError(f"checkpoint {checkpoint} has no {path.relative_to(checkpoint)}; it is incomplete: resume "
                           f"from another checkpoint (--resume {checkpoint.parent}/step_N)")
    try:
        with path.open("rb") as f:
            _ShardedMetadataUnpickler(f).load()
    except Exception as err:  # noqa: BLE001 - whatever the unpickler met, the file is unusable
        raise _unloadable(checkpoint, path, err, "unpickles only torch.distributed.checkpoint's own metadata") from None


def _load_tensors_only(checkpoint: Path, path: Path):
    """`torch.load(path, weights_only=True)` with Accelerate's allowed NumPy types (RNG states);
    `HfArithError` naming the file if it is missing, corrupt, or asks to run code."""
    if not path.is_file():
        raise HfArithError(f"checkpoint {checkpoint} has no {path.name}; it is incomplete or was saved by another "
                           f"number of processes: resume it as it was launched, or from another checkpoint")
    try:
        return load(path, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - whatever the unpickler met, the file is unusable
        raise _unloadable(checkpoint, path, err,
                          "loads checkpoint files as tensors only (torch.load(weights_only=True))") from None


def _unloadable(checkpoint: Path, path: Path, err: Exception, hf_arith_reads: str) -> HfArithError:
    """The error for a pickled checkpoint file that failed to load: one that asks to run code
    (refused by an unpickler that reads what `hf_arith_reads` says) or a corrupt one."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    why = (f"it asks to run {found.group(1)} when unpickled, and hf-arith {hf_arith_reads}; it was not written "
           f"by hf-arith, do not trust it" if found else f"it is corrupt ({_first_line(err)})")
    return HfArithError(f"checkpoint file {path} cannot be loaded: {why}; resume from another checkpoint "
                        f"(--resume {checkpoint.parent}/step_N) or start a new --output-dir")


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def checkpoint_bytes(num_parameters: int, checkpoints: int = 1) -> int:
    """Bytes that `checkpoints` checkpoints and the final model of a model with `num_parameters`
    need at least: fp32 weights and AdamW's two fp32 moments per checkpoint, the fp32 final
    weights, and 1 MiB for RNG states, configs and the tokenizer.

    Example:
        >>> checkpoint_bytes(1_000_000)
        17048576
    """
    return num_parameters * 4 * (3 * checkpoints + 1) + 2**20


def check_output_dir(output_dir, needed_bytes: int) -> None:
    """`HfArithError` unless `output_dir` (created if missing) takes a file and has `needed_bytes`
    free: run before training, so that a read-only or full disk fails now and not at the first save.

    Example:
        >>> import tempfile
        >>> check_output_dir(Path(tempfile.mkdtemp()) / "runs/x", checkpoint_bytes(344_448))  # created, writable
        >>> check_output_dir(Path(tempfile.mkdtemp()), 1000 * 2**40)
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: the output folder ... has ... free, but ... need about 1000.0 TiB; ...
    """
    out = Path(output_dir)
    probe = out / f".write_test_{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"hf-arith")
        probe.unlink()
    except OSError as err:
        raise HfArithError(f"cannot write to the output folder {out} ({err.strerror or err}); choose another "
                           f"--output-dir, or make it writable") from None
    free = shutil.disk_usage(out).free
    if free < needed_bytes:
        raise HfArithError(f"the output folder {out} has {_size(free)} free, but a checkpoint and the final model of "
                           f"this run need about {_size(needed_bytes)}; free some space or choose another --output-dir")


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024:
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    return f"{num_bytes:.1f} TiB"


def find_checkpoint(output_dir, resume: str | os.PathLike | None) -> Path | None:
    """The checkpoint folder `resume` names: `"latest"` (what `checkpoints/latest` names, else the
    newest complete checkpoint; None, with a warning, when the run has none yet), or a path to a
    `step_N` folder. None for None.

    Example:
        >>> import tempfile
        >>> run = Path(tempfile.mkdtemp())
        >>> for step in (50, 100):  # what these functions read of a checkpoint: its trainer_state.json
        ...     (run / f"checkpoints/step_{step}").mkdir(parents=True)
        ...     _ = (run / f"checkpoints/step_{step}/trainer_state.json").write_text(TrainState(step=step).to_json())
        >>> find_checkpoint(run, "latest").name  # no `latest` file (killed before writing it): the newest
        'step_100'
        >>> find_checkpoint(run, run / "checkpoints/step_7")
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: .../step_7 is not a complete checkpoint (no trainer_state.json); ...
    """
    if resume in (None, "", False):
        return None
    if str(resume) == LATEST:
        path = latest_checkpoint(output_dir)
        if path is None:
            complete = list_checkpoints(output_dir)
            if not complete:
                logger.warning(f"--resume latest: no checkpoint in {checkpoint_root(output_dir)} yet; starting from "
                               f"scratch")
                return None
            # Killed between renaming the first checkpoint into place and writing `latest`.
            path = complete[-1]
    else:
        path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise HfArithError(
            f"{path} is not a complete checkpoint (no {STATE_FILE}); pass 'latest' or a "
            f"{checkpoint_root(output_dir)}/step_N folder"
        )
    return path


# What a resume continues from the checkpoint whatever the recipe says: the optimizer's settings
# (in its saved state), the learning rate's peak (in the scheduler's) and, fixed by the steps
# already trained, the shape of the schedules and the data position. A new value would be written
# to recipe.yaml without being what the run trains with. `train.max_steps` (and
# `train.time_budget_minutes`) may change: the schedules are functions of them and follow.
FIXED_ON_RESUME = ("train.lr", "train.betas", "train.eps", "train.weight_decay", "train.decay_embeddings",
                   "train.schedule", "train.warmup", "train.cooldown", "train.schedule_clock", "train.final_lr_ratio",
                   "train.warmup_start_ratio", "train.global_batch_size", "train.batch_ramp", "train.batch_warmup")


def check_resumable(checkpoint: Path, recipe: Recipe) -> None:
    """Refuses a checkpoint whose model differs from the recipe's, or whose optimizer or schedules
    the recipe changes (`FIXED_ON_RESUME`); warns about other differences (e.g. a longer
    `max_steps` is a legitimate reason to resume).

    Example:
        >>> import tempfile
        >>> from hf_arith.training import load_recipe, save_recipe
        >>> checkpoint = Path(tempfile.mkdtemp()) / "step_100"
        >>> _ = save_recipe(load_recipe("recipes/abacus/addition_cpu.yaml"), checkpoint / "recipe.yaml")
        >>> longer = load_recipe("recipes/abacus/addition_cpu.yaml", ["train.max_steps=20000"])
        >>> check_resumable(checkpoint, longer)  # allowed, with a warning naming train.max_steps
        >>> wider = load_recipe("recipes/abacus/addition_cpu.yaml", ["model.config.hidden_size=256"])
        >>> check_resumable(checkpoint, wider)
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: ...step_100 was trained with a different model (model.config.hidden_size); ...
        >>> check_resumable(checkpoint, load_recipe("recipes/abacus/addition_cpu.yaml", ["train.lr=5e-3"]))
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: cannot resume ...step_100 with another train.lr (0.001 there, 0.005 now): ...
    """
    saved_path = checkpoint / "recipe.yaml"
    if not saved_path.is_file():
        return
    saved, current = _flatten(load_yaml(saved_path.read_text()) or {}), _flatten(recipe_to_dict(recipe))
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k) and k != "output_dir")
    model_changes = [k for k in changed if k == "model.arch" or k.startswith("model.config.")]
    if model_changes:
        raise HfArithError(
            f"checkpoint {checkpoint} was trained with a different model ({', '.join(model_changes)}); "
            f"resume with the recipe it was saved with ({saved_path})"
        )
    fixed = [k for k in changed if any(k == f or k.startswith(f"{f}.") for f in FIXED_ON_RESUME)]
    if fixed:
        values = ", ".join(f"{k} ({saved.get(k)!r} there, {current.get(k)!r} now)" for k in fixed)
        raise HfArithError(
            f"cannot resume {checkpoint} with another {values}: the optimizer, the learning-rate and batch "
            f"schedules and the data position continue from the checkpoint, so the run would not train with the "
            f"new value that its recipe.yaml would record; resume without the change, or train with it from the "
            f"start in a new --output-dir (train.max_steps may change on resume)"
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


__all__ = ["FIXED_ON_RESUME", "LAYOUT_FILE", "WRITE_ERRORS", "CheckpointPolicy", "TrainState", "any_process",
           "check_output_dir", "check_resumable", "check_sharded_metadata", "checkpoint_bytes", "checkpoint_path",
           "discard", "find_checkpoint", "latest_checkpoint", "list_checkpoints", "load_checkpoint",
           "retire_checkpoints", "save_checkpoint", "weights_finite", "write_error_text", "written_layout"]
