"""Optimizer state beyond the parameters: Adam's moments and the averaged parameters of `averaging`.

Adam (Kingma & Ba 2015) is the trainer's alternative to plain SGD (`optimizer: adam`).

Each parameter entry gets its own step size from running averages of its gradient (first moment)
and squared gradient (second moment):

    m = b1 m + (1 - b1) g        v = b2 v + (1 - b2) g^2
    p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

with g the (clipped) mean-per-token gradient and t the number of updates so far. Rare words' input
and output weights, which SGD moves only as often as the words occur, get steps as large as the
frequent ones' here; on small corpora that converges in a fraction of SGD's epochs.

The moments are dense arrays shaped like the parameters, on the model's device, and are part of
the trainer's checkpoint, so a resumed run continues with the same moments.

A gradient given as `SparseRows` (the word-indexed input weights: U, or the embedding table E,
whose gradient is zero outside the batch's words) gets the lazy update of sparse Adam (TensorFlow's LazyAdam, PyTorch's SparseAdam): only the
batch's words' moments and weights move, by the formulas above with the global step count t. The
moments of words absent from a batch do not decay meanwhile. A dense step would touch all of U's
G*H x C entries several times per batch, most of the trainer's time at C = 8000.
"""

from __future__ import annotations

import math
from typing import Any

from rnnlm.model import SparseRows

BETA1 = 0.9
BETA2 = 0.999
EPSILON = 1e-8


class Adam:
    def __init__(self, params: dict[str, Any], xp: Any):
        self.xp = xp
        self.first = {name: xp.zeros_like(value) for name, value in params.items()}
        self.second = {name: xp.zeros_like(value) for name, value in params.items()}
        self.steps = 0

    def update(self, params: dict[str, Any], grads: dict[str, Any], scale: float, learning_rate: float) -> None:
        """One Adam step with g = scale * grads[name] (dense arrays, consumed: overwritten)."""
        xp = self.xp
        self.steps += 1
        step_size = learning_rate * math.sqrt(1 - BETA2**self.steps) / (1 - BETA1**self.steps)
        for name, grad in grads.items():
            first, second = self.first[name], self.second[name]
            if isinstance(grad, SparseRows):
                self._lazy_update(params[name], first, second, grad, scale, step_size)
                continue
            grad *= scale
            first *= BETA1
            first += (1 - BETA1) * grad
            grad *= grad
            second *= BETA2
            second += (1 - BETA2) * grad
            denominator = xp.sqrt(second, out=grad)
            denominator += EPSILON
            update = first / denominator
            update *= step_size
            params[name] -= update

    def _lazy_update(self, param, first, second, grad: SparseRows, scale: float, step_size: float) -> None:
        """The Adam step of the rows `grad.indices` of the word-major (C, ...) views of the
        parameter (U, E or a tied V) and its moments; every other row is left as it is."""
        xp = self.xp
        words, gradient = grad.indices, grad.rows
        param, first, second = grad.word_major(param), grad.word_major(first), grad.word_major(second)
        gradient *= scale
        first_rows = first[words]
        first_rows *= BETA1
        first_rows += (1 - BETA1) * gradient
        gradient *= gradient
        second_rows = second[words]
        second_rows *= BETA2
        second_rows += (1 - BETA2) * gradient
        first[words] = first_rows
        second[words] = second_rows
        denominator = xp.sqrt(second_rows, out=gradient)
        denominator += EPSILON
        first_rows /= denominator
        first_rows *= step_size
        param[words] -= first_rows

    def state_arrays(self) -> dict[str, Any]:
        """The moments as named arrays (for the checkpoint); the step count travels separately."""
        arrays = {f"adam.first.{name}": value for name, value in self.first.items()}
        arrays.update({f"adam.second.{name}": value for name, value in self.second.items()})
        return arrays

    def load_state(self, arrays: dict[str, Any], steps: int, asarray) -> None:
        for name in self.first:
            self.first[name][...] = asarray(arrays[f"adam.first.{name}"])
            self.second[name][...] = asarray(arrays[f"adam.second.{name}"])
        self.steps = steps


class ParameterAverage:
    """Running mean of the parameters over the updates since it started (Polyak averaging; as in
    Merity et al. 2018's NT-ASGD, the trainer starts it the first time the validation loss rises).
    The mean of many noisy SGD iterates sits closer to the minimum than any one of them."""

    def __init__(self, params: dict[str, Any], xp: Any):
        self.mean = {name: value.copy() for name, value in params.items()}
        self._difference = {name: xp.empty_like(value) for name, value in params.items()}
        self.xp = xp
        self.count = 1  # the parameters it starts from are the first sample

    def add(self, params: dict[str, Any]) -> None:
        """Fold in the current parameters: mean += (params - mean) / count, with no new arrays."""
        self.count += 1
        weight = 1.0 / self.count
        for name, mean in self.mean.items():
            difference = self._difference[name]
            self.xp.subtract(params[name], mean, out=difference)
            difference *= weight
            mean += difference

    def swap(self, params: dict[str, Any]) -> None:
        """Exchange the parameters' values with the mean's (twice restores both)."""
        for name, mean in self.mean.items():
            buffer = self._difference[name]
            buffer[...] = params[name]
            params[name][...] = mean
            mean[...] = buffer

    def state_arrays(self) -> dict[str, Any]:
        return {f"average.{name}": value for name, value in self.mean.items()}

    def load_state(self, arrays: dict[str, Any], count: int, asarray) -> None:
        for name, mean in self.mean.items():
            mean[...] = asarray(arrays[f"average.{name}"])
        self.count = count
