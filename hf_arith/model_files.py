"""Checks of a saved model folder before transformers reads it, so that a missing, corrupt or
foreign file is one clear `HfArithError` naming the file and the fix instead of a deep traceback;
and the names of the layouts an OLMo checkpoint folder comes in (`CHECKPOINT_FORMATS`, `HUB_FORMATS`).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from hf_arith.model_files import check_model_folder
    >>> from hf_arith.modeling.configuration_abacus import AbacusConfig
    >>> from hf_arith.modeling.modeling_abacus import AbacusForCausalLM
    >>> from hf_arith.modeling.tokenization_arith import ArithTokenizer
    >>> folder = Path(tempfile.mkdtemp()) / "final"
    >>> config = AbacusConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1)
    >>> AbacusForCausalLM(config).save_pretrained(folder)
    >>> check_model_folder(folder)  # the weights, but no tokenizer next to them
    Traceback (most recent call last):
    hf_arith.errors.HfArithError: ...final has no tokenizer (tokenizer.json); save the run's tokenizer next to ...
    >>> _ = ArithTokenizer().save_pretrained(folder)
    >>> check_model_folder(folder).name
    'final'
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError, safe_open

from hf_arith.errors import HfArithError

# What `from_pretrained` reads: a tokenizer needs one of these next to the weights.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
PICKLED_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.bin")
# The layouts of an OLMo checkpoint folder (`hf-arith convert --to`, described in `hf_arith.convert`):
# hf-arith's own (remote code), transformers' native `olmo`, allenai/OLMo's. Named here, in a module
# without torch, so that the CLI offers them as choices before it imports anything heavy.
CHECKPOINT_FORMATS = ("ours", "native", "original")
# What `hf-arith publish --format` writes: the layouts transformers loads (allenai/OLMo's needs OLMo's code).
HUB_FORMATS = tuple(fmt for fmt in CHECKPOINT_FORMATS if fmt != "original")


def looks_like_repo_id(name: str) -> bool:
    """True for `org/name` spellings that are not local paths. A bare `name` is a path: the Hub's
    ids without an owner are old models (`gpt2`), never hf-arith's, and trying the Hub for a
    mistyped folder took a minute of retries offline.

    Example:
        >>> looks_like_repo_id("org/abacus-addition"), looks_like_repo_id("./runs/x"), looks_like_repo_id("final")
        (True, False, False)
    """
    parts = str(name).split("/")
    return len(parts) == 2 and all(parts) and not str(name).startswith((".", "/", "~"))


def check_finite(tensors, source) -> None:
    """`HfArithError` naming the first of `tensors` (name -> tensor pairs, e.g.
    `model.named_parameters()` or a state dict's `items()`) that holds NaN or inf: a diverged run's
    weights would otherwise be evaluated (0%), generated from (`<pad><pad>…`), converted or
    published as if they were a model.

    Example:
        >>> import torch
        >>> check_finite({"w": torch.ones(2)}.items(), "final")  # finite: no error
        >>> check_finite({"w": torch.tensor([1.0, float("nan")])}.items(), "runs/x/final")
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: runs/x/final holds non-finite weights (w has NaN or inf): ...
    """
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise HfArithError(f"{source} holds non-finite weights ({name} has NaN or inf): the run diverged or the "
                               f"file is corrupt; use the final/ of a run that ended normally, or an earlier "
                               f"checkpoint (its training continues with --resume RUN/checkpoints/step_N)")


def check_safetensors(path: Path) -> None:
    """`HfArithError` when `path` is not a readable safetensors file (truncated, corrupt, not one).

    Example:
        >>> import tempfile
        >>> import torch
        >>> from safetensors.torch import save_file
        >>> path = Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> save_file({"weight": torch.zeros(64)}, path)
        >>> check_safetensors(path)  # readable: no error
        >>> _ = path.write_bytes(path.read_bytes()[:-16])  # cut short, as by an interrupted copy
        >>> check_safetensors(path)
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: ...model.safetensors is not a readable safetensors file (...); ...
    """
    try:
        # numpy: the header alone is read, and the check stays quick (framework="pt" imports torch).
        with safe_open(str(path), framework="numpy") as f:
            names = list(f.keys())
    except (SafetensorError, OSError, ValueError) as err:
        raise HfArithError(f"{path} is not a readable safetensors file ({err}); it is corrupt or truncated: "
                           f"copy it again, or re-save the model from a checkpoint") from None
    # safe_open reads only the header; a file cut inside the tensor data still opens. The header
    # gives every tensor's byte range, so the file must reach the end of the last one.
    with path.open("rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_size))
    needed = 8 + header_size + max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    size = path.stat().st_size
    if size < needed:
        raise HfArithError(f"{path} is truncated ({size} bytes, its header needs {needed}); "
                           f"copy it again, or re-save the model from a checkpoint")
    if not names:
        raise HfArithError(f"{path} holds no tensors; re-save the model")


def check_model_folder(path: str | os.PathLike) -> Path | str:
    """`path` if it is a complete model folder (config.json, safetensors weights that read,
    a tokenizer), or a Hub repo id (passed through: the Hub reports its own problems).

    Example:
        >>> check_model_folder("org/abacus-addition")  # no such folder, but a Hub repo id
        'org/abacus-addition'
        >>> check_model_folder("./runs/nowhere")
        Traceback (most recent call last):
        hf_arith.errors.HfArithError: no model folder at ./runs/nowhere; give a folder written by `hf-arith train` ...
    """
    folder = Path(path)
    if not folder.exists():
        if looks_like_repo_id(str(path)):
            return str(path)
        raise HfArithError(f"no model folder at {path}; give a folder written by `hf-arith train` "
                           f"(e.g. runs/addition_cpu/final) or a Hub repo id ORG/NAME")
    if not folder.is_dir():
        raise HfArithError(f"{path} is a file; give the model folder that holds config.json")
    if not (folder / "config.json").is_file():
        hint = " (it looks like a training run: use its final/ folder)" if (folder / "final").is_dir() else ""
        raise HfArithError(f"{path} has no config.json{hint}; give a folder written by `save_pretrained`")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = [name for name in PICKLED_WEIGHTS if (folder / name).exists()]
        found = f" (found {', '.join(pickled)}: pickled weights are never loaded)" if pickled else ""
        raise HfArithError(f"{path} has no .safetensors weights{found}; give the folder that holds them (as "
                           f"`hf-arith train` writes final/), or re-save the model with save_pretrained")
    for file in weights:
        check_safetensors(file)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise HfArithError(f"{path} has no tokenizer (tokenizer.json); save the run's tokenizer next to the model "
                           f"(`tokenizer.save_pretrained(folder)`), e.g. copy it from the run's final/ folder")
    return folder


__all__ = ["CHECKPOINT_FORMATS", "HUB_FORMATS", "check_model_folder", "check_safetensors", "looks_like_repo_id"]
