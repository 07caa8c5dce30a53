"""Zero-shot multiple-choice tasks scored by continuation log-likelihood (OLMo's in-loop
downstream evaluations, lm-eval's `acc` / `acc_norm`).

A task is a JSONL file, one question per line: `{"context": str, "choices": [str, ...],
"label": int}` (the index of the right choice). Write each choice as it continues the context,
usually with its leading space (`"The keyword is"` + `" def"`).

For each choice the model scores log P(choice tokens | context tokens), the sum over the choice's
tokens; context and choice are tokenized separately (as OLMo's in-loop tasks do), so every
choice follows the same context tokens. An empty context is replaced by EOS (lm-eval).

- `acc`: the choice with the highest log-likelihood is the label.
- `acc_norm`: the same after dividing each log-likelihood by the choice's length in characters,
  not counting leading whitespace: OLMo's `len_norm`, which lm-eval's `acc_norm` also divides by
  characters. Characters rather than tokens keep the number comparable across tokenizers.

`builtin:python_docs` is a small built-in task (questions about Python answerable from the
embedded corpus, `hf_arith/resources/python_docs_mc.jsonl`).

Example:
    >>> from hf_arith.evaluation.multiple_choice import load_task
    >>> examples = load_task("builtin:python_docs")
    >>> len(examples), examples[0]["choices"][:2]
    (72, [' function', ' def'])

    Scored by a text model and its tokenizer (e.g. `runs/olmo_tiny_cpu/final`)::

        evaluate_multiple_choice(model, tokenizer, examples)  # {"acc": ..., "acc_norm": ..., "questions": 72}
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hf_arith.errors import HfArithError

BUILTIN_TASKS = {"python_docs": "python_docs_mc.jsonl"}


def task_name(path: str) -> str:
    """The metric prefix of a task: the built-in name, or the file's stem.

    Example:
        >>> task_name("builtin:python_docs"), task_name("tasks/piqa_dev.jsonl")
        ('python_docs', 'piqa_dev')
    """
    return path.partition(":")[2] if path.startswith("builtin:") else Path(path).name.split(".")[0]


def load_task(path: str | os.PathLike) -> list[dict]:
    """The questions of a task file (or `builtin:<name>`), each checked: a non-empty list of
    string choices, an integer label indexing it, a string context.

    Example:
        >>> load_task("builtin:python_docs")[0]["choices"][:2]
        [' function', ' def']
    """
    path = str(path)
    if path.startswith("builtin:"):
        name = task_name(path)
        if name not in BUILTIN_TASKS:
            raise HfArithError(f"unknown built-in task {path!r}; built-in tasks: "
                               + ", ".join(f"builtin:{n}" for n in BUILTIN_TASKS))
        text = (resources.files("hf_arith") / "resources" / BUILTIN_TASKS[name]).read_text(encoding="utf-8")
    else:
        if not Path(path).is_file():
            raise HfArithError(f"multiple-choice task file {path!r} not found; give a JSONL file of "
                               f'{{"context", "choices", "label"}} lines or builtin:python_docs')
        text = Path(path).read_text(encoding="utf-8")
    examples = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            context, choices, label = row["context"], row["choices"], row["label"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise HfArithError(f"{path}:{number}: not a JSON object with context, choices and label ({err})") from None
        if not (isinstance(context, str) and isinstance(choices, list) and len(choices) >= 2
                and all(isinstance(c, str) and c for c in choices)
                and isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(choices)):
            raise HfArithError(f"{path}:{number}: needs a string context, at least two non-empty string choices "
                               f"and an integer label indexing them")
        examples.append({"context": context, "choices": choices, "label": label})
    if not examples:
        raise HfArithError(f"{path} holds no question")
    return examples


@torch.no_grad()
def choice_loglikelihoods(model, tokenizer, examples: list[dict], batch_size: int = 32,
                          max_length: int | None = None) -> list[list[float]]:
    """log P(choice | context) for every choice of every example (summed over the choice's tokens,
    fp32). Sequences longer than `max_length` (default: the model's `max_position_embeddings`) lose
    context tokens from the left.

    Example:
        >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
        >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
        >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
        >>> model = AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64,
        ...                                        num_hidden_layers=1))
        >>> question = {"context": "21+43=", "choices": ["64", "55"], "label": 0}  # any causal LM and tokenizer
        >>> scores = choice_loglikelihoods(model, ArithTokenizer(), [question])
        >>> len(scores), len(scores[0]), all(s < 0 for s in scores[0])  # one log-probability per choice
        (1, 2, True)
    """
    if max_length is None:
        max_length = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    eos = tokenizer.eos_token_id
    requests = []  # (example, choice, input ids, number of choice tokens)
    for i, example in enumerate(examples):
        context = tokenizer(example["context"], add_special_tokens=False)["input_ids"] if example["context"] else [eos]
        for j, choice in enumerate(example["choices"]):
            continuation = tokenizer(choice, add_special_tokens=False)["input_ids"]
            sequence = context + continuation
            if max_length is not None:
                sequence = sequence[-(max_length + 1):]
            requests.append((i, j, sequence, len(continuation)))
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = [[0.0] * len(e["choices"]) for e in examples]
    order = sorted(range(len(requests)), key=lambda r: -len(requests[r][2]))  # similar lengths batch together
    for start in range(0, len(order), batch_size):
        batch = [requests[r] for r in order[start:start + batch_size]]
        width = max(len(seq) - 1 for _, _, seq, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, _, seq, _) in enumerate(batch):  # right padding: the real tokens never see it
            input_ids[row, :len(seq) - 1] = torch.tensor(seq[:-1])
            attention_mask[row, :len(seq) - 1] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        logprobs = F.log_softmax(logits.float(), dim=-1).cpu()
        for row, (i, j, seq, n) in enumerate(batch):
            n = min(n, len(seq) - 1)  # a choice longer than max_length is scored on its last tokens
            positions = torch.arange(len(seq) - 1 - n, len(seq) - 1)
            targets = torch.tensor(seq[len(seq) - n:])
            scores[i][j] = float(logprobs[row, positions, targets].sum())
    return scores


def score(examples: list[dict], loglikelihoods: list[list[float]]) -> dict:
    """`{"acc", "acc_norm", "questions"}` from per-choice log-likelihoods; ties go to the first choice.

    Example:
        >>> score([{"choices": [" a", " bbbb"], "label": 1}], [[-2.0, -4.0]])
        {'acc': 0.0, 'acc_norm': 1.0, 'questions': 1}
    """
    right = right_norm = 0
    for example, values in zip(examples, loglikelihoods):
        chars = [max(len(c.lstrip()), 1) for c in example["choices"]]
        right += int(np.argmax(values)) == example["label"]
        right_norm += int(np.argmax([v / n for v, n in zip(values, chars)])) == example["label"]
    return {"acc": right / len(examples), "acc_norm": right_norm / len(examples), "questions": len(examples)}


def evaluate_multiple_choice(model, tokenizer, examples: list[dict], batch_size: int = 32) -> dict:
    """Scores a task's questions: `{"acc", "acc_norm", "questions"}`.

    Example (with a text model and its tokenizer)::

        scores = evaluate_multiple_choice(model, tokenizer, load_task("builtin:python_docs"))
        scores["acc"], scores["acc_norm"]  # the fractions of the 72 questions answered right
    """
    return score(examples, choice_loglikelihoods(model, tokenizer, examples, batch_size))


__all__ = ["BUILTIN_TASKS", "choice_loglikelihoods", "evaluate_multiple_choice", "load_task", "score", "task_name"]
