"""Training throughput against vocabulary size: full softmax vs class-based softmax (`output: class`).

For each vocabulary size C it times the trainer's own SGD step (`rnnlm.update.sgd_step`: forward,
backward, update, gradient clipped at the default clip_norm) on Zipf-distributed sentences of a fixed
length, with the full and with the class output layer, and reports training tokens per CPU-second of
this process (`time.process_time`, so other load on the machine matters little). Run it on one BLAS
thread for per-core figures:

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_vocab_size.py --out benchmarks/results/vocab_size.json

The table in docs/training.md ("Training on large data") comes from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from rnnlm.backend import get_backend
from rnnlm.bench import zipf_counts, zipf_sentences
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.train_config import TrainConfig
from rnnlm.update import sgd_step

# A per-token rate small enough that random text cannot make the timed steps diverge.
LEARNING_RATE = 0.1


def tokens_per_cpu_second(vocab_size: int, output: str, args) -> dict:
    backend = get_backend("cpu")
    config = ModelConfig(vocab_size=vocab_size, hidden_size=args.hidden_size, output=output)
    model = RNNLM(config, backend, seed=0, word_counts=zipf_counts(vocab_size))
    rng = np.random.default_rng(args.seed)
    sentences = zipf_sentences(rng, vocab_size, 8 * args.batch_size, args.length)
    batches = [sentences[start : start + args.batch_size].T for start in range(0, len(sentences), args.batch_size)]
    batches = [(x[:-1].copy(), x[1:].copy(), np.ones(x[1:].shape, np.float32)) for x in batches]
    clip_norm = TrainConfig().clip_norm
    sgd_step(model, *batches[0], LEARNING_RATE, clip_norm)  # warm-up: allocations and BLAS buffers
    rates = []
    for _ in range(args.repeats):
        tokens, steps = 0, 0
        start = time.process_time()
        while time.process_time() - start < args.seconds:
            _, count, _ = sgd_step(model, *batches[steps % len(batches)], LEARNING_RATE, clip_norm)
            tokens += count
            steps += 1
        rates.append(tokens / (time.process_time() - start))
    return {"tokens_per_cpu_s": round(max(rates)), "runs": [round(rate) for rate in rates]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[8_000, 33_000, 100_000])
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--length", type=int, default=25, help="tokens per sentence (PTB averages about 22)")
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU-seconds per timed run")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (the best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    results = []
    for vocab_size in args.vocab_sizes:
        row = {"vocab_size": vocab_size}
        for output in ("full", "class"):
            row[output] = tokens_per_cpu_second(vocab_size, output, args)
        row["class_speedup"] = round(row["class"]["tokens_per_cpu_s"] / row["full"]["tokens_per_cpu_s"], 1)
        results.append(row)
        print(json.dumps(row), flush=True)
    report = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"} | {"dtype": "float32", "cell": "rnn"},
        "environment": {"numpy": np.__version__, "python": platform.python_version(),
                        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                        "load_average_1min": os.getloadavg()[0]},
        "results": results,
    }
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report["settings"]))


if __name__ == "__main__":
    main()
