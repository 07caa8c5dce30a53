"""Training data as a function of the global example index.

A source answers one question: which examples are global indices `[start, stop)`? The trainer
asks it for each step's global batch (`BatchSchedule.span(step)`), takes this process's
contiguous share, sorts it by length and cuts micro-batches. Nothing depends on the batch size or
the number of processes, so a run on 1 or 2 processes sees the same global batches, and a resumed
run continues at the exact next example without skipping through a stream.

Two sources:
- `ArithmeticSource`: example i is a pure function of (seed, i), generated on demand.
- `InstanceSource` (`hf_arith.data.instances`): fixed-length token instances (OLMo): example i
  is `instances[order[i]]`, where `order` is the run's global order over a prepared folder.

Example:
    >>> source = ArithmeticSource("addition", seed=0, task_args={"max_digits": 5})
    >>> rows = source.examples(0, 4)
    >>> rows[0] == source.examples(0, 1)[0]
    True
    >>> sorted(source.collate(rows))
    ['attention_mask', 'input_ids', 'labels']
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from transformers import AutoTokenizer

from hf_arith.errors import RecipeError
from hf_arith.tasks import DEFAULT_TASK, get_task
from hf_arith.tokenization import build_arith_tokenizer

from .arithmetic import ArithmeticCollator, row_of
from .instances import instance_source
from .specs import DataSpec


@runtime_checkable
class Source(Protocol):
    """What the trainer needs from training data.

    - `examples(start, stop)`: the examples with global indices `start..stop-1`, in order; a pure
      function of the indices (and the source's seed).
    - `collate(examples)`: a batch dict with at least `input_ids`, `attention_mask` and `labels`
      (-100 where there is no loss; not shifted: the model shifts).
    - `length(example)`: tokens the example occupies, used to sort a share before cutting it into
      micro-batches (less padding).
    """

    def examples(self, start: int, stop: int) -> list[dict]: ...

    def collate(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]: ...

    def length(self, example: dict) -> int: ...


class ArithmeticSource:
    """Arithmetic problems generated on demand; example i comes from
    `random.Random(f"train:{task}:{seed}:{i}")`, so it depends on nothing but (task, seed, i).

    String seeds go through SHA-512 in `random.Random`, stable across Python versions and
    platforms. The "train" namespace keeps these streams apart from the evaluation sets (seeded
    from ("eval", ...)).

    Example:
        >>> source = ArithmeticSource("addition", seed=0)
        >>> source.examples(5, 6) == source.examples(0, 10)[5:6]
        True
        >>> source.length({"prompt": "321+54=", "answer": "573"})
        10
    """

    def __init__(self, task=DEFAULT_TASK, seed: int = 0, task_args: dict | None = None, tokenizer=None):
        self.task = get_task(task, **(task_args or {}))
        self.name = getattr(self.task, "name", str(task))
        self.seed = int(seed)
        if tokenizer is None:
            tokenizer = build_arith_tokenizer()
        self.collate = ArithmeticCollator(tokenizer)

    def example(self, index: int) -> dict:
        """Example `index` as a row `{prompt, answer, len_a, len_b}`."""
        return row_of(self.task.sample(random.Random(f"train:{self.name}:{self.seed}:{index}")))

    def examples(self, start: int, stop: int) -> list[dict]:
        """Examples `start..stop-1`.

        Example:
            >>> len(ArithmeticSource("addition", 0).examples(10, 20))
            10
        """
        return [self.example(i) for i in range(start, stop)]

    @staticmethod
    def length(example: dict) -> int:
        """Tokens of the example without EOS (one per character)."""
        return len(example["prompt"]) + len(example["answer"])


def build_tokenizer(data: DataSpec):
    """The tokenizer of a run: the built-in character tokenizer for arithmetic, else
    `AutoTokenizer.from_pretrained(data.tokenizer)`.

    Example:
        >>> build_tokenizer(DataSpec(kind="arithmetic")).eos_token_id
        3
    """
    if data.kind == "arithmetic":
        return build_arith_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(data.tokenizer, trust_remote_code=True)
    except (OSError, ValueError) as err:
        raise RecipeError(f"data.tokenizer={data.tokenizer!r} could not be loaded ({err}); "
                          f"give a folder written by `hf-arith tokenizer train` or a Hub id") from None


def build_source(data: DataSpec, seed: int, tokenizer) -> Source:
    """The training source a recipe's `data` section describes.

    `kind: text` opens a prepared folder (`hf_arith.data.instances.instance_source`: the memmap in
    the run's global order, checked with the tokenizer against the manifest).

    Example:
        >>> build_source(DataSpec(task="addition", task_args={"max_digits": 3}), 0, None).task.max_digits
        3
    """
    if data.kind == "arithmetic":
        try:
            return ArithmeticSource(data.task, seed, data.task_args, tokenizer)
        except ValueError as err:  # unknown task or bad task arguments
            raise RecipeError(f"data.task={data.task!r} with data.task_args={data.task_args}: {err}") from None
    return instance_source(data.path, seed=seed, sequence_length=data.sequence_length, tokenizer=tokenizer)


def micro_batches(examples: list[dict], size: int, length=None) -> list[list[dict]]:
    """Cuts a process's share into micro-batches of at most `size` examples; with `length`
    (a function of an example) sorts by it first (stable), so that each micro-batch pads little.

    Example:
        >>> rows = [{"n": n} for n in (5, 1, 4, 2, 3)]
        >>> [[r["n"] for r in b] for b in micro_batches(rows, 2, length=lambda r: r["n"])]
        [[1, 2], [3, 4], [5]]
    """
    if length is not None:
        examples = sorted(examples, key=length)
    return [examples[i:i + size] for i in range(0, len(examples), size)]


__all__ = ["ArithmeticSource", "Source", "build_source", "build_tokenizer", "micro_batches"]
