"""Evaluation: metrics per split, the add-one unigram baseline, and refusal of mismatched or bad inputs."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from rnnlm.backend import get_backend
from rnnlm.data import Split
from rnnlm.evaluate import evaluate, load_trained, mean_loss, run_evaluation, unigram_log_probs, unigram_loss
from rnnlm.io import RnnlmError, load_npz, save_npz
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.vocab import Vocabulary
from tiny_language import VOCAB_WORDS, run, tiny_splits, write_tiny_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on the tiny language, with its data files."""
    directory = tmp_path_factory.mktemp("evaluate")
    data, vocab = write_tiny_data(directory)
    _, model, out = run(directory, {"epochs": 8})
    return model, out / "params.npz", data, vocab


def split_paths(data):
    return {name: data / f"{name}.npz" for name in ("train", "valid", "test")}


def test_metrics_hold_loss_perplexity_and_a_unigram_baseline_it_beats(trained, tmp_path):
    _, params, data, vocab = trained
    metrics = run_evaluation(params, split_paths(data), vocab, tmp_path / "metrics.json", device="cpu")
    assert (tmp_path / "metrics.json").exists()
    assert metrics["vocab_size"] == len(VOCAB_WORDS)
    splits = tiny_splits()
    for name, entry in metrics["splits"].items():
        assert entry["sentences"] == len(splits[name]) and entry["tokens"] == splits[name].num_tokens
        assert entry["perplexity"] == pytest.approx(math.exp(entry["loss"]))
        assert entry["unigram_perplexity"] == pytest.approx(math.exp(entry["unigram_loss"]))
        assert entry["perplexity"] < 0.5 * entry["unigram_perplexity"]


def test_loss_counts_sentence_end_and_matches_per_token_log_probs(trained):
    model = trained[0]
    split = tiny_splits()["test"]
    x, y, mask = split.batch(np.arange(len(split)))
    per_token = model.token_log_probs(x, y, mask)
    assert mean_loss(model, split) == pytest.approx(-per_token.sum() / split.num_tokens, rel=1e-6)
    assert split.num_tokens == int(split.lengths.sum())  # one SENTENCE_END per sentence is predicted


def test_unigram_is_add_one_smoothed_over_predictable_ids():
    # ids: 0 start, 1 end, 2 unknown, 3, 4; the train split predicts 3 3 4 END and 3 END.
    train = Split.from_ids(np.array([3, 3, 4, 3], dtype=np.int32), np.array([3, 1]))
    log_probs = unigram_log_probs(train, vocab_size=6)
    counts = np.array([0, 2, 0, 3, 1, 0]) + np.array([0, 1, 1, 1, 1, 1])  # START gets nothing
    np.testing.assert_allclose(np.exp(log_probs), counts / counts.sum())
    assert unigram_loss(log_probs, train) == pytest.approx(-np.log(counts[[3, 3, 4, 1, 3, 1]] / counts.sum()).mean())


def test_untrained_model_is_close_to_uniform(trained):
    model = RNNLM(ModelConfig(vocab_size=len(VOCAB_WORDS), hidden_size=12), get_backend("cpu"), seed=0)
    assert mean_loss(model, tiny_splits()["valid"]) == pytest.approx(math.log(len(VOCAB_WORDS)), abs=0.05)


def test_empty_split_gives_nulls(trained):
    model = trained[0]
    splits = tiny_splits()
    empty = Split(np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(1, np.int64))
    metrics = evaluate(model, {"train": splits["train"], "test": empty}, splits["train"])
    assert metrics["splits"]["test"] == {"sentences": 0, "tokens": 0, "loss": None, "perplexity": None,
                                         "unigram_loss": None, "unigram_perplexity": None}


def test_vocabulary_mismatch_is_refused(trained, tmp_path):
    _, params, data, _ = trained
    words = list(VOCAB_WORDS)
    words[5], words[6] = words[6], words[5]
    other = tmp_path / "other.tsv"
    Vocabulary(words, np.ones(len(words), dtype=np.int64)).save(other)
    with pytest.raises(RnnlmError, match=rf"vocabulary mismatch \(id 5 is {VOCAB_WORDS[5]!r}.*retrain"):
        run_evaluation(params, split_paths(data), other, None, device="cpu")
    shorter = tmp_path / "shorter.tsv"
    Vocabulary(words[:-1], np.ones(len(words) - 1, dtype=np.int64)).save(shorter)
    with pytest.raises(RnnlmError, match="vocabulary mismatch"):
        run_evaluation(params, split_paths(data), shorter, None, device="cpu")


def test_data_with_ids_outside_the_vocabulary_is_refused(trained):
    model = trained[0]
    split = Split.from_ids(np.array([3, len(VOCAB_WORDS) + 4], dtype=np.int32), np.array([2]))
    with pytest.raises(RnnlmError, match="different vocabularies"):
        evaluate(model, {"train": split}, split)


def test_corrupt_pickled_and_nan_params_files_are_refused(trained, tmp_path):
    _, params, data, vocab = trained
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(params.read_bytes()[:300])
    with pytest.raises(RnnlmError, match="not a readable .npz"):
        load_trained(corrupt, "cpu")

    pickled = tmp_path / "pickled.npz"
    arrays = load_npz(params)
    with open(pickled, "wb") as handle:
        np.savez(handle, **arrays, extra=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(RnnlmError, match="pickled objects"):
        load_trained(pickled, "cpu")
    whole_pickle = tmp_path / "whole.npz"
    whole_pickle.write_bytes(pickle.dumps(arrays))
    with pytest.raises(RnnlmError):
        load_trained(whole_pickle, "cpu")

    nan = tmp_path / "nan.npz"
    arrays["W"] = arrays["W"].copy()
    arrays["W"][0, 0] = np.nan
    save_npz(nan, **arrays)
    with pytest.raises(RnnlmError, match="W holds NaN"):
        run_evaluation(nan, split_paths(data), vocab, None, device="cpu")
