"""Training examples, evaluation sets, collation and bucketing."""

import random
import re
from collections import Counter

import datasets
import pytest
import torch

from hf_arith.data.arithmetic import (
    FEATURES,
    IGNORE_INDEX,
    ArithmeticCollator,
    eval_set,
    load_eval_set,
    row_of,
    save_eval_set,
)
from hf_arith.data.sources import ArithmeticSource, build_source, micro_batches
from hf_arith.data.specs import DataSpec
from hf_arith.tasks import AdditionTask, Example
from hf_arith.tokenization import build_arith_tokenizer
from hf_arith.training.optim import process_share


@pytest.fixture(scope="module")
def collate():
    return ArithmeticCollator(build_arith_tokenizer())


def check_binary_row(row: dict) -> None:
    """The row's answer and lengths, recomputed with Python ints from the prompt."""
    a, op, b = re.fullmatch(r"([0-9]+)([+x])([0-9]+)=", row["prompt"]).groups()
    value = int(a[::-1]) + int(b[::-1]) if op == "+" else int(a[::-1]) * int(b[::-1])
    assert row["answer"] == str(value)[::-1]
    assert (row["len_a"], row["len_b"]) == (len(a), len(b))


def take(source: ArithmeticSource, n: int) -> list[dict]:
    """The first `n` training examples, as the trainer reads them (global indices 0..n-1)."""
    return source.examples(0, n)


# --- training examples (what the trainer draws: ArithmeticSource) ----------------------------

def test_training_rows_are_right_and_deterministic_per_seed():
    rows = take(ArithmeticSource("addition", seed=0), 300)
    assert set(rows[0]) == {"prompt", "answer", "len_a", "len_b"}
    for row in rows:
        check_binary_row(row)
    assert take(ArithmeticSource("addition", seed=0), 300) == rows
    assert take(ArithmeticSource("addition", seed=1), 300) != rows
    for row in take(ArithmeticSource("multiplication", seed=0, task_args={"max_digits": 4}), 200):
        check_binary_row(row)
        assert max(row["len_a"], row["len_b"]) <= 4


def test_an_arithmetic_recipe_trains_on_arithmetic_source_seeded_per_index():
    """The one training data path: what `build_source` gives the trainer, example i drawn from
    random.Random("train:{task}:{seed}:{i}") (changing that changes every run's losses)."""
    source = build_source(DataSpec(task="addition", task_args={"max_digits": 10}), seed=3, tokenizer=None)
    assert isinstance(source, ArithmeticSource)
    expected = row_of(AdditionTask(max_digits=10).sample(random.Random("train:addition:3:7")))
    assert source.examples(7, 8) == [expected]


def test_training_rows_have_the_eval_set_columns():
    rows = take(ArithmeticSource("sorting", seed=3), 50)
    typed = datasets.Dataset.from_list(rows, features=FEATURES)
    assert list(typed.features) == ["prompt", "answer", "len_a", "len_b"]
    assert typed.to_list() == rows


def test_two_ranks_read_disjoint_shares():
    # Long operands: distinct examples practically never repeat a problem, so any shared prompt
    # would mean a shared example. The trainer's cut: micro-batches of the global batch, each
    # process a contiguous block of them (`process_share`).
    source = ArithmeticSource(AdditionTask(min_digits=15, max_digits=20), seed=0)
    micro, start, stop = 50, 0, 800
    count = (stop - start) // micro
    blocks = [process_share(0, count, r, 2) for r in range(2)]
    assert blocks == [(0, 8), (8, 16)]
    shares = [micro_batches(source.examples(start + a * micro, start + b * micro), micro) for a, b in blocks]
    prompts = [[row["prompt"] for batch in share for row in batch] for share in shares]
    assert not set(prompts[0]) & set(prompts[1])
    full = [row["prompt"] for row in source.examples(start, stop)]
    assert prompts[0] + prompts[1] == full  # rank 0 starts at the global batch's first example
    # Deterministic per rank, too.
    assert [row["prompt"] for row in source.examples(start + 8 * micro, stop)] == prompts[1]


# --- evaluation sets -------------------------------------------------------------------------

def test_eval_set_has_exactly_samples_per_cell():
    cells = [(1, 1), (3, 7), (25, 2)]
    ds = eval_set("addition", cells, samples=12, seed=0)
    assert ds.column_names == ["prompt", "answer", "len_a", "len_b"] and len(ds) == 36
    assert Counter(zip(ds["len_a"], ds["len_b"])) == {cell: 12 for cell in cells}
    for row in ds:
        check_binary_row(row)


def test_eval_set_is_seeded_cellwise_and_apart_from_training():
    both = eval_set("multiplication", [(2, 2), (9, 9)], samples=20, seed=5)
    alone = eval_set("multiplication", [(9, 9)], samples=20, seed=5)
    assert list(both["prompt"][20:]) == list(alone["prompt"])  # a cell does not depend on the others
    assert list(eval_set("multiplication", [(9, 9)], 20, seed=6)["prompt"]) != list(alone["prompt"])
    # Same integer seed as a training stream, no shared problems (9x9 cells have ~10^16 of them).
    train = {row["prompt"] for row in take(ArithmeticSource("multiplication", seed=5), 5000)}
    assert not train & set(alone["prompt"])
    assert eval_set("addition", (4, 4), samples=3, seed=0)["len_a"] == [4, 4, 4]  # one cell as a pair


def test_sorting_eval_cells_are_count_and_longest_number():
    ds = eval_set("sorting", [(3, 1), (10, 10)], samples=30, seed=0)
    for row in ds:
        items = row["prompt"][:-1].split(",")
        assert (row["len_a"], row["len_b"]) == (len(items), max(len(i.split(":")[1]) for i in items))


@pytest.mark.parametrize("name", ["set.jsonl", "set.parquet", "set_folder"])
def test_eval_set_save_and_load(tmp_path, name):
    ds = eval_set("sorting", [(2, 3), (4, 1)], samples=5, seed=1)
    loaded = load_eval_set(save_eval_set(ds, tmp_path / name))
    assert loaded.to_list() == ds.to_list() and loaded.features == ds.features


# --- collation -------------------------------------------------------------------------------

def test_collator_masks_prompt_and_padding(collate):
    batch = collate([{"prompt": "1+1=", "answer": "2"}, Example("21+3=", "51", (2, 1))])
    p, e = -100, 3  # ignore index, EOS id
    assert batch["input_ids"].tolist() == [[5, 14, 5, 18, 6, e, 0, 0], [6, 5, 14, 7, 18, 9, 5, e]]
    assert batch["attention_mask"].tolist() == [[1] * 6 + [0, 0], [1] * 8]
    assert batch["labels"].tolist() == [[p, p, p, p, 6, e, p, p], [p, p, p, p, p, 9, 5, e]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collator_on_training_rows_against_the_tokenizer(collate):
    tok = build_arith_tokenizer()
    rows = take(ArithmeticSource("sorting", seed=0), 64) + take(ArithmeticSource("addition", seed=0), 64)
    batch = collate(rows)
    for k, row in enumerate(rows):
        n_prompt, n_answer = len(row["prompt"]), len(row["answer"]) + 1
        expected = tok(row["prompt"] + row["answer"])["input_ids"] + [tok.eos_token_id]
        assert batch["input_ids"][k, : n_prompt + n_answer].tolist() == expected
        labels = batch["labels"][k]
        assert (labels[:n_prompt] == IGNORE_INDEX).all() and (labels[n_prompt + n_answer:] == IGNORE_INDEX).all()
        assert labels[n_prompt: n_prompt + n_answer].tolist() == expected[n_prompt:]
        assert batch["attention_mask"][k].sum() == n_prompt + n_answer


def test_collator_unknown_characters(collate):
    with pytest.raises(ValueError, match="'\\?'"):
        collate([{"prompt": "1?1=", "answer": "2"}])


# --- bucketing -------------------------------------------------------------------------------

