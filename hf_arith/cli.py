"""`hf-arith`: the command line. It parses arguments and calls library functions, nothing more.

Each subcommand is a pair of functions, registered in `COMMANDS`:
`add_<name>(parser)` declares its arguments, `run_<name>(args)` calls the library. Adding one is
writing those two and one line in `COMMANDS`.

A user error (`HfArithError`, a missing file, a bad value) prints one line `error: ...` to stderr
and exits with status 2; `--debug` shows the traceback instead.

Example:
    $ hf-arith train recipes/abacus/addition_cpu.yaml --max-steps 100 --set train.lr=3e-4
    $ accelerate launch -m hf_arith train recipes/abacus/addition_paper.yaml --resume latest
    $ hf-arith eval runs/addition_cpu/final --task addition --lengths 1-30 --samples 20
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys

from hf_arith.atomic import NO_ROOM
from hf_arith.errors import HfArithError
from hf_arith.model_files import CHECKPOINT_FORMATS, HUB_FORMATS
from hf_arith.evaluation.defaults import DEFAULT_EVAL_SEED, DEFAULT_LENGTHS, DEFAULT_SAMPLES
from hf_arith.tasks import DEFAULT_TASK

# ---------------------------------------------------------------------------------------------
# What every (sub)command parser shares


class Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake reported like every other error: one line `error: ...`,
    exit status 2 (argparse's own report is the usage block, then a line of its own format)."""

    def error(self, message: str):
        usage_error(self.prog, message)


def usage_error(prog: str, message: str):
    """Exits with status 2 after one line naming the command, the mistake and where the usage is."""
    sys.stderr.write(f"error: {prog}: {message}; see {prog} --help\n")
    sys.exit(2)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends `(default: ...)` to an option's help, unless the help already says what the default
    is (a default of None means "decided later": the help says by what)."""

    def _get_help_string(self, action):
        if "default" in (action.help or "") or action.default in (None, False, [], argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def debug_option() -> argparse.ArgumentParser:
    """The parent parser of every (sub)command: `--debug` is accepted before or after any of them."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite `hf-arith --debug <command>`.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    return common


def add_command(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand's parser: its help line is also its description, options show their defaults,
    and `--debug` works after it too."""
    return sub.add_parser(name, help=help_text, description=help_text, parents=[debug_option()],
                          formatter_class=HelpFormatter)


def at_least(least: int):
    """An argparse `type`: a whole number >= `least`, refused at parse time (before any import),
    e.g. `--samples 0` that would write an empty evaluation.

    Example:
        >>> at_least(1)("3")
        3
        >>> at_least(1)("0")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: 0 is too small: give a whole number of at least 1
    """
    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is too small: give a whole number of at least {least}")
        return value

    return whole_number


def shard_size(text: str) -> str:
    """An argparse `type`: a size as `save_pretrained(max_shard_size=...)` reads it (a number and
    KB, MB, GB or TB), checked before the model is loaded.

    Example:
        >>> shard_size("500MB")
        '500MB'
        >>> shard_size("5 bananas")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: '5 bananas' is not a size; write a number and a unit, e.g. 5GB, 500MB or 50KB ...
    """
    size = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*[KMGT]B\s*", text, flags=re.IGNORECASE)
    if size is None or float(size[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write a number and a unit, e.g. 5GB, 500MB or "
                                         f"50KB (units: KB, MB, GB, TB)")
    return text


POSITIVE, NON_NEGATIVE = at_least(1), at_least(0)

# ---------------------------------------------------------------------------------------------
# train


def add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/abacus/addition_cpu.yaml")
    parser.add_argument("--output-dir", help="where checkpoints, logs and final/ go (default: the recipe's "
                                             "output_dir, else runs/RECIPE_NAME)")
    parser.add_argument("--max-steps", type=POSITIVE, help="optimizer steps (default: the recipe's train.max_steps)")
    parser.add_argument("--save-every", type=NON_NEGATIVE,
                        help="checkpoint every N steps, 0: never (default: the recipe's train.save_every)")
    parser.add_argument("--seed", type=NON_NEGATIVE, help="random seed (default: the recipe's seed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any recipe key, value parsed as YAML (repeatable), e.g. --set train.lr=3e-4 "
                             "(default: none)")
    parser.add_argument("--resume", metavar="latest|PATH",
                        help="continue from the run's latest checkpoint or a checkpoint folder (default: a new run)")


def train_overrides(args: argparse.Namespace) -> list[str]:
    """`--set` values followed by the dedicated flags (which win), as `key=value` overrides.

    Example:
        >>> train_overrides(argparse.Namespace(overrides=["train.lr=1e-3"], output_dir="runs/a",
        ...                                    max_steps=5, save_every=None, seed=None))
        ['train.lr=1e-3', 'output_dir=runs/a', 'train.max_steps=5']
    """
    overrides = list(args.overrides)
    flags = {"output_dir": args.output_dir, "train.max_steps": args.max_steps,
             "train.save_every": args.save_every, "seed": args.seed}
    # `output_dir` goes through YAML; quote it so that a path like `1e3` or `null` stays a string.
    overrides += [f"{key}={value!r}" if key == "output_dir" and isinstance(value, str) and _needs_quotes(value)
                  else f"{key}={value}" for key, value in flags.items() if value is not None]
    return overrides


def _needs_quotes(text: str) -> bool:
    from hf_arith.dataclass_yaml import load_yaml  # reads the override as the recipe loader will

    return not isinstance(load_yaml(text), str) if text.strip() else True


def run_train(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from hf_arith.training import TrainingStopped, load_recipe, train

    recipe = load_recipe(args.recipe, train_overrides(args))
    try:
        final = train(recipe, resume=args.resume)
    except TrainingStopped as stopped:  # SIGTERM or Ctrl-C: the step finished and was saved
        state = PartialState()
        if state.is_main_process:
            print(f"{stopped}; continue with: {resume_command(args, recipe.output_dir, state.num_processes)}",
                  file=sys.stderr)
        state.destroy_process_group()
        return stopped.exit_status
    state = PartialState()
    if state.is_main_process:
        print(f"saved {final}")
    # Leaving with the group alive lets gloo's and DeepSpeed's threads die with the interpreter,
    # which aborts a process now and then ("terminate called without an active exception").
    state.destroy_process_group()
    return 0


def resume_command(args: argparse.Namespace, output_dir: str, num_processes: int = 1) -> str:
    """The command that continues this `train` run from its newest checkpoint: the same recipe,
    flags and overrides (a resume that changes them would train another run), `--resume latest`.

    Example:
        >>> args = build_parser().parse_args(["train", "r.yaml", "--max-steps", "50", "--set", "train.lr=1e-3"])
        >>> resume_command(args, "runs/r")
        'hf-arith train r.yaml --output-dir runs/r --max-steps 50 --set train.lr=1e-3 --resume latest'
    """
    argv = ["train", args.recipe, "--output-dir", str(output_dir)]
    for flag, value in (("--max-steps", args.max_steps), ("--save-every", args.save_every), ("--seed", args.seed)):
        if value is not None:
            argv += [flag, str(value)]
    for override in args.overrides:
        argv += ["--set", override]
    # Under `accelerate launch` only the launcher knows its own options: the user repeats them.
    launcher = "hf-arith" if num_processes == 1 else "accelerate launch ... -m hf_arith"
    return f"{launcher} {shlex.join([*argv, '--resume', 'latest'])}"


# ---------------------------------------------------------------------------------------------
# eval / generate / data (library: hf_arith.evaluation.commands)


def add_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model folder (e.g. runs/addition_cpu/final) or Hub id ORG/NAME")
    parser.add_argument("--task", help=f"addition, multiplication or sorting (default: the model's recipe, else "
                                       f"{DEFAULT_TASK})")
    parser.add_argument("--lengths", default=DEFAULT_LENGTHS,
                        help="operand lengths of the grid: 1-40, 1-40x1-20 or 101-160:equal")
    parser.add_argument("--samples", type=POSITIVE, default=DEFAULT_SAMPLES, help="problems per cell")
    parser.add_argument("--out", default="eval", help="folder for results.json and heatmap.png")
    parser.add_argument("--batch-size", type=POSITIVE, default=256, help="problems decoded together")
    parser.add_argument("--num-recurrences", type=POSITIVE,
                        help="apply the looped block this many times (default: as trained)")
    parser.add_argument("--abacus-offset", type=NON_NEGATIVE,
                        help="override the offset added to digit positions (default: the one calibrated in training)")
    parser.add_argument("--seed", type=NON_NEGATIVE,
                        help=f"evaluation seed, disjoint from training streams (default: the fixed evaluation seed, "
                             f"{DEFAULT_EVAL_SEED})")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.add_argument("--train-max-digits", type=POSITIVE,
                        help="in-distribution bound (default: from the model's recipe)")
    parser.add_argument("--eval-set", help="evaluate a set saved by `hf-arith data eval-set`, or a Hub dataset "
                                           "(default: draw the problems from --lengths, --samples and --seed)")


def run_eval(args: argparse.Namespace) -> int:
    from hf_arith.evaluation.lengths import parse_lengths
    from hf_arith.model_files import check_model_folder
    from hf_arith.tasks import get_task

    # Named before torch and transformers load (seconds): the folder, the grid, the task.
    check_model_folder(args.model)
    parse_lengths(args.lengths)
    if args.task is not None:
        get_task(args.task)
    from hf_arith.evaluation.commands import run_eval as evaluate

    kwargs = {"seed": args.seed} if args.seed is not None else {}
    evaluate(args.model, task=args.task, lengths=args.lengths, samples=args.samples, out_dir=args.out,
             batch_size=args.batch_size, num_recurrences=args.num_recurrences, device=args.device,
             train_max_digits=args.train_max_digits, eval_set_path=args.eval_set, abacus_offset=args.abacus_offset,
             **kwargs)
    return 0


def add_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", help="folders written by `hf-arith eval --out` (or their results.json)")
    parser.add_argument("--label", dest="labels", action="append", metavar="NAME",
                        help="a name for each result, in order (repeatable; default: the folder names)")
    parser.add_argument("--out", help="also draw accuracy by length of every result into this PNG (default: no plot)")
    parser.add_argument("--columns", help="lengths to show one by one, e.g. 11-15,20,30 (default: the five after "
                                          "training, then every fifth)")


def run_compare(args: argparse.Namespace) -> int:
    from hf_arith.evaluation.compare import compare
    from hf_arith.evaluation.lengths import parse_range

    columns = None if args.columns is None else parse_range(args.columns)
    print(compare(args.results, labels=args.labels, out=args.out, columns=columns))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model folder or Hub id ORG/NAME")
    # "*", checked in `parse`: a problem such as "-5+3" looks like an option to argparse, and
    # `parse` hands it back as a problem (refused by name) instead of "problems are required".
    parser.add_argument("problems", nargs="*", metavar="PROBLEM",
                        help='problems in normal notation, e.g. "123+4567" "12x34" "3,12" (sorting)')
    parser.add_argument("--num-recurrences", type=POSITIVE,
                        help="apply the looped block this many times (default: as trained)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")


def run_generate(args: argparse.Namespace) -> int:
    from hf_arith.model_files import check_model_folder
    from hf_arith.tasks import to_model_format

    # Named before torch and transformers load (seconds): the folder, what no model can read.
    check_model_folder(args.model)
    for problem in args.problems:
        try:
            to_model_format(problem)
        except ValueError as err:
            raise ValueError(f"problem {problem!r}: {err}") from None
    from hf_arith.evaluation.commands import run_generate as generate

    generate(args.model, args.problems, num_recurrences=args.num_recurrences, device=args.device)
    return 0


def add_data(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{eval-set,prepare,inspect}",
                                help="what to build; hf-arith data COMMAND --help for its options")
    eval_set = add_command(sub, "eval-set", "materialise an evaluation set (the problems `hf-arith eval` draws)")
    eval_set.add_argument("--task", default=DEFAULT_TASK, help="addition, multiplication or sorting")
    eval_set.add_argument("--lengths", default=DEFAULT_LENGTHS,
                          help="operand lengths of the grid: 1-40, 1-40x1-20 or 101-160:equal")
    eval_set.add_argument("--samples", type=POSITIVE, default=DEFAULT_SAMPLES, help="problems per cell")
    eval_set.add_argument("--seed", type=NON_NEGATIVE,
                          help=f"evaluation seed, disjoint from training streams (default: the fixed evaluation "
                               f"seed, {DEFAULT_EVAL_SEED}, as `hf-arith eval` draws)")
    eval_set.add_argument("--out", default="eval_set", help="a .jsonl or .parquet file, or a folder")
    eval_set.add_argument("--push-to-hub", metavar="USER/NAME",
                          help="also upload it as this Hub dataset (default: keep it local)")
    prepare = add_command(sub, "prepare", "run a text recipe's data pipeline: instance files and a manifest")
    prepare.add_argument("recipe", help="recipe with data.kind: text and data.prepare, e.g. recipes/olmo/tiny_cpu.yaml")
    prepare.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a recipe key (repeatable), e.g. --set data.prepare.num_proc=2 (default: none)")
    inspect = add_command(sub, "inspect", "the instances (and their text) of one global batch of a text run")
    inspect.add_argument("run_dir", help="a run's output folder (it holds recipe.yaml and data_order.npy)")
    inspect.add_argument("--batch", type=NON_NEGATIVE, required=True, help="global batch (optimizer step), from 0")
    inspect.add_argument("--json", action="store_true", help="one JSON object per instance instead of text")


def run_data(args: argparse.Namespace) -> int:
    if args.data_command == "prepare":
        return run_data_prepare(args)
    if args.data_command == "inspect":
        return run_data_inspect(args)
    from hf_arith.evaluation.lengths import cells_of
    from hf_arith.tasks import get_task

    # Named before datasets and torch load (seconds).
    get_task(args.task)
    cells_of(args.lengths)
    from hf_arith.evaluation.commands import run_data_eval_set

    kwargs = {"seed": args.seed} if args.seed is not None else {}
    run_data_eval_set(args.task, args.lengths, args.samples, out=args.out, push_to_hub=args.push_to_hub, **kwargs)
    return 0


def run_data_prepare(args: argparse.Namespace) -> int:
    from hf_arith.data.text import prepare_corpus
    from hf_arith.training import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    manifest = prepare_corpus(recipe.data)
    train = manifest["train"]
    print(f"wrote {recipe.data.path}: {train['instances']} instances of {manifest['sequence_length']} tokens "
          f"({manifest['dtype']}, {train['documents']} documents, {train['dropped_tokens']} tokens dropped)")
    for name, held in manifest["heldout"].items():
        print(f"held-out {name}: {held['instances']} instances, {held['decontamination']['dropped']} documents "
              f"dropped by decontamination")
    return 0


def run_data_inspect(args: argparse.Namespace) -> int:
    import json

    from hf_arith.training.data_order import inspect_batch

    batch = inspect_batch(args.run_dir, args.batch)
    try:
        if args.json:
            for example in batch["examples"]:
                print(json.dumps({"batch": batch["batch"], **example}, ensure_ascii=False))
            return 0
        print(f"global batch {batch['batch']} of {args.run_dir}: examples {batch['start']}..{batch['stop'] - 1} "
              f"({batch['stop'] - batch['start']} instances of {batch['data_path']})")
        for example in batch["examples"]:
            print(f"\n=== example {example['example']}: instance {example['instance']} (epoch {example['epoch']}) ===")
            print(example["text"])
    except BrokenPipeError:  # `| head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# ---------------------------------------------------------------------------------------------
# tokenizer


def add_tokenizer(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tokenizer_command", required=True, metavar="{train}",
                                help="hf-arith tokenizer train --help for its options")
    train = add_command(sub, "train", "train a byte-level BPE tokenizer (EOS <|endoftext|>, pad <|padding|>)")
    train.add_argument("corpus", nargs="+", help="text/jsonl/parquet files or globs, or builtin (the embedded corpus)")
    train.add_argument("--vocab-size", type=POSITIVE, required=True, help="tokens in the vocabulary, specials included")
    train.add_argument("--out", required=True, help="folder to save it to (loads with AutoTokenizer.from_pretrained)")
    train.add_argument("--min-frequency", type=NON_NEGATIVE, default=2, help="merges seen fewer times are not learned")
    train.add_argument("--text-field", default="text", help="the text key of jsonl/parquet records")


def run_tokenizer(args: argparse.Namespace) -> int:
    from hf_arith.data.text import iter_texts
    from hf_arith.tokenization import train_bpe_tokenizer

    texts = iter_texts(args.corpus, args.text_field)
    tokenizer = train_bpe_tokenizer(texts, args.vocab_size, args.out, args.min_frequency)
    print(f"saved {args.out}: {len(tokenizer)} tokens, eos {tokenizer.eos_token!r} = {tokenizer.eos_token_id}, "
          f"pad {tokenizer.pad_token!r} = {tokenizer.pad_token_id}")
    return 0


def add_convert(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="an OLMo checkpoint folder: hf-arith, transformers-native or allenai/OLMo")
    parser.add_argument("dst", help="a new folder for the converted checkpoint")
    parser.add_argument("--to", required=True, choices=CHECKPOINT_FORMATS,
                        help="ours: hf-arith (trust_remote_code); native: transformers' olmo; original: allenai/OLMo")


def run_convert(args: argparse.Namespace) -> int:
    from hf_arith.convert import convert

    print(f"wrote {convert(args.src, args.dst, to=args.to)}")
    return 0


# ---------------------------------------------------------------------------------------------
# publish (library: hf_arith.hub)


def add_publish(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a run folder (with final/ inside) or a saved model folder")
    parser.add_argument("--repo-id", required=True, help="the Hub repository, ORG/NAME")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="push to this branch, created from main if missing (default: main)")
    parser.add_argument("--local-dir", help="write the folder here and push nothing (default: push)")
    parser.add_argument("--format", dest="fmt", choices=HUB_FORMATS, default="ours",
                        help="ours: hf-arith code (trust_remote_code); native: transformers' olmo (OLMo only)")
    parser.add_argument("--max-shard-size", type=shard_size, default="5GB",
                        help="split the weights into files of at most this size (KB, MB, GB or TB)")
    parser.add_argument("--eval-dir", dest="eval_dirs", action="append", default=[], metavar="DIR",
                        help="a folder from `hf-arith eval --out` (repeatable; default: RUN/eval*/)")
    parser.add_argument("--license", default="apache-2.0", help="the card's license identifier")
    parser.add_argument("--dataset", dest="datasets", action="append", default=[], metavar="ID",
                        help="a Hub dataset id the model was trained or evaluated on, for the card (repeatable; "
                             "default: none)")


def run_publish(args: argparse.Namespace) -> int:
    from hf_arith.hub import publish

    published = publish(args.source, args.repo_id, private=args.private, revision=args.revision,
                        local_dir=args.local_dir, fmt=args.fmt, max_shard_size=args.max_shard_size,
                        eval_dirs=args.eval_dirs, license=args.license, datasets=args.datasets)
    print(f"wrote {published.folder}" if published.url is None else f"pushed {args.repo_id}: {published.url}")
    return 0


# name -> (help, add arguments, run)
COMMANDS = {
    "train": ("train a model from a recipe", add_train, run_train),
    "eval": ("exact-match accuracy over a grid of operand lengths", add_eval, run_eval),
    "generate": ("answer problems with a trained model", add_generate, run_generate),
    "compare": ("several evaluations side by side: accuracy by length, reach, plot", add_compare, run_compare),
    "data": ("build datasets", add_data, run_data),
    "convert": ("convert an OLMo checkpoint between the hf-arith, transformers and allenai/OLMo layouts",
                add_convert, run_convert),
    "tokenizer": ("train a tokenizer", add_tokenizer, run_tokenizer),
    "publish": ("publish a model to the Hugging Face Hub with its model card", add_publish, run_publish),
}


# ---------------------------------------------------------------------------------------------


def installed_version() -> str:
    """The version pip installed, from the package metadata: pyproject.toml is its one source.

    Example (what `hf-arith --version` prints)::

        $ hf-arith --version
        hf-arith 0.1.0
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hf-arith")
    except PackageNotFoundError:  # imported from a folder that pip never installed
        return "unknown (not installed: pip install -e . in the clone)"


def build_parser() -> argparse.ArgumentParser:
    """The `hf-arith` parser with every command of `COMMANDS`.

    Example:
        >>> build_parser().parse_args(["train", "r.yaml", "--max-steps", "5"]).max_steps
        5
    """
    parser = Parser(prog="hf-arith", parents=[debug_option()], formatter_class=HelpFormatter,
                    description="Abacus-looped arithmetic transformers and OLMo on transformers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}",
                                help="hf-arith COMMAND --help for its options")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = add_command(sub, name, help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace; a usage mistake exits with one `error:` line (status 2).

    `generate` takes what looks like an unknown short option as a problem, in order, so that
    "-5+3" is refused for what it is (no task has negative numbers), not as a missing argument.

    Example:
        >>> parse(["generate", "runs/x/final", "1+2", "-5+3", "3+4"]).problems
        ['1+2', '-5+3', '3+4']
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "generate":
        args.problems += [arg for arg in extra if not arg.startswith("--")]
        extra = [arg for arg in extra if arg.startswith("--")]
        if not args.problems:
            usage_error("hf-arith generate", 'give at least one problem, e.g. hf-arith generate MODEL "123+4567"')
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is logged (not the stream of the first
    `main()` call), so that `main()` called in a notebook or under pytest capture keeps working."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _show_progress_messages() -> None:
    """hf_arith's INFO messages (step logs, resume notices) on stderr; other libraries keep theirs."""
    package_logger = logging.getLogger("hf_arith")
    if not package_logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
        package_logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of `hf-arith` and `python -m hf_arith`; returns the exit status.

    Example:
        >>> import contextlib
        >>> import sys
        >>> with contextlib.redirect_stderr(sys.stdout):  # errors go to stderr; shown here
        ...     status = main(["train", "missing.yaml"])
        error: recipe file 'missing.yaml' not found
        >>> status
        2
    """
    args = parse(argv)
    debug = getattr(args, "debug", False)
    _show_progress_messages()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (HfArithError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, ValueError) as err:
        if debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        hint = "" if isinstance(err, HfArithError) else " (run with --debug for the traceback)"
        # One write: several launched processes share the pipe, and print's separate writes of the
        # text and its newline interleave.
        sys.stderr.write(f"error: {message}{hint}\n")
        sys.stderr.flush()
        return 2
    except OSError as err:
        # A full or read-only disk met outside the writes that name it themselves (checkpoints, final/).
        if debug or err.errno not in NO_ROOM:
            raise
        # A copy names its source first and the file it could not write second.
        print(f"error: cannot write {err.filename2 or err.filename or 'a file'}: {err.strerror}; free some space or "
              f"choose another output folder (run with --debug for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
