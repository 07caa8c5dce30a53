"""A run's `metrics.jsonl` (one JSON record per logged step or evaluation) read back, cut back on
resume, and plotted as `loss.png`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hf_arith.atomic import write_text_atomically
from hf_arith.plotting import pyplot, save_png


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The records of a `metrics.jsonl`.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> torn = '{"step": 30, "lo'  # the last line of a run killed while writing it
        >>> _ = path.write_text("".join(json.dumps({"step": s, "loss": 2.0}) + "\\n" for s in (10, 20)) + torn)
        >>> [r["step"] for r in read_metrics(path)]
        [10, 20]
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.strip()]
    if lines and not lines[-1].endswith("\n"):  # a run killed while writing it: the line may be torn
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines.pop()
    return [json.loads(line) for line in lines]


def truncate_metrics(path: Path, step: int) -> None:
    """Drops records after `step`: a resumed run rewrites what the interrupted one logged after its
    last checkpoint (every record up to a checkpoint's step is logged before it is saved). Also
    drops a last line torn by a kill. Replaced atomically, so a kill here loses nothing."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines
            if line.endswith("\n") and line.strip() and json.loads(line).get("step", 0) <= step]
    if kept != lines:
        write_text_atomically(path, "".join(kept))


def plot_loss(metrics_path: str | os.PathLike, out_path: str | os.PathLike) -> Path | None:
    """A PNG of the training loss (log scale) and learning rate against the step, from `metrics.jsonl`.

    Example:
        >>> import pathlib, tempfile
        >>> run = pathlib.Path(tempfile.mkdtemp())
        >>> records = [{"step": s, "loss": 3.0 / s, "lr": 1e-3} for s in (1, 2, 3)]
        >>> _ = (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in records))
        >>> plot_loss(run / "metrics.jsonl", run / "loss.png").stat().st_size > 0
        True
    """
    records = [r for r in read_metrics(metrics_path) if "loss" in r]
    if not records:
        return None
    plt = pyplot()
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["loss"] for r in records], color="tab:blue", label="train loss")
    if all(r["loss"] > 0 for r in records):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in records], color="tab:gray", alpha=0.5, label="lr")
    lr_ax.set_ylabel("learning rate")
    ax.set_title(Path(metrics_path).parent.name)
    fig.tight_layout()
    return save_png(fig, out_path)


__all__ = ["plot_loss", "read_metrics", "truncate_metrics"]
