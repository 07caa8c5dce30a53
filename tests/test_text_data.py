"""OLMo's text data pipeline: tokenizer training, cleaning stages, packing, manifest, global order
and the errors bad data gives. References: token ids from the tokenizer applied document by
document, `numpy.random.PCG64` permutations and byte counts computed here, constructed documents
whose stage outcome is known by construction.

The helpers at the top (`make_tokenizer`, `write_corpus`, `text_recipe`) are shared with
`test_olmo_training.py` and `test_olmo_eval.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from hf_arith.cli import main
from hf_arith.data import stages
from hf_arith.data.corpus import builtin_documents, describe
from hf_arith.data.instances import GlobalOrder, heldout_instances, instance_source, read_manifest, tokenizer_fingerprint
from hf_arith.data.text import iter_texts, pack, prepare_corpus, read_documents, token_dtype
from hf_arith.errors import HfArithError, RecipeError
from hf_arith.tokenization import train_bpe_tokenizer
from hf_arith.training.recipe import (
    DocumentsSpec,
    LanguageFilterSpec,
    PiiSpec,
    QualityFilterSpec,
    load_recipe,
    recipe_from_dict,
)

datasets.disable_progress_bars()

WORDS = ("value function class module return loop break continue import object list string number "
         "method argument result error file line name type data table order query index").split()


def english(i: int, words: int = 50) -> str:
    """A distinct English-looking document (py3langid: English) with stop words and varied words."""
    rng = np.random.Generator(np.random.PCG64(i))
    body = " ".join(rng.choice(WORDS, size=words))
    return f"Document {i} explains how the program works: {body}, and that is all there is to the text."


def make_tokenizer(path: Path, vocab_size: int = 400):
    """A small byte-level BPE trained on constructed English text."""
    corpus = path.parent / f"{path.name}_corpus.txt"
    corpus.write_text("\n".join(english(i) for i in range(200)))
    train_bpe_tokenizer(iter_texts([str(corpus)]), vocab_size, out=path)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)  # as a recipe's data.tokenizer loads it


def write_corpus(folder: Path, count: int = 40, offset: int = 0) -> list[str]:
    """`count` documents as one JSONL file; returns their texts in file order."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = [english(offset + i) for i in range(count)]
    with open(folder / "docs.jsonl", "w") as f:
        for text in texts:
            f.write(json.dumps({"text": text, "meta": "x"}) + "\n")
    return texts


def text_recipe(data_path, tokenizer_path, sources, sequence_length: int = 16, **prepare_kwargs) -> dict:
    """A plain recipe mapping for kind: text with a tiny Llama."""
    return {
        "seed": 0,
        "model": {"arch": "llama", "config": {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                                              "intermediate_size": 32, "max_position_embeddings": 64}},
        "data": {"kind": "text", "path": str(data_path), "tokenizer": str(tokenizer_path),
                 "sequence_length": sequence_length,
                 "prepare": {"sources": sources, "dedup": False, **prepare_kwargs}},
        "train": {"max_steps": 3, "micro_batch_size": 4, "global_batch_size": 8, "lr": 1e-3, "report_to": [],
                  "progress_bar": False, "log_every": 1},
    }


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "bpe")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tokenizer):
    """A prepared folder from one JSONL source, no stages: (recipe, texts in file order)."""
    root = tmp_path_factory.mktemp("prepared")
    texts = write_corpus(root / "corpus")
    recipe = recipe_from_dict(text_recipe(root / "data", tokenizer.name_or_path,
                                          [{"name": "web", "paths": [str(root / "corpus" / "docs.jsonl")]}]))
    prepare_corpus(recipe.data)
    return recipe, texts


# ---------------------------------------------------------------------------------------------
# Tokenizer


def test_bpe_tokenizer_loads_with_auto_and_adds_no_special_tokens(tokenizer):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    loaded = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    assert isinstance(loaded, PreTrainedTokenizerFast)
    assert (loaded.eos_token, loaded.eos_token_id, loaded.pad_token, loaded.pad_token_id, loaded.bos_token) == \
        ("<|endoftext|>", 0, "<|padding|>", 1, None)
    assert len(loaded) == 400
    ids = loaded("the function returns")["input_ids"]
    assert loaded.eos_token_id not in ids and loaded.pad_token_id not in ids  # generation prompts stay clean
    assert loaded.decode(ids) == "the function returns"
    text = "Unicode ✓ and bytes \x00 survive"
    assert loaded.decode(loaded(text)["input_ids"]) == text  # byte-level: no unknown token


def test_tokenizer_train_command_reads_jsonl_parquet_and_txt(tmp_path, capsys):
    texts = write_corpus(tmp_path / "c", count=30)
    datasets.Dataset.from_dict({"body": texts[:10]}).to_parquet(tmp_path / "c" / "more.parquet")
    (tmp_path / "c" / "note.txt").write_text(texts[0])
    assert main(["tokenizer", "train", str(tmp_path / "c" / "docs.jsonl"), str(tmp_path / "c" / "*.txt"),
                 "--vocab-size", "300", "--out", str(tmp_path / "tok")]) == 0
    assert "300 tokens" in capsys.readouterr().out
    assert main(["tokenizer", "train", str(tmp_path / "c" / "more.parquet"), "--text-field", "body",
                 "--vocab-size", "300", "--out", str(tmp_path / "tok2")]) == 0
    assert main(["tokenizer", "train", str(tmp_path / "missing.jsonl"), "--vocab-size", "300",
                 "--out", str(tmp_path / "tok3")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no file matches" in err


def test_builtin_corpus_is_cpython_text():
    from pydoc_data.topics import topics

    docs = builtin_documents("builtin:pydoc")
    assert [d["text"] for d in docs] == [topics[k].strip() for k in sorted(topics)]
    assert 400_000 < sum(len(d["text"]) for d in docs) < 600_000
    docstrings = builtin_documents("builtin:docstrings")
    json_doc = next(d["text"] for d in docstrings if d["id"] == "docstrings/json")
    import json as json_module

    assert json_doc.startswith(json_module.__doc__.strip()[:40])
    assert "CPython" in describe("builtin") or "PyPy" in describe("builtin")
    with pytest.raises(ValueError, match="builtin:pydoc"):
        builtin_documents("builtin:wiki")


# ---------------------------------------------------------------------------------------------
# Stages, each on documents whose fate is known by construction


def test_language_filter_keeps_the_listed_languages():
    docs = datasets.Dataset.from_dict({"text": [
        "The function returns the value of the expression that was given to it.",
        "Die Funktion gibt den Wert des Ausdrucks zurück, der ihr übergeben wurde.",
        "La fonction renvoie la valeur de l'expression qui lui a été donnée.",
    ]})
    kept, counts = stages.filter_language(docs, LanguageFilterSpec(["en"]))
    assert kept["text"] == docs["text"][:1] and counts == {"kept": 1, "dropped": 2}
    kept, _ = stages.filter_language(docs, LanguageFilterSpec(["de", "fr"]))
    assert kept["text"] == docs["text"][1:]


@pytest.mark.parametrize("text, rule", [
    ("the and of " * 5, "min_words"),
    ("a b c d e f g h i j " * 10 + "the and", "min_mean_word_length"),
    ("the and of " + "incomprehensibilities " * 60, "max_mean_word_length"),
    ("the and of heading # " * 30, "max_symbol_ratio"),
    ("\n".join(["- the element belongs within these collections"] * 30), "max_bullet_lines"),
    ("\n".join([f"the line number {i} goes on and on with many words and then trails off ..." for i in range(9)]),
     "max_ellipsis_lines"),
    ("the and of " + "1234 5678 9012 " * 30, "min_alpha_words"),
    ("cat dog bird fish " * 20, "min_stop_words"),
    ("\n".join(["the same line of text and more"] * 20), "max_duplicate_lines"),
    (english(1), None),
], ids=lambda value: value if isinstance(value, str) and len(value) < 30 else "")
def test_quality_rules(text, rule):
    assert stages.quality_failure(text, QualityFilterSpec(min_words=30)) == rule


def test_quality_filter_counts_drops_per_rule():
    docs = datasets.Dataset.from_dict({"text": [english(1), "too short", "cat dog bird fish " * 20, english(2)]})
    kept, counts = stages.filter_quality(docs, QualityFilterSpec(min_words=30))
    assert kept["text"] == [english(1), english(2)]
    assert counts == {"kept": 2, "dropped": 2, "dropped_by": {"min_stop_words": 1, "min_words": 1}}


def test_pii_masking_and_dropping():
    docs = datasets.Dataset.from_dict({"text": [
        "Mail ada.lovelace@example.org or call (555) 123-4567 from 192.168.0.1 today.",
        "Nothing to hide in version 3.11.7 or in the year 2024.",
        "a@x.io b@x.io c@x.io d@x.io",
    ]})
    kept, counts = stages.mask_pii(docs, PiiSpec(max_per_document=3))
    assert kept["text"] == [
        "Mail |||EMAIL_ADDRESS||| or call |||PHONE_NUMBER||| from |||IP_ADDRESS||| today.",
        "Nothing to hide in version 3.11.7 or in the year 2024.",
    ]
    assert counts == {"kept": 2, "dropped": 1, "documents_masked": 1, "masked": {"email": 1, "phone": 1, "ip": 1}}
    kept, counts = stages.mask_pii(docs, PiiSpec(kinds=["ip"], max_per_document=None))
    assert "ada.lovelace@example.org" in kept["text"][0] and counts["dropped"] == 0


def test_exact_dedup_across_sources_keeps_the_first_copy():
    a = datasets.Dataset.from_dict({"text": ["one", "two", "one", "three"]})
    b = datasets.Dataset.from_dict({"text": ["two", "four", "four"]})
    (ka, kb), counts = stages.deduplicate([a, b])
    assert ka["text"] == ["one", "two", "three"] and kb["text"] == ["four"]
    assert counts == [{"kept": 3, "dropped": 1}, {"kept": 1, "dropped": 2}]


def test_mixing_weights_and_heldout_split():
    docs = datasets.Dataset.from_dict({"text": [f"doc {i}" for i in range(200)]})
    mixed, counts = stages.mix(docs, 1.5, seed=3)
    assert counts == {"weight": 1.5, "unique_documents": 200, "documents": 300}
    assert sorted(set(mixed["text"])) == sorted(docs["text"])
    assert mix_counts(mixed["text"]) == {1: 100, 2: 100}
    train, held = stages.split_heldout(docs, 0.2, seed=1)
    assert len(train) + len(held) == 200 and not set(train["text"]) & set(held["text"]) and 20 <= len(held) <= 60
    shuffled = docs.select(np.random.Generator(np.random.PCG64(0)).permutation(200))
    assert sorted(stages.split_heldout(shuffled, 0.2, seed=1)[1]["text"]) == sorted(held["text"])  # order-free


def mix_counts(texts):
    from collections import Counter

    return dict(Counter(Counter(texts).values()))


def test_decontamination_drops_heldout_documents_sharing_an_ngram():
    shared = "one two three four five six seven eight nine ten eleven twelve thirteen"
    train = [f"intro words {shared} closing words", "short training doc"]
    held = datasets.Dataset.from_dict({"text": [
        f"other start {shared} other end",                          # shares a 13-gram: dropped
        "other start " + " ".join(shared.split()[:12]) + " other",  # shares 12 words only: kept
        "Short, training DOC!",                                     # same words as a short training doc: dropped
        "nothing in common at all",                                 # kept
    ]})
    kept, counts = stages.decontaminate(held, stages.ngram_index(train, 13), 13)
    assert kept["text"] == [held["text"][1], held["text"][3]]
    assert counts == {"ngram": 13, "kept": 2, "dropped": 2}


# ---------------------------------------------------------------------------------------------
# Tokenize + pack + manifest


def test_instances_are_the_documents_tokens_each_followed_by_eos(prepared, tokenizer):
    recipe, texts = prepared
    L = recipe.data.sequence_length
    order = np.random.Generator(np.random.PCG64(recipe.data.prepare.seed)).permutation(len(texts))
    stream = []
    for i in order:  # the reference: each document encoded alone, EOS appended, in the shuffled order
        stream += tokenizer(texts[i], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    whole = len(stream) // L
    data = np.fromfile(Path(recipe.data.path) / "train.bin", dtype=np.uint16)
    assert data.tolist() == stream[:whole * L]  # the remainder is dropped
    assert 0 < len(stream) - whole * L < L or len(stream) % L == 0
    manifest = read_manifest(recipe.data.path)
    assert manifest["train"] == {"instances": whole, "tokens": whole * L, "dropped_tokens": len(stream) - whole * L,
                                 "documents": len(texts), "file": "train.bin"}
    assert (data == tokenizer.eos_token_id).sum() == stream[:whole * L].count(tokenizer.eos_token_id)


def test_manifest_records_sources_tokenizer_dtype_and_length(prepared, tokenizer):
    recipe, texts = prepared
    manifest = read_manifest(recipe.data.path)
    assert manifest["sequence_length"] == 16 and manifest["dtype"] == "uint16"
    assert manifest["tokenizer"]["vocab_size"] == 400 and manifest["tokenizer"]["eos_token_id"] == 0
    assert manifest["tokenizer"]["sha256"] == tokenizer_fingerprint(tokenizer)
    assert manifest["sources"]["web"]["documents"] == len(texts)
    n = len(texts)
    assert manifest["sources"]["web"]["mixing"] == {"weight": 1.0, "unique_documents": n, "documents": n}
    assert manifest["heldout"] == {}
    assert manifest["prepare"]["sources"][0]["name"] == "web"
    from transformers import AutoTokenizer

    copy = AutoTokenizer.from_pretrained(Path(recipe.data.path) / manifest["tokenizer"]["copy"])
    assert tokenizer_fingerprint(copy) == manifest["tokenizer"]["sha256"]


def test_every_stage_reports_counts_and_heldout_sets_are_decontaminated(tmp_path, tokenizer):
    texts = write_corpus(tmp_path / "a", count=30)
    german = "Die Funktion gibt den Wert des Ausdrucks zurück, der ihr übergeben wurde, und das ist alles."
    extra = [texts[0], german, "Contact me at someone@example.com: " + english(500),
             "This one is far too short for the rules."]
    (tmp_path / "b").mkdir()
    for i, text in enumerate(extra):
        (tmp_path / "b" / f"{i}.txt").write_text(text)
    shared = " ".join(texts[3].split()[5:20])  # 15 words of a training document
    heldout_docs = [f"Held out: {shared} and more words to make it long enough for the rules here.", english(900)]
    (tmp_path / "h").mkdir()
    with open(tmp_path / "h" / "eval.jsonl", "w") as f:
        for text in heldout_docs:
            f.write(json.dumps({"content": text}) + "\n")
    raw = text_recipe(tmp_path / "data", tokenizer.name_or_path, [
        {"name": "a", "paths": [str(tmp_path / "a" / "*.jsonl")], "weight": 2.0},
        {"name": "b", "paths": [str(tmp_path / "b" / "*.txt")], "weight": 0.5},
    ], heldout=[{"name": "eval", "paths": [str(tmp_path / "h" / "eval.jsonl")], "text_field": "content"}],
        language={}, quality={"min_words": 10}, pii={}, num_proc=2)
    raw["data"]["prepare"]["dedup"] = True
    manifest = prepare_corpus(recipe_from_dict(raw).data)
    a, b = manifest["sources"]["a"], manifest["sources"]["b"]
    assert a["documents"] == 30 and a["language"]["kept"] == 30 and a["quality"]["kept"] == 30
    assert b["documents"] == 4 and b["language"] == {"kept": 3, "dropped": 1}
    assert b["quality"]["dropped_by"] == {"min_words": 1}
    assert b["pii"]["masked"]["email"] == 1 and b["pii"]["documents_masked"] == 1
    assert b["dedup"] == {"kept": 1, "dropped": 1}  # texts[0] is already in source a
    assert a["mixing"]["documents"] == 60 and b["mixing"] == {"weight": 0.5, "unique_documents": 1, "documents": 0}
    assert manifest["train"]["documents"] == 60
    held = manifest["heldout"]["eval"]
    assert held["decontamination"] == {"ngram": 13, "kept": 1, "dropped": 1}
    assert held["documents"] == 1 and held["file"] == "heldout/eval.bin"
    instances = heldout_instances(tmp_path / "data", tokenizer)["eval"][0]
    assert instances.shape == (held["instances"], 16)


def test_one_and_two_processes_prepare_the_same_bytes(tmp_path, tokenizer):
    texts = write_corpus(tmp_path / "c", count=12)
    (tmp_path / "c" / "pii.txt").write_text("Write to someone@example.com. " + texts[0])
    outputs = []
    for num_proc in (1, 2):
        raw = text_recipe(tmp_path / f"data{num_proc}", tokenizer.name_or_path,
                          [{"name": "c", "paths": [str(tmp_path / "c" / "*")], "heldout_fraction": 0.3}],
                          quality={"min_words": 10}, pii={}, num_proc=num_proc)
        manifest = prepare_corpus(recipe_from_dict(raw).data)
        outputs.append(((tmp_path / f"data{num_proc}" / "train.bin").read_bytes(),
                        (tmp_path / f"data{num_proc}" / "heldout" / "c.bin").read_bytes(),
                        manifest["sources"], manifest["heldout"]["c"]["decontamination"]))
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("vocab, expected", [(400, np.uint16), (65536, np.uint16), (65537, np.uint32)])
def test_token_dtype_fits_the_vocabulary(vocab, expected):
    assert token_dtype(vocab) == np.dtype(expected)


def word_tokenizer(size: int):
    """A word-level tokenizer of `size` tokens: 'w<i>' is id i (ids 0, 1 are EOS and pad)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|padding|>": 1, **{f"w{i}": i for i in range(2, size)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<|padding|>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|padding|>")


def test_a_vocabulary_past_uint16_is_stored_as_uint32(tmp_path):
    tok = word_tokenizer(70_000)
    tok.save_pretrained(tmp_path / "words")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.txt").write_text("w69999 w3 w65536 w65535 w2 w66000 w7")
    sources = [{"name": "c", "paths": [str(tmp_path / "c" / "d.txt")]}]
    recipe = recipe_from_dict(text_recipe(tmp_path / "data", tmp_path / "words", sources, sequence_length=4))
    manifest = prepare_corpus(recipe.data)
    assert manifest["dtype"] == "uint32"
    data = np.fromfile(tmp_path / "data" / "train.bin", dtype=np.uint32)
    assert data.tolist() == [69999, 3, 65536, 65535, 2, 66000, 7, 0]  # 7 words + EOS = 2 whole instances


def test_pack_drops_the_remainder(tmp_path):
    docs = datasets.Dataset.from_dict({"input_ids": [[5, 6, 7, 0], [8, 0], [9, 9, 9, 0]]})
    counts = pack(docs, tmp_path / "t.bin", 4, np.uint16)
    assert counts == {"instances": 2, "tokens": 8, "dropped_tokens": 2, "documents": 3}
    assert np.fromfile(tmp_path / "t.bin", dtype=np.uint16).tolist() == [5, 6, 7, 0, 8, 0, 9, 9]


# ---------------------------------------------------------------------------------------------
# Global order and the training source


def test_global_order_concatenates_pcg64_permutations():
    order = GlobalOrder(7, seed=5, epochs=3)
    expected = np.concatenate([np.random.Generator(np.random.PCG64(5 + e)).permutation(7) for e in range(3)])
    assert order[:].tolist() == expected.tolist()
    assert [order[i] for i in range(21)] == expected.tolist()
    assert order.take(5, 16).tolist() == expected[5:16].tolist()  # across two epoch boundaries
    assert len(order.covering(15)) == 21 and len(order.covering(3)) == 7
    with pytest.raises(IndexError):
        order[21]


def test_instance_source_reads_instances_in_the_global_order(prepared, tokenizer):
    recipe, _ = prepared
    source = instance_source(recipe.data.path, seed=11, sequence_length=16, tokenizer=tokenizer)
    n = len(source.instances)
    data = np.fromfile(Path(recipe.data.path) / "train.bin", dtype=np.uint16).reshape(n, 16)
    perm = np.random.Generator(np.random.PCG64(11)).permutation(n)
    rows = source.examples(2, 6)
    assert [r["index"] for r in rows] == perm[2:6].tolist()
    batch = source.collate(rows)
    assert batch["input_ids"].tolist() == data[perm[2:6]].tolist()
    assert batch["labels"].tolist() == batch["input_ids"].tolist() and batch["attention_mask"].all()
    with pytest.raises(RecipeError, match="prepare more data"):
        source.examples(n - 1, n + 1)  # one epoch until the trainer sizes the order for its run
    source.save_order(Path(recipe.data.path).parent / "run", num_examples=n + 3)
    assert [r["index"] for r in source.examples(n, n + 3)] == \
        np.random.Generator(np.random.PCG64(12)).permutation(n)[:3].tolist()


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error each


def test_a_tokenizer_too_large_for_the_memmap_dtype_is_refused(prepared):
    recipe, _ = prepared
    with pytest.raises(HfArithError, match="70000 tokens but .* stores uint16"):
        instance_source(recipe.data.path, seed=0, tokenizer=word_tokenizer(70_000))


def test_another_tokenizer_of_the_same_size_is_refused(prepared, tmp_path):
    recipe, _ = prepared
    other = train_bpe_tokenizer(iter_texts(["builtin:pydoc"]), 400)
    with pytest.raises(HfArithError, match="tokenized with another tokenizer"):
        instance_source(recipe.data.path, seed=0, tokenizer=other)
    with pytest.raises(HfArithError, match="data.sequence_length=32 but .* 16 tokens"):
        instance_source(recipe.data.path, seed=0, sequence_length=32)


def copy_prepared(recipe, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(recipe.data.path, tmp_path / "copy"))


def test_a_truncated_token_file_is_refused(prepared, tmp_path):
    recipe, _ = prepared
    path = copy_prepared(recipe, tmp_path)
    size = (path / "train.bin").stat().st_size
    with open(path / "train.bin", "r+b") as f:
        f.truncate(size - 3)
    with pytest.raises(HfArithError, match="not a whole number of instances of 16 uint16 tokens"):
        instance_source(path, seed=0)
    with open(path / "train.bin", "r+b") as f:
        f.truncate(size - 2 * 16 * 2)  # two whole instances short
    with pytest.raises(HfArithError, match="uint16 tokens but manifest.json says"):
        instance_source(path, seed=0)
    (path / "manifest.json").unlink()
    with pytest.raises(HfArithError, match="hf-arith data prepare"):
        instance_source(path, seed=0)


def test_errors_are_one_line_on_the_command_line(prepared, tmp_path, capsys):
    recipe, _ = prepared
    path = copy_prepared(recipe, tmp_path)
    with open(path / "train.bin", "r+b") as f:
        f.truncate(5)
    raw = text_recipe(path, recipe.data.tokenizer, [{"name": "x", "paths": ["builtin"]}])
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    assert main(["train", str(tmp_path / "r.yaml"), "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "truncated" in err


@pytest.mark.parametrize("override, message", [
    ("data.prepare.sourcez=[]", "unknown key 'data.prepare.sourcez'"),
    ("data.prepare.sources=[{name: a, paths: [builtin], wieght: 2}]", "unknown key 'data.prepare.sources[0].wieght'"),
    ("data.prepare.quality={min_word: 3}", "unknown key 'data.prepare.quality.min_word'"),
    ("data.prepare.pii={kinds: [ssn]}", "'ssn' is not allowed"),
    ("data.prepare.sources=[{name: a, paths: [builtin], hub: x/y}]", "either paths or hub"),
    ("data.prepare.sources=[{name: a, paths: [builtin]}, {name: a, paths: [builtin]}]", "used twice"),
    ("data.prepare.sources=[{name: a, paths: [builtin], heldout_fraction: 1.0}]", "heldout_fraction must be in"),
])
def test_bad_prepare_sections_are_named(override, message, tmp_path):
    (tmp_path / "r.yaml").write_text(json.dumps(text_recipe("d", "t", [{"name": "a", "paths": ["builtin"]}])))
    with pytest.raises(RecipeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_recipe(tmp_path / "r.yaml", [override])


def test_prepare_command_and_missing_sources(tmp_path, tokenizer, capsys):
    write_corpus(tmp_path / "c", count=10)
    raw = text_recipe(tmp_path / "data", tokenizer.name_or_path,
                      [{"name": "c", "paths": [str(tmp_path / "c" / "docs.jsonl")]}])
    (tmp_path / "r.yaml").write_text(json.dumps(raw))
    assert main(["data", "prepare", str(tmp_path / "r.yaml")]) == 0
    assert "instances of 16 tokens (uint16, 10 documents" in capsys.readouterr().out
    missing = "data.prepare.sources=[{name: c, paths: [nope/*.jsonl]}]"
    assert main(["data", "prepare", str(tmp_path / "r.yaml"), "--set", missing]) == 2
    assert "no file matches 'nope/*.jsonl'" in capsys.readouterr().err
    (tmp_path / "c" / "docs.jsonl").write_text('{"body": "x"}\n')
    assert main(["data", "prepare", str(tmp_path / "r.yaml")]) == 2
    assert "has no field 'text' (fields: body); set text_field" in capsys.readouterr().err
    assert read_manifest(tmp_path / "data")["train"]["documents"] == 10  # the failed run left the data as it was


def test_an_unreachable_hub_dataset_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(HfArithError, match="the Hub dataset 'someone/not-a-dataset' could not be loaded"):
        read_documents(DocumentsSpec("x", hub="someone/not-a-dataset"))
