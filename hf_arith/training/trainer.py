"""The training loop shared by every architecture, on Accelerate.

One optimizer step trains on the global batch `BatchSchedule.span(step)`, cut into micro-batches
of `train.micro_batch_size` (after sorting it by length, with `data.bucket_by_length`) the same way
on any number of processes; each process takes a contiguous block of them and accumulates
gradients (`no_sync` until its last one, unless parameters are sharded). What a model draws at
random in a micro-batch's forward (Abacus offsets, a noise start) comes from torch's generator
seeded by (seed, step, micro-batch index) (`keyed_rng`), and the progressive loss's depth is drawn
once per step from (seed, step) (`step_inputs`), so a micro-batch sees the same draws on 1 process
or 64, and after a resume. The loss of every micro-batch is a sum over
label tokens divided by the label tokens of the whole global batch (`num_items_in_batch`, the
transformers convention), and multiplied by the number of processes to undo DDP's gradient
averaging, so the loss and the gradient are those of one big batch on any number of processes
and any micro-batch size. FSDP and DeepSpeed ZeRO average over processes too, so the same holds
under every launch config (`distributed.py`, recipes/accelerate/).

Example (two steps of a tiny model):
    >>> import tempfile
    >>> from hf_arith.training import recipe_from_dict, train
    >>> recipe = recipe_from_dict({
    ...     "output_dir": tempfile.mkdtemp(),
    ...     "model": {"arch": "abacus", "config": {"hidden_size": 32, "num_attention_heads": 2,
    ...               "intermediate_size": 64, "num_hidden_layers": 1, "num_recurrences": 2}},
    ...     "data": {"task": "addition", "task_args": {"max_digits": 3}},
    ...     "train": {"max_steps": 2, "micro_batch_size": 8, "global_batch_size": 8, "warmup": 0, "cooldown": 0,
    ...               "save_every": 0, "eval_every": 0, "report_to": []}})
    >>> final = train(recipe)
    >>> {"config.json", "model.safetensors", "modeling_abacus.py", "tokenizer.json"} <= {p.name for p in final.iterdir()}
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.scheduler import AcceleratedScheduler
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedTokenizerBase

from hf_arith.data.arithmetic import IGNORE_INDEX
from hf_arith.data.sources import Source, build_source, build_tokenizer, micro_batches
from hf_arith.errors import HfArithError, RecipeError

from .checkpoints import (
    WRITE_ERRORS,
    CheckpointPolicy,
    TrainState,
    any_process,
    check_output_dir,
    check_resumable,
    checkpoint_bytes,
    find_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    weights_finite,
    write_error_text,
)
from .distributed import (
    accelerator_kwargs,
    check_launch,
    full_state_dict,
    model_init_context,
    params_sharded,
    prepare,
    set_deepspeed_clipping,
    steps_in_backward,
    unsharded,
)
from .evaluators import Evaluator, build_evaluators
from .metrics_log import plot_loss, read_metrics, truncate_metrics
from .models import build_model
from .optim import BatchSchedule, BudgetClock, clip_value, process_share
from .preemption import StopSignals, TrainingStopped
from .recipe import Recipe, recipe_to_dict, save_recipe

logger = logging.getLogger("hf_arith.training")


# ---------------------------------------------------------------------------------------------
# Model


def enable_activation_checkpointing(model) -> None:
    """Recompute activations in the backward pass (non-reentrant), under either transformers name:
    `activation_checkpointing_enable` in newer releases, `gradient_checkpointing_enable` (deprecated) in older.

    Example:
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64))
        >>> enable_activation_checkpointing(model)
        >>> any(getattr(module, "gradient_checkpointing", False) for module in model.modules())
        True
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# ---------------------------------------------------------------------------------------------
# Accelerate plumbing


def make_accelerator(recipe: Recipe):
    """The run's `Accelerator`. Accumulation is done by the loop (the number of micro-batches
    changes with the batch ramp), and the scheduler steps once per optimizer step on any number
    of processes (`step_scheduler_with_optimizer=False`). What `accelerate launch` asked for (DDP,
    FSDP, DeepSpeed, on GPUs or CPUs) is set up by `distributed.accelerator_kwargs`.

    Example:
        >>> make_accelerator(Recipe()).mixed_precision
        'no'
    """
    t = recipe.train
    state = AcceleratorState._shared_state
    # A second run in one single-process Python session (tests, notebooks) may change the mixed
    # precision, which Accelerate's process-wide state otherwise refuses.
    if state.get("_mixed_precision") not in (None, t.mixed_precision) and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    launch = accelerator_kwargs(recipe)  # what `accelerate launch` asked for: DDP, FSDP, DeepSpeed
    try:
        accelerator = Accelerator(
            mixed_precision=t.mixed_precision,
            log_with=list(t.report_to) or None,
            project_dir=str(recipe.output_dir),
            step_scheduler_with_optimizer=False,
            **launch,
        )
    except (ValueError, ImportError) as err:
        raise RecipeError(f"train.mixed_precision={t.mixed_precision!r} / train.report_to={t.report_to}: {err}") from None
    check_launch(accelerator, recipe)
    return accelerator


@contextlib.contextmanager
def preserved_rng(device: torch.device):
    """Restores the Python, NumPy and torch (CPU and this CUDA device) random states on exit, so that
    evaluation inside the loop cannot change training.

    Example:
        >>> with preserved_rng(torch.device("cpu")):
        ...     _ = torch.rand(3)
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


def _flat_config(recipe: Recipe) -> dict:
    """The recipe as flat scalars, the form trackers (TensorBoard hparams) accept."""
    flat = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            else:
                flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)

    walk(recipe_to_dict(recipe), "")
    return flat


# ---------------------------------------------------------------------------------------------
# One step


def _z_loss(logits: torch.Tensor, labels: torch.Tensor, num_items) -> torch.Tensor:
    """Sum over label tokens of logsumexp(logits)^2, divided by the global label count (OLMo).

    A training objective of the recipe (`train.z_loss`), applied to any model's logits, as OLMo's
    trainer does; not a model option, which would add a key to every saved `config.json`."""
    z = torch.logsumexp(logits[:, :-1].float(), dim=-1)
    mask = labels[:, 1:].to(z.device) != IGNORE_INDEX
    return (z.pow(2) * mask).sum() / num_items


@contextlib.contextmanager
def keyed_rng(seed: int, step: int, micro_batch: int, device: torch.device):
    """Seeds torch's generators (CPU and this device) from (seed, step, micro_batch) inside the
    block and restores them after it: the random draws of a micro-batch's forward and backward
    depend on which micro-batch of which step it is, not on the process that runs it or on what
    ran before (`torch.Generator` objects cannot be handed to a model's forward through
    transformers' interfaces, so the global generators are scoped instead).

    Example:
        >>> with keyed_rng(0, 5, 1, torch.device("cpu")):
        ...     a = torch.rand(2)
        >>> with keyed_rng(0, 5, 1, torch.device("cpu")):
        ...     torch.equal(a, torch.rand(2))
        True
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        torch.manual_seed(_key(seed, step, micro_batch))
        yield


def _key(*numbers: int) -> int:
    """A 64-bit seed that mixes `numbers` (NumPy's `SeedSequence`: nearby tuples give unrelated seeds)."""
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0])


def step_inputs(model, seed: int, step: int) -> dict:
    """Forward arguments shared by every micro-batch of a step, on every process: the progressive
    loss's depth `(n, k)` for models that have one (`draw_progressive_depth`), drawn from
    (seed, step). Processes holding parameter shards (FSDP, ZeRO-3) gather them at every application
    of a layer, so they must all apply the recurrent block equally often.

    Example:
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_recurrences=4, progressive_loss_alpha=1.0))
        >>> step_inputs(model, seed=0, step=7) == step_inputs(model, seed=0, step=7)
        True
    """
    if not hasattr(model, "draw_progressive_depth") or not model.config.progressive_loss_alpha:
        return {}
    generator = torch.Generator().manual_seed(_key(seed, step))
    return {"progressive_depth": model.draw_progressive_depth(generator)}


def train_step(accelerator, model, forward, batches: list[tuple[int, dict]], recipe: Recipe, step: int = 0) -> dict:
    """Forward and backward over this process's micro-batches of global batch `step`, given as
    `(global micro-batch index, batch)` pairs; gradients are left in `.grad`, synchronised across
    processes. Random draws inside each forward are keyed by (seed, step, index) (`keyed_rng`).
    Returns the global `loss` (the model's own: cross-entropy), `z_loss` (the `train.z_loss` term
    the objective adds to it; 0 without one), and the global counts of `label_tokens`, `tokens`
    (non-padding) and `padded_tokens`.

    Example:
        Inside `train`, on what `_build` prepared::

            stats = train_step(accelerator, model, model, [(0, collate(rows))], recipe, step=0)
            sorted(stats)  # ['label_tokens', 'loss', 'padded_tokens', 'tokens', 'z_loss']
    """
    device = accelerator.device
    local = torch.tensor(
        [sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for _, b in batches),
         sum(int(b["attention_mask"].sum()) for _, b in batches),
         sum(b["input_ids"].numel() for _, b in batches)],
        dtype=torch.float64, device=device,
    )
    label_tokens, tokens, padded = accelerator.reduce(local, reduction="sum").tolist()
    # The label count of the whole global batch, on every process, normalises every micro-batch.
    num_items = torch.tensor(max(label_tokens, 1.0), device=device)
    z_coef = recipe.train.z_loss
    shared = step_inputs(accelerator.unwrap_model(model), recipe.seed, step)
    sums = torch.zeros(2, device=device)  # the model's loss, the z-loss term: logged apart
    for i, (index, batch) in enumerate(batches):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        last = i == len(batches) - 1
        # The step ends at the last micro-batch: DeepSpeed, which reads this, steps its optimizer there.
        accelerator.sync_gradients = last
        # Sharded gradients are reduced at every micro-batch (as OLMo does): deferring the reduction
        # would hold each layer's whole unsharded gradient until the last one.
        defer = not last and not params_sharded(accelerator)
        sync = accelerator.no_sync(model) if defer else contextlib.nullcontext()
        with sync, keyed_rng(recipe.seed, step, index, device):
            out = forward(**batch, **shared, num_items_in_batch=num_items)
            z_loss = z_coef * _z_loss(out.logits, batch["labels"], num_items) if z_coef else None
            objective = out.loss if z_loss is None else out.loss + z_loss
            # DDP averages gradients over processes; the loss is already a global-batch mean.
            accelerator.backward(objective * accelerator.num_processes)
        sums[0] += out.loss.detach().float()
        if z_loss is not None:
            sums[1] += z_loss.detach().float()
    loss_total, z_total = accelerator.reduce(sums, reduction="sum").tolist()
    return {"loss": loss_total, "z_loss": z_total, "label_tokens": label_tokens, "tokens": tokens,
            "padded_tokens": padded}


def run_evaluators(accelerator, model, evaluators, step: int) -> dict:
    """Runs each `(name, evaluator)` on the main process (eval mode, no grad, RNG preserved) and
    returns `{"eval/<name>/<metric>": value}` (empty on other processes). With sharded parameters
    (FSDP, ZeRO-3) every process runs them, since each forward gathers parameters from all.

    Example:
        Inside `train`, with the prepared model::

            run_evaluators(accelerator, model, [("zero", lambda m, s: {"v": 0.0})], step=10)
            # {'eval/zero/v': 0.0}
    """
    metrics = {}
    if evaluators and (accelerator.is_main_process or params_sharded(accelerator)):
        unwrapped = accelerator.unwrap_model(model)
        was_training = unwrapped.training
        unwrapped.eval()
        try:
            with preserved_rng(accelerator.device), torch.no_grad(), accelerator.autocast():
                for name, evaluate in evaluators:
                    for key, value in evaluate(unwrapped, step).items():
                        metrics[f"eval/{name}/{key}"] = float(value)
        finally:
            unwrapped.train(was_training)
    accelerator.wait_for_everyone()
    return metrics if accelerator.is_main_process else {}


# ---------------------------------------------------------------------------------------------
# Output


def greedy_generation_config(tokenizer):
    """The `GenerationConfig` saved with a model: greedy, the tokenizer's special ids, and no
    length. A saved `max_new_tokens` would override a caller's `max_length` (lm-eval's
    generate_until asks for `max_length`), so the length is always the caller's to give.

    Example:
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> greedy_generation_config(build_arith_tokenizer()).max_new_tokens is None
        True
    """
    special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
               "pad_token_id": tokenizer.pad_token_id}
    return GenerationConfig(do_sample=False, **{k: v for k, v in special.items() if v is not None})


def chosen_config(evaluators, metrics: dict) -> dict:
    """The config values that `metrics` (from `run_evaluators`) hold for evaluators that choose one
    (`evaluate.sets_config`, e.g. the Abacus inference offset), as `{field: value}`.

    Example:
        >>> def calibrate(model, step): ...
        >>> calibrate.sets_config = {"abacus_eval_offset": "offset"}
        >>> chosen_config([("abacus_eval_offset", calibrate)], {"eval/abacus_eval_offset/offset": 3.0})
        {'abacus_eval_offset': 3}
    """
    chosen = {}
    for name, evaluate in evaluators:
        for config_field, metric in getattr(evaluate, "sets_config", {}).items():
            value = metrics.get(f"eval/{name}/{metric}")
            if value is not None:
                chosen[config_field] = int(value) if float(value).is_integer() else value
    return chosen


def save_final(accelerator, model, tokenizer, recipe: Recipe, output_dir: Path, config_updates: dict | None = None
               ) -> Path:
    """`output_dir/final`: `save_pretrained` (safetensors) of the unwrapped model with
    `config_updates` (what in-loop evaluators chose, `chosen_config`) in its config, the tokenizer,
    a greedy `GenerationConfig` with the tokenizer's special ids, and `recipe.yaml`. Written to a
    temporary folder first, then renamed, so that a run killed at any moment leaves the previous
    `final/` or none, never a half one; a failed write (disk full, read-only) is an `HfArithError`.

    Example:
        At the end of `train`::

            save_final(accelerator, model, tokenizer, recipe, Path("runs/x"))  # Path("runs/x/final")
    """
    final, tmp, old = output_dir / "final", output_dir / ".final.tmp", output_dir / ".final.old"
    accelerator.wait_for_everyone()
    state_dict = full_state_dict(accelerator, model)  # gathered from the shards under FSDP / ZeRO-3
    if accelerator.is_main_process:
        unwrapped = unsharded(accelerator.unwrap_model(model))
        unwrapped.generation_config = greedy_generation_config(tokenizer)
        for config_field, value in (config_updates or {}).items():  # what the evaluators chose
            setattr(unwrapped.config, config_field, value)
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            unwrapped.save_pretrained(tmp, state_dict=state_dict)
            # Decoder-only: batched generation pads before the prompt (a text tokenizer may say right).
            tokenizer.padding_side = "left"
            tokenizer.save_pretrained(tmp)
            save_recipe(recipe, tmp / "recipe.yaml")
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
            os.replace(tmp, final)
        except WRITE_ERRORS as err:
            shutil.rmtree(tmp, ignore_errors=True)
            kept = "the previous final/ is intact" if final.exists() else "the checkpoints are intact"
            raise HfArithError(f"could not write the final model {final}: {write_error_text(err, output_dir)}; "
                               f"{kept}. Free some space or make {output_dir} writable, then rerun with "
                               f"--resume latest to write it") from None
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# ---------------------------------------------------------------------------------------------
# The loop


def train(recipe: Recipe, resume: str | os.PathLike | None = None) -> Path:
    """Trains the recipe's model and returns `output_dir/final` (a `from_pretrained` folder).

    `resume`: `"latest"` or a checkpoint folder; restores model, optimizer, scheduler, RNG states
    and the step, so the run continues exactly as if it had not stopped. Also writes
    `output_dir/{recipe.yaml, metrics.jsonl, loss.png, checkpoints/, tensorboard/}`.

    What can go wrong is an `HfArithError` saying what to do: an output folder that cannot be
    written or is too small for a checkpoint (before training), a failed save (the previous
    checkpoint stays), more than `train.max_consecutive_nonfinite` non-finite steps in a row
    (nothing of the diverged state is saved).

    SIGTERM (what Slurm, Kubernetes and spot instances send before a kill) and SIGINT (Ctrl-C)
    finish the current step, save a checkpoint of it on every process and raise `TrainingStopped`
    (`preemption.py`); `resume="latest"` then continues exactly. The previous signal handlers are
    restored when `train` returns or raises.

    Example:
        Continue an interrupted run from its newest checkpoint, exactly::

            final = train(load_recipe("recipes/abacus/addition_cpu.yaml"), resume="latest")
    """
    accelerator = make_accelerator(recipe)
    checkpoint = _checkpoint_to_resume(Path(recipe.output_dir), resume)
    run = _build(recipe, accelerator)
    state = _start(run, checkpoint)
    policy = CheckpointPolicy(accelerator, recipe, run.model, run.optimizer, resumed=checkpoint, step=state.step)
    bar = _progress_bar(run, state)

    run.model.train()
    # From here a stop signal waits for the end of the current step (and is ignored once the loop
    # is done: writing final/ is then the quickest way out).
    with StopSignals() as signals:
        preempted = _train_steps(run, state, policy, bar, signals)
        bar.close()
        if preempted:
            # Agreed over the processes, so before end_training.
            stopped = _stopped(run, policy, state.step, signals.signum)
            accelerator.end_training()
            raise stopped

        if not weights_finite(accelerator, run.model):
            raise _diverged(recipe, [state.step], policy.unconfirmed, weights=True)
        policy.at_end(state)
        final = save_final(accelerator, run.model, run.tokenizer, recipe, run.out, state.config_updates)
        if accelerator.is_main_process:
            plot_loss(run.metrics_path, run.out / "loss.png")
    accelerator.end_training()
    return final


def _train_steps(run: _Run, state: TrainState, policy: CheckpointPolicy, bar, signals: StopSignals) -> bool:
    """Optimizer steps with their logs, evaluations and checkpoints until `train.max_steps`, the
    time budget, or a stop signal; returns whether a signal stopped it (after saving its step, unless
    the weights were not finite).
    Raises `HfArithError` when training diverges."""
    recipe, accelerator, budget_s = run.recipe, run.accelerator, run.budget_s
    t = recipe.train
    nonfinite: list[int] = []  # the current run of steps with a non-finite loss or gradient norm
    while state.step < t.max_steps:
        update = _optimizer_step(run, state)
        # Steps are named as in metrics.jsonl: step N is the N-th update (`state.step` after it).
        nonfinite = nonfinite + [state.step] if update.skipped else []
        if update.skipped:
            logger.warning(f"step {state.step}: non-finite loss {update.objective} or gradient norm {update.grad_norm}; "
                           f"update skipped ({state.skipped_steps} so far, {len(nonfinite)} in a row)")
        bar.update(1 if run.clock is None else min(update.elapsed_s, max(0.0, budget_s - bar.n)))  # by time: seconds

        done = state.step == t.max_steps
        out_of_time = budget_s is not None and any_process(accelerator, state.elapsed_s > budget_s)
        stopping = done or out_of_time
        # Processes may get the signal at different steps: all stop at the first step any saw it.
        preempted = not done and any_process(accelerator, signals.signum is not None)
        diverged = len(nonfinite) > t.max_consecutive_nonfinite
        if state.step % t.log_every == 0 or stopping or diverged:
            _log_progress(run, state, update, bar)
        if diverged:
            raise _diverged(recipe, nonfinite, policy.unconfirmed)
        if preempted:
            logger.info(f"{signals.name or 'a stop signal (on another process)'}: stopping after step {state.step}, "
                        f"saving a checkpoint first")
        # Evaluate before saving: every record up to a checkpoint's step is then in metrics.jsonl
        # before the checkpoint exists, and a resumed run neither repeats nor misses one.
        if run.evaluators and ((t.eval_every and state.step % t.eval_every == 0) or (stopping and recipe.eval.at_end)):
            _evaluate(run, state)
        policy.after_step(state, update.skipped, stopping=stopping, preempted=preempted)
        if preempted:
            return True
        if out_of_time and not done:
            _log_budget_reached(run, state.step)
            break
    return False


@dataclass
class _Run:
    """What `train` builds before the first step and uses unchanged to the last. What changes from
    step to step is the `TrainState` (which a checkpoint keeps) and the `CheckpointPolicy`."""

    recipe: Recipe
    accelerator: Accelerator
    tokenizer: PreTrainedTokenizerBase
    source: Source  # the examples of global indices; `sources.build_source`
    model: torch.nn.Module  # as Accelerate prepared it (wrapped for DDP, FSDP, DeepSpeed)
    forward: torch.nn.Module  # the training forward: the model, or `torch.compile` of it
    optimizer: torch.optim.Optimizer
    scheduler: AcceleratedScheduler
    schedule: BatchSchedule
    clock: BudgetClock | None  # set when the schedules follow wall-clock time (`train.schedule_clock: time`)
    evaluators: list[tuple[str, Evaluator]]
    # HF_ARITH_TRACE_DATA=DIR: each process appends the examples it trains at each step to
    # DIR/rank<r>.jsonl, to check the data order across world sizes and resumes.
    trace_dir: str | None

    @property
    def out(self) -> Path:
        return Path(self.recipe.output_dir)

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def budget_s(self) -> float | None:
        """`train.time_budget_minutes` in seconds; None without a budget."""
        minutes = self.recipe.train.time_budget_minutes
        return minutes * 60 if minutes else None


@dataclass
class _Update:
    """What one optimizer step tells the loop, the log and the progress bar."""

    objective: float  # the loss trained on: the model's loss plus the z-loss term
    skipped: bool  # the update was skipped: the loss or the gradient norm was not finite
    lr: float  # the learning rate the step used
    grad_norm: float  # before clipping; NaN where the backend gives none
    batch_size: int  # examples in the global batch
    elapsed_s: float  # wall-clock seconds of the step


def _checkpoint_to_resume(out: Path, resume: str | os.PathLike | None) -> Path | None:
    """The checkpoint `resume` names (`checkpoints.find_checkpoint`), or None for a new run; a new
    run in a folder that holds checkpoints is an `HfArithError` (it would mix two runs)."""
    checkpoint = find_checkpoint(out, resume)
    if checkpoint is None and list_checkpoints(out):
        raise HfArithError(f"{out} already holds checkpoints of a run; pass --resume latest to continue it, "
                           f"or choose another --output-dir")
    return checkpoint


def _build(recipe: Recipe, accelerator) -> _Run:
    """Everything the run needs, built in a fixed order after seeding (so the model's init and the
    data are the same on every run): tokenizer, data source, model, optimizer and schedules
    (prepared by Accelerate), evaluators, batch schedule. Raises `HfArithError` when the output
    folder cannot be written or has no room for a checkpoint of this model, `RecipeError` when the
    first global batch is smaller than the number of processes."""
    t, out = recipe.train, Path(recipe.output_dir)
    set_seed(recipe.seed)
    tokenizer = build_tokenizer(recipe.data)
    source = build_source(recipe.data, recipe.seed, tokenizer)
    with model_init_context(accelerator):  # ZeRO-3 may build it partitioned
        model = build_model(recipe.model, tokenizer)
    num_parameters = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    _check_output_dir(accelerator, out, checkpoint_bytes(num_parameters, checkpoints=1 if t.save_every else 0))
    if t.gradient_checkpointing:
        enable_activation_checkpointing(model)
    clock = BudgetClock(t.time_budget_minutes) if t.schedule_clock == "time" else None
    model, optimizer, scheduler = prepare(accelerator, model, t, clock)
    # Only the training forward is compiled; evaluation and generation call the plain module.
    forward = torch.compile(model) if t.compile else model
    evaluators = build_evaluators(recipe, tokenizer)
    schedule = BatchSchedule.from_spec(t, recipe.data.sequence_length)
    if math.ceil(schedule.size(0) / t.micro_batch_size) < accelerator.num_processes:
        raise RecipeError(f"the first global batch ({schedule.size(0)} examples) makes fewer micro-batches of "
                          f"train.micro_batch_size={t.micro_batch_size} than the {accelerator.num_processes} "
                          f"processes; lower train.micro_batch_size to at most "
                          f"{max(1, schedule.size(0) // accelerator.num_processes)} (or raise the global batch)")
    return _Run(recipe, accelerator, tokenizer, source, model, forward, optimizer, scheduler, schedule, clock,
                evaluators, trace_dir=os.environ.get("HF_ARITH_TRACE_DATA"))


def _start(run: _Run, checkpoint: Path | None) -> TrainState:
    """The run's state before its first step: restored from `checkpoint` (model, optimizer, scheduler
    and RNG states, `TrainState`) or fresh. Writes `recipe.yaml`, cuts `metrics.jsonl` back to the
    resumed step, saves the data order (text data) and starts the trackers. Raises `HfArithError`
    when `checkpoint` belongs to another recipe or cannot be loaded."""
    recipe, accelerator, out = run.recipe, run.accelerator, run.out
    main = accelerator.is_main_process
    state = TrainState()
    if checkpoint is not None:
        check_resumable(checkpoint, recipe)
        state = load_checkpoint(accelerator, checkpoint, run.model, run.optimizer, run.scheduler)
        logger.info(f"resumed from {checkpoint} at step {state.step}")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, out / "recipe.yaml")
        truncate_metrics(run.metrics_path, state.step)
    if run.clock is not None:  # the schedules continue from the time the run has already trained
        run.clock.set(_slowest(accelerator, state.elapsed_s))
    if hasattr(run.source, "save_order"):  # text data: the run keeps its data order (`hf-arith data inspect`)
        run.source.save_order(out, run.schedule.offset(recipe.train.max_steps), write=main)
    if recipe.train.report_to:
        accelerator.init_trackers("tensorboard", config=_flat_config(recipe))
    # The sums the next metrics.jsonl record averages; a resumed run continues its checkpoint's.
    empty = {"loss": 0.0, "z_loss": 0.0, "finite": 0, "steps": 0, "examples": 0, "tokens": 0, "padded": 0, "time": 0.0}
    state.log_window = {**empty, **state.log_window}
    return state


def _progress_bar(run: _Run, state: TrainState):
    """The tqdm bar of the main process (disabled elsewhere, or by `train.progress_bar: false`)."""
    t = run.recipe.train
    # By time, the bar counts seconds of the budget: the steps it will take are not known ahead.
    total, initial = (t.max_steps, state.step) if run.clock is None else (round(run.budget_s), round(state.elapsed_s))
    # The time bar advances by fractional seconds: show whole ones.
    by_time = None if run.clock is None else "{l_bar}{bar}| {n:.0f}/{total_fmt}s [{elapsed}<{remaining}{postfix}]"
    return tqdm(total=total, initial=initial, disable=not (run.accelerator.is_main_process and t.progress_bar),
                desc="train", unit="it" if run.clock is None else "s", dynamic_ncols=True, bar_format=by_time)


def _optimizer_step(run: _Run, state: TrainState) -> _Update:
    """One optimizer step on the next global batch: forward and backward (`train_step`), clipping,
    the update (skipped when the loss or the gradient norm is not finite), the schedules. Advances
    `state` and its log window."""
    accelerator = run.accelerator
    started = time.perf_counter()
    start, stop = _global_batch(run, state)
    batches = _local_batches(run, state.step, start, stop)
    limit = clip_value(state.step, run.recipe.train)
    set_deepspeed_clipping(accelerator, run.model, limit)  # DeepSpeed clips inside its step, in train_step
    stats = train_step(accelerator, run.model, run.forward, batches, run.recipe, state.step)
    grad_norm = _clip_gradients(accelerator, run.model, limit)
    lr = run.scheduler.get_last_lr()[0]
    objective = stats["loss"] + stats["z_loss"]
    skipped = _step_unless_nonfinite(run, objective, grad_norm)
    if skipped:
        state.skipped_steps += 1
    if run.clock is not None:  # the next step's learning rate and batch follow the budget spent so far
        run.clock.set(_slowest(accelerator, state.elapsed_s + time.perf_counter() - started))
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)

    state.step += 1
    state.examples += stop - start
    state.tokens += int(stats["tokens"])
    elapsed = time.perf_counter() - started
    state.elapsed_s += elapsed
    window = state.log_window
    window["steps"] += 1
    window["examples"] += stop - start
    window["tokens"] += stats["tokens"]
    window["padded"] += stats["padded_tokens"]
    window["time"] += elapsed
    if math.isfinite(objective):
        window["loss"] += stats["loss"]
        window["z_loss"] += stats["z_loss"]
        window["finite"] += 1
    return _Update(objective=objective, skipped=skipped, lr=lr, grad_norm=grad_norm, batch_size=stop - start,
                   elapsed_s=elapsed)


def _global_batch(run: _Run, state: TrainState) -> tuple[int, int]:
    """The global example indices `[start, stop)` of the next step."""
    if run.clock is None:
        return run.schedule.span(state.step)
    # By time, the batch follows the budget spent, and the data position is what was trained.
    return state.examples, state.examples + run.schedule.size_at(run.clock.fraction, run.recipe.train.batch_ramp)


def _local_batches(run: _Run, step: int, start: int, stop: int) -> list[tuple[int, dict]]:
    """This process's micro-batches of the global examples `[start, stop)`, as `(global micro-batch
    index, collated batch)`. The global batch is cut into micro-batches of `train.micro_batch_size`
    (sorted by length first with `data.bucket_by_length`) independently of the number of
    processes, and each process takes a contiguous block of them, so micro-batch j holds the same
    examples on any launch."""
    accelerator, source, t = run.accelerator, run.source, run.recipe.train
    count = math.ceil((stop - start) / t.micro_batch_size)
    first, last = process_share(0, count, accelerator.process_index, accelerator.num_processes)
    if params_sharded(accelerator) and count % accelerator.num_processes:
        # Each forward gathers parameters from every process: all must run as many.
        raise RecipeError(f"step {step + 1}: the global batch of {stop - start} examples makes {count} micro-batches "
                          f"of train.micro_batch_size={t.micro_batch_size}, which {accelerator.num_processes} "
                          f"processes with sharded parameters cannot split evenly; choose a micro-batch size that "
                          f"divides the global batch into a multiple of {accelerator.num_processes} micro-batches")
    if run.recipe.data.bucket_by_length:  # lengths of the whole global batch decide the micro-batches
        groups = micro_batches(source.examples(start, stop), t.micro_batch_size, source.length)[first:last]
    else:  # contiguous: read only this process's examples
        lo, hi = start + first * t.micro_batch_size, min(stop, start + last * t.micro_batch_size)
        groups = micro_batches(source.examples(lo, hi), t.micro_batch_size)
    if run.trace_dir:
        _trace(run.trace_dir, accelerator.process_index, step, first, last, [row for g in groups for row in g])
    return [(first + i, source.collate(rows)) for i, rows in enumerate(groups)]


def _clip_gradients(accelerator, model, limit: float | None) -> float:
    """Clips the gradients to the norm `limit` (None: no clipping); returns their norm before
    clipping, NaN where the backend gives none."""
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), limit if limit else math.inf)
    if hasattr(grad_norm, "full_tensor"):  # a DTensor under FSDP2
        grad_norm = grad_norm.full_tensor()
    return float(grad_norm) if grad_norm is not None else math.nan


def _step_unless_nonfinite(run: _Run, loss: float, grad_norm: float) -> bool:
    """Steps the optimizer unless the loss or the gradient norm is not finite; returns whether the
    update was skipped."""
    if run.recipe.train.mixed_precision == "fp16" or steps_in_backward(run.accelerator):
        # The gradient scaler skips non-finite steps itself and must see them to lower its scale;
        # DeepSpeed has stepped (or skipped) already, in the last micro-batch's backward.
        run.optimizer.step()
        return run.accelerator.optimizer_step_was_skipped
    if math.isfinite(loss) and math.isfinite(grad_norm):
        run.optimizer.step()
        return False
    return True


def _log(run: _Run, record: dict) -> None:
    """Appends `record` to `metrics.jsonl` (main process) and sends it to the trackers at `record["step"]`."""
    if run.accelerator.is_main_process:
        with run.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
    run.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])


def _log_progress(run: _Run, state: TrainState, update: _Update, bar) -> None:
    """Logs the averages of the window (to `metrics.jsonl`, the trackers, the bar, or the log
    without a bar) and opens the next window."""
    t, window = run.recipe.train, state.log_window

    def mean(key: str) -> float:
        return window[key] / window["finite"] if window["finite"] else math.nan

    # `loss` is the model's cross-entropy, comparable across runs; the z-loss term has its own column.
    record = {
        "step": state.step,
        "loss": mean("loss"),
        **({"z_loss": mean("z_loss")} if t.z_loss else {}),
        "lr": update.lr,
        "grad_norm": update.grad_norm,
        "batch_size": update.batch_size,
        "examples_per_s": window["examples"] / max(window["time"], 1e-9),
        "tokens_per_s": window["tokens"] / max(window["time"], 1e-9),
        "padding": 1.0 - window["tokens"] / max(window["padded"], 1),
        "examples": state.examples,
        "skipped_steps": state.skipped_steps,
        "elapsed_s": round(state.elapsed_s, 3),
    }
    _log(run, record)
    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{update.lr:.2e}", ex_s=f"{record['examples_per_s']:.0f}")
    if not t.progress_bar:
        logger.info(f"step {state.step}/{t.max_steps} loss {record['loss']:.4f} lr {update.lr:.2e} "
                    f"grad_norm {update.grad_norm:.3f} {record['examples_per_s']:.0f} examples/s")
    state.log_window = dict.fromkeys(window, 0)


def _evaluate(run: _Run, state: TrainState) -> None:
    """Runs the evaluators at `state.step`, logs their metrics and keeps the config values they chose."""
    metrics = run_evaluators(run.accelerator, run.model, run.evaluators, state.step)
    _log(run, {"step": state.step, **metrics})
    state.config_updates.update(chosen_config(run.evaluators, metrics))


def _log_budget_reached(run: _Run, step: int) -> None:
    t = run.recipe.train
    if run.clock is None:
        logger.warning(f"time budget of {t.time_budget_minutes} min reached at step {step}/"
                       f"{t.max_steps}; stopping early (the learning-rate schedule assumed {t.max_steps} steps)")
    else:
        logger.info(f"time budget of {t.time_budget_minutes} min reached at step {step}: "
                    f"the schedule by time is complete")


def _slowest(accelerator, seconds: float) -> float:
    """The largest of every process's `seconds`: schedules by time must agree across processes."""
    return _largest(accelerator, seconds)


def _largest(accelerator, value: float) -> float:
    """The largest of every process's `value` (all processes must call it)."""
    if accelerator.num_processes == 1:
        return value
    return float(accelerator.gather(torch.tensor([value], dtype=torch.float64, device=accelerator.device)).max())


def _stopped(run: _Run, policy: CheckpointPolicy, step: int, signum: int | None) -> TrainingStopped:
    """What ends a run stopped by a signal after `step`, the same on every process: the step, its
    checkpoint (none if the state was not finite) and the signal (SIGTERM where some process got it,
    which is what schedulers send, else SIGINT)."""
    signum = int(_largest(run.accelerator, float(signum or 0))) or signal.SIGTERM
    return TrainingStopped(signum, step, policy.saved_at(step), newest=latest_checkpoint(run.out))


def _trace(trace_dir: str, rank: int, step: int, first: int, last: int, examples: list[dict]) -> None:
    """One line of the data trace: the step, this process's micro-batches `[first, last)` and the
    instance indices of their examples."""
    Path(trace_dir).mkdir(parents=True, exist_ok=True)
    record = {"step": step, "micro_batches": [first, last], "instances": [e.get("index") for e in examples]}
    with open(Path(trace_dir) / f"rank{rank}.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _check_output_dir(accelerator, out: Path, needed_bytes: int) -> None:
    """`checkpoints.check_output_dir` on the main process; every process raises if it fails."""
    error = None
    if accelerator.is_main_process:
        try:
            check_output_dir(out, needed_bytes)
        except HfArithError as err:
            error = err
    if any_process(accelerator, error is not None):
        raise error or HfArithError(f"the output folder {out} cannot be used; see the main process's error")


def _diverged(recipe: Recipe, steps: list[int], unconfirmed: bool, weights: bool = False) -> HfArithError:
    """The error that stops a diverged run: what happened, where, what was kept, what to change.
    `unconfirmed`: no finite step has run from the newest checkpoint, so the one before is the good one."""
    t = recipe.train
    what = (f"the weights are no longer finite after step {steps[-1]}" if weights else
            f"{len(steps)} steps in a row ({steps[0]}..{steps[-1]}) had a non-finite loss or gradient norm, more "
            f"than train.max_consecutive_nonfinite={t.max_consecutive_nonfinite}; their updates were skipped")
    latest = latest_checkpoint(recipe.output_dir)
    checkpoints = list_checkpoints(recipe.output_dir)
    earlier = checkpoints[:checkpoints.index(latest)] if latest in checkpoints else []
    if latest is None:
        kept, then = "no checkpoint was saved", "train again"
    elif not unconfirmed:
        kept, then = f"nothing was saved after {latest.name}, which is intact", f"continue with --resume {latest}"
    elif earlier:
        kept = (f"nothing was saved after {latest.name}, and already the first step from it was not finite, so "
                f"{earlier[-1].name}, before it, is the last good checkpoint")
        then = f"continue with --resume {earlier[-1]}"
    else:
        kept = f"nothing was saved after {latest.name}, and already the first step from it was not finite"
        then = f"continue with --resume {latest}, or train again in a new --output-dir if that fails at once"
    fixes = [f"lower train.lr (now {t.lr:g})"]
    if not t.grad_clip:
        fixes.append("set train.grad_clip (e.g. 1.0)")
    if t.mixed_precision == "fp16":
        fixes.append("use train.mixed_precision=bf16 instead of fp16")
    fixes.append(f"lengthen train.warmup (now {t.warmup})")
    return HfArithError(f"training diverged: {what}; {kept}. To fix: {', '.join(fixes)}; then {then}")


__all__ = ["build_model", "keyed_rng", "make_accelerator", "plot_loss", "read_metrics", "run_evaluators", "save_final",
           "step_inputs", "train", "train_step"]
