"""The model card of a published folder: evaluation results as `EvalResult`s, the card's metadata
(`ModelCardData`) and its text, rendered from the architecture's template in `model_cards/`.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open

from hf_arith.evaluation.grid import abacus_capacity_of, training_region
from hf_arith.evaluation.results import GridResult
from hf_arith.evaluation.saved_recipe import InLoopGrid, SavedRecipe, read_saved_recipe
from hf_arith.tasks import DEFAULT_TASK, get_task
from hf_arith.training.metrics_log import read_metrics

from .run_files import RunFiles, read_config

TEMPLATES = Path(importlib.resources.files("hf_arith.model_cards"))
# model_type -> card template; transformers' own `olmo` (published with --format native) shares OLMo's.
CARD_TEMPLATES = {"abacus": "abacus.md", "arith_olmo": "olmo.md", "olmo": "olmo.md"}



def _span(lengths: list[int]) -> str:
    """`[1, 2, 3, 5]` -> `"1-3,5"`."""
    parts, start = [], None
    for i, n in enumerate(lengths):
        start = n if start is None else start
        if i + 1 == len(lengths) or lengths[i + 1] != n + 1:
            parts.append(str(n) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)


def grid_name(result: GridResult) -> str:
    """The `--lengths` value a result was evaluated on: `"1-30"`, `"1-20x1-5"`, `"101-160:equal"`."""
    a, b = _span(result.lengths_a), _span(result.lengths_b)
    if result.mode == "pairs":
        return f"{a}:equal" if a == b else f"{a}x{b}"
    return a if a == b else f"{a}x{b}"


GRID_REGIONS = (("in_distribution", "in distribution"), ("out_of_distribution", "out of distribution"),
                ("overall", "overall"))


def grid_evaluations(eval_dirs: list[Path]) -> list[dict]:
    """One entry per evaluation folder: its name, grid, settings and summary (from `results.json`,
    as `hf-arith eval` wrote it), and its heatmap if any."""
    evaluations = []
    for folder in eval_dirs:
        result = GridResult.from_json(folder / "results.json")
        heatmap = folder / "heatmap.png"
        evaluations.append({
            "name": folder.name, "task": result.task, "grid": grid_name(result), "mode": result.mode,
            "samples": result.samples, "seed": result.seed, "train_max": list(result.train_max),
            "num_recurrences": result.num_recurrences, "summary": result.summary(), "folder": folder,
            "heatmap": heatmap if heatmap.is_file() else None,
        })
    return evaluations


def last_eval_record(metrics_path: Path | None) -> dict:
    """The last `metrics.jsonl` record with in-loop evaluation results (`eval/...` keys), or `{}`."""
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
    results = []
    for ev in evaluations:
        bound = "x".join(f"≤{n}" for n in dict.fromkeys(ev["train_max"]))
        for part, label in GRID_REGIONS:
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


def training_summary(recipe: SavedRecipe, metrics_path: Path | None) -> dict:
    """The numbers the card's training section shows, from the recipe and `metrics.jsonl`."""
    losses = [r for r in read_metrics(metrics_path) if "loss" in r] if metrics_path else []
    last = losses[-1] if losses else {}
    return {
        "steps": last.get("step"), "max_steps": recipe.train.get("max_steps"), "loss": last.get("loss"),
        "first_loss": losses[0]["loss"] if losses else None, "examples": last.get("examples"),
        "minutes": round(last["elapsed_s"] / 60, 1) if last.get("elapsed_s") is not None else None,
        "train": recipe.train, "seed": recipe.seed,
    }


def card_data(model_type: str, remote_code: bool, recipe: SavedRecipe, results: list, name: str, license: str,
              datasets: list[str]):
    """`huggingface_hub.ModelCardData` for the card's YAML header.

    Example:
        >>> card_data("abacus", True, SavedRecipe(), [], "abacus-addition", "apache-2.0", []).library_name
        'transformers'
    """
    tags = ["hf-arith"] + (["abacus-embeddings", "looped-transformer"] if model_type == "abacus" else ["olmo"])
    if recipe.kind == "arithmetic":
        tags += ["arithmetic", recipe.task or DEFAULT_TASK]
    if remote_code:
        tags.append("custom_code")
    return ModelCardData(
        license=license, library_name="transformers", pipeline_tag="text-generation", tags=tags,
        datasets=list(dict.fromkeys(list(datasets) + list(recipe.hub_datasets))) or None,
        language=["en"] if recipe.kind == "text" else None,
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
        >>> import tempfile
        >>> from hf_arith.evaluation.results import GridResult
        >>> from hf_arith.hub import find_run
        >>> from hf_arith.modeling import AbacusConfig
        >>> run = Path(tempfile.mkdtemp())  # a run folder: its model in final/, an evaluation in eval/
        >>> AbacusConfig().save_pretrained(run / "final")
        >>> result = GridResult("addition", [1, 2], [1, 2], [[5, 5], [5, 4]], [[5, 5], [5, 5]], samples=5)
        >>> _ = result.to_json(run / "eval" / "results.json")
        >>> card = render_card(find_run(run), read_config(run / "final"), "me/abacus-addition")
        >>> card.data.library_name, card.data.eval_results[0].metric_type, card.data.eval_results[0].metric_value
        ('transformers', 'exact_match', 0.95)
    """
    config, recipe = read_config(run.model_dir), read_saved_recipe(run.model_dir)
    evaluations = grid_evaluations(run.eval_dirs) if evaluations is None else evaluations
    in_loop = in_loop_evaluations(last_eval_record(run.metrics))
    if not evaluations and in_loop["arith_grid"]:  # no `hf-arith eval` folder: the in-loop grid numbers
        evaluations = [_in_loop_grid(recipe, in_loop)]
    results = eval_results(evaluations, in_loop)
    name = repo_id.split("/")[-1]
    if recipe.found:
        task = recipe.arithmetic_task
    else:  # a model saved without its recipe: the Abacus model's first use
        task = DEFAULT_TASK if config["model_type"] == "abacus" else None
    task_args, remote_code = recipe.task_args, "auto_map" in published
    # The task as trained, its defaults filled in by the task itself (multiplication: up to 15 digits).
    trained = get_task(task, **task_args) if task else None
    return ModelCard.from_template(
        card_data(config["model_type"], remote_code, recipe, results, name, license, list(datasets)),
        template_path=str(TEMPLATES / CARD_TEMPLATES[config["model_type"]]),
        repo_id=repo_id, name=name, config=config, recipe=recipe.contents, remote_code=remote_code,
        native=published["model_type"] == "olmo", task=task, task_args=task_args, trained=trained,
        example=trained.card_example() if trained else None, eos_token=_eos_text(run.model_dir),
        evaluations=evaluations, in_loop=in_loop, training=training_summary(recipe, run.metrics),
        parameters=_parameter_count(run.model_dir), files=files or {},
        capacity=abacus_capacity_of(config),
    )


def _eos_text(model_dir: Path) -> str | None:
    """The EOS token's text from the saved tokenizer config."""
    path = model_dir / "tokenizer_config.json"
    eos = json.loads(path.read_text()).get("eos_token") if path.is_file() else None
    return eos.get("content") if isinstance(eos, dict) else eos


def _in_loop_grid(recipe: SavedRecipe, in_loop: dict) -> dict:
    """An evaluation entry for the in-loop `arith_grid` numbers (only the summary is logged)."""
    grid, task = recipe.in_loop_grid or InLoopGrid(), recipe.task or DEFAULT_TASK
    summary = {part: {"accuracy": in_loop["arith_grid"].get(part)} for part, _ in GRID_REGIONS}
    # The region the in-loop evaluator itself measured with (`evaluators.arith_grid`).
    train_max = list(training_region(task, recipe.task_args))
    return {"name": "in-loop", "task": task,
            "grid": grid.lengths, "mode": "grid", "samples": grid.samples,
            "seed": grid.seed, "train_max": train_max, "num_recurrences": None,
            "summary": summary, "folder": None, "heatmap": None, "step": in_loop["step"]}


def _parameter_count(model_dir: Path) -> int:
    """Parameters stored in the safetensors files (a tied head is stored, and counted, once)."""
    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    return total


__all__ = ["CARD_TEMPLATES", "card_data", "eval_results", "grid_evaluations", "render_card"]
