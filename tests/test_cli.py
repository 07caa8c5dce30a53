"""The `hf-arith` command line as a user runs it: exit codes, one-line errors, the same run
through `accelerate launch`."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_arith.cli import main
from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
from hf_arith.tokenization import build_arith_tokenizer

REPO = Path(__file__).resolve().parents[1]
TINY = ["--set", "model.config.hidden_size=32", "--set", "model.config.intermediate_size=64",
        "--set", "model.config.num_attention_heads=2", "--set", "train.report_to=[]",
        "--set", "train.progress_bar=false", "--set", "eval.evaluators=[]", "--set", "train.micro_batch_size=16",
        "--set", "train.global_batch_size=16"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_model")
    torch.manual_seed(0)
    config = AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1,
                          num_recurrences=2, abacus_num_positions=24, abacus_max_k=4)
    AbacusForCausalLM(config).save_pretrained(folder)
    build_arith_tokenizer().save_pretrained(folder)
    return folder


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


def test_missing_recipe(capsys, tmp_path):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in error_line(capsys)


def test_unknown_recipe_key_names_it_and_the_allowed_keys(capsys):
    assert main(["train", str(REPO / "recipes/abacus/addition_cpu.yaml"), "--set", "train.lrr=1"]) == 2
    line = error_line(capsys)
    assert "train.lrr" in line and "lr," in line and "Traceback" not in line


def test_debug_shows_the_traceback():
    from hf_arith.errors import RecipeError

    with pytest.raises(RecipeError):
        main(["--debug", "train", str(REPO / "recipes/abacus/addition_cpu.yaml"), "--set", "train.lrr=1"])


def test_generate_answers_and_names_bad_characters(saved, capsys):
    assert main(["generate", str(saved), "12+34", "5+6"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["generate", str(saved), "12?34"]) == 2
    assert "'?'" in error_line(capsys)


def test_generate_refuses_numbers_longer_than_the_abacus_table(saved, capsys):
    assert main(["generate", str(saved), "1" * 40 + "+1"]) == 2
    line = error_line(capsys)
    assert "Abacus table" in line and "abacus_num_positions=24" in line


def test_eval_abacus_offset_override_is_applied_recorded_and_bounded(saved, tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["eval", str(saved), "--lengths", "1-2", "--samples", "2", "--out", str(out), "--abacus-offset", "3"]) == 0
    assert json.loads((out / "results.json").read_text())["abacus_eval_offset"] == 3
    capsys.readouterr()
    # Applied, not just recorded: a large offset leaves too few of the 24 rows for 3-digit sums.
    assert main(["eval", str(saved), "--lengths", "3-3", "--samples", "2", "--out", str(out), "--abacus-offset", "20"]) == 2
    assert "Abacus table" in error_line(capsys)
    assert main(["eval", str(saved), "--lengths", "1-2", "--samples", "2", "--out", str(out), "--abacus-offset", "30"]) == 2
    assert "give an offset from 0 to 22" in error_line(capsys)


def test_train_resume_and_eval_from_the_command_line(tmp_path, capsys):
    recipe = str(REPO / "recipes/abacus/addition_cpu.yaml")
    out = tmp_path / "run"
    assert main(["train", recipe, "--output-dir", str(out), "--max-steps", "2", "--save-every", "1", *TINY]) == 0
    assert main(["train", recipe, "--output-dir", str(out), "--max-steps", "3", "--save-every", "1",
                 "--resume", "latest", *TINY]) == 0
    assert (out / "checkpoints" / "step_3").is_dir() and (out / "loss.png").is_file()
    assert main(["eval", str(out / "final"), "--lengths", "1-2", "--samples", "2", "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "results.json").is_file() and (tmp_path / "e" / "heatmap.png").is_file()


@pytest.mark.slow
def test_accelerate_launch_runs_the_same_command(tmp_path):
    out = tmp_path / "launched"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "-m", "hf_arith", "train",
           str(REPO / "recipes/abacus/addition_cpu.yaml"), "--output-dir", str(out), "--max-steps", "2", *TINY]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "final" / "model.safetensors").is_file()


def test_console_script_and_module_entry_points():
    for cmd in (["hf-arith", "--help"], [sys.executable, "-m", "hf_arith", "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "train" in done.stdout and "eval" in done.stdout


def test_version_is_the_one_in_pyproject(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    # The installed metadata, made from pyproject.toml: the version is written in one place.
    declared = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert capsys.readouterr().out == f"hf-arith {declared}\n"


def test_compare_tables_and_plots_several_evaluations(tmp_path, capsys):
    import numpy as np

    from hf_arith.evaluation.results import GridResult

    lengths = [1, 2, 3, 4]
    # By max(len_a, len_b), counted by hand over 10 problems per cell:
    # run a: 1.0, 1.0, 0.92 (46/50), 0.2 (14/70) -> reach 3 of training length 2: factor 1.5
    # run b: 1.0, 0.8 (24/30), 0.0, 0.0          -> reach 1: factor 0.5
    a = np.array([[10, 10, 9, 2], [10, 10, 9, 2], [9, 9, 10, 2], [2, 2, 2, 2]])
    b = np.array([[10, 8, 0, 0], [8, 8, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    for name, correct in (("a", a), ("b", b)):
        GridResult("addition", lengths, lengths, correct, np.full((4, 4), 10), train_max=(2, 2),
                   abacus_eval_offset=0).to_json(tmp_path / name / "results.json")
    png = tmp_path / "compare.png"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b" / "results.json"), "--label", "one",
                 "--label", "two", "--out", str(png), "--columns", "3-4"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == "| run | offset | R | ≤2 (worst) | 3 | 4 | mean 3–4 | reach | factor |"
    assert table[2] == "| one | 0 | as trained | 100.0% (100.0) | 92.0 | 20.0 | 56.0 | 3 | 1.5 |"
    assert table[3] == "| two | 0 | as trained | 85.0% (80.0) | 0.0 | 0.0 | 0.0 | 1 | 0.5 |"
    assert png.stat().st_size > 0

    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "no evaluation results at" in error_line(capsys)
    assert main(["compare", str(tmp_path / "a"), "--label", "x", "--label", "y"]) == 2
    assert "2 labels for 1 results" in error_line(capsys)
    assert main(["compare", str(tmp_path / "a"), "--columns", "3-"]) == 2
    assert "bad length range" in error_line(capsys)


# ---------------------------------------------------------------------------------------------
# The first minutes: help that answers, --debug anywhere, usage mistakes as one line.


def all_parsers(parser, path=("hf-arith",)):
    """(command path, parser) for the parser and every subcommand below it, nested ones included."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from all_parsers(child, (*path, name))


def test_every_option_has_help_that_shows_its_default_and_every_command_a_description():
    import argparse

    from hf_arith.cli import build_parser

    for path, parser in all_parsers(build_parser()):
        parser.format_help()  # a stray % in a help text would break here
        assert path == ("hf-arith",) or parser.description, f"{' '.join(path)} has no description"
        formatter = parser._get_formatter()
        for action in parser._actions:
            name = "/".join(action.option_strings) or action.dest
            assert action.help and action.help != argparse.SUPPRESS, f"{' '.join(path)} {name} has no help"
            takes_value = action.option_strings and action.nargs != 0 and not action.required
            if takes_value and not isinstance(action, argparse._VersionAction):
                assert "default" in formatter._get_help_string(action) % {"default": action.default}, \
                    f"{' '.join(path)} {name}: the help does not say its default"


@pytest.mark.parametrize("argv", [
    ["--debug", "data", "prepare", "r.yaml"],
    ["data", "--debug", "prepare", "r.yaml"],
    ["data", "prepare", "r.yaml", "--debug"],  # refused before issue 22
    ["tokenizer", "train", "builtin", "--vocab-size", "300", "--out", "t", "--debug"],
    ["generate", "m", "1+2", "--debug"],
    ["eval", "m", "--debug"],
])
def test_debug_is_accepted_anywhere(argv):
    from hf_arith.cli import parse

    assert parse(argv).debug is True


def test_debug_after_a_nested_command_shows_the_traceback(tmp_path):
    from hf_arith.errors import RecipeError

    with pytest.raises(RecipeError):
        main(["data", "prepare", str(tmp_path / "missing.yaml"), "--debug"])


@pytest.mark.parametrize("argv, message", [
    (["eval", "m", "--samples", "0"], "error: hf-arith eval: argument --samples: 0 is too small: give a whole number "
                                      "of at least 1; see hf-arith eval --help"),
    (["train", "r.yaml", "--max-steps", "ten"], "error: hf-arith train: argument --max-steps: 'ten' is not a whole "
                                                "number; see hf-arith train --help"),
    (["data", "inspect", "runs/x"], "error: hf-arith data inspect: the following arguments are required: --batch"),
    (["generate", "m"], 'error: hf-arith generate: give at least one problem, e.g. hf-arith generate MODEL "123+4567"'),
    (["generate", "m", "1+2", "--bogus"], "error: hf-arith: unrecognized arguments: --bogus"),
])
def test_a_usage_mistake_is_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and err[0].startswith(message), err


def test_problems_that_start_with_a_minus_are_problems():
    from hf_arith.cli import parse

    # argparse took "-5+3" for an unknown option and reported "the following arguments are required"
    assert parse(["generate", "m", "-5+3"]).problems == ["-5+3"]
    assert parse(["generate", "m", "1+2", "-5+3", "3+4", "--device", "cpu"]).problems == ["1+2", "-5+3", "3+4"]
    assert parse(["generate", "m", "--", "-5+3"]).problems == ["-5+3"]


def test_argument_mistakes_are_named_before_torch_is_imported(saved, tmp_path):
    """Seconds of importing torch, transformers and datasets before a typo was named; a bare name
    that is no folder (`missing_dir`) went to the Hub, a minute of retries when offline."""
    script = f"""
import contextlib, io, sys
from hf_arith.cli import main
cases = [
    (["eval", "missing_dir"], "no model folder at missing_dir"),
    (["eval", {str(tmp_path / "nowhere")!r}], "no model folder at"),
    (["eval", {str(saved)!r}, "--lengths", "0-3"], "bad length range '0-3'"),
    (["eval", {str(saved)!r}, "--task", "divide"], "unknown task 'divide'"),
    (["generate", {str(saved)!r}, "1+2", "12?3"], "problem '12?3': unexpected character(s) '?'"),
    (["generate", {str(saved)!r}, "-5+3"], "problem '-5+3': no task has negative numbers"),
    (["data", "eval-set", "--lengths", "1-x"], "bad length range '1-'"),
    (["compare", {str(tmp_path / "nowhere")!r}], "no evaluation results at"),
]
for argv, message in cases:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 2, argv
    assert err.getvalue().startswith("error: ") and message in err.getvalue(), (argv, err.getvalue())
    assert "torch" not in sys.modules, argv
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
