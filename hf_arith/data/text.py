"""OLMo's text data: documents -> cleaned, mixed, tokenized, packed instances -> a run's global order.

`prepare_corpus(data)` runs a recipe's `data.prepare` (see `PrepareSpec`) with `datasets`:

1. read each source (local `.txt`/`.md`, `.jsonl`/`.json`(`.gz`), `.parquet` files, the built-in
   corpus, or a Hub dataset);
2. the stages of `hf_arith.data.stages` in Dolma's order: language filter, quality filter, PII
   masking, exact deduplication across sources, held-out split, mixing;
3. decontaminate the held-out sets against the training documents (word n-grams);
4. tokenize in parallel (`datasets.map(num_proc=...)`), EOS after every document, no BOS;
5. concatenate and cut into `sequence_length`-token instances, remainder dropped, written as flat
   token files (`uint16` when the vocabulary fits, else `uint32`): `train.bin`,
   `heldout/<name>.bin`;
6. `manifest.json`: sources and per-stage counts, tokenizer fingerprint, dtype, sequence length,
   instance counts; and a copy of the tokenizer in `tokenizer/`.

The folder is built under a temporary name and renamed when complete.

Training reads it through `hf_arith.data.instances.instance_source`: example i of a run is instance `order[i]`, where `order` (`GlobalOrder`) concatenates the
permutations `numpy.random.Generator(numpy.random.PCG64(seed + epoch)).permutation(instances)`.
Global batch b is `order[span(b)]` (`BatchSchedule.span`; `perm[b*B:(b+1)*B]` without batch
warmup) on any number of processes. The trainer saves the order with the run
(`data_order.npy`, `data_order.json`), and `hf_arith.training.data_order.inspect_batch` reads it back.

Example (from the repository root, after `hf-arith tokenizer train builtin --vocab-size 4096
--out data/olmo/tokenizer-4k`)::

    from hf_arith.data.instances import GlobalOrder, instance_source
    from hf_arith.training import load_recipe

    manifest = prepare_corpus(load_recipe("recipes/olmo/tiny_cpu.yaml").data)  # writes data/olmo/tiny_cpu
    manifest["train"]["instances"], manifest["dtype"]  # (number of 128-token instances, 'uint16')
    source = instance_source("data/olmo/tiny_cpu", seed=0)
    source.examples(0, 1)[0]["index"] == GlobalOrder(manifest["train"]["instances"], seed=0)[0]  # True
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
import pyarrow.compute as pc

from hf_arith.errors import HfArithError

from . import corpus, stages
from .instances import FORMAT, HELDOUT_DIR, MANIFEST, TOKENIZER_DIR, TRAIN_FILE, tokenizer_fingerprint
from .sources import build_tokenizer
from .specs import DocumentsSpec

logger = logging.getLogger("hf_arith.data")


_TEXT_SUFFIXES = (".txt", ".md")
_JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
_PARQUET_SUFFIXES = (".parquet",)


# ---------------------------------------------------------------------------------------------
# Reading documents


def read_documents(spec, cache_dir: str | os.PathLike | None = None):
    """The documents a `DocumentsSpec` (or `TextSourceSpec`) names, as a `datasets.Dataset` with
    one column, `text`. Local files are read in sorted order; a missing file, an unknown suffix or
    a missing text field is an `HfArithError` saying what to fix.

    Example:
        >>> from hf_arith.training.recipe import DocumentsSpec
        >>> len(read_documents(DocumentsSpec("pydoc", paths=["builtin:pydoc"])))
        79
    """
    if spec.hub:
        try:
            docs = datasets.load_dataset(spec.hub, spec.hub_config, split=spec.split)
        except Exception as err:  # offline, unknown id, gated...: all the same to the user
            raise HfArithError(f"{spec.name}: the Hub dataset {spec.hub!r} could not be loaded ({err}); "
                               f"check the id and the network, or download it and list its files under paths") from None
        return _text_column(docs, spec, spec.hub)
    parts = []
    for pattern in spec.paths:
        if corpus.is_builtin(pattern):
            try:
                rows = corpus.builtin_documents(pattern)
            except ValueError as err:
                raise HfArithError(f"{spec.name}: {err}") from None
            parts.append(datasets.Dataset.from_dict({"text": [r["text"] for r in rows]}))
            continue
        files = sorted(glob.glob(os.path.expanduser(pattern), recursive=True)) if glob.has_magic(pattern) else [pattern]
        files = [f for f in files if not Path(f).is_dir()]
        if not files or not all(Path(f).is_file() for f in files):
            raise HfArithError(f"{spec.name}: no file matches {pattern!r}; give existing files, a glob, or builtin")
        parts.append(_read_files(files, spec, cache_dir))
    if len(parts) == 1:
        return parts[0]
    return datasets.concatenate_datasets(parts)


def _read_files(files: list[str], spec, cache_dir):
    kinds = {_file_kind(f) for f in files}
    if len(kinds) > 1:
        return datasets.concatenate_datasets([_read_files([f], spec, cache_dir) for f in files])
    (kind,) = kinds
    if kind == "text":
        return datasets.Dataset.from_dict({"text": [Path(f).read_text(encoding="utf-8") for f in files]})
    try:
        docs = datasets.load_dataset(kind, data_files=files, split="train",
                                     cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as err:  # malformed JSON, unreadable parquet, ...
        raise HfArithError(f"{spec.name}: could not read {files[0] if len(files) == 1 else f'{len(files)} files'} "
                           f"as {kind} ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                           f"fix the file or its suffix") from None
    return _text_column(docs, spec, files[0])


def _file_kind(path: str) -> str:
    name = path.lower()
    if name.endswith(_TEXT_SUFFIXES):
        return "text"
    if name.endswith(_JSON_SUFFIXES):
        return "json"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise HfArithError(f"{path}: unknown document file type; use .txt/.md (one document per file), "
                       f".jsonl/.json[.gz] or .parquet (one document per record)")


def _text_column(docs, spec, where: str):
    if spec.text_field not in docs.column_names:
        raise HfArithError(f"{spec.name}: {where} has no field {spec.text_field!r} (fields: "
                           f"{', '.join(docs.column_names)}); set text_field")
    docs = docs.select_columns([spec.text_field])
    if spec.text_field != "text":
        docs = docs.rename_column(spec.text_field, "text")
    return docs.filter(lambda texts: [bool(t) for t in texts], input_columns="text", batched=True)


def iter_texts(paths: Sequence[str], text_field: str = "text", batch_size: int = 1000):
    """Batches of document texts from corpus paths (files, globs, `builtin...`), for tokenizer
    training.

    Example:
        >>> sum(len(batch) for batch in iter_texts(["builtin:pydoc"]))
        79
    """
    docs = read_documents(DocumentsSpec("corpus", paths=list(paths), text_field=text_field))
    for start in range(0, len(docs), batch_size):
        yield docs[start:start + batch_size]["text"]


# ---------------------------------------------------------------------------------------------
# Tokens


def token_dtype(vocab_size: int) -> np.dtype:
    """`uint16` when every token id fits (vocabulary up to 65536), else `uint32`.

    Example:
        >>> token_dtype(50304), token_dtype(100278)
        (dtype('uint16'), dtype('uint32'))
    """
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def _encode_batch(batch, tokenizer, eos_id):
    ids = tokenizer(batch["text"], add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
    return {"input_ids": [x + [eos_id] for x in ids]}


def tokenize(docs, tokenizer, num_proc: int = 1):
    """`docs` (column `text`) as a dataset with one column, `input_ids`: each document's tokens,
    without special tokens, followed by EOS (OLMo: no BOS). Runs in `num_proc` processes.

    Example:
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> tokenizer = build_arith_tokenizer()
        >>> tokenized = tokenize(datasets.Dataset.from_dict({"text": ["12+3", "45"]}), tokenizer)
        >>> tokenized[0]["input_ids"], tokenized[1]["input_ids"], tokenizer.eos_token_id
        ([5, 6, 14, 7, 3], [8, 9, 3], 3)
    """
    if tokenizer.eos_token_id is None:
        raise HfArithError(f"tokenizer {tokenizer.name_or_path!r} has no EOS token, which separates documents; "
                           f"use one trained by `hf-arith tokenizer train` or set its eos_token")
    procs = num_proc if num_proc > 1 and len(docs) >= num_proc else None
    # In one process the Rust tokenizer already encodes a batch on every core; forked workers must
    # not use its thread pool (tokenizers would warn and disable it), so it is off while they run.
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    if procs:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        return docs.map(_encode_batch, batched=True, num_proc=procs, remove_columns=docs.column_names,
                        fn_kwargs={"tokenizer": tokenizer, "eos_id": int(tokenizer.eos_token_id)}, desc="tokenize")
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def pack(tokenized, path: str | os.PathLike, sequence_length: int, dtype) -> dict:
    """Concatenates the `input_ids` of `tokenized` in order and writes whole instances of
    `sequence_length` tokens to the flat file `path` (dtype `dtype`); the last partial instance
    is dropped. Returns `{"instances", "tokens", "dropped_tokens", "documents"}`.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "train.bin"
        >>> pack(datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [4, 5]]}), path, 2, np.uint16)
        {'instances': 2, 'tokens': 4, 'dropped_tokens': 1, 'documents': 2}
        >>> np.fromfile(path, dtype=np.uint16).reshape(-1, 2).tolist()
        [[1, 2], [3, 4]]
    """
    dtype = np.dtype(dtype)
    limit = np.iinfo(dtype).max
    total = 0
    with open(path, "wb") as f:
        for table in tokenized.with_format("arrow").iter(batch_size=10_000):
            values = pc.list_flatten(table["input_ids"]).to_numpy()
            if values.size and int(values.max()) > limit:
                raise HfArithError(f"token id {int(values.max())} does not fit {dtype.name}; the tokenizer and the "
                                   f"data type disagree (a bug: token_dtype picks the type from the vocabulary)")
            f.write(values.astype(dtype, copy=False).tobytes())
            total += values.size
    instances = total // sequence_length
    kept = instances * sequence_length
    os.truncate(path, kept * dtype.itemsize)
    return {"instances": instances, "tokens": kept, "dropped_tokens": total - kept, "documents": len(tokenized)}


# ---------------------------------------------------------------------------------------------
# The pipeline


def prepare_corpus(data, tokenizer=None) -> dict:
    """Runs `data.prepare` (a `DataSpec` of kind text) and writes `data.path`; returns the manifest.

    `tokenizer` defaults to `AutoTokenizer.from_pretrained(data.tokenizer)`. An existing folder
    with a manifest is replaced; any other non-empty folder is refused.

    Example:
        >>> import tempfile
        >>> from hf_arith.data.specs import DataSpec, PrepareSpec, TextSourceSpec
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> folder = Path(tempfile.mkdtemp())
        >>> for i in range(20):  # documents the arithmetic tokenizer can read
        ...     _ = (folder / f"{i}.txt").write_text("+".join(str(i * j) for j in range(30)))
        >>> spec = PrepareSpec([TextSourceSpec("sums", paths=[f"{folder}/*.txt"], heldout_fraction=0.2)])
        >>> data = DataSpec(kind="text", path=str(folder / "prepared"), sequence_length=16, prepare=spec)
        >>> manifest = prepare_corpus(data, tokenizer=build_arith_tokenizer())
        >>> manifest["train"]["instances"], manifest["heldout"]["sums"]["instances"], manifest["dtype"]
        (101, 25, 'uint16')
        >>> sorted(p.name for p in (folder / "prepared").iterdir())
        ['heldout', 'manifest.json', 'tokenizer', 'train.bin']
    """
    spec = data.prepare
    if data.kind != "text" or spec is None:
        raise HfArithError("`hf-arith data prepare` needs data.kind: text and a data.prepare section "
                           "(see recipes/olmo/tiny_cpu.yaml)")
    out = Path(data.path)
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise HfArithError(f"{out} exists, is not empty and holds no {MANIFEST}; "
                           f"choose another data.path or empty it")
    if tokenizer is None:
        tokenizer = build_tokenizer(data)
    dtype, L, started = token_dtype(len(tokenizer)), int(data.sequence_length), time.perf_counter()
    with _building(out) as tmp:
        train_docs, heldout, reports, heldout_reports = collect_documents(spec, cache_dir=tmp / ".cache")
        index = stages.ngram_index(train_docs["text"], spec.decontamination_ngram) if heldout else set()
        train = pack(tokenize(train_docs, tokenizer, spec.num_proc), tmp / TRAIN_FILE, L, dtype) | {"file": TRAIN_FILE}
        if train["instances"] == 0:
            raise HfArithError(f"the training documents make {train['dropped_tokens']} tokens, less than one instance "
                               f"of data.sequence_length={L}; add documents or lower the sequence length")
        for name, docs in heldout.items():
            report, file = heldout_reports[name], f"{HELDOUT_DIR}/{name}.bin"
            docs, report["decontamination"] = stages.decontaminate(docs, index, spec.decontamination_ngram)
            report.update(pack(tokenize(docs, tokenizer, spec.num_proc), tmp / file, L, dtype), file=file)
            if report["instances"] == 0:
                logger.warning(f"held-out set {name!r} has no whole instance of {L} tokens; the perplexity "
                               f"evaluator will skip it")
        tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        manifest = {
            "format": FORMAT,
            "sequence_length": L,
            "dtype": dtype.name,
            "tokenizer": {"source": str(data.tokenizer), "sha256": tokenizer_fingerprint(tokenizer),
                          "vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
                          "pad_token_id": tokenizer.pad_token_id, "copy": TOKENIZER_DIR},
            "train": train,
            "sources": reports,
            "heldout": heldout_reports,
            "prepare": _plain(spec),
            "seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info(f"wrote {out}: {train['instances']} instances of {L} tokens ({dtype.name}) from "
                f"{train['documents']} documents; held out: " +
                (", ".join(f"{n} {r['instances']}" for n, r in heldout_reports.items()) or "none"))
    return manifest


def collect_documents(spec, cache_dir=None) -> tuple:
    """The documents a `PrepareSpec` selects, before tokenization: each source read, cleaned
    (language, quality, PII), deduplicated across sources, split into training and held-out
    documents and mixed by weight; then the extra held-out sets, cleaned the same way.

    Returns `(training documents, {held-out name: documents}, per-source counts, per-held-out-set
    counts)`; the training documents are shuffled (seeded) so that the copies of an up-sampled
    document and the sources spread over the instances.

    Example:
        >>> from hf_arith.data.specs import PrepareSpec, TextSourceSpec
        >>> spec = PrepareSpec([TextSourceSpec("pydoc", paths=["builtin:pydoc"], heldout_fraction=0.1)])
        >>> train, heldout, reports, _ = collect_documents(spec)
        >>> sorted(heldout), sorted(reports["pydoc"])
        (['pydoc'], ['corpus', 'dedup', 'documents', 'heldout', 'mixing', 'paths'])
        >>> len(train) + len(heldout["pydoc"]) == reports["pydoc"]["dedup"]["kept"]  # every kept document, once
        True
    """
    def clean(docs, report):
        for name, stage_spec, stage in (("language", spec.language, stages.filter_language),
                                        ("quality", spec.quality, stages.filter_quality),
                                        ("pii", spec.pii, stages.mask_pii)):
            if stage_spec is not None:
                docs, report[name] = stage(docs, stage_spec, spec.num_proc)
        return docs

    reports, cleaned = {}, []
    for source in spec.sources:
        docs = read_documents(source, cache_dir)
        reports[source.name] = _describe_source(source) | {"documents": len(docs)}
        cleaned.append(clean(docs, reports[source.name]))
        logger.info(f"{source.name}: {len(docs)} documents read, {len(cleaned[-1])} after filters")
    if spec.dedup:
        cleaned, dedup_counts = stages.deduplicate(cleaned, spec.num_proc)
        for source, counts in zip(spec.sources, dedup_counts):
            reports[source.name]["dedup"] = counts

    train_parts, heldout = [], {}
    for source, docs in zip(spec.sources, cleaned):
        report = reports[source.name]
        if source.heldout_fraction > 0:
            docs, heldout[source.name] = stages.split_heldout(docs, source.heldout_fraction, spec.seed)
            report["heldout"] = {"fraction": source.heldout_fraction, "documents": len(heldout[source.name])}
        mixed, report["mixing"] = stages.mix(docs, source.weight, spec.seed)
        train_parts.append(mixed)
    heldout_reports = {name: {"source": name} for name in heldout}
    for extra in spec.heldout:
        docs = read_documents(extra, cache_dir)
        heldout_reports[extra.name] = _describe_source(extra) | {"documents": len(docs)}
        heldout[extra.name] = clean(docs, heldout_reports[extra.name])

    train = datasets.concatenate_datasets(train_parts) if len(train_parts) > 1 else train_parts[0]
    if len(train) == 0:
        raise HfArithError("no training document is left after the filters; loosen data.prepare's stages "
                           "or check the sources")
    train = train.select(np.random.Generator(np.random.PCG64(spec.seed)).permutation(len(train)))
    return train, heldout, reports, heldout_reports


@contextlib.contextmanager
def _building(out: Path):
    """A temporary folder next to `out` that replaces `out` when the block completes, and is
    removed when it fails: a half-written dataset is never readable."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / HELDOUT_DIR).mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _describe_source(spec) -> dict:
    described = {"hub": spec.hub, "split": spec.split} if spec.hub else {"paths": list(spec.paths)}
    builtin = [p for p in spec.paths if corpus.is_builtin(p)]
    if builtin:
        described["corpus"] = "; ".join(corpus.describe(p) for p in builtin)
    return described


def _plain(spec) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


__all__ = ["collect_documents", "iter_texts", "pack", "prepare_corpus", "read_documents", "token_dtype", "tokenize"]
