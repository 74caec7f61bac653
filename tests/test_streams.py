"""Document mode: streams of a document's sentences, windows, resets, and scoring in context."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm import streams
from rnnlm.backend import get_backend
from rnnlm.data import Split
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.vocab import SENTENCE_END_ID, SENTENCE_START_ID

VOCAB = 17


def documents_split(seed: int = 0, documents: int = 7, longest_sentence: int = 6) -> Split:
    """Random sentences grouped into documents of 1..4 sentences (doc_offsets as the index stage writes them)."""
    rng = np.random.default_rng(seed)
    per_document = rng.integers(1, 5, documents)
    lengths = rng.integers(1, longest_sentence + 1, per_document.sum())
    return Split.from_ids(rng.integers(3, VOCAB, lengths.sum()), lengths,
                          doc_offsets=np.concatenate([[0], np.cumsum(per_document)]))


def stream_reference(split: Split, doc_offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per document, the stream inputs, targets and flat positions, by a plain Python loop."""
    xs, ys, positions = [], [], []
    for j in range(len(doc_offsets) - 1):
        x, y, p = [], [], []
        for i in range(doc_offsets[j], doc_offsets[j + 1]):
            start, end = split.offsets[i], split.offsets[i + 1]
            sentence_x = split.x[start:end].tolist()
            if i > doc_offsets[j]:
                sentence_x[0] = SENTENCE_END_ID
            x += sentence_x
            y += split.y[start:end].tolist()
            p += list(range(start, end))
        xs.append(x), ys.append(y), positions.append(p)
    return xs, ys, positions


def all_windows(layout, bptt):
    parts = list(layout.windows(bptt))
    return {name: np.concatenate([getattr(part, name) for part in parts]) for name in
            ("x", "y", "mask", "resets", "positions")}


def model_of(cell="rnn", output="full", context="document"):
    config = ModelConfig(vocab_size=VOCAB, hidden_size=6, cell=cell, output=output, dtype="float64", context=context)
    return RNNLM(config, get_backend("cpu"), seed=5)


@pytest.mark.parametrize("rows, bptt", [(1, 5), (3, 4), (4, 1), (50, 7)])
def test_evaluation_reads_every_document_whole_with_stream_inputs(rows, bptt):
    split = documents_split(1)
    layout = streams.evaluation_layout(split, rows)
    windows = all_windows(layout, bptt)
    assert windows["x"].shape[0] == layout.steps and all(w.x.shape[0] <= bptt for w in layout.windows(bptt))
    real = windows["positions"] >= 0
    # Every predicted token exactly once, in file order along each row, with the split's targets.
    assert sorted(windows["positions"][real].tolist()) == list(range(split.num_tokens))
    for b in range(layout.rows):
        row = windows["positions"][:, b]
        row = row[row >= 0]
        assert np.all(np.diff(row) == 1)
    np.testing.assert_array_equal(windows["y"][real], split.y[windows["positions"][real]])
    assert np.all(windows["mask"] == real)
    assert np.all(windows["x"][~real] == 0) and np.all(windows["resets"][~real] == 0)
    # Inputs and resets as the reference reading: each row is whole documents back to back.
    xs, _, positions = stream_reference(split, split.doc_offsets)
    expected_x = np.zeros(split.num_tokens, dtype=np.int64)
    expected_reset = np.zeros(split.num_tokens)
    for x, p in zip(xs, positions):
        expected_x[p] = x
        expected_reset[p[0]] = 1
    np.testing.assert_array_equal(windows["x"][real], expected_x[windows["positions"][real]])
    np.testing.assert_array_equal(windows["resets"][real], expected_reset[windows["positions"][real]])
    assert (windows["x"][real] == SENTENCE_START_ID).sum() == len(split.doc_offsets) - 1


def test_training_rows_pack_the_documents_in_a_seeded_order():
    split = documents_split(2, documents=9)
    offsets = split.doc_offsets
    order = np.random.default_rng(3).permutation(len(offsets) - 1)
    layout = streams.training_layout(split, 4, order)
    windows = all_windows(layout, 3)
    real = windows["positions"] >= 0
    assert sorted(windows["positions"][real].tolist()) == list(range(split.num_tokens))
    # The rows, read one after the other, are the documents in `order`, concatenated.
    xs, ys, positions = stream_reference(split, offsets)
    concatenated = np.concatenate([positions[j] for j in order])
    read = np.concatenate([windows["positions"][:, b][real[:, b]] for b in range(layout.rows)])
    np.testing.assert_array_equal(read, concatenated)
    np.testing.assert_array_equal(np.concatenate([windows["x"][:, b][real[:, b]] for b in range(layout.rows)]),
                                  np.concatenate([xs[j] for j in order]))
    # Resets: each row's first step and every document start, nothing else.
    starts = {positions[j][0] for j in order}
    for b in range(layout.rows):
        row = windows["positions"][:, b][real[:, b]]
        expected = [t == 0 or row[t] in starts for t in range(len(row))]
        assert windows["resets"][: len(row), b].astype(bool).tolist() == expected
    # Padding only at the end of the last row.
    assert real[:, :-1].all() and (np.diff(real[:, -1].astype(int)) <= 0).all()


def step_by_step(model, split: Split) -> np.ndarray:
    """The reference: every document fed token by token through `model.step` from a zero state."""
    xs, ys, positions = stream_reference(split, split.doc_offsets)
    scores = np.zeros(split.num_tokens)
    for x, y, p in zip(xs, ys, positions):
        state = model.initial_state(1)
        for token, target, position in zip(x, y, p):
            log_probs, state = model.step([token], state)
            scores[position] = log_probs[0, target]
    return scores


@pytest.mark.parametrize("cell, output", [("rnn", "full"), ("gru", "class"), ("lstm", "full")])
@pytest.mark.parametrize("rows, window", [(1, 4), (3, 5), (256, 128)])
def test_stream_scores_equal_a_token_by_token_reference(cell, output, rows, window):
    model = model_of(cell, output)
    split = documents_split(4)
    scores = streams.token_log_probs(model, split, rows=rows, window=window)
    np.testing.assert_allclose(scores, step_by_step(model, split), rtol=1e-10, atol=1e-12)
    loss, count = streams.split_loss(model, split, rows=rows, window=window)
    assert count == split.num_tokens
    np.testing.assert_allclose(loss, -scores.sum(), rtol=1e-12)


def test_context_changes_the_scores_and_one_sentence_documents_read_as_sentence_mode():
    model = model_of("gru")
    split = documents_split(5)
    x, y, mask = split.batch(np.arange(len(split)))
    per_sentence = model.token_log_probs(x, y, mask).T[mask.T > 0]  # sentence after sentence: flat y order
    in_context = streams.token_log_probs(model, split, rows=2, window=3)
    assert not np.allclose(in_context, per_sentence)
    one_each = Split(split.x, split.y, split.offsets)  # no boundaries: one sentence per document
    np.testing.assert_allclose(streams.token_log_probs(model, one_each, rows=2, window=3), per_sentence, rtol=1e-10)


def test_empty_splits_have_no_windows():
    split = Split.from_ids(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))
    assert list(streams.evaluation_layout(split).windows(4)) == []
    assert list(streams.training_layout(split, 4, np.arange(0)).windows(4)) == []
    assert streams.token_log_probs(model_of(), split).shape == (0,)
