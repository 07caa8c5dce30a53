"""In-loop evaluation: a registry of evaluator factories the recipe names.

An evaluator is a callable `(model, step) -> dict[str, float]`. The trainer calls each one every
`train.eval_every` steps on the main process, with the model in eval mode, under `torch.no_grad`
and with the random-number state saved and restored around it (so evaluating never changes
training). A recipe lists them by name:

    eval:
      evaluators:
        - name: arith_grid
          args: {lengths: "1-20", samples: 10}

Adding one is a decorated factory `(recipe, tokenizer, **args) -> evaluator`:

Example:
    >>> from hf_arith.training import load_recipe
    >>> from hf_arith.training.evaluators import build_evaluators, register_evaluator
    >>> @register_evaluator("param_norm")
    ... def param_norm(recipe, tokenizer):
    ...     return lambda model, step: {"norm": float(sum(p.norm() ** 2 for p in model.parameters()) ** 0.5)}
    >>> recipe = load_recipe("recipes/abacus/addition_cpu.yaml", ["eval.evaluators=[{name: param_norm}]"])
    >>> [name for name, _ in build_evaluators(recipe, tokenizer=None)]
    ['param_norm']
"""

from __future__ import annotations

import random
from collections.abc import Callable

import torch

from hf_arith.data.arithmetic import IGNORE_INDEX, ArithmeticCollator, eval_set
from hf_arith.data.instances import heldout_instances
from hf_arith.errors import RecipeError
from hf_arith.evaluation.defaults import DEFAULT_EVAL_SEED, IN_LOOP_GRID_LENGTHS, IN_LOOP_GRID_SAMPLES
from hf_arith.evaluation.grid import abacus_offset_of, evaluate_grid, training_region
from hf_arith.evaluation.lengths import cells_of, parse_lengths
from hf_arith.evaluation.multiple_choice import evaluate_multiple_choice, load_task, task_name
from hf_arith.evaluation.perplexity import evaluate_perplexity
from hf_arith.tasks import get_task
from hf_arith.tasks.base import derive_seed
from hf_arith.tokenization import build_arith_tokenizer

Evaluator = Callable[[torch.nn.Module, int], dict]
EVALUATORS: dict[str, Callable[..., Evaluator]] = {}


def register_evaluator(name: str):
    """Decorator: registers an evaluator factory under `name` (the recipe's `eval.evaluators[].name`).

    Example:
        >>> @register_evaluator("zero")
        ... def zero(recipe, tokenizer):
        ...     return lambda model, step: {"value": 0.0}
        >>> EVALUATORS["zero"] is zero
        True
    """

    def register(factory):
        EVALUATORS[name] = factory
        return factory

    return register


def build_evaluators(recipe, tokenizer) -> list[tuple[str, Evaluator]]:
    """`(name, evaluator)` for each entry of `recipe.eval.evaluators`; `RecipeError` for an unknown
    name or arguments the factory does not take.

    Example:
        >>> from hf_arith.training.recipe import Recipe, EvalSpec, EvaluatorSpec
        >>> recipe = Recipe(eval=EvalSpec([EvaluatorSpec("arith_loss", {"samples": 8})]))
        >>> [name for name, _ in build_evaluators(recipe, None)]
        ['arith_loss']
    """
    built = []
    for i, spec in enumerate(recipe.eval.evaluators):
        if spec.name not in EVALUATORS:
            raise RecipeError(f"eval.evaluators[{i}].name={spec.name!r} is unknown; choose one of {sorted(EVALUATORS)}")
        try:
            built.append((spec.name, EVALUATORS[spec.name](recipe, tokenizer, **spec.args)))
        except TypeError as err:
            raise RecipeError(f"eval.evaluators[{i}] ({spec.name}): bad args {spec.args}: {err}") from None
    return built


@register_evaluator("arith_grid")
def arith_grid(recipe, tokenizer, lengths: str = IN_LOOP_GRID_LENGTHS, samples: int = IN_LOOP_GRID_SAMPLES,
               batch_size: int = 256, num_recurrences: int | None = None, seed: int = DEFAULT_EVAL_SEED):
    """Exact-match accuracy of greedy decoding over a length grid (`hf_arith.evaluation`), summarised
    as `accuracy/in_distribution`, `accuracy/out_of_distribution` and `accuracy/overall`.

    `lengths` takes the `hf-arith eval --lengths` syntax ("1-20", "1-20x1-5", "30-32:equal").

    Example:
        >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
        >>> from hf_arith.training import build_model, load_recipe
        >>> recipe = load_recipe("recipes/abacus/addition_cpu.yaml")  # addition, trained up to 10 digits
        >>> tokenizer = ArithTokenizer()
        >>> model = build_model(recipe.model, tokenizer).eval()  # untrained: only the keys are of interest
        >>> evaluate = arith_grid(recipe, tokenizer, lengths="10-11", samples=1)  # both sides of 10 digits
        >>> sorted(evaluate(model, step=100))
        ['accuracy/in_distribution', 'accuracy/out_of_distribution', 'accuracy/overall']
    """
    grid = parse_lengths(lengths)
    task, task_args = recipe.data.task, dict(recipe.data.task_args)
    train_max = training_region(task, task_args)

    def evaluate(model, step):
        result = evaluate_grid(model, tokenizer, task, **grid, samples=samples, seed=seed, batch_size=batch_size,
                               num_recurrences=num_recurrences, progress=False, train_max_digits=train_max,
                               task_args=task_args)
        return {f"accuracy/{part}": value["accuracy"] for part, value in result.summary().items()
                if value["accuracy"] is not None}

    return evaluate


def _held_out_rows(recipe, samples: int, seed: int, lengths: str | None, stream: str) -> list[dict]:
    """Held-out problems from the evaluation seed namespace (never from a training stream): drawn
    like the training data, or `samples` per cell of `lengths` (e.g. "1-20"); sorted by length."""
    task = get_task(recipe.data.task, **recipe.data.task_args)
    if lengths is None:
        rng = random.Random(derive_seed("eval", task.name, seed, stream))
        rows = [{"prompt": e.prompt, "answer": e.answer} for e in (task.sample(rng) for _ in range(samples))]
    else:
        rows = list(eval_set(task, cells_of(lengths), samples, seed))
    return sorted(rows, key=lambda r: len(r["prompt"]) + len(r["answer"]))  # less padding


def teacher_forced_scores(model, collate, rows: list[dict], batch_size: int = 256) -> dict:
    """`loss` (mean cross-entropy per answer token) and `exact_match` of `rows` in one forward
    pass per batch. Exact match here is every answer token (and EOS) being the argmax given the
    true prefix, which is exactly when greedy decoding reproduces the answer, so it equals
    generation's exact match at a fraction of the cost.

    Example:
        >>> from hf_arith.data.arithmetic import ArithmeticCollator
        >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
        >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
        >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1)).eval()
        >>> _ = model.lm_head.weight.data.zero_()  # every token equally likely, and the argmax is <pad>
        >>> rows = [{"prompt": "1+1=", "answer": "2"}]
        >>> with torch.no_grad():
        ...     scores = teacher_forced_scores(model, ArithmeticCollator(ArithTokenizer()), rows)
        >>> round(scores["loss"], 3), scores["exact_match"]  # ln(31) per answer token; never right
        (3.434, 0.0)
    """
    device = next(model.parameters()).device
    total, count, correct = 0.0, 0, 0
    for i in range(0, len(rows), batch_size):
        batch = {k: v.to(device) for k, v in collate(rows[i:i + batch_size]).items()}
        labels = batch["labels"][:, 1:]
        tokens = int((labels != IGNORE_INDEX).sum())
        out = model(**batch, num_items_in_batch=tokens)
        hits = (out.logits[:, :-1].argmax(-1) == labels) | (labels == IGNORE_INDEX)
        total, count = total + float(out.loss) * tokens, count + tokens
        correct += int(hits.all(-1).sum())
    return {"loss": total / max(count, 1), "exact_match": correct / max(len(rows), 1)}


def _collator(tokenizer):
    if tokenizer is None:
        tokenizer = build_arith_tokenizer()
    return ArithmeticCollator(tokenizer)


@register_evaluator("arith_loss")
def arith_loss(recipe, tokenizer, lengths: str | None = None, samples: int = 256, batch_size: int = 256,
               seed: int = DEFAULT_EVAL_SEED):
    """Mean cross-entropy per answer token and exact match (`teacher_forced_scores`) on a fixed
    held-out set: `samples` problems drawn like the training data (or `samples` per cell of
    `lengths`, e.g. "1-20"), from the evaluation seed namespace, so they never come from the
    training stream.

    Example:
        >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
        >>> from hf_arith.training import build_model, load_recipe
        >>> recipe = load_recipe("recipes/abacus/addition_cpu.yaml")  # addition, trained up to 10 digits
        >>> tokenizer = ArithTokenizer()
        >>> model = build_model(recipe.model, tokenizer).eval()  # untrained: only the keys are of interest
        >>> evaluate = arith_loss(recipe, tokenizer, samples=64)
        >>> with torch.no_grad():  # as the trainer calls evaluators
        ...     sorted(evaluate(model, step=10))
        ['exact_match', 'loss']
    """
    rows = _held_out_rows(recipe, samples, seed, lengths, "train-distribution")
    collate = _collator(tokenizer)
    return lambda model, step: teacher_forced_scores(model, collate, rows, batch_size)


@register_evaluator("abacus_eval_offset")
def abacus_eval_offset(recipe, tokenizer, offsets: str | list[int] = "0-10", samples: int = 1024,
                       batch_size: int = 256, seed: int = 4321, lengths: str | None = None):
    """Chooses the Abacus offset the model uses outside training (`config.abacus_eval_offset`) by
    measurement: exact match on `samples` held-out problems of the training distribution at every
    offset in `offsets` ("0-10" or a list); the best wins (ties: the smaller offset). Returns the
    chosen `offset`, its `exact_match`, and `exact_match/offset_<k>` for each candidate. The model's
    config is left as it was (an evaluation does not change the model); the trainer keeps the choice
    with its checkpoints and writes it into the final model's config when the run ends
    (`evaluate.sets_config`: config field -> the metric that holds its value).

    `lengths` (e.g. "11-12": both operands of 11 or 12 digits, `samples` per cell) calibrates on
    problems just beyond the training lengths instead: in-distribution accuracy is often the same
    at every trained offset while accuracy on longer numbers is not (README, "Quickstart
    results"). Those problems are then a validation set for this one choice; report evaluations
    on other lengths.

    Why: training adds a random offset k to every digit position, so each Abacus row is trained
    with a different frequency; measured on the CPU quickstart, the same weights answered 5% of
    6-digit additions at offset 0 and 100% at offset 5 (see the README). Only in-distribution
    problems from their own seed stream are used, never the lengths the evaluation reports.

    Example:
        >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
        >>> from hf_arith.training import build_model, load_recipe
        >>> recipe = load_recipe("recipes/abacus/addition_cpu.yaml")  # addition, trained up to 10 digits
        >>> tokenizer = ArithTokenizer()
        >>> model = build_model(recipe.model, tokenizer).eval()  # untrained: only the keys are of interest
        >>> evaluate = abacus_eval_offset(recipe, tokenizer, offsets="0-2", samples=16)
        >>> with torch.no_grad():  # as the trainer calls evaluators
        ...     metrics = evaluate(model, step=6000)
        >>> sorted(metrics)
        ['exact_match', 'exact_match/offset_0', 'exact_match/offset_1', 'exact_match/offset_2', 'offset']
        >>> model.config.abacus_eval_offset  # unchanged; the trainer applies the choice at the end
        0
        >>> evaluate.sets_config
        {'abacus_eval_offset': 'offset'}
    """
    if isinstance(offsets, str):
        low, _, high = offsets.partition("-")
        candidates = list(range(int(low), int(high or low) + 1))
    else:
        candidates = [int(k) for k in offsets]
    if not candidates or min(candidates) < 0:
        raise ValueError(f"offsets={offsets!r}: give non-negative offsets, e.g. '0-10' or [0, 5, 10]")
    rows = _held_out_rows(recipe, samples, seed, lengths, "abacus-offset")
    collate = _collator(tokenizer)

    def evaluate(model, step):
        if abacus_offset_of(model) is None:
            return {}
        scores, trained_with = {}, model.config.abacus_eval_offset
        try:
            for k in candidates:
                model.config.abacus_eval_offset = k
                scores[k] = teacher_forced_scores(model, collate, rows, batch_size)["exact_match"]
        finally:
            model.config.abacus_eval_offset = trained_with
        best = max(candidates, key=lambda k: (scores[k], -k))
        return {"offset": best, "exact_match": scores[best], **{f"exact_match/offset_{k}": v for k, v in scores.items()}}

    evaluate.sets_config = {"abacus_eval_offset": "offset"}
    return evaluate


@register_evaluator("perplexity")
def perplexity(recipe, tokenizer, sets: list[str] | None = None, max_instances: int | None = None,
               batch_size: int = 8, data_path: str | None = None):
    """OLMo's in-loop perplexity: per held-out set of the prepared text data (`data.path`, or
    `data_path`; all sets or `sets`), `<set>/cross_entropy` (mean next-token NLL, nats),
    `<set>/perplexity`, and `<set>/decontaminated` (held-out documents dropped for sharing an
    n-gram with the training data). `max_instances` caps the instances per set.

    Example (on the data `make olmo` prepares)::

        recipe = load_recipe("recipes/olmo/tiny_cpu.yaml")
        perplexity(recipe, tokenizer, max_instances=64)(model, step=100)
        # {"pydoc/cross_entropy": ..., "pydoc/perplexity": ..., "pydoc/decontaminated": ...}, per held-out set
    """
    path = data_path or recipe.data.path
    if not path:
        raise RecipeError("the perplexity evaluator needs prepared text data: set data.path or its data_path argument")
    held = {name: (instances, entry) for name, (instances, entry) in heldout_instances(path, tokenizer, sets).items()
            if len(instances)}
    if not held:
        raise RecipeError(f"{path} has no held-out instances; give a source heldout_fraction or data.prepare.heldout")

    def evaluate(model, step):
        metrics = {}
        for name, (instances, entry) in held.items():
            result = evaluate_perplexity(model, instances, batch_size, max_instances)
            metrics[f"{name}/cross_entropy"] = result["cross_entropy"]
            metrics[f"{name}/perplexity"] = result["perplexity"]
            metrics[f"{name}/decontaminated"] = entry["decontamination"]["dropped"]
        return metrics

    return evaluate


@register_evaluator("multiple_choice")
def multiple_choice(recipe, tokenizer, tasks: list[str] | None = None, batch_size: int = 32):
    """Zero-shot multiple-choice tasks scored by continuation log-likelihood
    (`hf_arith.evaluation.multiple_choice`): `<task>/acc` and `<task>/acc_norm` (per-character
    normalised) for each JSONL task file or `builtin:<name>` in `tasks` (default: the built-in
    `builtin:python_docs`).

    Example (with a text model and its tokenizer)::

        multiple_choice(recipe, tokenizer)(model, step=100)  # {"python_docs/acc": ..., "python_docs/acc_norm": ...}
    """
    loaded = {task_name(t): load_task(t) for t in (tasks or ["builtin:python_docs"])}

    def evaluate(model, step):
        metrics = {}
        for name, examples in loaded.items():
            result = evaluate_multiple_choice(model, tokenizer, examples, batch_size)
            metrics[f"{name}/acc"], metrics[f"{name}/acc_norm"] = result["acc"], result["acc_norm"]
        return metrics

    return evaluate


__all__ = ["EVALUATORS", "Evaluator", "arith_grid", "arith_loss", "build_evaluators", "multiple_choice", "perplexity",
           "register_evaluator"]
