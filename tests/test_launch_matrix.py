"""Every shipped training recipe under every shipped launch config, launched as recipes/README.md
prints it: `accelerate launch --config_file recipes/accelerate/<config>.yaml --num_processes 2
-m hf_arith train recipes/<recipe>.yaml`, on 2 CPU processes over gloo.

The recipes are the shipped files; `--set` overrides only shorten them to 3 steps, swap their
in-loop evaluators for a cheap held-out loss, shrink the paper-scale models, and point the OLMo
recipes at a small local corpus and tokenizer (no Hub at test time). The quickstart recipe runs at
its shipped size, with every random option it has (per-batch Abacus offsets, progressive loss).
For each cell: 3 steps with a checkpoint after each; the losses and gradient norms equal those of
the one-process launch (`single.yaml`) of the same recipe; the run resumed from its step-2
checkpoint (`--resume latest`) ends with the same weights; `final/` loads with
`AutoModelForCausalLM` and scores what the in-training model scored (the recipe's own held-out
evaluator, logged by the loop at the last step, recomputed here on the loaded folder).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_arith.training import load_recipe
from hf_arith.training.evaluators import build_evaluators
from hf_arith.training.metrics_log import read_metrics
from test_distributed import deepspeed_ops, free_port, launch_env  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["single", "ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]

COMMON = ["--max-steps", "3", "--save-every", "1", "--set", "train.keep_last=3", "--set", "train.log_every=1",
          "--set", "train.eval_every=0", "--set", "train.progress_bar=false", "--set", "train.report_to=[]",
          "--set", "train.time_budget_minutes=null"]
ARITH_EVAL = ["--set", "eval.evaluators=[{name: arith_loss, args: {samples: 16}}]"]
SMALL_ABACUS = ["--set", "model.config.hidden_size=32", "--set", "model.config.num_attention_heads=2",
                "--set", "model.config.intermediate_size=32", "--set", "train.micro_batch_size=4",
                "--set", "train.global_batch_size=16", *ARITH_EVAL]
# The paper-scale recipes ramp their batch over wall-clock time; a step clock keeps the cells comparable.
STEP_CLOCK = ["--set", "train.schedule_clock=steps", "--set", "train.batch_ramp=0"]
SMALL_OLMO = ["--set", "model.config.hidden_size=32", "--set", "model.config.num_attention_heads=2",
              "--set", "model.config.num_hidden_layers=2", "--set", "model.config.intermediate_size=64",
              "--set", "model.config.max_position_embeddings=32", "--set", "data.sequence_length=32",
              "--set", "train.micro_batch_size=2", "--set", "train.global_batch_size=8",
              "--set", "eval.evaluators=[{name: perplexity, args: {batch_size: 4}}]"]
RECIPES = {
    "abacus/addition_cpu": ARITH_EVAL,  # the quickstart as shipped (0.3M parameters, 4 micro-batches of 32)
    "abacus/multiplication": SMALL_ABACUS + STEP_CLOCK,
    "abacus/sorting": SMALL_ABACUS + STEP_CLOCK,
    "abacus/addition_paper": SMALL_ABACUS + STEP_CLOCK,
    "olmo/tiny_cpu": SMALL_OLMO,
    "olmo/olmo_1b": SMALL_OLMO + ["--set", "model.config.embedding_size=null"],
    "olmo/olmo_7b": SMALL_OLMO + ["--set", "model.config.embedding_size=null"],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tokenizer and a prepared corpus of 32-token instances, made with the CLI from the built-in
    text, as recipes/olmo/tiny_cpu.yaml's header says."""
    root = tmp_path_factory.mktemp("corpus")
    tokenizer, data = root / "tokenizer", root / "data"
    cli = [sys.executable, "-m", "hf_arith"]
    subprocess.run([*cli, "tokenizer", "train", "builtin", "--vocab-size", "512", "--out", str(tokenizer)],
                   check=True, capture_output=True, env=launch_env(), cwd=root)
    subprocess.run([*cli, "data", "prepare", str(REPO / "recipes/olmo/tiny_cpu.yaml"),
                    "--set", f"data.path={data}", "--set", f"data.tokenizer={tokenizer}",
                    "--set", "data.sequence_length=32"],
                   check=True, capture_output=True, env=launch_env(), cwd=root)
    return ["--set", f"data.path={data}", "--set", f"data.tokenizer={tokenizer}"]


def train_args(recipe: str, corpus_args: list[str]) -> list[str]:
    args = [str(REPO / "recipes" / f"{recipe}.yaml"), *COMMON, *RECIPES[recipe]]
    return args + corpus_args if recipe.startswith("olmo/") else args


def launch(config: str, args: list[str], out: Path, *extra: str) -> None:
    """The command recipes/README.md prints; `single.yaml` starts one process."""
    processes = [] if config == "single" else ["--num_processes", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
         str(REPO / "recipes/accelerate" / f"{config}.yaml"), *processes, "--main_process_port", str(free_port()),
         "-m", "hf_arith", "train", *args, "--output-dir", str(out), *extra],
        env=launch_env(), cwd=out.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-5000:]


def losses(run: Path) -> dict:
    return {r["step"]: (r["loss"], r["grad_norm"]) for r in read_metrics(run / "metrics.jsonl") if "loss" in r}


def final_eval(run: Path) -> dict:
    rows = [r for r in read_metrics(run / "metrics.jsonl") if any(k.startswith("eval/") for k in r)]
    return {k: v for k, v in rows[-1].items() if k.startswith("eval/")}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, corpus):
    """recipe -> the `single.yaml` run, made once."""
    root, runs = tmp_path_factory.mktemp("single"), {}

    def get(recipe: str) -> Path:
        if recipe not in runs:
            runs[recipe] = root / recipe.replace("/", "_")
            launch("single", train_args(recipe, corpus), runs[recipe])
        return runs[recipe]
    return get


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_recipe_trains_resumes_and_saves_under_launch_config(recipe, config, corpus, one_process, tmp_path,
                                                              request):
    if config.startswith("deepspeed"):
        request.getfixturevalue("deepspeed_ops")
    args = train_args(recipe, corpus)
    reference = one_process(recipe)
    run = reference if config == "single" else tmp_path / "run"
    if config != "single":
        launch(config, args, run)
    bf16 = load_recipe(run / "recipe.yaml").train.mixed_precision == "bf16"
    tolerance = 2e-2 if bf16 else 1e-5  # float reduction order; bf16 rounds differently once sharded
    expected = losses(reference)
    assert sorted(losses(run)) == [1, 2, 3] == sorted(expected)
    for step, (loss, norm) in losses(run).items():
        assert loss == pytest.approx(expected[step][0], rel=tolerance), step
        assert norm == pytest.approx(expected[step][1], rel=max(tolerance, 1e-4)), step

    # Resumed from the step-2 checkpoint, as a requeued job would be: the same end.
    resumed = tmp_path / "resumed"
    shutil.copytree(run / "checkpoints" / "step_2", resumed / "checkpoints" / "step_2")
    (resumed / "checkpoints" / "latest").write_text("step_2\n")
    launch(config, args, resumed, "--resume", "latest")
    assert losses(resumed)[3] == pytest.approx(losses(run)[3], rel=1e-6)
    saved, again = load_file(run / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert sorted(saved) == sorted(again)
    for key in saved:
        torch.testing.assert_close(again[key], saved[key], rtol=1e-6, atol=1e-7, msg=key)

    # final/ is the in-training model: it scores what the loop logged for it at the last step.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(run / "final", trust_remote_code=True, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(run / "final", trust_remote_code=True)
    logged = final_eval(run)
    recipe_saved = load_recipe(run / "final" / "recipe.yaml")
    computed = {}
    with torch.no_grad():
        for name, evaluate in build_evaluators(recipe_saved, tokenizer):
            computed.update({f"eval/{name}/{k}": float(v) for k, v in evaluate(model, 3).items()})
    assert sorted(computed) == sorted(logged)
    # bf16 folders written by ZeRO hold the weights rounded to bf16 (recipes/README.md).
    for key, value in logged.items():
        assert computed[key] == pytest.approx(value, rel=2e-2 if bf16 else 1e-4), key
