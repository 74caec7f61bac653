"""The backend: device choice, scatter-add, RNG, transfers."""

import logging

import numpy as np
import pytest

from rnnlm import backend as backend_module
from rnnlm.backend import get_backend
from rnnlm.io import RnnlmError


def test_cpu_is_numpy_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="rnnlm.backend"):
        backend = get_backend("cpu")
    assert backend.name == "numpy" and backend.xp is np
    assert "numpy" in caplog.text


def test_auto_falls_back_to_numpy_without_cuda(monkeypatch, caplog):
    monkeypatch.setattr(backend_module, "_usable_cupy", lambda: (None, "CuPy is not importable (test)"))
    with caplog.at_level(logging.INFO, logger="rnnlm.backend"):
        assert get_backend("auto").name == "numpy"
    assert "not importable" in caplog.text
    with pytest.raises(RnnlmError, match="device=gpu"):
        get_backend("gpu")


def test_unknown_device_is_refused():
    with pytest.raises(RnnlmError, match="device"):
        get_backend("tpu")


@pytest.mark.parametrize("shape", [(7,), (7, 3)])
def test_scatter_add_accumulates_repeats_like_add_at(shape):
    backend = get_backend("cpu")
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 7, 50)
    values = rng.standard_normal((50,) + shape[1:])
    target = rng.standard_normal(shape)
    expected = target.copy()
    np.add.at(expected, indices, values)
    backend.scatter_add(target, indices, values)
    np.testing.assert_allclose(target, expected, rtol=1e-12)
    backend.scatter_add(target, np.array([], dtype=np.int64), np.zeros((0,) + shape[1:]))
    np.testing.assert_allclose(target, expected, rtol=1e-12)


def test_scatter_add_into_a_transposed_view():
    backend = get_backend("cpu")
    grad = np.zeros((3, 5))  # (H, C) gradient filled through its (C, H) transpose
    backend.scatter_add(grad.T, np.array([4, 0, 4]), np.ones((3, 3)))
    np.testing.assert_array_equal(grad[:, 4], 2)
    np.testing.assert_array_equal(grad[:, 0], 1)


def test_rng_is_deterministic_and_transfers_round_trip():
    backend = get_backend("cpu")
    a, b = backend.rng(5).random(4), backend.rng(5).random(4)
    np.testing.assert_array_equal(backend.to_host(a), backend.to_host(b))
    array = backend.asarray([1, 2, 3], dtype=np.float32)
    assert backend.to_host(array).dtype == np.float32


def test_sum_by_index_gives_sorted_unique_indices_and_their_sums():
    backend = get_backend("cpu")
    indices, sums = backend.sum_by_index(np.array([[4, 0], [4, 2]]), np.arange(8.0).reshape(2, 2, 2))
    np.testing.assert_array_equal(indices, [0, 2, 4])
    np.testing.assert_array_equal(sums, [[2, 3], [6, 7], [0 + 4, 1 + 5]])
