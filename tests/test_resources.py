"""Job sizing (rnnlm.resources): the memory of a model's jobs, and the train rule's runtime estimate
(the multiply-add count of a model, the cap)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm.resources import CLASS_OUTPUT_COST, STARTUP_MINUTES, forward_multiply_adds, gates, model_memory_mb, train_minutes

MODEL = {"hidden_size": 100, "cell": "rnn", "output": "full", "num_classes": 0, "epochs": 10, "evaluate_every": 1}


def test_multiply_adds_count_the_cell_and_the_output_layer():
    assert forward_multiply_adds(MODEL, 8000) == 100 * 101 + 100 * 8000
    assert forward_multiply_adds(dict(MODEL, cell="lstm"), 8000) == 4 * 100 * 101 + 100 * 8000
    # The class softmax scores ~sqrt(V) classes, then the words of one class, at a lower speed.
    assert forward_multiply_adds(dict(MODEL, output="class"), 10000) == 100 * 101 + CLASS_OUTPUT_COST * 100 * 200
    assert forward_multiply_adds(dict(MODEL, output="class"), 10000) < forward_multiply_adds(MODEL, 10000)


def test_runtime_follows_epochs_and_tokens_and_stops_at_the_cap():
    def minutes(**changes):
        settings = {"hyper": MODEL, "vocab_size": 8000, "train_tokens": 2_000_000, "valid_tokens": 100_000,
                    "speed": 1e10, "max_minutes": 10**6}
        settings.update(changes)
        return train_minutes(**settings)

    base = minutes()
    # 10 epochs x 3 x 810,100 multiply-adds x 2M tokens, 11 validations of 100k tokens, at 1e10/s, x2.
    work = 10 * 3 * 810_100 * 2_000_000 + 11 * 810_100 * 100_000
    assert base == STARTUP_MINUTES + int(np.ceil(2 * work / 1e10 / 60))
    assert minutes(hyper=dict(MODEL, epochs=20)) - STARTUP_MINUTES == pytest.approx(2 * (base - STARTUP_MINUTES), rel=0.02)
    assert minutes(train_tokens=4_000_000) > base
    assert minutes(speed=2e10) < base
    assert minutes(max_minutes=60) == 60
    assert minutes(train_tokens=10, valid_tokens=10) == STARTUP_MINUTES + 1


def test_gates_come_from_the_cells():
    assert [gates(cell) for cell in ("rnn", "gru", "lstm")] == [1, 3, 4]


def test_memory_counts_the_parameters_six_times_and_one_batch():
    hyper = {"hidden_size": 1000, "batch_size": 32, "cell": "gru"}
    # 3 x (1000 x 10000 + 1000^2 + 1000) + 10000 x 1000 + 10000 weights, 4 x 3 x 32 x 81 x 1000 activations.
    weights = 3 * (1000 * 10000 + 1000 * 1000 + 1000) + 10000 * 1000 + 10000
    activations = 4 * 3 * 32 * 81 * 1000
    assert model_memory_mb(hyper, 10000, 80, "float32") == 1000 + -(-4 * (6 * weights + activations) // 2**20)
    assert model_memory_mb(hyper, 10000, 80, "float64") == 1000 + -(-8 * (6 * weights + activations) // 2**20)
    assert model_memory_mb(dict(hyper, cell="rnn"), 10000, 80, "float32") < model_memory_mb(hyper, 10000, 80, "float32")
