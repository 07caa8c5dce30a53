"""The trainer end to end on tiny Abacus models: it learns, it resumes exactly, it saves a folder
that loads without hf_arith and answers like the trained model, and recipes fail clearly."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from helpers import run_isolated
from safetensors.torch import load_file

from hf_arith.errors import HfArithError, RecipeError
from hf_arith.tokenization import build_arith_tokenizer
from hf_arith.training import build_model, load_recipe, recipe_from_dict, train
from hf_arith.training.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[1]

TINY_MODEL = {
    "arch": "abacus",
    "config": {
        "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "num_hidden_layers": 1,
        "num_recurrences": 2, "abacus_num_positions": 16, "abacus_max_k": 4, "max_position_embeddings": 32,
    },
}


def tiny_recipe(tmp_path, **train_overrides):
    train = {"max_steps": 20, "micro_batch_size": 32, "global_batch_size": 32, "lr": 3e-3, "log_every": 1,
             "report_to": [], "progress_bar": False, **train_overrides}
    return recipe_from_dict({
        "seed": 3, "output_dir": str(tmp_path), "model": TINY_MODEL,
        "data": {"task": "addition", "task_args": {"max_digits": 2}}, "train": train,
    })


def python_sums(rng, count):
    """`count` random 1..2-digit additions and their sums, from Python integers."""
    return [(a, b, a + b) for a, b in ((rng.randrange(100), rng.randrange(100)) for _ in range(count))]


@pytest.mark.slow
def test_a_few_hundred_steps_learn_two_digit_addition(tmp_path):
    from hf_arith.evaluation import answer
    from hf_arith.evaluation.commands import load_for_inference

    recipe = tiny_recipe(tmp_path, max_steps=500, micro_batch_size=64, global_batch_size=64, schedule="wcc",
                         warmup=0.05, cooldown=0.2, log_every=20)
    # No random Abacus offsets: a tiny model then learns within a few hundred steps (the offsets'
    # own effect is measured on the quickstart, see the README).
    recipe.model.config["abacus_max_k"] = 0
    final = train(recipe)
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert losses[0] > 1.5 and losses[-1] < 0.1, losses  # cross-entropy per answer token
    model, tokenizer = load_for_inference(final, device="cpu")
    problems = python_sums(random.Random(99), 200)
    answers = answer(model, tokenizer, [f"{a}+{b}" for a, b, _ in problems])
    accuracy = sum(got == str(total) for got, (_, _, total) in zip(answers, problems)) / len(problems)
    assert accuracy >= 0.9, accuracy

    # The cheap in-loop exact match (one teacher-forced pass) is greedy decoding's exact match,
    # here on cells in and beyond the training lengths, where the model is partly right.
    from hf_arith.data.arithmetic import ArithmeticCollator, eval_set
    from hf_arith.evaluation.decoding import greedy_generate
    from hf_arith.training.evaluators import teacher_forced_scores

    rows = list(eval_set("addition", [(2, 2), (3, 2), (3, 3)], samples=40, seed=7))
    with torch.no_grad():
        scores = teacher_forced_scores(model, ArithmeticCollator(tokenizer), rows)
    generated = greedy_generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=6)
    greedy = sum(stopped and text == r["answer"] for (text, stopped), r in zip(generated, rows)) / len(rows)
    assert scores["exact_match"] == greedy


def test_final_folder_loads_without_hf_arith_and_gives_the_same_logits(tmp_path):
    final = train(tiny_recipe(tmp_path / "run", max_steps=3))
    names = {p.name for p in final.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "recipe.yaml",
            "modeling_abacus.py", "configuration_abacus.py", "layers.py", "tokenization_arith.py"} <= names
    auto_map = json.loads((final / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM"}

    from hf_arith.evaluation.commands import load_for_inference

    model, tokenizer = load_for_inference(final, device="cpu")
    prompts = ["21+3=", "9+99="]
    with torch.no_grad():
        expected = model(**tokenizer(prompts, padding=True, return_tensors="pt")).logits
        expected_tokens = model.generate(**tokenizer(prompts, padding=True, return_tensors="pt"), max_new_tokens=4,
                                         do_sample=False).tolist()
    code = f"""
        import json, torch
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
        path = {str(final)!r}
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        batch = tok({prompts!r}, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
            tokens = model.generate(**batch, max_new_tokens=4, do_sample=False)
            hidden = AutoModel.from_pretrained(path, trust_remote_code=True)(**batch).last_hidden_state
        torch.save(logits, "logits.pt")
        print(json.dumps({{"tokens": tokens.tolist(), "hidden": list(hidden.shape),
                          "module": type(model).__module__}}))
    """
    out = json.loads(run_isolated(code, cwd=tmp_path).splitlines()[-1])
    assert out["module"].startswith("transformers_modules")
    assert out["tokens"] == expected_tokens and out["hidden"] == [2, 5, 64]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt", weights_only=True), expected, rtol=0, atol=0)
    # The saved generation config leaves the length to the caller: a saved max_new_tokens would
    # override `max_length` (lm-eval asks for max_length=len+5 and got 128 new tokens).
    generation = json.loads((final / "generation_config.json").read_text())
    assert "max_new_tokens" not in generation and "max_length" not in generation
    assert (generation["eos_token_id"], generation["pad_token_id"], generation["do_sample"]) == (3, 0, False)
    batch = tokenizer(["21+3="], return_tensors="pt")
    out = model.generate(**batch, max_length=batch["input_ids"].shape[1] + 3, eos_token_id=None)
    assert out.shape[1] == batch["input_ids"].shape[1] + 3


def test_the_logged_loss_is_the_cross_entropy_and_the_z_loss_has_its_own_column(tmp_path):
    """Reference: the same run without a z-loss. Its first step's loss is the cross-entropy of the
    same initial weights on the same batch; the z-loss term is the coefficient times a quantity of
    those logits, so doubling the coefficient doubles it. Before, `loss` was the sum of both."""
    def first_records(coefficient):
        out = tmp_path / f"z{coefficient}"
        train(tiny_recipe(out, max_steps=3, z_loss=coefficient))
        return read_metrics(out / "metrics.jsonl")

    plain, z, z2 = first_records(0.0), first_records(1e-2), first_records(2e-2)
    assert "z_loss" not in plain[0]  # no column of zeros in runs without one
    assert z[0]["loss"] == z2[0]["loss"] == plain[0]["loss"]
    assert z[0]["z_loss"] > 0 and z2[0]["z_loss"] == pytest.approx(2 * z[0]["z_loss"], rel=1e-6)
    assert z[2]["loss"] != plain[2]["loss"]  # the z-loss is still trained on


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    full = tiny_recipe(tmp_path / "full", max_steps=12, save_every=6, keep_last=5)
    train(full)
    # The "interrupted" run: only what the full run had on disk at step 6.
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step_6", interrupted / "checkpoints" / "step_6")
    (interrupted / "checkpoints" / "latest").write_text("step_6\n")
    resumed = tiny_recipe(interrupted, max_steps=12, save_every=6, keep_last=5)
    train(resumed, resume="latest")

    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(interrupted / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    optimizer = [torch.load(d / "checkpoints" / "step_12" / "optimizer.bin", weights_only=True)
                 for d in (tmp_path / "full", interrupted)]
    for state_a, state_b in zip(optimizer[0]["state"].values(), optimizer[1]["state"].values()):
        assert all(torch.equal(state_a[k], state_b[k]) for k in ("exp_avg", "exp_avg_sq"))
    losses = [{r["step"]: r["loss"] for r in read_metrics(d / "metrics.jsonl") if "loss" in r}
              for d in (tmp_path / "full", interrupted)]
    assert [losses[0][s] for s in range(7, 13)] == [losses[1][s] for s in range(7, 13)]
    state = json.loads((interrupted / "checkpoints" / "step_12" / "trainer_state.json").read_text())
    assert state["step"] == 12 and state["examples"] == 12 * 32


def test_a_run_refuses_to_overwrite_checkpoints_without_resume(tmp_path):
    train(tiny_recipe(tmp_path, max_steps=2, save_every=1))
    with pytest.raises(HfArithError, match="--resume latest"):
        train(tiny_recipe(tmp_path, max_steps=2, save_every=1))


def test_resume_refuses_a_different_model(tmp_path):
    train(tiny_recipe(tmp_path, max_steps=2, save_every=1))
    other = tiny_recipe(tmp_path, max_steps=4, save_every=1)
    other.model.config["hidden_size"] = 32
    with pytest.raises(HfArithError, match="model.config.hidden_size"):
        train(other, resume="latest")


def test_gradient_accumulation_and_batch_size_do_not_change_the_update(tmp_path):
    """One step on a global batch of 32 as 1x32 or 4x8 micro-batches: the same loss and weights."""
    runs = {}
    for micro in (32, 8):
        out = tmp_path / f"micro{micro}"
        recipe = tiny_recipe(out, max_steps=2, micro_batch_size=micro, global_batch_size=32)
        recipe.data.bucket_by_length = False
        recipe.model.config["progressive_loss_alpha"] = 0.0  # no random depth: the forward is deterministic
        recipe.model.config["abacus_max_k"] = 0
        train(recipe)
        runs[micro] = (load_file(out / "final" / "model.safetensors"), read_metrics(out / "metrics.jsonl"))
    (w32, m32), (w8, m8) = runs[32], runs[8]
    assert [r["loss"] for r in m32] == pytest.approx([r["loss"] for r in m8], rel=1e-5)
    for key in w32:
        torch.testing.assert_close(w32[key], w8[key], rtol=1e-4, atol=1e-6)


def test_every_shipped_recipe_loads():
    recipes = sorted(REPO.glob("recipes/**/*.yaml"))
    recipes = [p for p in recipes if "accelerate" not in p.parts]
    assert len(recipes) >= 4
    for path in recipes:
        load_recipe(path)


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown key 'train.lrr'"),
    ("train.lr=fast", "train.lr: expected a number"),
    ("model.config.hidden_sise=8", "unknown key 'model.config.hidden_sise'"),
    ("train.schedule=exponential", "'exponential' is not allowed"),
    ("train.warmup=2.5", "train.warmup"),
    ("train.global_batch_size=8", "smaller than train.micro_batch_size"),
    ("model.config.num_attention_heads=5", "not divisible"),
    ("data.task=division", "unknown task 'division'"),
])
def test_bad_recipes_are_named(tmp_path, override, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(".", r"\.")):
        recipe = load_recipe(REPO / "recipes/abacus/addition_cpu.yaml", [override, f"output_dir={tmp_path}"])
        train(recipe)  # model-config and task errors surface when the run is built


def test_a_short_max_steps_scales_warmup_and_cooldown_and_says_so(caplog):
    recipe_path = REPO / "recipes/olmo/tiny_cpu.yaml"
    full = load_recipe(recipe_path)
    assert (full.train.max_steps, full.train.warmup) == (400, 40)
    with caplog.at_level("WARNING", logger="hf_arith"):
        short = load_recipe(recipe_path, ["train.max_steps=8"])
    assert short.train.warmup == 0.1  # 40 of 400 steps: the same share of the shorter run
    assert "train.warmup: 40 of the recipe's 400 steps do not fit max_steps=8" in caplog.text
    assert load_recipe(recipe_path, ["train.max_steps=100"]).train.warmup == 40  # fits: unchanged
    with pytest.raises(RecipeError, match="exceed train.max_steps"):  # a recipe that itself does not fit
        load_recipe(recipe_path, ["train.warmup=500"])


def test_yaml_words_for_false_stay_words():
    recipe = load_recipe(REPO / "recipes/abacus/addition_cpu.yaml", ["train.mixed_precision=no"])
    assert recipe.train.mixed_precision == "no"


def test_exponent_numbers_are_floats_in_untyped_model_config_too(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-12` as a string; in `model.config` nothing converted it and the
    # first LayerNorm failed inside torch. Overrides and recipe files alike now give floats.
    recipe = load_recipe(REPO / "recipes/abacus/addition_cpu.yaml",
                         ["model.config.layer_norm_eps=1e-12", "train.eps=1e-12", "output_dir='1e3'"])
    assert recipe.model.config["layer_norm_eps"] == 1e-12 and recipe.train.eps == 1e-12
    assert recipe.output_dir == "1e3"  # quoted in YAML: stays a string
    written = tmp_path / "r.yaml"
    written.write_text((REPO / "recipes/abacus/addition_cpu.yaml").read_text().replace("lr: 1.0e-3", "lr: 1e-3"))
    assert load_recipe(written).train.lr == 1e-3
    model = build_model(recipe.model, build_arith_tokenizer())
    assert model.config.layer_norm_eps == 1e-12
    model(torch.tensor([[5, 14, 6, 18]]))  # the LayerNorms run with it


class OffsetOracle(torch.nn.Module):
    """Predicts every next token right when `config.abacus_eval_offset` is in `good`, and the
    first answer token wrong for `wrong_share` of the rows otherwise."""

    def __init__(self, good, wrong_share):
        super().__init__()
        from hf_arith.modeling import AbacusConfig

        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = AbacusConfig(abacus_eval_offset=0)  # a model with an Abacus table, as the evaluator asks
        self.good, self.wrong_share = good, wrong_share

    def forward(self, input_ids, labels, attention_mask=None, num_items_in_batch=None):
        from types import SimpleNamespace

        target = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100).clamp(min=0)
        if self.config.abacus_eval_offset not in self.good:
            first = (labels != -100).int().argmax(-1) - 1  # the position that predicts the first answer token
            rows = torch.arange(int(len(target) * self.wrong_share))
            target[rows, first[rows]] = (target[rows, first[rows]] + 1) % 10 + 4
        logits = torch.nn.functional.one_hot(target, 31).float() * 20
        return SimpleNamespace(logits=logits, loss=torch.tensor(0.0))


def test_abacus_offset_calibration_picks_the_best_offset_and_keeps_it():
    from hf_arith.training.evaluators import build_evaluators
    from hf_arith.training.recipe import EvaluatorSpec

    recipe = tiny_recipe(Path("unused"))
    recipe.eval.evaluators = [EvaluatorSpec("abacus_eval_offset", {"offsets": "0-6", "samples": 40})]
    [(_, calibrate)] = build_evaluators(recipe, None)
    oracle = OffsetOracle(good={4, 5}, wrong_share=0.25)
    metrics = calibrate(oracle, step=0)
    assert metrics["offset"] == 4  # ties go to the smaller offset
    assert oracle.config.abacus_eval_offset == 0  # an evaluation leaves the model as it was
    assert metrics["exact_match"] == 1.0 and metrics["exact_match/offset_0"] == 0.75


def test_abacus_offset_calibration_on_longer_problems_uses_exactly_those_lengths():
    """`lengths` swaps the in-distribution problems for a validation grid just beyond training."""
    from hf_arith.tokenization import build_arith_tokenizer
    from hf_arith.training.evaluators import build_evaluators
    from hf_arith.training.recipe import EvaluatorSpec

    class Recording(OffsetOracle):
        seen = []

        def forward(self, input_ids, labels, **kwargs):
            self.seen.append(input_ids.clone())
            return super().forward(input_ids, labels, **kwargs)

    recipe = tiny_recipe(Path("unused"))
    recipe.eval.evaluators = [EvaluatorSpec("abacus_eval_offset", {"offsets": "0-2", "samples": 5, "lengths": "7-8"})]
    [(_, calibrate)] = build_evaluators(recipe, None)
    oracle = Recording(good={2}, wrong_share=0.5)
    assert calibrate(oracle, step=0)["offset"] == 2
    tokenizer = build_arith_tokenizer()
    prompts = {tokenizer.decode(row, skip_special_tokens=True).split("=")[0] for batch in oracle.seen for row in batch}
    lengths = {(len(p.split("+")[0]), len(p.split("+")[1])) for p in prompts}
    assert lengths == {(7, 7), (7, 8), (8, 7), (8, 8)}, lengths
    assert len(prompts) == 4 * 5


def test_weight_decay_groups_by_default_and_as_the_abacus_reference():
    from hf_arith.modeling.configuration_abacus import AbacusConfig
    from hf_arith.modeling.modeling_abacus import AbacusForCausalLM

    from hf_arith.training.optim import param_groups

    model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=4, intermediate_size=32,
                                           num_hidden_layers=1, attention_positions="fire", layer_norm_bias=True,
                                           embedding_norm=True, abacus_num_positions=32))
    names = {id(p): n for n, p in model.named_parameters()}

    def decayed(**kwargs):
        return {names[id(p)] for p in param_groups(model, 0.1, **kwargs)[0]["params"]}

    linear_weights = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".fire." not in n}
    assert decayed() == {n + ".weight" for n in linear_weights}
    reference = decayed(decay_embeddings=True)  # cramming's group_parameters: all but biases and norms
    assert {"model.embed_tokens.weight", "model.abacus.embedding.weight",
            "model.layers.0.self_attn.fire.c", "model.layers.0.self_attn.fire.threshold_scale",
            "model.layers.0.self_attn.fire.mlp.0.weight"} <= reference
    assert not any(n.endswith("bias") or "norm" in n for n in reference)
    assert reference | {n for n in names.values() if n.endswith("bias") or "norm" in n} == set(names.values())


def test_schedules_by_wall_clock_cool_down_inside_the_budget_and_resume_where_they_were(tmp_path, monkeypatch):
    from hf_arith.training import trainer
    from hf_arith.training.optim import BatchSchedule

    # A clock that advances 20 ms per reading: the run lasts the same number of steps on a busy
    # or a quiet machine (the real one let a loaded CI box fit too few steps into 3 s).
    ticks = iter(range(10**9))
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: next(ticks) * 0.02)

    timed = dict(schedule_clock="time", time_budget_minutes=0.05, max_steps=100_000, micro_batch_size=8,
                 global_batch_size=32, batch_ramp=0.6, schedule="wcc", warmup=0.1, cooldown=0.2, save_every=10,
                 keep_last=1000)
    train(tiny_recipe(tmp_path / "full", **timed))
    records = [r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "loss" in r]
    lrs, sizes = [r["lr"] for r in records], [r["batch_size"] for r in records]
    assert len(records) > 30 and records[-1]["elapsed_s"] >= 3.0  # stopped by the budget, not max_steps
    assert lrs[0] == 0.0 and max(lrs) == 3e-3 and lrs[-1] < 0.2 * 3e-3  # warmed up, cooled down by the end
    assert sizes[0] == 8 and sizes == sorted(sizes) and sizes[-1] == 32  # the ramp, in whole micro-batches
    assert records[-1]["examples"] == sum(sizes)

    # Resume from a checkpoint in the middle: the clock, the batch and the data position go on.
    step = max(int(p.name.split("_")[1]) for p in (tmp_path / "full" / "checkpoints").glob("step_*")
               if int(p.name.split("_")[1]) < len(records) // 2)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(tmp_path / "full" / "checkpoints" / f"step_{step}", interrupted / "checkpoints" / f"step_{step}")
    (interrupted / "checkpoints" / "latest").write_text(f"step_{step}\n")
    saved = json.loads((interrupted / "checkpoints" / f"step_{step}" / "trainer_state.json").read_text())
    train(tiny_recipe(interrupted, **timed), resume="latest")
    first = next(r for r in read_metrics(interrupted / "metrics.jsonl") if r.get("step") == step + 1)
    expected = BatchSchedule(final=32, micro=8).size_at(saved["elapsed_s"] / 3.0, ramp=0.6)
    assert first["batch_size"] == expected and first["examples"] == saved["examples"] + expected
    assert first["lr"] == lrs[step]  # set at the end of the checkpointed step, as in the full run


def test_schedule_by_time_needs_a_budget_and_fractions(tmp_path):
    with pytest.raises(RecipeError, match="time_budget_minutes"):
        tiny_recipe(tmp_path, schedule_clock="time", schedule="wcc", warmup=0.1, cooldown=0.1)
    with pytest.raises(RecipeError, match="fractions of the time budget"):
        tiny_recipe(tmp_path, schedule_clock="time", time_budget_minutes=5, schedule="wcc", warmup=100)


def test_the_chosen_abacus_offset_is_kept_with_checkpoints_and_applied_when_the_run_ends(tmp_path, monkeypatch):
    """The evaluator used to write model.config mid-run, and a resumed run forgot its choice."""
    import shutil

    from hf_arith.training import evaluators, trainer
    from hf_arith.training.recipe import EvaluatorSpec

    seen = []

    def scores(model, collate, rows, batch_size):  # offset 2 is the best one, whatever the weights
        return {"exact_match": 1.0 if model.config.abacus_eval_offset == 2 else 0.5}

    monkeypatch.setattr(evaluators, "teacher_forced_scores", scores)
    real = trainer.train_step

    def recording(accelerator, model, forward, batches, recipe, step):
        seen.append(accelerator.unwrap_model(model).config.abacus_eval_offset)
        return real(accelerator, model, forward, batches, recipe, step)

    monkeypatch.setattr(trainer, "train_step", recording)
    recipe = tiny_recipe(tmp_path / "run", max_steps=3, save_every=1, eval_every=1)
    recipe.eval.evaluators = [EvaluatorSpec("abacus_eval_offset", {"offsets": "0-3", "samples": 4})]
    final = train(recipe)
    assert seen == [0, 0, 0]  # training never saw the chosen offset
    assert json.loads((final / "config.json").read_text())["abacus_eval_offset"] == 2
    state = json.loads((tmp_path / "run" / "checkpoints" / "step_1" / "trainer_state.json").read_text())
    assert state["config_updates"] == {"abacus_eval_offset": 2}

    # Resumed from step 1 with no evaluation after it: the choice comes from the checkpoint.
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "run" / "checkpoints" / "step_1", resumed / "checkpoints" / "step_1")
    (resumed / "checkpoints" / "latest").write_text("step_1\n")
    again = tiny_recipe(resumed, max_steps=3, save_every=1, eval_every=1)
    again.eval.evaluators = []
    assert json.loads((train(again, resume="latest") / "config.json").read_text())["abacus_eval_offset"] == 2
