"""Adam against a literal per-entry implementation of its update rule."""

import math

import numpy as np
import pytest

from rnnlm.model import SparseRows
from rnnlm.optim import BETA1, BETA2, EPSILON, Adam, ParameterAverage


def reference_adam(params, gradients, learning_rate):
    """Kingma & Ba's Algorithm 1, entry by entry in float64."""
    params = {name: value.astype(np.float64).copy() for name, value in params.items()}
    first = {name: np.zeros_like(value) for name, value in params.items()}
    second = {name: np.zeros_like(value) for name, value in params.items()}
    for t, grads in enumerate(gradients, start=1):
        for name, grad in grads.items():
            for index in np.ndindex(grad.shape):
                g = float(grad[index])
                first[name][index] = BETA1 * first[name][index] + (1 - BETA1) * g
                second[name][index] = BETA2 * second[name][index] + (1 - BETA2) * g * g
                m_hat = first[name][index] / (1 - BETA1**t)
                v_hat = second[name][index] / (1 - BETA2**t)
                # The implementation folds the bias corrections into the step size, which moves
                # epsilon by the factor sqrt(1 - beta2^t): mirror that here.
                params[name][index] -= learning_rate * m_hat / (math.sqrt(v_hat) + EPSILON / math.sqrt(1 - BETA2**t))
    return params


def test_adam_matches_the_reference_update():
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(5), "U": rng.standard_normal((4, 6)).T}
    gradients = [{name: rng.standard_normal(value.shape) for name, value in params.items()} for _ in range(4)]
    expected = reference_adam(params, gradients, learning_rate=0.01)
    optimizer = Adam(params, np)
    scale = 0.5
    for grads in gradients:
        optimizer.update(params, {name: grad / scale for name, grad in grads.items()}, scale, 0.01)
    assert optimizer.steps == 4
    for name, value in expected.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-12, atol=1e-12, err_msg=name)


def lazy_reference_adam(params, gradients, learning_rate):
    """Sparse (lazy) Adam: the reference update on the word rows each step names, nothing else
    (moments of absent rows do not decay); the global step count t as in dense Adam."""
    params = {name: value.astype(np.float64).copy() for name, value in params.items()}
    first = {name: np.zeros_like(value) for name, value in params.items()}
    second = {name: np.zeros_like(value) for name, value in params.items()}
    for t, (words, rows) in enumerate(gradients, start=1):
        for word, row in zip(words, rows):
            for unit, g in enumerate(row):
                index = (unit, word)  # U is (G*H, C): a word is a column
                first["U"][index] = BETA1 * first["U"][index] + (1 - BETA1) * g
                second["U"][index] = BETA2 * second["U"][index] + (1 - BETA2) * g * g
                m_hat = first["U"][index] / (1 - BETA1**t)
                v_hat = second["U"][index] / (1 - BETA2**t)
                params["U"][index] -= learning_rate * m_hat / (math.sqrt(v_hat) + EPSILON / math.sqrt(1 - BETA2**t))
    return params


def test_sparse_rows_get_the_lazy_adam_update_and_other_words_stay():
    rng = np.random.default_rng(1)
    params = {"U": np.ascontiguousarray(rng.standard_normal((7, 4))).T}  # word-major, as the model keeps it
    steps = [(np.array([0, 2, 3]), rng.standard_normal((3, 4))), (np.array([2, 6]), rng.standard_normal((2, 4))),
             (np.array([0, 6]), rng.standard_normal((2, 4)))]
    expected = lazy_reference_adam(params, steps, learning_rate=0.01)
    before = params["U"].copy()
    optimizer = Adam(params, np)
    for words, rows in steps:
        optimizer.update(params, {"U": SparseRows(words, rows * 2.0)}, 0.5, 0.01)
    np.testing.assert_allclose(params["U"], expected["U"], rtol=1e-12, atol=1e-12)
    untouched = [1, 4, 5]
    np.testing.assert_array_equal(params["U"][:, untouched], before[:, untouched])
    assert not optimizer.first["U"][:, untouched].any() and not optimizer.second["U"][:, untouched].any()


def test_first_step_moves_every_entry_by_the_learning_rate():
    params = {"W": np.zeros((2, 3))}
    Adam(params, np).update(params, {"W": np.array([[0.5, -5.0, 2.0], [7.0, -0.2, 0.3]])}, 1.0, 0.1)
    np.testing.assert_allclose(np.abs(params["W"]), 0.1, rtol=1e-5)


def test_state_round_trips():
    rng = np.random.default_rng(1)
    params = {"W": rng.standard_normal((2, 2))}
    optimizer = Adam(params, np)
    optimizer.update(params, {"W": rng.standard_normal((2, 2))}, 1.0, 0.1)
    restored = Adam(params, np)
    restored.load_state(optimizer.state_arrays(), optimizer.steps, np.asarray)
    assert restored.steps == 1
    for key, value in optimizer.state_arrays().items():
        np.testing.assert_array_equal(restored.state_arrays()[key], value)
    with pytest.raises(KeyError):
        Adam({"V": params["W"]}, np).load_state(optimizer.state_arrays(), 1, np.asarray)


def test_parameter_average_is_the_mean_of_the_samples_and_swaps_back():
    rng = np.random.default_rng(2)
    params = {"W": rng.standard_normal((3, 2)), "U": rng.standard_normal((2, 5)).T}
    samples = [{name: value.copy() for name, value in params.items()}]
    average = ParameterAverage(params, np)
    for _ in range(6):
        for value in params.values():
            value += rng.standard_normal(value.shape)
        samples.append({name: value.copy() for name, value in params.items()})
        average.add(params)
    assert average.count == 7
    for name in params:
        np.testing.assert_allclose(average.mean[name], np.mean([s[name] for s in samples], axis=0), rtol=1e-12)
    current = {name: value.copy() for name, value in params.items()}
    mean = {name: value.copy() for name, value in average.mean.items()}
    average.swap(params)
    for name in params:
        np.testing.assert_array_equal(params[name], mean[name])
        np.testing.assert_array_equal(average.mean[name], current[name])
    average.swap(params)
    for name in params:
        np.testing.assert_array_equal(params[name], current[name])
    restored = ParameterAverage(params, np)
    restored.load_state(average.state_arrays(), average.count, np.asarray)
    assert restored.count == 7
    for name in params:
        np.testing.assert_array_equal(restored.mean[name], average.mean[name])
