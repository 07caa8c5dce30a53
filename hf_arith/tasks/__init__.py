"""Arithmetic tasks in model format (digits reversed): sampling, formatting, parsing, scoring.

Example:
    >>> import random
    >>> task = get_task("addition", max_digits=20)
    >>> task.format(123, 45)
    Example(prompt='321+54=', answer='861', lengths=(3, 2))
    >>> task.score("861", task.format(123, 45)), task.parse_answer("861")
    (True, 168)
    >>> to_model_format("123+4567"), from_model_answer("0964")
    ('321+7654=', '4690')
"""

from __future__ import annotations

from .addition import AdditionTask
from .base import Example, Task, uniform_int_of_length
from .multiplication import MultiplicationTask
from .notation import from_model_answer, to_model_format
from .sorting import LABELS, SortingTask

TASKS = {"addition": AdditionTask, "multiplication": MultiplicationTask, "sorting": SortingTask}
# The task meant where none is named (a recipe's `data.task`, `hf-arith eval` of a model saved
# without its recipe, the model card): the paper's first one.
DEFAULT_TASK = "addition"
# Short names people type on the command line.
_ALIASES = {"add": "addition", "mul": "multiplication", "multiply": "multiplication", "sort": "sorting"}


def get_task(name, **kwargs) -> Task:
    """The task called `name` ("addition", "multiplication", "sorting"), built with `kwargs`
    (e.g. `max_digits=20`; sorting: `max_count`, `max_digits`). A task object passes through.

    Example:
        >>> get_task("multiplication")
        MultiplicationTask(min_digits=1, max_digits=15)
        >>> get_task("sorting", max_count=4).max_count
        4
    """
    if not isinstance(name, str):
        if kwargs:
            raise ValueError(f"task arguments {sorted(kwargs)} given with an already built task {name!r}")
        return name
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    try:
        return TASKS[key](**kwargs)
    except TypeError as err:  # an unknown keyword: say which task rejected it
        raise ValueError(f"bad arguments for task {key!r}: {err}") from None


def task_for_prompt(prompt: str) -> Task:
    """The task (with default arguments) whose model-format prompts look like `prompt`: the one
    task whose `parse_prompt` reads it. `ValueError` when none does.

    Example:
        >>> task_for_prompt("21x43=").name, task_for_prompt("a:3,b:21=").name
        ('multiplication', 'sorting')
    """
    for task_class in TASKS.values():
        task = task_class()
        try:
            task.parse_prompt(prompt)
        except ValueError:
            continue
        return task
    raise ValueError(f"{prompt!r} is not a prompt of any task ({', '.join(TASKS)})")


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
    if isinstance(task, str):
        return get_task(task, **(task_args or {}))
    return task


def known_task(task):
    """The task object of a name, or `None` for a name hf-arith does not know."""
    try:
        return resolve_task(task)
    except ValueError:
        return None


__all__ = [
    "DEFAULT_TASK",
    "LABELS",
    "TASKS",
    "AdditionTask",
    "Example",
    "MultiplicationTask",
    "SortingTask",
    "Task",
    "from_model_answer",
    "get_task",
    "known_task",
    "resolve_task",
    "task_for_prompt",
    "task_name_of",
    "to_model_format",
    "uniform_int_of_length",
]
