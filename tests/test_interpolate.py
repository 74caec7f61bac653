"""Interpolation weight tuning, the mixture, RNN score alignment, and the baseline + interpolation stages."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm.backend import get_backend
from rnnlm.data import Split
from rnnlm.interpolate import interpolate_model, mixture_log_probs, rnn_token_log_probs, tune_weight
from rnnlm.io import RnnlmError, read_json
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.ngram import build_baseline
from rnnlm.vocab import Vocabulary, fingerprint

WORDS = ["SENTENCE_START", "SENTENCE_END", "UNKNOWN_TOKEN"] + [f"w{i}" for i in range(9)]


def scores(rng, size=2000):
    """Two imperfect models' log-probs for the same tokens: each is better on a different subset."""
    truth = rng.uniform(0.05, 0.5, size)
    rnn = np.log(truth * rng.uniform(0.2, 1.5, size))
    ngram = np.log(truth * rng.uniform(0.2, 1.5, size))
    return rnn, ngram


def total(rnn, ngram, weight):
    return mixture_log_probs(rnn, ngram, weight).sum()


def test_tuned_weight_maximises_likelihood():
    rnn, ngram = scores(np.random.default_rng(0))
    weight = tune_weight(rnn, ngram)
    grid = np.linspace(0, 1, 2001)
    best = grid[np.argmax([total(rnn, ngram, w) for w in grid])]
    assert 0 < weight < 1
    assert weight == pytest.approx(best, abs=1e-3)
    assert total(rnn, ngram, weight) >= max(total(rnn, ngram, w) for w in grid) - 1e-9
    # A mixture of two models is better than either on the data it was tuned on.
    assert total(rnn, ngram, weight) > max(rnn.sum(), ngram.sum())


def test_weight_goes_to_the_end_when_one_model_always_wins():
    rnn, ngram = scores(np.random.default_rng(1))
    better = np.maximum(rnn, ngram) + 0.1
    assert tune_weight(better, ngram) == 1.0
    assert tune_weight(rnn, better) == 0.0


def test_mixture_is_stable_and_exact_at_the_ends():
    rnn = np.array([-1000.0, -2.0, -0.5])
    ngram = np.array([-1001.0, -3.0, -0.1])
    np.testing.assert_allclose(mixture_log_probs(rnn, ngram, 1.0), rnn)
    np.testing.assert_allclose(mixture_log_probs(rnn, ngram, 0.0), ngram)
    mixed = mixture_log_probs(rnn, ngram, 0.3)
    assert np.all(np.isfinite(mixed))
    np.testing.assert_allclose(mixed[1:], np.log(0.3 * np.exp(rnn[1:]) + 0.7 * np.exp(ngram[1:])))
    assert mixed[0] == pytest.approx(np.log(0.3 + 0.7 * np.exp(-1.0)) - 1000.0)


def test_tune_weight_refuses_mismatched_or_empty_scores():
    with pytest.raises(RnnlmError, match="validation"):
        tune_weight(np.zeros(0), np.zeros(0))
    with pytest.raises(RnnlmError, match="validation"):
        tune_weight(np.zeros(3), np.zeros(4))


def random_split(rng, sentences):
    lengths = rng.integers(1, 8, size=sentences)
    return Split.from_ids(rng.integers(3, len(WORDS), size=int(lengths.sum())), lengths, vocab_fingerprint=fingerprint(WORDS))


@pytest.fixture()
def tiny_model():
    config = ModelConfig(vocab_size=len(WORDS), hidden_size=8, dtype="float64")
    return RNNLM(config, get_backend("cpu"), seed=3)


def test_rnn_scores_follow_split_order(tiny_model):
    split = random_split(np.random.default_rng(2), 23)
    batched = rnn_token_log_probs(tiny_model, split, batch_size=5)
    assert batched.shape == (split.num_tokens,)
    for i in (0, 7, 22):
        one = split.subset(np.array([i]))
        start, end = split.offsets[i], split.offsets[i + 1]
        np.testing.assert_allclose(batched[start:end], rnn_token_log_probs(tiny_model, one), rtol=1e-12)
    # Stepping the model token by token gives the same scores.
    x, y = split.x[: split.offsets[1]], split.y[: split.offsets[1]]
    state = tiny_model.initial_state(1)
    for t in range(len(x)):
        log_probs, state = tiny_model.step(np.array([x[t]]), state)
        assert float(np.asarray(log_probs)[0, y[t]]) == pytest.approx(batched[t], rel=1e-10)


def test_baseline_and_interpolation_stages(tmp_path, tiny_model):
    rng = np.random.default_rng(4)
    paths = {name: tmp_path / f"{name}.npz" for name in ("train", "valid", "test")}
    for name, sentences in (("train", 300), ("valid", 40), ("test", 40)):
        random_split(rng, sentences).save(paths[name])
    Vocabulary(WORDS, [1] * len(WORDS)).save(tmp_path / "vocab.tsv")
    tiny_model.save(tmp_path / "params.npz", WORDS, {})

    baseline = build_baseline(paths, tmp_path / "vocab.tsv", 2, tmp_path / "kn2.json", tmp_path / "kn2.npz")
    assert read_json(tmp_path / "kn2.json") == baseline
    assert set(baseline["splits"]) == {"train", "valid", "test"}
    # Words are uniform at random: a bigram model cannot beat the number of outcomes by much.
    assert 8 < baseline["splits"]["test"]["perplexity"] < 14

    result = interpolate_model(tmp_path / "params.npz", tmp_path / "vocab.tsv", paths, tmp_path / "kn2.npz",
                               tmp_path / "interpolation.json", device="cpu")
    assert read_json(tmp_path / "interpolation.json") == result
    valid, test = result["splits"]["valid"], result["splits"]["test"]
    assert test["ngram_perplexity"] == pytest.approx(baseline["splits"]["test"]["perplexity"])
    assert valid["interpolated_perplexity"] <= min(valid["rnn_perplexity"], valid["ngram_perplexity"]) + 1e-9
    assert min(point["perplexity"] for point in result["valid_grid"]) >= valid["interpolated_perplexity"] - 1e-9
    assert result["weight_rnn"] + result["weight_ngram"] == pytest.approx(1.0)

    # Scores from another split are refused instead of being mixed token by token with the wrong text.
    random_split(rng, 40).save(paths["test"])
    with pytest.raises(RnnlmError, match="re-run the baseline"):
        interpolate_model(tmp_path / "params.npz", tmp_path / "vocab.tsv", paths, tmp_path / "kn2.npz",
                          tmp_path / "other.json", device="cpu")
    assert not (tmp_path / "other.json").exists()
