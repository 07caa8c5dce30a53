"""Bad model folders: each is one line naming the problem and the fix, and exit status 2."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from hf_arith.cli import main
from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
from hf_arith.tokenization import build_arith_tokenizer


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good") / "final"
    torch.manual_seed(0)
    AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1,
                                   num_recurrences=1, abacus_num_positions=16)).save_pretrained(folder)
    build_arith_tokenizer().save_pretrained(folder)
    return folder


def broken(good, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(good, folder)
    damage(folder)
    return folder


def cut(fraction):
    def damage(folder):
        weights = folder / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[: int(len(data) * fraction)])
    return damage


@pytest.mark.parametrize("damage, message", [
    (cut(0.001), "not a readable safetensors file"),         # cut inside the header
    (cut(0.9), "truncated"),                                 # header intact, tensor data cut
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 64), "not a readable safetensors file"),
    (lambda f: (f / "tokenizer.json").unlink() or (f / "tokenizer_config.json").unlink(), "has no tokenizer"),
    (lambda f: (f / "config.json").unlink(), "has no config.json"),
    (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), "pickled weights are never loaded"),
    (lambda f: (f / "model.safetensors").unlink(), "has no .safetensors weights; give the folder that holds them"),
])
def test_broken_model_folders_are_one_clear_line(good, tmp_path, capsys, damage, message):
    folder = broken(good, tmp_path, damage)
    for argv in (["generate", str(folder), "1+2"], ["eval", str(folder), "--lengths", "1", "--samples", "1",
                                                      "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert str(folder) in err[0]


def test_a_run_folder_points_to_its_final_folder(good, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(good, run / "final")
    assert main(["generate", str(run), "1+2"]) == 2
    assert "use its final/ folder" in capsys.readouterr().err


def test_a_missing_path_is_not_mistaken_for_a_hub_id(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nowhere"), "1+2"]) == 2
    assert "no model folder at" in capsys.readouterr().err


def test_an_unreachable_hub_id_is_one_line(tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE at import time: a fresh process sees it.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run(["hf-arith", "generate", "someone/not-a-real-model", "1+2"], env=env,
                          capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "cannot load someone/not-a-real-model" in err[0], err


# ---------------------------------------------------------------------------------------------
# The rest of the README's catalogue ("When something is wrong"): recipes, resumes, token files.
# Each: exit status 2 and one line naming the problem and the fix, no traceback.


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and not any("Traceback" in line for line in err), err
    return errors[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A recipe file and a run folder with one checkpoint (step_2)."""
    import json

    from hf_arith.training import recipe_from_dict, train

    folder = tmp_path_factory.mktemp("tiny_run")
    raw = {"seed": 0, "model": {"arch": "abacus", "config": {
               "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 1,
               "num_recurrences": 1, "abacus_num_positions": 16, "abacus_max_k": 4,
               "max_position_embeddings": 32}},
           "data": {"task": "addition", "task_args": {"max_digits": 2}},
           "train": {"max_steps": 2, "micro_batch_size": 8, "global_batch_size": 8, "save_every": 2,
                     "report_to": [], "progress_bar": False}}
    (folder / "tiny.yaml").write_text(json.dumps(raw))
    train(recipe_from_dict({**raw, "output_dir": str(folder / "run")}))
    return folder / "tiny.yaml", folder / "run"


@pytest.mark.parametrize("args, message", [
    (["--set", "train.max_steps=ten"], "train.max_steps: expected an integer, got 'ten'"),
    (["--set", "model.config.num_attention_heads=5"],
     "model.config: hidden_size=32 is not divisible by num_attention_heads=5"),
    (["--set", "train.lrr=1e-3"], "unknown key 'train.lrr'; allowed keys in train: max_steps,"),
    (["--set", "train.max_consecutive_nonfinite=-1"], "train.max_consecutive_nonfinite=-1 must be 0"),
])
def test_bad_recipe_values_are_one_line(tiny_run, tmp_path, capsys, args, message):
    recipe, _ = tiny_run
    assert main(["train", str(recipe), "--output-dir", str(tmp_path / "run"), *args]) == 2
    assert message in one_line(capsys)


def test_malformed_recipe_yaml_names_the_line(tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("train: {max_steps: 10\n")
    assert main(["train", str(tmp_path / "broken.yaml")]) == 2
    assert "broken.yaml: not valid YAML at line 2" in one_line(capsys)


@pytest.mark.parametrize("text", ["", "\n  \n", "# a recipe, some day\n", "{}\n"])
def test_an_empty_recipe_file_is_refused_by_name(tmp_path, capsys, text):
    """It used to train a default model (1024 wide, 8 layers) for 1000 steps."""
    (tmp_path / "empty.yaml").write_text(text)
    assert main(["train", str(tmp_path / "empty.yaml"), "--output-dir", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert f"recipe file '{tmp_path / 'empty.yaml'}' is empty" in line and "recipes/abacus/addition_cpu.yaml" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, key, first, second", [
    ("seed: 1\ndata: {task: addition}\nseed: 2\n", "seed", 1, 3),
    ("train:\n  max_steps: 5\n  lr: 1.0e-3\n  lr: 3.0e-4\n", "train.lr", 3, 4),
    ("eval:\n  evaluators:\n    - {name: arith_loss, args: {samples: 4, samples: 8}}\n",
     "eval.evaluators[0].args.samples", 3, 3),
])
def test_a_key_given_twice_in_a_recipe_is_refused_naming_it_and_its_lines(tmp_path, capsys, text, key, first, second):
    """PyYAML keeps the last of two equal keys without a word."""
    (tmp_path / "twice.yaml").write_text(text)
    assert main(["train", str(tmp_path / "twice.yaml"), "--output-dir", str(tmp_path / "run")]) == 2
    line = one_line(capsys)
    assert f"twice.yaml: not valid YAML at line {second}: duplicate key '{key}' (first at line {first})" in line, line
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_changed_schedule_and_allows_a_longer_run(tiny_run, tmp_path, capsys):
    """`--set train.lr=...` on resume used to warn, keep the checkpoint's schedule and optimizer,
    and write the new lr into recipe.yaml and final/recipe.yaml."""
    recipe, run = tiny_run
    copy = shutil.copytree(run, tmp_path / "run")
    recipes = {p: p.read_text() for p in (copy / "recipe.yaml", copy / "final" / "recipe.yaml")}
    base = ["train", str(recipe), "--output-dir", str(copy), "--resume", "latest", "--max-steps", "3"]
    for change, key, values in [("train.lr=5e-3", "train.lr", "(0.0001 there, 0.005 now)"),
                                ("train.warmup=0.5", "train.warmup", "(0 there, 0.5 now)"),
                                ("train.global_batch_size=16", "train.global_batch_size", "(8 there, 16 now)")]:
        assert main([*base, "--set", change]) == 2
        line = one_line(capsys)
        assert f"cannot resume {copy / 'checkpoints' / 'step_2'} with another {key} {values}" in line, line
        assert "train with it from the start in a new --output-dir" in line
        assert {p: p.read_text() for p in recipes} == recipes  # nothing rewritten
    # A longer run is what resuming is for: it trains on (and says what else changed in the log).
    assert main(base) == 0
    assert (copy / "checkpoints" / "step_3").is_dir() and "max_steps: 3" in (copy / "final" / "recipe.yaml").read_text()


def test_resume_errors_are_one_line(tiny_run, tmp_path, capsys):
    recipe, run = tiny_run
    copy = shutil.copytree(run, tmp_path / "run")
    base = ["train", str(recipe), "--output-dir", str(copy)]
    assert main(base) == 2
    assert "already holds checkpoints of a run; pass --resume latest to continue it" in one_line(capsys)
    assert main([*base, "--resume", str(copy / "final")]) == 2
    assert f"{copy / 'final'} is not a complete checkpoint (no trainer_state.json)" in one_line(capsys)
    # A checkpoint of another model: refused by name before anything is loaded into the new one.
    assert main([*base, "--resume", "latest", "--set", "model.config.hidden_size=64"]) == 2
    line = one_line(capsys)
    assert "was trained with a different model (model.config.hidden_size)" in line and "recipe.yaml" in line


def test_a_token_file_of_another_dtype_is_refused(tmp_path, capsys):
    """uint32 token ids where the manifest says uint16: twice the bytes, twice the instances."""
    import json

    import numpy as np
    from test_text_data import make_tokenizer, text_recipe, write_corpus

    from hf_arith.data.text import prepare_corpus
    from hf_arith.training import recipe_from_dict

    tokenizer = make_tokenizer(tmp_path / "tok")
    write_corpus(tmp_path / "corpus", count=20)
    raw = text_recipe(tmp_path / "data", tmp_path / "tok",
                      [{"name": "c", "paths": [str(tmp_path / "corpus" / "docs.jsonl")]}])
    manifest = prepare_corpus(recipe_from_dict(raw).data)
    assert manifest["dtype"] == "uint16" and len(tokenizer) == 400
    tokens = tmp_path / "data" / "train.bin"
    np.fromfile(tokens, np.uint16).astype(np.uint32).tofile(tokens)
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    assert main(["train", str(tmp_path / "r.yaml"), "--output-dir", str(tmp_path / "run")]) == 2
    instances = manifest["train"]["instances"]
    expected = f"{tokens} holds {2 * instances} instances of 16 uint16 tokens but manifest.json says {instances}"
    line = one_line(capsys)
    assert expected in line and "written with another dtype" in line


# ---------------------------------------------------------------------------------------------
# Issue 22: what used to be a traceback (or a half-started run) is one line.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO, "recipes", "abacus", "addition_cpu.yaml")


@pytest.mark.parametrize("override, line", [
    ("model.config.hidden_size=0",  # was a ZeroDivisionError inside the attention layer
     "error: model.config.hidden_size=0 must be a whole number of at least 1; it is a size (of a layer, a table or "
     "the vocabulary)"),
    ("model.config.abacus_max_k=-3",  # was a RuntimeError at the first step, after the run folder was written
     "error: model.config.abacus_max_k=-3 must be a whole number of at least 0; it is an offset added to digit "
     "positions (0: none)"),
])
def test_impossible_model_sizes_are_refused_before_anything_is_written(tmp_path, capsys, override, line):
    assert main(["train", QUICKSTART, "--output-dir", str(tmp_path / "run"), "--set", override]) == 2
    assert one_line(capsys) == line
    assert not (tmp_path / "run").exists()


def test_a_model_folder_without_weights_is_one_line_for_publish_and_convert(good, tmp_path, capsys):
    """publish used to show transformers' OSError traceback."""
    from hf_arith.modeling.configuration_olmo import ArithOlmoConfig

    folder = broken(good, tmp_path, lambda f: (f / "model.safetensors").unlink())
    assert main(["publish", str(folder), "--repo-id", "me/x", "--local-dir", str(tmp_path / "out")]) == 2
    assert one_line(capsys) == (f"error: {folder} has no .safetensors weights; give the folder that holds them (as "
                                f"`hf-arith train` writes final/), or re-save the model with save_pretrained")
    olmo = tmp_path / "olmo" / "final"
    ArithOlmoConfig(vocab_size=64, hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                    intermediate_size=64).save_pretrained(olmo)
    assert main(["convert", str(olmo), str(tmp_path / "native"), "--to", "native"]) == 2
    assert one_line(capsys) == (f"error: {olmo} has no model.safetensors (pickled weights such as pytorch_model.bin "
                                f"are not read); give the folder that holds the weights, or re-save them with "
                                f"save_pretrained")
    assert not (tmp_path / "out").exists() and not (tmp_path / "native").exists()


NOT_HERE = "; use --device cpu, or leave --device out for the best one available"


@pytest.mark.parametrize("device, line", [
    ("banana", "error: --device banana is not a device; use cpu, cuda, cuda:N or mps, or leave --device out for the "
               "best one available"),
    # torch's own words were "Torch not compiled with CUDA enabled", as an AssertionError traceback
    pytest.param("cuda", f"error: --device cuda: this torch was built without CUDA (torch {torch.__version__}){NOT_HERE}",
                 marks=pytest.mark.skipif(torch.version.cuda is not None, reason="a CUDA build of torch")),
    pytest.param("cuda:7", f"error: --device cuda:7: there are {torch.cuda.device_count()} CUDA GPUs (cuda:0 to cuda:"
                           f"{torch.cuda.device_count() - 1}) (torch {torch.__version__}){NOT_HERE}",
                 marks=pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() > 7,
                                          reason="needs a CUDA GPU (and fewer than 8)")),
])
def test_a_device_that_is_not_here_is_one_line(good, tmp_path, capsys, device, line):
    assert main(["generate", str(good), "1+2", "--device", device]) == 2
    assert one_line(capsys) == line
    assert main(["eval", str(good), "--lengths", "1", "--samples", "1", "--out", str(tmp_path / "e"),
                 "--device", device]) == 2
    assert one_line(capsys) == line
    assert not (tmp_path / "e").exists()


def test_a_shard_size_that_is_not_a_size_is_one_line(good, tmp_path, capsys):
    """It used to load the model, then fail in huggingface_hub with "Unit 'AS' not supported"."""
    with pytest.raises(SystemExit) as exited:
        main(["publish", str(good), "--repo-id", "me/x", "--local-dir", str(tmp_path / "out"),
              "--max-shard-size", "5 bananas"])
    assert exited.value.code == 2
    assert one_line(capsys) == ("error: hf-arith publish: argument --max-shard-size: '5 bananas' is not a size; write "
                                "a number and a unit, e.g. 5GB, 500MB or 50KB (units: KB, MB, GB, TB); see hf-arith "
                                "publish --help")
    assert not (tmp_path / "out").exists()


def test_a_usage_mistake_is_one_line(capsys):
    """argparse printed its usage block and then "hf-arith eval: error: ..."; `--samples 0` wrote an
    empty evaluation."""
    with pytest.raises(SystemExit) as exited:
        main(["eval", "runs/x/final", "--samples", "0"])
    assert exited.value.code == 2
    assert one_line(capsys) == ("error: hf-arith eval: argument --samples: 0 is too small: give a whole number of at "
                                "least 1; see hf-arith eval --help")


def test_a_bare_name_that_is_no_folder_is_not_tried_on_the_hub(tmp_path, capsys, monkeypatch):
    """`missing_dir` was taken for a Hub id: a minute of retries offline, then "cannot load"."""
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "missing_dir"]) == 2
    assert one_line(capsys) == ("error: no model folder at missing_dir; give a folder written by `hf-arith train` "
                                "(e.g. runs/addition_cpu/final) or a Hub repo id ORG/NAME")


@pytest.mark.parametrize("argv", [["-5+3"], ["--", "-5+3"], ["12-5"]])
def test_a_negative_number_or_a_subtraction_is_named(good, capsys, argv):
    """The tokenizer has a '-' token, but no task writes one; "-5+3" used to be taken for an option."""
    assert main(["generate", str(good), *argv]) == 2
    problem = argv[-1]
    assert one_line(capsys) == (f"error: problem '{problem}': no task has negative numbers or subtraction ('-'): the "
                                f"tasks add, multiply and sort non-negative integers (run with --debug for the "
                                f"traceback)")


# ---------------------------------------------------------------------------------------------
# A full disk while writing a folder: one line, and nothing half-written (a 0-byte tokenizer.json
# was left behind). Each folder is written to a hidden temporary folder and renamed into place.


@pytest.fixture(scope="module")
def forker():
    from cli_forker import Forker

    forker = Forker(env={**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    yield forker
    forker.close()


def test_a_full_disk_leaves_no_half_written_folder(good, tmp_path, forker):
    """RLIMIT_FSIZE (cli_forker's file_size_limit, as in test_reliability): the kernel refuses every
    write past 4 kB with EFBIG, as a full disk refuses it with ENOSPC, also to the writers in Rust
    (safetensors, tokenizers) that raise their own exception types."""
    from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
    from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM

    olmo = tmp_path / "olmo"
    ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=64, hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                                         intermediate_size=64)).save_pretrained(olmo)
    out = tmp_path / "out"
    out.mkdir()
    commands = {  # the folder written: the error names it (or the file in it that was being written)
        out / "tok": ["tokenizer", "train", "builtin", "--vocab-size", "300", "--out", out / "tok"],
        out / "published": ["publish", good, "--repo-id", "me/x", "--local-dir", out / "published"],
        out / "native": ["convert", olmo, out / "native", "--to", "native"],
    }
    for folder, argv in commands.items():
        log = tmp_path / f"{folder.name}.log"
        assert forker.run(argv, log=log, file_size_limit=4000).returncode == 2, log.read_text()[-3000:]
        line = one_line_of(log.read_text())
        assert line.startswith(f"error: cannot write {folder}"), line
        assert "File too large; free some space or choose another output folder" in line, line
        assert list(out.iterdir()) == [], argv[0]  # neither the folder nor its hidden temporary one


def one_line_of(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in text, text[-3000:]
    return lines[0]


def test_a_full_disk_keeps_the_tokenizer_folder_as_it_was(tmp_path, capsys, monkeypatch):
    """ENOSPC as tokenizers reports it (an Exception whose text ends in "(os error 28)"), after it
    has written part of the file; retraining into a folder keeps its old tokenizer when this fails."""
    from transformers import PreTrainedTokenizerFast

    def full_disk(self, folder, *args, **kwargs):
        (Path(folder) / "tokenizer.json").write_text("")
        raise Exception("No space left on device (os error 28)")

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\n" * 50)
    out = tmp_path / "tok"
    out.mkdir()
    (out / "tokenizer.json").write_text('{"old": true}')
    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", full_disk)
    assert main(["tokenizer", "train", str(corpus), "--vocab-size", "300", "--out", str(out)]) == 2
    assert one_line(capsys) == (f"error: cannot write {out}: No space left on device; free some space or choose "
                                f"another output folder (run with --debug for the traceback)")
    assert (out / "tokenizer.json").read_text() == '{"old": true}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "tok"]


def test_non_finite_weights_are_refused_wherever_a_model_is_read(good, tmp_path, capsys):
    """A diverged run's weights used to be evaluated (0%), generated from (`<pad><pad>...`),
    published (exit 0, with the training-time perplexity on the card) and converted."""
    from safetensors.torch import load_file, save_file

    from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
    from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM

    def poison(folder):
        weights = load_file(folder / "model.safetensors")
        weights["model.embed_tokens.weight"][3, 1] = float("nan")
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})

    folder = broken(good, tmp_path, poison)
    expected = (f"error: {folder} holds non-finite weights (model.embed_tokens.weight has NaN or inf): the run "
                f"diverged or the file is corrupt; use the final/ of a run that ended normally, or an earlier "
                f"checkpoint (its training continues with --resume RUN/checkpoints/step_N)")
    for args in (["eval", str(folder), "--task", "addition", "--lengths", "1-2", "--samples", "2",
                  "--out", str(tmp_path / "eval")],
                 ["generate", str(folder), "12+34"],
                 ["publish", str(folder), "--repo-id", "me/x", "--local-dir", str(tmp_path / "out")]):
        assert main(args) == 2, args
        assert one_line(capsys) == expected, args
    olmo = tmp_path / "olmo" / "final"
    ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=64, hidden_size=32, num_attention_heads=2, num_hidden_layers=1,
                                         intermediate_size=64)).save_pretrained(olmo)
    poison(olmo)
    assert main(["convert", str(olmo), str(tmp_path / "native"), "--to", "native"]) == 2
    assert one_line(capsys).startswith(f"error: {olmo} holds non-finite weights (model.embed_tokens.weight has NaN")
    assert not any((tmp_path / name).exists() for name in ("eval", "out", "native"))


def test_a_tokenizer_is_not_trained_on_an_empty_corpus(tmp_path, capsys):
    """It used to write a 258-token tokenizer (the bare byte alphabet) when 500 were asked, and exit 0."""
    (tmp_path / "empty.txt").write_text("")
    assert main(["tokenizer", "train", str(tmp_path / "empty.txt"), "--vocab-size", "500",
                 "--out", str(tmp_path / "tok")]) == 2
    assert one_line(capsys) == ("error: the corpus has no text to train a tokenizer on (empty files, or a "
                                "--text-field that no record has); give files with text")
    assert not (tmp_path / "tok").exists()


def test_eval_and_generate_refuse_a_text_model(tmp_path, capsys):
    """An OLMo text model used to be graded (0%) and answer addition with text ("1.1.")."""
    from hf_arith.modeling.configuration_olmo import ArithOlmoConfig
    from hf_arith.modeling.modeling_olmo import ArithOlmoForCausalLM
    from hf_arith.tokenization import train_bpe_tokenizer

    folder = tmp_path / "olmo" / "final"
    tokenizer = train_bpe_tokenizer(["12 plus 34 is 46; 123 and 4567 make 4690."] * 200, vocab_size=300)
    ArithOlmoForCausalLM(ArithOlmoConfig(vocab_size=len(tokenizer), hidden_size=32, num_attention_heads=2,
                                         num_hidden_layers=1, intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    expected = (f"error: {folder} is not an arithmetic model: its tokenizer does not write "
                f"one token per digit; eval and generate score arithmetic models (for a text model, use the "
                f"perplexity and multiple_choice evaluators, or lm-eval)")
    for args in (["eval", str(folder), "--task", "addition", "--lengths", "1-2", "--samples", "2",
                  "--out", str(tmp_path / "eval")], ["generate", str(folder), "12+34"]):
        assert main(args) == 2, args
        assert one_line(capsys) == expected, args
    assert not (tmp_path / "eval").exists()


def test_generate_refuses_a_problem_of_another_task(good, tmp_path, capsys):
    """An addition model asked `12*3` used to answer it."""
    folder = broken(good, tmp_path, lambda f: (f / "recipe.yaml").write_text(
        "data:\n  task: addition\n  task_args: {max_digits: 3}\n"))
    assert main(["generate", str(folder), "12+3", "12*3"]) == 2
    assert one_line(capsys) == (f"error: {folder} was trained on addition, but '12*3' is multiplication; give "
                                f"addition problems, or a model trained on multiplication")
