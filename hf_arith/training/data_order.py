"""Which examples made a global batch of a finished or running text (OLMo) run: `hf-arith data
inspect RUN --batch B`.

It reads what the run saved, its `recipe.yaml` (batch schedule, data folder) and
`data_order.npy` (`hf_arith.data.instances.TextSource.save_order`), so the answer holds whatever
number of processes the run used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

from hf_arith.data.instances import ORDER_FILE, ORDER_INFO, open_instances, read_manifest
from hf_arith.errors import HfArithError

from .optim import BatchSchedule
from .recipe import load_recipe


def inspect_batch(run_dir: str | os.PathLike, batch: int) -> dict:
    """Which instances made global batch `batch` of a run, and their text: reads the run's
    `recipe.yaml` (batch schedule, data folder) and saved `data_order.npy`, so it holds whatever the
    number of processes the run used.

    Returns `{"batch", "start", "stop", "data_path", "examples": [{"example", "instance", "epoch",
    "text"}, ...]}`.

    Example (a run of `hf-arith train recipes/olmo/tiny_cpu.yaml`)::

        batch = inspect_batch("runs/olmo_tiny_cpu", 3)
        [e["instance"] for e in batch["examples"]]  # the instances of global batch 3, in order
        print(batch["examples"][0]["text"])
    """
    run_dir = Path(run_dir)
    for name in ("recipe.yaml", ORDER_FILE, ORDER_INFO):
        if not (run_dir / name).is_file():
            raise HfArithError(f"{run_dir} has no {name}; give the output folder of a `hf-arith train` run "
                               f"on text data")
    recipe = load_recipe(run_dir / "recipe.yaml")
    info = json.loads((run_dir / ORDER_INFO).read_text())
    order = np.load(run_dir / ORDER_FILE, mmap_mode="r")
    schedule = BatchSchedule.from_spec(recipe.train, recipe.data.sequence_length)
    if batch < 0 or batch >= recipe.train.max_steps:
        raise HfArithError(f"--batch {batch} is outside the run's {recipe.train.max_steps} steps "
                           f"(0..{recipe.train.max_steps - 1})")
    start, stop = schedule.span(batch)
    if stop > len(order):
        raise HfArithError(f"{run_dir / ORDER_FILE} covers {len(order)} examples, not batch {batch} "
                           f"({start}..{stop - 1}); "
                           f"it was saved for a shorter run")
    data_path = info["data_path"]
    manifest = read_manifest(data_path)
    if manifest["tokenizer"]["sha256"] != info["tokenizer_sha256"]:
        raise HfArithError(f"{data_path} was prepared again since the run (its tokenizer differs); the run's instances "
                           f"are gone")
    instances = open_instances(data_path, manifest["train"], manifest)
    if len(instances) != info["num_instances"]:
        raise HfArithError(f"{data_path} holds {len(instances)} instances, the run had {info['num_instances']}; "
                           f"it was prepared again since the run")
    tokenizer = AutoTokenizer.from_pretrained(Path(data_path) / manifest["tokenizer"]["copy"])
    examples = []
    for i in range(start, stop):
        index = int(order[i])
        examples.append({"example": i, "instance": index, "epoch": i // info["num_instances"],
                         "text": tokenizer.decode(np.asarray(instances[index]).tolist())})
    return {"batch": batch, "start": start, "stop": stop, "data_path": data_path, "examples": examples}


__all__ = ["inspect_batch"]
