"""Per-token linear interpolation of the RNN and the n-gram baseline.

    p(w | h) = weight * p_rnn(w | h) + (1 - weight) * p_ngram(w | h)

Both models see the same tokens (SENTENCE_END predicted, SENTENCE_START never), so the mixture is a
proper distribution for any weight in [0, 1]. The weight maximises the validation log-likelihood,
which is concave in it: its derivative is decreasing, so bisection on the derivative finds the global
optimum (an end point when the derivative keeps one sign). The test split is only ever reported.
"""

from __future__ import annotations

import logging

import numpy as np

from rnnlm import streams
from rnnlm.backend import get_backend
from rnnlm.data import Split, load_splits
from rnnlm.evaluate import EVAL_BATCH_SIZE
from rnnlm.io import RnnlmError, load_npz, write_json
from rnnlm.model import RNNLM
from rnnlm.ngram import perplexity

log = logging.getLogger(__name__)

# Bisection halves the bracket each step; 60 steps take [0, 1] below float64 resolution.
BISECTION_STEPS = 60
# RNN weights at which the validation perplexity is reported, for a curve in the report.
GRID = tuple(step / 10 for step in range(11))
# The splits the mixture scores: the weight is tuned on valid, test is only reported.
SCORED_SPLITS = ("valid", "test")


def mixture_log_probs(rnn: np.ndarray, ngram: np.ndarray, weight: float) -> np.ndarray:
    """log(weight * exp(rnn) + (1 - weight) * exp(ngram)) per token, without underflow."""
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(weight) + rnn, np.log1p(-weight) + ngram)


def _log_likelihood_slope(rnn: np.ndarray, ngram: np.ndarray, weight: float) -> float:
    """d/dweight of the summed mixture log-likelihood: sum (p_rnn - p_ngram) / p_mixture."""
    top = np.maximum(rnn, ngram)
    p_rnn, p_ngram = np.exp(rnn - top), np.exp(ngram - top)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((p_rnn - p_ngram) / (weight * p_rnn + (1.0 - weight) * p_ngram)))


def tune_weight(rnn: np.ndarray, ngram: np.ndarray) -> float:
    """The RNN weight in [0, 1] that maximises the summed log-probability of the mixture."""
    if rnn.shape != ngram.shape or rnn.size == 0:
        raise RnnlmError(
            f"cannot tune the interpolation weight on {rnn.size} RNN and {ngram.size} n-gram scores; "
            "both must score the same non-empty validation split (give valid_fraction a non-zero value)"
        )
    if _log_likelihood_slope(rnn, ngram, 0.0) <= 0:
        return 0.0
    if _log_likelihood_slope(rnn, ngram, 1.0) >= 0:
        return 1.0
    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if _log_likelihood_slope(rnn, ngram, middle) > 0:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def rnn_token_log_probs(model, split: Split, batch_size: int = EVAL_BATCH_SIZE) -> np.ndarray:
    """log p_rnn of every predicted token of `split`, aligned with split.y (float64); a `context:
    document` model reads each document as one stream (`rnnlm.streams`), the same tokens in the same order."""
    if streams.in_context(model):
        return streams.token_log_probs(model, split, rows=batch_size)
    backend = model.backend
    scores = []
    for start in range(0, len(split), batch_size):
        x, y, mask = split.batch(np.arange(start, min(start + batch_size, len(split))))
        log_probs = model.token_log_probs(backend.asarray(x), backend.asarray(y), backend.asarray(mask, dtype=model.dtype))
        # Time-major (T, B): transposing lists each sentence's tokens in order, sentence after sentence.
        scores.append(np.asarray(log_probs, dtype=np.float64).T[mask.T > 0])
    return np.concatenate(scores) if scores else np.zeros(0)


def _ngram_scores(arrays: dict, split: Split, name: str, path) -> np.ndarray:
    """The baseline's log-probs of `split`, after checking they score the very same tokens."""
    targets = arrays.get(f"{name}_y")
    if name not in arrays or targets is None or not np.array_equal(targets, split.y):
        raise RnnlmError(
            f"{path}: its {name} scores are not for the current {name} split (the index matrices changed "
            "after the baseline ran); re-run the baseline stage"
        )
    return arrays[name]


def interpolate_model(params_path, vocab_path, split_paths: dict, ngram_path, output_path, device: str = "auto") -> dict:
    """Interpolation stage for one model: tune the weight on valid, report valid and test (JSON)."""
    model, model_words, _ = RNNLM.load(params_path, get_backend(device))
    splits = load_splits({name: split_paths[name] for name in SCORED_SPLITS}, model_words,
                         f"the model {params_path}", vocab_path)
    ngram_arrays = load_npz(ngram_path, required=("order",))
    scores = {name: (rnn_token_log_probs(model, split), _ngram_scores(ngram_arrays, split, name, ngram_path))
              for name, split in splits.items()}
    weight = tune_weight(*scores["valid"])
    result = {"ngram_order": int(ngram_arrays["order"]), "weight_rnn": weight, "weight_ngram": 1.0 - weight, "splits": {}}
    for name, (rnn, ngram) in scores.items():
        entry = {"tokens": int(rnn.size), "rnn_perplexity": None, "ngram_perplexity": None, "interpolated_perplexity": None}
        if rnn.size:
            entry.update(rnn_perplexity=perplexity(rnn), ngram_perplexity=perplexity(ngram),
                         interpolated_perplexity=perplexity(mixture_log_probs(rnn, ngram, weight)))
            entry["reduction_vs_ngram"] = 1.0 - entry["interpolated_perplexity"] / entry["ngram_perplexity"]
        result["splits"][name] = entry
    rnn, ngram = scores["valid"]
    result["valid_grid"] = [{"weight_rnn": w, "perplexity": perplexity(mixture_log_probs(rnn, ngram, w))} for w in GRID]
    log.info("interpolation weight of the RNN %.4f: test perplexity %s (RNN %s, n-gram %s)", weight,
             result["splits"]["test"]["interpolated_perplexity"], result["splits"]["test"]["rnn_perplexity"],
             result["splits"]["test"]["ngram_perplexity"])
    write_json(output_path, result)
    return result
