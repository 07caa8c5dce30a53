"""Length-generalisation evaluation: exact-match accuracy over a grid of operand lengths.

The paper evaluates greedy decoding on every (len_a, len_b) cell of 1..100 x 1..100 with 100
problems per cell, and on equal lengths 101..160. `evaluate_grid` does the same with batched
`generate` (the looped KV cache), and returns a `GridResult` that summarises in-distribution
(both operands within the training lengths) and out-of-distribution accuracy, writes JSON and
draws a heatmap.

Example (the model of a trained run, as `hf-arith train recipes/abacus/addition_cpu.yaml` writes it)::

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    result = evaluate_grid(model, tokenizer, "addition", lengths_a=range(1, 31), samples=20)
    result.summary()["out_of_distribution"]["accuracy"]  # accuracy beyond the training lengths
    result.to_json("eval/results.json")
    result.heatmap("eval/heatmap.png")
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

from hf_arith.data.arithmetic import eval_set
from hf_arith.modeling import CAUSAL_LMS
from hf_arith.modeling.layers import abacus_capacity
from hf_arith.tasks import DEFAULT_TASK, Example, resolve_task, task_name_of

from .decoding import greedy_generate
from .defaults import DEFAULT_EVAL_SEED
from .results import GridResult
from .saved_recipe import read_saved_recipe

# Evaluation problems come from `hf_arith.data.arithmetic.eval_set`, which seeds every cell from
# ("eval", task, seed, cell), while training example i comes from `ArithmeticSource`, seeded
# "train:{task}:{seed}:{i}": the two never share a random stream, whatever integers the seeds are.
# How many wrong predictions the JSON keeps, for a first look at what the model gets wrong.
MAX_FAILURES_KEPT = 50


def installed_config(config):
    """`config` as this installation's config class of its model type, or `None` for a model type
    hf-arith does not define (transformers' own `olmo`, `llama`, ...). `config`: a model's config,
    also one built by a folder's own (perhaps older) code through `trust_remote_code`, or its
    config.json read as a dict (the model card's case). The installed class answers `uses_abacus`
    for configs saved by every release.

    Example:
        >>> installed_config({"model_type": "abacus", "abacus_num_positions": 64}).uses_abacus
        True
        >>> installed_config({"model_type": "olmo"}) is None
        True
    """
    saved = config if isinstance(config, Mapping) else getattr(config, "to_dict", dict)()
    cls = CAUSAL_LMS.get(saved.get("model_type"))
    if cls is None:
        return None
    if isinstance(config, cls.config_class):
        return config
    return cls.config_class.from_dict(dict(saved))


def abacus_capacity_of(config) -> int | None:
    """The longest number (in digits) a model's Abacus table positions at inference, or `None`
    when the model has no Abacus embedding: `hf_arith.modeling.layers.abacus_capacity` of
    `installed_config(config)`.

    Example:
        >>> from hf_arith.modeling import AbacusConfig
        >>> abacus_capacity_of(AbacusConfig())  # 256 rows, offset 0
        255
        >>> abacus_capacity_of({"model_type": "abacus", "abacus_num_positions": 64, "abacus_eval_offset": 3})
        60
    """
    config = installed_config(config)
    return None if config is None else abacus_capacity(config)


def training_region(task, task_args: dict | None = None) -> tuple[int, int]:
    """The training region (largest length per axis) of the task named `task` built with
    `task_args` (e.g. a recipe's `data.task_args`): the task's `training_region`, so the task's
    own defaults where the recipe names none (the data it trained on). `ValueError` for an unknown
    task or arguments it does not take.

    Example:
        >>> training_region("addition", {"max_digits": 10}), training_region("sorting", {"max_count": 5})
        ((10, 10), (5, 10))
        >>> training_region("multiplication")  # MultiplicationTask() trains on 1..15 digits, as the paper
        (15, 15)
    """
    return resolve_task(task, dict(task_args or {})).training_region()


def default_train_max(model, task) -> tuple[int, int]:
    """The training region of the model folder's recipe when it trained `task`, else the task's
    default one (see `training_region`)."""
    saved = read_saved_recipe(getattr(model, "name_or_path", None))
    return training_region(task, saved.task_args_for(task))


def _ground_truth(task, prompt: str) -> str | None:
    """The answer of a model-format prompt as the task computes it (from Python ints); `None`
    when the task cannot read the prompt. Guards against a wrong `answer` column."""
    try:
        return task.example_of(prompt).answer
    except ValueError:
        return None


def build_cells(lengths_a, lengths_b=None, pairs=None) -> tuple[list[int], list[int], list[tuple[int, int]], str]:
    """The axes and the cells to evaluate: the full product of the two length lists, or the given
    pairs (e.g. equal lengths). Returns `(lengths_a, lengths_b, cells, mode)`.

    Example:
        >>> build_cells(range(1, 3))
        ([1, 2], [1, 2], [(1, 1), (1, 2), (2, 1), (2, 2)], 'grid')
        >>> build_cells(None, pairs=[(101, 101), (102, 102)])[2:]
        ([(101, 101), (102, 102)], 'pairs')
    """
    if pairs is not None:
        cells = sorted({(int(a), int(b)) for a, b in pairs})
        if not cells:
            raise ValueError("no cells to evaluate: `pairs` is empty")
        return sorted({a for a, _ in cells}), sorted({b for _, b in cells}), cells, "pairs"
    lengths_a = sorted({int(n) for n in lengths_a})
    lengths_b = lengths_a if lengths_b is None else sorted({int(n) for n in lengths_b})
    if not lengths_a or not lengths_b:
        raise ValueError("no cells to evaluate: a length range is empty")
    if min(lengths_a + lengths_b) < 1:
        raise ValueError("lengths start at 1")
    return lengths_a, lengths_b, [(a, b) for a in lengths_a for b in lengths_b], "grid"


def check_abacus_capacity(model, task, cells: Iterable[tuple[int, int]]) -> None:
    """Raises one clear `ValueError` before any decoding when a cell needs numbers longer than
    the model's Abacus table (instead of failing half-way through a long evaluation).

    Example:
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1, num_recurrences=1))
        >>> check_abacus_capacity(model, "addition", [(300, 300)])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: addition cells up to 300x300 put numbers of up to 301 digits through the model, ...
    """
    capacity = abacus_capacity_of(getattr(model, "config", None))
    if capacity is None:
        return
    task_obj = resolve_task(task)
    worst = max(cells, key=task_obj.longest_digit_run)
    needed = task_obj.longest_digit_run(worst)
    if needed > capacity:
        raise ValueError(
            f"{task_name_of(task)} cells up to {worst[0]}x{worst[1]} put numbers of up to {needed} digits through "
            f"the model, "
            f"but its Abacus table positions at most {capacity} digits (abacus_num_positions="
            f"{model.config.abacus_num_positions}, abacus_eval_offset={model.config.abacus_eval_offset}); "
            f"evaluate shorter lengths"
        )


def evaluate_dataset(
    model,
    tokenizer,
    dataset,
    task=DEFAULT_TASK,
    *,
    batch_size: int = 256,
    num_recurrences: int | None = None,
    progress: bool = True,
):
    """Greedy-decodes every row of an evaluation set (columns prompt, answer, len_a, len_b) and
    returns `(verdicts, predictions, terminated)` in row order.

    Rows are batched by prompt length (so batches need no padding; for addition a batch holds one
    cell or cells with the same len_a + len_b), and decoding stops as soon as every row of the
    batch has produced EOS. A row is correct when the text before the first EOS
    is exactly the answer, EOS included (a longer answer with a matching prefix is wrong).

    Example:
        >>> import torch
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1, num_recurrences=1))  # untrained
        >>> tokenizer = build_arith_tokenizer()
        >>> ds = eval_set("addition", [(3, 3)], samples=8, seed=0)
        >>> verdicts, predictions, terminated = evaluate_dataset(model, tokenizer, ds, "addition")
        >>> len(verdicts), sum(verdicts), predictions[0]
        (8, 0, '<bos>ajjj')
    """
    name = task_name_of(task)
    task_obj = resolve_task(task)
    prompts, answers = list(dataset["prompt"]), list(dataset["answer"])
    lengths = list(zip(dataset["len_a"], dataset["len_b"]))
    for prompt, answer in zip(prompts, answers):
        truth = _ground_truth(task_obj, prompt)
        if truth is not None and truth != answer:
            raise ValueError(
                f"evaluation set answer {answer!r} for {prompt!r} disagrees with Python integers ({truth!r})"
            )

    budgets = []
    for cell, answer in zip(lengths, answers):
        # Never fewer tokens than the answer and its EOS, whatever the task's bound says.
        budgets.append(max(task_obj.answer_budget(cell), len(answer) + 1))
    # One prompt length per batch: no left padding at all (a cell's prompts share one length for
    # addition and multiplication, so this is grouping by cell), and within a length, similar
    # answer budgets together so that few rows wait for the longest answer.
    order = sorted(range(len(prompts)), key=lambda k: (len(prompts[k]), budgets[k], lengths[k]))
    batches, current = [], []
    for k in order:
        if current and (len(current) == batch_size or len(prompts[k]) != len(prompts[current[0]])):
            batches.append(current)
            current = []
        current.append(k)
    if current:
        batches.append(current)

    verdicts, predictions, terminated = [False] * len(prompts), [""] * len(prompts), [False] * len(prompts)
    bar = tqdm(total=len(order), disable=not progress, unit="problem", desc=f"eval {name}", dynamic_ncols=True)
    for batch in batches:
        outputs = greedy_generate(
            model, tokenizer, [prompts[k] for k in batch], max(budgets[k] for k in batch), num_recurrences
        )
        for k, (text, stopped) in zip(batch, outputs):
            example = Example(prompts[k], answers[k], tuple(lengths[k]))
            predictions[k], terminated[k] = text, stopped
            # The exact string comparison is the verdict; the task's scorer must agree (it would
            # only differ for a lenient parser, e.g. one that ignores a trailing zero).
            verdicts[k] = bool(stopped and text == answers[k] and task_obj.score(text, example))
        bar.update(len(batch))
        bar.set_postfix(cell=f"{lengths[batch[-1]][0]}x{lengths[batch[-1]][1]}", refresh=False)
    bar.close()
    return verdicts, predictions, terminated


def evaluate_grid(
    model,
    tokenizer,
    task=DEFAULT_TASK,
    lengths_a: Iterable[int] | None = range(1, 41),
    lengths_b: Iterable[int] | None = None,
    samples: int = 100,
    seed: int = DEFAULT_EVAL_SEED,
    batch_size: int = 256,
    num_recurrences: int | None = None,
    progress: bool = True,
    *,
    pairs: Iterable[tuple[int, int]] | None = None,
    train_max_digits: int | tuple[int, int] | None = None,
    task_args: dict | None = None,
    model_name: str | None = None,
    dataset=None,
) -> GridResult:
    """Exact-match accuracy of greedy decoding on every (len_a, len_b) cell.

    `samples` problems per cell come from `hf_arith.data.arithmetic.eval_set(task, cells, samples,
    seed)` (seeded apart from every training stream), so `hf-arith data eval-set` with the same
    arguments materialises exactly the problems measured here. For sorting the axes are (count,
    max digits). `pairs` evaluates only the listed cells (see `evaluate_equal_lengths`).
    `dataset` evaluates a materialised set instead (e.g. `load_eval_set(path)` or one from the
    Hub; its cells come from its len_a/len_b columns and `samples`/`seed` are not used).
    `train_max_digits` (an int, or one per axis) separates in- from out-of-distribution; by
    default it is the training region of the task with the model folder's `recipe.yaml` arguments
    (`data.task_args`), else with none (see `training_region`: 20 digits; sorting: 10 numbers
    of 10 digits).

    Example:
        >>> import torch
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> _ = torch.manual_seed(0)
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1, num_recurrences=1))  # untrained
        >>> tokenizer = build_arith_tokenizer()
        >>> result = evaluate_grid(model, tokenizer, "addition", range(1, 3), samples=2)
        >>> result.total.tolist(), result.correct.tolist()
        ([[2, 2], [2, 2]], [[0, 0], [0, 0]])
        >>> result.summary()["in_distribution"]["cells"], result.train_max
        (4, (20, 20))
    """
    name = task_name_of(task)
    if dataset is not None:
        present = set(zip(dataset["len_a"], dataset["len_b"]))
        lengths_a, lengths_b, cells, mode = build_cells(None, pairs=present)
        if len(present) == len(lengths_a) * len(lengths_b):
            mode = "grid"  # every cell of the product is there
        counts = {}
        for cell in zip(dataset["len_a"], dataset["len_b"]):
            counts[cell] = counts.get(cell, 0) + 1
        samples, seed = max(counts.values()), None  # the set's own seed is not known here
    else:
        lengths_a, lengths_b, cells, mode = build_cells(lengths_a, lengths_b, pairs)
    check_abacus_capacity(model, name, cells)
    if train_max_digits is None:
        train_max = default_train_max(model, name)
    elif isinstance(train_max_digits, int):
        train_max = (train_max_digits, train_max_digits)
    else:
        train_max = tuple(train_max_digits)

    task_obj = resolve_task(task, task_args)
    if dataset is None:
        dataset = eval_set(task_obj, cells, samples, seed)
    started = time.perf_counter()
    verdicts, predictions, terminated = evaluate_dataset(
        model, tokenizer, dataset, task_obj, batch_size=batch_size, num_recurrences=num_recurrences, progress=progress
    )
    elapsed = time.perf_counter() - started

    index_a, index_b = {n: i for i, n in enumerate(lengths_a)}, {n: j for j, n in enumerate(lengths_b)}
    correct = np.zeros((len(lengths_a), len(lengths_b)), np.int64)
    total = np.zeros_like(correct)
    failures = []
    for k, (la, lb) in enumerate(zip(dataset["len_a"], dataset["len_b"])):
        i, j = index_a[la], index_b[lb]
        total[i, j] += 1
        correct[i, j] += verdicts[k]
        if not verdicts[k] and len(failures) < MAX_FAILURES_KEPT:
            failures.append({"prompt": dataset[k]["prompt"], "answer": dataset[k]["answer"],
                             "prediction": predictions[k], "stopped_at_eos": terminated[k]})
    if model_name is None:
        folder = str(getattr(model, "name_or_path", "") or "")
        model_name = os.path.basename(os.path.normpath(folder)) if folder else type(model).__name__
    return GridResult(
        task=name, lengths_a=lengths_a, lengths_b=lengths_b, correct=correct, total=total, train_max=train_max,
        model_name=model_name, num_recurrences=num_recurrences, samples=samples, seed=seed, mode=mode,
        failures=failures, elapsed_s=round(elapsed, 3), abacus_eval_offset=abacus_offset_of(model),
    )


def abacus_offset_of(model) -> int | None:
    """The Abacus offset `model` applies outside training, or None when it has no Abacus embedding.

    Example:
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1, num_recurrences=1))
        >>> abacus_offset_of(model)
        0
    """
    config = installed_config(getattr(model, "config", None))
    if config is None or not config.uses_abacus:
        return None
    return int(config.abacus_eval_offset)


def evaluate_equal_lengths(
    model, tokenizer, task=DEFAULT_TASK, lengths: Iterable[int] = range(101, 161), **kwargs
) -> GridResult:
    """The paper's extreme-length check: only cells with len_a == len_b (101..160 by default).

    Example:
        >>> from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1, num_recurrences=1))  # untrained
        >>> tokenizer = build_arith_tokenizer()
        >>> result = evaluate_equal_lengths(model, tokenizer, lengths=[3, 4], samples=2)
        >>> result.mode, sorted(result.per_length()["diagonal"])
        ('pairs', [3, 4])
    """
    return evaluate_grid(model, tokenizer, task, lengths_a=None, pairs=[(n, n) for n in lengths], **kwargs)


__all__ = [
    "abacus_capacity_of",
    "abacus_offset_of",
    "build_cells",
    "check_abacus_capacity",
    "default_train_max",
    "evaluate_dataset",
    "evaluate_equal_lengths",
    "evaluate_grid",
    "installed_config",
    "training_region",
]
