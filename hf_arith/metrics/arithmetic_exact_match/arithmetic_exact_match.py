"""Arithmetic exact match, as an `evaluate` metric: `evaluate.load(path_to_this_folder)`.

The scoring rule of hf-arith's evaluation (`BinaryOperationTask.score`, `SortingTask.score`): a
prediction is right when, cut at its first `<eos>` and without `<pad>`/`<bos>` text and surrounding
whitespace, it is exactly the reference answer. Answers are compared as strings, never as numbers,
so a trailing zero or an extra digit is wrong even where the integer would be equal.

This file imports only `evaluate` and `datasets`, so the folder works without hf-arith.
"""

import datasets
import evaluate

_DESCRIPTION = """
Exact match of generated arithmetic answers, in hf-arith's model format (digits least-significant
first, e.g. "573" for 375; sorting answers are labels such as "b,a"). Text from the first "<eos>" on,
"<pad>"/"<bos>" and surrounding whitespace are dropped from a prediction before the comparison.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated answers (the text after the prompt).
    references (`list` of `str`): the correct answers, in the same format.
Returns:
    exact_match (`float`): the fraction of predictions equal to their reference.
    correct (`int`), total (`int`): the counts behind it.
Examples:
    >>> metric = evaluate.load("hf_arith/metrics/arithmetic_exact_match")
    >>> metric.compute(predictions=["573<eos><pad>", "5730", " 861"], references=["573", "573", "861"])
    {'exact_match': 0.6666666666666666, 'correct': 2, 'total': 3}
"""

_CITATION = """
@article{mcleish2024transformers,
  title={Transformers Can Do Arithmetic with the Right Embeddings},
  author={McLeish, Sean and Bansal, Arpit and Stein, Alex and Jain, Neel and Kirchenbauer, John and
          Bartoldson, Brian R. and Kailkhura, Bhavya and Bhatele, Abhinav and Geiping, Jonas and
          Schwarzschild, Avi and Goldstein, Tom},
  journal={arXiv preprint arXiv:2405.17399},
  year={2024}
}
"""

EOS_TEXT, NOISE_TEXT = "<eos>", ("<pad>", "<bos>")


def clean_prediction(text: str) -> str:
    """The answer part of a generated text: up to the first `<eos>`, without padding/BOS text
    and surrounding whitespace."""
    text = text.split(EOS_TEXT, 1)[0]
    for noise in NOISE_TEXT:
        text = text.replace(noise, "")
    return text.strip()


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ArithmeticExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        correct = sum(clean_prediction(p) == r for p, r in zip(predictions, references))
        total = len(references)
        return {"exact_match": correct / total if total else 0.0, "correct": int(correct), "total": total}
