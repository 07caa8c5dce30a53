"""The training loop's save and retention decisions live in one place, `CheckpointPolicy`.

References: the policy's own promises (its docstring), checked on the folders it leaves, one step
at a time, without a training run; the end-to-end behaviour (NaN streaks, preemption, resume) is in
test_reliability.py and test_preemption.py.
"""

import ast
from pathlib import Path

import torch

from hf_arith.training.checkpoints import CheckpointPolicy, TrainState, list_checkpoints
from hf_arith.training.recipe import recipe_from_dict
from hf_arith.training.trainer import make_accelerator

PACKAGE = Path(__file__).resolve().parents[1] / "hf_arith"


def callers(function: str) -> list[str]:
    """`module:class` (`-` outside a class) for every call of `function` in the hf_arith modules
    that import it from training/checkpoints.py, and in that module itself."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        imported = any(isinstance(n, ast.ImportFrom) and (n.module or "").endswith("checkpoints")
                       and function in {a.name for a in n.names} for n in ast.walk(tree))
        if not imported and path != PACKAGE / "training" / "checkpoints.py":
            continue
        owner = {id(n): c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for n in ast.walk(c)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and function in (getattr(node.func, "id", None),
                                                           getattr(node.func, "attr", None)):
                found.append(f"{path.relative_to(PACKAGE)}:{owner.get(id(node), '-')}")
    return found


def test_only_the_policy_saves_and_retires_checkpoints():
    assert callers("save_checkpoint") == ["training/checkpoints.py:CheckpointPolicy"]
    assert callers("retire_checkpoints") == ["training/checkpoints.py:CheckpointPolicy"]


def policy_in(tmp_path: Path, **train):
    recipe = recipe_from_dict({"output_dir": str(tmp_path), "train": {"report_to": [], **train}})
    model = torch.nn.Linear(2, 2)
    return CheckpointPolicy(make_accelerator(recipe), recipe, model, torch.optim.SGD(model.parameters())), model


def steps(tmp_path: Path) -> list[int]:
    return [int(p.name.split("_")[1]) for p in list_checkpoints(tmp_path)]


def test_saves_wait_through_nonfinite_steps_and_retention_waits_for_a_finite_one(tmp_path):
    policy, _ = policy_in(tmp_path, save_every=2, keep_last=1, max_steps=7)
    for step, skipped in [(1, False), (2, False), (3, True), (4, True)]:
        policy.after_step(TrainState(step=step), skipped)
    # The save due at 4 waits; step_2 stays unconfirmed (no finite step from it yet).
    assert steps(tmp_path) == [2] and policy.unconfirmed and policy.due
    policy.after_step(TrainState(step=5), skipped=False)  # confirms step_2 (nothing older), saves the due one
    assert steps(tmp_path) == [2, 5] and policy.saved_at(5) == tmp_path / "checkpoints" / "step_5"
    policy.after_step(TrainState(step=6), skipped=False)  # confirms step_5: step_2 goes (keep_last=1)
    assert steps(tmp_path) == [5, 6]
    policy.after_step(TrainState(step=7), skipped=True, stopping=True)  # the last step: its save waits
    assert steps(tmp_path) == [5, 6] and policy.saved_at(7) is None
    policy.at_end(TrainState(step=7))  # finite weights at the end: saved, then retention
    assert steps(tmp_path) == [7] and (tmp_path / "checkpoints" / "latest").read_text() == "step_7\n"


def test_a_stop_signal_saves_without_save_every_unless_the_weights_are_not_finite(tmp_path):
    policy, model = policy_in(tmp_path, save_every=0)
    policy.after_step(TrainState(step=1), skipped=False)
    policy.at_end(TrainState(step=1))  # save_every: 0 saves nothing at the end
    assert steps(tmp_path) == []
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    policy.after_step(TrainState(step=2), skipped=False, preempted=True)
    assert steps(tmp_path) == [] and policy.saved_at(2) is None
    with torch.no_grad():
        model.weight[0, 0] = 0.0
    policy.after_step(TrainState(step=3), skipped=False, preempted=True)
    assert steps(tmp_path) == [3] and policy.last_saved == 3
