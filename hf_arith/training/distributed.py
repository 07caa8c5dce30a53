"""Scale-out: the `Accelerator` for what `accelerate launch` asked for, and FSDP2 where Accelerate
does not shard.

The launch config (`recipes/accelerate/*.yaml`) says where processes run and how state is split;
the training recipe says everything else, so a run's global batch, data order and loss curve are
the same on any launch config and any number of processes. What each launch config becomes:

| launch config | machine with GPUs | CPU-only machine |
|---|---|---|
| `single.yaml` (or no launch) | one process | one process |
| `ddp.yaml` | DDP over nccl | DDP over gloo (Accelerate's `cpu=True`) |
| `fsdp.yaml` | Accelerate's FSDP2 plugin | `shard_model` here (Accelerate never shards on CPU) |
| `deepspeed_zero{2,3}.yaml` | DeepSpeed | DeepSpeed over gloo |

On a CPU-only machine `accelerate launch` without `--cpu` would start processes that each believe
they are alone; `accelerator_kwargs` turns them into one gloo group, and `check_launch` refuses any
launch whose processes did not all join (or whose sharding was dropped) rather than train unsharded.

Example (in a process that `accelerate launch` started, with any launch config)::

    from accelerate import Accelerator
    from hf_arith.training import load_recipe

    recipe = load_recipe("recipes/abacus/addition_cpu.yaml")
    accelerator = Accelerator(**accelerator_kwargs(recipe))
    check_launch(accelerator)
    launch_backend()  # "single", "ddp", "fsdp" or "deepspeed"
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed.checkpoint as dcp
from accelerate.commands.config.config_args import default_config_file, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin, InitProcessGroupKwargs
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from transformers.integrations import unset_hf_deepspeed_config

from hf_arith.errors import HfArithError

from .optim import build_optimizer, build_scheduler, clip_value
from .recipe import Recipe, TrainSpec

# Where `save_sharded_state` writes, inside a checkpoint folder.
SHARDED_DIR = "sharded"


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def launch_backend() -> str:
    """What `accelerate launch` asked this process to be part of: `"deepspeed"`, `"fsdp"`, `"ddp"`
    (more than one process, neither of those) or `"single"`. Read from the environment the launcher
    sets, so it is the same on every machine.

    Example:
        >>> launch_backend()   # plain `hf-arith train`
        'single'
    """
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return "deepspeed"
    if _flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    return "ddp" if _world_size() > 1 else "single"


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_only() -> bool:
    """True when this process trains on the CPU: no GPU (or other accelerator) is visible, or the
    launch asked for the CPU (`ACCELERATE_USE_CPU`).

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"ACCELERATE_USE_CPU": "true"}):  # `accelerate launch --cpu`
        ...     cpu_only()
        True
    """
    devices = getattr(torch, "accelerator", torch.cuda)  # torch.accelerator: any GPU kind, torch >= 2.6
    return _flag("ACCELERATE_USE_CPU") or not devices.is_available()


def accelerator_kwargs(recipe: Recipe) -> dict:
    """The `Accelerator` keyword arguments for the launch, beyond the recipe's own settings.

    - CPU-only, several processes (DDP, FSDP): `cpu=True`, one gloo process group. FSDP is then
      done by `shard_model`, because Accelerate's FSDP plugin is ignored on CPU.
    - DeepSpeed: a `DeepSpeedPlugin` from the launch config with the recipe's clipping and
      micro-batch size (`deepspeed_plugin`); on CPU, its process group on gloo (DeepSpeed's own
      default there, oneCCL, is not installed).
    - FSDP on GPUs: Accelerate's FSDP2 plugin from the launch config with the recipe's mixed
      precision as OLMo ran it (`mixed_precision_policy`).

    Example:
        >>> accelerator_kwargs(Recipe())   # one process
        {}
    """
    backend = launch_backend()
    if backend == "deepspeed":
        if _flag("ACCELERATE_USE_CPU"):
            raise HfArithError("the launch config asks for DeepSpeed but ACCELERATE_USE_CPU is set, which makes "
                               "Accelerate drop DeepSpeed and train unsharded; unset ACCELERATE_USE_CPU (and --cpu / "
                               "use_cpu): on a machine without GPUs hf-arith runs DeepSpeed on the CPU by itself")
        kwargs = {"deepspeed_plugin": deepspeed_plugin(recipe)}
        if cpu_only():
            kwargs["kwargs_handlers"] = [InitProcessGroupKwargs(backend="gloo")]
        return kwargs
    if cpu_only():
        return {"cpu": True} if backend != "single" else {}
    if backend == "fsdp":
        return {"fsdp_plugin": fsdp_plugin(recipe)}
    return {}


def launch_request() -> SimpleNamespace | None:
    """What the `accelerate launch` that started this process was asked for: `num_processes`,
    `cpu`, `gradient_accumulation_steps` and `config_file`, from its command line and the config
    file it read. None when this process was not started by `accelerate launch` (plain
    `hf-arith train`, torchrun, a notebook) or the request cannot be read.

    Accelerate does not tell the processes it starts how many were asked for (its one-process
    launcher sets no WORLD_SIZE) nor the accumulation given on its command line outside DeepSpeed,
    so the launcher's own command line (`/proc/<parent>/cmdline`, Linux) is parsed with
    accelerate's own parser.

    Example:
        >>> launch_request() is None   # under pytest, not `accelerate launch`
        True
    """
    argv = _parent_command()
    start = next((i + 1 for i, arg in enumerate(argv) if _is_launcher(argv, i)), None)
    if start is None:
        return None
    try:
        args, _ = launch_command_parser().parse_known_args(argv[start:])
        config_file = args.config_file or (default_config_file if Path(default_config_file).is_file() else None)
        config = load_config_from_file(config_file) if config_file else None
    except (Exception, SystemExit):  # a command line this accelerate cannot parse: nothing to compare
        return None
    deepspeed = (getattr(config, "deepspeed_config", None) or {}) if config is not None else {}
    return SimpleNamespace(
        num_processes=args.num_processes if args.num_processes is not None else getattr(config, "num_processes", 1),
        cpu=bool(args.cpu or getattr(config, "use_cpu", False)),
        gradient_accumulation_steps=args.gradient_accumulation_steps or deepspeed.get("gradient_accumulation_steps"),
        config_file=config_file,
    )


def _parent_command() -> list[str]:
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def _is_launcher(argv: list[str], i: int) -> bool:
    """argv[i] ends the launcher's own name: `accelerate launch`, `accelerate-launch` or
    `python -m accelerate.commands.launch`."""
    arg = argv[i]
    if arg == "accelerate.commands.launch" or Path(arg).name == "accelerate-launch":
        return True
    return arg == "launch" and i > 0 and Path(argv[i - 1]).name in ("accelerate", "accelerate.commands.accelerate_cli")


def check_launch(accelerator, recipe: Recipe | None = None) -> None:
    """Refuses a launch that would not train what was asked, in one line naming the fix: fewer
    processes than `accelerate launch` was asked for (`--cpu`, or `--num_processes` without a
    multi-process config, start one), processes that did not join one group (each would train
    alone on the whole batch), DeepSpeed dropped by Accelerate, and launch options the recipe
    owns: `--mixed_precision` other than `train.mixed_precision`, and `--gradient_accumulation_steps`
    (the loop accumulates `train.global_batch_size` in micro-batches of `train.micro_batch_size`).
    (FSDP is never dropped: where Accelerate does not shard, `prepare` does.)

    Example (in every launched process)::

        check_launch(Accelerator(**accelerator_kwargs(recipe)), recipe)
    """
    request = launch_request()
    asked = request.num_processes if request is not None else 1
    if accelerator.num_processes < asked:
        why = ("--cpu (use_cpu) makes Accelerate start one process" if request.cpu else
               "Accelerate starts several processes only with --multi_gpu or a multi-process --config_file")
        raise HfArithError(f"accelerate launch asked for {asked} processes but started {accelerator.num_processes}: "
                           f"{why}; launch with --config_file recipes/accelerate/ddp.yaml (or fsdp.yaml, "
                           f"deepspeed_zero*.yaml) --num_processes {asked}, without --cpu (see recipes/README.md)")
    expected = _world_size()
    if accelerator.num_processes != expected:
        raise HfArithError(f"launched {expected} processes but Accelerate formed a group of "
                           f"{accelerator.num_processes}, so each would train alone on the whole batch; launch with "
                           f"a config from recipes/accelerate/ (see recipes/README.md)")
    if launch_backend() == "deepspeed" and accelerator.distributed_type != DistributedType.DEEPSPEED:
        raise HfArithError(f"the launch config asks for DeepSpeed but Accelerate runs {accelerator.distributed_type}; "
                           f"check that deepspeed is installed (pip install 'hf-arith[deepspeed]')")
    if recipe is None:
        return
    launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    if launched not in ("no", recipe.train.mixed_precision):
        raise HfArithError(f"accelerate launch asks for --mixed_precision {launched} but the recipe trains with "
                           f"train.mixed_precision={recipe.train.mixed_precision!r}, which decides; drop "
                           f"--mixed_precision and pass --set train.mixed_precision={launched} to hf-arith train")
    steps = request.gradient_accumulation_steps if request is not None else None
    if steps not in (None, 1) and launch_backend() != "deepspeed":  # deepspeed_plugin refuses it in its own words
        raise HfArithError(f"accelerate launch asks for --gradient_accumulation_steps {steps}, but hf-arith "
                           f"accumulates train.global_batch_size={recipe.train.global_batch_size} in micro-batches of "
                           f"train.micro_batch_size={recipe.train.micro_batch_size}; drop the flag and set those "
                           f"recipe keys (--set train.micro_batch_size=N)")


# ---------------------------------------------------------------------------------------------
# Plugins


def mixed_precision_policy(mixed_precision: str):
    """FSDP2's mixed precision for the recipe's `train.mixed_precision`, as OLMo trained: parameters
    gathered and computed in bf16 (fp16), gradients reduced in fp32, fp32 master weights and
    optimizer state. None for `"no"` (everything fp32).

    Example:
        >>> policy = mixed_precision_policy("bf16")
        >>> policy.param_dtype, policy.reduce_dtype
        (torch.bfloat16, torch.float32)
    """
    if mixed_precision == "no":
        return None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision]
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def fsdp_plugin(recipe: Recipe):
    """Accelerate's FSDP plugin: the launch config's settings (read from the environment
    `accelerate launch` sets) with `mixed_precision_policy`. Accelerate then wraps each class of the
    model's `_no_split_modules` (`DecoderLayer`, OLMo's `OlmoDecoderLayer`) when the launch config
    names no classes.

    Example:
        >>> fsdp_plugin(Recipe()).fsdp_version
        2
    """
    if os.environ.get("FSDP_VERSION", "2") != "2":
        raise HfArithError("the launch config asks for FSDP1; hf-arith shards with FSDP2: set fsdp_version: 2 "
                           "(see recipes/accelerate/fsdp.yaml)")
    return FullyShardedDataParallelPlugin(fsdp_version=2,
                                          mixed_precision_policy=mixed_precision_policy(recipe.train.mixed_precision))


def deepspeed_plugin(recipe: Recipe):
    """Accelerate's DeepSpeed plugin: the launch config's ZeRO stage and offload settings, with what
    the recipe owns.

    The loop accumulates micro-batches itself (their number changes with the batch ramp) and tells
    DeepSpeed where a step ends (`accelerator.sync_gradients`), so DeepSpeed's
    `gradient_accumulation_steps` is 1: it neither scales the loss nor steps on a count of its own.
    Clipping is DeepSpeed's (inside its step) at the recipe's limit, updated per step by
    `set_deepspeed_clipping`. A launch config that sets either to something else is refused; so is
    ZeRO-3 without `zero3_save_16bit_model`, which the final consolidated save needs. With bf16 or
    fp16, gradients are reduced in fp32 (`communication_data_type`) unless the launch config says
    otherwise. Bucket sizes the launch config leaves out are "auto" (from the model's hidden size).

    Example:
        >>> deepspeed_plugin(Recipe()).deepspeed_config["gradient_accumulation_steps"]
        1
    """
    if importlib.util.find_spec("deepspeed") is None:
        raise HfArithError("the launch config asks for DeepSpeed, which is not installed: "
                           "pip install 'hf-arith[deepspeed]'")
    plugin = DeepSpeedPlugin()
    config = plugin.deepspeed_config
    t = recipe.train
    _own(config, "gradient_accumulation_steps", 1, "the loop accumulates micro-batches itself")
    _own(config, "gradient_clipping", clip_value(0, t) or 0.0, "train.grad_clip")
    config["train_micro_batch_size_per_gpu"] = t.micro_batch_size
    if t.mixed_precision != "no":  # gradients reduced in fp32, as `mixed_precision_policy` does under FSDP
        config.setdefault("communication_data_type", "fp32")
    if t.mixed_precision == "bf16":  # a non-finite step is skipped, as the loop does without DeepSpeed
        config.setdefault("bf16", {"enabled": True, "check_grad_overflow": True})
    zero = config.setdefault("zero_optimization", {})
    # DeepSpeed's own bucket sizes (5e8 elements) are sized for big GPUs: they cost OLMo-1B ~3 GB more
    # per process than the model's own state. "auto" has Accelerate size them from the model's
    # hidden size, as transformers' Trainer and its example DeepSpeed configs do.
    sized = ("reduce_bucket_size", "stage3_prefetch_bucket_size", "stage3_param_persistence_threshold")
    for key in sized if zero.get("stage") == 3 else sized[:1]:
        zero.setdefault(key, "auto")
    if zero.get("stage") == 3 and not zero.get("stage3_gather_16bit_weights_on_model_save"):
        raise HfArithError("DeepSpeed ZeRO-3 without zero3_save_16bit_model cannot write the consolidated final "
                           "model; set zero3_save_16bit_model: true in the launch config "
                           "(see recipes/accelerate/deepspeed_zero3.yaml)")
    return plugin


def _own(config: dict, key: str, value, owner: str) -> None:
    """Sets a DeepSpeed config value the recipe owns; refuses a launch config that sets another."""
    given = config.get(key, "auto")
    if given not in ("auto", None) and float(given) != float(value):
        raise HfArithError(f"the DeepSpeed launch config sets {key}={given}, but hf-arith takes it from the recipe "
                           f"({owner}: {value}); remove {key} from the launch config")
    config[key] = value


# ---------------------------------------------------------------------------------------------
# FSDP2 on CPU


def shards_itself(accelerator) -> bool:
    """True when the launch asked for FSDP and Accelerate will not shard (CPU-only machines):
    `prepare` then shards with `shard_model`, and checkpoints use `save_sharded_state`.

    Example (launched by `accelerate launch --config_file recipes/accelerate/fsdp.yaml` on CPUs)::

        shards_itself(accelerator)  # True
    """
    return launch_backend() == "fsdp" and accelerator.distributed_type != DistributedType.FSDP


def params_sharded(accelerator) -> bool:
    """True when each process holds only a shard of the parameters (FSDP or ZeRO-3): every process
    must then run the same forward passes, because each one gathers parameters from all.

    Example (launched with `recipes/accelerate/deepspeed_zero2.yaml`)::

        params_sharded(accelerator)  # False: ZeRO-2 shards gradients and optimizer state, not parameters
    """
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.state.deepspeed_plugin.zero_stage == 3
    return accelerator.distributed_type == DistributedType.FSDP or shards_itself(accelerator)


def shard_model(model: torch.nn.Module, mixed_precision: str = "no") -> torch.nn.Module:
    """Shards `model` in place with FSDP2 (`fully_shard`) over all processes, on the device of its
    parameters: one FSDP unit per module of a class in `model._no_split_modules` (the decoder
    layers), the rest (embeddings, final norm, LM head) in the root unit. Parameters become
    `DTensor` shards; build the optimizer afterwards.

    The same plan as Accelerate's FSDP2 path on GPUs (which also gives the embeddings and LM head
    units of their own); used where Accelerate does not shard. Needs an initialised process group.

    Example (in every process of an initialised process group)::

        model = shard_model(build_model(recipe.model, tokenizer), "bf16")
        type(model.model.layers[0]).__name__  # "FSDPDecoderLayer" for an Abacus model
    """
    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    kwargs = {"mesh": mesh}
    policy = mixed_precision_policy(mixed_precision)
    if policy is not None:
        kwargs["mp_policy"] = policy
    layer_classes = set(model._no_split_modules or ())
    for module in model.modules():
        if type(module).__name__ in layer_classes:
            fully_shard(module, **kwargs)
    return fully_shard(model, **kwargs)


def prepare(accelerator, model: torch.nn.Module, spec: TrainSpec, clock=None):
    """`(model, optimizer, scheduler)` ready to train: the optimizer and schedule of `spec` built on
    `model`, and all three passed to `accelerator.prepare` (DDP, FSDP, DeepSpeed wrap them there).
    `clock` (an `optim.BudgetClock`) makes the learning rate follow the time budget.
    Where hf-arith shards itself, the model is sharded first and only the scheduler goes through
    Accelerate: the sharded model and optimizer state are saved by `save_sharded_state`.

    Example::

        model, optimizer, scheduler = prepare(accelerator, build_model(recipe.model, tokenizer), recipe.train)
    """
    model.to(accelerator.device)  # before the optimizer, which picks its kernel by device
    if shards_itself(accelerator):
        if spec.mixed_precision == "fp16":
            raise HfArithError("FSDP on CPU does not train in fp16 (no sharded gradient scaler there); "
                               "set train.mixed_precision to bf16 or no")
        model = shard_model(model, spec.mixed_precision)
        optimizer = build_optimizer(model, spec)
        return model, optimizer, accelerator.prepare(build_scheduler(optimizer, spec, clock))
    optimizer = build_optimizer(model, spec)
    return accelerator.prepare(model, optimizer, build_scheduler(optimizer, spec, clock))


def full_state_dict(accelerator, model: torch.nn.Module) -> dict:
    """The whole model's state dict on the main process (empty elsewhere under FSDP and ZeRO-3),
    gathered from the shards; every process must call it.

    Example (on every process)::

        state = full_state_dict(accelerator, model)  # {"lm_head.weight": ..., ...} on the main process
    """
    if shards_itself(accelerator):
        state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    else:
        state = accelerator.get_state_dict(model)
    if not state:  # other processes (ZeRO-3 gives them None)
        return {}
    # FSDP's full state dict holds a copy per name of a tied parameter (the LM head tied to the
    # embedding), but `save_pretrained` recognises ties by shared storage: share it again.
    names = {}
    for name, param in accelerator.unwrap_model(model).named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    for tied in names.values():
        present = [name for name in tied if name in state]
        for name in present[1:]:
            state[name] = state[present[0]]
    return state


def unsharded(model: torch.nn.Module) -> torch.nn.Module:
    """`model` itself, or for an FSDP2-sharded model a parameterless (meta-device) instance of its
    own class with the same config, to `save_pretrained` with a full state dict. FSDP2 swaps the
    class of a sharded module for a subclass defined in torch, which `save_pretrained` would
    otherwise record in `config.json` and whose source it would copy as the model's remote code.

    Example (on every process; only the main one writes)::

        state = full_state_dict(accelerator, model)
        if accelerator.is_main_process:
            unsharded(model).save_pretrained("out", state_dict=state)
    """
    if not isinstance(model, FSDPModule):
        return model
    cls = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
    with torch.device("meta"):
        return cls._from_config(model.config)


def state_layout(accelerator) -> dict:
    """How this launch writes the model and optimizer state into a checkpoint, as saved in its
    `launch.json`: `state` is `"full"` (one process or DDP: every process holds everything),
    `"dcp"` (hf-arith's FSDP2 on CPU: `torch.distributed.checkpoint` shards), `"fsdp"`
    (Accelerate's FSDP plugin) or `"zero2"`/`"zero3"` (DeepSpeed's per-process files); with the
    launch `backend`, `num_processes` and `mixed_precision`.

    Example (plain `hf-arith train`)::

        state_layout(accelerator)  # {"state": "full", "backend": "single", "num_processes": 1, ...}
    """
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        state = f"zero{accelerator.state.deepspeed_plugin.zero_stage}"
    elif shards_itself(accelerator):
        state = "dcp"
    elif accelerator.distributed_type == DistributedType.FSDP:
        state = "fsdp"
    else:
        state = "full"
    return {"state": state, "backend": launch_backend(), "num_processes": accelerator.num_processes,
            "mixed_precision": str(accelerator.mixed_precision)}


def resume_problem(written: dict, launched: dict) -> str | None:
    """Why a checkpoint written as `written` (a `state_layout`) cannot continue under `launched`,
    or None when it can: full state on any number of processes without sharding; hf-arith's
    sharded (DCP) state on any number of FSDP processes, or gathered into one process or DDP;
    Accelerate's FSDP and DeepSpeed state only as it was written (the same stage and number of
    processes: DeepSpeed does not reshard its files here).

    Example:
        >>> resume_problem({"state": "dcp", "num_processes": 2}, {"state": "full", "num_processes": 1}) is None
        True
        >>> resume_problem({"state": "zero2", "num_processes": 2}, {"state": "zero2", "num_processes": 4})
        'DeepSpeed ZeRO-2 state of 2 processes loads only on 2 processes under the same ZeRO stage'
    """
    w, l = written["state"], launched["state"]
    if w == "full" and l == "full" or w == "dcp" and l in ("dcp", "full"):
        return None
    if w == l and written["num_processes"] == launched["num_processes"]:
        return None
    if w.startswith("zero"):
        return (f"DeepSpeed ZeRO-{w[-1]} state of {written['num_processes']} processes loads only on "
                f"{written['num_processes']} processes under the same ZeRO stage")
    if w == "fsdp":
        return f"Accelerate's FSDP state of {written['num_processes']} processes loads only under FSDP on as many"
    return f"{_STATE_NAMES[w]} state does not load into {_STATE_NAMES[l]} processes"


_STATE_NAMES = {"full": "unsharded (one process or DDP)", "dcp": "FSDP-sharded", "fsdp": "FSDP-sharded",
                "zero2": "DeepSpeed ZeRO-2", "zero3": "DeepSpeed ZeRO-3"}


def describe_layout(layout: dict) -> str:
    """`layout` in words, for messages: e.g. "FSDP on 2 processes (no mixed precision)".

    Example:
        >>> describe_layout({"state": "full", "backend": "single", "num_processes": 1, "mixed_precision": "no"})
        'one process'
    """
    n = layout["num_processes"]
    names = {"single": "one process", "ddp": f"DDP on {n} processes", "fsdp": f"FSDP on {n} processes",
             "deepspeed": f"DeepSpeed ZeRO-{layout['state'][-1]} on {n} processes"}
    return names.get(layout.get("backend"), f"{n} processes")


def launch_config_for(layout: dict) -> str:
    """The command that trains under `layout` again, up to the recipe (for messages).

    Example:
        >>> launch_config_for({"state": "zero2", "backend": "deepspeed", "num_processes": 2})
        'accelerate launch --config_file recipes/accelerate/deepspeed_zero2.yaml --num_processes 2 -m hf_arith train'
    """
    files = {"ddp": "ddp.yaml", "fsdp": "fsdp.yaml", "deepspeed": f"deepspeed_zero{layout['state'][-1]}.yaml"}
    if layout.get("backend") not in files:
        return "hf-arith train"
    return (f"accelerate launch --config_file recipes/accelerate/{files[layout['backend']]} "
            f"--num_processes {layout['num_processes']} -m hf_arith train")


def save_sharded_state(model: torch.nn.Module, optimizer, folder: str | os.PathLike) -> Path:
    """Writes the sharded model and optimizer state to `folder/sharded` with
    `torch.distributed.checkpoint` (each process writes its own shards); every process must call it.

    Example (on every process)::

        save_sharded_state(model, optimizer, "runs/x/checkpoints/.tmp_step_10")  # .../.tmp_step_10/sharded
    """
    model_state, optimizer_state = get_state_dict(model, optimizer)
    path = Path(folder) / SHARDED_DIR
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=path)
    return path


def load_sharded_state(model: torch.nn.Module, optimizer, folder: str | os.PathLike) -> None:
    """Restores what `save_sharded_state` wrote into `model` and `optimizer` (sharded the same way,
    on the same number of processes); every process must call it.

    Example (on every process)::

        load_sharded_state(model, optimizer, "runs/x/checkpoints/step_10")
    """
    path = Path(folder) / SHARDED_DIR
    if not path.is_dir():
        raise HfArithError(f"{folder} holds no sharded model state ({SHARDED_DIR}/); it was not saved by an FSDP run "
                           f"on CPU: resume it with the launch config it was trained with")
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


# ---------------------------------------------------------------------------------------------
# DeepSpeed in the loop


@contextlib.contextmanager
def model_init_context(accelerator):
    """Where to build the model: under DeepSpeed ZeRO-3, already partitioned
    (`deepspeed.zero.Init`) exactly when the launch config's `zero3_init_flag` is true. Accelerate
    registers its ZeRO-3 config with transformers whatever the flag says, and transformers then
    builds every model partitioned, with other random draws than a one-process run; with the
    flag false, the model is built whole (the recipe's seed gives the one-process weights) and
    DeepSpeed partitions it in `prepare`.

    Example::

        with model_init_context(accelerator):
            model = build_model(recipe.model, tokenizer)
    """
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero3_init_flag or plugin.zero_stage != 3:
        yield
        return

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()  # generation and saving read it (e.g. `synced_gpus`)


def steps_in_backward(accelerator) -> bool:
    """True under DeepSpeed, whose engine clips and steps the optimizer (or skips a non-finite
    step) inside the backward of a step's last micro-batch; `optimizer.step()` is then a no-op and
    `accelerator.optimizer_step_was_skipped` says what DeepSpeed did.

    Example (launched with `recipes/accelerate/deepspeed_zero2.yaml`)::

        steps_in_backward(accelerator)  # True
    """
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def set_deepspeed_clipping(accelerator, model, limit: float | None) -> None:
    """Under DeepSpeed, sets the gradient-norm limit its next optimizer step clips to (DeepSpeed
    clips inside the backward of a step's last micro-batch, at the value its ZeRO optimizer holds;
    the recipe's clip warmup changes it). Does nothing under other backends, where the loop clips.

    Example (before the backward of a step's last micro-batch)::

        set_deepspeed_clipping(accelerator, model, clip_value(step, recipe.train))
    """
    if steps_in_backward(accelerator):
        model.optimizer.clip_grad = float(limit or 0.0)


__all__ = [
    "accelerator_kwargs",
    "check_launch",
    "cpu_only",
    "deepspeed_plugin",
    "describe_layout",
    "fsdp_plugin",
    "full_state_dict",
    "launch_backend",
    "launch_config_for",
    "launch_request",
    "load_sharded_state",
    "mixed_precision_policy",
    "model_init_context",
    "params_sharded",
    "prepare",
    "resume_problem",
    "save_sharded_state",
    "set_deepspeed_clipping",
    "shard_model",
    "shards_itself",
    "state_layout",
    "steps_in_backward",
    "unsharded",
]
