"""Tokens per CPU-second of the trainer's clipped Adam step for the toolkit's models (docs/training.md,
"Toolkit"): the one-hot GRU against tied and stacked GRUs, at C 8000, H 256, class output, batch 64
of 20-token rows, dropout 0.5 / input dropout 0.2, one BLAS thread.

Usage: OPENBLAS_NUM_THREADS=1 python benchmarks/bench_toolkit_speed.py [variant ...]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from rnnlm.backend import get_backend
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.optim import Adam
from rnnlm.update import adam_step

VOCAB, HIDDEN, BATCH, STEPS = 8000, 256, 64, 20
BASE = {"vocab_size": VOCAB, "hidden_size": HIDDEN, "cell": "gru", "output": "class", "dropout": 0.5,
        "input_dropout": 0.2}
TIED = {"embedding_size": HIDDEN, "tie_embeddings": True}
VARIANTS = {
    "gru": {},
    "gru_tied": TIED,
    "gru_2layer": {"num_layers": 2, "layer_dropout": 0.3},
    "gru_tied_2layer": {**TIED, "num_layers": 2, "layer_dropout": 0.3},
    "gru_tied_2layer_locked": {**TIED, "num_layers": 2, "layer_dropout": 0.3, "locked_dropout": True},
}


def tokens_per_cpu_second(overrides: dict, batches, repeats: int = 3) -> float:
    backend = get_backend("cpu")
    model = RNNLM(ModelConfig(**BASE, **overrides), backend, seed=0, word_counts=1.0 / np.arange(1, VOCAB + 1))
    optimizer, dropout_rng = Adam(model.params, np), backend.rng(0)
    adam_step(model, optimizer, *batches[0], 0.001, 1.0, dropout_rng=dropout_rng)  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.process_time()
        for batch in batches:
            adam_step(model, optimizer, *batch, 0.001, 1.0, dropout_rng=dropout_rng)
        rates.append(len(batches) * STEPS * BATCH / (time.process_time() - started))
    return max(rates)


def main(names: list[str]) -> None:
    rng = np.random.default_rng(0)
    # Zipf-distributed ids, as real text: the class softmax's cost depends on the targets' classes.
    batches = [(rng.zipf(1.3, (STEPS, BATCH)) % VOCAB, rng.zipf(1.3, (STEPS, BATCH)) % VOCAB,
                np.ones((STEPS, BATCH), np.float32)) for _ in range(8)]
    for name in names or VARIANTS:
        print(f"{name:24s} {tokens_per_cpu_second(VARIANTS[name], batches):8.0f} tokens per CPU-second", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
