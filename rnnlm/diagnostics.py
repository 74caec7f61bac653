"""Vanishing-gradient diagnostics: how strongly the loss at one word reaches back into earlier states.

For a prediction at step t, BPTT carries ∂L_t/∂s_t back through s_{t-1}, s_{t-2}, ... by one Jacobian
product per step. `gradient_norms_by_distance` measures ‖∂L_t/∂s_{t−k}‖ for k = 0..max_distance,
averaged over every (sentence, t) pair of the validation sentences with t ≥ k. It goes through the
model's diagnostics primitives only (`forward_cache`, `loss_grad_state`, `state_vjp`), so it works for
every cell the model implements. The same measurement on the model re-initialised with its training
seed shows what training changed; the spectrum of the recurrent matrix W is the eigenvalue argument.

A `context: document` model is measured on text read as it reads it (`rnnlm.streams`): the first
whole documents holding at most `max_sentences` sentences (at least one document), each a stream
from its start; a pair (t, k) counts where s_{t-k} lies in the same document as t (the gradient
stops at a document start), so the distances reach across sentences.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from tqdm import tqdm

from rnnlm.backend import get_backend
from rnnlm.data import Split, load_splits
from rnnlm.io import RnnlmError, write_json
from rnnlm.model import RNNLM
from rnnlm.streams import evaluation_layout, in_context

log = logging.getLogger(__name__)


def gradient_norms_by_distance(model: RNNLM, split: Split, max_distance: int, max_sentences: int, batch_size: int,
                               desc: str = "gradient norms") -> dict:
    """Mean ‖∂L_t/∂s_{t−k}‖ for k = 0..max_distance over the first `max_sentences` sentences of `split`.

    Returns `{"mean_norm": [...], "pairs": [...]}`, one entry per k; `pairs[k]` counts the
    (sentence, t) pairs with t ≥ k that the mean is taken over (0 where no sentence is long enough,
    and then the mean is None).
    """
    max_distance, max_sentences, batch_size = int(max_distance), int(max_sentences), int(batch_size)
    for name, value in (("max_distance", max_distance), ("max_sentences", max_sentences), ("batch_size", batch_size)):
        if value < 1:
            raise RnnlmError(f"diagnostics {name} is {value}; set it to at least 1 in config.yaml")
    count = min(len(split), max_sentences)
    if count == 0:
        raise RnnlmError("the validation split has no sentences; raise valid_fraction in config.yaml")
    backend = model.backend
    xp = backend.xp
    norm_sums = xp.zeros(max_distance + 1, dtype=xp.float64)
    pairs = np.zeros(max_distance + 1, dtype=np.int64)
    for x, y, mask, resets in tqdm(_batches(model, split, count, batch_size), desc=desc, unit="batch", mininterval=5.0):
        real = mask > 0
        # Steps since the stream's last reset (a sentence batch: since its start): how far back the
        # gradient of step t can reach.
        steps = np.arange(x.shape[0])[:, None]
        since_start = steps - np.maximum.accumulate(np.where(resets > 0, steps, 0), axis=0)
        real_device, since_device = backend.asarray(real.astype(np.float64)), backend.asarray(since_start)
        targets = backend.asarray(y)
        cache = model.forward_cache(backend.asarray(x), backend.asarray(mask, dtype=model.params["U"].dtype),
                                    resets=None if model.config.context == "sentence" else resets)
        for t in range(x.shape[0]):
            if not real[t].any():
                continue
            reach = min(int(since_start[t][real[t]].max()), max_distance)
            grad = model.loss_grad_state(cache, targets, t)
            for k in range(reach + 1):
                if k:
                    grad = model.state_vjp(cache, t - k + 1, grad)
                norms = xp.sqrt((grad.astype(xp.float64) ** 2).sum(axis=1))
                norm_sums[k] += norms @ (real_device[t] * (since_device[t] >= k))
                pairs[k] += int((real[t] & (since_start[t] >= k)).sum())
    sums = backend.to_host(norm_sums)
    # JSON has no NaN: distances no sentence reaches get null.
    mean_norm = [float(total / n) if n else None for total, n in zip(sums, pairs)]
    return {"mean_norm": mean_norm, "pairs": [int(n) for n in pairs]}


def _batches(model: RNNLM, split: Split, count: int, batch_size: int):
    """(x, y, mask, resets) host batches of the text measured: the first `count` sentences, those of
    similar length together (little work on padding); in document mode the first whole documents
    within `count` sentences as streams, read in one piece (the gradient may reach back anywhere)."""
    if in_context(model):
        layout = evaluation_layout(split.documents(np.arange(_documents_within(split, count))), batch_size)
        window = layout.window(0, layout.steps)
        return [(window.x, window.y, window.mask, window.resets)]
    chosen = np.arange(count)[np.argsort(np.asarray(split.lengths[:count]), kind="stable")]
    batches = []
    for start in range(0, count, batch_size):
        x, y, mask = split.batch(chosen[start:start + batch_size])
        resets = np.zeros_like(mask)
        resets[0] = 1
        batches.append((x, y, mask, resets))
    return batches


def decay_per_step(mean_norm, pairs) -> float | None:
    """exp(slope) of a least-squares line through log mean norm against distance (None if < 2 points)."""
    norms = np.array(mean_norm, dtype=float)  # None -> NaN
    distance = np.arange(norms.size)
    usable = (np.asarray(pairs) > 0) & np.isfinite(norms) & (norms > 0)
    if usable.sum() < 2:
        return None
    slope, _ = np.polyfit(distance[usable], np.log(norms[usable]), 1)
    return float(np.exp(slope))


def recurrent_spectrum(model) -> dict:
    """Spectral radius (largest |eigenvalue|) and largest singular value of the recurrent matrix W.

    Both are None for cells without a single square `W` (gated cells stack their gate blocks in W).
    """
    weights = model.params.get("W")
    if weights is None or weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
        return {"spectral_radius": None, "spectral_norm": None}
    matrix = model.backend.to_host(weights).astype(np.float64)
    return {
        "spectral_radius": float(np.abs(np.linalg.eigvals(matrix)).max()),
        "spectral_norm": float(np.linalg.norm(matrix, ord=2)),
    }


def _short(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def describe(model, split, max_distance: int, max_sentences: int, batch_size: int, desc: str) -> dict:
    curve = gradient_norms_by_distance(model, split, max_distance, max_sentences, batch_size, desc=desc)
    curve["decay_per_step"] = decay_per_step(curve["mean_norm"], curve["pairs"])
    curve.update(recurrent_spectrum(model))
    return curve


def diagnose(trained, initial, split, max_distance: int, max_sentences: int, batch_size: int) -> dict:
    """Gradient-norm curves and W's spectrum for the trained model and the same model at initialisation."""
    config = trained.config
    result = {
        "cell": config.cell,
        "activation": config.activation,
        "hidden_size": config.hidden_size,
        "bptt_truncate": config.bptt_truncate,
        "sentences": _sentences_measured(trained, split, int(max_sentences)),
        "context": config.context,
        "max_distance": int(max_distance),
        "distance": list(range(int(max_distance) + 1)),
    }
    for state, model in (("initial", initial), ("trained", trained)):
        result[state] = describe(model, split, max_distance, max_sentences, batch_size, desc=f"{state} model")
        curve = result[state]
        log.info(
            "%s model: mean |dL_t/ds_t| %s, at distance %d %s, decay per step %s, spectral radius of W %s",
            state, _short(curve["mean_norm"][0]), max_distance, _short(curve["mean_norm"][-1]),
            _short(curve["decay_per_step"]), _short(curve["spectral_radius"]),
        )
    return result


def _documents_within(split: Split, count: int) -> int:
    """How many leading whole documents hold at most `count` sentences (at least one)."""
    return max(1, int(np.searchsorted(split.doc_offsets, count, side="right")) - 1)


def _sentences_measured(model, split, max_sentences: int) -> int:
    count = min(len(split), max_sentences)
    if not in_context(model) or count == 0:
        return count
    return int(split.doc_offsets[_documents_within(split, count)])


def run_diagnostics(params_path: str | os.PathLike, valid_path: str | os.PathLike, output_path: str | os.PathLike,
                    seed: int, max_distance: int, max_sentences: int, batch_size: int, device: str = "auto") -> dict:
    """Load a trained model and the validation split, measure both curves, write the JSON atomically."""
    backend = get_backend(device)
    trained, words, _ = RNNLM.load(params_path, backend)
    initial = RNNLM(trained.config, backend, seed=seed)
    split = load_splits({"valid": valid_path}, words, f"the model {params_path}")["valid"]
    result = diagnose(trained, initial, split, max_distance, max_sentences, batch_size)
    result["seed"] = int(seed)
    write_json(output_path, result)
    log.info(
        "diagnostics done: %d validation sentences, gradient decay per step %s at initialisation, %s trained",
        result["sentences"], _short(result["initial"]["decay_per_step"]), _short(result["trained"]["decay_per_step"]),
    )
    return result
