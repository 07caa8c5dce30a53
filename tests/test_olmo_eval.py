"""In-loop evaluation of text models: perplexity per held-out set and zero-shot multiple choice.

The reference is a bigram "model" whose logits are a fixed table, so every log-likelihood is
computed here by hand in plain Python (`math.exp`, `math.log`) from the table; a tiny real Llama
checks that padding and batching change nothing.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_text_data import english, make_tokenizer, text_recipe, write_corpus
from torch import nn

from hf_arith.data.text import prepare_corpus
from hf_arith.errors import HfArithError, RecipeError
from hf_arith.evaluation.multiple_choice import choice_loglikelihoods, evaluate_multiple_choice, load_task, score
from hf_arith.evaluation.perplexity import evaluate_perplexity
from hf_arith.training.evaluators import build_evaluators
from hf_arith.training.recipe import EvalSpec, EvaluatorSpec, recipe_from_dict

V = 400


class Bigram(nn.Module):
    """logits[b, t] = table[input_ids[b, t]]: the next token depends only on the current one."""

    def __init__(self, vocab: int, seed: int = 0):
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)) * 2)

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return SimpleNamespace(logits=self.table[input_ids])


def log_prob(table: list[list[float]], previous: int, token: int) -> float:
    """log softmax(table[previous])[token], by hand."""
    row = table[previous]
    top = max(row)
    return row[token] - top - math.log(sum(math.exp(v - top) for v in row))


@pytest.fixture(scope="module")
def bigram():
    return Bigram(V)


@pytest.fixture(scope="module")
def table(bigram):
    return bigram.table.detach().double().tolist()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("eval_tok") / "bpe", vocab_size=V)


# ---------------------------------------------------------------------------------------------
# Perplexity


def test_perplexity_is_exp_of_the_hand_computed_mean_nll(bigram, table):
    rng = np.random.default_rng(0)
    instances = rng.integers(0, V, size=(5, 12)).astype(np.uint16)
    nll = [-log_prob(table, int(row[t - 1]), int(row[t])) for row in instances for t in range(1, 12)]
    mean = sum(nll) / len(nll)
    for batch_size in (1, 2, 5):
        result = evaluate_perplexity(bigram, instances, batch_size=batch_size)
        assert result["tokens"] == 5 * 11
        assert result["cross_entropy"] == pytest.approx(mean, rel=1e-6)
        assert result["perplexity"] == pytest.approx(math.exp(mean), rel=1e-6)
    capped = evaluate_perplexity(bigram, instances, max_instances=2)
    assert capped["cross_entropy"] == pytest.approx(sum(nll[:22]) / 22, rel=1e-6)


def test_perplexity_evaluator_reports_every_heldout_set(tmp_path, tokenizer, bigram, table):
    texts = write_corpus(tmp_path / "c", count=30)
    shared = " ".join(" ".join(t.split()[:14]) for t in texts[:10])  # some of these stay in training
    with open(tmp_path / "held.jsonl", "w") as f:
        for text in [f"{shared} and an ending", english(1000), english(1001)]:
            f.write(json.dumps({"text": text}) + "\n")
    raw = text_recipe(tmp_path / "data", tokenizer.name_or_path,
                      [{"name": "web", "paths": [str(tmp_path / "c" / "docs.jsonl")], "heldout_fraction": 0.2}],
                      heldout=[{"name": "extra", "paths": [str(tmp_path / "held.jsonl")]}])
    raw["eval"] = {"evaluators": [{"name": "perplexity", "args": {"batch_size": 3}}]}
    recipe = recipe_from_dict(raw)
    manifest = prepare_corpus(recipe.data)
    assert manifest["heldout"]["extra"]["decontamination"]["dropped"] == 1
    [(name, evaluate)] = build_evaluators(recipe, tokenizer)
    metrics = evaluate(bigram, step=0)
    names = ("cross_entropy", "perplexity", "decontaminated")
    assert set(metrics) == {f"{held}/{name}" for held in ("web", "extra") for name in names}
    for held in ("web", "extra"):
        rows = np.fromfile(tmp_path / "data" / "heldout" / f"{held}.bin", dtype=np.uint16).reshape(-1, 16)
        nll = [-log_prob(table, int(r[t - 1]), int(r[t])) for r in rows for t in range(1, 16)]
        assert metrics[f"{held}/cross_entropy"] == pytest.approx(sum(nll) / len(nll), rel=1e-6)
        assert metrics[f"{held}/perplexity"] == pytest.approx(math.exp(sum(nll) / len(nll)), rel=1e-6)
        assert metrics[f"{held}/decontaminated"] == manifest["heldout"][held]["decontamination"]["dropped"]
    assert metrics["extra/decontaminated"] == 1

    recipe.eval = EvalSpec([EvaluatorSpec("perplexity", {"sets": ["nope"]})])
    with pytest.raises(HfArithError, match=r"held-out set\(s\) \['nope'\] are not in"):
        build_evaluators(recipe, tokenizer)


# ---------------------------------------------------------------------------------------------
# Multiple choice


def test_choice_loglikelihood_is_the_hand_computed_sum_over_the_choice_tokens(bigram, table, tokenizer):
    examples = [
        {"context": "The function returns", "choices": [" the value", " an error of the table", " x"], "label": 0},
        {"context": "", "choices": [" import", " loop"], "label": 1},  # empty context: EOS stands in
    ]
    got = choice_loglikelihoods(bigram, tokenizer, examples, batch_size=2)
    for example, scores in zip(examples, got):
        context = tokenizer(example["context"], add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
        for choice, value in zip(example["choices"], scores):
            sequence = context + tokenizer(choice, add_special_tokens=False)["input_ids"]
            expected = sum(log_prob(table, sequence[t - 1], sequence[t]) for t in range(len(context), len(sequence)))
            assert value == pytest.approx(expected, rel=1e-6)
    # Truncation keeps the end: with room for 2 tokens, a bigram model sees the same last two predictions.
    truncated = choice_loglikelihoods(bigram, tokenizer, examples[:1], max_length=2)[0][0]
    assert truncated == pytest.approx(got[0][0], rel=1e-6)


def test_acc_and_acc_norm_by_hand():
    examples = [
        {"choices": [" a", " bbbbbb"], "label": 1},   # raw: a wins (-2 > -3); per char: -2/1 < -3/6, bbbbbb wins
        {"choices": [" yes", " no"], "label": 0},     # both agree on yes
        # leading spaces are not counted: -4/2, -4/2, -1.5/1, e wins (counting them, "  cc" would: -4/4)
        {"choices": ["  cc", " dd", " e"], "label": 2},
    ]
    result = score(examples, [[-2.0, -3.0], [-1.0, -5.0], [-4.0, -4.0, -1.5]])
    assert result == {"acc": pytest.approx(2 / 3), "acc_norm": 1.0, "questions": 3}
    tie = score([{"choices": [" x", " y"], "label": 1}], [[-1.0, -1.0]])
    assert tie["acc"] == 0.0  # ties go to the first choice


def test_padding_and_batch_size_do_not_change_scores(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, max_position_embeddings=128)).eval()
    examples = load_task("builtin:python_docs")[:6]
    with torch.no_grad():
        one = choice_loglikelihoods(model, tokenizer, examples, batch_size=1)
        many = choice_loglikelihoods(model, tokenizer, examples, batch_size=7)
    np.testing.assert_allclose(np.array(sum(one, [])), np.array(sum(many, [])), rtol=1e-5, atol=1e-5)


def test_builtin_task_is_well_formed():
    examples = load_task("builtin:python_docs")
    assert 50 <= len(examples) <= 100
    assert all(len(e["choices"]) == 4 and len(set(e["choices"])) == 4 for e in examples)
    assert all(c.startswith(" ") for e in examples for c in e["choices"])
    labels = [e["label"] for e in examples]
    assert max(labels.count(i) for i in range(4)) < 0.4 * len(examples)  # answers are not all in one place
    by_context = {e["context"]: e["choices"][e["label"]] for e in examples}
    assert by_context["The statement that terminates the nearest enclosing loop is"] == " break"
    assert by_context["Dividing a number by zero raises"] == " ZeroDivisionError"


def test_multiple_choice_evaluator_logs_acc_and_acc_norm(tmp_path, bigram, table, tokenizer):
    task = tmp_path / "toy_task.jsonl"
    rows = [{"context": "The program", "choices": [" returns", " breaks"], "label": 0},
            {"context": "A value", "choices": [" x", " loop"], "label": 1}]
    task.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = recipe_from_dict(text_recipe("d", "t", [{"name": "a", "paths": ["builtin"]}]))
    recipe.eval = EvalSpec([EvaluatorSpec("multiple_choice", {"tasks": [str(task), "builtin:python_docs"]})])
    [(name, evaluate)] = build_evaluators(recipe, tokenizer)
    metrics = evaluate(bigram, step=5)
    assert set(metrics) == {"toy_task/acc", "toy_task/acc_norm", "python_docs/acc", "python_docs/acc_norm"}
    expected = score(rows, choice_loglikelihoods(bigram, tokenizer, rows))
    assert (metrics["toy_task/acc"], metrics["toy_task/acc_norm"]) == (expected["acc"], expected["acc_norm"])
    assert evaluate_multiple_choice(bigram, tokenizer, rows) == expected


@pytest.mark.parametrize("line, message", [
    ('{"context": "a", "choices": [" b"], "label": 0}', "at least two"),
    ('{"context": "a", "choices": [" b", " c"], "label": 2}', "integer label indexing them"),
    ('{"context": "a", "choices": [" b", " c"]}', "not a"),
    ("not json", "not a"),
])
def test_bad_task_files_are_named(tmp_path, line, message):
    (tmp_path / "t.jsonl").write_text(line + "\n")
    with pytest.raises(HfArithError, match=message):
        load_task(tmp_path / "t.jsonl")
    with pytest.raises(HfArithError, match="builtin:python_docs"):
        load_task("builtin:nope")


def test_unknown_evaluator_arguments_are_recipe_errors(tokenizer):
    recipe = recipe_from_dict(text_recipe("d", "t", [{"name": "a", "paths": ["builtin"]}]))
    recipe.eval = EvalSpec([EvaluatorSpec("multiple_choice", {"task": ["x"]})])
    with pytest.raises(RecipeError, match="bad args"):
        build_evaluators(recipe, tokenizer)
