"""Scale-out on 2 CPU processes with the shipped launch configs (recipes/accelerate/*.yaml): DDP,
FSDP2 (hf-arith's own sharding: Accelerate does not shard on CPU), DeepSpeed ZeRO-2 and ZeRO-3.

References, never the run's own output: a one-process run of the same recipe in this process
(losses, gradient norms, in-loop evaluation, final weights and logits), hand-written expectations
of the sharding plan (which modules are FSDP units, shard shapes, dtypes), the model's own state
dict before sharding, and for resumes the uninterrupted run. On CPU the one-process run and the
sharded ones differ only in float reduction order, hence the tolerances.

DeepSpeed JIT-compiles one small op on CPU when it starts (its shared-memory all-reduce, which
only DeepSpeed inference uses; no ZeRO setting avoids the build). The `deepspeed_ops` fixture
builds it once per machine, before the launches, into torch's extension cache
(`$TORCH_EXTENSIONS_DIR`, by default `~/.cache/torch_extensions`), which every later run and every
clone of the repository on that machine reuses: about 50 s of CPU cold, 3 s warm.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from hf_arith.errors import HfArithError
from hf_arith.training import recipe_from_dict, train
from hf_arith.training.distributed import (
    accelerator_kwargs,
    check_launch,
    deepspeed_plugin,
    launch_backend,
    mixed_precision_policy,
)
from hf_arith.training.metrics_log import read_metrics

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "recipes" / "accelerate"

# Deterministic forward (no random Abacus offsets or depth) so that the one-process run is the reference.
ABACUS = {
    "arch": "abacus",
    "config": {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "num_hidden_layers": 2,
               "num_recurrences": 2, "abacus_num_positions": 16, "abacus_max_k": 0, "max_position_embeddings": 32,
               "progressive_loss_alpha": 0.0},
}
# 4 micro-batches of 8 on one process, 2 per process on two. The clip limit changes at step 2 (and
# is active throughout: gradient norms here are 2-4), the learning rate at every step.
TRAIN = {"max_steps": 4, "micro_batch_size": 8, "global_batch_size": 32, "lr": 3e-3, "schedule": "linear",
         "warmup": 1, "warmup_start_ratio": 0.5, "final_lr_ratio": 0.1, "grad_clip": 0.5,
         "grad_clip_warmup": {"steps": 2, "value": 1.0}, "save_every": 2, "keep_last": 2, "log_every": 1,
         "eval_every": 2, "report_to": [], "progress_bar": False}


def abacus_recipe() -> dict:
    return {"seed": 3, "model": ABACUS, "data": {"task": "addition", "task_args": {"max_digits": 2}},
            "train": dict(TRAIN), "eval": {"evaluators": [{"name": "arith_loss", "args": {"samples": 16}}]}}


@pytest.fixture(autouse=True)
def _no_global_deepspeed_config():
    """A DeepSpeed plugin registers its config with transformers (turning on ZeRO-3 model
    construction process-wide); drop it after each test."""
    yield
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def clear_launch_env(monkeypatch):
    for name in list(os.environ):
        if name.startswith(("ACCELERATE_", "FSDP_")) or name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
            monkeypatch.delenv(name)


# ---------------------------------------------------------------------------------------------
# The launch, without launching


def test_launch_configs_are_accelerate_configs_for_each_backend(monkeypatch):
    from accelerate.commands.config.config_args import load_config_from_file

    configs = {p.stem: load_config_from_file(str(p)) for p in sorted(LAUNCH.glob("*.yaml"))}
    assert sorted(configs) == ["ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp", "single"]
    assert {name: c.distributed_type.value for name, c in configs.items()} == {
        "single": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED",
        "deepspeed_zero3": "DEEPSPEED"}
    fsdp = configs["fsdp"].fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_reshard_after_forward"] is True and fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp  # taken from the model's _no_split_modules
    assert configs["deepspeed_zero2"].deepspeed_config["zero_stage"] == 2
    assert configs["deepspeed_zero3"].deepspeed_config["zero_stage"] == 3
    assert configs["deepspeed_zero3"].deepspeed_config["zero3_save_16bit_model"] is True
    # Training semantics live in the training recipe, never in a launch config.
    for config in configs.values():
        assert config.mixed_precision == "no"
        assert not {"gradient_accumulation_steps", "gradient_clipping"} & set(config.deepspeed_config)


def test_accelerator_kwargs_follow_the_launch_on_a_cpu_machine(monkeypatch):
    recipe = recipe_from_dict(abacus_recipe())
    clear_launch_env(monkeypatch)
    assert launch_backend() == "single" and accelerator_kwargs(recipe) == {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    # Without GPUs, `accelerate launch` processes would each train alone; one gloo group instead.
    assert launch_backend() == "ddp" and accelerator_kwargs(recipe) == {"cpu": True}
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert launch_backend() == "fsdp" and accelerator_kwargs(recipe) == {"cpu": True}
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    kwargs = accelerator_kwargs(recipe)
    assert launch_backend() == "deepspeed" and sorted(kwargs) == ["deepspeed_plugin", "kwargs_handlers"]
    assert kwargs["kwargs_handlers"][0].backend == "gloo"
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")  # would make Accelerate drop DeepSpeed
    with pytest.raises(HfArithError, match="unset ACCELERATE_USE_CPU"):
        accelerator_kwargs(recipe)


def test_deepspeed_takes_accumulation_clipping_and_batch_from_the_recipe(monkeypatch):
    clear_launch_env(monkeypatch)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    raw = abacus_recipe()
    raw["train"]["mixed_precision"] = "bf16"
    config = deepspeed_plugin(recipe_from_dict(raw)).deepspeed_config
    assert config["gradient_accumulation_steps"] == 1  # the loop accumulates and marks the step's end
    assert config["gradient_clipping"] == 1.0  # the clip warmup's limit at step 0
    assert config["train_micro_batch_size_per_gpu"] == 8
    assert config["communication_data_type"] == "fp32"
    # DeepSpeed's 5e8-element default buckets are left to Accelerate to size from the hidden size.
    assert config["zero_optimization"]["reduce_bucket_size"] == "auto"
    assert "stage3_prefetch_bucket_size" not in config["zero_optimization"]

    monkeypatch.setenv("ACCELERATE_GRADIENT_CLIPPING", "2.0")
    with pytest.raises(HfArithError, match="gradient_clipping=2.0.*train.grad_clip"):
        deepspeed_plugin(recipe_from_dict(abacus_recipe()))
    monkeypatch.delenv("ACCELERATE_GRADIENT_CLIPPING")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "4")
    with pytest.raises(HfArithError, match="gradient_accumulation_steps=4"):
        deepspeed_plugin(recipe_from_dict(abacus_recipe()))
    monkeypatch.delenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(HfArithError, match="zero3_save_16bit_model: true"):
        deepspeed_plugin(recipe_from_dict(abacus_recipe()))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL", "true")
    zero = deepspeed_plugin(recipe_from_dict(abacus_recipe())).deepspeed_config["zero_optimization"]
    sized = ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold")
    assert {key: zero[key] for key in sized} == dict.fromkeys(sized, "auto")


def test_a_launch_whose_processes_did_not_join_is_refused(monkeypatch):
    from accelerate.utils import DistributedType

    clear_launch_env(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    alone = SimpleNamespace(num_processes=1, distributed_type=DistributedType.NO)
    with pytest.raises(HfArithError, match="launched 2 processes but Accelerate formed a group of 1"):
        check_launch(alone)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    dropped = SimpleNamespace(num_processes=2, distributed_type=DistributedType.MULTI_CPU)
    with pytest.raises(HfArithError, match="asks for DeepSpeed"):
        check_launch(dropped)


LAUNCHED = ["-m", "hf_arith", "train", "r.yaml", "--max-steps", "3"]


@pytest.mark.parametrize("argv, expected", [
    (["/venv/bin/accelerate", "launch", "--cpu", "--config_file", str(LAUNCH / "deepspeed_zero2.yaml"),
      "--num_processes", "2", *LAUNCHED], (2, True, None)),
    (["/venv/bin/python", "-m", "accelerate.commands.launch", "--config_file", str(LAUNCH / "ddp.yaml"), *LAUNCHED],
     (8, False, None)),  # the shipped configs say 8 (one per GPU) unless --num_processes says otherwise
    (["accelerate-launch", "--config_file", str(LAUNCH / "single.yaml"), "--gradient_accumulation_steps", "4",
      *LAUNCHED], (1, False, 4)),
    (["/usr/bin/python3", "-m", "hf_arith", "train", "r.yaml"], None),  # plain hf-arith train
    (["torchrun", "--nproc_per_node", "2", "train.py"], None),
])
def test_launch_request_reads_the_command_line_of_accelerate_launch(monkeypatch, argv, expected):
    from hf_arith.training import distributed

    monkeypatch.setattr(distributed, "_parent_command", lambda: argv)
    request = distributed.launch_request()
    got = None if request is None else (request.num_processes, request.cpu, request.gradient_accumulation_steps)
    assert got == expected


@pytest.mark.parametrize("args, message", [
    (["--cpu", "--config_file", str(LAUNCH / "deepspeed_zero2.yaml"), "--num_processes", "2"],
     "error: accelerate launch asked for 2 processes but started 1: --cpu"),
    (["--num_processes", "2"], "error: accelerate launch asked for 2 processes but started 1: Accelerate starts"),
    (["--config_file", str(LAUNCH / "ddp.yaml"), "--num_processes", "2", "--mixed_precision", "bf16"],
     "error: accelerate launch asks for --mixed_precision bf16 but the recipe trains with "
     "train.mixed_precision='no'"),
    (["--config_file", str(LAUNCH / "ddp.yaml"), "--num_processes", "2", "--gradient_accumulation_steps", "4"],
     "error: accelerate launch asks for --gradient_accumulation_steps 4"),
])
@pytest.mark.slow
def test_a_launch_that_is_not_what_was_asked_stops_with_one_line(tmp_path, args, message):
    """Each of these used to train one process, or in fp32, or without the accumulation, and exit 0."""
    (tmp_path / "r.yaml").write_text(json.dumps(abacus_recipe()))
    home = tmp_path / "home"  # no default accelerate config: the bare `--num_processes 2` case
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", *args, "--main_process_port", str(free_port()),
         "-m", "hf_arith", "train", "r.yaml", "--output-dir", str(tmp_path / "run")],
        env={**launch_env(), "HF_HOME": str(home)}, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "run" / "final").exists()


def test_mixed_precision_policy_is_olmos():
    assert mixed_precision_policy("no") is None
    bf16 = mixed_precision_policy("bf16")
    assert (bf16.param_dtype, bf16.reduce_dtype) == (torch.bfloat16, torch.float32)


# ---------------------------------------------------------------------------------------------
# Launched on 2 CPU processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    return env


def launch(config: str, recipe: dict, out: Path, *args: str, timeout: float = 300) -> float:
    """`accelerate launch --config_file recipes/accelerate/<config>.yaml --num_processes 2 -m hf_arith
    train`; returns the wall-clock seconds."""
    path = out.parent / f"{out.name}.recipe.yaml"
    path.write_text(json.dumps(recipe))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(LAUNCH / f"{config}.yaml"),
         "--num_processes", "2", "--main_process_port", str(free_port()),
         "-m", "hf_arith", "train", str(path), "--output-dir", str(out), *args],
        env=launch_env(), cwd=out.parent, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def deepspeed_ops():
    """Builds DeepSpeed's one CPU op into torch's extension cache unless it is there; the launched
    processes then load it from there instead of both compiling it inside a timed launch."""
    code = ("from deepspeed.accelerator import get_accelerator; "
            "get_accelerator().create_op_builder('ShareMemCommBuilder').load()")
    done = subprocess.run([sys.executable, "-c", code], env=launch_env(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-process run, in this process."""
    root = tmp_path_factory.mktemp("one")
    raw = abacus_recipe()
    raw["output_dir"] = str(root / "run")
    train(recipe_from_dict(raw))
    return root / "run"


def records(run: Path) -> tuple[dict, dict]:
    """step -> (loss, grad_norm, lr) and step -> evaluation metrics, from a run's metrics.jsonl."""
    rows = read_metrics(run / "metrics.jsonl")
    steps = {r["step"]: (r["loss"], r["grad_norm"], r["lr"]) for r in rows if "loss" in r}
    evals = {r["step"]: {k: v for k, v in r.items() if k.startswith("eval/")}
             for r in rows if "eval/arith_loss/loss" in r}
    return steps, evals


def assert_close_records(got: dict, expected: dict, rel: float):
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=rel), step


def assert_same_weights(a: Path, b: Path, exact: bool = False):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert sorted(wa) == sorted(wb)
    for key in wa:
        if exact:
            assert torch.equal(wa[key], wb[key]), key
        else:
            torch.testing.assert_close(wb[key], wa[key], rtol=1e-5, atol=2e-6, msg=key)


# What each backend leaves in a checkpoint: each process's own shard where state is sharded.
SHARDS = {
    "ddp": [],
    "fsdp": ["sharded/__0_0.distcp", "sharded/__1_0.distcp"],
    "deepspeed_zero2": ["pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
                        "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt"],
    "deepspeed_zero3": ["pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
                        "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt",
                        "pytorch_model/zero_pp_rank_0_mp_rank_00_model_states.pt",
                        "pytorch_model/zero_pp_rank_1_mp_rank_00_model_states.pt"],
}


@pytest.fixture(params=["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"])
def config(request):
    """A launch config's name; DeepSpeed's needs its op built first."""
    if request.param.startswith("deepspeed"):
        request.getfixturevalue("deepspeed_ops")
    return request.param


@pytest.mark.slow
def test_two_processes_train_like_one_resume_and_save_a_loadable_model(config, reference, tmp_path):
    run = tmp_path / "run"
    seconds = launch(config, abacus_recipe(), run)

    expected_steps, expected_evals = records(reference)
    assert all(norm > 1.0 for _, norm, _ in expected_steps.values())  # both clip limits act
    steps, evals = records(run)
    assert_close_records(steps, expected_steps, rel=1e-5)
    assert sorted(evals) == [2, 4]  # under FSDP and ZeRO-3 by every process (the parameters are sharded)
    assert_close_records(evals, expected_evals, rel=1e-5)
    assert_same_weights(reference / "final", run / "final")
    checkpoint = run / "checkpoints" / "step_2"
    for shard in SHARDS[config]:
        assert (checkpoint / shard).is_file(), sorted(str(p.relative_to(checkpoint)) for p in checkpoint.rglob("*"))

    # An interrupted run: only step 2's checkpoint on disk. Resumed, it ends where the whole run did.
    # (DDP's checkpoint is the one-process one, whose resume test_training.py checks.)
    if SHARDS[config]:
        resumed = tmp_path / "resumed"
        shutil.copytree(checkpoint, resumed / "checkpoints" / "step_2")
        (resumed / "checkpoints" / "latest").write_text("step_2\n")
        launch(config, abacus_recipe(), resumed, "--resume", "latest")
        steps_after, _ = records(resumed)
        assert_close_records(steps_after, {s: steps[s] for s in (3, 4)}, rel=1e-6)
        assert_same_weights(run / "final", resumed / "final", exact=True)

    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(run / "final", trust_remote_code=True)
    one = AutoModelForCausalLM.from_pretrained(reference / "final", trust_remote_code=True)
    assert type(loaded).__name__ == "AbacusForCausalLM"
    ids = torch.tensor([[5, 6, 14, 7, 8, 18]])  # "12+34=" in the hf-arith vocabulary
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, one(ids).logits, rtol=1e-4, atol=1e-5)
    print(f"{config}: 4 steps on 2 processes in {seconds:.1f} s")


@pytest.mark.slow
def test_olmo_with_tied_embeddings_trains_sharded_like_one_process(tmp_path):
    from test_text_data import make_tokenizer, text_recipe, write_corpus

    from hf_arith.data.text import prepare_corpus

    make_tokenizer(tmp_path / "tok")
    write_corpus(tmp_path / "corpus", count=4)
    source = {"name": "c", "paths": [str(tmp_path / "corpus" / "docs.jsonl")]}
    raw = text_recipe(tmp_path / "data", tmp_path / "tok", [source], sequence_length=16)
    raw["model"] = {"arch": "olmo", "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                                               "intermediate_size": 64, "max_position_embeddings": 16,
                                               "tie_word_embeddings": True}}
    raw["train"].update(max_steps=3, micro_batch_size=2, global_batch_size=8, grad_clip=0.5, z_loss=1e-4)
    prepare_corpus(recipe_from_dict(raw).data)
    one = dict(raw, output_dir=str(tmp_path / "one"))
    train(recipe_from_dict(one))

    launch("fsdp", raw, tmp_path / "fsdp")
    assert_close_records(records(tmp_path / "fsdp")[0], records(tmp_path / "one")[0], rel=1e-5)
    assert_same_weights(tmp_path / "one" / "final", tmp_path / "fsdp" / "final")
    saved = load_file(tmp_path / "fsdp" / "final" / "model.safetensors")
    assert "lm_head.weight" not in saved  # tied: stored once, as in the one-process save

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "final", trust_remote_code=True)
    assert type(model).__name__ == "ArithOlmoForCausalLM"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


# The sharding plan, checked inside 2 processes (torchrun): run by the test below.
PLAN_CHECK = textwrap.dedent('''
    import math, os, sys
    import torch
    from accelerate import Accelerator
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor, Shard
    from hf_arith.training import recipe_from_dict
    from hf_arith.training.distributed import (accelerator_kwargs, check_launch, full_state_dict, load_sharded_state,
                                               prepare, save_sharded_state, shards_itself, unsharded)
    from hf_arith.training.trainer import build_model
    from hf_arith.tokenization import build_arith_tokenizer

    raw = {"seed": 0, "model": %(model)r, "train": {"mixed_precision": "bf16", "lr": 1e-2}}
    recipe = recipe_from_dict(raw)
    accelerator = Accelerator(**accelerator_kwargs(recipe))
    check_launch(accelerator)
    assert shards_itself(accelerator) and accelerator.num_processes == 2
    rank = accelerator.process_index
    torch.manual_seed(0)
    model = build_model(recipe.model, build_arith_tokenizer())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model, optimizer, scheduler = prepare(accelerator, model, recipe.train)

    # One FSDP unit per decoder layer and the root, nothing else.
    units = sorted(name for name, m in model.named_modules() if isinstance(m, FSDPModule))
    assert units == ["", "model.layers.0", "model.layers.1"], units
    # Every parameter is split along dim 0: this process holds its rows only.
    for name, p in model.named_parameters():
        assert isinstance(p, DTensor) and p.placements == (Shard(0),), name
        rows = before[name].shape[0]
        chunk = math.ceil(rows / 2)
        assert p.to_local().shape[0] == len(range(rows)[rank * chunk:(rank + 1) * chunk]), name
        assert p.dtype == torch.float32, name  # fp32 master weights

    # Forward in bf16 (parameters gathered in bf16), gradients in fp32.
    seen = []
    layer = model.model.layers[0].self_attn.qkv_proj
    layer.register_forward_pre_hook(lambda m, args: seen.append((m.weight.dtype, args[0].dtype)))
    ids = torch.randint(4, 20, (4, 12), generator=torch.Generator().manual_seed(rank))
    model(input_ids=ids, labels=ids).loss.backward()
    assert seen and all(s == (torch.bfloat16, torch.bfloat16) for s in seen), seen
    grad = model.model.layers[0].mlp.down_proj.weight.grad
    assert grad.dtype == torch.float32 and grad.placements == (Shard(0),)
    # Reduced in fp32: the mean of the two processes' bf16 gradients is not rounded back to bf16.
    local = grad.to_local()
    assert not torch.equal(local, local.bfloat16().float())

    # The gathered state dict is the model's own (no step taken yet), on the main process only.
    full = full_state_dict(accelerator, model)
    if rank == 0:
        assert sorted(full) == sorted(before)
        assert all(torch.equal(full[k], before[k]) for k in before)
        plain = unsharded(model)
        assert type(plain).__name__ == type(model).__name__[len("FSDP"):] and not isinstance(plain, FSDPModule)
    else:
        assert full == {}

    # Sharded save, a step that changes everything, load: back to the saved shards exactly.
    optimizer.step()
    folder = sys.argv[1]
    save_sharded_state(model, optimizer, folder)
    saved = {k: v.to_local().clone() for k, v in model.state_dict().items()}
    saved_moments = [s["exp_avg"].to_local().clone() for s in optimizer.state.values()]
    optimizer.step()
    assert not all(torch.equal(v.to_local(), saved[k]) for k, v in model.state_dict().items())
    load_sharded_state(model, optimizer, folder)
    assert all(torch.equal(v.to_local(), saved[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(s["exp_avg"].to_local(), m) for s, m in zip(optimizer.state.values(), saved_moments))
    # One write per rank: two processes share the pipe, and print's separate writes interleave.
    sys.stdout.write(f"plan ok {rank}\\n"); sys.stdout.flush()
''')


@pytest.mark.slow
def test_fsdp_plan_shards_each_decoder_layer_in_bf16_with_fp32_reduction(tmp_path):
    script = tmp_path / "plan_check.py"
    model = dict(ABACUS, config=dict(ABACUS["config"], num_recurrences=1))
    script.write_text(PLAN_CHECK % {"model": model})
    env = launch_env()
    env["ACCELERATE_USE_FSDP"] = "true"  # as `accelerate launch --config_file recipes/accelerate/fsdp.yaml` sets
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",  # a free port
         str(script), str(tmp_path / "ckpt")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-6000:]
    assert sorted(re.findall(r"plan ok (\d)", done.stdout)) == ["0", "1"], done.stdout
