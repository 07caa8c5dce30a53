"""What `hf-arith eval`, `hf-arith generate` and `hf-arith data eval-set` run.

The CLI only parses arguments and calls these; each loads what it needs, does the work, prints a
short report and returns the result for scripts and tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_arith.data.arithmetic import eval_set, load_eval_set, save_eval_set
from hf_arith.errors import HfArithError
from hf_arith.model_files import check_finite, check_model_folder
from hf_arith.tasks import DEFAULT_TASK, get_task
from hf_arith.tasks.notation import task_of

from .defaults import DEFAULT_EVAL_SEED, DEFAULT_LENGTHS, DEFAULT_SAMPLES
from .generate import answer
from .grid import abacus_offset_of, evaluate_grid
from .lengths import cells_of, parse_lengths
from .results import GridResult
from .saved_recipe import read_saved_recipe


def resolve_device(device: str | None) -> str:
    """`None`/`"auto"` -> the first accelerator available, else `"cpu"`; a device named must exist
    here (`HfArithError` naming it and the fix otherwise: torch's own errors name neither).

    Example:
        >>> resolve_device("cpu")
        'cpu'
        >>> resolve_device("auto") in ("cuda", "mps", "cpu")
        True
        >>> resolve_device("banana")
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: --device banana is not a device; use cpu, cuda, cuda:N or mps, ...
    """
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    try:
        kind = torch.device(device)
    except RuntimeError:
        raise HfArithError(f"--device {device} is not a device; use cpu, cuda, cuda:N or mps, or leave --device "
                           f"out for the best one available") from None
    missing = None
    if kind.type == "cuda" and not torch.cuda.is_available():
        missing = "this torch was built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
    elif kind.type == "cuda" and (kind.index or 0) >= torch.cuda.device_count():
        missing = f"there are {torch.cuda.device_count()} CUDA GPUs (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
    elif kind.type == "mps" and not _mps_available():
        missing = "MPS (Apple GPUs) is not available"
    if missing:
        raise HfArithError(f"--device {device}: {missing} (torch {torch.__version__}); use --device cpu, or leave "
                           f"--device out for the best one available")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def load_for_inference(model_dir: str | os.PathLike, device: str | None = None):
    """`(model, tokenizer)` from a saved folder or Hub id, through the Auto classes and the
    folder's own code (the same path a user without hf-arith takes), in eval mode on `device`.
    (`hf_arith.hub.publish.load_with_installed_classes` loads through this installation's classes
    instead, to publish them.)

    Example:
        >>> import tempfile
        >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
        >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
        >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1))
        >>> folder = tempfile.mkdtemp()  # e.g. runs/addition_cpu/final
        >>> model.save_pretrained(folder)
        >>> _ = ArithTokenizer().save_pretrained(folder)
        >>> model, tokenizer = load_for_inference(folder, device="cpu")
        >>> type(model).__name__, model.training
        ('AbacusForCausalLM', False)
    """
    device = resolve_device(device)  # before the load: a wrong --device is known at once
    source = str(check_model_folder(model_dir))
    try:
        model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True)
    except OSError as err:  # a Hub id that cannot be fetched (offline, private, misspelt)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HfArithError(f"cannot load {model_dir}: {first}; check the folder or repo id (and HF_TOKEN, "
                           f"or HF_HUB_OFFLINE for a cached copy)") from None
    check_finite(model.named_parameters(), model_dir)
    check_arithmetic_tokenizer(tokenizer, model_dir)
    return model.to(device).eval(), tokenizer


def _check_problems_fit_the_task(model_dir, problems: list) -> None:
    """`HfArithError` for a problem of another task than the one the model was trained on (its
    saved recipe's `data.task`): an addition model asked `12*3` answered with a sum of digits."""
    trained = read_saved_recipe(model_dir).task
    try:
        trained = get_task(trained).name if trained is not None else None  # aliases: "sort" is "sorting"
    except ValueError:
        return  # a task this installation does not know: nothing to compare with
    for problem in problems:
        try:
            task = task_of(problem)
        except ValueError:
            continue  # `answer` names what is wrong with it
        if trained is not None and task != trained:
            raise HfArithError(f"{model_dir} was trained on {trained}, but {problem!r} is {task}; give {trained} "
                               f"problems, or a model trained on {task}")


def check_arithmetic_tokenizer(tokenizer, model_dir) -> None:
    """`HfArithError` unless `tokenizer` writes every character of an arithmetic problem as its own
    token, as hf-arith's tasks need: a text model's BPE merges digits, and its grid scored 0%.

    Example:
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> check_arithmetic_tokenizer(build_arith_tokenizer(), "runs/addition_cpu/final")  # no error
    """
    probe = "9081726354+="
    if len(tokenizer(probe, add_special_tokens=False)["input_ids"]) != len(probe):
        raise HfArithError(f"{model_dir} is not an arithmetic model: its tokenizer does "
                           f"not write one token per digit; eval and generate score arithmetic models (for a text "
                           f"model, use the perplexity and multiple_choice evaluators, or lm-eval)")


def run_eval(
    model_dir: str | os.PathLike,
    task: str | None = None,
    lengths: str = DEFAULT_LENGTHS,
    samples: int = DEFAULT_SAMPLES,
    out_dir: str | os.PathLike = "eval",
    batch_size: int = 256,
    num_recurrences: int | None = None,
    seed: int = DEFAULT_EVAL_SEED,
    device: str | None = None,
    train_max_digits: int | None = None,
    progress: bool = True,
    eval_set_path: str | os.PathLike | None = None,
    abacus_offset: int | None = None,
) -> GridResult:
    """`hf-arith eval`: evaluate a saved model on a length grid, write `results.json` and
    `heatmap.png` to `out_dir`, print a short table. `task=None` takes the model's training task
    from its `recipe.yaml` (else addition). `eval_set_path` evaluates a set saved by
    `hf-arith data eval-set` (a folder, .jsonl or .parquet) or a Hub dataset id instead of drawing
    one from `lengths`/`samples`/`seed`. `abacus_offset` overrides the offset the model adds to
    digit positions (`config.abacus_eval_offset`, chosen in training by `abacus_eval_offset`).

    Example::

        # prints the summary; writes runs/addition_cpu/eval/results.json and heatmap.png
        run_eval("runs/addition_cpu/final", "addition", "1-30", samples=20, out_dir="runs/addition_cpu/eval")
    """
    # The recipe's task arguments are not passed on: they describe the training lengths, which
    # the grid deliberately exceeds; the prompt format is the same for every length.
    task = task or read_saved_recipe(model_dir).task or DEFAULT_TASK
    grid = parse_lengths(lengths)  # a bad --lengths is named before the model loads
    dataset = None if eval_set_path is None else _load_eval_set(eval_set_path)
    model, tokenizer = load_for_inference(model_dir, device)
    torch.manual_seed(seed)  # a model drawing in its forward pass (`initial_state_std`) grades the same each run
    if abacus_offset is not None:
        set_abacus_offset(model, abacus_offset)
    result = evaluate_grid(
        model, tokenizer, task, **grid, dataset=dataset, samples=samples, seed=seed,
        batch_size=batch_size,
        num_recurrences=num_recurrences, progress=progress, train_max_digits=train_max_digits,
        model_name=Path(model_dir).name if Path(model_dir).exists() else str(model_dir),
    )
    out_dir = Path(out_dir)
    json_path = result.to_json(out_dir / "results.json")
    png_path = result.heatmap(out_dir / "heatmap.png")
    print(result.table())
    print(f"\nwrote {json_path} and {png_path} ({result.elapsed_s:.1f}s of decoding)")
    return result


def set_abacus_offset(model, offset: int) -> None:
    """Makes `model` add `offset` to every digit's Abacus position at inference.

    Example:
        >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
        >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1))
        >>> set_abacus_offset(model, 9)
        >>> model.config.abacus_eval_offset
        9
    """
    if abacus_offset_of(model) is None:
        raise HfArithError(f"--abacus-offset {offset}: this model has no Abacus embedding; drop the option")
    rows = int(model.config.abacus_num_positions)
    if not 0 <= offset < rows - 1:
        raise HfArithError(f"--abacus-offset {offset}: give an offset from 0 to {rows - 2} (the model's Abacus "
                           f"table has {rows} rows, and the offset leaves fewer of them for long numbers)")
    model.config.abacus_eval_offset = int(offset)


def _load_eval_set(path: str | os.PathLike):
    """A saved evaluation set (folder, .jsonl, .parquet) or, when no such path exists, a Hub
    dataset id (its `test` split, else its only split)."""
    if Path(path).exists():
        return load_eval_set(path)

    loaded = datasets.load_dataset(str(path))
    return loaded["test"] if "test" in loaded else loaded[next(iter(loaded))]


def run_generate(
    model_dir: str | os.PathLike, problems: list[str] | str, num_recurrences: int | None = None,
    device: str | None = None,
) -> list[str]:
    """`hf-arith generate`: print the model's answer to each normal-notation problem, one a line.

    Example::

        answers = run_generate("runs/addition_cpu/final", ["123+4567", "99+1"])  # also prints one a line
    """
    problems = [problems] if isinstance(problems, str) else list(problems)
    _check_problems_fit_the_task(model_dir, problems)
    model, tokenizer = load_for_inference(model_dir, device)
    torch.manual_seed(0)  # the same answers on every call, also from a model drawing noise in its forward pass
    answers = answer(model, tokenizer, problems, num_recurrences=num_recurrences)
    for text in answers:
        print(text)
    return answers


def run_data_eval_set(
    task: str = DEFAULT_TASK,
    lengths: str = DEFAULT_LENGTHS,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_EVAL_SEED,
    out: str | os.PathLike = "eval_set",
    push_to_hub: str | None = None,
):
    """`hf-arith data eval-set`: materialise the evaluation problems `hf-arith eval` would draw
    for the same task, lengths, samples and seed, and save them.

    `out` ending in `.jsonl`/`.json` or `.parquet` writes one file; anything else is a `datasets`
    folder (`save_to_disk`); `hf-arith eval --eval-set OUT` evaluates it. `push_to_hub="user/name"`
    also uploads it as a Hub dataset. Returns the `datasets.Dataset`.

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "addition_eval.parquet"
        >>> ds = run_data_eval_set("addition", "1-3", 2, out=out)
        wrote 18 addition problems (1-3, 2/cell, seed ...) to .../addition_eval.parquet
        >>> ds.column_names
        ['prompt', 'answer', 'len_a', 'len_b']
    """
    dataset = eval_set(task, cells_of(lengths), samples, seed)
    out = save_eval_set(dataset, out)
    print(f"wrote {len(dataset)} {task} problems ({lengths}, {samples}/cell, seed {seed}) to {out}")
    if push_to_hub:
        dataset.push_to_hub(push_to_hub)
        print(f"pushed to https://huggingface.co/datasets/{push_to_hub}")
    return dataset


__all__ = ["load_for_inference", "run_data_eval_set", "run_eval", "run_generate"]
