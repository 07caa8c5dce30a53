"""Training recipes: YAML files validated into dataclasses.

A recipe says everything a run needs: the model, the data, the optimizer and schedule, how often
to save, log and evaluate. `load_recipe` reads the YAML, applies `key.sub=value` overrides
(values parsed as YAML), checks every key and type, and returns a `Recipe`. Unknown keys are
errors at every level (a typo must never silently fall back on a default). `save_recipe` writes
the resolved recipe, which every run keeps next to its checkpoints and final model.

Example:
    >>> recipe = load_recipe("recipes/abacus/addition_cpu.yaml", ["train.lr=3e-4", "seed=1"])
    >>> recipe.train.lr, recipe.model.arch, recipe.data.task
    (0.0003, 'abacus', 'addition')
    >>> import tempfile
    >>> path = save_recipe(recipe, f"{tempfile.mkdtemp()}/recipe.yaml")
    >>> load_recipe(path) == recipe
    True
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from hf_arith.atomic import write_text_atomically
from hf_arith.data.specs import (
    DataSpec,
    DocumentsSpec,
    LanguageFilterSpec,
    PiiSpec,
    PrepareSpec,
    QualityFilterSpec,
    TextSourceSpec,
    check_prepare,
)
from hf_arith.dataclass_yaml import allowed_keys, apply_overrides, build, load_yaml, parse_override
from hf_arith.errors import RecipeError

from .models import ModelSpec, check_model_config

logger = logging.getLogger("hf_arith.training")


@dataclass
class BatchWarmupSpec:
    """OLMo's batch-size warmup: the global batch starts at `start` examples and doubles every
    `double_every_tokens` tokens (counted as examples × `data.sequence_length`) until it reaches
    `train.global_batch_size`.

    OLMo (Groeneveld et al. 2024) uses it for its 65B run; the 1B and 7B configs that
    `recipes/olmo/` follow (allenai/OLMo v0.2.4) train at a fixed batch, so no shipped recipe
    sets it. The data position does not depend on the batch size (`optim.BatchSchedule`).

    Example:
        >>> BatchWarmupSpec(start=1024, double_every_tokens=50_000_000_000).start
        1024
    """

    start: int
    double_every_tokens: int


@dataclass
class ClipWarmupSpec:
    """A different gradient-clipping limit for the first `steps` optimizer steps (OLMo 7B: 10.0
    for 1000 steps, then `train.grad_clip`).

    Example:
        >>> ClipWarmupSpec(steps=1000, value=10.0).value
        10.0
    """

    steps: int
    value: float


@dataclass
class TrainSpec:
    """The optimization loop. A "step" is one optimizer update; a global batch is the examples of
    one step, over all processes and micro-batches.

    Fields:
        max_steps: optimizer steps of the run; schedules are functions of the step.
        micro_batch_size: examples per forward/backward on one process (memory bound).
        global_batch_size: examples per step (after any ramp or warmup). Independent of the number
            of processes: each process takes a contiguous share and accumulates micro-batches.
        batch_ramp: the paper's ramp: over the first `batch_ramp` fraction of `max_steps` the global
            batch grows linearly from `micro_batch_size` to `global_batch_size` (rounded down to a
            multiple of `micro_batch_size`). 0 = no ramp.
        batch_warmup: OLMo's doubling warmup (`start`, `double_every_tokens`; the paper's 65B run,
            not its 1B/7B configs); exclusive with `batch_ramp`.
        lr: peak learning rate.
        betas, eps, weight_decay: AdamW. Weight decay applies only to `nn.Linear` weights.
        decay_embeddings: decay everything but biases and norms instead, embeddings, the Abacus
            table and FIRE included (the Abacus reference code does; `optim.param_groups`).
        schedule: learning-rate multiplier after warmup: `constant`; `wcc` (the paper's
            warmup-constant-cooldown: linear cooldown over the last `cooldown` steps);
            `linear` or `cosine` decay to `final_lr_ratio` at `max_steps`.
        warmup: warmup length: an int is steps, a float a fraction of `max_steps` (0.1 = 10%).
        cooldown: `wcc` only; steps (int) or fraction (float), down to `final_lr_ratio`.
        schedule_clock: what `warmup`, `cooldown` and `batch_ramp` are measured in: `steps` (of
            `max_steps`), or `time`: fractions of `time_budget_minutes` of training time (summed over
            resumes), as the Abacus reference schedules its fixed-budget runs, so a run cut by its
            budget has cooled down; `max_steps` then only caps the run.
        final_lr_ratio: multiplier the decay/cooldown ends at (OLMo: 0.1).
        warmup_start_ratio: multiplier warmup starts from (OLMo: 0.1; the paper: 0).
        grad_clip: clip the total gradient L2 norm to this; null or 0 = no clipping.
        grad_clip_warmup: a different limit for the first steps (`steps`, `value`).
        max_consecutive_nonfinite: a step whose loss or gradient norm is not finite is skipped (no
            update), counted (`skipped_steps` in `metrics.jsonl`) and logged; more than this many
            in a row stop the run with an error saying what to change, keeping the last checkpoint
            saved before them (none is saved during such a streak). fp16's gradient scaler skips a
            few steps at the start while it finds its scale, hence the margin. 0 stops at the first.
        mixed_precision: `no`, `bf16` or `fp16` autocast (weights and optimizer stay fp32).
        z_loss: coefficient of the z-loss `mean(logsumexp(logits)^2)` over label tokens (OLMo: 1e-4),
            added to the objective; `metrics.jsonl` logs it (times the coefficient) as `z_loss`, apart
            from `loss`, the cross-entropy.
        compile: `torch.compile` the model.
        gradient_checkpointing: recompute activations in the backward pass to save memory.
        save_every: write a resumable checkpoint every N steps (and at the end); 0 = never.
        keep_last: checkpoints kept on disk (older ones are deleted).
        log_every: log averaged metrics every N steps.
        eval_every: run the `eval.evaluators` every N steps; 0 = never in the loop.
        time_budget_minutes: stop early (with a warning, a checkpoint and the final save) once the
            run's training time, summed over resumes, exceeds this. Schedules still count to
            `max_steps`, so a stop before it skips the end of the schedule.
        report_to: Accelerate trackers (`tensorboard`, `wandb`, ...); [] for none. `metrics.jsonl`
            is always written.
        progress_bar: tqdm progress bar on the main process.

    Example:
        >>> TrainSpec(max_steps=100, schedule="wcc", warmup=0.1, cooldown=0.1).schedule
        'wcc'
    """

    max_steps: int = 1000
    micro_batch_size: int = 64
    global_batch_size: int = 64
    batch_ramp: float = 0.0
    batch_warmup: BatchWarmupSpec | None = None
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.01
    decay_embeddings: bool = False
    schedule: Literal["constant", "wcc", "linear", "cosine"] = "constant"
    warmup: int | float = 0
    cooldown: int | float = 0
    schedule_clock: Literal["steps", "time"] = "steps"
    final_lr_ratio: float = 0.0
    warmup_start_ratio: float = 0.0
    grad_clip: float | None = 1.0
    grad_clip_warmup: ClipWarmupSpec | None = None
    max_consecutive_nonfinite: int = 20
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    z_loss: float = 0.0
    compile: bool = False
    gradient_checkpointing: bool = False
    save_every: int = 0
    keep_last: int = 3
    log_every: int = 10
    eval_every: int = 0
    time_budget_minutes: float | None = None
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])
    progress_bar: bool = True


@dataclass
class EvaluatorSpec:
    """One in-loop evaluator: `name` from the evaluator registry
    (`hf_arith.training.evaluators.EVALUATORS`) and its keyword `args`.

    Example:
        >>> EvaluatorSpec("arith_grid", {"lengths": "1-12", "samples": 10}).name
        'arith_grid'
    """

    name: str
    args: dict = field(default_factory=dict)


@dataclass
class EvalSpec:
    """In-loop evaluation.

    Fields:
        evaluators: run every `train.eval_every` steps, each a `{name, args}` mapping.
        at_end: also run them after the last step.

    Example:
        >>> EvalSpec([EvaluatorSpec("arith_grid")]).at_end
        True
    """

    evaluators: list[EvaluatorSpec] = field(default_factory=list)
    at_end: bool = True


@dataclass
class Recipe:
    """A whole training run.

    Fields:
        seed: seeds model initialisation, the data (example i of an arithmetic run is a pure
            function of seed and i) and every random draw in training.
        output_dir: where checkpoints, logs, metrics and `final/` go; default `runs/<recipe name>`.
        model, data, train, eval: see `ModelSpec`, `DataSpec`, `TrainSpec`, `EvalSpec`.

    Example:
        >>> Recipe(seed=1).train.max_steps
        1000
    """

    seed: int = 0
    output_dir: str | None = None
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)


# ---------------------------------------------------------------------------------------------
# Loading and validation


def recipe_from_dict(raw: dict, name: str = "run") -> Recipe:
    """A validated `Recipe` from a plain mapping (what the YAML holds). `name` gives the default
    `output_dir` (`runs/<name>`).

    Example:
        >>> recipe_from_dict({"train": {"max_steps": 10}}, name="demo").output_dir
        'runs/demo'
    """
    recipe = build(Recipe, raw, "")
    if recipe.output_dir is None:
        recipe.output_dir = str(Path("runs") / name)
    check_recipe(recipe)
    return recipe


def load_recipe(path: str | os.PathLike, overrides=()) -> Recipe:
    """Reads a YAML recipe, applies `overrides` (`"key.sub=value"` strings, values parsed as YAML)
    and validates it. Every problem is a `RecipeError` that names the key and what is allowed.

    Example:
        >>> recipe = load_recipe("recipes/abacus/addition_cpu.yaml", ["train.max_steps=50"])
        >>> recipe.train.max_steps
        50
    """
    path = Path(path)
    if not path.is_file():
        hint = f"; recipes in this folder: {', '.join(sorted(p.name for p in path.parent.glob('*.yaml')))}" if (
            path.parent.is_dir() and any(path.parent.glob("*.yaml"))) else ""
        raise RecipeError(f"recipe file {str(path)!r} not found{hint}")
    try:
        raw = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{path}: not valid YAML{at}: {getattr(err, 'problem', err)}") from None
    if raw is None or raw == {}:  # every field has a default: an empty file would train a default model
        raise RecipeError(f"recipe file {str(path)!r} is empty (nothing but whitespace or comments); a recipe "
                          f"names at least model, data and train: start from one in recipes/, e.g. "
                          f"recipes/abacus/addition_cpu.yaml")
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with keys {allowed_keys(Recipe)}")
    recipe_steps = (raw.get("train") or {}).get("max_steps")
    apply_overrides(raw, overrides)
    _fit_schedule_to_shorter_run(raw, recipe_steps)
    return recipe_from_dict(raw, name=path.stem)


def _fit_schedule_to_shorter_run(raw: dict, recipe_steps) -> None:
    """A `--max-steps` shorter than the recipe's warmup + cooldown (in steps) is how people
    smoke-test a recipe: the two then keep their share of the recipe's own `max_steps`, and the
    log says so, instead of the run being refused."""
    train = raw.get("train") or {}
    max_steps = train.get("max_steps")
    steps = {name: train.get(name) for name in ("warmup", "cooldown") if type(train.get(name)) is int}
    if not (isinstance(recipe_steps, int) and isinstance(max_steps, int) and 0 < max_steps < recipe_steps):
        return
    fixed = sum(steps.values()) + sum(_steps(train.get(n), max_steps) for n in ("warmup", "cooldown")
                                        if isinstance(train.get(n), float))
    if fixed <= max_steps:
        return
    for name, value in steps.items():
        train[name] = value / recipe_steps
    warmup, cooldown = (_steps(train.get(n) or 0, max_steps) for n in ("warmup", "cooldown"))
    if warmup + cooldown > max_steps:  # both rounded up: the cooldown gives way
        train["cooldown"] = (max_steps - warmup) / max_steps
    for name, value in steps.items():
        scaled = _steps(train[name], max_steps)
        logger.warning(f"train.{name}: {value} of the recipe's {recipe_steps} steps do not fit max_steps={max_steps}; "
                       f"scaled to the same share, {scaled} step{'' if scaled == 1 else 's'}")


def _steps(value: int | float, max_steps: int) -> int:
    """Steps from an int (steps) or a float (fraction of `max_steps`)."""
    return int(value) if isinstance(value, int) else int(round(value * max_steps))


def check_recipe(recipe: Recipe) -> None:
    """Value checks that types alone cannot express; `RecipeError` naming the key.

    Example:
        >>> check_recipe(Recipe(train=TrainSpec(micro_batch_size=64, global_batch_size=32)))
        Traceback (most recent call last):
        hf_arith.errors.RecipeError: train.global_batch_size=32 is smaller than train.micro_batch_size=64; ...
    """
    t, d = recipe.train, recipe.data

    def need(ok: bool, message: str):
        if not ok:
            raise RecipeError(message)

    for name in ("max_steps", "micro_batch_size", "global_batch_size", "keep_last", "log_every"):
        need(getattr(t, name) >= 1, f"train.{name}={getattr(t, name)} must be at least 1")
    for name in ("save_every", "eval_every"):
        need(getattr(t, name) >= 0, f"train.{name}={getattr(t, name)} must be 0 (never) or positive")
    need(t.global_batch_size >= t.micro_batch_size,
         f"train.global_batch_size={t.global_batch_size} is smaller than train.micro_batch_size="
         f"{t.micro_batch_size}; raise the global batch or lower the micro batch")
    need(0.0 <= t.batch_ramp <= 1.0, f"train.batch_ramp={t.batch_ramp} must be a fraction in [0, 1]")
    need(not (t.batch_ramp and t.batch_warmup),
         "train.batch_ramp and train.batch_warmup both set; use one way of growing the batch")
    if t.batch_warmup is not None:
        w = t.batch_warmup
        need(1 <= w.start <= t.global_batch_size,
             f"train.batch_warmup.start={w.start} must be in [1, train.global_batch_size={t.global_batch_size}]")
        need(w.double_every_tokens >= 1, "train.batch_warmup.double_every_tokens must be positive")
        need(d.sequence_length is not None and d.sequence_length >= 1,
             "train.batch_warmup counts tokens; set data.sequence_length (tokens per example)")
    need(t.lr > 0, f"train.lr={t.lr} must be positive")
    need(all(0.0 <= b < 1.0 for b in t.betas), f"train.betas={list(t.betas)} must each be in [0, 1)")
    need(t.eps > 0 and t.weight_decay >= 0 and t.z_loss >= 0, "train.eps must be positive; weight_decay, z_loss >= 0")
    for name in ("final_lr_ratio", "warmup_start_ratio"):
        need(0.0 <= getattr(t, name) <= 1.0, f"train.{name}={getattr(t, name)} must be in [0, 1]")
    for name in ("warmup", "cooldown"):
        value = getattr(t, name)
        need(value >= 0 and (isinstance(value, int) or value <= 1.0),
             f"train.{name}={value!r}: give steps (an integer) or a fraction of max_steps in [0, 1]")
    need(t.schedule == "wcc" or not t.cooldown, f"train.cooldown is only used by schedule 'wcc', not {t.schedule!r}")
    if t.schedule_clock == "time":
        need(t.time_budget_minutes is not None,
             "train.schedule_clock=time schedules by the time budget; set train.time_budget_minutes")
        need(not (isinstance(t.warmup, int) and t.warmup) and not (isinstance(t.cooldown, int) and t.cooldown),
             "train.schedule_clock=time: give train.warmup and train.cooldown as fractions of the time budget "
             "(e.g. 0.1), not steps")
        need(t.batch_warmup is None, "train.batch_warmup counts tokens; with schedule_clock=time use train.batch_ramp")
        need(d.kind != "text", "train.schedule_clock=time is for arithmetic data (an endless stream); text runs "
                               "keep a data order sized by max_steps: schedule them by steps")
        need(t.warmup + t.cooldown <= 1.0, f"train.warmup + train.cooldown = {t.warmup + t.cooldown} exceed the budget")
    else:
        warmup, cooldown = _steps(t.warmup, t.max_steps), _steps(t.cooldown, t.max_steps)
        need(warmup + cooldown <= t.max_steps,
             f"train.warmup ({warmup} steps) + train.cooldown ({cooldown} steps) exceed train.max_steps={t.max_steps}")
    need(t.grad_clip is None or t.grad_clip >= 0, f"train.grad_clip={t.grad_clip} must be >= 0 (0/null: off)")
    if t.grad_clip_warmup is not None:
        need(t.grad_clip_warmup.steps >= 0 and t.grad_clip_warmup.value > 0,
             "train.grad_clip_warmup needs steps >= 0 and value > 0")
    need(t.time_budget_minutes is None or t.time_budget_minutes > 0, "train.time_budget_minutes must be positive")
    need(t.max_consecutive_nonfinite >= 0,
         f"train.max_consecutive_nonfinite={t.max_consecutive_nonfinite} must be 0 (stop at the first) or positive")
    if d.kind == "text":
        need(bool(d.path), "data.kind=text needs data.path (the folder `hf-arith data prepare` wrote)")
        need(bool(d.tokenizer), "data.kind=text needs data.tokenizer (a tokenizer folder or Hub id)")
    if d.prepare is not None:
        check_prepare(d)
    need(recipe.seed >= 0, f"seed={recipe.seed} must be non-negative")
    check_model_config(recipe.model)


# ---------------------------------------------------------------------------------------------
# Saving


def recipe_to_dict(recipe: Recipe) -> dict:
    """The recipe as plain YAML-safe data (tuples become lists).

    Example:
        >>> recipe_to_dict(Recipe())["train"]["betas"]
        [0.9, 0.98]
    """

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(recipe))


def save_recipe(recipe: Recipe, path: str | os.PathLike) -> Path:
    """Writes the resolved recipe (defaults and overrides applied) as YAML; `load_recipe` reads
    it back to an equal `Recipe`.

    Example:
        >>> import tempfile
        >>> save_recipe(load_recipe("recipes/abacus/addition_cpu.yaml"), f"{tempfile.mkdtemp()}/recipe.yaml").name
        'recipe.yaml'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, default_flow_style=None))
    return path


__all__ = [
    "BatchWarmupSpec",
    "ClipWarmupSpec",
    "DataSpec",
    "DocumentsSpec",
    "EvalSpec",
    "EvaluatorSpec",
    "LanguageFilterSpec",
    "ModelSpec",
    "PiiSpec",
    "PrepareSpec",
    "QualityFilterSpec",
    "Recipe",
    "TextSourceSpec",
    "TrainSpec",
    "apply_overrides",
    "check_recipe",
    "load_recipe",
    "parse_override",
    "recipe_from_dict",
    "recipe_to_dict",
    "save_recipe",
]
