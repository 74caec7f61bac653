"""Backprop against central differences in float64 for every cell, activation and truncation."""

import json

import numpy as np
import pytest

from rnnlm import gradcheck
from rnnlm.backend import get_backend
from rnnlm.io import RnnlmError
from rnnlm.model import RNNLM, ModelConfig

CASES = [
    ("rnn", "tanh", 0),
    ("rnn", "relu", 0),
    ("rnn", "tanh", 2),
    ("rnn", "relu", 1),
    ("gru", "tanh", 0),
    ("gru", "tanh", 2),
    ("lstm", "tanh", 0),
    ("lstm", "tanh", 3),
]


@pytest.mark.parametrize("output", ["full", "class"])
@pytest.mark.parametrize("cell, activation, truncate", CASES)
def test_every_parameter_matches_central_differences(cell, activation, truncate, output):
    config = ModelConfig(
        vocab_size=15, hidden_size=5, activation=activation, bptt_truncate=truncate, cell=cell, output=output,
        dtype="float64",
    )
    model = RNNLM(config, get_backend("cpu"), seed=3)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(3), 15, [6, 3, 5])
    errors = gradcheck.gradient_check(model, x, y, mask)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < gradcheck.DEFAULT_TOLERANCE, errors


@pytest.mark.parametrize("output", ["full", "class"])
@pytest.mark.parametrize("cell, activation, truncate", [case for case in CASES if case[1] == "tanh"])
def test_carried_state_and_resets_match_central_differences(cell, activation, truncate, output):
    # Document mode: a non-zero initial state (carried from the previous window, held fixed) and a
    # document start in the middle of the window on two of the three rows.
    config = ModelConfig(
        vocab_size=15, hidden_size=5, activation=activation, bptt_truncate=truncate, cell=cell, output=output,
        dtype="float64",
    )
    model = RNNLM(config, get_backend("cpu"), seed=4)
    rng = np.random.default_rng(4)
    x, y, mask = gradcheck.random_batch(rng, 15, [6, 6, 4])
    state = rng.normal(0, 0.5, (3, model.cell.state_size))
    resets = np.zeros(x.shape)
    resets[3, 0] = resets[1, 2] = 1
    errors = gradcheck.gradient_check(model, x, y, mask, state=state, resets=resets)
    assert max(errors.values()) < gradcheck.DEFAULT_TOLERANCE, errors
    # The state and the resets matter: without them the loss differs.
    assert model.loss(x, y, mask, state=state, resets=resets)[0] != pytest.approx(model.loss(x, y, mask)[0])


def test_a_wrong_gradient_is_caught():
    model = RNNLM(ModelConfig(vocab_size=10, hidden_size=4, dtype="float64"), get_backend("cpu"), seed=0)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(0), 10, [4, 3])
    original = model.loss_and_grads

    def broken(*args, **kwargs):
        loss, count, grads = original(*args, **kwargs)
        grads["W"] = grads["W"] * 1.001
        return loss, count, grads

    model.loss_and_grads = broken
    errors = gradcheck.gradient_check(model, x, y, mask)
    assert errors["W"] > 1e-4
    assert errors["V"] < gradcheck.DEFAULT_TOLERANCE


def test_truncated_gradient_is_not_the_full_gradient():
    # The truncated check compares against the truncated objective; the full loss must disagree.
    config = ModelConfig(vocab_size=10, hidden_size=4, bptt_truncate=1, dtype="float64")
    model = RNNLM(config, get_backend("cpu"), seed=0)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(0), 10, [6])
    _, _, truncated = model.loss_and_grads(x, y, mask)
    full = RNNLM(ModelConfig(vocab_size=10, hidden_size=4, dtype="float64"), get_backend("cpu"), seed=0)
    _, _, exact = full.loss_and_grads(x, y, mask)
    assert not np.allclose(truncated["W"], exact["W"])
    np.testing.assert_allclose(truncated["V"], exact["V"])


def test_float32_models_are_refused():
    model = RNNLM(ModelConfig(vocab_size=10, hidden_size=4), get_backend("cpu"), seed=0)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(0), 10, [3])
    with pytest.raises(RnnlmError, match="float64"):
        gradcheck.gradient_check(model, x, y, mask)


def test_cli_reports_json_and_exit_code(capsys):
    assert gradcheck.main(["--cell", "gru", "--bptt-truncate", "2", "--max-entries", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and set(report["max_relative_error"]) == {"U", "W", "b_h", "V", "b_y"}
    assert gradcheck.main(["--tolerance", "0"]) == 1


@pytest.mark.parametrize("output", ["full", "class"])
@pytest.mark.parametrize("cell, truncate", [("rnn", 0), ("rnn", 2), ("gru", 0), ("gru", 2), ("lstm", 0), ("lstm", 3)])
def test_dropout_gradients_match_central_differences(cell, truncate, output):
    """With fixed masks the training loss is a smooth function: backprop must match it exactly."""
    config = ModelConfig(vocab_size=15, hidden_size=5, bptt_truncate=truncate, cell=cell, output=output,
                         dtype="float64", dropout=0.4, input_dropout=0.3)
    model = RNNLM(config, get_backend("cpu"), seed=3)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(3), 15, [6, 3, 5])
    masks = model.dropout_masks(model.backend.rng(5), x.shape)
    errors = gradcheck.gradient_check(model, x, y, mask, dropout=masks)
    assert set(errors) == set(model.params)
    assert max(errors.values()) < gradcheck.DEFAULT_TOLERANCE, errors


def test_gradients_that_ignore_the_dropout_masks_are_caught():
    config = ModelConfig(vocab_size=10, hidden_size=4, dtype="float64", dropout=0.5, input_dropout=0.5)
    model = RNNLM(config, get_backend("cpu"), seed=0)
    x, y, mask = gradcheck.random_batch(np.random.default_rng(0), 10, [5, 4])
    masks = model.dropout_masks(model.backend.rng(1), x.shape)
    original = model.loss_and_grads

    def unmasked(*args, dropout=None, **kwargs):
        return original(*args, **kwargs)

    model.loss_and_grads = unmasked
    errors = gradcheck.gradient_check(model, x, y, mask, dropout=masks)
    assert errors["V"] > 1e-2 and errors["U"] > 1e-2


def test_cli_checks_dropout():
    assert gradcheck.main(["--cell", "lstm", "--dropout", "0.5", "--input-dropout", "0.2", "--max-entries", "5"]) == 0
