"""The cleaning stages of the text pipeline, in Dolma's order, on `datasets.Dataset`s of documents.

Each stage takes a dataset with a `text` column and returns the dataset it keeps plus a dict of
counts for the manifest (`kept`, `dropped`, and why). The per-document work runs in
`datasets.map(num_proc=...)`; the rest is plain Python.

- `filter_language`: py3langid's most likely language and its probability (Dolma uses fastText
  or CLD2; py3langid is the pure-Python model that ships inside its wheel, so nothing is downloaded).
- `filter_quality`: Gopher's rules (Rae et al. 2021), the first failed rule is counted.
- `mask_pii`: Dolma's regex PII masking (e-mail, phone, IPv4) and its "too much PII" drop.
- `deduplicate`: exact document duplicates across sources, first copy kept.
- `split_heldout`, `mix`: a seeded hash split and Dolma-style up/down-sampling.
- `ngram_index` / `decontaminate`: held-out documents that share a word n-gram with training are
  dropped.

Example:
    >>> import datasets
    >>> from hf_arith.training.recipe import QualityFilterSpec
    >>> docs = datasets.Dataset.from_dict({"text": ["too short", "the cat and the hat " * 20]})
    >>> kept, counts = filter_quality(docs, QualityFilterSpec(min_words=10))
    >>> len(kept), counts["dropped_by"]
    (1, {'min_words': 1})
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import datasets
import numpy as np

# ---------------------------------------------------------------------------------------------
# Language


_IDENTIFIER = None


def _identifier():
    """py3langid's model, loaded once per process (0.5 s)."""
    global _IDENTIFIER
    if _IDENTIFIER is None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _IDENTIFIER


def detect_language(text: str) -> tuple[str, float]:
    """`(language code, probability)` of the most likely of py3langid's 97 languages.

    Example:
        >>> detect_language("Der schnelle braune Fuchs springt über den faulen Hund.")[0]
        'de'
    """
    language, score = _identifier().classify(text)
    return str(language), float(score)


def _language_batch(batch, languages, min_score):
    keep = []
    for text in batch["text"]:
        language, score = detect_language(text)
        keep.append(language in languages and score >= min_score)
    return {"_keep": keep}


def filter_language(docs: datasets.Dataset, spec, num_proc: int = 1) -> tuple[datasets.Dataset, dict]:
    """Keeps documents whose most likely language is in `spec.languages` with probability at
    least `spec.min_score` (`LanguageFilterSpec`).

    Example:
        >>> from hf_arith.training.recipe import LanguageFilterSpec
        >>> docs = datasets.Dataset.from_dict({"text": ["The cat sat on the mat.", "Le chat est sur le tapis."]})
        >>> filter_language(docs, LanguageFilterSpec(["en"]))[1]
        {'kept': 1, 'dropped': 1}
    """
    marked = docs.map(_language_batch, batched=True, num_proc=_procs(docs, num_proc),
                      fn_kwargs={"languages": set(spec.languages), "min_score": spec.min_score},
                      desc="language filter")
    return _keep_marked(marked)


# ---------------------------------------------------------------------------------------------
# Quality


STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_BULLETS = ("*", "-", "•", "‣", "◦", "⁃", "●")
_ELLIPSES = ("...", "…")


def quality_failure(text: str, spec) -> str | None:
    """The first Gopher rule of `spec` (a `QualityFilterSpec`) that `text` fails, or None.

    Example:
        >>> from hf_arith.training.recipe import QualityFilterSpec
        >>> quality_failure("# # # # " * 20, QualityFilterSpec(min_words=5))
        'min_mean_word_length'
    """
    words = text.split()
    n = len(words)
    if n < spec.min_words:
        return "min_words"
    if n > spec.max_words:
        return "max_words"
    mean_length = sum(len(w) for w in words) / n
    if mean_length < spec.min_mean_word_length:
        return "min_mean_word_length"
    if mean_length > spec.max_mean_word_length:
        return "max_mean_word_length"
    symbols = text.count("#") + sum(text.count(e) for e in _ELLIPSES)
    if symbols / n > spec.max_symbol_ratio:
        return "max_symbol_ratio"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        if sum(line.startswith(_BULLETS) for line in lines) / len(lines) > spec.max_bullet_lines:
            return "max_bullet_lines"
        if sum(line.endswith(_ELLIPSES) for line in lines) / len(lines) > spec.max_ellipsis_lines:
            return "max_ellipsis_lines"
    if sum(any(c.isalpha() for c in w) for w in words) / n < spec.min_alpha_words:
        return "min_alpha_words"
    if len(STOP_WORDS.intersection(w.lower() for w in words)) < spec.min_stop_words:
        return "min_stop_words"
    if lines and (len(lines) - len(set(lines))) / len(lines) > spec.max_duplicate_lines:
        return "max_duplicate_lines"
    return None


def _quality_batch(batch, spec):
    return {"_failed": [quality_failure(text, spec) or "" for text in batch["text"]]}


def filter_quality(docs: datasets.Dataset, spec, num_proc: int = 1) -> tuple[datasets.Dataset, dict]:
    """Drops documents failing any Gopher rule of `spec` (a `QualityFilterSpec`); the counts say
    how many each rule dropped.

    Example:
        >>> from hf_arith.training.recipe import QualityFilterSpec
        >>> filter_quality(datasets.Dataset.from_dict({"text": ["a b c"]}), QualityFilterSpec())[1]
        {'kept': 0, 'dropped': 1, 'dropped_by': {'min_words': 1}}
    """
    marked = docs.map(_quality_batch, batched=True, num_proc=_procs(docs, num_proc), fn_kwargs={"spec": spec},
                      desc="quality filter")
    failed = Counter(marked["_failed"])
    kept = marked.filter(lambda reasons: [r == "" for r in reasons], input_columns="_failed", batched=True)
    dropped_by = {rule: count for rule, count in sorted(failed.items()) if rule}
    return kept.remove_columns("_failed"), {"kept": len(kept), "dropped": len(docs) - len(kept),
                                            "dropped_by": dropped_by}


# ---------------------------------------------------------------------------------------------
# PII


PII_PATTERNS = {
    "email": re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"),
    # North-American numbers, as Dolma's rule: (555) 123-4567, 555-123-4567, +1 555 123 4567.
    "phone": re.compile(r"(?<![\w+])(?:\+?1[-. ]?)?(?:\(\d{3}\)|\d{3})[-. ]?\d{3}[-. ]?\d{4}(?!\w)"),
    "ip": re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                     r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.])"),
}
PII_MASKS = {"email": "|||EMAIL_ADDRESS|||", "phone": "|||PHONE_NUMBER|||", "ip": "|||IP_ADDRESS|||"}


def mask_pii_text(text: str, kinds=("email", "phone", "ip")) -> tuple[str, dict[str, int]]:
    """`text` with each PII match of `kinds` replaced by its mask, and the matches per kind.

    Example:
        >>> mask_pii_text("write to ada@example.org from 10.0.0.1")
        ('write to |||EMAIL_ADDRESS||| from |||IP_ADDRESS|||', {'email': 1, 'phone': 0, 'ip': 1})
    """
    counts = {}
    for kind in kinds:
        text, counts[kind] = PII_PATTERNS[kind].subn(PII_MASKS[kind], text)
    return text, counts


def _pii_batch(batch, kinds, limit):
    texts, found, keep = [], {k: [] for k in kinds}, []
    for text in batch["text"]:
        masked, counts = mask_pii_text(text, kinds)
        texts.append(masked)
        for kind in kinds:
            found[kind].append(counts[kind])
        keep.append(limit is None or sum(counts.values()) <= limit)
    return {"text": texts, "_keep": keep, **{f"_pii_{k}": v for k, v in found.items()}}


def mask_pii(docs: datasets.Dataset, spec, num_proc: int = 1) -> tuple[datasets.Dataset, dict]:
    """Masks PII of `spec.kinds` (a `PiiSpec`); drops documents with more than
    `spec.max_per_document` matches. Counts: kept, dropped, documents masked, matches per kind
    (in the documents kept).

    Example:
        >>> from hf_arith.training.recipe import PiiSpec
        >>> docs = datasets.Dataset.from_dict({"text": ["mail a@b.com", "plain"]})
        >>> kept, counts = mask_pii(docs, PiiSpec())
        >>> list(kept["text"]), counts["masked"]
        (['mail |||EMAIL_ADDRESS|||', 'plain'], {'email': 1, 'phone': 0, 'ip': 0})
    """
    kinds = list(spec.kinds)
    marked = docs.map(_pii_batch, batched=True, num_proc=_procs(docs, num_proc),
                      fn_kwargs={"kinds": kinds, "limit": spec.max_per_document}, desc="PII masking")
    kept = marked.filter(lambda keep: keep, input_columns="_keep", batched=True)
    columns = {kind: np.asarray(kept[f"_pii_{kind}"], dtype=np.int64) for kind in kinds}
    touched = int(np.any(np.stack(list(columns.values())) > 0, axis=0).sum()) if len(kept) and kinds else 0
    counts = {"kept": len(kept), "dropped": len(docs) - len(kept), "documents_masked": touched,
              "masked": {kind: int(c.sum()) for kind, c in columns.items()}}
    return kept.remove_columns(["_keep"] + [f"_pii_{k}" for k in kinds]), counts


# ---------------------------------------------------------------------------------------------
# Deduplication, held-out split, mixing


def _digest_batch(batch):
    return {"_digest": [hashlib.sha1(t.encode("utf-8")).hexdigest() for t in batch["text"]]}


def deduplicate(collections: list[datasets.Dataset], num_proc: int = 1) -> tuple[list[datasets.Dataset], list[dict]]:
    """Drops exact duplicate documents across all `collections` (in order: the first copy, in the
    first collection holding it, is kept). Returns the collections and their counts.

    Example:
        >>> a = datasets.Dataset.from_dict({"text": ["x", "y", "x"]})
        >>> b = datasets.Dataset.from_dict({"text": ["y", "z"]})
        >>> [list(d["text"]) for d in deduplicate([a, b])[0]]
        [['x', 'y'], ['z']]
    """
    seen, kept, counts = set(), [], []
    for docs in collections:
        digests = docs.map(_digest_batch, batched=True, num_proc=_procs(docs, num_proc), desc="dedup")["_digest"]
        keep = []
        for i, digest in enumerate(digests):
            if digest not in seen:
                seen.add(digest)
                keep.append(i)
        kept.append(docs.select(keep))
        counts.append({"kept": len(keep), "dropped": len(docs) - len(keep)})
    return kept, counts


def _unit_hash(text: str, seed: int) -> float:
    """A number in [0, 1) that depends only on (seed, text)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_heldout(docs: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """`(train, heldout)`: a document is held out when a seeded hash of its text falls below
    `fraction`, so the split does not depend on order or on the other documents.

    Example:
        >>> docs = datasets.Dataset.from_dict({"text": [f"document {i}" for i in range(1000)]})
        >>> train, heldout = split_heldout(docs, 0.1, seed=0)
        >>> len(train) + len(heldout), 50 < len(heldout) < 150
        (1000, True)
    """
    held = [_unit_hash(text, seed) < fraction for text in docs["text"]]
    return (docs.select([i for i, h in enumerate(held) if not h]), docs.select([i for i, h in enumerate(held) if h]))


def mix(docs: datasets.Dataset, weight: float, seed: int) -> tuple[datasets.Dataset, dict]:
    """Dolma-style sampling: every document `floor(weight)` times, plus a seeded
    `weight - floor(weight)` fraction of them once more.

    Example:
        >>> docs = datasets.Dataset.from_dict({"text": [str(i) for i in range(10)]})
        >>> [mix(docs, w, seed=0)[1]["documents"] for w in (1.0, 2.0, 0.5, 1.5)]
        [10, 20, 5, 15]
    """
    whole, part = int(weight), weight - int(weight)
    indices = list(range(len(docs))) * whole
    if part > 0:
        rng = np.random.Generator(np.random.PCG64(seed))
        indices += sorted(rng.choice(len(docs), size=int(round(part * len(docs))), replace=False).tolist())
    mixed = docs.select(indices) if indices != list(range(len(docs))) else docs
    return mixed, {"weight": weight, "unique_documents": len(docs), "documents": len(mixed)}


# ---------------------------------------------------------------------------------------------
# Decontamination


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased words (runs of letters, digits, underscores): what decontamination compares.

    Example:
        >>> words("Hello, World_1!")
        ['hello', 'world_1']
    """
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set:
    """The word n-grams of `text`; a text shorter than `n` words is one n-gram of all its words.

    Example:
        >>> sorted(ngrams("a b c", 2)), ngrams("a b", 5)
        ([('a', 'b'), ('b', 'c')], {('a', 'b')})
    """
    w = words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def ngram_index(texts, n: int) -> set[int]:
    """Hashes of every word n-gram of `texts`, and of every whole text shorter than `n` words.

    Python's `hash` of a tuple of strings: stable within one process, which is the only place
    the index lives.

    Example:
        >>> hash(("a", "b")) in ngram_index(["a b c"], 2)
        True
    """
    index = set()
    for text in texts:
        index.update(hash(gram) for gram in ngrams(text, n))
    return index


def decontaminate(docs: datasets.Dataset, index: set[int], n: int) -> tuple[datasets.Dataset, dict]:
    """Drops the documents of `docs` that share any word n-gram with the training index
    (`ngram_index`); a document shorter than `n` words is dropped when the training data holds a
    document of exactly its words.

    Example:
        >>> train = ngram_index(["the quick brown fox jumps"], 3)
        >>> held = datasets.Dataset.from_dict({"text": ["a quick brown fox ran", "a slow red fox"]})
        >>> kept, counts = decontaminate(held, train, 3)
        >>> list(kept["text"]), counts
        (['a slow red fox'], {'ngram': 3, 'kept': 1, 'dropped': 1})
    """
    keep = [i for i, text in enumerate(docs["text"]) if not any(hash(g) in index for g in ngrams(text, n))]
    kept = docs.select(keep)
    return kept, {"ngram": n, "kept": len(kept), "dropped": len(docs) - len(kept)}


# ---------------------------------------------------------------------------------------------


def _procs(docs: datasets.Dataset, num_proc: int) -> int | None:
    """`num_proc` for `datasets.map`: None (in-process) for 1 or for fewer documents than processes."""
    return num_proc if num_proc > 1 and len(docs) >= num_proc else None


def _keep_marked(marked: datasets.Dataset) -> tuple[datasets.Dataset, dict]:
    kept = marked.filter(lambda keep: keep, input_columns="_keep", batched=True).remove_columns("_keep")
    return kept, {"kept": len(kept), "dropped": len(marked) - len(kept)}


__all__ = [
    "PII_MASKS",
    "STOP_WORDS",
    "decontaminate",
    "deduplicate",
    "detect_language",
    "filter_language",
    "filter_quality",
    "mask_pii",
    "mask_pii_text",
    "mix",
    "ngram_index",
    "ngrams",
    "quality_failure",
    "split_heldout",
    "words",
]
