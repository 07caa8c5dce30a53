"""What a trained model's run holds for publishing: the model folder, the run folder (metrics and
loss curve) and the evaluation folders, found from what the user points at.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hf_arith.errors import HfArithError


@dataclass
class RunFiles:
    """Where the pieces of a trained model are: `model_dir` (a `from_pretrained` folder), the run
    folder (`metrics.jsonl`, `loss.png`) if there is one, and the evaluation folders
    (`results.json` + `heatmap.png` from `hf-arith eval --out`)."""

    model_dir: Path
    run_dir: Path | None = None
    eval_dirs: list[Path] = field(default_factory=list)

    @property
    def metrics(self) -> Path | None:
        path = self.run_dir / "metrics.jsonl" if self.run_dir else None
        return path if path is not None and path.is_file() else None

    @property
    def loss_curve(self) -> Path | None:
        path = self.run_dir / "loss.png" if self.run_dir else None
        return path if path is not None and path.is_file() else None


def find_run(source: str | os.PathLike, eval_dirs=()) -> RunFiles:
    """The model and run behind `source`: a run folder (it holds `final/`) or a model folder (its
    parent is the run when it holds `metrics.jsonl`). Evaluations are `eval_dirs`, or else every
    `RUN/eval*/` with a `results.json`.

    Example:
        >>> import tempfile
        >>> from hf_arith.modeling import AbacusConfig
        >>> run = Path(tempfile.mkdtemp())  # a run folder, as `hf-arith train` writes it: the model in final/
        >>> AbacusConfig().save_pretrained(run / "final")
        >>> (run / "eval").mkdir()
        >>> _ = (run / "eval" / "results.json").write_text("{}")  # as `hf-arith eval ... --out RUN/eval` writes
        >>> found = find_run(run)
        >>> found.model_dir == run / "final", found.run_dir == run, [d.name for d in found.eval_dirs]
        (True, True, ['eval'])
        >>> find_run(run / "final").run_dir is None  # a model folder without metrics.jsonl next to it
        True
    """
    source = Path(source)
    if (source / "final" / "config.json").is_file():
        model_dir, run_dir = source / "final", source
    elif (source / "config.json").is_file():
        model_dir = source
        run_dir = source.parent if (source.parent / "metrics.jsonl").is_file() else None
    else:
        raise HfArithError(f"{source} holds no model: give a run folder (with final/ inside, as `hf-arith train` "
                           f"writes) or a model folder with config.json")
    if eval_dirs:
        found = [Path(d) for d in eval_dirs]
        for folder in found:
            if not (folder / "results.json").is_file():
                raise HfArithError(f"--eval-dir {folder} has no results.json; give a folder written by "
                                   f"`hf-arith eval ... --out DIR`")
    else:
        found = sorted(p.parent for p in run_dir.glob("eval*/results.json")) if run_dir else []
    return RunFiles(model_dir, run_dir, found)


def read_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


__all__ = ["RunFiles", "find_run", "read_config"]
