"""Length-generalisation evaluation: exact-match accuracy over a grid of operand lengths.

The paper evaluates greedy decoding on every (len_a, len_b) cell of 1..100 x 1..100 with 100
problems per cell, and on equal lengths 101..160. `evaluate_grid` does the same with batched
`generate` (the looped KV cache), and returns a `GridResult` that summarises in-distribution
(both operands within the training lengths) and out-of-distribution accuracy, writes JSON and
draws a heatmap.

Example:
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer
    >>> model = AutoModelForCausalLM.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    >>> tokenizer = AutoTokenizer.from_pretrained("runs/addition_cpu/final", trust_remote_code=True)
    >>> result = evaluate_grid(model, tokenizer, "addition", lengths_a=range(1, 31), samples=20)
    >>> result.summary()["out_of_distribution"]["accuracy"]
    0.057
    >>> result.to_json("eval/results.json"); result.heatmap("eval/heatmap.png")
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hf_arith.modeling.layers import CACHE_NAME
from hf_arith.tasks import Task

# Bumped whenever a key of `GridResult.to_dict` changes meaning.
SCHEMA_VERSION = 1
# The paper trains addition on operands of 1..20 digits: `GridResult`'s default training region.
DEFAULT_TRAIN_MAX_DIGITS = 20
# Before the tasks carried their training region, the evaluation took 20 digits for an addition or
# multiplication model whose recipe names no `max_digits`, although `MultiplicationTask` trains on
# 1..15 by default. Kept so that such results do not move; without it they would use the task's 15.
_LEGACY_MAX_DIGITS = {"multiplication": DEFAULT_TRAIN_MAX_DIGITS}
# Evaluation problems come from `hf_arith.data.arithmetic.eval_set`, which seeds every cell from
# ("eval", task, seed, cell) while training streams use ("train", task, seed, shard): the two
# never share a random stream, whatever integers the seeds are.
DEFAULT_EVAL_SEED = 1234
# How many wrong predictions the JSON keeps, for a first look at what the model gets wrong.
MAX_FAILURES_KEPT = 50


def task_name_of(task) -> str:
    """The registry name of a task given as a string or a task object.

    Example:
        >>> task_name_of("addition"), task_name_of(get_task("sorting"))
        ('addition', 'sorting')
    """
    if isinstance(task, str):
        return task
    name = getattr(task, "name", None)
    if isinstance(name, str):
        return name
    # Fall back on the class name: AdditionTask -> addition.
    return type(task).__name__.removesuffix("Task").lower()


def resolve_task(task, task_args: dict | None = None):
    """A task object from a name (plus constructor arguments) or a task object.

    Example:
        >>> resolve_task("addition").score("573", Example("321+54=", "573", (3, 2)))
        True
    """
    from hf_arith.tasks import get_task

    if isinstance(task, str):
        return get_task(task, **(task_args or {}))
    return task


def _known_task(task):
    """The task object of a name, or `None` for a name hf-arith does not know."""
    try:
        return resolve_task(task)
    except ValueError:
        return None


def answer_token_budget(task, lengths: Sequence[int]) -> int | None:
    """New tokens that suffice for the longest possible answer of a cell, plus its EOS: the
    task's `answer_budget`. `None` for tasks it does not know.

    Example:
        >>> answer_token_budget("addition", (3, 5)), answer_token_budget("multiplication", (3, 5))
        (7, 9)
        >>> answer_token_budget("sorting", (4, 10))  # "a,b,c,d" then EOS
        8
    """
    known = _known_task(task)
    return None if known is None else known.answer_budget(lengths)


def uses_abacus(config) -> bool:
    """Whether a model config adds Abacus positions to digits: the Abacus model's
    `embedding_positions: abacus`, or OLMo's `abacus: true`.

    Example:
        >>> uses_abacus(ArithOlmoConfig(abacus=True, digit_token_ids=list(range(4, 14))))
        True
    """
    return getattr(config, "embedding_positions", None) == "abacus" or bool(getattr(config, "abacus", False))


def abacus_capacity(model) -> int | None:
    """The longest number (in digits) the model's Abacus table can position, or `None` when the
    model has no Abacus embedding.

    Row `position + eval_offset` must exist, and rows run 0..abacus_num_positions-1.

    Example:
        >>> abacus_capacity(model)  # 256 rows, offset 0
        255
    """
    config = getattr(model, "config", None)
    if config is None or not uses_abacus(config):
        return None
    return int(config.abacus_num_positions) - 1 - int(getattr(config, "abacus_eval_offset", 0))


def training_region(task, task_args: dict | None = None) -> tuple[int, int]:
    """The training region (largest length per axis) of the task named `task` built with
    `task_args` (e.g. a recipe's `data.task_args`): the task's `training_region`, except that
    multiplication without `max_digits` keeps the evaluation's old 20 digits. `ValueError` for an
    unknown task or arguments it does not take.

    Example:
        >>> training_region("addition", {"max_digits": 10}), training_region("sorting", {"max_count": 5})
        ((10, 10), (5, 10))
        >>> training_region("multiplication")  # MultiplicationTask() itself trains on 15 digits
        (20, 20)
    """
    args = dict(task_args or {})
    name = resolve_task(task).name
    if "max_digits" not in args and name in _LEGACY_MAX_DIGITS:
        args["max_digits"] = _LEGACY_MAX_DIGITS[name]
    return resolve_task(task, args).training_region()


def recipe_task_args(model_dir: str | os.PathLike | None, task) -> dict | None:
    """The `data.task_args` of a model folder's `recipe.yaml` when it trained `task` (a recipe
    naming no task counts as any), else `None`.

    Example:
        >>> import pathlib, tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "recipe.yaml").write_text("data: {task: add, task_args: {max_digits: 10}}")
        >>> recipe_task_args(folder, "addition"), recipe_task_args(folder, "sorting")
        ({'max_digits': 10}, None)
    """
    if not model_dir:
        return None
    path = Path(model_dir) / "recipe.yaml"
    if not path.is_file():
        return None
    import yaml

    data = (yaml.safe_load(path.read_text()) or {}).get("data") or {}
    trained = data.get("task")
    # Compared as tasks, so that an alias in the recipe ("mul") is the task it names.
    if trained is not None and getattr(_known_task(trained), "name", None) != resolve_task(task).name:
        return None  # a model trained on another task has no training region for this one
    return dict(data.get("task_args") or {})


def default_train_max(model, task) -> tuple[int, int]:
    """The training region of the model folder's recipe when it trained `task`, else the task's
    default one (see `training_region`)."""
    return training_region(task, recipe_task_args(getattr(model, "name_or_path", None), task))


def _fraction(correct: int, total: int) -> dict:
    return {"accuracy": (correct / total) if total else None, "correct": int(correct), "total": int(total)}


@dataclass
class GridResult:
    """Exact-match results per cell of a length grid, with summaries, JSON and a heatmap.

    `correct[i, j]` / `total[i, j]` count the problems of cell (`lengths_a[i]`, `lengths_b[j]`);
    `total` is 0 for cells not evaluated (the off-diagonal cells of an equal-length run).
    `train_max` is the training region per axis: a cell is in distribution when both of its
    lengths are within it.

    Example:
        >>> result = GridResult("addition", [1, 2], [1, 2], np.array([[5, 5], [5, 4]]), np.full((2, 2), 5),
        ...                     train_max=(1, 1))
        >>> result.summary()["in_distribution"]["accuracy"], result.summary()["out_of_distribution"]["accuracy"]
        (1.0, 0.9333333333333333)
    """

    task: str
    lengths_a: list[int]
    lengths_b: list[int]
    correct: np.ndarray
    total: np.ndarray
    train_max: tuple[int, int] = (DEFAULT_TRAIN_MAX_DIGITS, DEFAULT_TRAIN_MAX_DIGITS)
    model_name: str = ""
    num_recurrences: int | None = None
    abacus_eval_offset: int | None = None  # the Abacus offset the model used (None: no Abacus)
    samples: int = 0
    seed: int | None = None
    mode: str = "grid"  # "grid" (every cell) or "pairs" (listed cells, e.g. equal lengths)
    failures: list[dict] = field(default_factory=list)
    elapsed_s: float | None = None

    def __post_init__(self):
        self.lengths_a, self.lengths_b = [int(n) for n in self.lengths_a], [int(n) for n in self.lengths_b]
        self.correct = np.asarray(self.correct, dtype=np.int64)
        self.total = np.asarray(self.total, dtype=np.int64)
        self.train_max = tuple(int(n) for n in self.train_max)
        expected = (len(self.lengths_a), len(self.lengths_b))
        if self.correct.shape != expected or self.total.shape != expected:
            raise ValueError(f"correct/total must have shape {expected}, got {self.correct.shape}/{self.total.shape}")

    @property
    def axes(self) -> tuple[str, str]:
        """Names of the two grid axes, the task's `axes`: ("len_a", "len_b"), or ("count",
        "max_digits") for sorting."""
        return (_known_task(self.task) or Task).axes

    def axis_labels(self) -> tuple[str, str]:
        """The two axes in words, the task's `axis_labels` (an unknown task's: those of a+b)."""
        return (_known_task(self.task) or Task).axis_labels

    @property
    def accuracy(self) -> np.ndarray:
        """Per-cell accuracy, NaN where no problem was evaluated."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.total > 0, self.correct / np.maximum(self.total, 1), np.nan)

    def cell_accuracy(self, len_a: int, len_b: int) -> float:
        """Accuracy of one cell.

        Example:
            >>> result.cell_accuracy(20, 20)
            0.98
        """
        return float(self.accuracy[self.lengths_a.index(len_a), self.lengths_b.index(len_b)])

    def in_distribution_mask(self) -> np.ndarray:
        """True for cells whose lengths are both within `train_max`."""
        a = np.array(self.lengths_a)[:, None] <= self.train_max[0]
        b = np.array(self.lengths_b)[None, :] <= self.train_max[1]
        return a & b

    def summary(self) -> dict:
        """Overall, in-distribution and out-of-distribution accuracy, pooled over problems.

        Example:
            >>> result.summary()["overall"]
            {'accuracy': 0.97, 'correct': 155200, 'total': 160000}
        """
        inside, evaluated = self.in_distribution_mask(), self.total > 0
        out = {}
        for name, mask in (("overall", evaluated), ("in_distribution", inside & evaluated),
                           ("out_of_distribution", ~inside & evaluated)):
            out[name] = {**_fraction(self.correct[mask].sum(), self.total[mask].sum()), "cells": int(mask.sum())}
        return out

    def per_length(self) -> dict:
        """Accuracy by length: on the diagonal (len_a == len_b) and pooled by max(len_a, len_b).

        Example:
            >>> result.per_length()["max_length"][25]
            0.95
        """
        diagonal, by_max = {}, {}
        for i, la in enumerate(self.lengths_a):
            for j, lb in enumerate(self.lengths_b):
                if not self.total[i, j]:
                    continue
                if la == lb:
                    diagonal[la] = _fraction(self.correct[i, j], self.total[i, j])["accuracy"]
                c, t = by_max.get(max(la, lb), (0, 0))
                by_max[max(la, lb)] = (c + self.correct[i, j], t + self.total[i, j])
        return {
            "diagonal": dict(sorted(diagonal.items())),
            "max_length": {n: c / t for n, (c, t) in sorted(by_max.items())},
        }

    def to_dict(self) -> dict:
        """Everything as JSON-ready values (NaN cells become `null`).

        Example:
            >>> sorted(result.to_dict())[:4]
            ['accuracy', 'axes', 'cells', 'elapsed_s']
        """
        acc = self.accuracy
        cells = [
            {self.axes[0]: la, self.axes[1]: lb, **_fraction(self.correct[i, j], self.total[i, j])}
            for i, la in enumerate(self.lengths_a)
            for j, lb in enumerate(self.lengths_b)
            if self.total[i, j]
        ]
        per_length = self.per_length()
        return {
            "schema_version": SCHEMA_VERSION,
            "task": self.task,
            "model": self.model_name,
            "num_recurrences": self.num_recurrences,
            "abacus_eval_offset": self.abacus_eval_offset,
            "mode": self.mode,
            "samples_per_cell": self.samples,
            "seed": self.seed,
            "axes": list(self.axes),
            "train_max": list(self.train_max),
            "lengths_a": self.lengths_a,
            "lengths_b": self.lengths_b,
            "accuracy": [[None if math.isnan(v) else float(v) for v in row] for row in acc],
            "cells": cells,
            "summary": self.summary(),
            # JSON object keys are strings; the lengths are kept as their decimal text.
            "per_length": {k: {str(n): v for n, v in d.items()} for k, d in per_length.items()},
            "failures": self.failures,
            "elapsed_s": self.elapsed_s,
        }

    def to_json(self, path: str | os.PathLike) -> Path:
        """Writes `to_dict()` as indented JSON, creating the folder.

        Example:
            >>> result.to_json("eval/results.json")
            PosixPath('eval/results.json')
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> GridResult:
        """Reads a file written by `to_json` (to re-plot or compare runs).

        Example:
            >>> GridResult.from_json("eval/results.json").summary()["overall"]["accuracy"]
            0.97
        """
        data = json.loads(Path(path).read_text())
        la, lb = data["lengths_a"], data["lengths_b"]
        correct, total = np.zeros((len(la), len(lb)), np.int64), np.zeros((len(la), len(lb)), np.int64)
        ax_a, ax_b = data["axes"]
        for cell in data["cells"]:
            i, j = la.index(cell[ax_a]), lb.index(cell[ax_b])
            correct[i, j], total[i, j] = cell["correct"], cell["total"]
        return cls(
            task=data["task"], lengths_a=la, lengths_b=lb, correct=correct, total=total,
            train_max=tuple(data["train_max"]), model_name=data.get("model", ""),
            num_recurrences=data.get("num_recurrences"), samples=data.get("samples_per_cell", 0),
            seed=data.get("seed"), mode=data.get("mode", "grid"), failures=data.get("failures", []),
            elapsed_s=data.get("elapsed_s"),
        )

    def title(self) -> str:
        s = self.summary()
        pct = lambda d: "n/a" if d["accuracy"] is None else f"{100 * d['accuracy']:.1f}%"  # noqa: E731
        depth = f", R={self.num_recurrences}" if self.num_recurrences else ""
        return (
            f"{self.model_name or 'model'}: {self.task}{depth}, {self.samples}/cell\n"
            f"in-dist {pct(s['in_distribution'])}  out-of-dist {pct(s['out_of_distribution'])}  "
            f"overall {pct(s['overall'])}"
        )

    def heatmap(self, path: str | os.PathLike, dpi: int = 120) -> Path:
        """Draws the accuracy grid as a PNG: cells coloured by accuracy, the training region
        outlined, a colorbar, and a title with the model and the summary numbers. An equal-lengths
        run (only diagonal cells) is drawn as accuracy against length instead.

        Example:
            >>> result.heatmap("eval/heatmap.png")
            PosixPath('eval/heatmap.png')
        """
        import matplotlib

        matplotlib.use("Agg")  # files only; never needs a display
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        acc = self.accuracy
        y_label, x_label = self.axis_labels()

        if self.mode == "pairs":
            fig, ax = plt.subplots(figsize=(8, 4.5))
            points = sorted(
                (la, lb, acc[i, j]) for i, la in enumerate(self.lengths_a)
                for j, lb in enumerate(self.lengths_b) if self.total[i, j]
            )
            xs = [la if la == lb else f"{la}x{lb}" for la, lb, _ in points]
            numeric = all(isinstance(x, int) for x in xs)
            ax.plot(xs if numeric else range(len(xs)), [100 * a for *_, a in points], marker="o")
            if not numeric:
                ax.set_xticks(range(len(xs)), xs, rotation=90)
            ax.set_xlabel(f"{y_label} = {x_label}" if numeric else "cell")
            ax.set_ylabel("exact-match accuracy (%)")
            ax.set_ylim(-2, 102)
            ax.grid(alpha=0.3)
            if numeric and self.train_max[0] >= min(xs):
                ax.axvspan(min(xs) - 0.5, self.train_max[0] + 0.5, color="green", alpha=0.1, label="training lengths")
                ax.legend(loc="lower left")
        else:
            rows, cols = acc.shape
            fig, ax = plt.subplots(figsize=(min(4 + 0.22 * cols, 20), min(3.2 + 0.2 * rows, 18)))
            cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")  # grey: not evaluated
            image = ax.imshow(np.ma.masked_invalid(acc), cmap=cmap, vmin=0, vmax=1, origin="lower",
                              aspect="auto", interpolation="nearest")
            fig.colorbar(image, ax=ax, label="exact-match accuracy")
            step_a, step_b = max(1, math.ceil(rows / 20)), max(1, math.ceil(cols / 20))
            ax.set_yticks(range(0, rows, step_a), [str(n) for n in self.lengths_a[::step_a]])
            ax.set_xticks(range(0, cols, step_b), [str(n) for n in self.lengths_b[::step_b]])
            ax.set_xlabel(x_label)
            ax.set_ylabel(y_label)
            if rows <= 12 and cols <= 12:  # small grids: write the percentages in the cells
                for i in range(rows):
                    for j in range(cols):
                        if not math.isnan(acc[i, j]):
                            ax.text(j, i, f"{100 * acc[i, j]:.0f}", ha="center", va="center", fontsize=8,
                                    color="white" if acc[i, j] < 0.6 else "black")
            inside = self.in_distribution_mask()
            if inside.any():
                ii, jj = np.nonzero(inside)
                # Lengths are sorted, so the training cells form one rectangle.
                ax.add_patch(Rectangle((jj.min() - 0.5, ii.min() - 0.5), jj.max() - jj.min() + 1,
                                       ii.max() - ii.min() + 1, fill=False, edgecolor="red", linewidth=2,
                                       label=f"training region (≤{self.train_max[0]}×≤{self.train_max[1]})"))
                ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
        ax.set_title(self.title(), fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        return path

    def table(self) -> str:
        """A short plain-text summary: the three pooled numbers and accuracy by max length.

        Example:
            >>> print(result.table())  # doctest: +SKIP
        """
        s = self.summary()
        pct = lambda a: "  n/a" if a is None else f"{100 * a:5.1f}"  # noqa: E731
        share = lambda a: "   n/a" if a is None else pct(a) + "%"  # noqa: E731
        lines = [self.title().replace("\n", " | "), ""]
        for name in ("in_distribution", "out_of_distribution", "overall"):
            d = s[name]
            counts = f"({d['correct']}/{d['total']}, {d['cells']} cells)"
            lines.append(f"{name.replace('_', '-'):20s} {share(d['accuracy'])}  {counts}")
        per = self.per_length()["max_length" if self.mode == "grid" else "diagonal"]
        if per:
            by = f"max({', '.join(self.axes)})" if self.mode == "grid" else "length"
            lines += ["", f"accuracy (%) by {by}:"]
            items = list(per.items())
            for k in range(0, len(items), 10):
                chunk = items[k:k + 10]
                lines.append("  " + " ".join(f"{n:>5d}" for n, _ in chunk))
                lines.append("  " + " ".join(pct(a) for _, a in chunk))
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Decoding


def _pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Left-pads token lists (generation continues from the right end of every row)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for k, row in enumerate(rows):
        if row:
            ids[k, width - len(row):] = torch.tensor(row)
            mask[k, width - len(row):] = 1
    return ids, mask


def _eos_ids(model, tokenizer) -> set[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return set(ids)


def _pad_id(model, tokenizer) -> int:
    for value in (tokenizer.pad_token_id, getattr(model.generation_config, "pad_token_id", None)):
        if value is not None:
            return int(value)
    return 0


def decode_answers(tokenizer, generated: torch.Tensor, eos_ids: set[int]) -> list[tuple[str, bool]]:
    """The text of each row up to its first EOS, and whether an EOS was produced.

    Tokens are mapped to their characters one by one and joined, so the text is exactly what the
    model produced whatever the tokenizer's decoder does with spaces; a stray special token shows
    up as e.g. `<pad>` and never matches an answer.

    Example:
        >>> decode_answers(tokenizer, torch.tensor([[7, 11, 7, 3, 0]]), {3})
        [('373', True)]
    """
    out = []
    for row in generated.tolist():
        stop = next((k for k, t in enumerate(row) if t in eos_ids), None)
        tokens = tokenizer.convert_ids_to_tokens(row if stop is None else row[:stop])
        out.append(("".join(tokens), stop is not None))
    return out


@torch.inference_mode()
def greedy_generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, num_recurrences: int | None = None,
    preallocate: bool = True,
) -> list[tuple[str, bool]]:
    """One left-padded batch of greedy decoding with the KV cache, stopping at EOS.

    Returns `(text, terminated)` per prompt, text cut before the EOS. `preallocate` gives
    `generate` a cache sized for prompt + `max_new_tokens` that writes in place
    (`kv_cache.preallocated_cache`); the tokens are the same as with the default cache.

    Example:
        >>> greedy_generate(model, tokenizer, ["321+54="], max_new_tokens=5)
        [('573', True)]
    """
    encoded = tokenizer(prompts)["input_ids"]  # raises ValueError naming an unknown character
    pad_id = _pad_id(model, tokenizer)
    input_ids, attention_mask = _pad_left(encoded, pad_id)
    device = getattr(model, "device", torch.device("cpu"))
    eos_ids = _eos_ids(model, tokenizer)
    kwargs = {} if num_recurrences is None else {"num_recurrences": int(num_recurrences)}
    if preallocate and getattr(getattr(model, "config", None), "num_hidden_layers", None):
        from .kv_cache import preallocated_cache

        kwargs[CACHE_NAME] = preallocated_cache(model, input_ids.shape[1] + max_new_tokens, num_recurrences)
    output = model.generate(
        input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), max_new_tokens=max_new_tokens,
        do_sample=False, num_beams=1, pad_token_id=pad_id, eos_token_id=sorted(eos_ids) or None, use_cache=True,
        **kwargs,
    )
    return decode_answers(tokenizer, output[:, input_ids.shape[1]:].cpu(), eos_ids)


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
        >>> check_abacus_capacity(model, "addition", [(300, 300)])
        Traceback (most recent call last):
        ValueError: addition cells up to 300x300 put numbers of up to 301 digits through the model, ...
    """
    capacity = abacus_capacity(model)
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
    task="addition",
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
        >>> ds = eval_set("addition", [(3, 3)], samples=8, seed=0)
        >>> verdicts, predictions, _ = evaluate_dataset(model, tokenizer, ds, "addition")
        >>> sum(verdicts) / len(verdicts)
        1.0
    """
    from tqdm.auto import tqdm

    from hf_arith.tasks import Example

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
    task="addition",
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
        >>> result = evaluate_grid(model, tokenizer, "addition", range(1, 41), samples=100)
        >>> result.summary()["in_distribution"]["accuracy"]
        1.0
        >>> result.to_json("eval/results.json"); result.heatmap("eval/heatmap.png")
    """
    from hf_arith.data.arithmetic import eval_set

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
        >>> abacus_offset_of(model)
        0
    """
    config = getattr(model, "config", None)
    if config is None or not uses_abacus(config):
        return None
    return int(getattr(config, "abacus_eval_offset", 0))


def evaluate_equal_lengths(
    model, tokenizer, task="addition", lengths: Iterable[int] = range(101, 161), **kwargs
) -> GridResult:
    """The paper's extreme-length check: only cells with len_a == len_b (101..160 by default).

    Example:
        >>> result = evaluate_equal_lengths(model, tokenizer, samples=100)
        >>> result.per_length()["diagonal"][120]
        0.99
    """
    return evaluate_grid(model, tokenizer, task, lengths_a=None, pairs=[(n, n) for n in lengths], **kwargs)


__all__ = [
    "GridResult",
    "answer_token_budget",
    "build_cells",
    "check_abacus_capacity",
    "decode_answers",
    "evaluate_dataset",
    "evaluate_equal_lengths",
    "evaluate_grid",
    "greedy_generate",
]
