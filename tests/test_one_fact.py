"""One fact in one place (issue 23): each fact of hf-arith is defined by one module and imported
where it is used. Read from the source with `ast`, so a second definition fails here whichever
module it appears in.
"""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from pathlib import Path

import pytest

from helpers import run_isolated
from hf_arith.model_files import CHECKPOINT_FORMATS, HUB_FORMATS
from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
from hf_arith.modeling.tokenization_arith import ARITH_VOCAB, DIGIT_TOKEN_IDS

ROOT = Path(__file__).resolve().parents[1]


def source_files() -> list[Path]:
    """hf_arith/ and modeling/, less the `evaluate` metric folder: `evaluate.load` reads it by path,
    so it may import nothing of hf_arith and restates the verdict on purpose."""
    files = sorted((ROOT / "hf_arith").rglob("*.py")) + sorted((ROOT / "modeling").glob("*.py"))
    return [p for p in files if "metrics" not in p.relative_to(ROOT).parts]


TREES = {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text()) for p in source_files()}


def definitions(keep) -> dict[str, set[str]]:
    """name -> the files whose module level defines it, for the top-level nodes `keep` names."""
    found = defaultdict(set)
    for path, tree in TREES.items():
        for node in tree.body:
            for name in keep(node):
                found[name].add(path)
    return found


def public_names(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
        return [node.name]
    return []


def constants(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign):
        targets = [node.target]
    else:
        return []
    return [t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()]


# Names defined in two modules today, each with the reason it is allowed: the exact files, so that a
# third definition, or the same name anywhere else, still fails.
SHARED_FUNCTION_NAMES: dict[str, set[str]] = {}
SHARED_CONSTANTS: dict[str, set[str]] = {}


def test_names_a_public_function_is_defined_by_one_module():
    """`build_model`, `load_checkpoint` and `save_checkpoint` named both a training function and a
    conversion function that did something else (now `convert.model_from_state`,
    `read_olmo_checkpoint`, `write_olmo_checkpoint`). `cli.py` is left out: its `run_<command>`
    handlers are named for the subcommand and call the library function of that name."""
    found = definitions(public_names)
    twice = {name: files - {"hf_arith/cli.py"} for name, files in found.items()}
    twice = {name: files for name, files in twice.items()
             if len(files) > 1 and SHARED_FUNCTION_NAMES.get(name) != files}
    assert not twice, f"defined in more than one module (rename the one that does something else): {twice}"


def test_names_a_constant_is_defined_by_one_module():
    """`FORMATS` was ("ours", "native", "original") in convert.py and ("ours", "native") in
    hub/publish.py; the format names are `model_files.CHECKPOINT_FORMATS` and `HUB_FORMATS` now."""
    found = definitions(constants)
    twice = {name: files for name, files in found.items()
             if len(files) > 1 and SHARED_CONSTANTS.get(name) != files}
    assert not twice, f"defined in more than one module (import it from one): {twice}"
    assert found["CHECKPOINT_FORMATS"] == found["HUB_FORMATS"] == {"hf_arith/model_files.py"}


def test_names_format_names_are_never_listed_again():
    """The CLI's `choices` repeated the format lists; a literal list of two or more format names
    outside `model_files.py` is a second definition."""
    assert set(HUB_FORMATS) < set(CHECKPOINT_FORMATS)
    lists = []
    for path, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)) and path != "hf_arith/model_files.py":
                names = {e.value for e in node.elts if isinstance(e, ast.Constant)} & set(CHECKPOINT_FORMATS)
                if len(names) > 1:
                    lists.append(f"{path}:{node.lineno}")
    assert not lists, f"format names listed again (import CHECKPOINT_FORMATS or HUB_FORMATS): {lists}"


def test_names_digit_token_ids_are_derived_once_from_the_vocabulary():
    """The digit ids were `list(range(4, 14))` in configuration_abacus.py and derived from
    `ARITH_VOCAB` in tokenization_arith.py; now only the latter, and the config imports them."""
    digits = list(range(ARITH_VOCAB.index("0"), ARITH_VOCAB.index("9") + 1))
    literals = []
    for path, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                written = [e.value for e in node.elts if isinstance(e, ast.Constant)] == digits
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
                written = [getattr(a, "value", None) for a in node.args] == [digits[0], digits[-1] + 1]
            else:
                written = False
            if written:
                literals.append(f"{path}:{node.lineno}")
    assert not literals, f"digit token ids written out (import DIGIT_TOKEN_IDS): {literals}"
    assert definitions(constants)["DIGIT_TOKEN_IDS"] == {"modeling/tokenization_arith.py"}
    config = AbacusConfig()
    assert (config.digit_token_ids, config.vocab_size) == (DIGIT_TOKEN_IDS, len(ARITH_VOCAB))


def test_names_an_abacus_folder_without_tokenizer_still_loads_its_config(tmp_path):
    """The config file imports the vocabulary from its sibling tokenizer file: `save_pretrained`
    copies that file along, so a folder with the model alone loads without hf_arith."""
    folder = tmp_path / "model"
    AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                   num_hidden_layers=1)).save_pretrained(folder)
    assert (folder / "tokenization_arith.py").is_file() and not (folder / "tokenizer.json").exists()
    code = f"""
        import json
        from transformers import AutoConfig, AutoModelForCausalLM
        config = AutoConfig.from_pretrained({str(folder)!r}, trust_remote_code=True)
        AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)
        fresh = type(config)()  # the defaults, from the folder's own code
        print(json.dumps([fresh.digit_token_ids, fresh.vocab_size]))
    """
    assert json.loads(run_isolated(code, cwd=tmp_path).splitlines()[-1]) == [list(range(4, 14)), 31]


# Evaluation facts (the saved recipe, defaults, results.json, the Abacus capacity)

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


def files_holding(value) -> list[str]:
    """The files whose code (not docstrings) holds the constant `value`."""
    return sorted({where(p) for p in SOURCES for node in code_nodes(p)
                   if isinstance(node, ast.Constant) and type(node.value) is type(value) and node.value == value})


def test_eval_facts_the_evaluation_defaults_are_written_once():
    owner = ["hf_arith/evaluation/defaults.py"]
    assert files_holding(1234) == owner  # DEFAULT_EVAL_SEED
    assert files_holding("1-20") == owner  # IN_LOOP_GRID_LENGTHS
    assert not {"hf_arith/hub/card.py", "hf_arith/training/evaluators.py"} & set(files_holding(10))  # IN_LOOP_GRID_SAMPLES
    assert files_holding("1-40") == owner  # DEFAULT_LENGTHS


def test_eval_facts_the_default_task_is_named_once():
    """`DEFAULT_TASK` in `hf_arith.tasks`; only the tasks themselves spell "addition"."""
    outside = [f for f in files_holding("addition") if not f.startswith("hf_arith/tasks/")]
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
