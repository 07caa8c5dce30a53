"""Publishing to the Hugging Face Hub: the exact folder a user downloads, its model card, the push.

`publish(source, repo_id)` is `hf-arith publish`. It finds the model and its run (`find_run`),
writes the folder (`assemble`): weights as safetensors (sharded above `max_shard_size`), the config
with `auto_map`, the modeling code that `save_pretrained` copies from `hf_arith.modeling`, the
tokenizer, the generation config, `recipe.yaml`, the training log and loss curve, each evaluation's
`results.json` and heatmap, and a README rendered from `model_cards/<arch>.md`
(`render_card`, metadata through `huggingface_hub.ModelCardData`/`EvalResult`). It refuses code
that could do more than compute (`check_remote_code`), then uploads the folder with
`HfApi.create_repo` + `upload_folder` (`push`). OLMo models without custom parts can be written in
transformers' native `olmo` format, which loads without `trust_remote_code`.

Example (a run of `hf-arith train recipes/abacus/addition_cpu.yaml`)::

    from hf_arith.hub import publish

    publish("runs/addition_cpu", "me/abacus-addition", local_dir="exports/abacus")  # write only: .folder
    publish("runs/addition_cpu", "me/abacus-addition")  # needs a token (`hf auth login` or HF_TOKEN): .url
"""

from .card import eval_results, render_card
from .publish import Published, assemble, load_with_installed_classes, publish, push
from .remote_code import check_remote_code
from .run_files import RunFiles, find_run

__all__ = ["Published", "RunFiles", "assemble", "check_remote_code", "eval_results", "find_run",
           "load_with_installed_classes", "publish", "push", "render_card"]
