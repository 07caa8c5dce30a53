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
import sys

from hf_arith.errors import HfArithError

# ---------------------------------------------------------------------------------------------
# train


def add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file, e.g. recipes/abacus/addition_cpu.yaml")
    parser.add_argument("--output-dir", help="where checkpoints, logs and final/ go (recipe: output_dir)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (recipe: train.max_steps)")
    parser.add_argument("--save-every", type=int, help="checkpoint every N steps (recipe: train.save_every)")
    parser.add_argument("--seed", type=int, help="random seed (recipe: seed)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any recipe key, value parsed as YAML (repeatable), e.g. --set train.lr=3e-4")
    parser.add_argument("--resume", metavar="latest|PATH",
                        help="continue from the run's latest checkpoint or a checkpoint folder")


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
    import yaml

    return not isinstance(yaml.safe_load(text), str) if text.strip() else True


def run_train(args: argparse.Namespace) -> int:
    from hf_arith.training import load_recipe, train

    recipe = load_recipe(args.recipe, train_overrides(args))
    final = train(recipe, resume=args.resume)
    print(f"saved {final}")
    return 0


# ---------------------------------------------------------------------------------------------
# eval / generate / data (library: hf_arith.evaluation.commands)


def add_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model folder (e.g. runs/addition_cpu/final) or Hub id")
    parser.add_argument("--task", help="addition, multiplication or sorting (default: the model's recipe)")
    parser.add_argument("--lengths", default="1-40", help="grid: 1-40, 1-40x1-20 or 101-160:equal")
    parser.add_argument("--samples", type=int, default=100, help="problems per cell")
    parser.add_argument("--out", default="eval", help="folder for results.json and heatmap.png")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-recurrences", type=int, help="override the looped block's recurrences")
    parser.add_argument("--seed", type=int, help="evaluation seed (disjoint from training streams)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--train-max-digits", type=int, help="in-distribution bound (default: from the recipe)")
    parser.add_argument("--eval-set", help="evaluate a set saved by `hf-arith data eval-set` (or a Hub dataset)")


def run_eval(args: argparse.Namespace) -> int:
    from hf_arith.evaluation.commands import run_eval as evaluate

    kwargs = {"seed": args.seed} if args.seed is not None else {}
    evaluate(args.model, task=args.task, lengths=args.lengths, samples=args.samples, out_dir=args.out,
             batch_size=args.batch_size, num_recurrences=args.num_recurrences, device=args.device,
             train_max_digits=args.train_max_digits, eval_set_path=args.eval_set, **kwargs)
    return 0


def add_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved model folder or Hub id")
    parser.add_argument("problems", nargs="+", help='problems in normal notation, e.g. "123+4567"')
    parser.add_argument("--num-recurrences", type=int, help="override the looped block's recurrences")
    parser.add_argument("--device", help="cpu, cuda, mps (default: best available)")


def run_generate(args: argparse.Namespace) -> int:
    from hf_arith.evaluation.commands import run_generate as generate

    generate(args.model, args.problems, num_recurrences=args.num_recurrences, device=args.device)
    return 0


def add_data(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="{eval-set}")
    eval_set = sub.add_parser("eval-set", help="materialise an evaluation set (what `hf-arith eval` draws)")
    eval_set.add_argument("--task", default="addition")
    eval_set.add_argument("--lengths", default="1-40")
    eval_set.add_argument("--samples", type=int, default=100)
    eval_set.add_argument("--seed", type=int)
    eval_set.add_argument("--out", default="eval_set", help=".jsonl, .parquet, or a folder")
    eval_set.add_argument("--push-to-hub", metavar="USER/NAME")


def run_data(args: argparse.Namespace) -> int:
    from hf_arith.evaluation.commands import run_data_eval_set

    kwargs = {"seed": args.seed} if args.seed is not None else {}
    run_data_eval_set(args.task, args.lengths, args.samples, out=args.out, push_to_hub=args.push_to_hub, **kwargs)
    return 0


# name -> (help, add arguments, run)
COMMANDS = {
    "train": ("train a model from a recipe", add_train, run_train),
    "eval": ("exact-match accuracy over a grid of operand lengths", add_eval, run_eval),
    "generate": ("answer problems with a trained model", add_generate, run_generate),
    "data": ("build datasets", add_data, run_data),
}


# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The `hf-arith` parser with every command of `COMMANDS`.

    Example:
        >>> build_parser().parse_args(["train", "r.yaml", "--max-steps", "5"]).max_steps
        5
    """
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not overwrite `hf-arith --debug <command>`.
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
    parser = argparse.ArgumentParser(prog="hf-arith", parents=[common],
                                     description="Abacus-looped arithmetic transformers and OLMo on transformers.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (help_text, add_arguments, run) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, parents=[common], description=help_text)
        add_arguments(command)
        command.set_defaults(run=run)
    return parser


def _show_progress_messages() -> None:
    """hf_arith's INFO messages (step logs, resume notices) on stderr; other libraries keep theirs."""
    package_logger = logging.getLogger("hf_arith")
    if not package_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
        package_logger.addHandler(handler)
        package_logger.setLevel(logging.INFO)
        package_logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """Entry point of `hf-arith` and `python -m hf_arith`; returns the exit status.

    Example:
        >>> main(["train", "missing.yaml"])
        error: recipe file 'missing.yaml' not found
        2
    """
    args = build_parser().parse_args(argv)
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
        print(f"error: {message}{hint}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
