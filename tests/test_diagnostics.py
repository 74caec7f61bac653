"""Vanishing-gradient diagnostics on small hand-made models where the answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnlm import diagnostics
from rnnlm.backend import get_backend
from rnnlm.data import Split
from rnnlm.io import RnnlmError
from rnnlm.model import ModelConfig, RNNLM
from rnnlm.vocab import SPECIAL_TOKENS, fingerprint

VOCAB, HIDDEN = 12, 16
WORDS = [*SPECIAL_TOKENS] + [f"w{i}" for i in range(VOCAB - 3)]


def random_split(sentences=12, length=20, seed=0) -> Split:
    rng = np.random.default_rng(seed)
    lengths = np.full(sentences, length)
    lengths[::3] = length // 2  # mixed lengths: padding must not count
    return Split.from_ids(rng.integers(3, VOCAB, lengths.sum()).astype(np.int32), lengths, vocab_fingerprint=fingerprint(WORDS))


def tiny_model(activation="tanh", seed=3) -> RNNLM:
    config = ModelConfig(vocab_size=VOCAB, hidden_size=HIDDEN, activation=activation, dtype="float64")
    return RNNLM(config, get_backend("cpu"), seed=seed)


def contracting_model(radius: float) -> RNNLM:
    """W = radius * orthogonal, inputs and biases tiny: every BPTT step scales the gradient by `radius`.

    With states near 0, tanh' is 1 to within ~1e-6, so dL_t/ds_(t-k) = (W^T)^k dL_t/ds_t exactly up to
    that, and an orthogonal matrix keeps the norm: ||dL_t/ds_(t-k)|| = radius^k ||dL_t/ds_t||.
    """
    model = tiny_model()
    rng = np.random.default_rng(7)
    orthogonal, _ = np.linalg.qr(rng.standard_normal((HIDDEN, HIDDEN)))
    model.params["W"][...] = radius * orthogonal
    model.params["U"] *= 1e-3
    model.params["b_h"][...] = 0.0
    return model


@pytest.mark.parametrize("radius", [0.5, 0.8])
def test_gradient_decays_geometrically_with_spectral_radius(radius):
    model = contracting_model(radius)
    split = random_split()
    curve = diagnostics.gradient_norms_by_distance(model, split, max_distance=12, max_sentences=100, batch_size=5)
    norms = np.array(curve["mean_norm"])
    ratios = norms[1:] / norms[:-1]
    np.testing.assert_allclose(ratios, radius, rtol=0.03)
    assert diagnostics.decay_per_step(curve["mean_norm"], curve["pairs"]) == pytest.approx(radius, rel=0.02)
    assert diagnostics.recurrent_spectrum(model)["spectral_radius"] == pytest.approx(radius)


def explicit_tanh_curve(model: RNNLM, split: Split, max_distance: int) -> np.ndarray:
    """The same mean norms from the equations directly, one sentence and one target at a time."""
    p = {name: np.asarray(value, dtype=np.float64) for name, value in model.params.items()}
    sums, pairs = np.zeros(max_distance + 1), np.zeros(max_distance + 1)
    for i in range(len(split)):
        x = split.x[split.offsets[i]:split.offsets[i + 1]]
        y = split.y[split.offsets[i]:split.offsets[i + 1]]
        states, state = [], np.zeros(HIDDEN)
        for word in x:
            state = np.tanh(p["U"][:, word] + p["W"] @ state + p["b_h"])
            states.append(state)
        for t, target in enumerate(y):
            logits = p["V"] @ states[t] + p["b_y"]
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            probs[target] -= 1.0
            grad = p["V"].T @ probs  # dL_t/ds_t
            for k in range(min(t, max_distance) + 1):
                if k:
                    grad = p["W"].T @ ((1.0 - states[t - k + 1] ** 2) * grad)
                sums[k] += np.linalg.norm(grad)
                pairs[k] += 1
    return sums / pairs


def test_matches_explicit_chain_rule():
    model = tiny_model()
    split = random_split(sentences=5, length=9, seed=1)
    curve = diagnostics.gradient_norms_by_distance(model, split, max_distance=6, max_sentences=5, batch_size=2)
    np.testing.assert_allclose(curve["mean_norm"], explicit_tanh_curve(model, split, 6), rtol=1e-8)
    # pairs[k]: positions t >= k summed over sentences (lengths 9+1 and 4+1 tokens).
    lengths = split.lengths
    assert curve["pairs"] == [int(np.maximum(lengths - k, 0).sum()) for k in range(7)]


def test_distances_beyond_every_sentence_are_null():
    split = random_split(sentences=3, length=4)
    curve = diagnostics.gradient_norms_by_distance(tiny_model(), split, max_distance=8, max_sentences=3, batch_size=3)
    longest = int(split.lengths.max())
    assert all(value is None for value in curve["mean_norm"][longest:])
    assert curve["pairs"][longest:] == [0] * (9 - longest)
    assert diagnostics.decay_per_step(curve["mean_norm"], curve["pairs"]) is not None


def test_run_diagnostics_compares_trained_with_reinitialised_model(tmp_path):
    seed = 5
    trained = contracting_model(0.6)  # stands in for "after training": W differs from the seed's init
    params_path, valid_path, out_path = tmp_path / "params.npz", tmp_path / "valid.npz", tmp_path / "diag.json"
    trained.save(params_path, WORDS, {})
    random_split().save(valid_path)

    result = diagnostics.run_diagnostics(params_path, valid_path, out_path, seed=seed, max_distance=5,
                                         max_sentences=6, batch_size=4, device="cpu")

    assert json.loads(out_path.read_text()) == result
    assert result["trained"]["spectral_radius"] == pytest.approx(0.6)
    fresh_radius = diagnostics.recurrent_spectrum(tiny_model(seed=seed))["spectral_radius"]
    assert result["initial"]["spectral_radius"] == pytest.approx(fresh_radius)
    assert result["sentences"] == 6 and result["distance"] == list(range(6))
    assert result["trained"]["decay_per_step"] == pytest.approx(0.6, rel=0.05)


@pytest.mark.parametrize("setting", ["max_distance", "max_sentences", "batch_size"])
def test_bad_settings_are_refused(setting):
    settings = {"max_distance": 3, "max_sentences": 4, "batch_size": 2, setting: 0}
    with pytest.raises(RnnlmError, match=setting):
        diagnostics.gradient_norms_by_distance(tiny_model(), random_split(), **settings)


def test_empty_validation_split_is_refused():
    empty = Split.from_ids(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64))
    with pytest.raises(RnnlmError, match="valid_fraction"):
        diagnostics.gradient_norms_by_distance(tiny_model(), empty, max_distance=3, max_sentences=4, batch_size=2)
