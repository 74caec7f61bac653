"""Recurrent cells: vanilla RNN (tanh | relu), GRU and LSTM, forward and backward over time.

Every cell keeps its parameters in the same three arrays, so the model, the gradient check and the
trainer treat all cells alike:

    U   (G*H, C)  input weights (one column per word: the one-hot input is a column gather)
    W   (G*H, H)  recurrent weights
    b_h (G*H,)    biases
where G is the number of gate blocks (1 for rnn, 3 for gru, 4 for lstm). The model gathers
`inputs = U[:, x].T + b_h` for all time steps at once; a cell only adds the recurrent part.

A cell's state is one array of `state_size` columns (the LSTM's is [h, c]); `hidden(states)` is the
part the output layer reads. `backward(...)` is one step of backpropagation, vectorized over any
range of time steps: given dL/ds_t it returns the gradient of the gate pre-activations `dz` (which
the parameter gradients are linear in) and dL/ds_{t-1}. Truncated and full BPTT are both built on
it in `rnnlm.model`.

Resets (a document starts at step t): `keep` (T, B, 1) holds 1 - resets_t, and step t reads
s_{t-1} * keep_t instead of s_{t-1}; the same factor in `backward` and `weight_grad`, so no gradient
crosses a document start. `keep` None is a plain recurrence (no multiply at all).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rnnlm.io import RnnlmError


def _sigmoid(xp: Any, a, out=None):
    # tanh form: stable for large |a| and one transcendental call.
    out = xp.multiply(a, 0.5, out=out)
    xp.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


class Cell:
    """Shared parameter layout; subclasses define the recurrence."""

    gates = 1

    def __init__(self, hidden_size: int):
        self.hidden_size = hidden_size

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def hidden(self, states):
        """The part of the state the output layer reads (all of it except for the LSTM)."""
        return states

    @staticmethod
    def previous(states, keep, steps: slice):
        """The state the steps in `steps` read: s_{t-1}, zeroed on the rows where a document starts."""
        prev = states[steps]
        return prev if keep is None else prev * keep[steps]

    def init_params(self, rng: np.random.Generator, input_size: int, dtype) -> dict[str, np.ndarray]:
        """Uniform in +-1/sqrt(fan-in): the one-hot input has fan-in C (an embedding D, the layer
        below H), the recurrence H."""
        rows, hidden = self.gates * self.hidden_size, self.hidden_size
        u_bound, w_bound = 1.0 / math.sqrt(input_size), 1.0 / math.sqrt(hidden)
        return {
            "U": rng.uniform(-u_bound, u_bound, (rows, input_size)).astype(dtype),
            "W": rng.uniform(-w_bound, w_bound, (rows, hidden)).astype(dtype),
            "b_h": np.zeros(rows, dtype=dtype),
        }

    def weight_grad(self, xp: Any, params, states, extras, dz, keep=None):
        """dL/dW from the pre-activation gradients of all steps, (T, B, G*H)."""
        hidden_prev = self.hidden(self.previous(states, keep, slice(0, len(dz)))).reshape(-1, self.hidden_size)
        return dz.reshape(-1, dz.shape[-1]).T @ hidden_prev


class RNNCell(Cell):
    """s_t = f(U[:, x_t] + W s_{t-1} + b_h), f = tanh or relu."""

    gates = 1

    def __init__(self, hidden_size: int, activation: str):
        super().__init__(hidden_size)
        if activation not in ("tanh", "relu"):
            raise RnnlmError(f"activation {activation!r} is not tanh or relu; fix `activation` in the model config")
        self.activation = activation

    def _activate(self, xp: Any, a):
        if self.activation == "tanh":
            return xp.tanh(a, out=a)
        return xp.maximum(a, 0, out=a)

    def forward(self, xp: Any, params, inputs, state0, keep=None):
        steps, batch = inputs.shape[:2]
        states = xp.empty((steps + 1, batch, self.hidden_size), dtype=inputs.dtype)
        states[0] = state0
        recurrent_t = params["W"].T
        for t in range(steps):
            xp.dot(states[t], recurrent_t, out=states[t + 1])
            if keep is not None:  # (keep * s) W^T == keep * (s W^T): keep is one factor per row
                states[t + 1] *= keep[t]
            states[t + 1] += inputs[t]
            self._activate(xp, states[t + 1])
        return states, None

    def step(self, xp: Any, params, inputs, state):
        return self._activate(xp, inputs + state @ params["W"].T)

    def backward(self, xp: Any, params, states, extras, steps: slice, grad_state, keep=None):
        new_states = states[steps.start + 1 : steps.stop + 1]
        if self.activation == "tanh":
            dz = new_states * new_states
            xp.subtract(1, dz, out=dz)
            dz *= grad_state
        else:
            dz = grad_state * (new_states > 0)
        grad_prev = dz @ params["W"]
        if keep is not None:
            grad_prev *= keep[steps]
        return dz, grad_prev


class GRUCell(Cell):
    """Gated recurrent unit (Cho et al. 2014), gate blocks [z, r, n] in U, W, b_h:
    z, r = sigmoid(.. + W_zr h_{t-1}), n = tanh(.. + W_n (r * h_{t-1})), h_t = (1 - z) n + z h_{t-1}."""

    gates = 3

    def forward(self, xp: Any, params, inputs, state0, keep=None):
        steps, batch = inputs.shape[:2]
        hidden = self.hidden_size
        w_zr_t, w_n_t = params["W"][: 2 * hidden].T, params["W"][2 * hidden :].T
        states = xp.empty((steps + 1, batch, hidden), dtype=inputs.dtype)
        states[0] = state0
        update_reset = xp.empty((steps, batch, 2 * hidden), dtype=inputs.dtype)  # activated z, r
        candidate = xp.empty((steps, batch, hidden), dtype=inputs.dtype)  # n
        for t in range(steps):
            h_prev = states[t] if keep is None else states[t] * keep[t]
            self._step_into(xp, inputs[t], h_prev, w_zr_t, w_n_t, update_reset[t], candidate[t], states[t + 1])
        return states, (update_reset, candidate)

    def _step_into(self, xp: Any, inputs, h_prev, w_zr_t, w_n_t, zr, n, h_new):
        hidden = self.hidden_size
        xp.dot(h_prev, w_zr_t, out=zr)
        zr += inputs[:, : 2 * hidden]
        _sigmoid(xp, zr, out=zr)
        xp.dot(zr[:, hidden:] * h_prev, w_n_t, out=n)
        n += inputs[:, 2 * hidden :]
        xp.tanh(n, out=n)
        xp.subtract(h_prev, n, out=h_new)
        h_new *= zr[:, :hidden]
        h_new += n

    def step(self, xp: Any, params, inputs, state):
        hidden = self.hidden_size
        update_reset = xp.empty((state.shape[0], 2 * hidden), dtype=state.dtype)
        candidate, new_state = xp.empty_like(state), xp.empty_like(state)
        w_zr_t, w_n_t = params["W"][: 2 * hidden].T, params["W"][2 * hidden :].T
        self._step_into(xp, inputs, state, w_zr_t, w_n_t, update_reset, candidate, new_state)
        return new_state

    def backward(self, xp: Any, params, states, extras, steps: slice, grad_state, keep=None):
        hidden = self.hidden_size
        h_prev = self.previous(states, keep, steps)
        z, r = extras[0][steps][..., :hidden], extras[0][steps][..., hidden:]
        n = extras[1][steps]
        dz = xp.empty(grad_state.shape[:-1] + (3 * hidden,), dtype=grad_state.dtype)
        da_z, da_r, da_n = dz[..., :hidden], dz[..., hidden : 2 * hidden], dz[..., 2 * hidden :]
        # n-gate pre-activation: dh/dn = 1 - z, tanh' = 1 - n^2
        xp.multiply(grad_state, 1 - z, out=da_n)
        da_n *= 1 - n * n
        d_reset_hidden = da_n @ params["W"][2 * hidden :]  # gradient of r * h_{t-1}
        xp.multiply(d_reset_hidden, h_prev, out=da_r)
        da_r *= r * (1 - r)
        xp.subtract(h_prev, n, out=da_z)
        da_z *= grad_state
        da_z *= z * (1 - z)
        grad_prev = grad_state * z
        grad_prev += d_reset_hidden * r
        grad_prev += dz[..., : 2 * hidden] @ params["W"][: 2 * hidden]
        if keep is not None:
            grad_prev *= keep[steps]
        return dz, grad_prev

    def weight_grad(self, xp: Any, params, states, extras, dz, keep=None):
        hidden = self.hidden_size
        h_prev = self.previous(states, keep, slice(0, len(dz))).reshape(-1, hidden)
        dz_rows = dz.reshape(-1, 3 * hidden)
        reset_hidden = extras[0][..., hidden:].reshape(-1, hidden) * h_prev
        return xp.concatenate([dz_rows[:, : 2 * hidden].T @ h_prev, dz_rows[:, 2 * hidden :].T @ reset_hidden])


class LSTMCell(Cell):
    """Long short-term memory, gate blocks [i, f, o, g], state [h, c]:
    c_t = f c_{t-1} + i g, h_t = o tanh(c_t); the output layer reads h."""

    gates = 4

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def hidden(self, states):
        return states[..., : self.hidden_size]

    def init_params(self, rng: np.random.Generator, input_size: int, dtype) -> dict[str, np.ndarray]:
        params = super().init_params(rng, input_size, dtype)
        # Forget gate open at the start, so gradients pass through c from the first update on.
        params["b_h"][self.hidden_size : 2 * self.hidden_size] = 1.0
        return params

    def forward(self, xp: Any, params, inputs, state0, keep=None):
        steps, batch = inputs.shape[:2]
        hidden = self.hidden_size
        states = xp.empty((steps + 1, batch, 2 * hidden), dtype=inputs.dtype)
        states[0] = state0
        gates = xp.empty((steps, batch, 4 * hidden), dtype=inputs.dtype)  # activated i, f, o, g
        tanh_c = xp.empty((steps, batch, hidden), dtype=inputs.dtype)
        recurrent_t = params["W"].T
        for t in range(steps):
            state = states[t] if keep is None else states[t] * keep[t]
            self._step_into(xp, inputs[t], state, recurrent_t, gates[t], tanh_c[t], states[t + 1])
        return states, (gates, tanh_c)

    def _step_into(self, xp: Any, inputs, state, recurrent_t, gates, tanh_c, new_state):
        hidden = self.hidden_size
        xp.dot(state[:, :hidden], recurrent_t, out=gates)
        gates += inputs
        _sigmoid(xp, gates[:, : 3 * hidden], out=gates[:, : 3 * hidden])
        xp.tanh(gates[:, 3 * hidden :], out=gates[:, 3 * hidden :])
        c_new = new_state[:, hidden:]
        xp.multiply(gates[:, hidden : 2 * hidden], state[:, hidden:], out=c_new)
        c_new += gates[:, :hidden] * gates[:, 3 * hidden :]
        xp.tanh(c_new, out=tanh_c)
        xp.multiply(gates[:, 2 * hidden : 3 * hidden], tanh_c, out=new_state[:, :hidden])

    def step(self, xp: Any, params, inputs, state):
        hidden = self.hidden_size
        gates = xp.empty((state.shape[0], 4 * hidden), dtype=state.dtype)
        tanh_c = xp.empty((state.shape[0], hidden), dtype=state.dtype)
        new_state = xp.empty_like(state)
        self._step_into(xp, inputs, state, params["W"].T, gates, tanh_c, new_state)
        return new_state

    def backward(self, xp: Any, params, states, extras, steps: slice, grad_state, keep=None):
        hidden = self.hidden_size
        gates, tanh_c = extras[0][steps], extras[1][steps]
        i, f, o, g = (gates[..., k * hidden : (k + 1) * hidden] for k in range(4))
        c_prev = self.previous(states, keep, steps)[..., hidden:]
        grad_h, grad_c = grad_state[..., :hidden], grad_state[..., hidden:]
        d_cell = grad_h * o
        d_cell *= 1 - tanh_c * tanh_c
        d_cell += grad_c
        dz = xp.empty(grad_state.shape[:-1] + (4 * hidden,), dtype=grad_state.dtype)
        xp.multiply(d_cell, g, out=dz[..., :hidden])
        dz[..., :hidden] *= i * (1 - i)
        xp.multiply(d_cell, c_prev, out=dz[..., hidden : 2 * hidden])
        dz[..., hidden : 2 * hidden] *= f * (1 - f)
        xp.multiply(grad_h, tanh_c, out=dz[..., 2 * hidden : 3 * hidden])
        dz[..., 2 * hidden : 3 * hidden] *= o * (1 - o)
        xp.multiply(d_cell, i, out=dz[..., 3 * hidden :])
        dz[..., 3 * hidden :] *= 1 - g * g
        grad_prev = xp.empty_like(grad_state)
        grad_prev[..., :hidden] = dz @ params["W"]
        xp.multiply(d_cell, f, out=grad_prev[..., hidden:])
        if keep is not None:
            grad_prev *= keep[steps]
        return dz, grad_prev


def make_cell(cell: str, hidden_size: int, activation: str) -> Cell:
    if cell == "rnn":
        return RNNCell(hidden_size, activation)
    if cell == "gru":
        return GRUCell(hidden_size)
    if cell == "lstm":
        return LSTMCell(hidden_size)
    raise RnnlmError(f"cell {cell!r} is not rnn, gru or lstm; fix `cell` in the model config")
