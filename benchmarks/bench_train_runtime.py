"""Measures the training speed behind the train rule's `runtime` estimate (rnnlm.resources, docs/cluster.md).

Each configuration is trained for --epochs epochs on synthetic index matrices (Zipf-distributed word ids,
sentence lengths like prose, capped at 80) with one BLAS thread, as the rule runs it. The speed is the
multiply-adds rnnlm.resources counts for that run divided by its CPU time (on a dedicated core, the
wall time; on a shared machine, steadier than it); the spread across model shapes says how far a
single speed can be trusted. `estimate_seconds` is what the default `train_runtime.speed` predicts
for the run (before the rule's safety factor and start-up allowance).

    PYTHONPATH=. python benchmarks/bench_train_runtime.py [--train-tokens 40000] [--epochs 2]
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads its BLAS
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rnnlm.backend import get_backend  # noqa: E402
from rnnlm.data import Split  # noqa: E402
from rnnlm.model import RNNLM  # noqa: E402
from rnnlm.resources import forward_multiply_adds  # noqa: E402
from rnnlm.train import train  # noqa: E402
from rnnlm.train_config import split_hyperparameters  # noqa: E402
from rnnlm.workflow_config import prepare  # noqa: E402

import yaml  # noqa: E402

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
# (name, vocabulary size, model entry): full and class softmax, the three cells, vocabularies from
# 2,000 to 20,000 words; batches of 4 sentences (the default).
CASES = [
    ("rnn H128, V 3186", 3186, {"hidden_size": 128, "dropout": 0.5, "averaging": True}),
    ("gru H256, V 3186", 3186, {"cell": "gru", "hidden_size": 256, "dropout": 0.5, "input_dropout": 0.2,
                                "averaging": True}),
    ("rnn H128, V 8000", 8000, {"hidden_size": 128, "dropout": 0.5}),
    ("gru H256, V 8000", 8000, {"cell": "gru", "hidden_size": 256, "dropout": 0.5}),
    ("lstm H512, V 2000", 2000, {"cell": "lstm", "hidden_size": 512}),
    ("rnn H256 class, V 8000", 8000, {"hidden_size": 256, "output": "class"}),
    ("rnn H128 class, V 3186", 3186, {"hidden_size": 128, "output": "class"}),
    ("gru H512 class, V 20000", 20000, {"cell": "gru", "hidden_size": 512, "output": "class"}),
]


def synthetic_split(tokens: int, vocab_size: int, rng: np.random.Generator) -> Split:
    lengths = np.minimum(80, 1 + rng.geometric(1 / 20, size=tokens // 20))
    lengths = lengths[np.cumsum(lengths + 1) <= tokens]
    ranks = np.arange(1, vocab_size - 2)
    weights = 1.0 / ranks
    ids = 3 + rng.choice(len(ranks), size=int(lengths.sum()), p=weights / weights.sum())
    return Split.from_ids(ids, lengths)


def measure(name: str, vocab_size: int, entry: dict, train_tokens: int, epochs: int) -> dict:
    config = {"corpus": "builtin", "vocabulary_size": vocab_size, "models": {"m": dict(entry, epochs=epochs)}}
    hyper = prepare(config, SCHEMA)["models"]["m"]
    rng = np.random.default_rng(0)
    train_split = synthetic_split(train_tokens, vocab_size, rng)
    valid_split = synthetic_split(train_tokens // 10, vocab_size, rng)
    counts = np.bincount(train_split.y, minlength=vocab_size) + 1
    words = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN"] + [f"w{i}" for i in range(3, vocab_size)]
    model_config, train_config = split_hyperparameters(hyper, vocab_size, "float32")
    model = RNNLM(model_config, get_backend("cpu"), seed=1, word_counts=counts)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start, start_cpu = time.perf_counter(), time.process_time()
        train(model, train_config, train_split, valid_split, words, out / "params.npz", out / "checkpoint.npz",
              out / "train_log.csv", progress=False)
        wall, seconds = time.perf_counter() - start, time.process_time() - start_cpu
    per_token = forward_multiply_adds(hyper, vocab_size)
    work = epochs * 3 * per_token * train_split.num_tokens + (epochs + 1) * per_token * valid_split.num_tokens
    default_speed = SCHEMA["properties"]["train_runtime"]["properties"]["speed"]["default"]
    return {"case": name, "train_tokens": train_split.num_tokens, "epochs": epochs, "wall_seconds": round(wall, 2),
            "cpu_seconds": round(seconds, 2), "estimate_seconds": round(work / default_speed, 2),
            "train_tokens_per_s": round(epochs * train_split.num_tokens / seconds),
            "multiply_adds_per_token": per_token, "speed": float(f"{work / seconds:.3g}")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-tokens", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cases", nargs="*", type=int, help="indices into CASES (default: all)")
    args = parser.parse_args()
    chosen = [CASES[i] for i in args.cases] if args.cases else CASES
    rows = [measure(name, vocab, entry, args.train_tokens, args.epochs) for name, vocab, entry in chosen]
    for row in rows:
        print(json.dumps(row))
    speeds = [row["speed"] for row in rows]
    print(json.dumps({"min_speed": min(speeds), "median_speed": float(np.median(speeds)), "max_speed": max(speeds),
                      "load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
