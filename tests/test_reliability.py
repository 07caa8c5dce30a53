"""Training that survives kills, NaNs, full disks and hostile checkpoints with nothing lost.

References: an uninterrupted `hf-arith train` process (the kill test compares bit for bit), the
kernel's own errors (SIGKILL, EFBIG from RLIMIT_FSIZE, ENOSPC/EROFS from a tmpfs in a user
namespace), a pickle whose payload demonstrably creates a file when unpickled, and SPEC.md's
definition of Abacus positions.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from cli_forker import Forker
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from hf_arith.cli import main
from hf_arith.errors import HfArithError
from hf_arith.model_files import check_safetensors
from hf_arith.training import recipe_from_dict, train
from hf_arith.training.metrics_log import read_metrics

TINY_CONFIG = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 1,
               "num_recurrences": 2, "abacus_num_positions": 16, "abacus_max_k": 4, "max_position_embeddings": 32}
# One thread everywhere: the runs compared bit for bit compute alike, and CI's two cores are shared.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def tiny_raw(**train):
    return {
        "seed": 3, "model": {"arch": "abacus", "config": dict(TINY_CONFIG)},
        "data": {"task": "addition", "task_args": {"max_digits": 2}},
        "train": {"max_steps": 12, "micro_batch_size": 16, "global_batch_size": 16, "lr": 3e-3, "log_every": 1,
                  "report_to": [], "progress_bar": False, **train},
        "eval": {"evaluators": []},
    }


def write_recipe(path: Path, raw: dict) -> Path:
    path.write_text(json.dumps(raw))  # JSON is YAML
    return path


def one_error_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in text, text[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# What a run folder must look like after a kill at any moment


def assert_complete_checkpoint(folder: Path):
    from accelerate.utils import load

    state = json.loads((folder / "trainer_state.json").read_text())
    assert state["step"] == int(folder.name.split("_")[1])
    check_safetensors(folder / "model.safetensors")
    torch.load(folder / "optimizer.bin", weights_only=True)
    torch.load(folder / "scheduler.bin", weights_only=True)
    load(folder / "random_states_0.pkl")
    assert (folder / "recipe.yaml").is_file()


def assert_complete_final(folder: Path):
    assert {"config.json", "model.safetensors", "tokenizer.json", "recipe.yaml"} <= {p.name for p in folder.iterdir()}
    check_safetensors(folder / "model.safetensors")


def assert_consistent(out: Path) -> dict:
    """Every `step_N` is complete, `latest` names one of them, `final/` is whole or absent, the log
    parses. Returns what is there, for the checks of a particular kill."""
    root = out / "checkpoints"
    steps = sorted(root.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    for checkpoint in steps:
        assert_complete_checkpoint(checkpoint)
    latest = (root / "latest").read_text().strip() if (root / "latest").is_file() else None
    assert latest is None or latest in [p.name for p in steps], (latest, steps)
    if (out / "final").exists():
        assert_complete_final(out / "final")
    records = read_metrics(out / "metrics.jsonl")
    hidden = sorted(p.name for p in [*root.glob(".*"), *out.glob(".*")])
    return {"steps": [p.name for p in steps], "latest": latest, "hidden": hidden, "records": records}


# ---------------------------------------------------------------------------------------------
# Kill anywhere


# Saves every 3 steps, logs every 2 (a resumed run must log the same averages), evaluates with
# every save (a kill right after a save must not lose the evaluation of its step).
KILL_RAW = tiny_raw(max_steps=24, schedule="wcc", warmup=2, cooldown=6, log_every=2, save_every=3, keep_last=1,
                    eval_every=3)
KILL_RAW["eval"] = {"evaluators": [{"name": "arith_loss", "args": {"samples": 32}}]}


def last_logged_step(out: Path) -> int:
    return max((r["step"] for r in read_metrics(out / "metrics.jsonl")), default=0)


def kill_when_logged(pid: int, out: Path, step: int, rng: random.Random, alive) -> None:
    """SIGKILL `pid` once metrics.jsonl shows `step`, after a random few milliseconds."""
    deadline = time.monotonic() + 120
    while last_logged_step(out) < step:
        assert alive(), f"the run ended before step {step}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.02))
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def forker():
    forker = Forker(env=ENV)
    yield forker
    forker.close()


@pytest.mark.slow
def test_killed_anywhere_and_resumed_ends_bit_identical(tmp_path, forker):
    recipe = write_recipe(tmp_path / "tiny.yaml", KILL_RAW)
    ref, run = tmp_path / "reference", tmp_path / "run"
    reference = subprocess.Popen(["hf-arith", "train", recipe, "--output-dir", ref], env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    argv = ["train", recipe, "--output-dir", run, "--resume", "latest"]
    rng = random.Random(20240517)

    # 1. A plain `hf-arith train` process, killed from outside at a random step.
    first = subprocess.Popen(["hf-arith", *map(str, argv)], env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    kill_when_logged(first.pid, run, rng.randint(2, 5), rng, alive=lambda: first.poll() is None)
    assert first.wait() == -signal.SIGKILL
    assert_consistent(run)

    def killed(fault=None, at_step=None):
        started = forker.start(argv, log=tmp_path / "run.log", fault=fault)
        if at_step is not None:
            kill_when_logged(started.pid, run, at_step, rng, alive=lambda: True)
        assert forker.wait(started).returncode == -signal.SIGKILL, (tmp_path / "run.log").read_text()[-3000:]
        return assert_consistent(run)

    # 2. Between writing a checkpoint and renaming it into place: a leftover temporary folder.
    seen = killed({"call": "replace", "match": r"step_\d+", "when": "before", "nth": rng.randint(1, 2)})
    assert any(name.startswith(".tmp_step_") for name in seen["hidden"]), seen
    # 3. Renamed, `latest` not moved yet: it still names an older checkpoint (or none yet).
    seen = killed({"call": "replace", "match": r"step_\d+", "when": "after"})
    assert seen["latest"] in [None, *seen["steps"][:-1]], seen
    # 4. `latest` moved, the old one not deleted yet (keep_last=1): both complete.
    seen = killed({"call": "replace", "match": "latest", "when": "after"})
    assert len(seen["steps"]) >= 2 and seen["latest"] == seen["steps"][-1], seen
    # 5. Halfway through deleting the old one: the half is under a hidden name, not a step_N.
    seen = killed({"call": "rmtree", "match": r"\.trash_step_\d+"})
    assert any(name.startswith(".trash_step_") for name in seen["hidden"]) and seen["latest"] == seen["steps"][-1]
    # 6. From outside again, at a random step (maybe inside a save).
    killed(at_step=last_logged_step(run) + rng.randint(1, 3))
    # 7. The final model written, not renamed into place: no final/ at all.
    seen = killed({"call": "replace", "match": "final", "when": "before"})
    assert ".final.tmp" in seen["hidden"] and not (run / "final").exists()
    assert forker.run(argv, log=tmp_path / "run.log").returncode == 0
    # 8. A rerun that rewrites final/: killed before the old one moves aside (old one whole), and
    # after (none; the old one whole aside).
    killed({"call": "replace", "match": r"\.final\.old", "when": "before"})
    assert_complete_final(run / "final")
    seen = killed({"call": "replace", "match": r"\.final\.old", "when": "after"})
    assert not (run / "final").exists() and ".final.old" in seen["hidden"]
    assert_complete_final(run / ".final.old")
    assert forker.run(argv, log=tmp_path / "run.log").returncode == 0

    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    end = assert_consistent(run)
    assert end["steps"] == ["step_24"] and (run / "loss.png").is_file()
    assert [p.name for p in (run / "checkpoints").glob(".*")] == [] and list(run.glob(".final*")) == []
    # Bit for bit: weights, optimizer and scheduler state, RNG states, data position, the log.
    a, b = load_file(ref / "final" / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    checkpoints = [d / "checkpoints" / "step_24" for d in (ref, run)]
    optim = [torch.load(c / "optimizer.bin", weights_only=True) for c in checkpoints]
    assert optim[0]["param_groups"] == optim[1]["param_groups"]
    for pa, pb in zip(optim[0]["state"].values(), optim[1]["state"].values(), strict=True):
        assert all(torch.equal(pa[k], pb[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert [torch.load(c / "scheduler.bin", weights_only=True) for c in checkpoints].count(
        torch.load(checkpoints[0] / "scheduler.bin", weights_only=True)) == 2
    from accelerate.utils import load

    rngs = [load(c / "random_states_0.pkl") for c in checkpoints]
    assert torch.equal(rngs[0]["torch_manual_seed"], rngs[1]["torch_manual_seed"])
    assert rngs[0]["random_state"] == rngs[1]["random_state"]
    states = [json.loads((c / "trainer_state.json").read_text()) for c in checkpoints]
    for state in states:
        del state["elapsed_s"], state["log_window"]["time"]
    assert states[0] == states[1] and states[0]["step"] == 24 and states[0]["examples"] == 24 * 16

    def log(folder):  # wall-clock fields differ; every other number must not
        return [{k: v for k, v in r.items() if k not in ("examples_per_s", "tokens_per_s", "elapsed_s")}
                for r in read_metrics(folder / "metrics.jsonl")]

    expected = log(ref)
    assert [r["step"] for r in expected if "loss" in r] == list(range(2, 25, 2))
    assert [r["step"] for r in expected if "eval/arith_loss/loss" in r] == list(range(3, 25, 3))
    assert log(run) == expected  # no record lost, none repeated, every value equal


def fake_checkpoint(root: Path, step: int) -> Path:
    folder = root / "checkpoints" / f"step_{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"step": step}))
    return folder


def test_retirement_keeps_latest_and_the_newest_before_it(tmp_path):
    from hf_arith.training.checkpoints import find_checkpoint, list_checkpoints, retire_checkpoints

    for step in (2, 4, 6, 8, 10):
        fake_checkpoint(tmp_path, step)
    (tmp_path / "checkpoints" / ".tmp_step_12").mkdir()  # a save killed halfway
    (tmp_path / "checkpoints" / ".trash_step_0").mkdir()  # a delete killed halfway
    # No `latest` yet (killed before its first pointer write): the newest complete checkpoint.
    assert find_checkpoint(tmp_path, "latest").name == "step_10"
    # A run rewound to step_6 has just saved step_6: 8 and 10 belong to the old timeline.
    (tmp_path / "checkpoints" / "latest").write_text("step_6\n")
    retire_checkpoints(tmp_path, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_4", "step_6"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_4", "step_6"]
    retire_checkpoints(tmp_path, keep_last=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_6"]


def test_a_torn_last_metrics_line_is_dropped_and_the_log_rewritten_whole(tmp_path):
    from hf_arith.training.metrics_log import truncate_metrics

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    truncate_metrics(path, step=1)
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n' and not list(tmp_path.glob(".*"))


def test_sharded_metadata_is_unpickled_as_dcp_types_only(tmp_path):
    """torch.distributed.checkpoint reads `.metadata` with plain pickle; hf-arith reads it first."""
    import pickle
    import warnings

    import torch.distributed.checkpoint as dcp

    from hf_arith.training.checkpoints import check_sharded_metadata

    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single process, no process group: DCP says so
        dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp_path / "step_1" / "sharded")
    check_sharded_metadata(tmp_path / "step_1" / "sharded" / ".metadata")  # DCP's own file passes

    marker = tmp_path / "pwned"
    (tmp_path / "step_1" / "sharded" / ".metadata").write_bytes(pickle.dumps(CreatesAFile(marker)))
    with pytest.raises(HfArithError, match=f"asks to run {open.__module__}.open when unpickled"):
        check_sharded_metadata(tmp_path / "step_1" / "sharded" / ".metadata")
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# NaN / inf


def poison_from(monkeypatch, first_bad: int):
    """From the `first_bad`-th update on, every loss (hence every gradient) is NaN."""
    from hf_arith.training import trainer

    real, calls = trainer.train_step, []

    def poisoned(accelerator, model, forward, batches, recipe, step):
        calls.append(1)
        if len(calls) < first_bad:
            return real(accelerator, model, forward, batches, recipe, step)

        def nan_forward(**kwargs):
            out = forward(**kwargs)
            out.loss = out.loss * float("nan")
            return out

        return real(accelerator, model, nan_forward, batches, recipe, step)

    monkeypatch.setattr(trainer, "train_step", poisoned)


def test_nonfinite_steps_are_skipped_counted_and_stop_the_run_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    raw = tiny_raw(max_steps=16, save_every=2, keep_last=1, max_consecutive_nonfinite=3)
    reference = train(recipe_from_dict({**raw, "output_dir": str(tmp_path / "reference")}))

    out = tmp_path / "run"
    recipe = recipe_from_dict({**raw, "output_dir": str(out)})
    poison_from(monkeypatch, first_bad=7)
    with pytest.raises(HfArithError) as caught:
        train(recipe)
    message = str(caught.value)
    assert "\n" not in message and "4 steps in a row (7..10)" in message, message
    assert "train.max_consecutive_nonfinite=3" in message and "lower train.lr (now 0.003)" in message
    # No step from step_6 was finite, so step_4 is the last checkpoint known to be good: the
    # deletion of step_4 (keep_last=1) waited for one, and the saves due at 8 and 10 never happened.
    assert "nothing was saved after step_6, and already the first step from it was not finite" in message
    good = out / "checkpoints" / "step_4"
    assert "so step_4, before it, is the last good checkpoint" in message and message.endswith(f"--resume {good}")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_4", "step_6"]
    assert not (out / "final").exists()
    records = {r["step"]: r for r in read_metrics(out / "metrics.jsonl")}
    assert [records[s]["skipped_steps"] for s in range(1, 11)] == [0] * 6 + [1, 2, 3, 4]
    assert all(records[s]["loss"] != records[s]["loss"] for s in range(7, 11))  # NaN, logged as such

    # The kept checkpoint is the good one: resumed without the poison, the run ends exactly as an
    # uninterrupted one (the skipped updates changed nothing).
    monkeypatch.undo()
    final = train(recipe, resume=good)
    a, b = load_file(reference / "model.safetensors"), load_file(final / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_short_streak_is_survived_and_counted(tmp_path, monkeypatch):
    from hf_arith.training import trainer

    real, calls = trainer.train_step, []

    def two_bad_steps(accelerator, model, forward, batches, recipe, step):
        calls.append(1)
        if len(calls) not in (3, 4):
            return real(accelerator, model, forward, batches, recipe, step)
        return real(accelerator, model, lambda **kw: _nan_loss(forward(**kw)), batches, recipe, step)

    monkeypatch.setattr(trainer, "train_step", two_bad_steps)
    out = tmp_path / "run"
    train(recipe_from_dict({**tiny_raw(max_steps=6, save_every=3, max_consecutive_nonfinite=2),
                            "output_dir": str(out)}))
    records = read_metrics(out / "metrics.jsonl")
    assert [r["skipped_steps"] for r in records] == [0, 0, 1, 2, 2, 2]
    # The save due at step 3 (inside the streak) waited for the next finite step.
    assert json.loads((out / "checkpoints" / "step_6" / "trainer_state.json").read_text())["skipped_steps"] == 2
    assert (out / "final" / "model.safetensors").is_file()


def _nan_loss(out):
    out.loss = out.loss * float("nan")
    return out


def test_an_absurd_learning_rate_stops_the_command_with_one_line(tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_raw(max_steps=30, save_every=1, grad_clip=None))
    status = main(["train", str(recipe), "--output-dir", str(tmp_path / "run"), "--set", "train.lr=1e30",
                   "--set", "train.max_consecutive_nonfinite=2"])
    line = one_error_line(capsys.readouterr().err)
    assert status == 2 and "training diverged" in line and "lower train.lr (now 1e+30)" in line
    assert "set train.grad_clip" in line
    # The first update (lr 1e30) ruins the weights while every number stays finite; step_1 is
    # saved, but the error knows no step from it was finite and sends the user back to the start.
    assert "nothing was saved after step_1, and already the first step from it was not finite" in line
    assert line.endswith(f"then continue with --resume {tmp_path / 'run' / 'checkpoints' / 'step_1'}, or train "
                         f"again in a new --output-dir if that fails at once")
    assert not (tmp_path / "run" / "final").exists()
    assert read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["skipped_steps"] == 3


# ---------------------------------------------------------------------------------------------
# Full disk, read-only disk


def test_an_output_folder_that_cannot_be_written_fails_before_training(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "run"  # ENOTDIR from the kernel, even for root
    recipe = write_recipe(tmp_path / "r.yaml", tiny_raw())
    assert main(["train", str(recipe), "--output-dir", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write to the output folder {out} (Not a directory)" in line and "--output-dir" in line


def test_too_little_free_space_fails_before_training(tmp_path, capsys, monkeypatch):
    from hf_arith.training import checkpoints

    # Simulated: a disk with 1 MiB free (the real one is in test_a_real_full_and_read_only_disk).
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: usage._replace(free=2**20))
    recipe = write_recipe(tmp_path / "r.yaml", tiny_raw(save_every=5))
    assert main(["train", str(recipe), "--output-dir", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "has 1.0 MiB free, but a checkpoint and the final model of this run need about 1.2 MiB" in line
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # not a step was trained


@pytest.mark.slow
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, forker):
    """RLIMIT_FSIZE makes the kernel refuse (EFBIG) every write past 80 kB: the model (52 kB)
    fits, the optimizer state (105 kB) does not, so the save fails halfway through."""
    recipe = write_recipe(tmp_path / "r.yaml", tiny_raw(max_steps=4, save_every=2, keep_last=1))
    out, log = tmp_path / "run", tmp_path / "run.log"
    assert forker.run(["train", recipe, "--output-dir", out], log=log).returncode == 0
    before = {p.name: p.read_bytes() for p in (out / "checkpoints" / "step_4").iterdir()}
    more = ["train", recipe, "--output-dir", out, "--resume", "latest", "--max-steps", "8"]
    assert forker.run(more, log=log, file_size_limit=80_000).returncode == 2
    line = one_error_line(log.read_text())
    assert f"could not write checkpoint {out / 'checkpoints' / 'step_6'}: " in line  # then torch's own words
    assert f"the previous checkpoint {out / 'checkpoints' / 'step_4'} is intact" in line
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_4"]  # no temporary left
    assert (out / "checkpoints" / "latest").read_text() == "step_4\n"
    assert {p.name: p.read_bytes() for p in (out / "checkpoints" / "step_4").iterdir()} == before
    assert forker.run(more, log=log).returncode == 0  # room again: it continues from step_4
    assert assert_consistent(out)["steps"] == ["step_8"]

    # The final model: no checkpoints, a limit below the weights' 52 kB.
    log.write_text("")
    no_saves = ["train", recipe, "--output-dir", tmp_path / "final_run", "--save-every", "0"]
    assert forker.run(no_saves, log=log, file_size_limit=40_000).returncode == 2
    assert f"could not write the final model {tmp_path / 'final_run' / 'final'}" in one_error_line(log.read_text())
    assert sorted(p.name for p in (tmp_path / "final_run").iterdir()) == ["metrics.jsonl", "recipe.yaml"]


def _user_namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                          capture_output=True)
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _user_namespaces_work(), reason="needs `unshare -rm` and tmpfs mounts (user namespaces)")
def test_a_real_full_and_read_only_disk(tmp_path):
    """Real ENOSPC and EROFS: a 20 MB tmpfs and a read-only tmpfs, mounted in a user namespace."""
    big = tiny_raw(max_steps=3, save_every=1, keep_last=1, micro_batch_size=4, global_batch_size=4)
    # ~1.05M parameters: a checkpoint is ~12.6 MB, so the 20 MB disk passes the check before
    # training (one checkpoint and the final model, 17.9 MB) and fills up at the second save.
    big["model"]["config"].update(hidden_size=256, intermediate_size=1024, num_attention_heads=4)
    recipe = write_recipe(tmp_path / "big.yaml", big)
    report = tmp_path / "report"
    report.mkdir()
    script = f"""
        set -u
        mkdir -p {tmp_path}/full {tmp_path}/ro
        mount -t tmpfs -o size=20m tmpfs {tmp_path}/full
        mount -t tmpfs -o ro,size=1m tmpfs {tmp_path}/ro
        hf-arith train {recipe} --output-dir {tmp_path}/full/run 2> {report}/full.err; echo $? > {report}/full.rc
        ls -a {tmp_path}/full/run/checkpoints > {report}/full.ls
        cat {tmp_path}/full/run/checkpoints/latest > {report}/full.latest
        hf-arith train {recipe} --output-dir {tmp_path}/ro/run 2> {report}/ro.err; echo $? > {report}/ro.rc
    """
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    full_err = (report / "full.err").read_text()
    line = one_error_line(full_err)
    assert (report / "full.rc").read_text().strip() == "2"
    assert f"could not write checkpoint {tmp_path}/full/run/checkpoints/step_2" in line, line
    assert f"the previous checkpoint {tmp_path}/full/run/checkpoints/step_1 is intact" in line
    assert (report / "full.ls").read_text().split() == [".", "..", "latest", "step_1"]
    assert (report / "full.latest").read_text() == "step_1\n"

    line = one_error_line((report / "ro.err").read_text())
    assert (report / "ro.rc").read_text().strip() == "2"
    assert f"cannot write to the output folder {tmp_path}/ro/run (Read-only file system)" in line, line


# ---------------------------------------------------------------------------------------------
# Hostile checkpoints: nothing is unpickled as code


class CreatesAFile:
    """Unpickling this calls `open(path, "w")`: the file appears if the payload runs."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpointed")
    recipe = write_recipe(folder / "r.yaml", tiny_raw(max_steps=2, save_every=2))
    train(recipe_from_dict({**json.loads(recipe.read_text()), "output_dir": str(folder / "run")}))
    return recipe, folder / "run"


@pytest.mark.parametrize("name", ["optimizer.bin", "scheduler.bin", "random_states_0.pkl"])
def test_a_malicious_pickle_in_a_checkpoint_never_runs(checkpointed_run, tmp_path, capsys, name):
    recipe, run = checkpointed_run
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    marker = tmp_path / "pwned"
    torch.save({"state": CreatesAFile(marker)}, copy / "checkpoints" / "step_2" / name)
    # The payload is real: unpickled the unsafe way, it creates the file.
    torch.load(copy / "checkpoints" / "step_2" / name, weights_only=False)
    assert marker.exists()
    marker.unlink()

    status = main(["train", str(recipe), "--output-dir", str(copy), "--resume", "latest", "--max-steps", "3"])
    line = one_error_line(capsys.readouterr().err)
    assert status == 2 and not marker.exists()
    assert f"checkpoint file {copy / 'checkpoints' / 'step_2' / name} cannot be loaded" in line
    assert f"asks to run {open.__module__}.open when unpickled" in line and "weights_only=True" in line


def test_a_truncated_optimizer_state_is_named(checkpointed_run, tmp_path, capsys):
    recipe, run = checkpointed_run
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    optimizer = copy / "checkpoints" / "step_2" / "optimizer.bin"
    optimizer.write_bytes(optimizer.read_bytes()[:1000])
    assert main(["train", str(recipe), "--output-dir", str(copy), "--resume", "latest", "--max-steps", "3"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"checkpoint file {optimizer} cannot be loaded: it is corrupt" in line


# ---------------------------------------------------------------------------------------------
# Properties


VOCAB = ["<pad>", "<unk>", "<bos>", "<eos>", *"0123456789", *"+-x*=,:", *"abcdefghij"]


def spec_abacus_positions(tokens: list[str]) -> list[int]:
    """SPEC.md: a digit's position is its 1-based index in its run of digits; every other token 0."""
    positions, run = [], 0
    for token in tokens:
        run = run + 1 if token.isdigit() else 0
        positions.append(run)
    return positions


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(st.sampled_from(VOCAB), max_size=40), min_size=1, max_size=4), left=st.booleans())
def test_abacus_positions_of_any_token_sequence_with_special_tokens_anywhere(rows, left):
    from hf_arith.modeling.layers import compute_abacus_positions

    width = max(len(r) for r in rows) or 1
    padded = [(["<pad>"] * (width - len(r)) + r) if left else (r + ["<pad>"] * (width - len(r))) for r in rows]
    ids = torch.tensor([[VOCAB.index(t) for t in r] for r in padded])
    assert compute_abacus_positions(ids, list(range(4, 14))).tolist() == [spec_abacus_positions(r) for r in padded]


@settings(max_examples=100, deadline=None)
@given(negative=st.integers(max_value=-1), other=st.integers(min_value=0))
def test_negative_operands_are_refused_by_name(negative, other):
    from hf_arith.tasks import AdditionTask, MultiplicationTask, SortingTask

    for call in (lambda: AdditionTask().format(negative, other), lambda: MultiplicationTask().format(other, negative),
                 lambda: SortingTask().format([other, negative])):
        with pytest.raises(ValueError, match=f"non-negative, got {negative}"):
            call()
