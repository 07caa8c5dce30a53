"""Exact-match results over a length grid (`GridResult`): summaries in and out of the training
region, per-length accuracy, the `results.json` format, the heatmap and a markdown table.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hf_arith.plotting import pyplot, save_png
from hf_arith.tasks import Task, known_task

# Bumped whenever a key of `GridResult.to_dict` changes meaning.
SCHEMA_VERSION = 1
# The paper trains addition on operands of 1..20 digits: `GridResult`'s default training region.
DEFAULT_TRAIN_MAX_DIGITS = 20


def _fraction(correct: int, total: int) -> dict:
    # Python numbers, not numpy's: the model card's YAML (`EvalResult`) takes them as they are.
    return {"accuracy": float(correct / total) if total else None, "correct": int(correct), "total": int(total)}


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
        >>> summary = result.summary()
        >>> print(summary["in_distribution"]["accuracy"], summary["out_of_distribution"]["accuracy"])
        1.0 0.9333333333333333
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
        return (known_task(self.task) or Task).axes

    def axis_labels(self) -> tuple[str, str]:
        """The two axes in words, the task's `axis_labels` (an unknown task's: those of a+b)."""
        return (known_task(self.task) or Task).axis_labels

    @property
    def accuracy(self) -> np.ndarray:
        """Per-cell accuracy, NaN where no problem was evaluated."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.total > 0, self.correct / np.maximum(self.total, 1), np.nan)

    def in_distribution_mask(self) -> np.ndarray:
        """True for cells whose lengths are both within `train_max`."""
        a = np.array(self.lengths_a)[:, None] <= self.train_max[0]
        b = np.array(self.lengths_b)[None, :] <= self.train_max[1]
        return a & b

    def summary(self) -> dict:
        """Overall, in-distribution and out-of-distribution accuracy, pooled over problems.

        Example:
            >>> result = GridResult("addition", [1, 2, 3], [1, 2, 3], np.array([[5, 5, 5], [5, 5, 4], [5, 3, 2]]),
            ...                     np.full((3, 3), 5), train_max=(2, 2), samples=5)
            >>> overall = result.summary()["overall"]
            >>> float(overall["accuracy"]), overall["correct"], overall["total"], overall["cells"]
            (0.8666666666666667, 39, 45, 9)
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
            >>> result = GridResult("addition", [1, 2, 3], [1, 2, 3], np.array([[5, 5, 5], [5, 5, 4], [5, 3, 2]]),
            ...                     np.full((3, 3), 5), train_max=(2, 2), samples=5)
            >>> {n: float(a) for n, a in result.per_length()["max_length"].items()}
            {1: 1.0, 2: 1.0, 3: 0.76}
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
            >>> result = GridResult("addition", [1, 2], [1, 2], np.array([[4, 4], [4, 0]]), np.array([[5, 5], [5, 0]]))
            >>> sorted(result.to_dict())[:4]
            ['abacus_eval_offset', 'accuracy', 'axes', 'cells']
            >>> result.to_dict()["accuracy"]  # cell (2, 2) was not evaluated
            [[0.8, 0.8], [0.8, None]]
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
            >>> import tempfile
            >>> result = GridResult("addition", [1, 2], [1, 2], np.full((2, 2), 4), np.full((2, 2), 5))
            >>> path = result.to_json(Path(tempfile.mkdtemp()) / "eval" / "results.json")
            >>> json.loads(path.read_text())["summary"]["overall"]
            {'accuracy': 0.8, 'correct': 16, 'total': 20, 'cells': 4}
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> GridResult:
        """Reads a file written by `to_json` (to re-plot or compare runs).

        Example:
            >>> import tempfile
            >>> result = GridResult("addition", [1, 2], [1, 2], np.full((2, 2), 4), np.full((2, 2), 5),
            ...                     abacus_eval_offset=3)
            >>> path = result.to_json(Path(tempfile.mkdtemp()) / "results.json")
            >>> again = GridResult.from_json(path)
            >>> again.summary() == result.summary(), again.abacus_eval_offset
            (True, 3)
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
            num_recurrences=data.get("num_recurrences"), abacus_eval_offset=data.get("abacus_eval_offset"),
            samples=data.get("samples_per_cell", 0),
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
            >>> import tempfile
            >>> result = GridResult("addition", [1, 2], [1, 2], np.full((2, 2), 4), np.full((2, 2), 5))
            >>> result.heatmap(Path(tempfile.mkdtemp()) / "heatmap.png").name
            'heatmap.png'
        """
        plt = pyplot()
        from matplotlib.patches import Rectangle

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
            cmap = plt.colormaps["viridis"].with_extremes(bad="lightgrey")  # grey: not evaluated
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
        return save_png(fig, path, dpi)

    def table(self) -> str:
        """A short plain-text summary: the three pooled numbers and accuracy by max length.

        Example:
            >>> result = GridResult("addition", [1, 2, 3], [1, 2, 3], np.array([[5, 5, 5], [5, 5, 4], [5, 3, 2]]),
            ...                     np.full((3, 3), 5), train_max=(2, 2), samples=5)
            >>> print(result.table())
            model: addition, 5/cell | in-dist 100.0%  out-of-dist 76.0%  overall 86.7%
            <BLANKLINE>
            in-distribution      100.0%  (20/20, 4 cells)
            out-of-distribution   76.0%  (19/25, 5 cells)
            overall               86.7%  (39/45, 9 cells)
            <BLANKLINE>
            accuracy (%) by max(len_a, len_b):
                  1     2     3
              100.0 100.0  76.0
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


__all__ = ["DEFAULT_TRAIN_MAX_DIGITS", "SCHEMA_VERSION", "GridResult"]
