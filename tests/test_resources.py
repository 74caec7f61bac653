"""The train rule's runtime estimate (rnnlm.resources): token counts from the index files' headers,
the multiply-add count of a model, the cap."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm.data import Split
from rnnlm.resources import CLASS_OUTPUT_COST, STARTUP_MINUTES, forward_multiply_adds, train_minutes

MODEL = {"hidden_size": 100, "cell": "rnn", "output": "full", "num_classes": 0, "epochs": 10, "evaluate_every": 1}


def test_split_tokens_reads_the_header_only(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 30, size=500)
    split = Split.from_ids(rng.integers(3, 50, size=int(lengths.sum())), lengths)
    split.save(tmp_path / "train.npz")
    assert Split.count_tokens(tmp_path / "train.npz") == split.num_tokens == int(lengths.sum()) + 500


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
