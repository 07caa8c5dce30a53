"""`hf-arith publish`: the exact folder a Hub user downloads (model files through this
installation's classes, tokenizer, recipe, training log, evaluations, card), then one upload.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import HFValidationError, validate_repo_id
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from hf_arith.atomic import folder_written_atomically
from hf_arith.convert import generation_config_for, to_native
from hf_arith.errors import HfArithError
from hf_arith.model_files import HUB_FORMATS, check_finite, check_model_folder
from hf_arith.modeling import CAUSAL_LMS
from hf_arith.modeling.tokenization_arith import ArithTokenizer

from .card import CARD_TEMPLATES, grid_evaluations, render_card
from .remote_code import check_remote_code
from .run_files import RunFiles, find_run, read_config


def load_with_installed_classes(model_dir: Path):
    """The model of `model_dir` through this installation's classes, not the folder's own code (so
    that `save_pretrained` copies the code of this installation), or transformers' for a native
    model type. (`hf_arith.evaluation.commands.load_for_inference` loads through the folder's code,
    as a user would.)

    Example (a trained run's model folder)::

        model = load_with_installed_classes(Path("runs/addition_cpu/final"))  # an AbacusForCausalLM, in eval mode
    """
    model_type = read_config(model_dir).get("model_type")
    if model_type not in CARD_TEMPLATES:
        raise HfArithError(f"{model_dir} holds a {model_type!r} model; publish knows abacus and OLMo models "
                           f"(model_type {', '.join(repr(t) for t in CARD_TEMPLATES)})")
    cls = CAUSAL_LMS.get(model_type, AutoModelForCausalLM)  # transformers' own olmo loads as itself
    # Mismatched sizes are loaded (not refused) so that `_restore_legacy_scalars` can reshape FIRE's
    # scalars saved by older releases; any other mismatch is refused below.
    # transformers' load report would call them re-initialised; missing keys are reported below.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = cls.from_pretrained(model_dir, output_loading_info=True, ignore_mismatched_sizes=True)
    finally:
        transformers_logging.set_verbosity(verbosity)
    _restore_legacy_scalars(model, model_dir, info.get("mismatched_keys") or [])
    check_finite(model.named_parameters(), model_dir)
    if info.get("missing_keys"):  # transformers would initialise them afresh and publish that
        missing = sorted(info["missing_keys"])
        fix = ("`hf-arith convert` it to the current layout first (`--to ours`)" if model_type == "arith_olmo"
               else "it was saved by an older hf-arith with other tensor names; retrain or load it with its own code")
        raise HfArithError(f"{model_dir} lacks tensors this hf-arith's {model_type} model has ({', '.join(missing[:3])}"
                           f"{', ...' if len(missing) > 3 else ''}); {fix}")
    return model.eval()


def _restore_legacy_scalars(model, model_dir: Path, mismatched) -> None:
    """Copies into `model` the tensors saved as 0-dim scalars where the model now has shape (1,)
    (FIRE's `c` and `threshold_scale` before 2026-12-08); transformers' loader re-initialises
    them instead, and has no public hook for a reshape. Any other size mismatch is an error."""
    wrong = [(name, tuple(saved), tuple(now)) for name, saved, now in mismatched
             if not (tuple(saved) == () and tuple(now) == (1,))]
    if wrong:
        name, saved, now = wrong[0]
        raise HfArithError(f"{model_dir} holds {name} with shape {saved}, but this hf-arith's model has {now}; "
                           f"load it with its own code (AutoModelForCausalLM with trust_remote_code=True)")
    if not mismatched:
        return
    files = sorted(model_dir.glob("*.safetensors"))
    params = dict(model.named_parameters())
    for file in files:
        with safe_open(file, framework="pt") as f:
            for name in set(f.keys()) & {name for name, _, _ in mismatched}:
                params[name].data.copy_(f.get_tensor(name).reshape(1))


def load_tokenizer(model_dir: Path):
    """The tokenizer saved with the model: our `ArithTokenizer` when its config names it (so that
    `save_pretrained` copies this installation's file), else a transformers class; tokenizer code
    from anywhere else is refused rather than run.

    Example:
        >>> import tempfile
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> folder = Path(tempfile.mkdtemp())  # a model folder, as `hf-arith train` writes it
        >>> _ = build_arith_tokenizer().save_pretrained(folder)
        >>> type(load_tokenizer(folder)).__name__
        'ArithTokenizer'
    """
    config_path = model_dir / "tokenizer_config.json"
    if not config_path.is_file():
        raise HfArithError(f"{model_dir} has no tokenizer (tokenizer_config.json); save the tokenizer next to the "
                           f"model (as `hf-arith train` does) before publishing")
    auto = (json.loads(config_path.read_text()).get("auto_map") or {}).get("AutoTokenizer")
    if auto is None:
        # AutoTokenizer reads the model's config too; through AutoConfig, an hf-arith model type is
        # custom code, and transformers would stop to ask "Do you wish to run the custom code? [y/N]".
        # Our own config class instead: no prompt, and no code of the folder runs (as in load_with_installed_classes).
        model_type = read_config(model_dir).get("model_type")
        config = CAUSAL_LMS[model_type].config_class.from_pretrained(model_dir) if model_type in CAUSAL_LMS else None
        return AutoTokenizer.from_pretrained(model_dir, config=config)
    names = auto if isinstance(auto, list) else [auto]
    if not any(str(n).endswith("tokenization_arith.ArithTokenizer") for n in names if n):
        raise HfArithError(f"{model_dir}'s tokenizer is custom code ({auto}) that hf-arith does not ship; "
                           f"save a standard tokenizer (e.g. PreTrainedTokenizerFast) with the model")

    return ArithTokenizer.from_pretrained(model_dir)


def save_model(model_dir: Path, out: Path, fmt: str, max_shard_size: str) -> dict:
    """Writes weights, config, generation config, modeling code and tokenizer of `model_dir` to
    `out` in the format `fmt`; returns the saved `config.json`.

    `native` (OLMo only) converts to transformers' `OlmoForCausalLM` (`hf_arith.convert.to_native`),
    with the padding rows listed in `suppress_tokens` as `hf-arith convert` does.
    """
    model_type = read_config(model_dir).get("model_type")
    if fmt == "native" and model_type != "arith_olmo":
        raise HfArithError(f"--format native is for OLMo models; this is a {model_type!r} model, whose code only "
                           f"exists in hf-arith: publish it with --format ours")
    model, tokenizer = load_with_installed_classes(model_dir), load_tokenizer(model_dir)
    if fmt == "native":
        if isinstance(tokenizer, ArithTokenizer):
            raise HfArithError("--format native publishes no code, but this model's tokenizer is hf-arith's "
                               "ArithTokenizer (custom code); publish it with --format ours")
        generation = generation_config_for(model_dir, model.config, "native")
        model = to_native(model)
        model.generation_config = generation
    model.save_pretrained(out, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(out)
    return read_config(out)



def assemble(source: str | os.PathLike, out_dir: str | os.PathLike, repo_id: str, fmt: str = "ours",
             max_shard_size: str = "5GB", eval_dirs=(), license: str = "apache-2.0", datasets=()) -> Path:
    """Writes the folder a Hub user downloads to `out_dir` (new or empty): model files (see
    `save_model`), `recipe.yaml`, `training/metrics.jsonl` and `training/loss.png`,
    `evaluation/<name>/results.json` and `heatmap.png` per evaluation, and `README.md`, the model
    card. The code in it passes `check_remote_code`.

    Example (a run of `hf-arith train recipes/abacus/addition_cpu.yaml`, evaluated into RUN/eval)::

        out = assemble("runs/addition_cpu", "exports/abacus", "me/abacus-addition")
        sorted(p.name for p in out.iterdir())  # model files, tokenizer, recipe.yaml, training/, evaluation/, README.md
    """
    if fmt not in HUB_FORMATS:
        raise HfArithError(f"unknown format {fmt!r}; choose one of {', '.join(HUB_FORMATS)}")
    check_repo_id(repo_id)
    run = find_run(source, eval_dirs)
    check_model_folder(run.model_dir)  # weights missing or cut short: named here, not deep in transformers
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HfArithError(f"{out} already exists and is not an empty folder; choose a new --local-dir")
    with folder_written_atomically(out) as tmp:  # no half-written folder that looks publishable
        _write_folder(run, tmp, repo_id, fmt, max_shard_size, license, datasets)
    return out


def _write_folder(run: RunFiles, out: Path, repo_id: str, fmt: str, max_shard_size: str, license: str,
                  datasets) -> None:
    config = save_model(run.model_dir, out, fmt, max_shard_size)
    files = {}
    if (run.model_dir / "recipe.yaml").is_file():
        shutil.copy2(run.model_dir / "recipe.yaml", out / "recipe.yaml")
        files["recipe"] = "recipe.yaml"
    for key, path, name in (("metrics", run.metrics, "metrics.jsonl"), ("loss_curve", run.loss_curve, "loss.png")):
        if path is not None:
            (out / "training").mkdir(exist_ok=True)
            shutil.copy2(path, out / "training" / name)
            files[key] = f"training/{name}"
    evaluations = grid_evaluations(run.eval_dirs)
    for ev in evaluations:
        folder = out / "evaluation" / ev["name"]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ev["folder"] / "results.json", folder / "results.json")
        ev["results_path"] = f"evaluation/{ev['name']}/results.json"
        if ev["heatmap"] is not None:
            shutil.copy2(ev["heatmap"], folder / "heatmap.png")
            ev["heatmap_path"] = f"evaluation/{ev['name']}/heatmap.png"
    card = render_card(run, config, repo_id, license, datasets, evaluations, files)
    card.save(out / "README.md")
    check_remote_code(out)


def check_repo_id(repo_id: str) -> None:
    """`HfArithError` unless `repo_id` is a valid `ORG/NAME`.

    Example:
        >>> check_repo_id("me/abacus-addition")
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HfArithError(f"--repo-id {repo_id!r} is not a Hub repository id ({err}); write ORG/NAME") from None
    if repo_id.count("/") != 1:
        raise HfArithError(f"--repo-id {repo_id!r} needs its owner: write ORG/NAME, e.g. me/abacus-addition")


def hub_token() -> str:
    """The token `huggingface_hub` finds (HF_TOKEN, or `hf auth login`); `HfArithError` when none."""
    token = get_token()
    if not token:
        raise HfArithError("no Hugging Face token: run `hf auth login` or set HF_TOKEN, or pass --local-dir DIR to "
                           "write the folder without pushing")
    return token


def push(folder: str | os.PathLike, repo_id: str, private: bool = False, revision: str | None = None,
         token: str | None = None) -> str:
    """Uploads `folder` as the whole content of `repo_id` (created if missing; `revision` is a
    branch, created from main if missing) in one commit: files the folder no longer has are
    deleted, unchanged files are not uploaded again. Returns the commit URL.

    Example (needs a token with write access: `hf auth login` or HF_TOKEN)::

        push("exports/abacus", "me/abacus-addition", private=True)  # the commit URL
    """
    api = HfApi(token=token or hub_token())
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                   commit_message=f"Upload {repo_id.split('/')[-1]} with hf-arith",
                                   delete_patterns=["*"])
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        message = " ".join(str(err).split())
        raise HfArithError(f"the Hub refused the upload to {repo_id} (HTTP {status}: {message}); check the token's "
                           f"write access to that namespace") from None
    return commit.commit_url


@dataclass
class Published:
    """What `publish` did: the folder it wrote (`local_dir`) or the commit URL it pushed."""

    folder: Path | None
    url: str | None


def publish(source: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
            local_dir: str | os.PathLike | None = None, fmt: str = "ours", max_shard_size: str = "5GB",
            eval_dirs=(), license: str = "apache-2.0", datasets=()) -> Published:
    """`hf-arith publish`: `assemble` the folder for `repo_id` and `push` it; with `local_dir`,
    write the folder there and push nothing. Without `local_dir` a token must be present.

    Example (a run of `hf-arith train recipes/abacus/addition_cpu.yaml`)::

        publish("runs/addition_cpu", "me/abacus-addition", local_dir="exports/abacus").folder  # writes only
        publish("runs/addition_cpu", "me/abacus-addition", private=True).url  # pushes: needs a token
    """
    kwargs = {"fmt": fmt, "max_shard_size": max_shard_size, "eval_dirs": eval_dirs, "license": license,
              "datasets": datasets}
    if local_dir is not None:
        return Published(assemble(source, local_dir, repo_id, **kwargs), None)
    check_repo_id(repo_id)
    token = hub_token()  # before the work, so that a missing token fails at once
    with tempfile.TemporaryDirectory(prefix="hf_arith_publish_") as tmp:
        folder = assemble(source, Path(tmp) / "repo", repo_id, **kwargs)
        return Published(None, push(folder, repo_id, private, revision, token))


__all__ = ["Published", "assemble", "load_tokenizer", "load_with_installed_classes", "publish", "push",
           "save_model"]
