"""Everything device-specific: the array module (NumPy or CuPy), scatter-add, RNG, host<->device.

The model code is written once against `backend.xp` and the few helpers here, so the same code runs
on the CPU and on a CUDA GPU. CuPy is imported lazily, so this module (and all of `rnnlm`) imports
fine on machines without it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from rnnlm.io import RnnlmError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "gpu")


class Backend:
    """One array library plus the operations whose best implementation differs per device."""

    def __init__(self, xp: Any, name: str):
        self.xp = xp
        self.name = name
        # The device code path (a GPU's: fused kernels, batched GEMMs, no host round trips inside a
        # batch); the CPU's path keeps NumPy's fastest form. rnnlm.launches counts the device path on NumPy.
        self.device = name == "cupy"

    def __repr__(self) -> str:
        return f"Backend({self.name})"

    def asarray(self, array: Any, dtype: Any = None):
        """Host (or device) data -> device array."""
        return self.xp.asarray(array, dtype=dtype)

    def to_host(self, array: Any) -> np.ndarray:
        """Device array -> NumPy array (a no-op on the CPU)."""
        if self.name == "cupy":
            return self.xp.asnumpy(array)
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait until the device has finished all queued work. CuPy calls return as soon as a kernel
        is queued, so a clock read without this measures the queueing, not the work."""
        if self.name == "cupy":
            self.xp.cuda.Device().synchronize()

    def scatter_add(self, target, indices, values, host_indices=None) -> None:
        """`target[indices] += values` along axis 0, with repeated indices accumulated
        (`host_indices`: as for `sum_by_index`)."""
        unique, sums = self.sum_by_index(indices, values, host_indices=host_indices)
        target[unique] += sums

    def sum_by_index(self, indices, values, host_indices=None):
        """(unique indices (k,), sums (k, ...)): the rows of `values` summed per index, ascending.
        `host_indices`: the same indices on the host, so that the device needs no `unique` (whose
        size has to reach the host: a synchronisation)."""
        xp = self.xp
        values = values.reshape((indices.size,) + values.shape[indices.ndim :])
        indices = indices.ravel()
        if self.name == "cupy":
            import cupyx

            if host_indices is not None:
                unique, inverse = (self.asarray(part) for part in np.unique(np.ravel(host_indices), return_inverse=True))
            else:
                unique, inverse = xp.unique(indices, return_inverse=True)
            sums = xp.zeros((unique.size,) + values.shape[1:], dtype=values.dtype)
            cupyx.scatter_add(sums, inverse, values)
            return unique, sums
        return _numpy_sum_by_index(indices, values)

    def rng(self, seed: int):
        """A random generator living on the device, deterministic per seed."""
        return self.xp.random.default_rng(seed)

    def dropout_mask(self, rng, shape, rate: float, dtype):
        """Inverted dropout: each entry 0 with probability `rate`, else 1 / (1 - rate), drawn from
        `rng` (from `rng()`) on the device."""
        uniform = rng.random(shape, dtype=np.float32)
        mask = (uniform >= rate).astype(dtype)
        mask *= 1.0 / (1.0 - rate)
        return mask


    def run(self, kernel: "FusedKernel", *arrays) -> None:
        """One fused elementwise kernel (see `run_kernel`)."""
        run_kernel(self.xp, kernel, *arrays)


def run_kernel(xp: Any, kernel: "FusedKernel", *arrays) -> None:
    """Run `kernel` on `arrays` (its inputs, then its outputs, written in place) with the array
    module `xp`: a CuPy ElementwiseKernel (one launch) for CuPy, its NumPy twin (the same
    expression in the same operation order) for NumPy, and an array module's own `run_kernel`
    for others (rnnlm.launches counts it as one launch)."""
    if xp is np:
        kernel.numpy_twin(np, *arrays)
    elif hasattr(xp, "run_kernel"):
        xp.run_kernel(kernel, *arrays)
    else:
        kernel.cuda(xp)(*arrays)


class FusedKernel:
    """An elementwise expression over same-shaped (broadcastable) arrays, written twice: as CUDA C
    for `cupy.ElementwiseKernel` (compiled on first use) and as a NumPy function `numpy_twin(xp,
    *inputs, *outputs)`. Both compute the same operations; on the CPU the twin is the code that was
    there before fusion, so CPU results do not change (the CUDA compiler may contract a*b+c into an
    FMA, hence the GPU parity tolerances)."""

    def __init__(self, name: str, inputs: str, outputs: str, body: str, numpy_twin):
        self.name, self.inputs, self.outputs, self.body = name, inputs, outputs, body
        self.numpy_twin = numpy_twin
        self._cuda = None

    def cuda(self, cupy):
        if self._cuda is None:
            self._cuda = cupy.ElementwiseKernel(self.inputs, self.outputs, self.body, f"rnnlm_{self.name}")
        return self._cuda


def _numpy_sum_by_index(indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # np.add.at is an unbuffered element loop (slow); summing runs of equal indices after a sort
    # is one argsort, one gather and one reduceat.
    if indices.size == 0:
        return indices, values[:0].copy()
    order = np.argsort(indices, kind="stable")
    sorted_indices = indices[order]
    run_starts = np.flatnonzero(np.r_[True, sorted_indices[1:] != sorted_indices[:-1]])
    return sorted_indices[run_starts], np.add.reduceat(values[order], run_starts, axis=0)


def _usable_cupy() -> tuple[Any, str]:
    """(cupy module, "") when CuPy imports and a CUDA device answers; (None, reason) otherwise."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA failing at import
        return None, f"CuPy is not importable ({exc})"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "no CUDA device is visible"
        cupy.zeros(1).sum().item()  # touch the device so a broken driver fails here, not mid-training
    except Exception as exc:
        return None, f"no usable CUDA device ({exc})"
    return cupy, ""


def get_backend(device: str = "auto") -> Backend:
    """`auto`: CuPy when a CUDA device is usable, else NumPy; `cpu`: NumPy; `gpu`: CuPy or RnnlmError."""
    if device not in DEVICES:
        raise RnnlmError(f"device {device!r} is not one of {', '.join(DEVICES)}; fix `device` in the config")
    if device == "cpu":
        log.info("backend: numpy (device=cpu)")
        return Backend(np, "numpy")
    cupy, reason = _usable_cupy()
    if cupy is not None:
        log.info("backend: cupy on CUDA device %d (device=%s)", cupy.cuda.Device().id, device)
        return Backend(cupy, "cupy")
    if device == "gpu":
        raise RnnlmError(
            f"device=gpu but {reason}; install CuPy for your CUDA version (pip install 'rnnlm-workflow[gpu]') "
            "or set device: cpu / auto"
        )
    log.info("backend: numpy (device=auto: %s)", reason)
    return Backend(np, "numpy")
