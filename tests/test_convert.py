"""`hf-arith convert`: OLMo-1 checkpoints between our layout, transformers' native `olmo` and
allenai/OLMo's, checked against the native model's logits and a test-local weight mapping."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from hf_arith.cli import main
from hf_arith.convert import convert, model_from_state, read_olmo_checkpoint
from hf_arith.errors import HfArithError
from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
from test_olmo_model import VOCAB, char_tokenizer, left_padded_batch, native_model, ours_model


def olmo_layout_by_hand(native) -> tuple[dict, dict]:
    """allenai/OLMo's config.yaml model section and tensors for a native model, mapped here (OLMo's
    `ff_proj` is [up; gate], `att_proj` is [q; k; v])."""
    c = native.config
    model = {
        "d_model": c.hidden_size, "n_heads": c.num_attention_heads, "n_layers": c.num_hidden_layers,
        "mlp_hidden_size": 2 * c.intermediate_size, "activation_type": "swiglu", "block_type": "sequential",
        "rope": True, "alibi": False, "include_bias": False, "layer_norm_with_affine": False,
        "layer_norm_type": "default", "weight_tying": c.tie_word_embeddings, "vocab_size": c.vocab_size,
        "embedding_size": c.vocab_size, "max_sequence_length": c.max_position_embeddings, "clip_qkv": c.clip_qkv,
        "eos_token_id": c.eos_token_id, "pad_token_id": c.pad_token_id, "init_fn": "normal",
        "init_std": c.initializer_range,
    }
    state = {"transformer.wte.weight": native.model.embed_tokens.weight}
    for i, layer in enumerate(native.model.layers):
        a, m, b = layer.self_attn, layer.mlp, f"transformer.blocks.{i}."
        state[b + "att_proj.weight"] = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        state[b + "attn_out.weight"] = a.o_proj.weight
        state[b + "ff_proj.weight"] = torch.cat([m.up_proj.weight, m.gate_proj.weight])
        state[b + "ff_out.weight"] = m.down_proj.weight
    if not c.tie_word_embeddings:
        state["transformer.ff_out.weight"] = native.lm_head.weight
    return model, {k: v.detach().clone().contiguous() for k, v in state.items()}


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A native OlmoForCausalLM (the reference) saved in each of the three layouts."""
    root = tmp_path_factory.mktemp("convert")
    model = native_model(seed=7, clip_qkv=1.0)
    folders = {fmt: root / f"start_{fmt}" for fmt in ("native", "original")}
    model.save_pretrained(folders["native"])
    original, state = olmo_layout_by_hand(model)
    folders["original"].mkdir()
    (folders["original"] / "config.yaml").write_text(yaml.safe_dump({"model": original}))
    save_file(state, folders["original"] / "model.safetensors")
    for folder in folders.values():
        char_tokenizer(VOCAB).save_pretrained(folder)
    return model, folders


@pytest.fixture(scope="module")
def ours_folder(tmp_path_factory):
    """Our model with padding rows (vocab 40, 128 rows), untied, saved as training saves it."""
    folder = tmp_path_factory.mktemp("convert_ours") / "start_ours"
    model = ours_model(seed=8, vocab_size=40, tie_word_embeddings=False, rope_theta=500.0)
    model.save_pretrained(folder)
    char_tokenizer(40).save_pretrained(folder)
    return model, folder


def tensors(folder):
    return load_file(folder / "model.safetensors")


def load_any(folder, fmt):
    if fmt == "native":
        return AutoModelForCausalLM.from_pretrained(folder)  # no remote code
    if fmt == "ours":
        return AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    _, config, state = read_olmo_checkpoint(folder)
    return model_from_state(config, state)


def logits(model, ids, mask):
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=positions).logits


@pytest.mark.parametrize("start,via", [("native", "ours"), ("native", "original"), ("original", "ours"),
                                       ("original", "native"), ("ours", "native"), ("ours", "original")])
def test_round_trips_are_bit_exact(native, ours_folder, tmp_path, start, via):
    src = ours_folder[1] if start == "ours" else native[1][start]
    there = convert(src, tmp_path / "there", to=via)
    back = convert(there, tmp_path / "back", to=start)
    before, after = tensors(src), tensors(back)
    assert sorted(before) == sorted(after)
    assert all(torch.equal(before[name], after[name]) for name in before)
    if start == "original":
        written = yaml.safe_load((back / "config.yaml").read_text())["model"]
        given = yaml.safe_load((src / "config.yaml").read_text())["model"]
        assert {k: written.get(k) for k in given} == given
    else:
        written, given = (json.loads((f / "config.json").read_text()) for f in (back, src))
        # allenai/OLMo's config has no BOS; native draws fresh weights one way only (N(0, initializer_range)).
        lost = {"transformers_version", {"original": "bos_token_id", "native": "init_fn", "ours": None}[via]}
        assert {k: v for k, v in written.items() if k not in lost} == {k: v for k, v in given.items() if k not in lost}


@pytest.mark.parametrize("start,to", [("native", "ours"), ("native", "original"), ("original", "ours"),
                                      ("original", "native")])
def test_every_layout_computes_the_native_logits(native, tmp_path, start, to):
    reference, folders = native
    converted = convert(folders[start], tmp_path / "out", to=to)
    ids, mask = left_padded_batch(seed=3)
    diff = (logits(load_any(converted, to), ids, mask) - logits(reference, ids, mask))[mask.bool()]
    assert diff.abs().max() <= 1e-5


@pytest.mark.parametrize("to", ["native", "original"])
def test_our_checkpoint_computes_the_same_logits_in_every_layout(ours_folder, tmp_path, to):
    model, src = ours_folder
    converted = load_any(convert(src, tmp_path / "out", to=to), to)
    ids, mask = left_padded_batch(seed=6)
    ids = ids % 40
    diff = (logits(converted, ids, mask)[..., :40] - logits(model, ids, mask)[..., :40])[mask.bool()]
    assert diff.abs().max() <= 1e-5


def test_native_export_loads_without_remote_code(ours_folder, tmp_path):
    model, src = ours_folder
    dst = convert(src, tmp_path / "native", to="native")
    config = json.loads((dst / "config.json").read_text())
    assert config["model_type"] == "olmo" and "auto_map" not in config
    assert not list(dst.glob("*.py"))
    loaded = AutoModelForCausalLM.from_pretrained(dst)
    assert type(loaded).__module__ == "transformers.models.olmo.modeling_olmo"
    assert loaded.config.rope_parameters["rope_theta"] == 500.0 and loaded.config.vocab_size == 128
    ids, mask = left_padded_batch(seed=4)
    ids = ids % 40
    diff = (logits(loaded, ids, mask)[..., :40] - logits(model, ids, mask)[..., :40])[mask.bool()]
    assert diff.abs().max() <= 1e-5


def test_padding_rows_are_never_generated_by_the_native_export(tmp_path):
    model = ours_model(seed=9, vocab_size=40, tie_word_embeddings=False)
    with torch.no_grad():
        model.lm_head.weight[40:] = 1e3  # rows no token uses, made to win every argmax
    model.save_pretrained(tmp_path / "ours")
    dst = convert(tmp_path / "ours", tmp_path / "native", to="native")
    assert json.loads((dst / "generation_config.json").read_text())["suppress_tokens"] == list(range(40, 128))
    native = AutoModelForCausalLM.from_pretrained(dst)
    ids = torch.randint(4, 40, (2, 5))
    kwargs = dict(input_ids=ids, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    generated = native.generate(**kwargs)
    assert generated.max() < 40 and torch.equal(generated, model.generate(**kwargs))
    # Back in our layout the suppressed tail is padding again.
    _, config, _ = read_olmo_checkpoint(convert(dst, tmp_path / "back", to="ours"))
    assert (config.vocab_size, config.embedding_size) == (40, 128)


def test_original_layout_is_allenai_olmos(native, tmp_path):
    reference, folders = native
    dst = convert(folders["native"], tmp_path / "original", to="original")
    model = yaml.safe_load((dst / "config.yaml").read_text())["model"]
    assert {k: model[k] for k in ("d_model", "n_heads", "n_layers", "mlp_hidden_size", "weight_tying", "rope",
                                  "include_bias", "layer_norm_with_affine", "clip_qkv", "vocab_size", "embedding_size")
            } == {"d_model": 64, "n_heads": 4, "n_layers": 2, "mlp_hidden_size": 192, "weight_tying": False,
                  "rope": True, "include_bias": False, "layer_norm_with_affine": False, "clip_qkv": 1.0,
                  "vocab_size": VOCAB, "embedding_size": VOCAB}
    assert "rope_theta" not in model  # OLMo's default; older OLMo versions have no such field
    state, layer = tensors(dst), reference.model.layers[1]
    ff_proj = state["transformer.blocks.1.ff_proj.weight"]
    assert torch.equal(ff_proj[:96], layer.mlp.up_proj.weight) and torch.equal(ff_proj[96:], layer.mlp.gate_proj.weight)
    assert torch.equal(state["transformer.blocks.1.att_proj.weight"][64:128], layer.self_attn.k_proj.weight)
    assert torch.equal(state["transformer.blocks.1.ff_out.weight"], layer.mlp.down_proj.weight)
    assert torch.equal(state["transformer.ff_out.weight"], reference.lm_head.weight)


def test_tied_models_keep_one_matrix_everywhere(tmp_path):
    model = native_model(seed=10, tie_word_embeddings=True)
    model.save_pretrained(tmp_path / "native")
    original = convert(tmp_path / "native", tmp_path / "original", to="original")
    assert "transformer.ff_out.weight" not in tensors(original)
    assert yaml.safe_load((original / "config.yaml").read_text())["model"]["weight_tying"] is True
    ours = load_any(convert(original, tmp_path / "ours", to="ours"), "ours")
    assert ours.lm_head.weight is ours.model.embed_tokens.weight
    ids, mask = left_padded_batch(seed=5)
    assert (logits(ours, ids, mask) - logits(model, ids, mask))[mask.bool()].abs().max() <= 1e-5


def test_tokenizer_files_travel_along(native, tmp_path):
    dst = convert(native[1]["original"], tmp_path / "ours", to="ours")
    assert (dst / "tokenizer.json").is_file() and (dst / "tokenizer_config.json").is_file()
    text = "!#%&()"
    loaded = AutoTokenizer.from_pretrained(dst, trust_remote_code=True)
    assert loaded(text)["input_ids"] == char_tokenizer(VOCAB)(text)["input_ids"]


def test_model_pt_is_read_as_tensors_only(native, tmp_path):
    src = tmp_path / "olmo_pt"
    src.mkdir()
    (src / "config.yaml").write_text((native[1]["original"] / "config.yaml").read_text())
    torch.save(tensors(native[1]["original"]), src / "model.pt")
    back = tensors(convert(src, tmp_path / "out", to="original"))
    assert all(torch.equal(back[k], v) for k, v in tensors(native[1]["original"]).items())
    torch.save({"transformer.wte.weight": torch.zeros(2), "code": Refused()}, src / "model.pt")
    with pytest.raises(HfArithError, match="not a plain state dict of tensors"):
        convert(src, tmp_path / "refused", to="ours")


class Refused:
    """An object `torch.load(weights_only=True)` must not rebuild."""


# ---------------------------------------------------------------------------------------------
# Errors, through the CLI


def run_cli(capsys, *argv):
    capsys.readouterr()  # drop what came before (progress bars of the setup)
    status = main(["convert", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return status, err


def test_cli_converts(ours_folder, tmp_path, capsys):
    status = main(["convert", str(ours_folder[1]), str(tmp_path / "out"), "--to", "original"])
    assert status == 0 and "wrote" in capsys.readouterr().out
    assert (tmp_path / "out" / "config.yaml").is_file()


@pytest.mark.parametrize("to", ["native", "original"])
def test_abacus_embeddings_are_refused_where_the_target_has_no_place(tmp_path, capsys, to):
    model = ours_model(abacus=True, digit_token_ids=list(range(4, 14)), abacus_num_positions=16)
    model.save_pretrained(tmp_path / "abacus_olmo")
    status, err = run_cli(capsys, tmp_path / "abacus_olmo", tmp_path / "out", "--to", to)
    assert status == 2 and err.startswith("error: ") and "Abacus" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(tmp_path / "abacus_olmo"), str(tmp_path / "ours"), "--to", "ours"]) == 0


def test_checkpoints_of_other_architectures_are_named(tmp_path, capsys):
    AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64,
                                   num_hidden_layers=1, num_recurrences=1)).save_pretrained(tmp_path / "abacus")
    LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=4)).save_pretrained(tmp_path / "llama")
    (tmp_path / "empty").mkdir()
    for folder, found in [("abacus", "'abacus' model"), ("llama", "'llama' model"), ("empty", "neither config.json"),
                          ("missing", "not a folder")]:
        status, err = run_cli(capsys, tmp_path / folder, tmp_path / "out", "--to", "native")
        assert status == 2 and err.startswith("error: ") and found in err and "\n" not in err, err
        assert "arith_olmo" in err or folder == "missing"


@pytest.mark.parametrize("field,value,named", [
    ("rope", False, "model.rope=False"),
    ("include_bias", True, "model.include_bias=True"),
    ("layer_norm_type", "rms", "model.layer_norm_type='rms'"),
    ("norm_after", True, "model.norm_after=True"),
    ("n_kv_heads", 2, "n_kv_heads=2"),
    ("new_fancy_option", 1, "new_fancy_option"),
])
def test_original_configs_of_another_architecture_are_refused(native, tmp_path, capsys, field, value, named):
    src = tmp_path / "olmo"
    src.mkdir()
    model = yaml.safe_load((native[1]["original"] / "config.yaml").read_text())["model"]
    (src / "config.yaml").write_text(yaml.safe_dump({"model": {**model, field: value}}))
    save_file(tensors(native[1]["original"]), src / "model.safetensors")
    status, err = run_cli(capsys, src, tmp_path / "out", "--to", "ours")
    assert status == 2 and named in err, err


def test_missing_or_extra_tensors_are_named(native, tmp_path, capsys):
    src = tmp_path / "olmo"
    src.mkdir()
    (src / "config.yaml").write_text((native[1]["original"] / "config.yaml").read_text())
    state = tensors(native[1]["original"])
    save_file({k: v for k, v in state.items() if "blocks.1.ff_out" not in k}, src / "model.safetensors")
    status, err = run_cli(capsys, src, tmp_path / "out", "--to", "ours")
    assert status == 2 and "transformer.blocks.1.ff_out.weight" in err
    save_file({**state, "transformer.blocks.0.att_proj.bias": torch.zeros(192)}, src / "model.safetensors")
    status, err = run_cli(capsys, src, tmp_path / "out", "--to", "ours")
    assert status == 2 and "att_proj.bias" in err


def test_destination_must_be_new(native, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    status, err = run_cli(capsys, native[1]["native"], tmp_path / "taken", "--to", "ours")
    assert status == 2 and "not an empty folder" in err


def test_a_folder_with_the_old_fused_tensors_is_upgraded_by_convert_and_refused_by_publish(ours_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    from hf_arith.hub import load_with_installed_classes

    model, src = ours_folder
    old = tmp_path / "old"
    shutil.copytree(src, old)
    state = load_file(old / "model.safetensors")
    fused = {}
    for name, tensor in state.items():  # hf-arith's layout before 2026-11-30
        if ".q_proj." in name:
            base = name.replace("q_proj.weight", "")
            fused[base + "qkv_proj.weight"] = torch.cat([state[base + f"{n}_proj.weight"] for n in "qkv"])
        elif ".gate_proj." in name:
            base = name.replace("gate_proj.weight", "")
            fused[base + "gate_up_proj.weight"] = torch.cat([state[base + "gate_proj.weight"], state[base + "up_proj.weight"]])
        elif not any(f".{n}_proj." in name for n in ("k", "v", "up")):
            fused[name] = tensor
    save_file(fused, old / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(HfArithError, match="convert"):
        load_with_installed_classes(old)
    upgraded = load_any(convert(old, tmp_path / "new", to="ours"), "ours")
    ids, mask = left_padded_batch(seed=6)
    ids = ids % 40
    diff = (logits(upgraded, ids, mask)[..., :40] - logits(model, ids, mask)[..., :40])[mask.bool()]
    assert diff.abs().max() == 0
