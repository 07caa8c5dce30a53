"""Several evaluations side by side (`hf-arith compare`): accuracy by operand length as a markdown
table and one plot, with each run's reach and generalisation factor.

The reach is the longest length up to which every length is solved at ≥90% (by max(len_a, len_b));
the factor divides it by the longest training length, the measure of issue 13 and of McLeish et al.
2024 (§4: "6× extrapolation" = 99% at 100 digits after training on 20).
"""

from __future__ import annotations

import os
from pathlib import Path

from hf_arith.errors import HfArithError
from hf_arith.plotting import pyplot, save_png

from .results import GridResult


def reach(result: GridResult, threshold: float = 0.9) -> int:
    """The longest length L such that accuracy by max(len_a, len_b) is ≥ `threshold` at every
    evaluated length from the shortest up to L; 0 when the shortest already falls below.

    Example:
        >>> import numpy as np
        >>> correct = np.array([[10, 10, 9], [10, 9, 5], [9, 5, 0]])  # by max length: 1.0, 0.967, 0.56
        >>> reach(GridResult("addition", [1, 2, 3], [1, 2, 3], correct, np.full((3, 3), 10)))
        2
    """
    return _reach_of(result.per_length()["max_length"], threshold)


def _reach_of(by_length: dict[int, float], threshold: float = 0.9) -> int:
    longest = 0
    for length, accuracy in by_length.items():
        if accuracy < threshold:
            break
        longest = length
    return longest


def _training_length(results: list[GridResult]) -> int:
    return max(max(r.train_max) for r in results)


def generalization_factor(result: GridResult, threshold: float = 0.9) -> float:
    """`reach(result)` divided by the longest training length (`max(result.train_max)`).

    Example:
        >>> import numpy as np
        >>> result = GridResult("addition", [1, 2, 3, 4], [1], np.array([[9], [9], [9], [2]]), np.full((4, 1), 9),
        ...                     train_max=(2, 2))
        >>> generalization_factor(result)
        1.5
    """
    return reach(result, threshold) / max(result.train_max)


def load_results(paths: list[str | os.PathLike]) -> list[GridResult]:
    """`GridResult`s from `hf-arith eval --out` folders or their `results.json` files;
    `HfArithError` naming a path that holds none."""
    results = []
    for path in map(Path, paths):
        file = path / "results.json" if path.is_dir() else path
        if not file.is_file():
            raise HfArithError(f"no evaluation results at {path}: give a folder written by `hf-arith eval --out` "
                               f"or its results.json")
        results.append(GridResult.from_json(file))
    return results


def default_columns(results: list[GridResult]) -> list[int]:
    """The lengths a comparison shows one by one: the five after the training region, then every
    fifth length up to the longest evaluated.

    Example:
        >>> import numpy as np
        >>> default_columns([GridResult("addition", list(range(1, 41)), [1], np.ones((40, 1)), np.ones((40, 1)),
        ...                             train_max=(10, 10))])
        [11, 12, 13, 14, 15, 20, 25, 30, 35, 40]
    """
    trained = _training_length(results)
    longest = max(max(r.per_length()["max_length"], default=0) for r in results)
    near = list(range(trained + 1, min(trained + 5, longest) + 1))
    far = [n for n in range(5 * (trained // 5 + 2), longest + 1, 5) if n > trained + 5]
    return near + far


def comparison_table(results: list[GridResult], labels: list[str], columns: list[int] | None = None) -> str:
    """A markdown table, one row per result: the inference offset and recurrences, in-distribution
    accuracy (and its worst length), accuracy (%) at each length of `columns` (by max(len_a, len_b);
    blank where not evaluated), the mean accuracy over the lengths up to twice the training length
    (a 2× extrapolation, whatever the reach), the reach and the generalisation factor.

    Example:
        >>> import numpy as np
        >>> result = GridResult("addition", [1, 2, 3], [1, 2, 3], np.array([[10, 10, 9], [10, 9, 5], [9, 5, 0]]),
        ...                     np.full((3, 3), 10), train_max=(2, 2), abacus_eval_offset=1)
        >>> print(comparison_table([result], ["run"]))
        | run | offset | R | ≤2 (worst) | 3 | mean 3–4 | reach | factor |
        |---|---|---|---|---|---|---|---|
        | run | 1 | as trained | 97.5% (96.7) | 56.0 | 56.0 | 2 | 1.0 |
    """
    columns = default_columns(results) if columns is None else columns
    trained = _training_length(results)
    beyond = range(trained + 1, 2 * trained + 1)
    head = ["run", "offset", "R", f"≤{trained} (worst)", *map(str, columns), f"mean {beyond[0]}–{beyond[-1]}",
            "reach", "factor"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for result, label in zip(results, labels, strict=True):
        by_length = result.per_length()["max_length"]
        longest = _reach_of(by_length)
        inside = result.summary()["in_distribution"]["accuracy"]
        worst = min((a for n, a in by_length.items() if n <= trained), default=None)
        evaluated = [by_length[n] for n in beyond if n in by_length]  # the mean of what was evaluated
        cells = [label, "" if result.abacus_eval_offset is None else str(result.abacus_eval_offset),
                 str(result.num_recurrences or "as trained"),
                 "" if inside is None else f"{100 * inside:.1f}% ({100 * worst:.1f})",
                 *(f"{100 * by_length[n]:.1f}" if n in by_length else "" for n in columns),
                 f"{100 * sum(evaluated) / len(evaluated):.1f}" if evaluated else "",
                 str(longest), f"{generalization_factor(result):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_by_length(results: list[GridResult], labels: list[str], path: str | os.PathLike, dpi: int = 120) -> Path:
    """Accuracy by max(len_a, len_b) of every result as one line each, the training lengths shaded
    and the 90% level drawn, as a PNG at `path`.

    Example:
        >>> import tempfile, numpy as np
        >>> result = GridResult("addition", [1, 2], [1, 2], np.full((2, 2), 4), np.full((2, 2), 5), train_max=(1, 1))
        >>> plot_by_length([result], ["run"], Path(tempfile.mkdtemp()) / "compare.png").name
        'compare.png'
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 4.8))
    ax.set_prop_cycle(color=plt.get_cmap("tab20").colors)  # 20 distinct colours; the default has 10
    trained = _training_length(results)
    ax.axvspan(0.5, trained + 0.5, color="green", alpha=0.08, label=f"training lengths (≤{trained})")
    ax.axhline(90, color="grey", linestyle="--", linewidth=1)
    for result, label in zip(results, labels, strict=True):
        by_length = result.per_length()["max_length"]
        ax.plot(list(by_length), [100 * a for a in by_length.values()], marker=".",
                label=f"{label} (reach {_reach_of(by_length)})")
    ax.set_xlabel("operand length: max(len_a, len_b) (digits)")
    ax.set_ylabel("exact-match accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a line
    fig.tight_layout()
    return save_png(fig, path, dpi)


def compare(paths: list[str | os.PathLike], labels: list[str] | None = None, out: str | os.PathLike | None = None,
            columns: list[int] | None = None) -> str:
    """What `hf-arith compare` does: loads the results, writes the plot to `out` (when given) and
    returns the table. Labels default to each path's folder names; `HfArithError` when their
    number differs from the paths'."""
    results = load_results(paths)
    if labels is None:
        labels = [_label_of(Path(p)) for p in paths]
    if len(labels) != len(results):
        raise HfArithError(f"{len(labels)} labels for {len(results)} results: give one --label per result, or none")
    if out is not None:
        plot_by_length(results, labels, out)
    return comparison_table(results, labels, columns)


def _label_of(path: Path) -> str:
    folder = path.parent if path.suffix == ".json" else path
    return f"{folder.parent.name}/{folder.name}" if folder.parent.name else folder.name


__all__ = ["compare", "comparison_table", "generalization_factor", "load_results", "plot_by_length", "reach"]
