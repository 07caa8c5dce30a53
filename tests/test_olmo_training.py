"""Training on prepared text (OLMo's data order): global batch b is `perm[b*B:(b+1)*B]` of the
`numpy.random.PCG64(seed + epoch)` permutations on 1 and 2 processes, after a resume and under
batch-size warmup; `hf-arith data inspect` shows that batch; every recipe validates.

The reference for every order is computed here from numpy, never read from the run. Each process
reports what it trained through `HF_ARITH_TRACE_DATA` (one JSON line per step and process).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_text_data import make_tokenizer, text_recipe, write_corpus

from hf_arith.cli import main
from hf_arith.data.instances import read_manifest
from hf_arith.data.text import prepare_corpus
from hf_arith.errors import HfArithError
from hf_arith.training import load_recipe, recipe_from_dict, train
from hf_arith.training.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[1]
L = 16  # tokens per instance
B = 8   # global batch


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A prepared folder of a few dozen instances; returns (root, recipe mapping, instances)."""
    root = tmp_path_factory.mktemp("olmo_train")
    tokenizer = make_tokenizer(root / "tok")
    write_corpus(root / "corpus", count=4)
    raw = text_recipe(root / "data", root / "tok", [{"name": "c", "paths": [str(root / "corpus" / "docs.jsonl")]}],
                      sequence_length=L)
    prepare_corpus(recipe_from_dict(raw).data)
    instances = read_manifest(root / "data")["train"]["instances"]
    assert 10 < instances < 3 * B, instances  # small enough for a run to cross an epoch
    return root, raw, instances, tokenizer


def expected_order(seed: int, instances: int, examples: int) -> list[int]:
    """The reference: PCG64(seed + epoch) permutations, concatenated."""
    epochs = -(-examples // instances)
    perms = [np.random.Generator(np.random.PCG64(seed + e)).permutation(instances) for e in range(epochs)]
    return np.concatenate(perms)[:examples].tolist()


def read_trace(folder: Path) -> dict[int, list[int]]:
    """step -> instance indices trained at that step, the processes' micro-batches in order."""
    steps: dict[int, list[tuple[int, list[int]]]] = {}
    for file in sorted(folder.glob("rank*.jsonl")):
        for line in file.read_text().splitlines():
            record = json.loads(line)
            steps.setdefault(record["step"], []).append((record["micro_batches"][0], record["instances"]))
    return {step: [i for _, part in sorted(shares) for i in part] for step, shares in sorted(steps.items())}


def run_recipe(raw: dict, out: Path, trace: Path, monkeypatch, resume=None, **train_overrides):
    raw = json.loads(json.dumps(raw))
    raw["output_dir"] = str(out)
    raw["train"].update(train_overrides)
    monkeypatch.setenv("HF_ARITH_TRACE_DATA", str(trace))
    train(recipe_from_dict(raw), resume=resume)
    return read_trace(trace)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_global_batches_are_the_same_on_one_and_two_processes(data, tmp_path, monkeypatch):
    root, raw, instances, _ = data
    steps = instances // B + 2  # crosses into the second epoch
    one = run_recipe(raw, tmp_path / "one", tmp_path / "trace1", monkeypatch, max_steps=steps)

    raw2 = json.loads(json.dumps(raw))
    raw2["train"]["max_steps"] = steps
    (tmp_path / "r.yaml").write_text(json.dumps(raw2))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_ARITH_TRACE_DATA": str(tmp_path / "trace2"),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", str(free_port()),
         "-m", "hf_arith", "train", str(tmp_path / "r.yaml"), "--output-dir", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "trace2").iterdir()) == ["rank0.jsonl", "rank1.jsonl"]
    two = read_trace(tmp_path / "trace2")
    for rank in (0, 1):  # each process trained a contiguous half of every global batch
        shares = [json.loads(line) for line in (tmp_path / "trace2" / f"rank{rank}.jsonl").read_text().splitlines()]
        assert [len(s["instances"]) for s in shares] == [B // 2] * steps

    reference = expected_order(0, instances, steps * B)
    expected = {b: reference[b * B:(b + 1) * B] for b in range(steps)}
    assert one == expected
    assert two == expected
    saved = np.load(tmp_path / "two" / "data_order.npy")
    assert saved.tolist() == reference


def test_resume_continues_at_the_next_instance(data, tmp_path, monkeypatch):
    root, raw, instances, _ = data
    full = run_recipe(raw, tmp_path / "run", tmp_path / "trace_a", monkeypatch, max_steps=4, save_every=2, keep_last=2)
    resumed = run_recipe(raw, tmp_path / "run", tmp_path / "trace_b", monkeypatch,
                         resume=tmp_path / "run" / "checkpoints" / "step_2", max_steps=4, save_every=2, keep_last=2)
    reference = expected_order(0, instances, 4 * B)
    assert full == {b: reference[b * B:(b + 1) * B] for b in range(4)}
    assert resumed == {2: full[2], 3: full[3]}
    losses = {r["step"]: r["loss"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r}
    assert sorted(losses) == [1, 2, 3, 4]

    with pytest.raises(HfArithError, match="another data order"):  # the run's order is part of the run
        run_recipe({**raw, "seed": 1}, tmp_path / "run", tmp_path / "trace_c", monkeypatch, resume="latest",
                   max_steps=6, save_every=2, keep_last=2)


def test_batch_warmup_takes_spans_of_the_same_order(data, tmp_path, monkeypatch):
    root, raw, instances, _ = data
    # start 2, doubling every 4 examples (4 x 16 tokens), up to 8: sizes 2, 2, 4, 8 (worked out by hand).
    trace = run_recipe(raw, tmp_path / "warm", tmp_path / "trace", monkeypatch, max_steps=4, micro_batch_size=2,
                       batch_warmup={"start": 2, "double_every_tokens": 4 * L})
    reference = expected_order(0, instances, 16)
    assert trace == {0: reference[0:2], 1: reference[2:4], 2: reference[4:8], 3: reference[8:16]}


def test_data_inspect_prints_the_batch_the_run_trained(data, tmp_path, monkeypatch, capsys):
    root, raw, instances, tokenizer = data
    run_recipe(raw, tmp_path / "run", tmp_path / "trace", monkeypatch, max_steps=3)
    tokens = np.fromfile(root / "data" / "train.bin", dtype=np.uint16).reshape(-1, L)
    reference = expected_order(0, instances, 3 * B)

    assert main(["data", "inspect", str(tmp_path / "run"), "--batch", "2", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["example"] for r in rows] == list(range(2 * B, 3 * B))
    assert [r["instance"] for r in rows] == reference[2 * B:3 * B]
    assert [r["epoch"] for r in rows] == [i // instances for i in range(2 * B, 3 * B)]
    assert [r["text"] for r in rows] == [tokenizer.decode(tokens[i].tolist()) for i in reference[2 * B:3 * B]]

    assert main(["data", "inspect", str(tmp_path / "run"), "--batch", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"global batch 0 of {tmp_path / 'run'}: examples 0..{B - 1} ({B} instances")
    first = tokenizer.decode(tokens[reference[0]].tolist())
    assert f"=== example 0: instance {reference[0]} (epoch 0) ===\n{first}" in out

    assert main(["data", "inspect", str(tmp_path / "run"), "--batch", "3"]) == 2
    assert "outside the run's 3 steps" in capsys.readouterr().err
    assert main(["data", "inspect", str(tmp_path), "--batch", "0"]) == 2
    assert "has no recipe.yaml" in capsys.readouterr().err


def test_every_recipe_validates():
    recipes = sorted(p for p in REPO.glob("recipes/**/*.yaml") if "accelerate" not in p.parts)
    assert {"tiny_cpu.yaml", "olmo_1b.yaml", "olmo_7b.yaml"} <= {p.name for p in recipes}
    for path in recipes:
        load_recipe(path)


def test_olmo_recipes_have_the_papers_numbers():
    r7, r1 = load_recipe(REPO / "recipes/olmo/olmo_7b.yaml"), load_recipe(REPO / "recipes/olmo/olmo_1b.yaml")
    for r in (r7, r1):
        t = r.train
        assert (t.betas, t.eps, t.weight_decay, t.final_lr_ratio, t.warmup_start_ratio, t.grad_clip) == \
            ((0.9, 0.95), 1e-5, 0.1, 0.1, 0.1, 1.0)
        assert (t.global_batch_size, r.data.sequence_length, t.mixed_precision) == (2048, 2048, "bf16")
        assert r.model.arch == "olmo" and r.model.config["max_position_embeddings"] == 2048
    assert (r7.train.lr, r7.train.warmup, r7.train.schedule) == (3e-4, 5000, "linear")
    assert (r7.train.grad_clip_warmup.steps, r7.train.grad_clip_warmup.value) == (1000, 10.0)
    assert (r1.train.lr, r1.train.warmup, r1.train.schedule, r1.train.grad_clip_warmup) == (4e-4, 2000, "cosine", None)
    assert (r7.model.config["hidden_size"], r7.model.config["num_hidden_layers"], r7.model.config["intermediate_size"],
            r7.model.config["tie_word_embeddings"]) == (4096, 32, 11008, False)
    assert (r1.model.config["hidden_size"], r1.model.config["num_hidden_layers"], r1.model.config["intermediate_size"],
            r1.model.config["tie_word_embeddings"]) == (2048, 16, 8192, True)


@pytest.mark.slow
def test_tiny_cpu_recipe_runs_as_shipped(tmp_path, monkeypatch):
    """The shipped tiny recipe, on the embedded corpus, for a few steps: tokenizer, prepare, train with
    both evaluators, and a final folder that loads."""
    from transformers import AutoModelForCausalLM

    tokenizer_dir, data_dir = tmp_path / "tok", tmp_path / "data"
    assert main(["tokenizer", "train", "builtin", "--vocab-size", "1024", "--out", str(tokenizer_dir)]) == 0
    overrides = [f"data.tokenizer={tokenizer_dir}", f"data.path={data_dir}", f"output_dir={tmp_path / 'run'}",
                 "train.max_steps=3", "train.warmup=1", "train.eval_every=0", "train.save_every=0",
                 "train.report_to=[]",
                 "eval.evaluators=[{name: perplexity, args: {max_instances: 8}}, {name: multiple_choice}]"]
    recipe = load_recipe(REPO / "recipes/olmo/tiny_cpu.yaml", overrides)
    manifest = prepare_corpus(recipe.data)
    assert set(manifest["heldout"]) == {"pydoc", "docstrings"} and manifest["dtype"] == "uint16"
    assert "pydoc_data.topics of" in manifest["sources"]["pydoc"]["corpus"]
    final = train(recipe)
    evals = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval/perplexity/pydoc/perplexity" in r]
    assert [r["step"] for r in evals] == [3]  # eval.at_end
    assert all(0 <= r["eval/multiple_choice/python_docs/acc"] <= 1 for r in evals)
    model = AutoModelForCausalLM.from_pretrained(final, trust_remote_code=True)
    assert model.config.vocab_size == 1024
    from transformers import AutoTokenizer

    # Batched generation with the saved tokenizer, as a user calls it, equals one prompt at a time.
    tokenizer = AutoTokenizer.from_pretrained(final, trust_remote_code=True)
    assert tokenizer.padding_side == "left"
    prompts = ["The function", "A list is a mutable sequence of"]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    together = model.generate(**batch, max_new_tokens=4, do_sample=False)[:, batch["input_ids"].shape[1]:]
    for prompt, row in zip(prompts, together):
        alone = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=4, do_sample=False)
        assert row.tolist() == alone[0, -4:].tolist(), prompt
