"""The `rnnlm` console script: train, evaluate, generate, score, gradcheck, bench.

Each subcommand calls the library function its Snakemake rule calls, with the same defaults (those of
workflow/schemas/config.schema.yaml). Bad input prints one line naming the problem and exits with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import sys
from pathlib import Path

from rnnlm.io import RnnlmError, write_text

SPLITS = ("train", "valid", "test")
# Subcommands owned by other modules: each exposes main(argv) -> exit status and parses its own options.
DELEGATED = {"gradcheck": "rnnlm.gradcheck", "bench": "rnnlm.bench"}
# ModelConfig fields that come from the data (vocab_size) or a separate option (dtype).
MODEL_SKIP = ("vocab_size", "dtype")


def _boolean(text: str) -> bool:
    """argparse type for true/false options (bool("false") would be True)."""
    value = text.strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_dataclass_options(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One --option per field of `cls`, typed and defaulted like the field."""
    for field in dataclasses.fields(cls):
        if field.name not in skip:
            kind = _boolean if isinstance(field.default, bool) else type(field.default)
            parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=kind,
                                default=field.default, help=f"default: {field.default!r}")


def _dataclass_values(args: argparse.Namespace, cls, skip: tuple[str, ...] = ()) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in skip}


def _emit(text: str, path: str | None) -> None:
    if path:
        write_text(path, text)
    else:
        sys.stdout.write(text)


def _train(args: argparse.Namespace) -> None:
    from rnnlm.model import ModelConfig
    from rnnlm.train import TrainConfig, run_training

    hyper = _dataclass_values(args, ModelConfig, MODEL_SKIP) | _dataclass_values(args, TrainConfig)
    data, out = Path(args.data_dir), Path(args.out_dir)
    run_training(data / "train.npz", data / "valid.npz", args.vocab, out / "params.npz", out / "checkpoint.npz",
                 out / "train_log.csv", hyper, device=args.device, dtype=args.dtype,
                 metadata={"lowercase": args.lowercase}, progress=not args.no_progress)


def _evaluate(args: argparse.Namespace) -> None:
    from rnnlm.evaluate import run_evaluation

    splits = {name: Path(args.data_dir) / f"{name}.npz" for name in SPLITS}
    metrics = run_evaluation(args.params, splits, args.vocab, None, device=args.device)
    _emit(json.dumps(metrics, indent=2, sort_keys=True, ensure_ascii=False) + "\n", args.out)


def _generate(args: argparse.Namespace) -> None:
    from rnnlm.generate import GenerateConfig, run_generation

    config = GenerateConfig(**_dataclass_values(args, GenerateConfig))
    _emit(run_generation(args.params, None, config, device=args.device), args.out)


def _score(args: argparse.Namespace) -> None:
    from rnnlm.evaluate import load_trained
    from rnnlm.generate import format_scores, score_sentences, tokenize_lines

    model, words, metadata = load_trained(args.params, args.device)
    lines = []
    for name in args.inputs:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RnnlmError(f"{name}: cannot read the sentences to score ({exc}); pass a UTF-8 text file") from None
        lines += [line for line in text.splitlines() if line.strip()]
    sentences = tokenize_lines(lines, bool(metadata.get("lowercase")), args.pretokenized)
    _emit(format_scores(score_sentences(model, words, sentences), rank=args.rank), args.out)


def build_parser() -> argparse.ArgumentParser:
    from rnnlm.generate import GenerateConfig
    from rnnlm.model import ModelConfig
    from rnnlm.train import TrainConfig

    parser = argparse.ArgumentParser(prog="rnnlm", description="RNN language model: train, evaluate, sample, score.")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_, description=help_)
        sub.set_defaults(run=run)
        if run is not None:
            sub.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                             help="auto: CuPy when a CUDA device is usable, else NumPy (default: auto)")
        return sub

    train = command("train", "train a model on index matrices (results/data/*.npz)", _train)
    train.add_argument("--data-dir", default="results/data", help="holds train.npz and valid.npz (default: %(default)s)")
    train.add_argument("--vocab", default="results/vocab/vocab.tsv", help="vocabulary (default: %(default)s)")
    train.add_argument("--out-dir", required=True, help="gets params.npz, checkpoint.npz, train_log.csv; "
                       "a matching checkpoint there is resumed")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    train.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True,
                       help="the training text was lowercased (recorded so that score and --prime match it)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_dataclass_options(train, ModelConfig, MODEL_SKIP)
    _add_dataclass_options(train, TrainConfig)

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
    score.add_argument("inputs", nargs="*", default=["-"], help="text files, one sentence a line (default: stdin)")
    score.add_argument("--pretokenized", action="store_true", help="words are already separated by spaces")
    score.add_argument("--rank", action="store_true", help="most probable sentence first")
    score.add_argument("--out", help="write here instead of standard output")

    for name, module in DELEGATED.items():
        command(name, f"{module}; see `rnnlm {name} --help`", None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Delegated subcommands parse their own options, --help included (global options do not apply).
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in DELEGATED:
        return importlib.import_module(DELEGATED[command]).main(argv[argv.index(command) + 1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        args.run(args)
    except RnnlmError as exc:
        print(f"rnnlm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
