"""Loss and perplexity of a trained model per split, next to a unigram baseline for scale.

The loss is the mean cross-entropy (natural log) per predicted token, SENTENCE_END included and
SENTENCE_START never predicted, exactly what training minimises; perplexity is exp(loss).

The unigram baseline is estimated on the train split's predicted tokens with add-one (Laplace)
smoothing over every id that can be predicted (all ids but SENTENCE_START), so an id never seen in
training still gets a finite probability and the baseline is defined on every split.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from rnnlm import streams
from rnnlm.backend import get_backend
from rnnlm.data import Split, load_splits
from rnnlm.io import RnnlmError, write_json
from rnnlm.model import RNNLM
from rnnlm.vocab import SENTENCE_START_ID

# Sentences per forward pass; the model bounds the logits memory itself, this only bounds the
# padded index matrices and the hidden states.
EVAL_BATCH_SIZE = 256


def split_loss(model, split: Split, batch_size: int = EVAL_BATCH_SIZE) -> tuple[float, int]:
    """Summed cross-entropy over every predicted token of `split` and the number of those tokens
    (a `context: document` model reads the split as document streams: `rnnlm.streams`)."""
    if streams.in_context(model):
        return streams.split_loss(model, split, rows=batch_size)
    total, tokens = 0.0, 0
    # Length-sorted batches waste little work on padding; the order does not change the sum's terms.
    # Host batches: the model checks them on the host and uploads them, and returns host numbers.
    for x, y, mask in split.batches(batch_size, sort_by_length=True):
        loss_sum, count = model.loss(x, y, mask)
        total += loss_sum
        tokens += count
    return total, tokens


def mean_loss(model, split: Split, batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Mean cross-entropy per predicted token; RnnlmError for an empty split or a non-finite loss."""
    total, tokens = split_loss(model, split, batch_size)
    if tokens == 0:
        raise RnnlmError("cannot compute a loss on an empty split; index the data with a non-zero valid_fraction/test_fraction")
    loss = total / tokens
    if not math.isfinite(loss):
        raise RnnlmError(
            f"the model's loss is {loss}: its parameters hold NaN or infinite values; "
            "retrain with a lower learning_rate or a clip_norm"
        )
    return loss


def unigram_log_probs(train: Split, vocab_size: int) -> np.ndarray:
    """Add-one smoothed log-probabilities of every id from the train split's predicted tokens.

    SENTENCE_START is never a target, so it gets probability zero (log -inf) and no pseudo-count.
    """
    train.check_ids(vocab_size, "train")
    counts = np.bincount(train.y, minlength=vocab_size).astype(np.float64)
    counts += 1.0
    counts[SENTENCE_START_ID] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum())


def unigram_loss(log_probs: np.ndarray, split: Split) -> float:
    """Mean negative log-probability of `split`'s predicted tokens under a unigram model."""
    return float(-log_probs[split.y].mean())


def evaluate(model, splits: Mapping[str, Split], train: Split) -> dict:
    """metrics.json content: per split loss, perplexity, token and sentence counts, unigram baseline."""
    vocab_size = model.config.vocab_size
    unigram = unigram_log_probs(train, vocab_size)
    result: dict = {"vocab_size": vocab_size, "unigram_smoothing": "add-one over all predictable ids, estimated on train", "splits": {}}
    for name, split in splits.items():
        split.check_ids(vocab_size, name)
        entry = {"sentences": len(split), "tokens": split.num_tokens,
                 "loss": None, "perplexity": None, "unigram_loss": None, "unigram_perplexity": None}
        if split.num_tokens:
            loss = mean_loss(model, split)
            base = unigram_loss(unigram, split)
            entry.update(loss=loss, perplexity=math.exp(loss), unigram_loss=base, unigram_perplexity=math.exp(base))
        result["splits"][name] = entry
    return result


def load_trained(params_path, device: str = "auto"):
    """(model, vocabulary words, metadata) from a parameters file on `device`; RnnlmError if the file
    is unusable (RNNLM.load refuses corrupt, pickled, inconsistent and non-finite files)."""
    return RNNLM.load(params_path, get_backend(device))


def run_evaluation(params_path, split_paths: Mapping[str, str], vocab_path, metrics_path, device: str = "auto") -> dict:
    """The evaluate stage from files: metrics.json (unless `metrics_path` is None); returns the metrics.

    `split_paths` must include "train": the unigram baseline is fitted on it."""
    if "train" not in split_paths:
        raise RnnlmError("evaluation needs the train split to fit the unigram baseline; pass it too")
    model, words, _ = load_trained(params_path, device)
    splits = load_splits(split_paths, words, f"the model {params_path}", vocab_path)
    metrics = evaluate(model, splits, splits["train"])
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    return metrics
