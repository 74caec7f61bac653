"""Interpolated modified Kneser-Ney n-gram language model (Chen & Goodman 1998), vectorized with NumPy.

The model sees sentences exactly as the RNN does: the history starts with SENTENCE_START, every word
and the closing SENTENCE_END are predicted, and SENTENCE_START never is (it gets probability zero; the
uniform floor of the recursion spreads over the other ids of the vocabulary).

    p_k(w | h) = max(a(hw) - D_k(a(hw)), 0) / sum_v a(hv)  +  gamma_k(h) * p_{k-1}(w | h minus its first word)
    gamma_k(h) = (D_k1 N_1(h.) + D_k2 N_2(h.) + D_k3+ N_3+(h.)) / sum_v a(hv)

a() is the raw count at the highest order and for n-grams that begin with SENTENCE_START (nothing can
precede them), and the number of distinct words seen before the n-gram otherwise (continuation count).
The discounts D_k1, D_k2, D_k3+ come from the count-of-counts of a() at each order; a history never
seen in training hands its whole mass to the next lower order. p_0 is uniform.

N-grams are numbered order by order without hashing collisions: a k-gram's key is
(id of its first k-1 words as a (k-1)-gram) * vocab_size + last word, and its id is the key's rank in
the sorted table of keys seen in training, so keys stay below (number of training tokens) * vocab_size
whatever the order. Counting and scoring go through the tokens in chunks of whole sentences
(CHUNK_TOKENS), so memory holds arrays sized by the distinct n-grams plus one chunk.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from rnnlm.data import Split, load_splits
from rnnlm.io import RnnlmError, save_npz, write_json
from rnnlm.vocab import SENTENCE_START_ID, Vocabulary

log = logging.getLogger(__name__)

# Chen & Goodman's count-of-counts estimate is undefined when a corpus is too small to have n-grams
# seen 1, 2, 3 and 4 times; these are the discounts KenLM's --discount_fallback uses in that case.
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
MISSING = -1


@dataclass
class _Order:
    """Statistics of one order k: its n-gram table and, per history (a (k-1)-gram id), the normaliser."""

    keys: np.ndarray | None        # sorted int64 keys of the k-grams seen in training (None for k = 1: ids are word ids)
    adjusted: np.ndarray           # float64 a() per k-gram id
    discounts: np.ndarray          # float64 [0, D1, D2, D3+], indexed by min(a, 3)
    history_total: np.ndarray      # float64 sum_v a(hv) per history id
    history_gamma: np.ndarray      # float64 back-off weight per history id (0 where the history is unseen)


def _positions(offsets: np.ndarray) -> np.ndarray:
    """Index of each flat token within its sentence (0 at SENTENCE_START)."""
    lengths = np.diff(offsets)
    return np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1].astype(np.int64), lengths)


def _lookup(keys: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Rank of each key in the sorted `table`, MISSING where absent."""
    if table.size == 0:
        return np.full(keys.shape, MISSING, dtype=np.int64)
    rank = np.minimum(np.searchsorted(table, keys), table.size - 1)
    return np.where(table[rank] == keys, rank, MISSING)


def _history_ids(x: np.ndarray, pos: np.ndarray, lower_ids: np.ndarray | None, k: int) -> np.ndarray:
    """Id of the k-1 words ending at x[j] as a (k-1)-gram, MISSING where the sentence is too short or unseen.

    For k = 2 that is the word x[j] itself; for k > 2 it is the (k-1)-gram ending at y[j-1] == x[j].
    """
    if k == 2:
        return x
    previous = np.full(x.shape, MISSING, dtype=np.int64)
    previous[1:] = lower_ids[:-1]
    return np.where(pos >= k - 2, previous, MISSING)


def _ngram_ids(x, y, pos, order, vocab_size, tables):
    """Per flat position j, the id of the k-gram ending at y[j] for k = 1..order (list index k-1),
    looked up in the sorted key `tables` (index k-1 for order k); MISSING where there is none."""
    ids = [y]
    for k in range(2, order + 1):
        history = _history_ids(x, pos, ids[-1], k)
        valid = history != MISSING
        current = np.full(x.shape, MISSING, dtype=np.int64)
        current[valid] = _lookup(history[valid] * vocab_size + y[valid], tables[k - 1])
        ids.append(current)
    return ids


# Tokens per chunk of whole sentences: counting and scoring hold a dozen int64 arrays of this length,
# so memory is bounded by the number of distinct n-grams, not by the corpus size.
CHUNK_TOKENS = 1 << 20


def _chunks(split, vocab_size: int, name: str):
    """(x, y, positions) as int64 arrays, chunk by chunk of whole sentences of about CHUNK_TOKENS tokens."""
    offsets = np.asarray(split.offsets, dtype=np.int64)
    sentences, first = len(offsets) - 1, 0
    while first < sentences:
        last = int(np.searchsorted(offsets, offsets[first] + CHUNK_TOKENS, side="right")) - 1
        last = min(max(last, first + 1), sentences)
        start, stop = int(offsets[first]), int(offsets[last])
        chunk = SimpleNamespace(x=split.x[start:stop], y=split.y[start:stop], offsets=offsets[first : last + 1] - start)
        yield _arrays(chunk, vocab_size, name)
        first = last


class _DistinctCounter:
    """Distinct int64 keys with their number of occurrences and one attribute per key (the same for
    every occurrence), merged chunk by chunk. Chunk results wait in a list and are merged once they
    outgrow the merged table, so the total cost stays O(n log n) in distinct keys."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, keys: np.ndarray, *attributes: np.ndarray) -> None:
        self.parts.append(self._unique(keys, np.ones(keys.size, dtype=np.int64), attributes))
        if sum(part[0].size for part in self.parts[1:]) > self.parts[0][0].size:
            self.parts = [self._merged()]

    @staticmethod
    def _unique(keys, counts, attributes):
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        # float64 sums are exact below 2**53 occurrences.
        total = np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)
        return (unique, total, *(attribute[first] for attribute in attributes))

    def _merged(self):
        if len(self.parts) == 1:
            return self.parts[0]
        keys, counts, *attributes = (np.concatenate(column) for column in zip(*self.parts))
        return self._unique(keys, counts, attributes)

    def result(self) -> tuple[np.ndarray, ...]:
        """Sorted distinct keys, their counts, and each attribute per key."""
        return self._merged()


def _count_ngrams(train, vocab_size: int, order: int):
    """N-gram tables of a Split, counted chunk by chunk: for each order k (list index k-1), the sorted
    keys (None for k = 1), the raw counts, the id of each k-gram's suffix (k-1)-gram (None for k = 1)
    and whether it opens its sentence (None for k = 1). Order k takes one pass over the tokens, looking
    up the complete tables of the lower orders."""
    unigrams = np.zeros(vocab_size, dtype=np.int64)
    for _, y, _ in _chunks(train, vocab_size, "train"):
        unigrams += np.bincount(y, minlength=vocab_size)
    tables, counts, suffix_of, opens = [None], [unigrams], [None], [None]
    for k in range(2, order + 1):
        counter = _DistinctCounter()
        for x, y, pos in _chunks(train, vocab_size, "train"):
            ids = _ngram_ids(x, y, pos, k - 1, vocab_size, tables)
            history = _history_ids(x, pos, ids[-1], k)
            valid = history != MISSING
            counter.add(history[valid] * vocab_size + y[valid], ids[k - 2][valid], pos[valid] == k - 2)
        table, raw, suffix, opening = counter.result()
        tables.append(table)
        counts.append(raw)
        suffix_of.append(suffix)
        opens.append(opening)
    return tables, counts, suffix_of, opens


def _estimate_discounts(adjusted: np.ndarray, order: int) -> np.ndarray:
    """Chen & Goodman's D1, D2, D3+ from how many n-grams have a() = 1, 2, 3, 4."""
    n1, n2, n3, n4 = (int(np.count_nonzero(adjusted == c)) for c in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) > 0:
        y = n1 / (n1 + 2 * n2)
        estimate = np.array([1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3])
        if np.all((estimate > 0) & (estimate <= np.array([1.0, 2.0, 3.0]))):
            return estimate
    log.warning(
        "order %d: count-of-counts n1..n4 = %d, %d, %d, %d cannot give modified Kneser-Ney discounts "
        "(training data too small or repeated); using the fallback discounts %s", order, n1, n2, n3, n4, FALLBACK_DISCOUNTS,
    )
    return np.array(FALLBACK_DISCOUNTS)


class KneserNey:
    """Interpolated modified Kneser-Ney model of a given order over ids 0..vocab_size-1.

    Build it with `KneserNey.fit(train_split, vocab_size, order)`; score with `token_log_probs(split)`.
    """

    def __init__(self, order: int, vocab_size: int, orders: list[_Order]):
        self.order = order
        self.vocab_size = vocab_size
        self._orders = orders

    @property
    def discounts(self) -> np.ndarray:
        """(order, 3) array: D1, D2, D3+ of orders 1..order."""
        return np.stack([stats.discounts[1:] for stats in self._orders])

    @classmethod
    def fit(cls, train, vocab_size: int, order: int = 3, discounts=None) -> "KneserNey":
        """Count the n-grams of a Split (x, y, offsets) and estimate the model.

        `discounts`: optional (order, 3) array of D1, D2, D3+ per order 1..order, instead of estimating them.
        """
        if order < 1:
            raise RnnlmError(f"the n-gram order must be at least 1, got {order}; set baseline.order in config.yaml")
        if len(train.y) == 0:
            raise RnnlmError("the train split holds no tokens; an n-gram model needs training text, use a larger corpus")
        if discounts is not None:
            discounts = np.asarray(discounts, dtype=np.float64)
            if discounts.shape != (order, 3) or np.any(discounts < 0) or np.any(discounts > [1.0, 2.0, 3.0]):
                raise RnnlmError(f"discounts must be an ({order}, 3) array with 0 <= D1 <= 1, D2 <= 2, D3+ <= 3")
        tables, counts, suffix_of, opens = _count_ngrams(train, vocab_size, order)
        sizes = [vocab_size] + [table.size for table in tables[1:]]
        orders = []
        for k in range(1, order + 1):
            if k == order:
                adjusted = counts[k - 1]
            else:
                # Each (k+1)-gram has exactly one suffix k-gram; a k-gram's continuation count is the
                # number of distinct (k+1)-grams it ends.
                continuation = np.bincount(suffix_of[k], minlength=sizes[k - 1])
                # A k-gram that opens its sentence with SENTENCE_START cannot be extended to the left.
                adjusted = continuation if opens[k - 1] is None else np.where(opens[k - 1], counts[k - 1], continuation)
            adjusted = adjusted.astype(np.float64)
            if discounts is None:
                estimated = _estimate_discounts(adjusted, k)
            else:
                estimated = discounts[k - 1]
            table_of_discounts = np.concatenate([[0.0], estimated])
            if k == 1:
                histories = np.zeros(sizes[0], dtype=np.int64)
                history_count = 1
            else:
                histories = tables[k - 1] // vocab_size
                history_count = vocab_size if k == 2 else sizes[k - 2]
            total = np.bincount(histories, weights=adjusted, minlength=history_count)
            mass = np.bincount(histories, weights=table_of_discounts[np.minimum(adjusted, 3).astype(np.int64)], minlength=history_count)
            gamma = np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)
            orders.append(_Order(tables[k - 1], adjusted, table_of_discounts, total, gamma))
        model = cls(order, vocab_size, orders)
        log.info("Kneser-Ney order %d: %s n-grams per order; discounts %s", order,
                 sizes, np.round(model.discounts, 4).tolist())
        return model

    def _probabilities(self, x: np.ndarray, y: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """p(y[j] | sentence so far) for every flat position j, as float64."""
        ids = _ngram_ids(x, y, pos, self.order, self.vocab_size, [stats.keys for stats in self._orders])
        prob = np.where(y == SENTENCE_START_ID, 0.0, 1.0 / (self.vocab_size - 1))
        for k, stats in enumerate(self._orders, start=1):
            history = np.zeros_like(y) if k == 1 else _history_ids(x, pos, ids[k - 2], k)
            seen = history != MISSING
            seen[seen] = stats.history_total[history[seen]] > 0
            event = ids[k - 1][seen]
            found = event != MISSING
            count = np.where(found, stats.adjusted[np.where(found, event, 0)], 0.0)
            discount = stats.discounts[np.minimum(count, 3).astype(np.int64)]
            h = history[seen]
            prob[seen] = np.maximum(count - discount, 0.0) / stats.history_total[h] + stats.history_gamma[h] * prob[seen]
        return prob

    def token_log_probs(self, split, name: str = "scored") -> np.ndarray:
        """Natural-log probability of every predicted token of a Split, aligned with split.y (float64)."""
        probabilities = [self._probabilities(x, y, pos) for x, y, pos in _chunks(split, self.vocab_size, name)]
        with np.errstate(divide="ignore"):
            return np.log(np.concatenate(probabilities)) if probabilities else np.zeros(0)

    def distribution(self, history) -> np.ndarray:
        """p(w | history) for every id w; `history` is the sentence so far, starting with SENTENCE_START."""
        history = np.asarray(history, dtype=np.int64)
        if history.ndim != 1 or history.size == 0 or history.min() < 0 or history.max() >= self.vocab_size:
            raise RnnlmError(f"a history is a non-empty sequence of ids below {self.vocab_size}, got {history.tolist()}")
        # Only the last order-1 words matter; their position 0 marks where the sentence starts when it does.
        context = history[-max(self.order - 1, 1):]
        width = context.size
        words = np.arange(self.vocab_size, dtype=np.int64)
        x = np.tile(context, self.vocab_size)
        y = np.tile(np.append(context[1:], 0), self.vocab_size)
        y[width - 1::width] = words
        # Positions only gate which orders a history is long enough for; n-grams are matched by content,
        # so a context cut from a longer sentence may start at position 0 too.
        pos = np.tile(np.arange(width, dtype=np.int64), self.vocab_size)
        return self._probabilities(x, y, pos)[width - 1::width]


def perplexity(log_probs: np.ndarray) -> float:
    """exp of the mean negative log-probability; inf if a token had probability zero."""
    if log_probs.size == 0:
        raise RnnlmError("cannot compute a perplexity on an empty split; give the split a non-zero fraction in config.yaml")
    return math.exp(-float(np.mean(log_probs)))


def _arrays(split, vocab_size: int, name: str):
    """int64 x, y and in-sentence positions of a Split, after checking its ids fit the vocabulary."""
    x = np.asarray(split.x, dtype=np.int64)
    y = np.asarray(split.y, dtype=np.int64)
    if y.size and (min(x.min(), y.min()) < 0 or max(x.max(), y.max()) >= vocab_size):
        raise RnnlmError(
            f"the {name} split uses ids outside 0..{vocab_size - 1}, the vocabulary's range: the index matrices "
            "and the vocabulary come from different runs; rebuild the index matrices"
        )
    return x, y, _positions(np.asarray(split.offsets, dtype=np.int64))


def build_baseline(split_paths: dict, vocab_path, order: int, json_path, log_probs_path) -> dict:
    """Baseline stage: fit on the train split, write perplexities per split (JSON) and the valid/test
    per-token log-probabilities (.npz: `<split>` float64, `<split>_y` int32 targets, `order`; for interpolation)."""
    vocabulary = Vocabulary.load(vocab_path)
    vocab_size = len(vocabulary)
    splits = load_splits(split_paths, vocabulary.words, f"the vocabulary {vocab_path}")
    start = time.perf_counter()
    model = KneserNey.fit(splits["train"], vocab_size, order)
    # The fit time goes to the log, not the artifact: artifacts must be byte-identical across rebuilds.
    log.info("fitted order %d in %.3f s", order, time.perf_counter() - start)
    result = {
        "model": f"interpolated modified Kneser-Ney, order {order}",
        "order": order,
        "vocab_size": vocab_size,
        "discounts": model.discounts.tolist(),
        "splits": {},
    }
    scores = {"order": np.array(order)}
    for name, split in splits.items():
        log_probs = model.token_log_probs(split, name)
        entry = {"sentences": len(split), "tokens": split.num_tokens, "loss": None, "perplexity": None}
        if split.num_tokens:
            loss = -float(np.mean(log_probs))
            entry.update(loss=loss, perplexity=math.exp(loss))
        result["splits"][name] = entry
        if name != "train":
            scores[name], scores[f"{name}_y"] = log_probs, split.y
        log.info("Kneser-Ney order %d, %s perplexity %s", order, name, entry["perplexity"])
    save_npz(log_probs_path, **scores)
    write_json(json_path, result)
    return result
