"""What a Hub user does with a saved folder, under whatever transformers is installed.

These tests import no hf_arith: they load the folders' own remote code, as a downloader does.
`make test-compat` runs them in clean virtualenvs with the oldest and the newest transformers we
declare; the main suite runs them under the installed one. References are independent of the code
under test where one exists: the logits hf-arith computed when it saved the folder (another
release), transformers' own `olmo` on the same weights, and full recomputation without a cache
for every cached path (transformers 5.24 renamed the cache keyword, and a model that missed the
rename generated from an empty cache at every step, with no error).
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, pipeline

ARCHS = ["abacus", "olmo"]
VOCAB = 31  # the arithmetic tokenizer's size; OLMo pads its embedding to 128 rows


def load(folders, name, **kwargs):
    model = AutoModelForCausalLM.from_pretrained(folders / name, trust_remote_code=True, **kwargs).eval()
    tokenizer = AutoTokenizer.from_pretrained(folders / name, trust_remote_code=True)
    return model, tokenizer


def reversed_prompt(a: int, b: int) -> str:
    return f"{str(a)[::-1]}+{str(b)[::-1]}="


@pytest.fixture(scope="module")
def reference(folders):
    return json.loads((folders / "reference.json").read_text())


@pytest.mark.parametrize("name", ARCHS)
def test_forward_gives_the_logits_hf_arith_saved(folders, reference, name):
    model, tokenizer = load(folders, name)
    assert type(model).__module__.startswith("transformers_modules")
    batch = tokenizer(reference["prompts"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[..., :VOCAB]
    torch.testing.assert_close(logits, torch.tensor(reference[name]), atol=1e-5, rtol=1e-5)


def test_olmo_equals_transformers_own_olmo(folders, reference):
    ours, tokenizer = load(folders, "olmo")
    native = AutoModelForCausalLM.from_pretrained(folders / "olmo_native").eval()  # no remote code
    assert type(native).__name__ == "OlmoForCausalLM"
    batch = tokenizer(reference["prompts"], padding=True, return_tensors="pt")
    positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = native(**batch, position_ids=positions).logits[..., :VOCAB]
        got = ours(**batch).logits[..., :VOCAB]
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=1e-5)
    generated = native.generate(**batch, max_new_tokens=6, do_sample=False)  # suppress_tokens hides padding rows
    assert torch.equal(ours.generate(**batch, max_new_tokens=6, do_sample=False), generated)


@pytest.mark.parametrize("name", ARCHS)
def test_cached_greedy_scores_equal_full_recomputation(folders, reference, name):
    model, tokenizer = load(folders, name)
    batch = tokenizer(reference["prompts"], padding=True, return_tensors="pt")
    kwargs = dict(max_new_tokens=6, do_sample=False, eos_token_id=None, output_scores=True,
                  return_dict_in_generate=True)
    cached = model.generate(**batch, **kwargs)
    uncached = model.generate(**batch, **kwargs, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    scores = torch.stack(cached.scores)
    torch.testing.assert_close(scores, torch.stack(uncached.scores), atol=1e-4, rtol=1e-4)
    mask = torch.cat([batch["attention_mask"], torch.ones(len(reference["prompts"]), 6, dtype=torch.long)], 1)
    with torch.no_grad():
        logits = model(input_ids=cached.sequences, attention_mask=mask, use_cache=False).logits
    prompt_len = batch["input_ids"].shape[1]
    torch.testing.assert_close(scores, logits[:, prompt_len - 1 : -1].transpose(0, 1), atol=1e-4, rtol=1e-4)
    assert int(cached.sequences.max()) < VOCAB  # padding rows are never generated


@pytest.mark.parametrize("name", ARCHS)
def test_left_padded_batch_generates_what_each_row_generates_alone(folders, reference, name):
    model, tokenizer = load(folders, name)
    batch = tokenizer(reference["prompts"], padding=True, return_tensors="pt")
    together = model.generate(**batch, max_new_tokens=6, do_sample=False, eos_token_id=None)
    width = batch["input_ids"].shape[1]
    for row, prompt in enumerate(reference["prompts"]):
        alone = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=6, do_sample=False,
                               eos_token_id=None)
        assert alone[0, len(prompt):].tolist() == together[row, width:].tolist()


@pytest.mark.parametrize("name", ARCHS)
def test_beam_search_with_cache_equals_without(folders, reference, name):
    model, tokenizer = load(folders, name)
    batch = tokenizer(reference["prompts"], padding=True, return_tensors="pt")
    kwargs = dict(max_new_tokens=5, num_beams=3, do_sample=False, eos_token_id=None, output_scores=True,
                  return_dict_in_generate=True)
    cached, uncached = model.generate(**batch, **kwargs), model.generate(**batch, **kwargs, use_cache=False)
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ARCHS)
def test_the_cache_is_taken_under_either_name(folders, name):
    model, tokenizer = load(folders, name)
    # Split where a number starts: a digit's Abacus position counts the digits before it, which a
    # direct call on the new tokens alone cannot see (`generate` passes `abacus_positions`).
    ids = tokenizer("321+7654=0", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        full = model(input_ids=ids).logits
        for keyword in ("cache", "past_key_values"):
            first = model(input_ids=ids[:, :4], use_cache=True)
            kept = first.cache if "cache" in first else first.past_key_values  # the installed release's name
            assert kept.get_seq_length() == 4
            rest = model(input_ids=ids[:, 4:], **{keyword: kept}).logits
            torch.testing.assert_close(rest, full[:, 4:], atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="not both"):
            model(input_ids=ids, cache=kept, past_key_values=kept)


@pytest.mark.parametrize("name", ARCHS)
def test_pipeline_generates_what_generate_does(folders, name):
    model, tokenizer = load(folders, name)
    prompt = reversed_prompt(123, 4567)
    expected = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=5, do_sample=False)
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    text = generator(prompt, max_new_tokens=5, do_sample=False, return_full_text=False)[0]["generated_text"]
    assert text == tokenizer.decode(expected[0, len(prompt):], skip_special_tokens=True)


@pytest.mark.parametrize("name", ARCHS)
def test_output_conventions(folders, reference, name):
    # Attention weights come from the eager kernel (transformers' sdpa returns none).
    model, tokenizer = load(folders, name, attn_implementation="eager")
    batch = tokenizer(reference["prompts"], padding=True, return_tensors="pt")
    config = model.config
    depth = config.num_hidden_layers * getattr(config, "num_recurrences", 1)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
        as_tuple = model(**batch, return_dict=False)
        base = AutoModel.from_pretrained(folders / name, trust_remote_code=True, attn_implementation="eager")
        base = base.eval()(**batch)
    assert len(out.hidden_states) == depth + 1 and len(out.attentions) == depth
    seq = batch["input_ids"].shape[1]
    assert out.attentions[0].shape == (len(reference["prompts"]), config.num_attention_heads, seq, seq)
    torch.testing.assert_close(out.hidden_states[-1], base.last_hidden_state)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], out.logits)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        with_loss = model(**batch, labels=labels)
        loss_first = model(**batch, labels=labels, return_dict=False)
    assert with_loss.loss is not None and list(with_loss.keys())[0] == "loss"  # Trainer reads outputs["loss"]
    torch.testing.assert_close(loss_first[0], with_loss.loss)
    # The logits come from the last hidden state: the head applied to it reproduces them.
    head = model.get_output_embeddings()
    torch.testing.assert_close(head(out.hidden_states[-1])[..., :VOCAB], out.logits[..., :VOCAB])


@pytest.mark.parametrize("name", ARCHS)
def test_generation_config_leaves_the_length_to_the_caller(folders, reference, name):
    model, tokenizer = load(folders, name)
    assert model.generation_config.max_new_tokens is None
    batch = tokenizer(reference["prompts"][:1], return_tensors="pt")
    out = model.generate(**batch, max_length=batch["input_ids"].shape[1] + 4, do_sample=False, eos_token_id=None)
    assert out.shape[1] == batch["input_ids"].shape[1] + 4  # what lm-eval's generate_until asks for


@pytest.mark.parametrize("name", ARCHS)
def test_peft_lora_trains_and_reloads(folders, tmp_path, name):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)  # LoRA's A matrices start random
    model, tokenizer = load(folders, name)
    adapted = peft.get_peft_model(model, peft.LoraConfig(target_modules="all-linear", r=4, lora_alpha=8,
                                                          task_type="CAUSAL_LM"))
    batch = tokenizer([reversed_prompt(12, 34) + "64", reversed_prompt(5, 7) + "21"], padding=True,
                      return_tensors="pt")
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=5e-2)

    def eval_loss():
        # In eval mode: a looped model's training loss is the progressive loss, which draws random
        # recurrence counts and would make a before/after comparison a coin toss.
        adapted.eval()
        with torch.no_grad():
            return adapted(**batch, labels=labels).loss.item()

    before = eval_loss()
    adapted.train()
    for _ in range(5):
        adapted(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert eval_loss() < before
    adapted.eval()
    with torch.no_grad():
        trained = adapted(**batch).logits
    adapted.save_pretrained(tmp_path / "adapter")
    base, _ = load(folders, name)
    reloaded = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, trained)


def test_olmo_resize_keeps_config_weights_and_mask_consistent(folders, tmp_path):
    model, tokenizer = load(folders, "olmo")
    tokenizer.add_tokens(["<extra_a>", "<extra_b>"])
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=128)
    assert (model.config.vocab_size, model.config.embedding_size) == (VOCAB + 2, 128)
    model.resize_token_embeddings(VOCAB + 200)  # no multiple: exactly these rows, all tokens
    assert (model.config.vocab_size, model.config.embedding_size) == (VOCAB + 200, VOCAB + 200)
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    model.save_pretrained(tmp_path / "resized")
    tokenizer.save_pretrained(tmp_path / "resized")
    again, _ = load(tmp_path, "resized")
    assert (again.config.vocab_size, again.config.embedding_size) == (VOCAB + 2, 64)
    assert again.get_input_embeddings().weight.shape[0] == 64
    batch = tokenizer(["321+7654="], return_tensors="pt")
    out = again.generate(**batch, max_new_tokens=40, do_sample=False, eos_token_id=None)
    assert int(out.max()) < len(tokenizer)


def test_abacus_resize_keeps_config_and_weights_consistent(folders, tmp_path):
    model, tokenizer = load(folders, "abacus")
    model.resize_token_embeddings(VOCAB + 9)
    model.save_pretrained(tmp_path / "resized")
    tokenizer.save_pretrained(tmp_path / "resized")
    again, _ = load(tmp_path, "resized")
    assert again.config.vocab_size == VOCAB + 9
    assert again.get_input_embeddings().weight.shape[0] == again.get_output_embeddings().weight.shape[0] == VOCAB + 9
    batch = tokenizer(["321+7654="], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits[..., :VOCAB], model(**batch).logits[..., :VOCAB])
