"""What one model's jobs need, the one place of job sizing: the memory (`mem_mb`) of every job that
holds the model, and how long a training job may run, the `runtime` (SLURM --time) of the train rule,
from the model's size, the data's token counts and a measured speed (docs/cluster.md).

One training token costs about three times the multiply-adds of its forward step (forward, then the
gradients for the weights and for the hidden state), and one validation token once. The output layer
dominates: vocabulary_size x hidden_size per token for the full softmax.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from rnnlm.cells import make_cell
from rnnlm.io import RnnlmError

# A job's start (interpreter, imports, loading the data) and end (writing the parameters), minutes.
STARTUP_MINUTES = 5
# Speed varies between nodes, and with the load of a shared one.
SAFETY_FACTOR = 2.0
# The class softmax works in many small products, one per word class: measured, each of its
# multiply-adds takes as long as 16 to 26 of the full softmax's (benchmarks/bench_train_runtime.py).
CLASS_OUTPUT_COST = 20


def gates(cell: str) -> int:
    """Blocks of the cell's stacked recurrent weights: 1 (rnn), 3 (gru), 4 (lstm)."""
    return make_cell(cell, 1, "tanh").gates


def model_memory_mb(hyper: Mapping, vocab_size: int, max_sentence_length: int, dtype: str) -> int:
    """Memory for one model's job: interpreter and libraries, plus parameters held six times (current,
    best, gradients, update temporaries, checkpoint host copies), plus one batch's activations."""
    hidden, batch, blocks = hyper["hidden_size"], hyper["batch_size"], gates(hyper["cell"])
    item = 8 if dtype == "float64" else 4
    weights = blocks * (hidden * vocab_size + hidden * hidden + hidden) + vocab_size * hidden + vocab_size
    activations = 4 * blocks * batch * (max_sentence_length + 1) * hidden
    return 1000 + math.ceil(item * (6 * weights + activations) / 2**20)


def forward_multiply_adds(hyper: Mapping, vocab_size: int) -> int:
    """Multiply-adds of one token's forward step, the recurrent cell plus the output layer, counted in
    full-softmax-speed units (see CLASS_OUTPUT_COST)."""
    hidden, layers = hyper["hidden_size"], hyper.get("num_layers", 1)
    width = gates(hyper["cell"]) * hidden
    # Each layer's recurrence; the input GEMMs of an embedding table's first layer and of the layers above
    # (the one-hot input is a gather, no multiply-adds).
    cell = layers * width * (hidden + 1) + width * hyper.get("embedding_size", 0) + (layers - 1) * width * hidden
    if hyper["output"] == "class":
        classes = hyper["num_classes"] or round(math.sqrt(vocab_size))
        # Class scores, then the scores of one class's words.
        output = CLASS_OUTPUT_COST * hidden * (classes + math.ceil(vocab_size / classes))
    else:
        output = hidden * vocab_size
    return cell + output


def train_minutes(hyper: Mapping, vocab_size: int, train_tokens: int, valid_tokens: int, speed: float,
                  max_minutes: int) -> int:
    """Minutes for `epochs` epochs (the most training may take: early stopping only shortens it), each a
    pass over the train split and an evaluation of the valid split, at `speed` multiply-adds per
    second, times SAFETY_FACTOR, plus STARTUP_MINUTES; at most `max_minutes`."""
    per_token = forward_multiply_adds(hyper, vocab_size)
    evaluations = hyper["epochs"] / hyper["evaluate_every"] + 1  # the untrained model is measured too
    work = hyper["epochs"] * 3 * per_token * train_tokens + evaluations * per_token * valid_tokens
    minutes = STARTUP_MINUTES + math.ceil(SAFETY_FACTOR * work / speed / 60)
    return min(minutes, max_minutes)


def machine_memory_mb() -> int:
    """Physical memory of this machine, MiB (what a local job could ever get)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (OSError, ValueError, AttributeError):
        return 1 << 40


def check_fits_here(mem_mb: int, what: str) -> int:
    """`mem_mb` if a local job of that size can run on this machine; else an RnnlmError naming the
    estimate, the machine's memory and the settings to change (before anything is scheduled)."""
    available = machine_memory_mb()
    if mem_mb > available:
        raise RnnlmError(
            f"{what} needs about {mem_mb:,} MB of memory, more than this machine's {available:,} MB; reduce "
            "hidden_size, vocabulary_size or batch_size, or run on a cluster node with more (profiles/slurm)"
        )
    return mem_mb

