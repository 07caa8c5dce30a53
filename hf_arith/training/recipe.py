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
    >>> save_recipe(recipe, "runs/x/recipe.yaml")
    PosixPath('runs/x/recipe.yaml')
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hf_arith.atomic import write_text_atomically
from hf_arith.errors import RecipeError

logger = logging.getLogger("hf_arith.training")


@dataclass
class ModelSpec:
    """What model to build.

    Fields:
        arch: `"abacus"` (`AbacusForCausalLM`), `"olmo"` (`ArithOlmoForCausalLM`) or `"llama"`
            (transformers' `LlamaForCausalLM`, a plain baseline).
        config: keyword arguments of the architecture's config class (`AbacusConfig`, ...), checked
            against its signature. `vocab_size`, the pad/bos/eos ids and (Abacus) `digit_token_ids`
            are filled in from the tokenizer unless given here.
        attn_implementation: `"sdpa"`, `"eager"`, ... or null for the transformers default.

    Example:
        >>> ModelSpec("abacus", {"hidden_size": 64, "num_hidden_layers": 2, "num_recurrences": 2}).arch
        'abacus'
    """

    arch: Literal["abacus", "olmo", "llama"] = "abacus"
    config: dict = field(default_factory=dict)
    attn_implementation: str | None = None


@dataclass
class DocumentsSpec:
    """A collection of text documents: local files or a Hub dataset.

    Fields:
        name: names the collection in the manifest, the metrics and the held-out files.
        paths: local files or glob patterns: `.txt`/`.md` (one document per file), `.jsonl`/`.json`
            (optionally `.gz`; one document per record) or `.parquet` (one per row); or `builtin`,
            `builtin:pydoc`, `builtin:docstrings` (text that ships with CPython, see
            `hf_arith.data.corpus`).
        hub: a Hub dataset id instead of `paths` (needs the network), with `hub_config` and `split`.
        text_field: the column or JSON key holding the text.

    Example:
        >>> DocumentsSpec("docs", paths=["corpus/*.jsonl"]).text_field
        'text'
    """

    name: str
    paths: list[str] = field(default_factory=list)
    hub: str | None = None
    hub_config: str | None = None
    split: str = "train"
    text_field: str = "text"


@dataclass
class TextSourceSpec(DocumentsSpec):
    """A training source: documents plus how much of them the mix takes.

    Fields (besides `DocumentsSpec`'s):
        weight: mixing weight, Dolma-style up/down-sampling of the cleaned documents: 2.0 takes every
            document twice, 0.5 a seeded half.
        heldout_fraction: this fraction of the cleaned documents (chosen by a seeded hash of the text)
            never reaches training and becomes the held-out set `<name>`.

    Example:
        >>> TextSourceSpec("pydoc", paths=["builtin:pydoc"], heldout_fraction=0.05).weight
        1.0
    """

    weight: float = 1.0
    heldout_fraction: float = 0.0


@dataclass
class LanguageFilterSpec:
    """Dolma's language filter: keep documents whose most likely language (py3langid, 97
    languages) is one of `languages` with probability at least `min_score`.

    Example:
        >>> LanguageFilterSpec().languages
        ['en']
    """

    languages: list[str] = field(default_factory=lambda: ["en"])
    min_score: float = 0.5


@dataclass
class QualityFilterSpec:
    """Gopher's quality rules (Rae et al. 2021, as Dolma applies them); a document failing any one
    is dropped, and the manifest counts drops per rule (the first failed rule, in field order).

    Fields:
        min_words, max_words: words (whitespace-separated) per document.
        min_mean_word_length, max_mean_word_length: mean characters per word.
        max_symbol_ratio: `#` and ellipses per word.
        max_bullet_lines: fraction of lines starting with a bullet.
        max_ellipsis_lines: fraction of lines ending with an ellipsis.
        min_alpha_words: fraction of words holding at least one letter.
        min_stop_words: distinct English stop words of {the, be, to, of, and, that, have, with} present.
        max_duplicate_lines: fraction of non-empty lines that repeat an earlier line.

    Example:
        >>> QualityFilterSpec(min_words=20).max_words
        100000
    """

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    max_duplicate_lines: float = 0.3


@dataclass
class PiiSpec:
    """Dolma's PII handling: e-mail addresses, phone numbers and IPv4 addresses are replaced by
    `|||EMAIL_ADDRESS|||`, `|||PHONE_NUMBER|||`, `|||IP_ADDRESS|||`; a document with more than
    `max_per_document` matches is dropped instead (null: never dropped).

    Example:
        >>> PiiSpec().kinds
        ['email', 'phone', 'ip']
    """

    kinds: list[Literal["email", "phone", "ip"]] = field(default_factory=lambda: ["email", "phone", "ip"])
    max_per_document: int | None = 5


@dataclass
class PrepareSpec:
    """What `hf-arith data prepare` does, stage by stage in Dolma's order: language filter, quality
    filter, PII masking, exact deduplication of documents (across all sources, first copy kept),
    held-out split, mixing, then tokenization (EOS after every document) and packing into
    `data.sequence_length`-token instances. Each stage is off when null; each reports kept/dropped
    counts in the manifest.

    Fields:
        sources: the training sources (`TextSourceSpec`), mixed by `weight`.
        heldout: extra held-out sets from their own documents (`DocumentsSpec`); they go through the
            same filters, never into training.
        language, quality, pii: the filter stages (`LanguageFilterSpec`, `QualityFilterSpec`, `PiiSpec`).
        dedup: drop exact duplicate documents.
        decontamination_ngram: a held-out document sharing any word n-gram of this length with the
            training documents is dropped (counted in the manifest and by the `perplexity` evaluator).
        num_proc: processes for the stages and the tokenization (`datasets.map(num_proc=...)`).
        seed: seeds the held-out split, fractional mixing weights and the document shuffle.

    Example:
        >>> PrepareSpec([TextSourceSpec("pydoc", paths=["builtin:pydoc"])]).decontamination_ngram
        13
    """

    sources: list[TextSourceSpec]
    heldout: list[DocumentsSpec] = field(default_factory=list)
    language: LanguageFilterSpec | None = None
    quality: QualityFilterSpec | None = None
    pii: PiiSpec | None = None
    dedup: bool = True
    decontamination_ngram: int = 13
    num_proc: int = 1
    seed: int = 0


@dataclass
class DataSpec:
    """Where training examples come from.

    Fields:
        kind: `"arithmetic"` (problems generated on the fly; example i is a pure function of the
            seed and i) or `"text"` (prepared fixed-length instances, OLMo).
        task: arithmetic task name: `addition`, `multiplication`, `sorting`.
        task_args: keyword arguments of the task (e.g. `max_digits: 20`; sorting: `max_count`,
            `max_digits`). The evaluation reads `max_digits` as the training region.
        path: text: the folder written by `hf-arith data prepare` (instances + manifest).
        tokenizer: text: tokenizer folder or Hub id. Arithmetic always uses the built-in
            character tokenizer.
        sequence_length: text: tokens per instance; also the tokens per example that
            `train.batch_warmup` counts.
        bucket_by_length: sort each process's share of a global batch by length before cutting
            micro-batches, so that a micro-batch pads to similar lengths (less wasted compute).
            It changes neither which examples form a step nor the loss.
        prepare: text: how `hf-arith data prepare` builds `path` (`PrepareSpec`); training only
            reads `path`.

    Example:
        >>> DataSpec(task="addition", task_args={"max_digits": 10}).kind
        'arithmetic'
    """

    kind: Literal["arithmetic", "text"] = "arithmetic"
    task: str = "addition"
    task_args: dict = field(default_factory=dict)
    path: str | None = None
    tokenizer: str | None = None
    sequence_length: int | None = None
    bucket_by_length: bool = True
    prepare: PrepareSpec | None = None


@dataclass
class BatchWarmupSpec:
    """OLMo's batch-size warmup: the global batch starts at `start` examples and doubles every
    `double_every_tokens` tokens (counted as examples × `data.sequence_length`) until it reaches
    `train.global_batch_size`.

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
        batch_warmup: OLMo's doubling warmup (`start`, `double_every_tokens`); exclusive with
            `batch_ramp`.
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
        z_loss: coefficient of the z-loss `mean(logsumexp(logits)^2)` over label tokens (OLMo: 1e-4).
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


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string",
            dict: "a mapping", type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, where: str):
    """`value` checked against the annotation `tp` (and gently converted: an int where a float is
    expected, a numeric string such as PyYAML's `1e-4`); `RecipeError` naming `where` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        # Exact type first, so that `warmup: 5` stays an int (steps) under `int | float`.
        for option in options:
            if option in (int, float, str, bool) and type(value) is option:
                return value
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return _build(option, value, where)  # its error names the bad key inside
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except RecipeError:
                pass
        raise RecipeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, bool):
            # YAML 1.1 reads an unquoted `no`/`off` as false: give back the word the user wrote.
            spellings = ("yes", "on", "true") if value else ("no", "off", "false")
            value = next((word for word in spellings if word in typing.get_args(tp)), value)
        if value not in typing.get_args(tp):
            raise RecipeError(f"{where}: {value!r} is not allowed; choose one of {_type_name(tp)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise RecipeError(f"{where}: expected a list of {len(items)} values, got {value!r}")
        return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items)))
    if tp is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    if tp in (int, float):
        number = value
        if isinstance(value, str):  # PyYAML reads `1e-4` (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = None
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise RecipeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        if tp is int:
            if float(number) != int(number):
                raise RecipeError(f"{where}: expected an integer, got {value!r}")
            return int(number)
        return float(number)
    raise TypeError(f"recipe field {where} has an unsupported annotation {tp!r}")  # a bug here, not the user's


def _build(cls, raw, where: str):
    """A `cls` dataclass from the mapping `raw`; every key must be a field of `cls`."""
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping with keys {_allowed(cls)}, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            path = f"{where}.{key}" if where else str(key)
            raise RecipeError(f"unknown key {path!r}; allowed keys{' in ' + where if where else ''}: {_allowed(cls)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if f.name in raw:
            kwargs[f.name] = _coerce(raw[f.name], hints[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{path}: missing; {cls.__name__} needs {_allowed(cls)}")
    return cls(**kwargs)


def _allowed(cls) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"train.lr=3e-4"` -> `(["train", "lr"], 0.0003)`; the value is parsed as YAML.

    Example:
        >>> parse_override("train.betas=[0.9, 0.95]")
        (['train', 'betas'], [0.9, 0.95])
        >>> parse_override("model.config.input_injection=false")
        (['model', 'config', 'input_injection'], False)
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"bad override {text!r}; write key.sub=value, e.g. train.lr=3e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise RecipeError(f"bad override {text!r}: the value is not valid YAML ({err.problem})") from None
    # YAML 1.1 reads `3e-4` as a string; the field's type converts it later.
    return key.split("."), parsed


def apply_overrides(raw: dict, overrides) -> dict:
    """Sets each `key.sub=value` of `overrides` in the nested mapping `raw` (in place), creating
    mappings on the way. Whether the key exists is checked later, against the dataclasses.

    Example:
        >>> apply_overrides({"train": {"lr": 1e-4}}, ["train.lr=3e-4", "train.batch_warmup.start=8"])
        {'train': {'lr': 0.0003, 'batch_warmup': {'start': 8}}}
    """
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                if node.get(key) is not None:
                    raise RecipeError(f"override {text!r}: {'.'.join(keys[:i + 1])} is not a mapping")
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return raw


def recipe_from_dict(raw: dict, name: str = "run") -> Recipe:
    """A validated `Recipe` from a plain mapping (what the YAML holds). `name` gives the default
    `output_dir` (`runs/<name>`).

    Example:
        >>> recipe_from_dict({"train": {"max_steps": 10}}, name="demo").output_dir
        'runs/demo'
    """
    recipe = _build(Recipe, raw, "")
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
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"{path}: not valid YAML{at}: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with keys {_allowed(Recipe)}")
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
        _check_prepare(d)
    need(recipe.seed >= 0, f"seed={recipe.seed} must be non-negative")
    check_model_config(recipe.model)


def _check_prepare(d: DataSpec) -> None:
    """Value checks of `data.prepare` (the types are already checked)."""
    p = d.prepare

    def need(ok: bool, message: str):
        if not ok:
            raise RecipeError(message)

    need(d.kind == "text", f"data.prepare is for data.kind=text, not {d.kind!r}; remove it or set data.kind: text")
    need(d.sequence_length is not None and d.sequence_length >= 2,
         "data.prepare needs data.sequence_length (tokens per instance, at least 2)")
    need(bool(p.sources), "data.prepare.sources is empty; list at least one source (e.g. paths: [builtin])")
    collections = [(f"data.prepare.sources[{i}]", s) for i, s in enumerate(p.sources)]
    collections += [(f"data.prepare.heldout[{i}]", s) for i, s in enumerate(p.heldout)]
    for where, spec in collections:
        need(bool(spec.paths) != bool(spec.hub), f"{where} ({spec.name}): give either paths or hub, not both")
    source_names = [s.name for s in p.sources]
    heldout_names = [s.name for s in p.sources if s.heldout_fraction > 0] + [s.name for s in p.heldout]
    for names, label in ((source_names, "source"), (heldout_names, "held-out set")):
        dupes = sorted({n for n in names if names.count(n) > 1})
        need(not dupes, f"data.prepare: {label} name(s) {dupes} used twice; names must be unique")
    for i, s in enumerate(p.sources):
        need(s.weight > 0, f"data.prepare.sources[{i}].weight={s.weight} must be positive")
        need(0.0 <= s.heldout_fraction < 1.0, f"data.prepare.sources[{i}].heldout_fraction must be in [0, 1)")
    need(p.num_proc >= 1 and p.decontamination_ngram >= 1 and p.seed >= 0,
         "data.prepare.num_proc and decontamination_ngram must be >= 1, seed >= 0")
    if p.language is not None:
        need(bool(p.language.languages) and 0.0 <= p.language.min_score <= 1.0,
             "data.prepare.language needs languages (e.g. [en]) and min_score in [0, 1]")
    if p.pii is not None:
        need(p.pii.max_per_document is None or p.pii.max_per_document >= 0,
             "data.prepare.pii.max_per_document must be >= 0 or null")


# Architecture -> (config class, model class), as "module:attribute"; imported only when used, so
# a recipe for one architecture never needs the other's code.
ARCHITECTURES = {
    "abacus": ("hf_arith.modeling.configuration_abacus:AbacusConfig", "hf_arith.modeling.modeling_abacus:AbacusForCausalLM"),
    "olmo": ("hf_arith.modeling.configuration_olmo:ArithOlmoConfig", "hf_arith.modeling.modeling_olmo:ArithOlmoForCausalLM"),
    "llama": ("transformers:LlamaConfig", "transformers:LlamaForCausalLM"),
}


def import_object(spec: str):
    """The object named by `"package.module:attribute"`.

    Example:
        >>> import_object("transformers:LlamaConfig").model_type
        'llama'
    """
    import importlib

    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def architecture_classes(arch: str):
    """`(config_class, model_class)` for a `model.arch`; `RecipeError` when it is not installed.

    Example:
        >>> architecture_classes("llama")[1].__name__
        'LlamaForCausalLM'
    """
    if arch not in ARCHITECTURES:
        raise RecipeError(f"model.arch={arch!r} is unknown; choose one of {', '.join(ARCHITECTURES)}")
    try:
        return tuple(import_object(spec) for spec in ARCHITECTURES[arch])
    except (ImportError, AttributeError) as err:
        raise RecipeError(f"model.arch={arch!r} is not available in this installation ({err}); "
                          f"update hf-arith or pick another architecture") from None


def config_keys(config_class) -> list[str]:
    """The keyword arguments a config class accepts (its `__init__` signature).

    Example:
        >>> "hidden_size" in config_keys(architecture_classes("llama")[0])
        True
    """
    skip = {"self", "args", "kwargs"}
    return [name for name in inspect.signature(config_class.__init__).parameters if name not in skip]


def check_model_config(model: ModelSpec) -> None:
    """Every key of `model.config` must be an argument of the architecture's config class
    (`PretrainedConfig` would otherwise keep a misspelt key as an inert attribute).

    Example:
        >>> check_model_config(ModelSpec("llama", {"hidden_sise": 64}))
        Traceback (most recent call last):
        hf_arith.errors.RecipeError: unknown key 'model.config.hidden_sise' for LlamaConfig; allowed: ...
    """
    config_class, _ = architecture_classes(model.arch)
    allowed = config_keys(config_class)
    for key in model.config:
        if key not in allowed:
            raise RecipeError(f"unknown key 'model.config.{key}' for {config_class.__name__}; allowed: {', '.join(allowed)}")


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
        >>> save_recipe(load_recipe("recipes/abacus/addition_cpu.yaml"), "runs/x/recipe.yaml")
        PosixPath('runs/x/recipe.yaml')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, default_flow_style=None))
    return path


__all__ = [
    "ARCHITECTURES",
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
    "architecture_classes",
    "check_model_config",
    "check_recipe",
    "load_recipe",
    "parse_override",
    "recipe_from_dict",
    "recipe_to_dict",
    "save_recipe",
]
