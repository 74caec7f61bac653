"""The `rnnlm` console script: train, evaluate, generate, score, gradcheck, bench.

Each subcommand calls the library function its Snakemake rule calls, with the same defaults (those of
workflow/schemas/config.schema.yaml). Bad input prints one line naming the problem and exits with 2,
before any work starts where the problem is visible up front (settings, output paths).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import re
import shlex
import sys
from pathlib import Path

from rnnlm import __version__
from rnnlm.io import RnnlmError, printable, write_text

# Subcommands owned by other modules: each exposes main(argv) -> exit status and parses its own options.
DELEGATED = {
    "gradcheck": ("rnnlm.gradcheck", "compare the model's analytic gradients with finite differences for a chosen "
                  "cell, output layer and truncation (JSON; exit 1 above the tolerance)"),
    "bench": ("rnnlm.bench", "measure training throughput in tokens per second, against PyTorch and the "
              "tutorial's loop (JSON)"),
}
QUIET_FLAGS = ("-q", "--quiet")
VERBOSE_FLAGS = ("-v", "--verbose")
# ModelConfig fields that come from the data (vocab_size) or a separate option (dtype).
MODEL_SKIP = ("vocab_size", "dtype")
# BLAS threads per command, as the Snakemake rules run them (`threads: 1`; see workflow/rules/model.smk).
DEFAULT_THREADS = 1


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors in one line (no usage block): `rnnlm generate: error: argument
    --temperature: invalid float value: 'abc' (rnnlm generate --help lists the options)`."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def add_threads_option(parser: argparse.ArgumentParser, default: int, extra: str = "") -> None:
    """`--threads` means the same in every command: the CPU threads its computation may use (the
    BLAS thread pools, capped through threadpoolctl{extra})."""
    parser.add_argument("--threads", type=int, default=default,
                        help=f"CPU threads of the computation: the BLAS thread pools{extra} (default: %(default)s)")


def _choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of the settings that take a name."""
    from rnnlm.model import ACTIVATIONS, CELLS, CONTEXTS, OUTPUTS
    from rnnlm.train_config import OPTIMIZERS

    return {"activation": ACTIVATIONS, "cell": CELLS, "output": OUTPUTS, "optimizer": OPTIMIZERS, "context": CONTEXTS}


def _add_dataclass_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One --option per field of `cls`, typed and defaulted like the field; true/false fields are
    --name/--no-name flags."""
    choices = _choices()
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(field.default, bool):
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=field.default,
                                help=f"default: {'on' if field.default else 'off'}")
        elif field.name in choices:
            parser.add_argument(flag, dest=field.name, choices=choices[field.name], default=field.default,
                                help="default: %(default)s")
        else:
            parser.add_argument(flag, dest=field.name, type=type(field.default), default=field.default,
                                help="default: %(default)r")


def _check_output_directory(path: str | os.PathLike, option: str) -> None:
    """Fail before any work if `path` cannot be (or become) a directory this process writes into."""
    target = Path(path)
    existing = target
    while not existing.exists():  # the nearest existing ancestor (the working directory at worst)
        existing = existing.parent
    if not existing.is_dir():
        raise RnnlmError(f"{option} {path}: {existing} is a file, not a directory; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RnnlmError(f"{option} {path}: {existing} is not writable; choose a directory you can write to")


def _check_output_file(path: str | None, option: str = "--out") -> None:
    if path is None:
        return
    if Path(path).is_dir():
        raise RnnlmError(f"{option} {path} is a directory; give a file name")
    _check_output_directory(Path(path).parent, option)


def _dataclass_values(args: argparse.Namespace, cls, skip: tuple[str, ...] = ()) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in skip}


def _emit(text: str, path: str | None) -> None:
    # Sentences come from the model's vocabulary, i.e. from a corpus: no raw escape sequences.
    text = printable(text)
    if path:
        write_text(path, text)
    else:
        sys.stdout.write(text)


def _train(args: argparse.Namespace) -> None:
    from rnnlm.model import ModelConfig
    from rnnlm.tokenize import WordTokenizer
    from rnnlm.train import run_training
    from rnnlm.train_config import TrainConfig
    from rnnlm.vocab import vocabulary_metadata

    hyper = _dataclass_values(args, ModelConfig, MODEL_SKIP) | _dataclass_values(args, TrainConfig)
    _check_output_directory(args.out_dir, "--out-dir")
    data, out = Path(args.data_dir), Path(args.out_dir)
    # A finished model has no checkpoint to continue from (training removes it at the end), so
    # training into its directory again would silently start over and replace it.
    if (out / "params.npz").exists() and not (out / "checkpoint.npz").exists() and not args.overwrite:
        raise RnnlmError(f"--out-dir {args.out_dir} holds a finished model (params.npz) that cannot be trained "
                         "further; pass --overwrite to train a new one there from scratch, or choose another --out-dir")
    run_training(data / "train.npz", data / "valid.npz", args.vocab, out / "params.npz", out / "checkpoint.npz",
                 out / "train_log.csv", hyper, device=args.device, dtype=args.dtype,
                 metadata={**WordTokenizer(args.lowercase, args.normalize_quotes).settings(),
                           **vocabulary_metadata(args.vocab)},
                 progress=not args.no_progress)


def _evaluate(args: argparse.Namespace) -> None:
    from rnnlm.evaluate import run_evaluation

    _check_output_file(args.out)
    from rnnlm.data import SPLIT_NAMES

    splits = {name: Path(args.data_dir) / f"{name}.npz" for name in SPLIT_NAMES}
    metrics = run_evaluation(args.params, splits, args.vocab, None, device=args.device)
    _emit(json.dumps(metrics, indent=2, sort_keys=True, ensure_ascii=False) + "\n", args.out)


def _generate(args: argparse.Namespace) -> None:
    from rnnlm.generate import GenerateConfig, run_generation

    config = GenerateConfig(**_dataclass_values(args, GenerateConfig))
    _check_output_file(args.out)
    _emit(run_generation(args.params, None, config, device=args.device), args.out)


def _score(args: argparse.Namespace) -> None:
    from rnnlm.generate import TrainedModel, format_scores

    _check_output_file(args.out)
    lm = TrainedModel.load(args.params, args.device)
    lines, doc_offsets = [], [0]
    for name in args.inputs:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RnnlmError(f"{name}: cannot read the sentences to score ({exc}); pass a UTF-8 text file") from None
        # Documents: each input, and within one the blocks between empty lines (as tokens/sentences.txt);
        # a document-mode model reads each as one stream, a sentence-mode one ignores them.
        for block in re.split(r"\n\s*\n", text):
            block_lines = [line for line in block.splitlines() if line.strip()]
            if block_lines:
                lines += block_lines
                doc_offsets.append(len(lines))
    _emit(format_scores(lm.score(lines, args.pretokenized, doc_offsets), rank=args.rank), args.out)


def _add_train_options(train: argparse.ArgumentParser) -> None:
    """`rnnlm train`'s options: where data and results are, and every ModelConfig/TrainConfig key."""
    from rnnlm.model import ModelConfig
    from rnnlm.train_config import TrainConfig

    train.add_argument("--data-dir", default="results/data", help="holds train.npz and valid.npz (default: %(default)s)")
    train.add_argument("--vocab", default="results/vocab/vocab.tsv", help="vocabulary (default: %(default)s)")
    train.add_argument("--out-dir", required=True, help="gets params.npz, checkpoint.npz, train_log.csv; "
                       "a matching checkpoint there is resumed")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                       help="the training text was lowercased (recorded so that score and --prime match it)")
    train.add_argument("--normalize-quotes", action=argparse.BooleanOptionalAction, default=True,
                       help="the training text's typographic quotes were normalised (recorded likewise)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--overwrite", action="store_true",
                       help="train from scratch even where --out-dir holds a finished model (it is replaced)")
    _add_dataclass_options(train, ModelConfig, MODEL_SKIP)
    _add_dataclass_options(train, TrainConfig)


def build_parser() -> argparse.ArgumentParser:
    from rnnlm.generate import GenerateConfig

    parser = OneLineParser(prog="rnnlm", description="RNN language model: train, evaluate, sample, score.")
    parser.add_argument(*QUIET_FLAGS, action="store_true", help="log warnings only")
    parser.add_argument(*VERBOSE_FLAGS, action="store_true", help="also log details such as the backend chosen")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # The same global options after the subcommand; SUPPRESS keeps them from resetting a value given before it.
    global_options = OneLineParser(add_help=False)
    global_options.add_argument(*QUIET_FLAGS, action="store_true", default=argparse.SUPPRESS, help="log warnings only")
    global_options.add_argument(*VERBOSE_FLAGS, action="store_true", default=argparse.SUPPRESS,
                                help="also log details such as the backend chosen")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_, parents=[global_options])
        sub.set_defaults(run=run)
        if run is not None:
            sub.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                             help="auto: CuPy when a CUDA device is usable, else NumPy (default: auto)")
            add_threads_option(sub, DEFAULT_THREADS, ", as the Snakemake rule runs it")
        return sub

    train = command("train", "train a model on index matrices (results/data/*.npz)", _train)
    _add_train_options(train)

    evaluate = command("evaluate", "loss and perplexity per split, with the unigram baseline (JSON)", _evaluate)
    evaluate.add_argument("--params", required=True, help="parameters file from train")
    evaluate.add_argument("--data-dir", default="results/data", help="holds train/valid/test.npz (default: %(default)s)")
    evaluate.add_argument("--vocab", default="results/vocab/vocab.tsv", help="vocabulary (default: %(default)s)")
    evaluate.add_argument("--out", help="write the JSON here instead of standard output")

    generate = command("generate", "sample sentences and beam-search the most probable ones", _generate)
    generate.add_argument("--params", required=True, help="parameters file from train")
    generate.add_argument("--out", help="write here instead of standard output")
    _add_dataclass_options(generate, GenerateConfig)

    score = command("score", "log-probability and perplexity of each input sentence (TSV)", _score)
    score.add_argument("--params", required=True, help="parameters file from train")
    score.add_argument("inputs", nargs="*", default=["-"], help="text files, one sentence a line, empty lines between documents (default: stdin)")
    score.add_argument("--pretokenized", action="store_true", help="words are already separated by spaces")
    score.add_argument("--rank", action="store_true", help="most probable sentence first")
    score.add_argument("--out", help="write here instead of standard output")

    for name, (_, help_) in DELEGATED.items():
        command(name, f"{help_}; options: `rnnlm {name} --help`", None)
    return parser


def _configure_logging(quiet: bool, verbose: bool = False) -> None:
    """Progress at INFO; the backend line (which device, and why) only with -v: the Snakemake jobs'
    logs keep it (rnnlm.io configures those)."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("rnnlm.backend").setLevel(logging.INFO if verbose else logging.WARNING)


def limited_threads(threads: int):
    """A context in which the BLAS thread pools use at most `threads` threads (--threads)."""
    from threadpoolctl import threadpool_limits

    if threads < 1:
        raise RnnlmError(f"--threads must be at least 1, got {threads}")
    return threadpool_limits(limits=threads)


def _run(args: argparse.Namespace) -> None:
    """Run the subcommand with the BLAS thread pools limited to --threads."""
    with limited_threads(args.threads):
        args.run(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Delegated subcommands parse their own options, --help included; only the global -q applies to them.
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in DELEGATED:
        before, after = argv[:argv.index(command)], argv[argv.index(command) + 1:]
        _configure_logging(any(arg in QUIET_FLAGS for arg in before + after),
                           any(arg in VERBOSE_FLAGS for arg in before + after))
        own = [arg for arg in after if arg not in QUIET_FLAGS + VERBOSE_FLAGS]
        try:
            return importlib.import_module(DELEGATED[command][0]).main(own)
        except RnnlmError as exc:
            print(f"rnnlm {command}: error: {exc}", file=sys.stderr)
            return 2
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet, args.verbose)
    try:
        _run(args)
    except RnnlmError as exc:
        from rnnlm.train import Interrupted

        if isinstance(exc, Interrupted):
            again = shlex.join(["rnnlm", *argv])
            action = f"resume with: {again}" if exc.kept else f"start again with: {again}"
            print(f"rnnlm {args.command}: {exc}; {action}", file=sys.stderr)
            return 130  # the shell's status for a command ended by Ctrl-C
        print(f"rnnlm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
