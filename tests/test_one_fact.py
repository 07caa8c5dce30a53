"""One fact in one place (issue 23): each fact below is written once, and a second definition
fails here. Read from the source with `ast`, so docstrings (whose examples may show the values)
do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "hf_arith").rglob("*.py")) + sorted((ROOT / "modeling").glob("*.py"))


def code_nodes(path: Path):
    """Every AST node of `path` except docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    return [node for node in ast.walk(tree) if id(node) not in docstrings]


def where(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def constants(value) -> list[str]:
    """The files whose code (not docstrings) holds the constant `value`."""
    return sorted({where(p) for p in SOURCES for node in code_nodes(p)
                   if isinstance(node, ast.Constant) and type(node.value) is type(value) and node.value == value})


def test_eval_facts_the_evaluation_defaults_are_written_once():
    owner = ["hf_arith/evaluation/defaults.py"]
    assert constants(1234) == owner  # DEFAULT_EVAL_SEED
    assert constants("1-20") == owner  # IN_LOOP_GRID_LENGTHS
    assert not {"hf_arith/hub/card.py", "hf_arith/training/evaluators.py"} & set(constants(10))  # IN_LOOP_GRID_SAMPLES
    assert constants("1-40") == owner  # DEFAULT_LENGTHS


def test_eval_facts_the_default_task_is_named_once():
    """`DEFAULT_TASK` in `hf_arith.tasks`; only the tasks themselves spell "addition"."""
    outside = [f for f in constants("addition") if not f.startswith("hf_arith/tasks/")]
    assert outside == []


def test_eval_facts_one_abacus_capacity_function():
    """The table's arithmetic (rows - 1 - offset) is `modeling.layers.abacus_capacity` alone."""
    found = sorted({where(path) for path in SOURCES for node in code_nodes(path)
                    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Sub)
                    and "abacus_num_positions" in ast.dump(node)})
    assert found == ["modeling/layers.py"]


def test_eval_facts_uses_abacus_is_spelled_once():
    """Whether a model adds Abacus positions is `config.uses_abacus`: only the config classes read the
    fields behind it (the Abacus model's `embedding_positions == "abacus"`, OLMo's `self.abacus`)."""
    readers = []
    for path in SOURCES:
        for node in code_nodes(path):
            compares_to_abacus = isinstance(node, ast.Compare) and "embedding_positions" in ast.dump(node) and any(
                isinstance(c, ast.Constant) and c.value == "abacus" for c in node.comparators)
            reads_the_flag = isinstance(node, ast.Attribute) and node.attr == "abacus" and (
                isinstance(node.value, ast.Name) and node.value.id == "config"
                or isinstance(node.value, ast.Attribute) and node.value.attr == "config")
            if compares_to_abacus or reads_the_flag:
                readers.append(where(path))
    assert sorted(set(readers)) == ["modeling/configuration_abacus.py"], readers


@pytest.mark.parametrize("key", ["samples_per_cell", "num_recurrences", "schema_version"])
def test_eval_facts_results_json_is_read_by_gridresult_alone(key):
    readers = sorted({where(p) for p in SOURCES for node in code_nodes(p)
                      if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
                      and node.slice.value == key
                      or isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                      and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == key})
    assert readers in ([], ["hf_arith/evaluation/results.py"])


def test_eval_facts_the_saved_recipe_is_read_in_one_place():
    """Evaluation, generation and the card read a model's recipe.yaml through
    `hf_arith.evaluation.saved_recipe`; none parses YAML itself."""
    parsers = sorted({where(p) for p in SOURCES if where(p).startswith(("hf_arith/evaluation/", "hf_arith/hub/",
                                                                        "hf_arith/model_files"))
                      for node in code_nodes(p) if isinstance(node, ast.Name) and node.id in ("load_yaml", "yaml")})
    assert parsers == ["hf_arith/evaluation/saved_recipe.py"]


def test_eval_facts_the_two_model_loaders_have_names_that_differ():
    names = {}
    for path in SOURCES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                names.setdefault(node.name, []).append(where(path))
    assert "load_model" not in names
    assert names["load_for_inference"] == ["hf_arith/evaluation/commands.py"]
    assert names["load_with_installed_classes"] == ["hf_arith/hub/publish.py"]


def test_eval_facts_a_config_of_older_folder_code_answers_like_the_installed_one():
    """A folder loaded with its own code (`trust_remote_code`) from a release before `uses_abacus`
    still has its Abacus table found: evaluation reads it through the installed config class."""
    from transformers import AutoConfig

    from hf_arith.evaluation.grid import abacus_capacity_of, installed_config

    old = AutoConfig.from_pretrained(ROOT / "tests" / "data" / "abacus_fire_2026-12-07", trust_remote_code=True)
    assert not hasattr(old, "uses_abacus")  # the code of that day
    assert installed_config(old).uses_abacus
    assert abacus_capacity_of(old) == old.abacus_num_positions - 1 - old.abacus_eval_offset
    assert abacus_capacity_of(old.to_dict()) == abacus_capacity_of(old)
