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
from .base import Example, uniform_int_of_length
from .multiplication import MultiplicationTask
from .notation import from_model_answer, to_model_format
from .sorting import LABELS, SortingTask

TASKS = {"addition": AdditionTask, "multiplication": MultiplicationTask, "sorting": SortingTask}
# Short names people type on the command line.
_ALIASES = {"add": "addition", "mul": "multiplication", "multiply": "multiplication", "sort": "sorting"}

Task = AdditionTask | MultiplicationTask | SortingTask


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


__all__ = [
    "LABELS",
    "TASKS",
    "AdditionTask",
    "Example",
    "MultiplicationTask",
    "SortingTask",
    "from_model_answer",
    "get_task",
    "to_model_format",
    "uniform_int_of_length",
]
