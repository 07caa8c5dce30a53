"""Arithmetic data: fixed evaluation sets, the dataset row of a problem, and collation.

Rows are dicts `{prompt, answer, len_a, len_b}` in model format (digits reversed); for sorting
`len_a` is the count of numbers and `len_b` the digits of the longest one. Training rows come from
`hf_arith.data.sources.ArithmeticSource` (seeded "train:{task}:{seed}:{i}"), evaluation sets from
`eval_set` (seeded from ("eval", task, seed, cell)): the two namespaces never share a random
stream, so equal integer seeds never give the same problems.

Example:
    >>> from hf_arith.tasks import get_task
    >>> from hf_arith.tokenization import build_arith_tokenizer
    >>> rows = [row_of(get_task("addition").format(123, 4567))]
    >>> batch = ArithmeticCollator(build_arith_tokenizer())(rows)
    >>> sorted(batch)
    ['attention_mask', 'input_ids', 'labels']
    >>> len(eval_set("addition", [(3, 3), (5, 2)], samples=10, seed=0))
    20
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import torch

from hf_arith.tasks import Example, get_task
from hf_arith.tasks.base import derive_seed

FEATURES = datasets.Features(
    {
        "prompt": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "len_a": datasets.Value("int64"),
        "len_b": datasets.Value("int64"),
    }
)
IGNORE_INDEX = -100  # labels the loss skips (prompt and padding)


def row_of(example: Example) -> dict:
    """The dataset row `{prompt, answer, len_a, len_b}` of an example (training and evaluation).

    Example:
        >>> row_of(Example("321+54=", "573", (3, 2)))
        {'prompt': '321+54=', 'answer': '573', 'len_a': 3, 'len_b': 2}
    """
    len_a, len_b = example.lengths
    return {"prompt": example.prompt, "answer": example.answer, "len_a": len_a, "len_b": len_b}


def _cells(lengths) -> list[tuple[int, int]]:
    """A list of cells from a list of (a, b) pairs or one pair."""
    lengths = list(lengths)
    if len(lengths) == 2 and all(isinstance(n, int) for n in lengths):
        return [tuple(lengths)]
    return [(int(a), int(b)) for a, b in lengths]


def eval_set(task, lengths: Iterable[Sequence[int]], samples: int, seed: int) -> datasets.Dataset:
    """`samples` problems for every cell of `lengths`, as a materialised `datasets.Dataset`
    (columns prompt, answer, len_a, len_b; cells in the given order).

    Each cell draws from its own stream, seeded from ("eval", task, seed, cell): a cell's
    problems do not depend on which other cells are asked for, and never come from a training
    stream. Problems are drawn with replacement (1-digit cells have only 100 distinct problems).

    Example:
        >>> ds = eval_set("addition", [(1, 2), (30, 30)], samples=3, seed=0)
        >>> list(ds["len_a"]), ds.column_names
        ([1, 1, 1, 30, 30, 30], ['prompt', 'answer', 'len_a', 'len_b'])
    """
    task = get_task(task)
    if samples < 0:
        raise ValueError(f"samples must be >= 0, got {samples}")
    columns = {name: [] for name in FEATURES}
    for cell in _cells(lengths):
        rng = random.Random(derive_seed("eval", task.name, int(seed), cell))
        for _ in range(samples):
            for name, value in row_of(task.sample(rng, lengths=cell)).items():
                columns[name].append(value)
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def save_eval_set(dataset: datasets.Dataset, path: str | os.PathLike) -> Path:
    """Writes an evaluation set: `.jsonl`/`.json` as JSON lines, `.parquet`, anything else as a
    `save_to_disk` folder. Read it back with `load_eval_set`.

    Example:
        >>> import tempfile
        >>> save_eval_set(eval_set("addition", [(3, 3)], 4, 0), Path(tempfile.mkdtemp()) / "addition.jsonl")
        PosixPath('.../addition.jsonl')
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        dataset.to_json(str(path), lines=True)
    elif suffix == ".parquet":
        dataset.to_parquet(str(path))
    else:
        dataset.save_to_disk(str(path))
    return path


def load_eval_set(path: str | os.PathLike) -> datasets.Dataset:
    """Reads what `save_eval_set` wrote, with the same columns and types.

    Example:
        >>> import tempfile
        >>> path = save_eval_set(eval_set("addition", [(3, 3)], 4, 0), Path(tempfile.mkdtemp()) / "addition.jsonl")
        >>> load_eval_set(path)["len_a"][:2]
        [3, 3]
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return datasets.Dataset.from_json(str(path), features=FEATURES)
    if suffix == ".parquet":
        return datasets.Dataset.from_parquet(str(path), features=FEATURES)
    return datasets.load_from_disk(str(path))


def _field(example, name: str):
    """A field of a row dict or an `Example`."""
    return example[name] if isinstance(example, dict) else getattr(example, name)


class ArithmeticCollator:
    """Rows (dicts or `Example`s) -> `input_ids, attention_mask, labels` (long tensors).

    Each sequence is prompt + answer + EOS, right-padded with the pad id (training; generation
    pads on the left). Labels copy the answer and EOS ids and are -100 on the prompt and on
    padding, so the loss is only on what the model must produce. Labels are not shifted: the
    model shifts them, as transformers' causal LMs do.

    Example:
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> collate = ArithmeticCollator(build_arith_tokenizer())
        >>> collate([{"prompt": "1+1=", "answer": "2"}])["labels"].tolist()
        [[-100, -100, -100, -100, 6, 3]]
    """

    def __init__(self, tokenizer):
        if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer needs a pad and an EOS token")
        self.tokenizer = tokenizer
        self.pad_id, self.eos_id = int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)
        self._char_ids = self._character_table(tokenizer)

    @staticmethod
    def _character_table(tokenizer) -> dict[str, int] | None:
        """char -> id when `tokenizer` is character-level (one token per vocabulary character,
        checked by encoding them all), else None. A dict lookup is ~10x faster than a call into
        the tokenizer for strings this short, and the collator runs on every training batch."""
        table = {t: i for t, i in tokenizer.get_vocab().items() if len(t) == 1}
        probe = "".join(sorted(table))
        if not probe or tokenizer(probe, add_special_tokens=False)["input_ids"] != [table[c] for c in probe]:
            return None
        return table

    def _encode(self, texts: list[str]) -> list[list[int]]:
        table = self._char_ids
        if table is not None:
            try:
                return [[table[c] for c in text] for text in texts]
            except KeyError:
                pass  # the tokenizer itself decides (ArithTokenizer raises ValueError naming it)
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def __call__(self, examples: Sequence) -> dict[str, torch.Tensor]:
        prompts = self._encode([_field(e, "prompt") for e in examples])
        # Prompt and answer are encoded apart, so the label mask never depends on how
        # characters map to tokens.
        answers = self._encode([_field(e, "answer") for e in examples])
        sequences = [p + a + [self.eos_id] for p, a in zip(prompts, answers)]
        width = max(len(s) for s in sequences)
        input_ids = torch.tensor([s + [self.pad_id] * (width - len(s)) for s in sequences], dtype=torch.long)
        positions = torch.arange(width)
        ends = torch.tensor([len(s) for s in sequences])[:, None]
        starts = torch.tensor([len(p) for p in prompts])[:, None]
        labels = input_ids.masked_fill((positions < starts) | (positions >= ends), IGNORE_INDEX)
        return {"input_ids": input_ids, "attention_mask": (positions < ends).long(), "labels": labels}


__all__ = [
    "FEATURES",
    "IGNORE_INDEX",
    "ArithmeticCollator",
    "eval_set",
    "load_eval_set",
    "row_of",
    "save_eval_set",
]
