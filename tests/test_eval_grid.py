"""Length-grid evaluation: scoring and summaries against oracle "models" whose answers are known,
plus an end-to-end run of a tiny real model, `answer()` and the command helpers."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.layers import CACHE_NAME
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM

from hf_arith.evaluation.generate import answer
from hf_arith.evaluation.grid import evaluate_equal_lengths, evaluate_grid
from hf_arith.evaluation.lengths import cells_of, parse_lengths, parse_range
from hf_arith.evaluation.results import GridResult
from hf_arith.tasks import AdditionTask
from hf_arith.tokenization import build_arith_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_arith_tokenizer()


def solve_with_ints(prompt: str) -> str:
    """The model-format answer of "321+54=" / "21x3=" / "a:3,b:21=", computed here with Python
    integers."""
    if ":" in prompt:
        numbers = [int(item.split(":")[1][::-1]) for item in prompt[:-1].split(",")]
        return ",".join("abcdefghij"[k] for k in sorted(range(len(numbers)), key=lambda k: (numbers[k], k)))
    a, op, b = re.fullmatch(r"(\d+)([+x*])(\d+)=", prompt).groups()
    a, b = int(a[::-1]), int(b[::-1])
    return str(a + b if op == "+" else a * b)[::-1]


def operand_lengths(prompt: str) -> tuple[int, int]:
    a, b = re.fullmatch(r"(\d+)[+x*](\d+)=", prompt).groups()
    return len(a), len(b)


class Oracle:
    """Stands in for a causal LM in `generate`: reads each (left-padded) prompt and emits
    `respond(prompt)` then EOS, then padding, `max_new_tokens` in all. Records every call."""

    def __init__(self, tokenizer, respond, name="oracle"):
        self.tokenizer, self.respond = tokenizer, respond
        self.device = torch.device("cpu")
        self.config = SimpleNamespace(embedding_positions="none")
        self.generation_config = SimpleNamespace(
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
        )
        self.name_or_path = f"runs/{name}"
        self.calls = []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        self.calls.append({"shape": tuple(input_ids.shape), "padding": int((attention_mask == 0).sum()),
                           "max_new_tokens": max_new_tokens, **kwargs})
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        rows = []
        for ids, mask in zip(input_ids, attention_mask):
            prompt = "".join(self.tokenizer.convert_ids_to_tokens(ids[mask.bool()].tolist()))
            tokens = self.tokenizer.convert_tokens_to_ids(list(self.respond(prompt))) + [eos]
            rows.append((tokens + [pad] * max_new_tokens)[:max_new_tokens])
        return torch.cat([input_ids, torch.tensor(rows, dtype=torch.long)], dim=1)


def test_perfect_oracle_scores_every_cell(tokenizer):
    oracle = Oracle(tokenizer, solve_with_ints)
    result = evaluate_grid(oracle, tokenizer, "addition", range(1, 4), samples=5, batch_size=7, progress=False,
                           num_recurrences=3, train_max_digits=2)
    assert result.total.tolist() == [[5] * 3] * 3
    assert (result.accuracy == 1).all()
    summary = result.summary()
    assert summary["overall"] == {"accuracy": 1.0, "correct": 45, "total": 45, "cells": 9}
    assert summary["in_distribution"]["cells"] == 4 and summary["out_of_distribution"]["cells"] == 5
    # num_recurrences reaches generate; batches never pad (same prompt length), budgets fit the task.
    assert all(call["num_recurrences"] == 3 for call in oracle.calls)
    assert sum(call["padding"] for call in oracle.calls) == 0
    assert sum(call["shape"][0] for call in oracle.calls) == 45


def test_wrong_outside_training_lengths_splits_in_and_out_of_distribution(tokenizer):
    def respond(prompt):  # right when both operands have <= 2 digits, a wrong last digit otherwise
        truth = solve_with_ints(prompt)
        if max(operand_lengths(prompt)) <= 2:
            return truth
        return truth[:-1] + str((int(truth[-1]) + 1) % 10)

    result = evaluate_grid(Oracle(tokenizer, respond), tokenizer, "addition", range(1, 5), lengths_b=range(1, 4),
                           samples=4, progress=False, train_max_digits=2)
    expected = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=float)
    np.testing.assert_array_equal(result.accuracy, expected)
    assert result.summary()["in_distribution"]["accuracy"] == 1.0
    assert result.summary()["out_of_distribution"]["accuracy"] == 0.0
    per_length = result.per_length()
    assert per_length["diagonal"] == {1: 1.0, 2: 1.0, 3: 0.0}
    assert per_length["max_length"] == {1: 1.0, 2: 1.0, 3: 0.0, 4: 0.0}
    assert len(result.failures) > 0 and {"prompt", "answer", "prediction", "stopped_at_eos"} <= set(result.failures[0])


@pytest.mark.parametrize("suffix", ["0", "1"])
def test_right_digits_then_more_is_wrong(tokenizer, suffix):
    # "5730" reversed is 0375 = 375: a lenient integer parse would call it right.
    result = evaluate_grid(Oracle(tokenizer, lambda p: solve_with_ints(p) + suffix), tokenizer, "addition",
                           [2], samples=6, progress=False)
    assert result.summary()["overall"]["accuracy"] == 0.0


def test_never_stopping_is_wrong(tokenizer):
    oracle = Oracle(tokenizer, lambda p: solve_with_ints(p) + "9" * 50)
    result = evaluate_grid(oracle, tokenizer, "addition", [3], samples=3, progress=False)
    assert result.summary()["overall"]["accuracy"] == 0.0
    assert result.failures[0]["stopped_at_eos"] is False
    assert oracle.calls[0]["max_new_tokens"] == AdditionTask().answer_budget((3, 3)) == 5  # 999 + 999: 4 digits, then EOS


def test_multiplication_grid_and_budget(tokenizer):
    oracle = Oracle(tokenizer, solve_with_ints)
    result = evaluate_grid(oracle, tokenizer, "multiplication", [1, 3], samples=3, progress=False)
    assert result.summary()["overall"]["accuracy"] == 1.0
    assert max(call["max_new_tokens"] for call in oracle.calls) == 3 + 3 + 1


def test_sorting_cells_are_count_by_digits(tokenizer):
    from hf_arith.data.arithmetic import eval_set

    cells = [(2, 1), (2, 3), (3, 1), (3, 3)]
    truth = {row["prompt"]: row["answer"] for row in eval_set("sorting", cells, 3, 7)}
    result = evaluate_grid(Oracle(tokenizer, truth.__getitem__), tokenizer, "sorting", [2, 3], lengths_b=[1, 3],
                           samples=3, seed=7, progress=False)
    assert result.axes == ("count", "max_digits")
    assert result.total.tolist() == [[3, 3], [3, 3]] and result.summary()["overall"]["accuracy"] == 1.0
    assert set(result.to_dict()["cells"][0]) >= {"count", "max_digits", "accuracy"}


def test_evaluation_problems_are_the_seeded_eval_set(tokenizer):
    from hf_arith.data.arithmetic import eval_set

    runs = []
    for seed in (3, 3, 4):
        seen = []
        evaluate_grid(Oracle(tokenizer, lambda p: seen.append(p) or solve_with_ints(p)), tokenizer, "addition",
                      [4, 6], samples=4, seed=seed, progress=False)
        runs.append(sorted(seen))
    assert runs[0] == runs[1] == sorted(eval_set("addition", cells_of("4,6"), 4, 3)["prompt"])
    assert runs[0] != runs[2]


def test_json_schema_round_trip_and_heatmap(tokenizer, tmp_path):
    result = evaluate_grid(Oracle(tokenizer, solve_with_ints, name="oracle-run"), tokenizer, "addition",
                           range(1, 4), samples=2, progress=False, train_max_digits=2)
    data = json.loads(result.to_json(tmp_path / "eval" / "results.json").read_text())
    assert data["schema_version"] == 1 and data["task"] == "addition" and data["model"] == "oracle-run"
    assert data["axes"] == ["len_a", "len_b"] and data["train_max"] == [2, 2]
    assert data["lengths_a"] == [1, 2, 3] and len(data["accuracy"]) == 3 and len(data["accuracy"][0]) == 3
    assert len(data["cells"]) == 9
    assert data["cells"][0] == {"len_a": 1, "len_b": 1, "accuracy": 1.0, "correct": 2, "total": 2}
    assert set(data["summary"]) == {"overall", "in_distribution", "out_of_distribution"}
    assert data["per_length"]["diagonal"] == {"1": 1.0, "2": 1.0, "3": 1.0}
    again = GridResult.from_json(tmp_path / "eval" / "results.json")
    assert again.summary() == result.summary() and again.train_max == (2, 2)

    png = result.heatmap(tmp_path / "eval" / "heatmap.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_equal_lengths_run_and_its_plot(tokenizer, tmp_path):
    result = evaluate_equal_lengths(Oracle(tokenizer, solve_with_ints), tokenizer, "addition", [5, 6, 9], samples=2,
                                    progress=False, train_max_digits=5)
    assert result.mode == "pairs" and int(result.total.sum()) == 6
    assert result.per_length()["diagonal"] == {5: 1.0, 6: 1.0, 9: 1.0}
    assert result.summary()["in_distribution"]["total"] == 2
    assert np.isnan(result.accuracy[0, 1])  # off-diagonal cells were not evaluated
    assert json.loads(result.to_json(tmp_path / "r.json").read_text())["accuracy"][0][1] is None
    assert result.heatmap(tmp_path / "equal.png").stat().st_size > 5000


def test_answer_round_trip_in_normal_notation(tokenizer):
    oracle = Oracle(tokenizer, solve_with_ints)
    assert answer(oracle, tokenizer, ["123+4567", "99+1", "12x34"]) == ["4690", "100", "408"]
    assert answer(oracle, tokenizer, "5+5") == ["10"]
    assert answer(oracle, tokenizer, ["a:3,b:12", "30,4,7", [5, 1, 3]]) == ["a,b", "b,c,a", "b,c,a"]


def test_answer_names_an_unknown_character(tokenizer):
    with pytest.raises(ValueError, match=r"\?") as info:
        answer(Oracle(tokenizer, solve_with_ints), tokenizer, ["12?3"])
    assert "12?3" in str(info.value) and info.value.__cause__ is None


def tiny_model(**overrides):
    torch.manual_seed(0)
    values = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=1, num_recurrences=2,
                  abacus_num_positions=24, abacus_max_k=4)
    return AbacusForCausalLM(AbacusConfig(**{**values, **overrides})).eval()


def test_tiny_model_end_to_end(tokenizer, tmp_path):
    model = tiny_model()
    result = evaluate_grid(model, tokenizer, "addition", range(1, 3), samples=3, batch_size=4, progress=False,
                           num_recurrences=3)
    assert result.total.sum() == 12 and 0.0 <= result.summary()["overall"]["accuracy"] <= 1.0
    assert result.train_max == (20, 20)  # no recipe.yaml next to a model built in memory
    assert len(answer(model, tokenizer, ["12+345", "7+8"])) == 2


def test_too_long_for_the_abacus_table_is_one_clear_error(tokenizer):
    model = tiny_model()  # 24 rows: numbers of up to 23 digits
    with pytest.raises(ValueError, match="Abacus table") as info:
        answer(model, tokenizer, ["1" * 30 + "+1"])
    assert info.value.__cause__ is None and "1" * 30 in str(info.value)
    with pytest.raises(ValueError, match="Abacus table"):
        evaluate_grid(model, tokenizer, "addition", [23], samples=1, progress=False)  # the sum has 24 digits


@pytest.mark.parametrize("arch", ["abacus", "olmo"])
def test_the_capacity_check_runs_up_front_for_every_model_with_abacus_positions(tokenizer, arch):
    from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
    from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM

    if arch == "abacus":
        model = tiny_model()  # 24 rows
    else:
        model = ArithOlmoForCausalLM(ArithOlmoConfig(
            vocab_size=31, hidden_size=32, num_attention_heads=4, num_hidden_layers=1, intermediate_size=64,
            abacus=True, digit_token_ids=list(range(4, 14)), abacus_num_positions=24, pad_token_id=0,
            eos_token_id=3)).eval()
    # The grid's own check names the table before any generation (the forward's error would say "rows").
    with pytest.raises(ValueError, match="positions at most 23 digits"):
        evaluate_grid(model, tokenizer, "addition", [23], samples=1, progress=False)


def test_length_specs():
    assert parse_range("1-3,7") == [1, 2, 3, 7]
    assert parse_lengths("1-40")["lengths_a"] == list(range(1, 41)) and parse_lengths("1-40")["lengths_b"] is None
    assert parse_lengths("1-2x5")["lengths_b"] == [5]
    assert parse_lengths("101-103:equal")["pairs"] == [(101, 101), (102, 102), (103, 103)]
    assert cells_of("1-2") == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for bad in ("0-3", "5-2", "1-3:diag", "a", "1x2x3"):
        with pytest.raises(ValueError):
            parse_lengths(bad)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tokenizer):
    """A tiny model saved the way training saves it, with a recipe naming 3-digit training."""
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_model().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "recipe.yaml").write_text("data:\n  task: addition\n  task_args:\n    max_digits: 3\n")
    return folder


def test_run_eval_writes_results_heatmap_and_table(saved_model, tmp_path, capsys):
    from hf_arith.evaluation.commands import run_eval

    result = run_eval(saved_model, None, "1-4", samples=2, out_dir=tmp_path / "eval", batch_size=8,
                      num_recurrences=1, device="cpu", progress=False)
    assert result.task == "addition" and result.train_max == (3, 3)  # from recipe.yaml
    assert result.summary()["in_distribution"]["cells"] == 9 and result.num_recurrences == 1
    data = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert data["model"] == saved_model.name and data["num_recurrences"] == 1
    assert (tmp_path / "eval" / "heatmap.png").stat().st_size > 5000
    assert "out-of-distribution" in capsys.readouterr().out


def test_run_generate_prints_one_answer_per_problem(saved_model, capsys):
    from hf_arith.evaluation.commands import run_generate

    answers = run_generate(saved_model, ["12+34", "5+6"], device="cpu")
    assert len(answers) == 2 and capsys.readouterr().out.splitlines() == answers


def test_training_region_comes_from_the_task_with_the_recipe_arguments(tmp_path):
    from hf_arith.evaluation.grid import default_train_max, training_region

    assert training_region("addition", {"max_digits": 7}) == (7, 7) and training_region("addition") == (20, 20)
    assert training_region("sorting", {"max_count": 5, "max_digits": 8}) == (5, 8)
    assert training_region("sort", {"max_digits": 3}) == (10, 3) and training_region("sorting") == (10, 10)
    assert training_region("multiplication", {"max_digits": 15}) == (15, 15)
    # No max_digits: the task's default, the paper's multiplication region (1..15 digits), which the
    # model trained on (the evaluation used to assume 20 here).
    assert training_region("multiplication") == (15, 15)
    with pytest.raises(ValueError, match="addition"):
        training_region("addition", {"max_count": 3})

    folder = tmp_path / "sorting_model"
    folder.mkdir()
    (folder / "recipe.yaml").write_text("data:\n  task: sort\n  task_args: {max_count: 4, max_digits: 6}\n")
    model = SimpleNamespace(name_or_path=str(folder))
    assert default_train_max(model, "sorting") == (4, 6)  # the recipe's alias names the same task
    assert default_train_max(model, "addition") == (20, 20)  # trained on another task: the default


def test_unknown_task_results_keep_the_binary_axes(tmp_path):
    result = GridResult("division", [1, 2], [1], np.array([[1], [0]]), np.ones((2, 1)), train_max=(1, 1))
    assert result.axes == ("len_a", "len_b") and result.axis_labels() == ("digits of a", "digits of b")
    sorting = GridResult("sorting", [2], [3], np.ones((1, 1)), np.ones((1, 1)), train_max=(10, 10))
    assert sorting.axis_labels() == ("numbers to sort", "digits per number (max)")
    assert result.heatmap(tmp_path / "division.png").stat().st_size > 5000


def test_run_data_eval_set_matches_what_eval_measures(tmp_path):
    from hf_arith.evaluation.commands import run_data_eval_set

    saved = run_data_eval_set("addition", "2-3", samples=2, seed=5, out=tmp_path / "set.parquet")
    assert saved.column_names[:4] == ["prompt", "answer", "len_a", "len_b"] and len(saved) == 8
    assert (tmp_path / "set.parquet").stat().st_size > 0
    seen = []
    tokenizer = build_arith_tokenizer()
    evaluate_grid(Oracle(tokenizer, lambda p: seen.append(p) or solve_with_ints(p)), tokenizer, "addition",
                  range(2, 4), samples=2, seed=5, progress=False)
    assert sorted(seen) == sorted(saved["prompt"])
    # ... and the saved file evaluates as the same grid.
    from hf_arith.data.arithmetic import load_eval_set

    again = evaluate_grid(Oracle(tokenizer, solve_with_ints), tokenizer, "addition",
                          dataset=load_eval_set(tmp_path / "set.parquet"), progress=False)
    assert again.mode == "grid" and again.lengths_a == [2, 3] and again.total.tolist() == [[2, 2], [2, 2]]
    assert again.summary()["overall"]["accuracy"] == 1.0


@pytest.mark.parametrize("num_recurrences", [None, 3])
def test_preallocated_cache_gives_the_same_tokens_as_the_default_cache(tokenizer, num_recurrences):
    from hf_arith.evaluation.kv_cache import preallocated_cache

    model = tiny_model(abacus_num_positions=64)
    encoded = tokenizer(["12+345=", "9+9=", "4321+87654="], padding=True, return_tensors="pt")  # left-padded
    kwargs = dict(max_new_tokens=9, do_sample=False, pad_token_id=0, eos_token_id=None)
    if num_recurrences:
        kwargs["num_recurrences"] = num_recurrences
    model.generation_config.eos_token_id = None  # fixed length: compare every step
    default = model.generate(**encoded, **kwargs)
    cache = preallocated_cache(model, encoded["input_ids"].shape[1] + 9, num_recurrences)
    reserved = model.generate(**encoded, **{CACHE_NAME: cache}, **kwargs)
    assert torch.equal(default, reserved)
    # One buffer per slot, allocated once and never outgrown.
    assert len(cache.layers) == 1 * (num_recurrences or 2)
    assert all(layer._keys_buffer.shape[-2] == encoded["input_ids"].shape[1] + 9 for layer in cache.layers)
