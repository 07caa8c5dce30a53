"""What older hf-arith releases saved keeps working, and every shipped recipe's model can be sharded.

`tests/data/abacus_fire_2026-12-07/` is a FIRE model folder saved by hf-arith at c0c91ac (FIRE's
`c` and `threshold_scale` stored as 0-dim scalars), with the logits that code computed for one
input; `tests/data/abacus_fire_run_2026-12-07/` a training run of that code, checkpointed after its
first step. Both were made by the code of that day, not by the code under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from hf_arith.tokenization import build_arith_tokenizer
from hf_arith.training import load_recipe, train
from hf_arith.training.models import build_model
from hf_arith.training.metrics_log import read_metrics
from helpers import run_isolated

DATA = Path(__file__).parent / "data"
OLD_FOLDER = DATA / "abacus_fire_2026-12-07"
OLD_RUN = DATA / "abacus_fire_run_2026-12-07"
RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes" / "abacus").glob("*.yaml"))
IDS = torch.tensor([[5, 6, 14, 7, 8, 18]])  # "12+34=" in the hf-arith vocabulary


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_parameter_of_a_shipped_recipe_is_at_least_1d(path):
    """FSDP2 (`fully_shard`) and DeepSpeed ZeRO shard parameters along a dimension and refuse
    0-dim ones, which FIRE's scalars were."""
    recipe = load_recipe(path, ["model.config.hidden_size=32", "model.config.num_attention_heads=2",
                                "model.config.intermediate_size=64"])
    model = build_model(recipe.model, build_arith_tokenizer())
    scalars = [name for name, p in model.named_parameters() if p.dim() == 0]
    assert scalars == []


def test_a_folder_saved_with_scalar_fire_parameters_loads_with_its_own_code(tmp_path):
    out = run_isolated(f"""
        import torch
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained({str(OLD_FOLDER)!r}, trust_remote_code=True)
        expected = torch.load({str(OLD_FOLDER / "expected_logits.pt")!r})
        with torch.no_grad():
            print(float((model(torch.tensor({IDS.tolist()})).logits - expected).abs().max()))
    """, tmp_path)
    assert float(out.strip().splitlines()[-1]) < 1e-5  # thread count aside, the same logits


def test_a_folder_saved_with_scalar_fire_parameters_loads_with_this_code():
    """What `publish` and `load_state_dict` do: this release's classes with the old weights."""
    from hf_arith.hub.publish import load_with_installed_classes
    from hf_arith.modeling import AbacusConfig, AbacusForCausalLM
    from safetensors.torch import load_file

    expected = torch.load(OLD_FOLDER / "expected_logits.pt")
    model = load_with_installed_classes(OLD_FOLDER)
    fire = model.model.layers[0].self_attn.fire
    assert fire.c.shape == (1,) and float(fire.c[0]) == pytest.approx(0.37)
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, expected, rtol=1e-5, atol=1e-6)

    plain = AbacusForCausalLM(AbacusConfig.from_pretrained(OLD_FOLDER)).eval()
    plain.load_state_dict(load_file(OLD_FOLDER / "model.safetensors"), strict=False)  # lm_head is tied
    with torch.no_grad():
        torch.testing.assert_close(plain(IDS).logits, expected, rtol=1e-5, atol=1e-6)


def test_a_run_checkpointed_with_scalar_fire_parameters_resumes(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    raw = yaml.safe_load((run / "recipe.yaml").read_text())
    raw["output_dir"] = str(run)
    (run / "recipe.yaml").write_text(yaml.safe_dump(raw))
    final = train(load_recipe(run / "recipe.yaml"), resume="latest")
    losses = {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r}
    assert sorted(losses) == [2] and 0 < losses[2] < 10
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(final, trust_remote_code=True)
    assert model.model.layers[0].self_attn.fire.c.shape == (1,)
