"""`hf-arith publish`: the folder, its model card and the push, through huggingface_hub's real upload
path to a Hub-compatible server on 127.0.0.1 (`hub_server.py`), and back through
`from_pretrained("ORG/NAME")` in a process that cannot import hf_arith.

References: answers from Python integers; the model-index against the per-cell counts of
`results.json` and the records of `metrics.jsonl`; logits against the model loaded from the run
folder; the published code against an AST walk written here.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.errors import RepositoryNotFoundError

from helpers import _PRELUDE, REPO_ROOT
from hub_server import HubServer, front_matter
from hf_arith.cli import main
from hf_arith.errors import HfArithError
from hf_arith.hub import check_remote_code, publish
from hf_arith.training import recipe_from_dict, train

TOKEN = "hf_test_write_token"
TINY_ABACUS = {"arch": "abacus", "config": {
    "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128, "num_hidden_layers": 1,
    "num_recurrences": 2, "abacus_num_positions": 16, "abacus_max_k": 0, "max_position_embeddings": 32}}


def abacus_recipe(out: Path, steps: int):
    return recipe_from_dict({
        "seed": 3, "output_dir": str(out), "model": TINY_ABACUS,
        "data": {"task": "addition", "task_args": {"max_digits": 2}},
        "train": {"max_steps": steps, "micro_batch_size": 64, "global_batch_size": 64, "lr": 3e-3, "log_every": 20,
                  "report_to": [], "progress_bar": False, "schedule": "wcc", "warmup": 0.05, "cooldown": 0.2},
    })


def evaluate_run(run: Path, lengths: str, samples: int) -> Path:
    from hf_arith.evaluation.commands import run_eval

    run_eval(run / "final", "addition", lengths, samples=samples, out_dir=run / "eval", progress=False)
    return run / "eval"


@pytest.fixture(scope="module")
def hub():
    with HubServer(tokens={TOKEN}) as server:
        yield server


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory):
    """A 3-step run with an evaluation folder: every file a real run has, in seconds."""
    run = tmp_path_factory.mktemp("untrained") / "run"
    train(abacus_recipe(run, steps=3))
    evaluate_run(run, "1-3", samples=2)
    return run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """500 steps: a tiny model that adds 1- and 2-digit numbers."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(abacus_recipe(run, steps=500))
    evaluate_run(run, "1-4", samples=10)
    return run


def hub_env(hub: HubServer, home: Path, token: str | None = TOKEN) -> dict:
    """The environment of a process that talks to the test Hub (and to nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(home / "hf_home"),
               HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    if token:
        env["HF_TOKEN"] = token
    return env


def cli_publish(hub: HubServer, home: Path, *args: str) -> str:
    """`hf-arith publish ...` in its own process, as a user runs it; returns its stdout."""
    done = subprocess.run([sys.executable, "-m", "hf_arith", "publish", *args], env=hub_env(hub, home),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def run_as_hub_user(code: str, hub: HubServer, cwd: Path) -> str:
    """`code` in a fresh `python -I` that cannot import hf_arith, with no token, downloading from the
    test Hub into an empty cache; returns stdout."""
    env = hub_env(hub, cwd, token=None)
    env["HF_MODULES_CACHE"] = str(cwd / "hf_modules")
    script = _PRELUDE.format(repo=str(REPO_ROOT)) + "\n" + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def python_snippet(readme: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, blocks
    return blocks[0]


def summary_from_cells(results: dict) -> dict:
    """In-distribution, out-of-distribution and overall accuracy, recomputed from the per-cell counts."""
    (ax_a, ax_b), (max_a, max_b) = results["axes"], results["train_max"]
    sums = {"in_distribution": [0, 0], "out_of_distribution": [0, 0], "overall": [0, 0]}
    for cell in results["cells"]:
        inside = cell[ax_a] <= max_a and cell[ax_b] <= max_b
        for part in ("in_distribution" if inside else "out_of_distribution", "overall"):
            sums[part][0] += cell["correct"]
            sums[part][1] += cell["total"]
    return {part: correct / total for part, (correct, total) in sums.items() if total}


def model_index_values(card_data) -> dict:
    return {(r.dataset_config, r.metric_config): r.metric_value for r in card_data.eval_results}


# ---------------------------------------------------------------------------------------------
# The round trip


@pytest.mark.slow
def test_publish_round_trip_through_a_hub_server(trained_run, hub, tmp_path):
    out = cli_publish(hub, tmp_path, str(trained_run), "--repo-id", "org/tiny-abacus", "--max-shard-size", "50KB")
    assert "pushed org/tiny-abacus" in out

    repo = hub.repos["org/tiny-abacus"]
    files = repo.commits[repo.branches["main"]].files
    shards = sorted(p for p in files if p.endswith(".safetensors"))
    assert len(shards) > 1 and "model.safetensors.index.json" in files
    assert {"README.md", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
            "modeling_abacus.py", "configuration_abacus.py", "layers.py", "tokenization_arith.py", "recipe.yaml",
            "training/metrics.jsonl", "training/loss.png", "evaluation/eval/results.json",
            "evaluation/eval/heatmap.png"} <= set(files)
    # Weights and images went through git-LFS; text went inline.
    assert all(files[p].lfs_sha256 for p in shards + ["training/loss.png", "evaluation/eval/heatmap.png"])
    assert files["README.md"].lfs_sha256 is None and files["config.json"].lfs_sha256 is None
    assert "AutoModelForCausalLM" in json.loads(files["config.json"].content)["auto_map"]

    # The model-index holds the run's own numbers: the evaluation's per-cell counts.
    info = HfApi(endpoint=hub.url, token=False).model_info("org/tiny-abacus")
    assert info.card_data.library_name == "transformers" and info.card_data.license == "apache-2.0"
    assert info.card_data.pipeline_tag == "text-generation" and "custom_code" in info.card_data.tags
    results = json.loads((trained_run / "eval" / "results.json").read_text())
    expected = {("1-4", part): value for part, value in summary_from_cells(results).items()}
    assert model_index_values(info.card_data) == pytest.approx(expected)
    assert expected[("1-4", "in_distribution")] == 1.0  # the model has learned what it was trained on

    # The card's snippet, pasted as is, downloads the model and answers correctly; the downloaded
    # shards are the trained weights (the same logits as the model in the run folder).
    readme = files["README.md"].content.decode()
    snippet = python_snippet(readme)
    assert 'trust_remote_code=True' in snippet and "[::-1]" in snippet and '"org/tiny-abacus"' in snippet
    a, b = (int(n) for n in re.search(r"a, b = (\d+), (\d+)", snippet).groups())
    from hf_arith.evaluation.commands import load_for_inference

    model, tokenizer = load_for_inference(trained_run / "final", device="cpu")
    prompts = ["21+3=", "9+99=", "45+67="]
    with torch.no_grad():
        expected_logits = model(**tokenizer(prompts, padding=True, return_tensors="pt")).logits
    printed = run_as_hub_user(snippet + textwrap.dedent(f"""
        import torch
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        with torch.no_grad():
            torch.save(model.eval()(**tokenizer({prompts!r}, padding=True, return_tensors="pt")).logits, "logits.pt")
    """), hub, tmp_path)
    assert printed.strip().splitlines()[-1] == str(a + b)
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt", weights_only=True), expected_logits, rtol=0, atol=0)


@pytest.fixture
def hub_here(hub, monkeypatch):
    """The test Hub for `hf-arith publish` run in this process (faster than a new process):
    huggingface_hub read HF_ENDPOINT and HF_HUB_DISABLE_XET when it was imported, so they are set
    where it keeps them."""
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.url)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_DISABLE_XET", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub


@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")  # inside huggingface_hub's LFS PUT
def test_a_private_branch_and_an_unchanged_republish(untrained_run, hub_here, tmp_path):
    hub = hub_here
    args = ["publish", str(untrained_run), "--repo-id", "org/private-abacus", "--private", "--revision", "dev"]
    assert main(args) == 0
    api = HfApi(endpoint=hub.url, token=TOKEN)
    info = api.model_info("org/private-abacus", revision="dev")
    assert info.private and "model.safetensors" in {s.rfilename for s in info.siblings}
    assert api.list_repo_files("org/private-abacus") == [".gitattributes"]  # main is untouched
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).model_info("org/private-abacus", revision="dev")

    head = hub.repos["org/private-abacus"].branches["dev"]
    seen = len(hub.requests)
    assert main(args) == 0
    assert hub.repos["org/private-abacus"].branches["dev"] == head  # the same folder makes no commit
    assert not [r for r in hub.requests[seen:] if r[0] == "PUT"]  # and uploads nothing


@pytest.fixture(scope="module")
def olmo_run(tmp_path_factory):
    """A few steps of OLMo on prepared text, with in-loop perplexity and multiple choice."""
    from test_text_data import make_tokenizer, text_recipe, write_corpus

    from hf_arith.data.text import prepare_corpus

    root = tmp_path_factory.mktemp("olmo_publish")
    make_tokenizer(root / "tok")
    write_corpus(root / "corpus", count=40)
    raw = text_recipe(root / "data", root / "tok",
                      [{"name": "web", "paths": [str(root / "corpus" / "docs.jsonl")], "heldout_fraction": 0.2}],
                      sequence_length=32)
    raw.update(output_dir=str(root / "run"), model={"arch": "olmo", "config": {
        "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64}})
    raw["train"].update(max_steps=4)
    raw["eval"] = {"evaluators": [{"name": "perplexity"},
                                  {"name": "multiple_choice", "args": {"tasks": ["builtin:python_docs"]}}]}
    recipe = recipe_from_dict(raw)
    prepare_corpus(recipe.data)
    train(recipe)
    return root / "run"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
def test_native_olmo_publishes_without_remote_code(olmo_run, hub_here, tmp_path):
    hub = hub_here
    assert main(["publish", str(olmo_run), "--repo-id", "org/olmo-native", "--format", "native"]) == 0
    repo = hub.repos["org/olmo-native"]
    files = repo.commits[repo.branches["main"]].files
    assert not [p for p in files if p.endswith(".py")]
    config = json.loads(files["config.json"].content)
    assert config["model_type"] == "olmo" and "auto_map" not in config

    # The model-index holds the last in-loop evaluation of metrics.jsonl.
    records = [json.loads(line) for line in (olmo_run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "eval/perplexity/web/perplexity" in r][-1]
    card = ModelCard(files["README.md"].content.decode())
    values = {(r.dataset_type, r.metric_type, r.metric_config): r.metric_value for r in card.data.eval_results}
    assert values == {
        ("web", "perplexity", None): last["eval/perplexity/web/perplexity"],
        ("python_docs", "accuracy", "acc"): last["eval/multiple_choice/python_docs/acc"],
        ("python_docs", "accuracy", "acc_norm"): last["eval/multiple_choice/python_docs/acc_norm"],
    }
    assert "trust_remote_code" not in python_snippet(card.content)

    # transformers' own OlmoForCausalLM computes what our model computes.
    from hf_arith.hub import load_with_installed_classes

    ours = load_with_installed_classes(olmo_run / "final")
    ids = torch.tensor([[5, 17, 60, 3, 99, 41, 8]])
    with torch.no_grad():
        expected = ours(ids).logits[..., :ours.config.vocab_size]
        expected_tokens = ours.generate(ids, max_new_tokens=6, do_sample=False).tolist()
    # The card's snippet runs as pasted; then the model it loaded (no remote code) is compared.
    out = run_as_hub_user(python_snippet(card.content) + textwrap.dedent(f"""
        import json, torch
        model.eval()
        ids = torch.tensor({ids.tolist()})
        with torch.no_grad():
            torch.save(model(ids).logits[..., :{ours.config.vocab_size}], "native_logits.pt")
            tokens = model.generate(ids, max_new_tokens=6, do_sample=False).tolist()
        print(json.dumps({{"class": type(model).__name__, "tokens": tokens}}))
    """), hub, tmp_path)
    result = json.loads(out.splitlines()[-1])
    assert result["class"] == "OlmoForCausalLM" and result["tokens"] == expected_tokens
    assert out.splitlines()[0].startswith("The Python language")  # the snippet's own output
    native = torch.load(tmp_path / "native_logits.pt", weights_only=True)
    torch.testing.assert_close(native, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# The folder and the card, without a server


ALLOWED_TOP_LEVEL = {"torch", "transformers", "tokenizers", "__future__", "math", "warnings"}  # warnings: the old cache name


def imports_and_calls(path: Path) -> tuple[set[str], set[str], set[str], set[str]]:
    """(absolute top-level imports, relative imports, names called, `os.*` attributes used) of a file."""
    absolute, relative, called, os_uses = set(), set(), set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            absolute |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            (relative if node.level else absolute).add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            called.add(f"{node.func.value.id}.{node.func.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "os":
            os_uses.add(f"os.{node.value.attr}.{node.attr}")
    return absolute, relative, called, os_uses


@pytest.mark.parametrize("arch", ["abacus", "olmo"])
def test_published_code_imports_only_torch_transformers_and_siblings(untrained_run, tmp_path, arch):
    source = untrained_run
    if arch == "olmo":
        from hf_arith.tokenization import build_arith_tokenizer
        from hf_arith.training import build_model
        from hf_arith.training.recipe import ModelSpec

        source = tmp_path / "olmo_model"
        build_model(ModelSpec("olmo", {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
                                       "intermediate_size": 64, "abacus": True}),
                    build_arith_tokenizer()).save_pretrained(source)
        build_arith_tokenizer().save_pretrained(source)
    folder = publish(source, f"org/{arch}", local_dir=tmp_path / "published").folder
    code = sorted(folder.glob("*.py"))
    assert {p.name for p in code} >= {"layers.py", "tokenization_arith.py"} and len(code) == 4
    siblings = {p.stem for p in code}
    for path in code:
        absolute, relative, called, os_uses = imports_and_calls(path)
        assert absolute <= ALLOWED_TOP_LEVEL, (path.name, absolute)
        assert relative <= siblings, (path.name, relative)
        assert not called & {"open", "exec", "eval", "compile", "__import__", "torch.load", "torch.save"}, \
            (path.name, called)
        assert not os_uses, (path.name, os_uses)
        if path.name != "tokenization_arith.py":
            assert absolute <= {"torch", "transformers", "__future__", "math", "warnings"}, (path.name, absolute)


@pytest.mark.parametrize("code, offence", [
    ("import requests\n", "imports requests"),
    ("import urllib.request\n", "imports urllib.request"),
    ("from subprocess import run\n", "imports subprocess"),
    ("weights = open('/etc/passwd').read()\n", "calls open()"),
    ("import os\nos.system('curl x')\n", "imports os"),
    ("import os.path\n", "imports os.path"),
    ("from .missing import thing\n", "not a sibling"),
    ("exec('print(1)')\n", "calls exec()"),
    ("state = torch.load('weights.pt')\n", "uses torch.load"),
    ("import torch.hub\n", "imports torch.hub"),
    ("from transformers.utils.hub import cached_file\n", "imports transformers.utils.hub.cached_file"),
    ("from os import system\n", "imports os.system"),
    ("import os as o\n", "imports os"),
])
def test_check_remote_code_refuses_io_and_foreign_imports(tmp_path, code, offence):
    (tmp_path / "layers.py").write_text("import torch\nfrom transformers import PreTrainedModel\n")
    (tmp_path / "modeling_x.py").write_text("from .layers import torch\n" + code)
    with pytest.raises(HfArithError, match=re.escape(offence)):
        check_remote_code(tmp_path)


def test_check_remote_code_of_a_missing_folder_is_an_error_not_a_pass(tmp_path):
    with pytest.raises(HfArithError, match="no such folder"):
        check_remote_code(tmp_path / "nowhere")


def test_the_card_of_a_local_folder(untrained_run, tmp_path, capsys):
    assert main(["publish", str(untrained_run), "--repo-id", "me/abacus-addition", "--local-dir",
                 str(tmp_path / "out"), "--license", "mit", "--dataset", "me/addition-eval"]) == 0
    assert f"wrote {tmp_path / 'out'}" in capsys.readouterr().out
    readme = (tmp_path / "out" / "README.md").read_text()
    front_matter(readme)  # the Hub's metadata checks, model-index included
    card = ModelCard(readme)
    assert card.data.library_name == "transformers" and card.data.license == "mit"
    assert card.data.datasets == ["me/addition-eval"] and card.data.model_name == "abacus-addition"
    assert {"hf-arith", "abacus-embeddings", "addition", "custom_code"} <= set(card.data.tags)
    results = json.loads((untrained_run / "eval" / "results.json").read_text())
    expected = {("1-3", part): value for part, value in summary_from_cells(results).items()}
    assert model_index_values(card.data) == pytest.approx(expected)
    snippet = python_snippet(card.content)
    # The example is inside the training lengths (2 digits), written reversed, with remote code on.
    assert "a, b = 12, 45" in snippet and 'prompt = f"{str(a)[::-1]}+{str(b)[::-1]}="' in snippet
    assert snippet.count("trust_remote_code=True") == 2 and "print(answer[::-1])  # 57" in snippet
    for linked in re.findall(r"\]\(((?:evaluation|training)/[^)]+|recipe\.yaml)\)", card.content):
        assert (tmp_path / "out" / linked).is_file(), linked
    published = tmp_path / "out" / "evaluation" / "eval" / "results.json"
    assert published.read_bytes() == (untrained_run / "eval" / "results.json").read_bytes()


@pytest.mark.parametrize("positions, line", [
    # 40 rows (0..39) at inference offset 4: a number's digit i (1-based) uses row i + 4 <= 39.
    ({"abacus_num_positions": 40, "abacus_eval_offset": 4}, "| longest number | 35 digits (the Abacus table has 40 rows) |"),
    ({"embedding_positions": "none", "attention_positions": "rope"}, None),  # no table, so no limit to state
])
def test_the_card_states_the_longest_number_only_for_an_abacus_table(tmp_path, positions, line):
    from hf_arith.evaluation.results import GridResult
    from hf_arith.hub import find_run, render_card
    from hf_arith.modeling import AbacusConfig

    AbacusConfig(**positions).save_pretrained(tmp_path / "final")
    GridResult("addition", [1], [1], [[1]], [[1]]).to_json(tmp_path / "eval" / "results.json")
    content = render_card(find_run(tmp_path), json.loads((tmp_path / "final" / "config.json").read_text()),
                          "me/abacus").content
    if line is None:
        assert "longest number" not in content and "have no Abacus position" not in content
    else:
        assert line in content and "Numbers longer than 35 digits" in content


@pytest.mark.parametrize("evaluated", [True, False])
def test_the_card_reads_right_with_and_without_an_evaluation(tmp_path, evaluated):
    """A card without evaluation said both "Not evaluated yet" and "what the evaluation above measured"."""
    from hf_arith.evaluation.results import GridResult
    from hf_arith.hub import find_run, render_card
    from hf_arith.modeling import AbacusConfig

    AbacusConfig().save_pretrained(tmp_path / "final")
    if evaluated:
        GridResult("addition", [1], [1], [[1]], [[1]]).to_json(tmp_path / "eval" / "results.json")
    content = render_card(find_run(tmp_path), json.loads((tmp_path / "final" / "config.json").read_text()),
                          "me/abacus").content
    said = {line: line in content for line in ("Not evaluated yet", "the\n  evaluation above measured",
                                               "Only greedy decoding was evaluated", "has not\n  been measured yet")}
    assert said == {"Not evaluated yet": not evaluated, "the\n  evaluation above measured": evaluated,
                    "Only greedy decoding was evaluated": evaluated, "has not\n  been measured yet": not evaluated}


@pytest.mark.parametrize("task_args, lengths", [
    ({}, (1, 15)),  # the paper's multiplication trains on up to 15 digits (SPEC.md), the task's default
    ({"min_digits": 2, "max_digits": 12}, (2, 12)),
])
def test_the_card_states_the_training_lengths_of_the_task_trained(tmp_path, task_args, lengths):
    """A multiplication recipe without max_digits was carded as trained on up to 20 digits (the
    template's own fallback, addition's default)."""
    from hf_arith.hub import find_run, render_card
    from hf_arith.modeling import AbacusConfig

    AbacusConfig().save_pretrained(tmp_path / "final")
    (tmp_path / "final" / "recipe.yaml").write_text(json.dumps({"data": {"task": "multiplication",
                                                                         "task_args": task_args}}))
    content = render_card(find_run(tmp_path), json.loads((tmp_path / "final" / "config.json").read_text()),
                          "me/abacus").content
    low, high = lengths
    assert f"operands of {low}–{high} digits" in content
    assert f"trained on numbers of up to {high} digits" in content


def test_the_card_allows_the_characters_generate_accepts():
    """The card listed '-', which `hf-arith generate` refuses (no task has negative numbers)."""
    from hf_arith.hub.card import TEMPLATES
    from hf_arith.tasks.notation import _ALLOWED

    template = (TEMPLATES / "abacus.md").read_text()
    listed = re.search(r"written with digits, `([^`]+)` and the labels `a`–`j`", template)
    symbols = set(listed[1].split())
    assert symbols == set(_ALLOWED) - set("0123456789abcdefghij"), symbols


@pytest.mark.parametrize("data, region", [
    ({"task": "sorting", "task_args": {"max_count": 5, "max_digits": 8}}, [5, 8]),
    ({"task": "addition", "task_args": {"max_digits": 2}}, [2, 2]),
    ({}, [20, 20]),
])
def test_the_in_loop_entry_has_the_region_the_in_loop_grid_measured_with(data, region):
    from hf_arith.evaluation.saved_recipe import SavedRecipe
    from hf_arith.hub.card import _in_loop_grid

    in_loop = {"arith_grid": {"overall": 0.5, "in_distribution": 1.0, "out_of_distribution": 0.0}, "step": 7}
    entry = _in_loop_grid(SavedRecipe.from_contents({"data": data}), in_loop)
    # Sorting's axes are (count, digits): the card's bound reads "≤5x≤8".
    assert entry["train_max"] == region and entry["task"] == data.get("task", "addition")


def test_sharding_splits_the_weights(untrained_run, tmp_path):
    from safetensors.torch import load_file

    folder = publish(untrained_run, "org/shards", local_dir=tmp_path / "out", max_shard_size="40KB").folder
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and not (folder / "model.safetensors").exists()
    reassembled = {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    original = load_file(untrained_run / "final" / "model.safetensors")
    assert reassembled.keys() == original.keys() and all(torch.equal(reassembled[k], original[k]) for k in original)


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    return err[-1]


@pytest.mark.parametrize("args, message", [
    (["--repo-id", "no-owner"], "needs its owner"),
    (["--repo-id", "org/bad name"], "is not a Hub repository id"),
    (["--repo-id", "org/x"], "no Hugging Face token"),
    (["--repo-id", "org/x", "--format", "native", "--local-dir", "{tmp}/native"], "--format native is for OLMo"),
    (["--repo-id", "org/x", "--eval-dir", "{tmp}", "--local-dir", "{tmp}/e"], "has no results.json"),
])
def test_publish_errors_are_one_line(untrained_run, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no_token"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["publish", str(untrained_run), *args]) == 2
    line = error_line(capsys)
    assert message in line and "Traceback" not in line


def test_publish_refuses_a_folder_without_a_model_and_a_non_empty_destination(untrained_run, tmp_path):
    with pytest.raises(HfArithError, match="holds no model"):
        publish(tmp_path, "org/x", local_dir=tmp_path / "a")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(HfArithError, match="not an empty folder"):
        publish(untrained_run, "org/x", local_dir=tmp_path / "full")


def test_native_refuses_the_custom_tokenizer(tmp_path):
    from hf_arith.tokenization import build_arith_tokenizer
    from hf_arith.training import build_model
    from hf_arith.training.recipe import ModelSpec

    model = build_model(ModelSpec("olmo", {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
                                           "intermediate_size": 64}), build_arith_tokenizer())
    model.save_pretrained(tmp_path / "m")
    build_arith_tokenizer().save_pretrained(tmp_path / "m")
    with pytest.raises(HfArithError, match="ArithTokenizer"):
        publish(tmp_path / "m", "org/x", local_dir=tmp_path / "out", fmt="native")


def test_an_olmo_folder_publishes_without_asking_to_run_its_code(tmp_path, monkeypatch):
    """transformers asks "Do you wish to run the custom code? [y/N]" on stdin when it meets a custom
    model type that nobody said to trust, as the tokenizer of an OLMo run once made it do."""
    from transformers import PreTrainedTokenizerFast

    from hf_arith.tokenization import train_bpe_tokenizer
    from hf_arith.training import build_model
    from hf_arith.training.recipe import ModelSpec

    tokenizer = train_bpe_tokenizer(["the cat sat on the mat"] * 50, vocab_size=270, out=tmp_path / "m")
    build_model(ModelSpec("olmo", {"hidden_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
                                   "intermediate_size": 64}), tokenizer).save_pretrained(tmp_path / "m")
    prompts = []
    monkeypatch.setattr("builtins.input", lambda text="": prompts.append(text) or "n")
    folder = publish(tmp_path / "m", "org/olmo", local_dir=tmp_path / "out").folder
    assert prompts == []
    published = PreTrainedTokenizerFast.from_pretrained(folder)
    assert published("the mat sat").input_ids == tokenizer("the mat sat").input_ids
