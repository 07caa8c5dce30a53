"""Tasks against independent references: Python big ints, `sorted`, and the spec's examples."""

import random
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_arith.tasks import (
    AdditionTask,
    Example,
    MultiplicationTask,
    SortingTask,
    from_model_answer,
    get_task,
    task_for_prompt,
    to_model_format,
    uniform_int_of_length,
)
from hf_arith.tasks.sorting import LABELS

SEPARATORS = set("0123456789+-x*=,:")
non_negative = st.integers(min_value=0, max_value=10**60)


def reference_binary(prompt: str) -> tuple[int, str, int]:
    """(a, op, b) read from a model-format prompt with a regex, independently of the tasks."""
    a, op, b = re.fullmatch(r"([0-9]+)([+x])([0-9]+)=", prompt).groups()
    return int(a[::-1]), op, int(b[::-1])


def reference_sorting(prompt: str) -> tuple[list[int], str]:
    """(numbers, answer) of a sorting prompt, with Python's sort."""
    items = re.fullmatch(r"((?:[a-j]:[0-9]+,)*[a-j]:[0-9]+)=", prompt).group(1).split(",")
    labels = [item.split(":")[0] for item in items]
    assert labels == list(LABELS[: len(items)])
    numbers = [int(item.split(":")[1][::-1]) for item in items]
    ranked = sorted(zip(numbers, labels))  # ties: label order
    return numbers, ",".join(label for _, label in ranked)


# --- the spec's and the design's examples --------------------------------------------------

def test_spec_addition_line():
    ex = AdditionTask().format(36001, 711271888385599787)
    assert ex.text == "10063+787995583888172117=887536583888172117"
    assert ex.lengths == (5, 18)


def test_spec_sorting_line():
    assert SortingTask().format(123, 45).text == "a:321,b:54=b,a"


def test_design_helpers():
    assert to_model_format("123+4567") == "321+7654="
    assert from_model_answer("0964") == "4690"
    assert AdditionTask().parse_answer("573") == 375
    assert Example("321+54=", "573", (3, 2)).text == "321+54=573"


# --- sampling -------------------------------------------------------------------------------

@pytest.mark.parametrize("task", [AdditionTask(), MultiplicationTask()], ids=["addition", "multiplication"])
def test_samples_are_right_by_python_ints(task):
    rng = random.Random(0)
    for _ in range(3000):
        ex = task.sample(rng)
        a, op, b = reference_binary(ex.prompt)
        assert op == task.operator
        assert ex.answer == str(a + b if op == "+" else a * b)[::-1]
        # Exactly the drawn lengths, and no zero padding (a reversed number never ends in 0).
        operands = ex.prompt[:-1].split(op)
        assert ex.lengths == tuple(len(x) for x in operands)
        assert all(len(x) == 1 or x[-1] != "0" for x in operands + [ex.answer])
        assert all(task.min_digits <= n <= task.max_digits for n in ex.lengths)


def chi_square(counts: Counter, cells: list) -> float:
    expected = sum(counts.values()) / len(cells)
    return sum((counts[c] - expected) ** 2 / expected for c in cells)


@pytest.mark.parametrize("name", ["addition", "multiplication", "sorting"])
def test_length_cells_are_uniform_over_the_grid(name):
    task = get_task(name)
    grid = task.length_grid()
    rng = random.Random(1)
    counts = Counter(task.sample(rng).lengths for _ in range(20_000))
    assert set(counts) == set(grid)
    # Chi-square with len(grid)-1 degrees of freedom: mean df, sd sqrt(2 df); 6 sd is a loose bound
    # that a skewed sampler (e.g. uniform numbers instead of uniform lengths) fails by far.
    df = len(grid) - 1
    assert chi_square(counts, grid) < df + 6 * (2 * df) ** 0.5


def test_uniform_length_sampling_keeps_the_random_stream_of_earlier_runs():
    # Earlier runs drew la, lb with randint, then each operand: a recipe and seed reproduce them.
    task, rng, ref = AdditionTask(max_digits=20), random.Random(7), random.Random(7)
    for _ in range(200):
        la, lb = ref.randint(1, 20), ref.randint(1, 20)
        assert task.sample(rng) == task.format(uniform_int_of_length(ref, la), uniform_int_of_length(ref, lb))


@pytest.mark.parametrize("name", ["addition", "multiplication"])
def test_linear_length_sampling_weighs_each_length_by_its_rank(name):
    task = get_task(name, min_digits=3, max_digits=6, length_sampling="linear")
    rng = random.Random(3)
    counts = Counter(n for _ in range(10_000) for n in task.sample(rng).lengths)
    # Each operand independently: P(3, 4, 5, 6 digits) = 1, 2, 3, 4 tenths.
    expected = {3: 0.1, 4: 0.2, 5: 0.3, 6: 0.4}
    df = len(expected) - 1
    chi = sum((counts[n] - 20_000 * p) ** 2 / (20_000 * p) for n, p in expected.items())
    assert set(counts) == set(expected) and chi < df + 6 * (2 * df) ** 0.5
    assert "length_sampling='linear'" in repr(task) and "length_sampling" not in repr(get_task(name))
    with pytest.raises(ValueError, match="length_sampling 'longest'.*uniform"):
        get_task(name, length_sampling="longest")


def test_operands_are_uniform_within_their_length():
    rng = random.Random(2)
    assert {uniform_int_of_length(rng, 1) for _ in range(500)} == set(range(10))  # 0 is a 1-digit number
    leading = Counter(str(uniform_int_of_length(rng, 7))[0] for _ in range(9000))
    assert set(leading) == set("123456789") and min(leading.values()) > 800
    assert all(len(str(uniform_int_of_length(rng, n))) == n for n in range(1, 60) for _ in range(5))
    with pytest.raises(ValueError):
        uniform_int_of_length(rng, 0)
    # Every 1x1 addition problem shows up: nothing in a cell is excluded.
    task = AdditionTask()
    assert len({task.sample(rng, lengths=(1, 1)).prompt for _ in range(5000)}) == 100


def test_forced_lengths_reach_beyond_training():
    ex = AdditionTask(max_digits=20).sample(random.Random(3), lengths=(100, 7))
    a, _, b = reference_binary(ex.prompt)
    assert (len(str(a)), len(str(b))) == (100, 7) == ex.lengths
    assert ex.answer == str(a + b)[::-1]


def test_sorting_samples_are_right_by_python_sort():
    task = SortingTask()
    rng = random.Random(4)
    for _ in range(2000):
        ex = task.sample(rng)
        numbers, answer = reference_sorting(ex.prompt)
        assert ex.answer == answer
        assert ex.lengths == (len(numbers), max(len(str(n)) for n in numbers))
        assert 1 <= ex.lengths[0] <= 10 and 1 <= ex.lengths[1] <= 10
    forced = task.sample(rng, lengths=(7, 4))
    assert forced.lengths == (7, 4) and reference_sorting(forced.prompt)[1] == forced.answer


def test_sorting_ties_follow_label_order():
    assert SortingTask().format(5, 3, 5, 3).answer == "b,d,a,c"


def test_sorting_labels_never_collide_with_separators_or_digits():
    assert len(LABELS) == 10 and not set(LABELS) & SEPARATORS
    ex = SortingTask().format(list(range(10)))
    # Every label is followed by ':' and preceded by the start or ','; no number contains one.
    assert re.findall(r"(?:^|,)([a-j]):", ex.prompt) == list(LABELS)
    with pytest.raises(ValueError):
        SortingTask().format(list(range(11)))
    with pytest.raises(ValueError):
        SortingTask(max_count=11)


# --- parsing and scoring ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["", "12a", "²", "-3", "1 2", "<eos>"])
def test_parse_answer_rejects_garbage(bad):
    with pytest.raises(ValueError):
        AdditionTask().parse_answer(bad)


def test_parse_answer_reads_through_eos_and_spaces():
    assert MultiplicationTask().parse_answer(" 804<eos><pad>") == 408
    assert SortingTask().parse_answer("c,a,b<eos>") == ["c", "a", "b"]
    for bad in ["", "a,,b", "k", "a,1", "a;b"]:
        with pytest.raises(ValueError):
            SortingTask().parse_answer(bad)


def test_score_is_exact_match_of_the_whole_answer():
    task = AdditionTask()
    ex = task.format(123, 45)  # "861"
    assert task.score("861", ex) and task.score("861<eos>", ex) and task.score(" 861 <eos><pad><pad>", ex)
    for wrong in ["8610", "86", "861<pad>1", "", "168"]:
        assert not task.score(wrong, ex), wrong


def test_get_task():
    assert isinstance(get_task("addition"), AdditionTask) and get_task("Add").max_digits == 20
    assert get_task("multiplication").max_digits == 15
    sorting = get_task("sorting", max_count=4, max_digits=3)
    assert sorting.length_grid()[-1] == (4, 3)
    assert get_task(sorting) is sorting
    with pytest.raises(ValueError, match="unknown task"):
        get_task("division")
    with pytest.raises(ValueError, match="addition"):
        get_task("addition", max_count=3)
    with pytest.raises(ValueError):
        AdditionTask(min_digits=5, max_digits=2)


# --- what a task knows about itself (axes, budgets, training region, card example) ----------

BINARY = [(AdditionTask(), lambda a, b: a + b), (MultiplicationTask(), lambda a, b: a * b)]


@pytest.mark.parametrize("task, op", BINARY, ids=["addition", "multiplication"])
def test_binary_budget_and_digit_run_fit_the_largest_answer_of_each_cell(task, op):
    for la in range(1, 13):
        for lb in range(1, 13):
            # Both operations grow with their operands: the cell's longest answer is that of its
            # largest operands, all nines.
            longest = len(str(op(10**la - 1, 10**lb - 1)))
            assert task.answer_budget((la, lb)) == longest + 1  # the answer, then EOS
            assert task.longest_digit_run((la, lb)) == max(la, lb, longest)


def test_sorting_budget_is_the_answer_and_eos_and_digit_run_the_longest_number():
    task, rng = SortingTask(), random.Random(5)
    for count in range(1, 11):
        for digits in range(1, 8):
            ex = task.sample(rng, lengths=(count, digits))
            numbers, answer = reference_sorting(ex.prompt)
            assert task.answer_budget(ex.lengths) == len(answer) + 1
            assert task.longest_digit_run(ex.lengths) == max(len(str(n)) for n in numbers)


@pytest.mark.parametrize("task, region", [
    (AdditionTask(max_digits=4), (4, 4)),
    (MultiplicationTask(min_digits=2, max_digits=3), (3, 3)),
    (SortingTask(max_count=3, max_digits=5), (3, 5)),
])
def test_training_region_is_the_largest_cell_training_draws(task, region):
    assert task.training_region() == region
    rng = random.Random(6)
    cells = [task.sample(rng).lengths for _ in range(3000)]
    # Every drawn cell lies inside the region, and the region's edge is reached on each axis.
    assert tuple(max(c[axis] for c in cells) for axis in (0, 1)) == region


def test_default_training_regions_are_the_papers():
    # The paper trains addition on 1..20 digits, multiplication on 1..15, sorting on up to 10
    # numbers of up to 10 digits (also what recipes/abacus/*.yaml set).
    assert AdditionTask().training_region() == (20, 20)
    assert MultiplicationTask().training_region() == (15, 15)
    assert SortingTask().training_region() == (10, 10)
    recipes = Path(__file__).resolve().parents[1] / "recipes" / "abacus"
    for name in ("addition_paper", "multiplication", "sorting"):
        data = yaml.safe_load((recipes / f"{name}.yaml").read_text())["data"]
        task = get_task(data["task"], **data["task_args"])
        assert task.training_region() == get_task(data["task"]).training_region(), name


def test_axes_name_the_cell_of_an_example():
    assert AdditionTask().axes == MultiplicationTask().axes == ("len_a", "len_b")
    assert SortingTask().axes == ("count", "max_digits")
    for name in ("addition", "multiplication", "sorting"):
        task = get_task(name)
        assert len(task.axes) == len(task.axis_labels) == len(task.sample(random.Random(0)).lengths) == 2


@pytest.mark.parametrize("task, op", BINARY, ids=["addition", "multiplication"])
@pytest.mark.parametrize("max_digits", [1, 2, 3, 20])
def test_binary_card_example_is_right_and_inside_training(task, op, max_digits):
    task = type(task)(max_digits=max_digits)
    card = task.card_example()
    a, b = card["a"], card["b"]
    assert len(str(a)) <= max_digits and len(str(b)) <= max_digits
    assert reference_binary(card["prompt"]) == (a, task.operator, b) and card["operator"] == task.operator
    assert card["expected"] == str(op(a, b)) and card["answer"] == str(op(a, b))[::-1]
    assert card["max_new_tokens"] >= len(card["answer"]) + 1


def test_card_examples_of_the_default_tasks():
    assert (AdditionTask().card_example()["a"], AdditionTask().card_example()["b"]) == (123, 4567)
    assert AdditionTask().card_example()["expected"] == str(123 + 4567)
    assert MultiplicationTask().card_example()["expected"] == str(123 * 4567)


@pytest.mark.parametrize("max_count, max_digits", [(1, 1), (2, 2), (3, 3), (10, 10)])
def test_sorting_card_example_is_right_and_inside_training(max_count, max_digits):
    card = SortingTask(max_count=max_count, max_digits=max_digits).card_example()
    numbers, answer = reference_sorting(card["prompt"])
    assert numbers == card["numbers"] and card["answer"] == answer
    assert len(numbers) <= max_count and all(len(str(n)) <= max_digits for n in numbers)
    assert card["max_new_tokens"] == len(answer) + 1


@pytest.mark.parametrize("name", ["addition", "multiplication", "sorting"])
def test_example_of_a_prompt_is_the_example_and_task_for_prompt_finds_its_task(name):
    task, rng = get_task(name), random.Random(7)
    for _ in range(200):
        ex = task.sample(rng)
        assert task.example_of(ex.prompt) == ex
        assert task_for_prompt(ex.prompt).name == name


def test_example_of_and_task_for_prompt_refuse_other_prompts():
    with pytest.raises(ValueError):
        AdditionTask().example_of("21x43=")
    with pytest.raises(ValueError):
        SortingTask().example_of("321+54=")
    for bad in ["12?3=", "1+2+3=", "", "a:1,c:2="]:
        with pytest.raises(ValueError):
            task_for_prompt(bad)


# --- normal notation ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "problem, prompt",
    [
        ("123+4567", "321+7654="),
        (" 123 + 4567 = ", "321+7654="),
        ("12x34", "21x43="),
        ("12*34", "21x43="),  # the operator the multiplication task trains on
        ("007+1", "7+1="),  # training data never zero-pads
        ("0+0", "0+0="),
        ("123,45", "a:321,b:54="),
        ("a:123,b:45", "a:321,b:54="),
        ("5", None),
        ([123, 45], "a:321,b:54="),
        ((7,), "a:7="),
    ],
)
def test_to_model_format(problem, prompt):
    if prompt is None:
        with pytest.raises(ValueError, match="cannot read"):
            to_model_format(problem)
    else:
        assert to_model_format(problem) == prompt


@pytest.mark.parametrize("problem, named", [("12?3", "'?'"), ("1-2", "'-'"), ("1/2", "'/'"), ("b:1,a:2", "labels")])
def test_to_model_format_names_what_it_cannot_read(problem, named):
    with pytest.raises(ValueError) as info:
        to_model_format(problem)
    assert named in str(info.value)


def test_from_model_answer():
    assert from_model_answer("0964") == "4690" and from_model_answer("0964<eos>") == "4690"
    assert from_model_answer("b,a") == "b,a"
    for bad in ["", "12+", "x"]:
        with pytest.raises(ValueError):
            from_model_answer(bad)


# --- round trips for any operands ----------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(a=non_negative, b=non_negative)
def test_binary_round_trips(a, b):
    for task, op, value in ((AdditionTask(), "+", a + b), (MultiplicationTask(), "x", a * b)):
        ex = task.format(a, b)
        assert task.parse_prompt(ex.prompt) == (a, b) == reference_binary(ex.prompt)[::2]
        assert task.parse_answer(ex.answer) == value and task.score(ex.answer, ex)
        assert to_model_format(f"{a}{op}{b}") == ex.prompt
        assert from_model_answer(ex.answer) == str(value)
        assert ex.lengths == (len(str(a)), len(str(b)))


@settings(max_examples=150, deadline=None)
@given(numbers=st.lists(non_negative, min_size=1, max_size=10))
def test_sorting_round_trips(numbers):
    task = SortingTask()
    ex = task.format(numbers)
    assert task.parse_prompt(ex.prompt) == numbers
    assert reference_sorting(ex.prompt) == (numbers, ex.answer)
    assert task.parse_answer(ex.answer) == ex.answer.split(",")
    assert to_model_format(numbers) == ex.prompt
    if len(numbers) > 1:  # one bare number is refused as ambiguous (see test_to_model_format)
        assert to_model_format(",".join(map(str, numbers))) == ex.prompt
    labelled = ",".join(f"{label}:{n}" for label, n in zip(LABELS, numbers))
    assert to_model_format(labelled) == ex.prompt and from_model_answer(ex.answer) == ex.answer
