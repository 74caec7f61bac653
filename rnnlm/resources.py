"""How long a training job may run: the `runtime` (SLURM --time) of the train rule, from the model's
size, the data's token counts and a measured speed (docs/cluster.md).

One training token costs about three times the multiply-adds of its forward step (forward, then the
gradients for the weights and for the hidden state), and one validation token once. The output layer
dominates: vocabulary_size x hidden_size per token for the full softmax.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
# A job's start (interpreter, imports, loading the data) and end (writing the parameters), minutes.
STARTUP_MINUTES = 5
# Speed varies between nodes, and with the load of a shared one.
SAFETY_FACTOR = 2.0
# The class softmax works in many small products, one per word class: measured, each of its
# multiply-adds takes as long as 16 to 26 of the full softmax's (benchmarks/bench_train_runtime.py).
CLASS_OUTPUT_COST = 20


def forward_multiply_adds(hyper: Mapping, vocab_size: int) -> int:
    """Multiply-adds of one token's forward step, the recurrent cell plus the output layer, counted in
    full-softmax-speed units (see CLASS_OUTPUT_COST)."""
    hidden = hyper["hidden_size"]
    cell = GATES[hyper["cell"]] * hidden * (hidden + 1)
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
