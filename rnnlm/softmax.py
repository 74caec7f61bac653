"""Output layers: the full softmax over the vocabulary, fused and chunked.

An output layer maps hidden rows `h` (n, H) with targets `y` (n,) to the summed cross-entropy and
its gradients, and gives log-probabilities for scoring and generation. Rows are processed in chunks
of `chunk_elements // C` rows, so memory holds one chunk of logits however large the batch is.

Fusion (full softmax). Per chunk, with E = exp(logits - shift):
  1. logits - shift come out of one GEMM: [h, -shift, 1] @ [V, 1, b_y]^T, so neither the bias
     nor the shift costs a pass over the chunk;
  2. one in-place exp;
  3. E @ [V, 1] gives both sum_i E_i V_i and the row sums: dL/dh = (E V) / sum - V[y];
  4. E^T @ [h / sum, 1 / sum] gives dV and db_y except the one-hot part, scatter-added at the end.
The shift is an upper bound on each row's largest logit (Cauchy-Schwarz: max_i ||V_i|| ||h|| +
max b_y), so no exp overflows and no max pass is needed; rows whose bound is so loose that their
sum underflows are recomputed exactly with their true maximum.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rnnlm.io import RnnlmError

DEFAULT_CHUNK_ELEMENTS = 1 << 22  # 16 MiB of float32 logits


def _underflow_limit(dtype) -> float:
    # A row sum below this may have lost terms to underflow; recompute it with its exact maximum.
    return float(np.finfo(dtype).tiny) ** 0.8


class FullSoftmax:
    """o = softmax(V h + b_y) over all C words."""

    def __init__(self, vocab_size: int, hidden_size: int, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.chunk_rows = max(1, chunk_elements // vocab_size)

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        bound = 1.0 / math.sqrt(self.hidden_size)
        return {
            "V": rng.uniform(-bound, bound, (self.vocab_size, self.hidden_size)).astype(dtype),
            "b_y": np.zeros(self.vocab_size, dtype=dtype),
        }

    def _extended_weights(self, xp: Any, params):
        """[V, 1, b_y] (C, H+2): the forward GEMM adds bias and shift; [:, :H+1] gives row sums."""
        V, b = params["V"], params["b_y"]
        hidden = self.hidden_size
        v_ext = xp.empty((V.shape[0], hidden + 2), dtype=V.dtype)
        v_ext[:, :hidden] = V
        v_ext[:, hidden] = 1
        v_ext[:, hidden + 1] = b
        row_norm_bound = float(xp.sqrt((V * V).sum(axis=1).max())) if V.size else 0.0
        return v_ext, row_norm_bound, float(b.max())

    def _exp_shifted(self, xp: Any, v_ext, norm_bound: float, bias_max: float, h, y, out):
        """Fill `out` with exp(logits - shift) for rows h; return the shifted target logits."""
        rows, hidden = h.shape
        h_ext = xp.empty((rows, hidden + 2), dtype=h.dtype)
        h_ext[:, :hidden] = h
        shift = xp.sqrt((h * h).sum(axis=1))
        shift *= norm_bound
        shift += bias_max
        xp.negative(shift, out=h_ext[:, hidden])
        h_ext[:, hidden + 1] = 1
        xp.dot(h_ext, v_ext.T, out=out)
        target = out[xp.arange(rows), y]
        xp.exp(out, out=out)
        return target

    def loss_and_grads(self, backend, params, h, y):
        """Summed cross-entropy of rows h (n, H) with targets y (n,), dL/dh, and {V, b_y} gradients."""
        xp = backend.xp
        n, hidden = h.shape
        v_ext, norm_bound, bias_max = self._extended_weights(xp, params)
        v_sum_weights = v_ext[:, : hidden + 1]  # [V, 1]
        grad_ext = xp.zeros((self.vocab_size, hidden + 1), dtype=h.dtype)  # [dV, db_y]
        dh = xp.empty_like(h)
        loss = xp.zeros((), dtype=xp.float64)
        exps_buffer = xp.empty((min(n, self.chunk_rows), self.vocab_size), dtype=h.dtype)
        for start in range(0, n, self.chunk_rows):
            h_chunk, y_chunk = h[start : start + self.chunk_rows], y[start : start + self.chunk_rows]
            exps = exps_buffer[: h_chunk.shape[0]]
            target = self._exp_shifted(xp, v_ext, norm_bound, bias_max, h_chunk, y_chunk, exps)
            weighted = exps @ v_sum_weights  # [sum_i E_i V_i, sum_i E_i]
            sums = weighted[:, hidden]
            if not bool((sums >= _underflow_limit(h.dtype)).all()):
                self._repair_exact(xp, params, v_sum_weights, h_chunk, y_chunk, exps, target, weighted)
                sums = weighted[:, hidden]
            loss += (xp.log(sums) - target).sum()
            inverse = 1 / sums
            xp.multiply(weighted[:, :hidden], inverse[:, None], out=dh[start : start + self.chunk_rows])
            # the weights for the dV GEMM reuse `weighted`'s storage: [h / sum, 1 / sum]
            xp.multiply(h_chunk, inverse[:, None], out=weighted[:, :hidden])
            weighted[:, hidden] = inverse
            if n <= self.chunk_rows:
                xp.dot(exps.T, weighted, out=grad_ext)
            else:
                grad_ext += exps.T @ weighted
        dh -= params["V"][y]
        one_hot_part = xp.empty((n, hidden + 1), dtype=h.dtype)
        xp.negative(h, out=one_hot_part[:, :hidden])
        one_hot_part[:, hidden] = -1
        backend.scatter_add(grad_ext, y, one_hot_part)
        return loss, dh, {"V": grad_ext[:, :hidden], "b_y": grad_ext[:, hidden]}

    def _repair_exact(self, xp: Any, params, v_sum_weights, h, y, exps, target, weighted):
        """Rows whose sum underflowed (or is not finite): recompute with their exact maximum."""
        rows = xp.flatnonzero(~(weighted[:, -1] >= _underflow_limit(h.dtype)))
        logits = h[rows] @ params["V"].T + params["b_y"]
        logits -= logits.max(axis=1, keepdims=True)
        target[rows] = logits[xp.arange(rows.size), y[rows]]
        exps[rows] = xp.exp(logits)
        weighted[rows] = exps[rows] @ v_sum_weights

    def target_log_probs(self, backend, params, h, y):
        """log p(y_i | h_i) for rows h (n, H), chunked like the training pass."""
        xp = backend.xp
        n = h.shape[0]
        v_ext, norm_bound, bias_max = self._extended_weights(xp, params)
        v_sum_weights = v_ext[:, : self.hidden_size + 1]
        result = xp.empty(n, dtype=h.dtype)
        exps_buffer = xp.empty((min(n, self.chunk_rows), self.vocab_size), dtype=h.dtype)
        for start in range(0, n, self.chunk_rows):
            h_chunk, y_chunk = h[start : start + self.chunk_rows], y[start : start + self.chunk_rows]
            exps = exps_buffer[: h_chunk.shape[0]]
            target = self._exp_shifted(xp, v_ext, norm_bound, bias_max, h_chunk, y_chunk, exps)
            sums = exps.sum(axis=1)
            if not bool((sums >= _underflow_limit(h.dtype)).all()):
                weighted = exps @ v_sum_weights
                self._repair_exact(xp, params, v_sum_weights, h_chunk, y_chunk, exps, target, weighted)
                sums = weighted[:, -1]
            xp.subtract(target, xp.log(sums), out=result[start : start + self.chunk_rows])
        return result

    def log_probs(self, backend, params, h):
        """log-softmax over the whole vocabulary for each row of h (B, H) -> (B, C)."""
        xp = backend.xp
        logits = h @ params["V"].T
        logits += params["b_y"]
        logits -= logits.max(axis=1, keepdims=True)
        logits -= xp.log(xp.exp(logits).sum(axis=1, keepdims=True))
        return logits

    def file_arrays(self, backend) -> dict[str, np.ndarray]:
        """Non-parameter arrays the params file must keep (none for the full softmax)."""
        return {}


def make_output(config, backend, word_counts=None, class_of_word=None):
    """The output layer named by `config.output`."""
    if config.output == "full":
        return FullSoftmax(config.vocab_size, config.hidden_size)
    raise RnnlmError(f"output {config.output!r} is not available yet; use output: full")
