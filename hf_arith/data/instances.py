"""A prepared text dataset on disk, read back for training: the manifest, the token files, and
a run's global order over the instances.

`hf_arith.data.text.prepare_corpus` writes the folder (format `hf-arith-text/1`): `manifest.json`,
`train.bin` and `heldout/<name>.bin` (flat token ids, `uint16` or `uint32`, `sequence_length` per
instance) and `tokenizer/`. Training reads it through `instance_source`: example i of a run is
instance `order[i]`, where `order` (`GlobalOrder`) concatenates the permutations
`numpy.random.Generator(numpy.random.PCG64(seed + epoch)).permutation(instances)`. Global batch b is
`order[span(b)]` (`BatchSchedule.span`) on any number of processes; the trainer saves the order
with the run (`data_order.npy`, `data_order.json`, `TextSource.save_order`).

Example:
    >>> source = InstanceSource(np.arange(12).reshape(4, 3), order=GlobalOrder(4, seed=0))
    >>> [row["index"] for row in source.examples(0, 4)] == GlobalOrder(4, seed=0).take(0, 4).tolist()
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hf_arith.atomic import replaced_atomically
from hf_arith.errors import HfArithError, RecipeError

logger = logging.getLogger("hf_arith.data")

MANIFEST = "manifest.json"
TRAIN_FILE = "train.bin"
HELDOUT_DIR = "heldout"
TOKENIZER_DIR = "tokenizer"
ORDER_FILE = "data_order.npy"
ORDER_INFO = "data_order.json"
FORMAT = "hf-arith-text/1"


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 of what fixes the token ids: the model (vocabulary, merges) and the added tokens of
    the tokenizer's `tokenizer.json`, or its vocabulary for a tokenizer without one.

    Example:
        >>> import tempfile
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> tokenizer, folder = build_arith_tokenizer(), tempfile.mkdtemp()
        >>> _ = tokenizer.save_pretrained(folder)
        >>> fingerprint = tokenizer_fingerprint(tokenizer)
        >>> len(fingerprint), fingerprint == tokenizer_fingerprint(type(tokenizer).from_pretrained(folder))
        (64, True)
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        key = {"model": state.get("model"), "added": [(t["id"], t["content"]) for t in state.get("added_tokens", [])]}
    else:
        key = {"vocab": sorted(tokenizer.get_vocab().items())}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()



def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a prepared folder; `HfArithError` saying how to make one when it is missing.

    Example (a folder written by `hf-arith data prepare recipes/olmo/tiny_cpu.yaml`)::

        manifest = read_manifest("data/olmo/tiny_cpu")
        manifest["sequence_length"], manifest["train"]["instances"], sorted(manifest["heldout"])
    """
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise HfArithError(f"{path} holds no prepared text data ({MANIFEST} missing); "
                           f"run `hf-arith data prepare RECIPE.yaml` first")
    manifest = json.loads(file.read_text())
    if manifest.get("format") != FORMAT:
        raise HfArithError(f"{file} has format {manifest.get('format')!r}, not {FORMAT!r}; prepare the data again")
    return manifest


def check_tokenizer(manifest: dict, tokenizer, path) -> None:
    """Refuses a tokenizer that is not the one the data was made with, or whose vocabulary does not
    fit the token files' dtype.

    Example:
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> tokenizer = build_arith_tokenizer()
        >>> manifest = {"dtype": "uint16", "tokenizer": {"source": "gpt2", "sha256": "0" * 64, "copy": "tokenizer"}}
        >>> check_tokenizer(manifest, tokenizer, "data/x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        hf_arith.errors.HfArithError: data/x was tokenized with another tokenizer (gpt2, sha256 000000000000) ...
        >>> manifest["tokenizer"]["sha256"] = tokenizer_fingerprint(tokenizer)
        >>> check_tokenizer(manifest, tokenizer, "data/x")  # the tokenizer the data was made with
    """
    dtype = np.dtype(manifest["dtype"])
    if len(tokenizer) > np.iinfo(dtype).max + 1:
        raise HfArithError(f"data.tokenizer has {len(tokenizer)} tokens but {path} stores {dtype.name} token ids "
                           f"(at most {np.iinfo(dtype).max + 1}); use the tokenizer the data was made with "
                           f"({manifest['tokenizer']['source']}) or prepare the data again")
    fingerprint = tokenizer_fingerprint(tokenizer)
    if fingerprint != manifest["tokenizer"]["sha256"]:
        raise HfArithError(f"{path} was tokenized with another tokenizer ({manifest['tokenizer']['source']}, sha256 "
                           f"{manifest['tokenizer']['sha256'][:12]}) than data.tokenizer ({fingerprint[:12]}); "
                           f"set data.tokenizer to {Path(path) / manifest['tokenizer']['copy']} "
                           f"or prepare the data again")


def open_instances(path: str | os.PathLike, entry: dict, manifest: dict) -> np.memmap:
    """The `(instances, sequence_length)` read-only memmap of one token file of a manifest (`entry`
    is `manifest["train"]` or `manifest["heldout"][name]`), after checking its size.

    Example (a folder written by `hf-arith data prepare recipes/olmo/tiny_cpu.yaml`)::

        manifest = read_manifest("data/olmo/tiny_cpu")
        train = open_instances("data/olmo/tiny_cpu", manifest["train"], manifest)
        train.shape  # (manifest["train"]["instances"], 128)
    """
    file = Path(path) / entry["file"]
    dtype, L = np.dtype(manifest["dtype"]), int(manifest["sequence_length"])
    if not file.is_file():
        raise HfArithError(f"{file} is missing; prepare the data again (`hf-arith data prepare`)")
    size, row = file.stat().st_size, L * dtype.itemsize
    if size % row:
        raise HfArithError(f"{file} is truncated or corrupt: {size} bytes is not a whole number of instances of "
                           f"{L} {dtype.name} tokens ({row} bytes); prepare the data again")
    if size // row != entry["instances"]:
        raise HfArithError(f"{file} holds {size // row} instances of {L} {dtype.name} tokens but {MANIFEST} says "
                           f"{entry['instances']}; the file was written with another dtype, is truncated, or comes "
                           f"from another run of prepare; prepare the data again")
    if entry["instances"] == 0:
        return np.zeros((0, L), dtype=dtype)
    return np.memmap(file, dtype=dtype, mode="r", shape=(entry["instances"], L))


def heldout_instances(path: str | os.PathLike, tokenizer=None, names: Sequence[str] | None = None) -> dict:
    """`{name: (memmap, manifest entry)}` of the held-out sets of a prepared folder (all of them,
    or `names`), checked against `tokenizer` when given.

    Example (a folder written by `hf-arith data prepare recipes/olmo/tiny_cpu.yaml`)::

        heldout = heldout_instances("data/olmo/tiny_cpu")
        {name: instances.shape for name, (instances, _) in heldout.items()}  # {'pydoc': (n, 128), ...}
    """
    manifest = read_manifest(path)
    if tokenizer is not None:
        check_tokenizer(manifest, tokenizer, path)
    available = manifest["heldout"]
    unknown = sorted(set(names or ()) - set(available))
    if unknown:
        raise HfArithError(f"held-out set(s) {unknown} are not in {path}; it has {sorted(available) or 'none'}")
    return {name: (open_instances(path, available[name], manifest), available[name]) for name in (names or available)}


# ---------------------------------------------------------------------------------------------
# The global order


class InstanceSource:
    """Fixed-length token instances (OLMo): example i is `instances[order[i]]`.

    `instances` is a 2-D array (a `numpy.memmap` of uint16/uint32 token ids, one row per instance);
    `order` maps the global example index to a row: the run's saved permutation (its length is the
    number of examples the run may use; epochs are concatenated by whoever builds it). Every token
    is a label (documents are separated by EOS inside instances, as in OLMo).

    Example:
        >>> source = InstanceSource(np.arange(12).reshape(4, 3), order=[2, 0, 3, 1])
        >>> [row["index"] for row in source.examples(0, 2)]
        [2, 0]
        >>> source.collate(source.examples(0, 2))["input_ids"].tolist()
        [[6, 7, 8], [0, 1, 2]]
    """

    def __init__(self, instances, order: Sequence[int]):
        if getattr(instances, "ndim", 0) != 2:
            raise ValueError(f"instances must be a 2-D array (instances x tokens), got shape {np.shape(instances)}")
        self.instances, self.order = instances, order
        self.sequence_length = int(instances.shape[1])

    def examples(self, start: int, stop: int) -> list[dict]:
        if stop > len(self.order):
            raise RecipeError(
                f"the run needs example {stop - 1} but the data order has {len(self.order)} entries; "
                f"prepare more data or epochs, or lower train.max_steps"
            )
        return [{"index": int(self.order[i]), "input_ids": np.asarray(self.instances[int(self.order[i])])}
                for i in range(start, stop)]

    def collate(self, examples: Sequence[dict]) -> dict[str, torch.Tensor]:
        input_ids = torch.from_numpy(np.stack([e["input_ids"] for e in examples]).astype(np.int64))
        return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids.clone()}

    def length(self, example: dict) -> int:
        return self.sequence_length


class GlobalOrder:
    """Example index -> instance index for a run: epoch e is
    `numpy.random.Generator(numpy.random.PCG64(seed + e)).permutation(num_instances)`, and epochs
    are concatenated, so example i is instance `perm_{i // n}[i % n]`. It covers `epochs` epochs.

    Example:
        >>> order = GlobalOrder(5, seed=3, epochs=2)
        >>> order[:5].tolist() == np.random.Generator(np.random.PCG64(3)).permutation(5).tolist()
        True
        >>> len(order), sorted(order[5:10].tolist())
        (10, [0, 1, 2, 3, 4])
    """

    def __init__(self, num_instances: int, seed: int, epochs: int = 1):
        if num_instances < 1:
            raise HfArithError("the data holds no instance; prepare more data")
        self.num_instances, self.seed, self.epochs = int(num_instances), int(seed), int(epochs)
        self._recent: dict[int, np.ndarray] = {}  # the last two epochs used (a batch spans at most two)

    def permutation(self, epoch: int) -> np.ndarray:
        """The instance permutation of `epoch`."""
        if epoch not in self._recent:
            if len(self._recent) >= 2:
                self._recent.pop(next(iter(self._recent)))
            rng = np.random.Generator(np.random.PCG64(self.seed + epoch))
            self._recent[epoch] = rng.permutation(self.num_instances)
        return self._recent[epoch]

    def __len__(self) -> int:
        return self.num_instances * self.epochs

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("GlobalOrder slices take no step")
            return self.take(start, stop)
        if not 0 <= key < len(self):
            raise IndexError(f"example {key} is outside the order's {len(self)} examples")
        epoch, i = divmod(int(key), self.num_instances)
        return int(self.permutation(epoch)[i])

    def take(self, start: int, stop: int) -> np.ndarray:
        """Instance indices of examples `start..stop-1` (int64).

        Example:
            >>> GlobalOrder(4, seed=0, epochs=2).take(2, 6).shape
            (4,)
        """
        n, parts = self.num_instances, []
        for epoch in range(start // n, (stop - 1) // n + 1 if stop > start else start // n):
            lo, hi = max(start, epoch * n) - epoch * n, min(stop, (epoch + 1) * n) - epoch * n
            parts.append(self.permutation(epoch)[lo:hi])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def covering(self, num_examples: int) -> GlobalOrder:
        """The same order with as many epochs as `num_examples` examples need (at least one)."""
        return GlobalOrder(self.num_instances, self.seed, max(1, math.ceil(num_examples / self.num_instances)))


class TextSource(InstanceSource):
    """Prepared instances in a run's `GlobalOrder`, with the hook that saves the order into the run.

    Example:
        >>> import tempfile
        >>> manifest = {"tokenizer": {"sha256": "0" * 64}, "sequence_length": 3}  # what save_order records
        >>> source = TextSource(np.arange(12).reshape(4, 3), GlobalOrder(4, seed=0), "data/x", manifest)
        >>> source.save_order(tempfile.mkdtemp(), num_examples=6).name
        'data_order.npy'
        >>> source.order.epochs  # 6 examples of 4 instances
        2
    """

    def __init__(self, instances, order: GlobalOrder, path: str | os.PathLike, manifest: dict):
        super().__init__(instances, order)
        self.path, self.manifest = str(path), manifest

    def save_order(self, run_dir: str | os.PathLike, num_examples: int, write: bool = True) -> Path:
        """Extends the order to cover `num_examples` (the run's examples; more epochs when needed) and,
        with `write` (the main process), saves it as `run_dir/data_order.npy` (instance index of every
        example) and `run_dir/data_order.json` (seed, data, epochs). A run resumed in the same
        folder must use the same data and seed.

        Example:
            >>> import tempfile
            >>> source = TextSource(np.arange(12).reshape(4, 3), GlobalOrder(4, seed=0), "data/x",
            ...                     {"tokenizer": {"sha256": "0" * 64}, "sequence_length": 3})
            >>> path = source.save_order(tempfile.mkdtemp(), num_examples=6)
            >>> np.load(path).tolist() == GlobalOrder(4, seed=0, epochs=2).take(0, 6).tolist()
            True
            >>> json.loads((path.parent / "data_order.json").read_text())["epochs"]
            2
        """
        self.order = order = self.order.covering(num_examples)
        run_dir = Path(run_dir)
        info = {"seed": order.seed, "num_instances": order.num_instances, "epochs": order.epochs,
                "examples": int(num_examples), "data_path": str(Path(self.path).resolve()),
                "tokenizer_sha256": self.manifest["tokenizer"]["sha256"],
                "sequence_length": self.manifest["sequence_length"]}
        if order.epochs > 1:
            logger.info(f"the run's {num_examples} examples make {num_examples / order.num_instances:.2f} epochs "
                        f"of the {order.num_instances} instances")
        if not write:
            return run_dir / ORDER_FILE
        saved = run_dir / ORDER_INFO
        if saved.is_file():
            before = json.loads(saved.read_text())
            keys = ("seed", "num_instances", "tokenizer_sha256", "sequence_length")
            changed = [k for k in keys if before.get(k) != info[k]]
            if changed:
                raise HfArithError(f"{run_dir} was trained on another data order ({', '.join(changed)} differ from "
                                   f"{saved}); resume with the run's data and seed, or choose another --output-dir")
        run_dir.mkdir(parents=True, exist_ok=True)
        dtype = np.uint32 if order.num_instances <= 2**32 else np.uint64
        with replaced_atomically(run_dir / ORDER_FILE) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(int(num_examples),))
            for start in range(0, int(num_examples), order.num_instances):
                stop = min(int(num_examples), start + order.num_instances)
                array[start:stop] = order.take(start, stop)
            array.flush()
            del array
        saved.write_text(json.dumps(info, indent=2) + "\n")
        return run_dir / ORDER_FILE


def instance_source(path: str | os.PathLike, seed: int, sequence_length: int | None = None,
                    tokenizer=None) -> TextSource:
    """The training source of a prepared folder: `TextSource` over `train.bin` in the
    `GlobalOrder(instances, seed)`. Checks the manifest, the file size, the sequence length and
    (when given) that `tokenizer` is the one the data was made with.

    Example:
        >>> import tempfile
        >>> from hf_arith.data.specs import DataSpec, PrepareSpec, TextSourceSpec
        >>> from hf_arith.data.text import prepare_corpus
        >>> from hf_arith.tokenization import build_arith_tokenizer
        >>> folder = Path(tempfile.mkdtemp())
        >>> for i in range(20):  # documents the arithmetic tokenizer can read
        ...     _ = (folder / f"{i}.txt").write_text("+".join(str(i * j) for j in range(30)))
        >>> spec = PrepareSpec([TextSourceSpec("sums", paths=[f"{folder}/*.txt"])])
        >>> data = DataSpec(kind="text", path=str(folder / "prepared"), sequence_length=16, prepare=spec)
        >>> manifest = prepare_corpus(data, tokenizer=build_arith_tokenizer())
        >>> source = instance_source(data.path, seed=0, sequence_length=16, tokenizer=build_arith_tokenizer())
        >>> source.collate(source.examples(0, 2))["input_ids"].shape
        torch.Size([2, 16])
        >>> source.examples(0, 1)[0]["index"] == GlobalOrder(manifest["train"]["instances"], seed=0)[0]
        True
    """
    manifest = read_manifest(path)
    if sequence_length is not None and int(sequence_length) != manifest["sequence_length"]:
        raise HfArithError(f"data.sequence_length={sequence_length} but {path} holds instances of "
                           f"{manifest['sequence_length']} tokens; set data.sequence_length: "
                           f"{manifest['sequence_length']} or prepare the data again")
    if tokenizer is not None:
        check_tokenizer(manifest, tokenizer, path)
    instances = open_instances(path, manifest["train"], manifest)
    return TextSource(instances, GlobalOrder(len(instances), seed), path, manifest)


__all__ = ["FORMAT", "GlobalOrder", "InstanceSource", "TextSource", "check_tokenizer", "heldout_instances",
           "instance_source", "open_instances", "read_manifest", "tokenizer_fingerprint"]
