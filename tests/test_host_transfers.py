"""Device-to-host transfers stay few and small: counted on the CPU backend, where each `to_host`
call stands for a synchronisation and a copy on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm.backend import Backend
from rnnlm.bench import _best_rate
from rnnlm.evaluate import split_loss
from rnnlm.data import Split
from rnnlm.generate import sample_sentences
from rnnlm.gradcheck import random_batch
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.vocab import SPECIAL_TOKENS


class CountingBackend(Backend):
    """NumPy, recording the shape of every array sent to the host."""

    def __init__(self):
        super().__init__(np, "numpy")
        self.transfers: list[tuple[int, ...]] = []

    def to_host(self, array):
        self.transfers.append(np.shape(array))
        return super().to_host(array)


def test_the_loss_of_a_host_batch_comes_back_as_one_scalar():
    backend = CountingBackend()
    model = RNNLM(ModelConfig(vocab_size=40, hidden_size=6), backend, seed=0)
    x, y, mask = random_batch(np.random.default_rng(0), 40, [7, 3, 5])
    loss, count = model.loss(x, y, mask)
    assert count == 15 and loss > 0
    assert backend.transfers == [()]  # the summed loss only: no (T, B) log-probabilities, no mask


def test_evaluation_transfers_one_scalar_per_batch():
    backend = CountingBackend()
    model = RNNLM(ModelConfig(vocab_size=40, hidden_size=6), backend, seed=0)
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 9, 10)
    split = Split.from_ids(rng.integers(3, 40, lengths.sum()), lengths)
    total, tokens = split_loss(model, split, batch_size=4)
    assert tokens == lengths.sum() + len(lengths)  # every word and each SENTENCE_END
    assert backend.transfers == [()] * 3


def test_sampling_brings_back_the_chosen_ids_not_the_distributions():
    backend = CountingBackend()
    vocab = 30
    model = RNNLM(ModelConfig(vocab_size=vocab, hidden_size=6), backend, seed=0)
    words = [*SPECIAL_TOKENS, *(f"w{i}" for i in range(vocab - len(SPECIAL_TOKENS)))]
    sample_sentences(model, words, 2, min_length=1, max_length=5, seed=0)
    assert backend.transfers and all(len(shape) == 1 for shape in backend.transfers)  # (B,) ids, never (B, C)


@pytest.mark.parametrize("repeats", [1, 3])
def test_timed_runs_wait_for_the_device(repeats):
    """Each timed run ends with a synchronisation, so queued GPU work is inside the measurement."""
    events = []

    class Args:
        clock = "wall"

    Args.repeats = repeats
    result = _best_rate(lambda i: events.append("step") or 1, 2, Args, synchronize=lambda: events.append("sync"))
    assert len(result["runs"]) == repeats
    assert events == ["step", "sync"] + ["step", "step", "sync"] * repeats
