"""The character-level tokenizer: fixed ids, loud errors, and loading from a saved folder
without hf_arith installed (as a Hub user would)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from helpers import run_isolated
from hf_arith.tokenization import ARITH_VOCAB, DIGIT_TOKEN_IDS, ArithTokenizer, build_arith_tokenizer

DESIGN_VOCAB = "<pad> <unk> <bos> <eos> 0 1 2 3 4 5 6 7 8 9 + - x * = , : a b c d e f g h i j".split()
CHARACTERS = "".join(t for t in DESIGN_VOCAB if len(t) == 1)
SAMPLES = ["321+54=", "21x43=804", "a:321,b:54=b,a", "0", "9*9-1", "<eos>1", "1<pad><pad>"]


@pytest.fixture(scope="module")
def tok():
    return build_arith_tokenizer()


def test_vocabulary_matches_the_design(tok):
    assert list(ARITH_VOCAB) == DESIGN_VOCAB
    assert tok.get_vocab() == {t: i for i, t in enumerate(DESIGN_VOCAB)} and len(tok) == 31
    assert DIGIT_TOKEN_IDS == list(range(4, 14)) == tok.convert_tokens_to_ids(list("0123456789"))
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)
    assert (tok.pad_token, tok.unk_token, tok.bos_token, tok.eos_token) == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert isinstance(tok, PreTrainedTokenizerFast) and tok.is_fast


def test_one_token_per_character_and_no_bos_or_eos(tok):
    for text in ["321+54=", "21x43=804", "a:321,b:54=b,a"]:
        assert tok.tokenize(text) == list(text)
        for add in (True, False):
            assert tok(text, add_special_tokens=add)["input_ids"] == [DESIGN_VOCAB.index(c) for c in text]
    assert tok.encode("7") == [11]


def test_special_token_texts_encode_as_their_ids(tok):
    assert tok("12<eos>")["input_ids"] == [5, 6, 3]


@pytest.mark.parametrize("text, char", [("12?3", "?"), ("1 2", " "), ("1²", "²"), ("12A", "A"), ("1\n", "\n")])
def test_unknown_character_is_an_error_naming_it(tok, text, char):
    with pytest.raises(ValueError) as info:
        tok(text)
    message = str(info.value)
    assert repr(char) in message and CHARACTERS in message
    with pytest.raises(ValueError, match="not in the arithmetic vocabulary"):
        tok(["1+1=", text])  # in a batch too
    with pytest.raises(ValueError):
        tok.encode(text)
    with pytest.raises(ValueError):
        tok.tokenize(text)


def test_left_padding_and_decoding(tok):
    batch = tok(["1+1=", "12+3="], padding=True, return_tensors="pt")
    assert tok.padding_side == "left"
    assert batch["input_ids"].tolist() == [[0, 5, 14, 5, 18], [5, 6, 14, 7, 18]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert tok.decode([0, 0, 7, 6, 5, 3], skip_special_tokens=True) == "321"
    assert tok.decode([7, 6, 3]) == "32<eos>"
    assert tok.batch_decode([[7, 3, 0], [2, 8]], skip_special_tokens=True) == ["3", "4"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=CHARACTERS, max_size=80))
def test_round_trip_on_any_valid_string(text):
    tok = build_arith_tokenizer()
    ids = tok(text)["input_ids"]
    assert len(ids) == len(text) and tok.decode(ids) == text
    assert ids == [DESIGN_VOCAB.index(c) for c in text]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tok):
    folder = tmp_path_factory.mktemp("hub") / "arith-tokenizer"
    tok.save_pretrained(folder)
    return folder


def test_save_writes_auto_map_and_the_code(saved):
    config = json.loads((saved / "tokenizer_config.json").read_text())
    assert config["auto_map"]["AutoTokenizer"][0] == "tokenization_arith.ArithTokenizer"
    assert config["padding_side"] == "left" and config["eos_token"] == "<eos>"
    code = (saved / "tokenization_arith.py").read_text()
    assert "hf_arith" not in code.replace("hf_arith.modeling", "")  # no library import travels
    assert (saved / "tokenizer.json").is_file()


def test_reload_in_process(saved, tok):
    for loaded in (AutoTokenizer.from_pretrained(saved, trust_remote_code=True), ArithTokenizer.from_pretrained(saved)):
        assert [loaded(s)["input_ids"] for s in SAMPLES] == [tok(s)["input_ids"] for s in SAMPLES]
        assert loaded.padding_side == "left" and loaded.eos_token_id == 3
        with pytest.raises(ValueError, match="'\\?'"):
            loaded("1?")


def test_reload_without_hf_arith(saved, tok):
    code = f"""
        import json
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(saved)!r}, trust_remote_code=True)
        assert type(tok).__module__.startswith("transformers_modules"), type(tok).__module__
        try:
            tok("1?2")
        except ValueError as err:
            error = str(err)
        print(json.dumps({{
            "ids": [tok(s)["input_ids"] for s in {SAMPLES!r}],
            "padded": tok(["1+1=", "12+3="], padding=True)["input_ids"],
            "decoded": tok.decode([0, 7, 6, 3], skip_special_tokens=True),
            "special": [tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id],
            "error": error,
        }}))
    """
    out = json.loads(run_isolated(code, cwd=saved.parent).splitlines()[-1])
    assert out["ids"] == [tok(s)["input_ids"] for s in SAMPLES]
    assert out["padded"] == [[0, 5, 14, 5, 18], [5, 6, 14, 7, 18]]
    assert out["decoded"] == "32" and out["special"] == [0, 1, 2, 3]
    assert "'?'" in out["error"]


def test_isolation_helper_really_hides_hf_arith(tmp_path):
    out = run_isolated("import importlib.util; print(importlib.util.find_spec('hf_arith'))", cwd=tmp_path)
    assert out.strip() == "None"
