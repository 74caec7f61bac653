"""`rnnlm bench`: training throughput of the engine against PyTorch and the tutorial's own loop.

Every figure is tokens per second of one full training step (forward, backward, SGD update) on
sentences of a fixed length drawn from a Zipf-like unigram distribution (the shape of real text;
the class-based softmax depends on it). Each measurement runs `--repeats` times and the best run is
reported, since other processes share the machine; all runs are kept in the JSON, with the load
average at the end. `--clock cpu` counts this process's CPU seconds instead of elapsed time.

Measured (C = vocabulary size, H = hidden size, float32):
  * ours, full softmax, full BPTT, at each `--batch-sizes` B;
  * ours in tutorial mode: B = 1, bptt_truncate = 4 (the tutorial's per-sentence SGD);
  * ours with the class-based softmax at each B (`output: class`);
  * PyTorch (nn.Embedding -> nn.RNN tanh -> nn.Linear, summed cross-entropy, torch.optim.SGD)
    at each B, when torch is installed (`pip install 'rnnlm-workflow[bench]'`);
  * a re-implementation of the tutorial's per-sentence NumPy loop (forward_propagation, bptt with
    truncation 4, sgd_step), the reference of tutorial mode: in the tutorial's float64 and, for a
    same-precision comparison, in float32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any, Callable, Sequence

import numpy as np

from rnnlm.backend import get_backend
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.update import sgd_step

LEARNING_RATE = 0.1  # per token (mean gradient): keeps the timed runs away from divergence
TUTORIAL_LEARNING_RATE = 0.005  # the tutorial's, on its per-sentence summed gradient
CLIP_NORM = 0.0  # the tutorial clips nothing; the trainer's sgd_step then fuses the V update into its GEMM


def zipf_counts(vocab_size: int) -> np.ndarray:
    """Counts falling like 1/rank, ids ordered by descending count as in a real vocabulary."""
    return np.round(1e7 / np.arange(1, vocab_size + 1)).astype(np.int64) + 1


def zipf_sentences(rng: np.random.Generator, vocab_size: int, count: int, length: int) -> np.ndarray:
    """(count, length + 1) token ids; x = [:, :-1], y = [:, 1:] of each row."""
    weights = zipf_counts(vocab_size).astype(np.float64)
    return rng.choice(vocab_size, size=(count, length + 1), p=weights / weights.sum())


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def _best_rate(step: Callable[[int], int], batches: int, args,
               synchronize: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Run `step(i)` (returns tokens processed) `batches` times per repeat; best tokens/s of the repeats.
    `synchronize` waits for a device's queued work, so that each timed run ends with its work done."""
    clock = CLOCKS[args.clock]
    step(0)  # warm-up: allocations, BLAS buffers, the fused layer's weight storage, GPU kernel compilation
    synchronize()
    rates = []
    for _ in range(args.repeats):
        tokens = 0
        start = clock()
        for i in range(batches):
            tokens += step(i)
        synchronize()
        rates.append(tokens / (clock() - start))
    return {"tokens_per_s": round(max(rates)), "runs": [round(rate) for rate in rates]}


def _timed_batches(sentences: np.ndarray, batch_size: int) -> list[tuple]:
    """Time-major (x, y, mask) batches of `batch_size` sentences each, as host arrays, as the trainer
    gives them: the model checks them and finds their real tokens on the host, then uploads them, so
    a GPU step is timed with its upload and with its one host synchronisation (docs/engine.md)."""
    batches = [
        sentences[start : start + batch_size].T for start in range(0, len(sentences) - batch_size + 1, batch_size)
    ]
    return [(batch[:-1], batch[1:], np.ones(batch[1:].shape, np.float32)) for batch in batches]


def bench_ours(args, sentences: np.ndarray, batch_size: int, truncate: int, output: str) -> dict[str, Any]:
    backend = get_backend(args.device)
    config = ModelConfig(
        vocab_size=args.vocab_size, hidden_size=args.hidden_size, bptt_truncate=truncate, output=output
    )
    model = RNNLM(config, backend, seed=0, word_counts=zipf_counts(args.vocab_size))
    batches = _timed_batches(sentences, batch_size)

    def step(i: int) -> int:
        x, y, mask = batches[i % len(batches)]
        # the trainer's update; no clipping, as the tutorial
        _, count, _ = sgd_step(model, x, y, mask, LEARNING_RATE, CLIP_NORM)
        return count

    return _best_rate(step, max(1, args.tokens // (batch_size * args.length)), args, backend.synchronize)


def bench_model(args, sentences: np.ndarray, hyperparameters: dict) -> dict[str, Any]:
    """The trainer's own step (SGD or Adam, clipping, dropout masks) with one `models:` entry's
    settings (its hidden size, cell, output layer, batch size), at this benchmark's C."""
    from rnnlm.optim import Adam
    from rnnlm.train_config import split_hyperparameters
    from rnnlm.update import adam_step

    backend = get_backend(args.device)
    model_config, train_config = split_hyperparameters(hyperparameters, args.vocab_size, "float32")
    model = RNNLM(model_config, backend, seed=0, word_counts=zipf_counts(args.vocab_size))
    optimizer = Adam(model.params, backend.xp) if train_config.optimizer == "adam" else None
    dropout_rng = backend.rng(0) if model_config.uses_dropout else None
    batch_size = train_config.batch_size
    batches = _timed_batches(sentences, batch_size)
    # A rate a tenth of the model's keeps the timed steps away from divergence on random text.
    rate = train_config.learning_rate / 10

    def step(i: int) -> int:
        x, y, mask = batches[i % len(batches)]
        if optimizer is None:
            _, count, _ = sgd_step(model, x, y, mask, rate, train_config.clip_norm, dropout_rng=dropout_rng,
                                   weight_decay=train_config.weight_decay)
        else:
            _, count, _ = adam_step(model, optimizer, x, y, mask, rate, train_config.clip_norm, dropout_rng=dropout_rng,
                                    weight_decay=train_config.weight_decay)
        return count

    result = _best_rate(step, max(1, args.tokens // (batch_size * args.length)), args, backend.synchronize)
    result["settings"] = dict(hyperparameters)
    return result


def bench_torch(args, sentences: np.ndarray, batch_size: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(args.vocab_size, args.hidden_size)
    rnn = torch.nn.RNN(args.hidden_size, args.hidden_size, nonlinearity="tanh")
    output = torch.nn.Linear(args.hidden_size, args.vocab_size)
    parameters = [*embedding.parameters(), *rnn.parameters(), *output.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=LEARNING_RATE)
    batches = [
        torch.from_numpy(np.ascontiguousarray(sentences[start : start + batch_size].T))
        for start in range(0, len(sentences) - batch_size + 1, batch_size)
    ]

    def step(i: int) -> int:
        batch = batches[i % len(batches)]
        x, y = batch[:-1], batch[1:]
        optimizer.zero_grad()
        hidden, _ = rnn(embedding(x))
        loss = torch.nn.functional.cross_entropy(output(hidden).reshape(-1, args.vocab_size), y.reshape(-1))
        loss.backward()
        optimizer.step()
        return y.numel()

    return _best_rate(step, max(1, args.tokens // (batch_size * args.length)), args)


class TutorialLoop:
    """The seed tutorial's RNNNumpy training step, written out: one sentence at a time, one time
    step at a time, dense gradients, truncated BPTT in a nested Python loop. The tutorial's arrays
    are float64 (np.random.uniform's); float32 is offered for a same-precision comparison."""

    def __init__(
        self, vocab_size: int, hidden_size: int, truncate: int, rng: np.random.Generator, dtype=np.float64
    ):
        def uniform(fan_in: int, shape: tuple[int, int]) -> np.ndarray:
            return rng.uniform(-np.sqrt(1.0 / fan_in), np.sqrt(1.0 / fan_in), shape).astype(dtype)

        self.U = uniform(vocab_size, (hidden_size, vocab_size))
        self.V = uniform(hidden_size, (vocab_size, hidden_size))
        self.W = uniform(hidden_size, (hidden_size, hidden_size))
        self.truncate = truncate

    def sgd_step(self, x: np.ndarray, y: np.ndarray, learning_rate: float) -> None:
        steps, hidden = len(x), self.W.shape[0]
        s = np.zeros((steps + 1, hidden), dtype=self.W.dtype)  # s[-1]: the initial state
        o = np.zeros((steps, self.V.shape[0]), dtype=self.W.dtype)
        for t in range(steps):
            s[t] = np.tanh(self.U[:, x[t]] + self.W.dot(s[t - 1]))
            scores = self.V.dot(s[t])
            exp_scores = np.exp(scores - scores.max())
            o[t] = exp_scores / exp_scores.sum()
        d_u, d_v, d_w = np.zeros_like(self.U), np.zeros_like(self.V), np.zeros_like(self.W)
        delta_o = o
        delta_o[np.arange(steps), y] -= 1.0
        for t in range(steps - 1, -1, -1):
            d_v += np.outer(delta_o[t], s[t])
            delta_t = self.V.T.dot(delta_o[t]) * (1 - s[t] ** 2)
            for bptt_step in range(t, max(0, t - self.truncate) - 1, -1):
                d_w += np.outer(delta_t, s[bptt_step - 1])
                d_u[:, x[bptt_step]] += delta_t
                delta_t = self.W.T.dot(delta_t) * (1 - s[bptt_step - 1] ** 2)
        self.U -= learning_rate * d_u
        self.V -= learning_rate * d_v
        self.W -= learning_rate * d_w


def bench_tutorial_loop(args, sentences: np.ndarray, dtype) -> dict[str, Any]:
    loop = TutorialLoop(args.vocab_size, args.hidden_size, 4, np.random.default_rng(0), dtype)

    def step(i: int) -> int:
        sentence = sentences[i % len(sentences)]
        loop.sgd_step(sentence[:-1], sentence[1:], TUTORIAL_LEARNING_RATE)
        return args.length

    return _best_rate(step, args.tutorial_sentences, args)


def _config_models(path) -> dict[str, dict]:
    """The `models:` entries of a config file ({} without one)."""
    if not path:
        return {}
    import yaml

    from rnnlm.io import RnnlmError

    try:
        with open(path, encoding="utf-8") as handle:
            models = (yaml.safe_load(handle) or {}).get("models") or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RnnlmError(f"cannot read the models of {path}: {exc}; give --config a readable config.yaml") from None
    return {str(name): dict(hyperparameters or {}) for name, hyperparameters in models.items()}


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def _speed_ratio(results: dict[str, Any], numerator: str, denominator: str) -> float | None:
    if numerator not in results or denominator not in results:
        return None
    return round(results[numerator]["tokens_per_s"] / results[denominator]["tokens_per_s"], 2)


def _ratios(results: dict[str, Any], batch_sizes, config_models) -> dict[str, float | None]:
    """Speed ratios between the measured runs (None where one of the two was not run)."""
    pairs = {
        "tutorial_mode_vs_tutorial_loop": ("ours_tutorial_mode_b1_truncate4", "tutorial_loop_float64"),
        "tutorial_mode_vs_tutorial_loop_float32": ("ours_tutorial_mode_b1_truncate4", "tutorial_loop_float32"),
    }
    for batch_size in batch_sizes:
        pairs[f"ours_vs_torch_b{batch_size}"] = (f"ours_full_b{batch_size}", f"torch_b{batch_size}")
        pairs[f"class_vs_full_b{batch_size}"] = (f"ours_class_b{batch_size}", f"ours_full_b{batch_size}")
    for name in config_models:
        pairs[f"model_{name}_vs_full_b32"] = (f"model_{name}", f"model_{name}_reference_full_b32")
    return {name: _speed_ratio(results, *pair) for name, pair in pairs.items()}


def run(args) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    largest = max(args.batch_sizes + args.model_batch_sizes)
    sentences = zipf_sentences(rng, args.vocab_size, max(4 * largest, 64), args.length)
    results: dict[str, Any] = {}
    for batch_size in args.batch_sizes:
        results[f"ours_full_b{batch_size}"] = bench_ours(args, sentences, batch_size, 0, "full")
    results["ours_tutorial_mode_b1_truncate4"] = bench_ours(args, sentences, 1, 4, "full")
    if not args.skip_class:
        for batch_size in args.batch_sizes:
            results[f"ours_class_b{batch_size}"] = bench_ours(args, sentences, batch_size, 0, "class")
    torch_version = None if args.skip_torch else _torch_version()
    if torch_version is not None:
        for batch_size in args.batch_sizes:
            results[f"torch_b{batch_size}"] = bench_torch(args, sentences, batch_size)
    config_models = _config_models(args.config)
    for name, hyperparameters in config_models.items():
        hyperparameters = {**hyperparameters, "epochs": 1}
        results[f"model_{name}"] = bench_model(args, sentences, hyperparameters)
        for batch_size in args.model_batch_sizes:  # the same model at other (e.g. a GPU's) batch sizes
            results[f"model_{name}_b{batch_size}"] = bench_model(args, sentences,
                                                                 {**hyperparameters, "batch_size": batch_size})
        # the engine's benchmark setting (full softmax, B = 32, no clipping or dropout) at its H
        reference = argparse.Namespace(**{**vars(args), "hidden_size": hyperparameters.get("hidden_size", 64)})
        results[f"model_{name}_reference_full_b32"] = bench_ours(reference, sentences, 32, 0, "full")
    results["tutorial_loop_float64"] = bench_tutorial_loop(args, sentences, np.float64)
    results["tutorial_loop_float32"] = bench_tutorial_loop(args, sentences, np.float32)
    ratios = _ratios(results, args.batch_sizes, config_models)
    return {
        "settings": {
            "vocab_size": args.vocab_size,
            "hidden_size": args.hidden_size,
            "sentence_length": args.length,
            "dtype": "float32",
            "clip_norm": CLIP_NORM,
            "repeats": args.repeats,
            "tokens_per_run": args.tokens,
            "threads": args.threads,
            "clock": args.clock,
            "device": args.device,
        },
        "environment": {
            "numpy": np.__version__,
            "torch": torch_version,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            "load_average_1min": os.getloadavg()[0],
        },
        "results": {name: value for name, value in results.items()},
        "ratios": {name: value for name, value in ratios.items() if value is not None},
    }


def _config_vocabulary_size(path) -> int | None:
    if not path:
        return None
    import yaml

    with open(path, encoding="utf-8") as handle:
        return (yaml.safe_load(handle) or {}).get("vocabulary_size")


def run_launches(args) -> dict[str, Any]:
    """`--launches`: kernel launches, host syncs and the estimated GPU tokens/s per training batch of
    each config model at each batch size, counted on the CPU (rnnlm.launches)."""
    from rnnlm.io import RnnlmError
    from rnnlm.launches import launch_report

    models = _config_models(args.config)
    if not models:
        raise RnnlmError("--launches counts the `models:` of a config; give --config config.yaml")
    vocab_size = args.vocab_size if args.vocab_size_given else (_config_vocabulary_size(args.config) or args.vocab_size)
    sizes = {name: args.batch_sizes or sorted({size for size in (hyper.get("batch_size"), *LAUNCH_BATCH_SIZES) if size})
             for name, hyper in models.items()}
    return launch_report(models, vocab_size, sizes, args.length)


LAUNCH_BATCH_SIZES = (64, 128, 256, 512)
TIMING_BATCH_SIZES = [32, 128]


def launch_table(report: dict[str, Any]) -> str:
    """The launch report as a table: one line per model and batch size."""
    lines = [f"{'model':>8} {'B':>5} {'tokens':>7} {'launches':>9} {'tok/launch':>10} {'syncs':>6} {'uploads':>8} "
             f"{'est. tokens/s':>14}  ({report['device_model']['name']})"]
    for name, rows in report["models"].items():
        for row in rows:
            lines.append(f"{name:>8} {row['batch_size']:>5} {row['tokens_per_batch']:>7.0f} {row['launches_per_batch']:>9.0f} "
                         f"{row['tokens_per_launch']:>10.1f} {row['syncs_per_batch']:>6.0f} {row['uploads_per_batch']:>8.0f} "
                         f"{row['estimated_tokens_per_s']:>14,}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from rnnlm.cli import OneLineParser, add_threads_option, limited_threads

    parser = OneLineParser(prog="rnnlm bench", description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=None, help="8000 (--launches: the config's vocabulary_size)")
    parser.add_argument("--hidden-size", type=int, default=100)
    parser.add_argument("--length", type=int, default=None, help="tokens per sentence (45; --launches: 25)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="32 128 (--launches: each model's own and 64 128 256 512)")
    parser.add_argument("--model-batch-sizes", type=int, nargs="+", default=[],
                        help="also time each config model at these batch sizes")
    parser.add_argument("--launches", action="store_true",
                        help="count kernel launches and host syncs per training batch of each config model on the "
                        "CPU and estimate its GPU tokens/s (docs/engine.md); no timing")
    parser.add_argument("--tokens", type=int, default=40_000, help="tokens per timed run")
    parser.add_argument("--tutorial-sentences", type=int, default=20, help="sentences per timed tutorial-loop run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best is reported)")
    add_threads_option(parser, 2, " and PyTorch's intra-op threads")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed seconds; cpu: this process's CPU seconds (steadier on a shared machine; "
        "pair it with OPENBLAS_NUM_THREADS=1 and --threads 1 for per-core figures)",
    )
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="cpu")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--skip-class", action="store_true")
    parser.add_argument(
        "--config",
        default="config.yaml" if os.path.exists("config.yaml") else "",
        help="also time each model of this config's `models:` with its own settings (batch size, clipping, "
        "dropout, optimizer, cell, output) next to the full softmax at B = 32 and its H (default: "
        "./config.yaml if present; '' for none)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.vocab_size_given = args.vocab_size is not None
    if args.vocab_size is None:
        args.vocab_size = 8000
    with limited_threads(args.threads):
        if args.launches:
            args.length = args.length or 25
            report = run_launches(args)
            print(launch_table(report), file=sys.stderr)
            print(json.dumps(report, indent=2))
            return 0
        args.length = args.length or 45
        args.batch_sizes = args.batch_sizes or TIMING_BATCH_SIZES
        print(json.dumps(run(args), indent=2))
    return 0
