"""The vectorized Kneser-Ney model against a slow, literal implementation, and its normalisation."""

from __future__ import annotations

import collections
import logging
from types import SimpleNamespace

import numpy as np
import pytest

from rnnlm import ngram
from rnnlm.io import RnnlmError
from rnnlm.ngram import FALLBACK_DISCOUNTS, KneserNey, perplexity
from rnnlm.vocab import SENTENCE_END_ID, SENTENCE_START_ID

VOCAB_SIZE = 80


def make_split(sentences):
    """Split-shaped arrays (x, y, offsets) of sentences given as lists of word ids."""
    xs = [[SENTENCE_START_ID] + list(s) for s in sentences]
    ys = [list(s) + [SENTENCE_END_ID] for s in sentences]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in xs])]).astype(np.int64)
    return SimpleNamespace(
        x=np.array([t for x in xs for t in x], dtype=np.int32),
        y=np.array([t for y in ys for t in y], dtype=np.int32),
        offsets=offsets,
    )


def random_sentences(rng, count, vocab_size=VOCAB_SIZE, max_length=9):
    """Sentences of Zipf-like word ids (3..vocab_size-1) with some repeated structure, so n-grams recur."""
    words = np.arange(3, vocab_size)
    weights = np.arange(1, words.size + 1) ** -1.5
    sentences = []
    for _ in range(count):
        length = int(rng.integers(1, max_length + 1))
        sentence = list(rng.choice(words, size=length, p=weights / weights.sum()))
        if rng.random() < 0.3:
            sentence[:2] = [3, 4][: len(sentence)]
        sentences.append([int(w) for w in sentence])
    return sentences


class ReferenceKneserNey:
    """Interpolated modified Kneser-Ney written out literally from the definitions, with dicts and loops."""

    def __init__(self, sentences, vocab_size, order, discounts=None):
        self.vocab_size, self.order = vocab_size, order
        self.raw = collections.Counter()
        for sentence in sentences:
            seq = [SENTENCE_START_ID] + sentence + [SENTENCE_END_ID]
            for end in range(1, len(seq)):
                for k in range(1, order + 1):
                    if end - k + 1 >= 0:
                        self.raw[tuple(seq[end - k + 1 : end + 1])] += 1
        self.left_words = collections.defaultdict(set)
        for gram in self.raw:
            if len(gram) >= 2:
                self.left_words[gram[1:]].add(gram[0])
        self.followers = collections.defaultdict(list)
        for gram in self.raw:
            self.followers[gram[:-1]].append(gram)
        if discounts is None:
            discounts = [self.estimate(k) for k in range(1, order + 1)]
        self.discounts = np.asarray(discounts, dtype=np.float64)

    def adjusted(self, gram):
        if gram not in self.raw:
            return 0
        if len(gram) == self.order or gram[0] == SENTENCE_START_ID:
            return self.raw[gram]
        return len(self.left_words[gram])

    def estimate(self, k):
        n = collections.Counter(self.adjusted(g) for g in self.raw if len(g) == k)
        if min(n[1], n[2], n[3], n[4]) == 0:
            return list(FALLBACK_DISCOUNTS)
        y = n[1] / (n[1] + 2 * n[2])
        estimate = [1 - 2 * y * n[2] / n[1], 2 - 3 * y * n[3] / n[2], 3 - 4 * y * n[4] / n[3]]
        return estimate if all(0 < d <= c for c, d in enumerate(estimate, 1)) else list(FALLBACK_DISCOUNTS)

    def discount(self, k, count):
        return 0.0 if count == 0 else self.discounts[k - 1][min(count, 3) - 1]

    def prob(self, word, history):
        """p(word | history), history being the last (at most order-1) tokens before the word."""
        if word == SENTENCE_START_ID:
            return 0.0
        if not history:
            lower = 1.0 / (self.vocab_size - 1)
        else:
            lower = self.prob(word, history[1:])
        k = len(history) + 1
        followers = self.followers.get(history, [])
        total = sum(self.adjusted(g) for g in followers)
        if total == 0:
            return lower
        gamma = sum(self.discount(k, self.adjusted(g)) for g in followers) / total
        count = self.adjusted(history + (word,))
        return max(count - self.discount(k, count), 0.0) / total + gamma * lower

    def sentence_log_probs(self, sentence):
        seq = [SENTENCE_START_ID] + sentence + [SENTENCE_END_ID]
        return [np.log(self.prob(seq[i], tuple(seq[max(0, i - self.order + 1) : i]))) for i in range(1, len(seq))]


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    return random_sentences(rng, 400), random_sentences(rng, 60) + [[VOCAB_SIZE - 1] * 3, [3]]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_matches_reference_with_estimated_discounts(corpus, order):
    train, test = corpus
    model = KneserNey.fit(make_split(train), VOCAB_SIZE, order)
    reference = ReferenceKneserNey(train, VOCAB_SIZE, order)
    # The corpus is big enough for genuine estimates, not the fallback.
    assert not np.any(np.all(np.isclose(reference.discounts, FALLBACK_DISCOUNTS), axis=1))
    np.testing.assert_allclose(model.discounts, reference.discounts, rtol=1e-12)
    for sentences in (train[:50], test):
        expected = [lp for s in sentences for lp in reference.sentence_log_probs(s)]
        np.testing.assert_allclose(model.token_log_probs(make_split(sentences)), expected, rtol=1e-10)


def test_matches_reference_with_given_discounts(corpus):
    train, test = corpus
    discounts = [[0.3, 0.9, 1.2], [0.6, 1.1, 1.7], [0.7, 1.3, 2.5]]
    model = KneserNey.fit(make_split(train), VOCAB_SIZE, 3, discounts=discounts)
    reference = ReferenceKneserNey(train, VOCAB_SIZE, 3, discounts)
    expected = [lp for s in test for lp in reference.sentence_log_probs(s)]
    np.testing.assert_allclose(model.token_log_probs(make_split(test)), expected, rtol=1e-10)


def contexts(train, rng):
    """Histories seen in training, never seen, sentence starts, and longer than the order."""
    seen = [[SENTENCE_START_ID] + s[:cut] for s in train[:40] for cut in range(len(s) + 1)]
    unseen = [[SENTENCE_START_ID] + [int(w) for w in rng.integers(3, VOCAB_SIZE, size=n)] for n in range(1, 12)]
    never_follows = [[SENTENCE_START_ID, VOCAB_SIZE - 1, VOCAB_SIZE - 1, VOCAB_SIZE - 1, VOCAB_SIZE - 1]]
    return seen + unseen + never_follows + [[SENTENCE_START_ID]]


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_distribution_sums_to_one(corpus, order):
    train, _ = corpus
    model = KneserNey.fit(make_split(train), VOCAB_SIZE, order)
    for history in contexts(train, np.random.default_rng(1)):
        dist = model.distribution(history)
        assert dist.shape == (VOCAB_SIZE,)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        assert dist[SENTENCE_START_ID] == 0.0
        assert np.all(np.delete(dist, SENTENCE_START_ID) > 0)


def test_distribution_agrees_with_token_scores(corpus):
    train, test = corpus
    model = KneserNey.fit(make_split(train), VOCAB_SIZE, 3)
    sentence = test[0]
    scores = model.token_log_probs(make_split([sentence]))
    seq = [SENTENCE_START_ID] + sentence + [SENTENCE_END_ID]
    for i in range(1, len(seq)):
        assert np.log(model.distribution(seq[:i])[seq[i]]) == pytest.approx(scores[i - 1], rel=1e-12)


def test_higher_order_fits_training_text_better(corpus):
    train, _ = corpus
    split = make_split(train)
    train_perplexities = [perplexity(KneserNey.fit(split, VOCAB_SIZE, n).token_log_probs(split)) for n in (1, 2, 3)]
    assert train_perplexities[0] > train_perplexities[1] > train_perplexities[2]


def test_tiny_corpus_falls_back_to_default_discounts(caplog):
    train = [[3, 4, 5], [3, 4]]
    with caplog.at_level(logging.WARNING, logger="rnnlm.ngram"):
        model = KneserNey.fit(make_split(train), VOCAB_SIZE, 3)
    assert "fallback" in caplog.text
    np.testing.assert_allclose(model.discounts, [FALLBACK_DISCOUNTS] * 3)
    np.testing.assert_allclose(model.token_log_probs(make_split(train)),
                               [lp for s in train for lp in ReferenceKneserNey(train, VOCAB_SIZE, 3).sentence_log_probs(s)])
    assert model.distribution([SENTENCE_START_ID, 3]).sum() == pytest.approx(1.0)


def test_refuses_bad_input(corpus):
    train, _ = corpus
    with pytest.raises(RnnlmError, match="order"):
        KneserNey.fit(make_split(train), VOCAB_SIZE, 0)
    with pytest.raises(RnnlmError, match="vocabulary"):
        KneserNey.fit(make_split(train), 5, 3)
    with pytest.raises(RnnlmError, match="no tokens"):
        KneserNey.fit(make_split([]), VOCAB_SIZE, 3)
    with pytest.raises(RnnlmError, match="discounts"):
        KneserNey.fit(make_split(train), VOCAB_SIZE, 2, discounts=[[0.5, 1.0, 1.5]])
    model = KneserNey.fit(make_split(train), VOCAB_SIZE, 2)
    with pytest.raises(RnnlmError, match="rebuild the index"):
        model.token_log_probs(make_split([[VOCAB_SIZE]]))
    with pytest.raises(RnnlmError, match="history"):
        model.distribution([])


@pytest.mark.parametrize("order", [2, 3, 4])
def test_counting_and_scoring_in_small_chunks_changes_nothing(corpus, order, monkeypatch):
    """Chunks of a few sentences, merged many times, give the model counted in one piece."""
    train, test = (make_split(sentences) for sentences in corpus)
    whole = KneserNey.fit(train, VOCAB_SIZE, order)
    whole_scores = whole.token_log_probs(test)
    monkeypatch.setattr(ngram, "CHUNK_TOKENS", 40)
    chunked = KneserNey.fit(train, VOCAB_SIZE, order)
    np.testing.assert_array_equal(chunked.discounts, whole.discounts)
    np.testing.assert_array_equal(chunked.token_log_probs(test), whole_scores)
    for mine, theirs in zip(chunked._orders, whole._orders):
        np.testing.assert_array_equal(mine.adjusted, theirs.adjusted)
        np.testing.assert_array_equal(mine.history_total, theirs.history_total)
