"""The `data` section of a recipe: where training examples come from and how `hf-arith data
prepare` builds a text dataset (sources, Dolma-style stages, held-out sets).

Plain dataclasses: `hf_arith.training.recipe` validates a recipe's YAML into them,
`hf_arith.data.text` and `hf_arith.data.stages` read them.

Example:
    >>> spec = DataSpec(kind="text", path="data/olmo", sequence_length=128,
    ...                 prepare=PrepareSpec(sources=[TextSourceSpec("docs", paths=["builtin"])]))
    >>> check_prepare(spec)
    >>> spec.prepare.sources[0].weight
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hf_arith.errors import RecipeError
from hf_arith.tasks import DEFAULT_TASK


@dataclass
class DocumentsSpec:
    """A collection of text documents: local files or a Hub dataset.

    Fields:
        name: names the collection in the manifest, the metrics and the held-out files.
        paths: local files or glob patterns: `.txt`/`.md` (one document per file), `.jsonl`/`.json`
            (optionally `.gz`; one document per record) or `.parquet` (one per row); or `builtin`,
            `builtin:pydoc`, `builtin:docstrings` (text that ships with CPython, see
            `hf_arith.data.corpus`).
        hub: a Hub dataset id instead of `paths` (needs the network), with `hub_config` and `split`.
        text_field: the column or JSON key holding the text.

    Example:
        >>> DocumentsSpec("docs", paths=["corpus/*.jsonl"]).text_field
        'text'
    """

    name: str
    paths: list[str] = field(default_factory=list)
    hub: str | None = None
    hub_config: str | None = None
    split: str = "train"
    text_field: str = "text"


@dataclass
class TextSourceSpec(DocumentsSpec):
    """A training source: documents plus how much of them the mix takes.

    Fields (besides `DocumentsSpec`'s):
        weight: mixing weight, Dolma-style up/down-sampling of the cleaned documents: 2.0 takes every
            document twice, 0.5 a seeded half.
        heldout_fraction: this fraction of the cleaned documents (chosen by a seeded hash of the text)
            never reaches training and becomes the held-out set `<name>`.

    Example:
        >>> TextSourceSpec("pydoc", paths=["builtin:pydoc"], heldout_fraction=0.05).weight
        1.0
    """

    weight: float = 1.0
    heldout_fraction: float = 0.0


@dataclass
class LanguageFilterSpec:
    """Dolma's language filter: keep documents whose most likely language (py3langid, 97
    languages) is one of `languages` with probability at least `min_score`.

    Example:
        >>> LanguageFilterSpec().languages
        ['en']
    """

    languages: list[str] = field(default_factory=lambda: ["en"])
    min_score: float = 0.5


@dataclass
class QualityFilterSpec:
    """Gopher's quality rules (Rae et al. 2021, as Dolma applies them); a document failing any one
    is dropped, and the manifest counts drops per rule (the first failed rule, in field order).

    Fields:
        min_words, max_words: words (whitespace-separated) per document.
        min_mean_word_length, max_mean_word_length: mean characters per word.
        max_symbol_ratio: `#` and ellipses per word.
        max_bullet_lines: fraction of lines starting with a bullet.
        max_ellipsis_lines: fraction of lines ending with an ellipsis.
        min_alpha_words: fraction of words holding at least one letter.
        min_stop_words: distinct English stop words of {the, be, to, of, and, that, have, with} present.
        max_duplicate_lines: fraction of non-empty lines that repeat an earlier line.

    Example:
        >>> QualityFilterSpec(min_words=20).max_words
        100000
    """

    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    max_duplicate_lines: float = 0.3


@dataclass
class PiiSpec:
    """Dolma's PII handling: e-mail addresses, phone numbers and IPv4 addresses are replaced by
    `|||EMAIL_ADDRESS|||`, `|||PHONE_NUMBER|||`, `|||IP_ADDRESS|||`; a document with more than
    `max_per_document` matches is dropped instead (null: never dropped).

    Example:
        >>> PiiSpec().kinds
        ['email', 'phone', 'ip']
    """

    kinds: list[Literal["email", "phone", "ip"]] = field(default_factory=lambda: ["email", "phone", "ip"])
    max_per_document: int | None = 5


@dataclass
class PrepareSpec:
    """What `hf-arith data prepare` does, stage by stage in Dolma's order: language filter, quality
    filter, PII masking, exact deduplication of documents (across all sources, first copy kept),
    held-out split, mixing, then tokenization (EOS after every document) and packing into
    `data.sequence_length`-token instances. Each stage is off when null; each reports kept/dropped
    counts in the manifest.

    Fields:
        sources: the training sources (`TextSourceSpec`), mixed by `weight`.
        heldout: extra held-out sets from their own documents (`DocumentsSpec`); they go through the
            same filters, never into training.
        language, quality, pii: the filter stages (`LanguageFilterSpec`, `QualityFilterSpec`, `PiiSpec`).
        dedup: drop exact duplicate documents.
        decontamination_ngram: a held-out document sharing any word n-gram of this length with the
            training documents is dropped (counted in the manifest and by the `perplexity` evaluator).
        num_proc: processes for the stages and the tokenization (`datasets.map(num_proc=...)`).
        seed: seeds the held-out split, fractional mixing weights and the document shuffle.

    Example:
        >>> PrepareSpec([TextSourceSpec("pydoc", paths=["builtin:pydoc"])]).decontamination_ngram
        13
    """

    sources: list[TextSourceSpec]
    heldout: list[DocumentsSpec] = field(default_factory=list)
    language: LanguageFilterSpec | None = None
    quality: QualityFilterSpec | None = None
    pii: PiiSpec | None = None
    dedup: bool = True
    decontamination_ngram: int = 13
    num_proc: int = 1
    seed: int = 0


@dataclass
class DataSpec:
    """Where training examples come from.

    Fields:
        kind: `"arithmetic"` (problems generated on the fly; example i is a pure function of the
            seed and i) or `"text"` (prepared fixed-length instances, OLMo).
        task: arithmetic task name: `addition`, `multiplication`, `sorting`.
        task_args: keyword arguments of the task (e.g. `max_digits: 20`; addition and
            multiplication also `min_digits` and `length_sampling: uniform | linear`; sorting:
            `max_count`, `max_digits`). The evaluation reads `max_digits` as the training region.
        path: text: the folder written by `hf-arith data prepare` (instances + manifest).
        tokenizer: text: tokenizer folder or Hub id. Arithmetic always uses the built-in
            character tokenizer.
        sequence_length: text: tokens per instance; also the tokens per example that
            `train.batch_warmup` counts.
        bucket_by_length: sort each process's share of a global batch by length before cutting
            micro-batches, so that a micro-batch pads to similar lengths (less wasted compute).
            It changes neither which examples form a step nor the loss.
        prepare: text: how `hf-arith data prepare` builds `path` (`PrepareSpec`); training only
            reads `path`.

    Example:
        >>> DataSpec(task="addition", task_args={"max_digits": 10}).kind
        'arithmetic'
    """

    kind: Literal["arithmetic", "text"] = "arithmetic"
    task: str = DEFAULT_TASK
    task_args: dict = field(default_factory=dict)
    path: str | None = None
    tokenizer: str | None = None
    sequence_length: int | None = None
    bucket_by_length: bool = True
    prepare: PrepareSpec | None = None



def check_prepare(d: DataSpec) -> None:
    """Value checks of `data.prepare` (the types are already checked)."""
    p = d.prepare

    def need(ok: bool, message: str):
        if not ok:
            raise RecipeError(message)

    need(d.kind == "text", f"data.prepare is for data.kind=text, not {d.kind!r}; remove it or set data.kind: text")
    need(d.sequence_length is not None and d.sequence_length >= 2,
         "data.prepare needs data.sequence_length (tokens per instance, at least 2)")
    need(bool(p.sources), "data.prepare.sources is empty; list at least one source (e.g. paths: [builtin])")
    collections = [(f"data.prepare.sources[{i}]", s) for i, s in enumerate(p.sources)]
    collections += [(f"data.prepare.heldout[{i}]", s) for i, s in enumerate(p.heldout)]
    for where, spec in collections:
        need(bool(spec.paths) != bool(spec.hub), f"{where} ({spec.name}): give either paths or hub, not both")
    source_names = [s.name for s in p.sources]
    heldout_names = [s.name for s in p.sources if s.heldout_fraction > 0] + [s.name for s in p.heldout]
    for names, label in ((source_names, "source"), (heldout_names, "held-out set")):
        dupes = sorted({n for n in names if names.count(n) > 1})
        need(not dupes, f"data.prepare: {label} name(s) {dupes} used twice; names must be unique")
    for i, s in enumerate(p.sources):
        need(s.weight > 0, f"data.prepare.sources[{i}].weight={s.weight} must be positive")
        need(0.0 <= s.heldout_fraction < 1.0, f"data.prepare.sources[{i}].heldout_fraction must be in [0, 1)")
    need(p.num_proc >= 1 and p.decontamination_ngram >= 1 and p.seed >= 0,
         "data.prepare.num_proc and decontamination_ngram must be >= 1, seed >= 0")
    if p.language is not None:
        need(bool(p.language.languages) and 0.0 <= p.language.min_score <= 1.0,
             "data.prepare.language needs languages (e.g. [en]) and min_score in [0, 1]")
    if p.pii is not None:
        need(p.pii.max_per_document is None or p.pii.max_per_document >= 0,
             "data.prepare.pii.max_per_document must be >= 0 or null")


__all__ = ["DataSpec", "DocumentsSpec", "LanguageFilterSpec", "PiiSpec", "PrepareSpec", "QualityFilterSpec",
           "TextSourceSpec", "check_prepare"]
