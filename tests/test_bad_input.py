"""Bad model folders: each is one line naming the problem and the fix, and exit status 2."""

import os
import shutil
import subprocess

import pytest
import torch

from hf_arith.cli import main
from hf_arith.modeling.configuration_abacus import AbacusConfig
from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
from hf_arith.tokenization import build_arith_tokenizer


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good") / "final"
    torch.manual_seed(0)
    AbacusForCausalLM(AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1,
                                   num_recurrences=1, abacus_num_positions=16)).save_pretrained(folder)
    build_arith_tokenizer().save_pretrained(folder)
    return folder


def broken(good, tmp_path, damage):
    folder = tmp_path / "model"
    shutil.copytree(good, folder)
    damage(folder)
    return folder


def cut(fraction):
    def damage(folder):
        weights = folder / "model.safetensors"
        data = weights.read_bytes()
        weights.write_bytes(data[: int(len(data) * fraction)])
    return damage


@pytest.mark.parametrize("damage, message", [
    (cut(0.001), "not a readable safetensors file"),         # cut inside the header
    (cut(0.9), "truncated"),                                 # header intact, tensor data cut
    (lambda f: (f / "model.safetensors").write_bytes(b"\x00" * 64), "not a readable safetensors file"),
    (lambda f: (f / "tokenizer.json").unlink() or (f / "tokenizer_config.json").unlink(), "has no tokenizer"),
    (lambda f: (f / "config.json").unlink(), "has no config.json"),
    (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"), "pickled weights are never loaded"),
])
def test_broken_model_folders_are_one_clear_line(good, tmp_path, capsys, damage, message):
    folder = broken(good, tmp_path, damage)
    for argv in (["generate", str(folder), "1+2"], ["eval", str(folder), "--lengths", "1", "--samples", "1",
                                                      "--out", str(tmp_path / "e")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert str(folder) in err[0]


def test_a_run_folder_points_to_its_final_folder(good, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(good, run / "final")
    assert main(["generate", str(run), "1+2"]) == 2
    assert "use its final/ folder" in capsys.readouterr().err


def test_a_missing_path_is_not_mistaken_for_a_hub_id(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nowhere"), "1+2"]) == 2
    assert "no model folder at" in capsys.readouterr().err


def test_an_unreachable_hub_id_is_one_line(tmp_path):
    # huggingface_hub reads HF_HUB_OFFLINE at import time: a fresh process sees it.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run(["hf-arith", "generate", "someone/not-a-real-model", "1+2"], env=env,
                          capture_output=True, text=True, timeout=120)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1 and "cannot load someone/not-a-real-model" in err[0], err
