"""Our models in the rest of the ecosystem: transformers' `pipeline` and `Trainer`, `peft` LoRA,
lm-evaluation-harness, and an `evaluate` metric module.

References: sums from Python integers (pipeline), held-out loss measured by the model itself before
and after training (Trainer, LoRA), the unmerged adapter's logits (merge), our multiple-choice
scorer against lm-eval's per-question log-likelihoods, and the task's own scorer (metric).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from importlib import resources
from pathlib import Path

import datasets
import pytest
import torch

from hf_arith.data.arithmetic import ArithmeticCollator, eval_set
from hf_arith.tokenization import build_arith_tokenizer
from hf_arith.training import build_model, recipe_from_dict, train
from hf_arith.training.recipe import ModelSpec
from hf_arith.data.sources import ArithmeticSource

SPECS = {
    "abacus": {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "num_hidden_layers": 1,
               "num_recurrences": 2, "abacus_num_positions": 16, "abacus_max_k": 0},
    "olmo": {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "num_hidden_layers": 2,
             "max_position_embeddings": 32},
}


def tiny_model(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelSpec(arch, SPECS[arch]), build_arith_tokenizer())


def training_rows(count: int, offset: int = 0) -> list[dict]:
    """1- and 2-digit additions, as the trainer draws them."""
    return ArithmeticSource("addition", seed=0, task_args={"max_digits": 2}).examples(offset, offset + count)


def heldout_loss(model, collate) -> float:
    """Cross-entropy per answer token on problems from the evaluation seed space (never trained on)."""
    rows = list(eval_set("addition", [(1, 1), (1, 2), (2, 1), (2, 2)], 16, seed=7))
    model.eval()
    with torch.no_grad():
        return float(model(**collate(rows)).loss)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Abacus model trained until it adds 1- and 2-digit numbers (500 steps, seconds)."""
    out = tmp_path_factory.mktemp("interop") / "run"
    train(recipe_from_dict({
        "seed": 3, "output_dir": str(out), "model": {"arch": "abacus", "config": {**SPECS["abacus"],
                                                                                  "max_position_embeddings": 32}},
        "data": {"task": "addition", "task_args": {"max_digits": 2}},
        "train": {"max_steps": 500, "micro_batch_size": 64, "global_batch_size": 64, "lr": 3e-3, "log_every": 50,
                  "report_to": [], "progress_bar": False, "schedule": "wcc", "warmup": 0.05, "cooldown": 0.2},
    }))
    return out / "final"


@pytest.mark.slow
def test_pipeline_text_generation_gives_the_right_answer(trained):
    from transformers import pipeline

    from hf_arith.evaluation import answer
    from hf_arith.evaluation.commands import load_for_inference

    rng = random.Random(11)
    problems = [(rng.randrange(100), rng.randrange(100)) for _ in range(40)]
    prompts = [f"{str(a)[::-1]}+{str(b)[::-1]}=" for a, b in problems]
    pipe = pipeline("text-generation", model=str(trained), trust_remote_code=True, device="cpu")
    outputs = pipe(prompts, max_new_tokens=4, do_sample=False, return_full_text=False)
    texts = [out[0]["generated_text"] for out in outputs]
    assert sum(text[::-1] == str(a + b) for text, (a, b) in zip(texts, problems)) >= 0.95 * len(problems)
    model, tokenizer = load_for_inference(trained, device="cpu")  # our own greedy decoding agrees on every problem
    assert [text[::-1] for text in texts] == answer(model, tokenizer, [f"{a}+{b}" for a, b in problems])


@pytest.mark.parametrize("arch", ["abacus", "olmo"])
def test_transformers_trainer_lowers_the_loss(arch, tmp_path):
    from transformers import Trainer, TrainingArguments

    model, collate = tiny_model(arch), ArithmeticCollator(build_arith_tokenizer())
    before = heldout_loss(model, collate)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=80, per_device_train_batch_size=64,
                             learning_rate=3e-3, lr_scheduler_type="constant", logging_steps=10, report_to=[],
                             remove_unused_columns=False, use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=datasets.Dataset.from_list(training_rows(64 * 80)),
                      data_collator=collate)
    trainer.train()
    logged = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(logged) == 8 and logged[-1] < 0.75 * logged[0], logged
    assert heldout_loss(model, collate) < 0.6 * before


# The modules `"all-linear"` adapts, and a named pair: Abacus fuses q/k/v (one GEMM); OLMo has
# transformers' own `olmo` names, so peft's and vLLM's usual targets apply.
LINEAR = {"abacus": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
          "olmo": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}
NAMED = {"abacus": ["qkv_proj", "o_proj"], "olmo": ["q_proj", "v_proj"]}


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # raised inside peft
@pytest.mark.parametrize("targets", ["all-linear", "named"])
@pytest.mark.parametrize("arch", ["abacus", "olmo"])
def test_peft_lora_trains_saves_reloads_and_merges(arch, targets, tmp_path):
    from peft import AutoPeftModelForCausalLM, LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    tokenizer = build_arith_tokenizer()
    tiny_model(arch).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base", trust_remote_code=True)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    targets = "all-linear" if targets == "all-linear" else NAMED[arch]
    model = get_peft_model(base, LoraConfig(target_modules=targets, r=8, lora_alpha=16, lora_dropout=0.0,
                                            task_type="CAUSAL_LM"))
    adapted = {name.split(".")[-2] for name, _ in model.named_modules() if name.endswith("lora_A")}
    assert adapted == (LINEAR[arch] if targets == "all-linear" else set(targets))
    assert all(("lora_" in n) == p.requires_grad for n, p in model.named_parameters())

    collate = ArithmeticCollator(tokenizer)
    before = heldout_loss(model, collate)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(40):
        model(**collate(training_rows(64, offset=64 * step))).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert heldout_loss(model, collate) < 0.9 * before
    base_now = {k.replace(".base_layer", ""): v for k, v in model.get_base_model().state_dict().items()
                if "lora_" not in k}
    assert base_now.keys() == frozen.keys() and all(torch.equal(frozen[k], base_now[k]) for k in frozen)

    batch = collate(list(eval_set("addition", [(2, 2)], 8, seed=5)))
    with torch.no_grad():
        trained_logits = model.eval()(**batch).logits
    model.save_pretrained(tmp_path / "adapter")
    reloaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter", trust_remote_code=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, trained_logits, rtol=0, atol=0)
        merged = reloaded.merge_and_unload()
        assert type(merged).__name__ == type(base).__name__ and not any("lora" in n for n, _ in merged.named_modules())
        torch.testing.assert_close(merged(**batch).logits, trained_logits, rtol=1e-4, atol=1e-4)
    merged.save_pretrained(tmp_path / "merged")  # a plain checkpoint again
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", trust_remote_code=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, trained_logits, rtol=1e-4, atol=1e-4)


LM_EVAL_TASK = """\
task: python_docs_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: choices
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


@pytest.mark.slow
def test_lm_eval_runs_a_local_task_on_an_olmo_checkpoint(tmp_path):
    """`lm-eval run --model hf --model_args pretrained=DIR,trust_remote_code=True` on our OLMo format,
    with the built-in multiple-choice questions as a local task; lm-eval's per-question
    log-likelihoods and accuracy are what our own scorer computes."""
    from test_text_data import make_tokenizer

    from hf_arith.evaluation.multiple_choice import choice_loglikelihoods, load_task, score

    tokenizer = make_tokenizer(tmp_path / "tok")
    torch.manual_seed(0)
    model = build_model(ModelSpec("olmo", {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2,
                                           "intermediate_size": 64, "max_position_embeddings": 128}), tokenizer).eval()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    data = resources.files("hf_arith") / "resources" / "python_docs_mc.jsonl"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "python_docs_mc.yaml").write_text(LM_EVAL_TASK.format(data=data))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HOME": str(tmp_path / "hf_home")}
    done = subprocess.run(
        [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
         "--model_args", f"pretrained={tmp_path / 'model'},trust_remote_code=True,dtype=float32",
         "--tasks", "python_docs_mc", "--include_path", str(tmp_path / "tasks"), "--device", "cpu",
         "--batch_size", "8", "--output_path", str(tmp_path / "out"), "--log_samples"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    lm_eval_acc = json.loads(results_file.read_text())["results"]["python_docs_mc"]["acc,none"]
    (samples_file,) = (tmp_path / "out").rglob("samples_python_docs_mc_*.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])

    examples = load_task("builtin:python_docs")
    ours = choice_loglikelihoods(model, tokenizer, examples)
    theirs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    assert len(theirs) == len(examples) == 72
    torch.testing.assert_close(torch.tensor(theirs), torch.tensor(ours), rtol=1e-4, atol=1e-4)
    assert lm_eval_acc == pytest.approx(score(examples, ours)["acc"])


def test_evaluate_metric_module_scores_like_the_tasks(tmp_path):
    import ast

    import evaluate

    from hf_arith.metrics import ARITHMETIC_EXACT_MATCH
    from hf_arith.tasks import get_task

    metric = evaluate.load(ARITHMETIC_EXACT_MATCH)
    addition, sorting = get_task("addition"), get_task("sorting")
    cases = [  # (task, example, prediction)
        (addition, addition.format(375, 0), "573"),
        (addition, addition.format(375, 0), "573<eos>"),
        (addition, addition.format(375, 0), " 573<eos><pad><pad>"),
        (addition, addition.format(375, 0), "5730"),
        (addition, addition.format(375, 0), "57"),
        (addition, addition.format(12, 9), "12"),
        (addition, addition.format(12, 9), "<bos>12"),
        (addition, addition.format(10, 90), "001"),
        (addition, addition.format(10, 90), "0010"),
        (sorting, sorting.format([5, 3, 9]), "b,a,c"),
        (sorting, sorting.format([5, 3, 9]), "a,b,c<eos>"),
        (sorting, sorting.format([5, 3, 9]), "b,a,c,"),
    ]
    verdicts = [task.score(prediction, example) for task, example, prediction in cases]
    assert 0 < sum(verdicts) < len(verdicts)
    result = metric.compute(predictions=[p for _, _, p in cases], references=[e.answer for _, e, _ in cases])
    assert result == {"exact_match": sum(verdicts) / len(verdicts), "correct": sum(verdicts), "total": len(cases)}
    # The module needs nothing of hf-arith: it imports evaluate and datasets, and a copy of the folder loads.
    source = (Path(ARITHMETIC_EXACT_MATCH) / "arithmetic_exact_match.py").read_text()
    imported = {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert imported == {"datasets", "evaluate"}
    copy = tmp_path / "arithmetic_exact_match"
    copy.mkdir()
    (copy / "arithmetic_exact_match.py").write_text(source)
    assert evaluate.load(str(copy)).compute(predictions=["573"], references=["573"])["exact_match"] == 1.0
