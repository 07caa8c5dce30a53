"""Publishing to the Hugging Face Hub: the exact folder a user downloads, its model card, the push.

`publish(source, repo_id)` is `hf-arith publish`. It finds the model and its run (`find_run`),
writes the folder (`assemble`): weights as safetensors (sharded above `max_shard_size`), the config
with `auto_map`, the modeling code that `save_pretrained` copies from `hf_arith.modeling`, the
tokenizer, the generation config, `recipe.yaml`, the training log and loss curve, each evaluation's
`results.json` and heatmap, and a README rendered from `model_cards/<arch>.md`
(`render_card`, metadata through `huggingface_hub.ModelCardData`/`EvalResult`). It refuses code
that could do more than compute (`check_remote_code`), then uploads the folder with
`HfApi.create_repo` + `upload_folder` (`push`). OLMo models without custom parts can be written in
transformers' native `olmo` format, which loads without `trust_remote_code`.

Example:
    >>> publish("runs/addition_cpu", "me/abacus-addition", local_dir="exports/abacus")  # write only
    Published(folder=PosixPath('exports/abacus'), url=None)
    >>> publish("runs/addition_cpu", "me/abacus-addition")  # needs a token (`hf auth login` or HF_TOKEN)
    Published(folder=None, url='https://huggingface.co/me/abacus-addition/commit/...')
"""

from __future__ import annotations

import ast
import importlib.resources
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hf_arith.errors import HfArithError

TEMPLATES = Path(importlib.resources.files("hf_arith.model_cards"))
FORMATS = ("ours", "native")
# What the published code may import: the model's own libraries, and standard modules without I/O.
# `tokenizers` is a dependency of transformers that the tokenizer file builds on.
REMOTE_CODE_IMPORTS = {"torch", "transformers", "tokenizers", "__future__", "math", "typing", "dataclasses",
                       "functools", "itertools", "collections", "enum", "re", "warnings"}
REMOTE_CODE_BUILTINS = {"open", "exec", "eval", "compile", "__import__", "breakpoint", "input"}
# Parts of the allowed libraries that read or write files or reach the network.
REMOTE_CODE_DENIED = {"torch.load", "torch.save", "torch.hub", "transformers.utils.hub",
                      "transformers.dynamic_module_utils"}
# model_type -> (template, our class as "module:attribute"); other model types load as native transformers.
ARCHITECTURES = {
    "abacus": ("abacus.md", "hf_arith.modeling.modeling_abacus:AbacusForCausalLM"),
    "arith_olmo": ("olmo.md", "hf_arith.modeling.modeling_olmo:ArithOlmoForCausalLM"),
    "olmo": ("olmo.md", None),
}


# ---------------------------------------------------------------------------------------------
# What a run holds


@dataclass
class RunFiles:
    """Where the pieces of a trained model are: `model_dir` (a `from_pretrained` folder), the run
    folder (`metrics.jsonl`, `loss.png`) if there is one, and the evaluation folders
    (`results.json` + `heatmap.png` from `hf-arith eval --out`)."""

    model_dir: Path
    run_dir: Path | None = None
    eval_dirs: list[Path] = field(default_factory=list)

    @property
    def metrics(self) -> Path | None:
        path = self.run_dir / "metrics.jsonl" if self.run_dir else None
        return path if path is not None and path.is_file() else None

    @property
    def loss_curve(self) -> Path | None:
        path = self.run_dir / "loss.png" if self.run_dir else None
        return path if path is not None and path.is_file() else None


def find_run(source: str | os.PathLike, eval_dirs=()) -> RunFiles:
    """The model and run behind `source`: a run folder (it holds `final/`) or a model folder (its
    parent is the run when it holds `metrics.jsonl`). Evaluations are `eval_dirs`, or else every
    `RUN/eval*/` with a `results.json`.

    Example:
        >>> find_run("runs/addition_cpu")
        RunFiles(model_dir=PosixPath('runs/addition_cpu/final'), run_dir=PosixPath('runs/addition_cpu'),
                 eval_dirs=[PosixPath('runs/addition_cpu/eval')])
    """
    source = Path(source)
    if (source / "final" / "config.json").is_file():
        model_dir, run_dir = source / "final", source
    elif (source / "config.json").is_file():
        model_dir = source
        run_dir = source.parent if (source.parent / "metrics.jsonl").is_file() else None
    else:
        raise HfArithError(f"{source} holds no model: give a run folder (with final/ inside, as `hf-arith train` "
                           f"writes) or a model folder with config.json")
    if eval_dirs:
        found = [Path(d) for d in eval_dirs]
        for folder in found:
            if not (folder / "results.json").is_file():
                raise HfArithError(f"--eval-dir {folder} has no results.json; give a folder written by "
                                   f"`hf-arith eval ... --out DIR`")
    else:
        found = sorted(p.parent for p in run_dir.glob("eval*/results.json")) if run_dir else []
    return RunFiles(model_dir, run_dir, found)


def read_recipe(model_dir: Path) -> dict:
    """The resolved recipe saved next to the model (`{}` when there is none)."""
    path = model_dir / "recipe.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def read_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())


# ---------------------------------------------------------------------------------------------
# Model, tokenizer and code


def load_model(model_dir: Path):
    """The model of `model_dir` through our own classes (so that `save_pretrained` copies the code
    of this installation), or transformers' for a native model type.

    Example:
        >>> type(load_model(Path("runs/addition_cpu/final"))).__name__
        'AbacusForCausalLM'
    """
    from transformers import AutoModelForCausalLM

    from hf_arith.training.recipe import import_object

    model_type = read_config(model_dir).get("model_type")
    if model_type not in ARCHITECTURES:
        raise HfArithError(f"{model_dir} holds a {model_type!r} model; publish knows abacus and OLMo models "
                           f"(model_type {', '.join(repr(t) for t in ARCHITECTURES)})")
    cls_path = ARCHITECTURES[model_type][1]
    cls = import_object(cls_path) if cls_path else AutoModelForCausalLM
    model, info = cls.from_pretrained(model_dir, output_loading_info=True)
    if info.get("missing_keys"):  # transformers would initialise them afresh and publish that
        missing = sorted(info["missing_keys"])
        fix = ("`hf-arith convert` it to the current layout first (`--to ours`)" if model_type == "arith_olmo"
               else "it was saved by an older hf-arith with other tensor names; retrain or load it with its own code")
        raise HfArithError(f"{model_dir} lacks tensors this hf-arith's {model_type} model has ({', '.join(missing[:3])}"
                           f"{', ...' if len(missing) > 3 else ''}); {fix}")
    return model.eval()


def load_tokenizer(model_dir: Path):
    """The tokenizer saved with the model: our `ArithTokenizer` when its config names it (so that
    `save_pretrained` copies this installation's file), else a transformers class; tokenizer code
    from anywhere else is refused rather than run.

    Example:
        >>> type(load_tokenizer(Path("runs/addition_cpu/final"))).__name__
        'ArithTokenizer'
    """
    from transformers import AutoTokenizer

    config_path = model_dir / "tokenizer_config.json"
    if not config_path.is_file():
        raise HfArithError(f"{model_dir} has no tokenizer (tokenizer_config.json); save the tokenizer next to the "
                           f"model (as `hf-arith train` does) before publishing")
    auto = (json.loads(config_path.read_text()).get("auto_map") or {}).get("AutoTokenizer")
    if auto is None:
        return AutoTokenizer.from_pretrained(model_dir)
    names = auto if isinstance(auto, list) else [auto]
    if not any(str(n).endswith("tokenization_arith.ArithTokenizer") for n in names if n):
        raise HfArithError(f"{model_dir}'s tokenizer is custom code ({auto}) that hf-arith does not ship; "
                           f"save a standard tokenizer (e.g. PreTrainedTokenizerFast) with the model")
    from hf_arith.modeling.tokenization_arith import ArithTokenizer

    return ArithTokenizer.from_pretrained(model_dir)


def check_remote_code(folder: str | os.PathLike) -> list[Path]:
    """Every `.py` of `folder` (the code `trust_remote_code=True` runs on a user's machine) may
    import only `REMOTE_CODE_IMPORTS` and sibling files, and use none of `open`, `exec`, `eval`, ..., `torch.load`/`save`, `torch.hub`, transformers' Hub helpers:
    it computes, and touches neither network nor disk. A guard against accidents in our own code
    (it reads the source; it is not a sandbox). Returns the files checked; `HfArithError` names the
    first offence.

    Example:
        >>> [p.name for p in check_remote_code("exports/abacus")]
        ['configuration_abacus.py', 'layers.py', 'modeling_abacus.py', 'tokenization_arith.py']
    """
    folder = Path(folder)
    files = sorted(folder.rglob("*.py"))
    siblings = {p.stem for p in files}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            problem = _remote_code_problem(node, siblings)
            if problem:
                raise HfArithError(f"{path.name}:{node.lineno}: {problem}; the code published with a model may "
                                   f"import only {', '.join(sorted(REMOTE_CODE_IMPORTS))} and sibling files")
    return files


def _dotted(node: ast.AST) -> str:
    """`torch.hub.load` for the expression `torch.hub.load`; "" for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _denied(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in REMOTE_CODE_DENIED)


def _remote_code_problem(node: ast.AST, siblings: set[str]) -> str | None:
    if isinstance(node, ast.Import):
        bad = [a.name for a in node.names if a.name.split(".")[0] not in REMOTE_CODE_IMPORTS or _denied(a.name)]
        return f"imports {', '.join(bad)}" if bad else None
    if isinstance(node, ast.ImportFrom):
        if node.level:  # relative: a sibling file of the folder
            return None if (node.module or "").split(".")[0] in siblings else f"imports .{node.module}, not a sibling"
        names = [f"{node.module}.{a.name}" for a in node.names]
        if node.module.split(".")[0] in REMOTE_CODE_IMPORTS:
            names = [n for n in names if _denied(n) or _denied(node.module)]
        return f"imports {', '.join(names)}" if names else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in REMOTE_CODE_BUILTINS:
        return f"calls {node.func.id}()"
    if isinstance(node, ast.Attribute):
        name = _dotted(node)
        if _denied(name):
            return f"uses {name}"
    return None


def save_model(model_dir: Path, out: Path, fmt: str, max_shard_size: str) -> dict:
    """Writes weights, config, generation config, modeling code and tokenizer of `model_dir` to
    `out` in the format `fmt`; returns the saved `config.json`.

    `native` (OLMo only) converts to transformers' `OlmoForCausalLM` (`hf_arith.convert.to_native`),
    with the padding rows listed in `suppress_tokens` as `hf-arith convert` does.
    """
    model_type = read_config(model_dir).get("model_type")
    if fmt == "native" and model_type != "arith_olmo":
        raise HfArithError(f"--format native is for OLMo models; this is a {model_type!r} model, whose code only "
                           f"exists in hf-arith: publish it with --format ours")
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    if fmt == "native":
        from hf_arith.convert import _generation_config, to_native

        from hf_arith.modeling.tokenization_arith import ArithTokenizer

        if isinstance(tokenizer, ArithTokenizer):
            raise HfArithError("--format native publishes no code, but this model's tokenizer is hf-arith's "
                               "ArithTokenizer (custom code); publish it with --format ours")
        generation = _generation_config(model_dir, model.config, "native")
        model = to_native(model)
        model.generation_config = generation
    model.save_pretrained(out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    return read_config(out)


# ---------------------------------------------------------------------------------------------
# Evaluation results


def _span(lengths: list[int]) -> str:
    """`[1, 2, 3, 5]` -> `"1-3,5"`."""
    parts, start = [], None
    for i, n in enumerate(lengths):
        start = n if start is None else start
        if i + 1 == len(lengths) or lengths[i + 1] != n + 1:
            parts.append(str(n) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)


def grid_name(result: dict) -> str:
    """The `--lengths` value a `results.json` was evaluated on: `"1-30"`, `"1-20x1-5"`, `"101-160:equal"`."""
    a, b = _span(result["lengths_a"]), _span(result["lengths_b"])
    if result["mode"] == "pairs":
        return f"{a}:equal" if a == b else f"{a}x{b}"
    return a if a == b else f"{a}x{b}"


PARTS = (("in_distribution", "in distribution"), ("out_of_distribution", "out of distribution"),
         ("overall", "overall"))


def grid_evaluations(eval_dirs: list[Path]) -> list[dict]:
    """One entry per evaluation folder: its name, grid, settings and summary (from `results.json`,
    as `hf-arith eval` wrote it), and its heatmap if any."""
    evaluations = []
    for folder in eval_dirs:
        result = json.loads((folder / "results.json").read_text())
        heatmap = folder / "heatmap.png"
        evaluations.append({
            "name": folder.name, "task": result["task"], "grid": grid_name(result), "mode": result["mode"],
            "samples": result["samples_per_cell"], "seed": result["seed"], "train_max": result["train_max"],
            "num_recurrences": result.get("num_recurrences"), "summary": result["summary"], "folder": folder,
            "heatmap": heatmap if heatmap.is_file() else None,
        })
    return evaluations


def last_eval_record(metrics_path: Path | None) -> dict:
    """The last `metrics.jsonl` record with in-loop evaluation results (`eval/...` keys), or `{}`."""
    from hf_arith.training.trainer import read_metrics

    records = [r for r in read_metrics(metrics_path) if any(k.startswith("eval/") for k in r)] if metrics_path else []
    return records[-1] if records else {}


def in_loop_evaluations(record: dict) -> dict:
    """`{"perplexity": {set: {"perplexity", "cross_entropy"}}, "multiple_choice": {task: {"acc", "acc_norm"}},
    "step": n}` from one `metrics.jsonl` record."""
    out = {"perplexity": {}, "multiple_choice": {}, "arith_grid": {}, "step": record.get("step")}
    for key, value in record.items():
        parts = key.split("/")
        if parts[0] != "eval" or len(parts) < 3:
            continue
        if parts[1] in ("perplexity", "multiple_choice") and len(parts) == 4:
            out[parts[1]].setdefault(parts[2], {})[parts[3]] = value
        elif parts[1] == "arith_grid" and parts[2] == "accuracy" and len(parts) == 4:
            out["arith_grid"][parts[3]] = value
    return out


def eval_results(evaluations: list[dict], in_loop: dict) -> list:
    """The model-index entries (`huggingface_hub.EvalResult`), from the run's own numbers: per grid
    evaluation the exact-match accuracy in and out of the training lengths and overall; per
    held-out text set the perplexity; per multiple-choice task the accuracy (plain and
    length-normalised)."""
    from huggingface_hub import EvalResult

    results = []
    for ev in evaluations:
        bound = "x".join(f"≤{n}" for n in dict.fromkeys(ev["train_max"]))
        for part, label in PARTS:
            accuracy = ev["summary"][part]["accuracy"]
            if accuracy is None:
                continue
            results.append(EvalResult(
                task_type="text-generation", task_name=f"{ev['task']} (greedy decoding)",
                dataset_type=f"hf-arith/{ev['task']}", dataset_name=f"{ev['task']} {ev['grid']} digits",
                dataset_config=ev["grid"], dataset_split="test",
                dataset_args={"samples_per_cell": ev["samples"], "seed": ev["seed"]},
                metric_type="exact_match", metric_value=accuracy, metric_config=part,
                metric_name=f"exact match, {label}" + (f" (training lengths {bound})" if part != "overall" else ""),
            ))
    for name, values in sorted(in_loop["perplexity"].items()):
        if "perplexity" in values:
            results.append(EvalResult(
                task_type="text-generation", dataset_type=name, dataset_name=f"{name} (held-out)",
                dataset_split="heldout", metric_type="perplexity", metric_value=values["perplexity"],
                metric_name="perplexity"))
    for name, values in sorted(in_loop["multiple_choice"].items()):
        for key, label in (("acc", "accuracy"), ("acc_norm", "accuracy (length-normalised)")):
            if key in values:
                results.append(EvalResult(
                    task_type="multiple-choice", dataset_type=name, dataset_name=name, dataset_split="test",
                    metric_type="accuracy", metric_value=values[key], metric_name=label, metric_config=key))
    return results


# ---------------------------------------------------------------------------------------------
# The model card


def _example(task: str, task_args: dict) -> dict:
    """The problem the how-to snippet solves, inside the training lengths: the task's `card_example`."""
    from hf_arith.tasks import get_task

    return get_task(task, **task_args).card_example()


def training_summary(recipe: dict, metrics_path: Path | None) -> dict:
    """The numbers the card's training section shows, from the recipe and `metrics.jsonl`."""
    from hf_arith.training.trainer import read_metrics

    losses = [r for r in read_metrics(metrics_path) if "loss" in r] if metrics_path else []
    last = losses[-1] if losses else {}
    train = recipe.get("train") or {}
    return {
        "steps": last.get("step"), "max_steps": train.get("max_steps"), "loss": last.get("loss"),
        "first_loss": losses[0]["loss"] if losses else None, "examples": last.get("examples"),
        "minutes": round(last["elapsed_s"] / 60, 1) if last.get("elapsed_s") is not None else None,
        "train": train, "seed": recipe.get("seed"),
    }


def card_data(model_type: str, remote_code: bool, recipe: dict, results: list, name: str, license: str,
              datasets: list[str]):
    """`huggingface_hub.ModelCardData` for the card's YAML header.

    Example:
        >>> card_data("abacus", True, {}, [], "abacus-addition", "apache-2.0", []).library_name
        'transformers'
    """
    from huggingface_hub import ModelCardData

    data = recipe.get("data") or {}
    tags = ["hf-arith"] + (["abacus-embeddings", "looped-transformer"] if model_type == "abacus" else ["olmo"])
    if data.get("kind", "arithmetic") == "arithmetic":
        tags += ["arithmetic", data.get("task", "addition")]
    if remote_code:
        tags.append("custom_code")
    hub_sources = [s["hub"] for s in ((data.get("prepare") or {}).get("sources") or []) if s.get("hub")]
    return ModelCardData(
        license=license, library_name="transformers", pipeline_tag="text-generation", tags=tags,
        datasets=list(dict.fromkeys(list(datasets) + hub_sources)) or None,
        language=["en"] if data.get("kind") == "text" else None,
        metrics=sorted({r.metric_type for r in results}) or None,
        model_name=name, eval_results=results or None,
    )


def render_card(run: RunFiles, published: dict, repo_id: str, license: str = "apache-2.0", datasets=(),
                evaluations: list[dict] | None = None, files: dict | None = None):
    """The model card (`huggingface_hub.ModelCard`) of a published folder, rendered from the
    architecture's template in `model_cards/` with `ModelCard.from_template`.

    The architecture is described from the run's own config; `published` is the `config.json` of
    the folder (its `auto_map` decides whether the snippet passes `trust_remote_code=True`);
    `files` maps the images and logs to their paths in the folder.

    Example:
        >>> card = render_card(find_run("runs/addition_cpu"), published_config, "me/abacus-addition")
        >>> card.data.library_name, card.data.eval_results[0].metric_type
        ('transformers', 'exact_match')
    """
    from huggingface_hub import ModelCard

    config, recipe = read_config(run.model_dir), read_recipe(run.model_dir)
    evaluations = grid_evaluations(run.eval_dirs) if evaluations is None else evaluations
    in_loop = in_loop_evaluations(last_eval_record(run.metrics))
    if not evaluations and in_loop["arith_grid"]:  # no `hf-arith eval` folder: the in-loop grid numbers
        evaluations = [_in_loop_grid(recipe, in_loop)]
    results = eval_results(evaluations, in_loop)
    name, data = repo_id.split("/")[-1], recipe.get("data") or {}
    if recipe:
        task = data.get("task", "addition") if data.get("kind", "arithmetic") == "arithmetic" else None
    else:  # a model saved without its recipe: the Abacus model's first use
        task = "addition" if config["model_type"] == "abacus" else None
    task_args, remote_code = data.get("task_args") or {}, "auto_map" in published
    return ModelCard.from_template(
        card_data(config["model_type"], remote_code, recipe, results, name, license, list(datasets)),
        template_path=str(TEMPLATES / ARCHITECTURES[config["model_type"]][0]),
        repo_id=repo_id, name=name, config=config, recipe=recipe, remote_code=remote_code,
        native=published["model_type"] == "olmo", task=task, task_args=task_args,
        example=_example(task, task_args) if task else None, eos_token=_eos_text(run.model_dir),
        evaluations=evaluations, in_loop=in_loop, training=training_summary(recipe, run.metrics),
        parameters=_parameter_count(run.model_dir), files=files or {},
        capacity=config.get("abacus_num_positions", 0) - 1 - config.get("abacus_eval_offset", 0),
    )


def _eos_text(model_dir: Path) -> str | None:
    """The EOS token's text from the saved tokenizer config."""
    path = model_dir / "tokenizer_config.json"
    eos = json.loads(path.read_text()).get("eos_token") if path.is_file() else None
    return eos.get("content") if isinstance(eos, dict) else eos


def _in_loop_grid(recipe: dict, in_loop: dict) -> dict:
    """An evaluation entry for the in-loop `arith_grid` numbers (only the summary is logged)."""
    from hf_arith.evaluation.grid import training_region

    spec = next((e for e in (recipe.get("eval") or {}).get("evaluators") or [] if e.get("name") == "arith_grid"), {})
    data = recipe.get("data") or {}
    args, task = spec.get("args") or {}, data.get("task", "addition")
    summary = {part: {"accuracy": in_loop["arith_grid"].get(part)} for part, _ in PARTS}
    # The region the in-loop evaluator itself measured with (`evaluators.arith_grid`).
    train_max = list(training_region(task, data.get("task_args")))
    return {"name": "in-loop", "task": task,
            "grid": args.get("lengths", "1-20"), "mode": "grid", "samples": args.get("samples", 10),
            "seed": args.get("seed", 1234), "train_max": train_max, "num_recurrences": None,
            "summary": summary, "folder": None, "heatmap": None, "step": in_loop["step"]}


def _parameter_count(model_dir: Path) -> int:
    """Parameters stored in the safetensors files (a tied head is stored, and counted, once)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


# ---------------------------------------------------------------------------------------------
# The folder, and the push


def assemble(source: str | os.PathLike, out_dir: str | os.PathLike, repo_id: str, fmt: str = "ours",
             max_shard_size: str = "5GB", eval_dirs=(), license: str = "apache-2.0", datasets=()) -> Path:
    """Writes the folder a Hub user downloads to `out_dir` (new or empty): model files (see
    `save_model`), `recipe.yaml`, `training/metrics.jsonl` and `training/loss.png`,
    `evaluation/<name>/results.json` and `heatmap.png` per evaluation, and `README.md`, the model
    card. The code in it passes `check_remote_code`.

    Example:
        >>> sorted(p.name for p in assemble("runs/addition_cpu", "exports/abacus", "me/abacus").iterdir())[:4]
        ['README.md', 'config.json', 'configuration_abacus.py', 'evaluation']
    """
    if fmt not in FORMATS:
        raise HfArithError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    check_repo_id(repo_id)
    run = find_run(source, eval_dirs)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HfArithError(f"{out} already exists and is not an empty folder; choose a new --local-dir")
    out.mkdir(parents=True, exist_ok=True)
    try:
        _write_folder(run, out, repo_id, fmt, max_shard_size, license, datasets)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written folder that looks publishable
        raise
    return out


def _write_folder(run: RunFiles, out: Path, repo_id: str, fmt: str, max_shard_size: str, license: str,
                  datasets) -> None:
    config = save_model(run.model_dir, out, fmt, max_shard_size)
    files = {}
    if (run.model_dir / "recipe.yaml").is_file():
        shutil.copy2(run.model_dir / "recipe.yaml", out / "recipe.yaml")
        files["recipe"] = "recipe.yaml"
    for key, path, name in (("metrics", run.metrics, "metrics.jsonl"), ("loss_curve", run.loss_curve, "loss.png")):
        if path is not None:
            (out / "training").mkdir(exist_ok=True)
            shutil.copy2(path, out / "training" / name)
            files[key] = f"training/{name}"
    evaluations = grid_evaluations(run.eval_dirs)
    for ev in evaluations:
        folder = out / "evaluation" / ev["name"]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ev["folder"] / "results.json", folder / "results.json")
        ev["results_path"] = f"evaluation/{ev['name']}/results.json"
        if ev["heatmap"] is not None:
            shutil.copy2(ev["heatmap"], folder / "heatmap.png")
            ev["heatmap_path"] = f"evaluation/{ev['name']}/heatmap.png"
    card = render_card(run, config, repo_id, license, datasets, evaluations, files)
    card.save(out / "README.md")
    check_remote_code(out)


def check_repo_id(repo_id: str) -> None:
    """`HfArithError` unless `repo_id` is a valid `ORG/NAME`.

    Example:
        >>> check_repo_id("me/abacus-addition")
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HfArithError(f"--repo-id {repo_id!r} is not a Hub repository id ({err}); write ORG/NAME") from None
    if repo_id.count("/") != 1:
        raise HfArithError(f"--repo-id {repo_id!r} needs its owner: write ORG/NAME, e.g. me/abacus-addition")


def hub_token() -> str:
    """The token `huggingface_hub` finds (HF_TOKEN, or `hf auth login`); `HfArithError` when none."""
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise HfArithError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, or pass --local-dir DIR to "
                           "write the folder without pushing")
    return token


def push(folder: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
         token: str | None = None) -> str:
    """Uploads `folder` as the whole content of `repo_id` (created if missing; `revision` is a
    branch, created from main if missing) in one commit: files the folder no longer has are
    deleted, unchanged files are not uploaded again. Returns the commit URL.

    Example:
        >>> push("exports/abacus", "me/abacus-addition", private=True)
        'https://huggingface.co/me/abacus-addition/commit/...'
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token or hub_token())
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                   commit_message=f"Upload {repo_id.split('/')[-1]} with hf-arith",
                                   delete_patterns=["*"])
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        message = " ".join(str(err).split())
        raise HfArithError(f"the Hub refused the upload to {repo_id} (HTTP {status}: {message}); check the token's "
                           f"write access to that namespace") from None
    return commit.commit_url


@dataclass
class Published:
    """What `publish` did: the folder it wrote (`local_dir`) or the commit URL it pushed."""

    folder: Path | None
    url: str | None


def publish(source: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
            local_dir: str | os.PathLike | None = None, fmt: str = "ours", max_shard_size: str = "5GB",
            eval_dirs=(), license: str = "apache-2.0", datasets=()) -> Published:
    """`hf-arith publish`: `assemble` the folder for `repo_id` and `push` it; with `local_dir`,
    write the folder there and push nothing. Without `local_dir` a token must be present.

    Example:
        >>> publish("runs/addition_cpu", "me/abacus-addition", local_dir="exports/abacus").url is None
        True
    """
    kwargs = {"fmt": fmt, "max_shard_size": max_shard_size, "eval_dirs": eval_dirs, "license": license,
              "datasets": datasets}
    if local_dir is not None:
        return Published(assemble(source, local_dir, repo_id, **kwargs), None)
    check_repo_id(repo_id)
    token = hub_token()  # before the work, so that a missing token fails at once
    with tempfile.TemporaryDirectory(prefix="hf_arith_publish_") as tmp:
        folder = assemble(source, Path(tmp) / "repo", repo_id, **kwargs)
        return Published(None, push(folder, repo_id, private, revision, token))


__all__ = ["Published", "RunFiles", "assemble", "check_remote_code", "eval_results", "find_run", "publish", "push",
           "render_card"]
