"""Output layers: the full softmax and the class-based softmax, both fused and memory-bounded.

An output layer maps hidden rows `h` (n, H) with targets `y` (n,) to the summed cross-entropy and
its gradients, and gives log-probabilities for scoring and generation.

Fusion. For a block of rows and a block of words (all words for the full softmax, one class for
the class softmax), with E = exp(logits - shift):
  1. logits - shift come out of one GEMM, [h, -shift, 1] @ [V, 1, b_y]^T, so neither the bias nor
     the shift costs a pass over the block;
  2. one in-place exp;
  3. E @ [V, 1] gives both sum_i E_i V_i and the row sums: dL/dh = (E V) / sum - V[y];
  4. with sum subtracted from each row's target entry, E^T @ [h / sum, 1 / sum] gives dV and db_y
     including the one-hot part of (p - onehot): no scatter-add, no pass over the block.
The shift is an upper bound of each row's largest logit (Cauchy-Schwarz: max_i ||V_i|| ||h|| +
max b_y), so no exp overflows and no max pass is needed; rows whose bound is so loose that their
sum underflows are recomputed exactly with their true maximum.

To make step 1 and 3 copy-free, `V` and `b_y` are kept as views into one (C, H+2) array
[V, 1, b_y]: update them in place (as SGD does); a rebound array is copied back in on next use.

The full softmax processes rows in chunks of `chunk_elements // C`, so memory holds one chunk of
logits however large the batch. The class softmax (Mikolov et al. 2011) factors
P(w | h) = P(class(w) | h) P(w | class(w), h) with classes that are contiguous id ranges holding
about equal shares of the unigram mass (ids are ordered by descending count), so a token costs
K + |class| dot products instead of C.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from rnnlm.backend import FusedKernel, run_kernel
from rnnlm.io import RnnlmError

DEFAULT_CHUNK_ELEMENTS = 1 << 22  # 16 MiB of float32 logits


def _underflow_limit(dtype) -> float:
    # A row sum below this may have lost terms to underflow; recompute it with its exact maximum.
    return float(np.finfo(dtype).tiny) ** 0.8


def _log_softmax_rows(xp: Any, logits):
    """In-place log-softmax along the last axis (exact max shift)."""
    logits -= logits.max(axis=-1, keepdims=True)
    logits -= xp.log(xp.exp(logits).sum(axis=-1, keepdims=True))
    return logits


class _WordWeights:
    """The (C, H+2) array [V, 1, b_y] whose column views are the parameters V and b_y (named
    `names`; the class softmax's class layer is a full softmax over classes named V_class, b_class)."""

    def __init__(self, vocab_size: int, hidden_size: int, names: tuple[str, str] = ("V", "b_y")):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.weight_name, self.bias_name = names
        self._storage = None
        self._update = None

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        bound = 1.0 / math.sqrt(self.hidden_size)
        return {
            self.weight_name: rng.uniform(-bound, bound, (self.vocab_size, self.hidden_size)).astype(dtype),
            self.bias_name: np.zeros(self.vocab_size, dtype=dtype),
        }

    def extended(self, xp: Any, params):
        """[V, 1, b_y], re-linking params[V], params[b_y] as its views if they were rebound."""
        storage, hidden = self._storage, self.hidden_size
        weight, bias = params[self.weight_name], params[self.bias_name]
        if storage is None or weight.base is not storage or bias.base is not storage:
            storage = xp.empty((self.vocab_size, hidden + 2), dtype=weight.dtype)
            storage[:, :hidden] = weight
            storage[:, hidden] = 1
            storage[:, hidden + 1] = bias
            params[self.weight_name], params[self.bias_name] = storage[:, :hidden], storage[:, hidden + 1]
            self._storage = storage
        return storage

    def shifted_inputs(self, xp: Any, params, h):
        """[h, -shift, 1] (n, H+2) with shift >= every logit of the row (Cauchy-Schwarz)."""
        V = params[self.weight_name]
        # Both maxima stay on the device (0-d arrays, no host round trip); sqrt of the float32 max
        # is the float32-rounded float64 sqrt, so this equals the host-float form bit for bit.
        row_norm = xp.sqrt(xp.einsum("ij,ij->i", V, V).max())
        rows, hidden = h.shape
        h_ext = xp.empty((rows, hidden + 2), dtype=h.dtype)
        h_ext[:, :hidden] = h
        shift = h_ext[:, hidden]
        xp.sqrt(xp.einsum("ij,ij->i", h, h), out=shift)
        shift *= row_norm
        shift += params[self.bias_name].max()
        # Whole numbers: a tiny parameter change rarely moves the shift, so the loss's rounding does
        # not jitter with it (central differences in the gradient check see the true change only).
        xp.ceil(shift, out=shift)
        # Not xp.negative(shift, out=shift): NumPy 2.4.6 reads a strided in-place negative with the
        # wrong stride (the shift then holds other columns' values, or garbage from np.empty).
        shift *= -1
        h_ext[:, hidden + 1] = 1
        return h_ext

    def file_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _update_buffer(self, xp: Any, weights):
        """A (C, H+2) buffer kept between steps: no page faults of a fresh 3 MB array per step."""
        if self._update is None or self._update.dtype != weights.dtype:
            self._update = xp.empty_like(weights)
        return self._update

    def _kept_gradients(self, update) -> dict:
        """The [dV, 0, db_y] rows of the kept buffer as the parameters' gradients (views: they live
        until the next call, see `deferred_updates`)."""
        return {self.weight_name: update[:, : self.hidden_size], self.bias_name: update[:, self.hidden_size + 1]}

    def deferred_updates(self, grads: dict) -> list:
        """[(names, gradient buffer, [V, 1, b_y] storage)] for this layer's gradients in `grads` that
        are views of its kept buffer (a `keep_gradients` call), else []. The buffer's ones column is
        0, so `storage += s * buffer` is the whole SGD step of V and b_y in one contiguous pass, and
        the buffer's squared sum is their squared gradient norm."""
        update, names = self._update, (self.weight_name, self.bias_name)
        if update is None or any(getattr(grads.get(name), "base", None) is not update for name in names):
            return []
        return [(names, update, self._storage)]


def _fused_block(xp: Any, h_ext, weights, exps, target_columns):
    """Steps 1-3 for one block: fill `exps`, return (shifted target logits, [E V, row sums])."""
    xp.dot(h_ext, weights.T, out=exps)
    target = exps[xp.arange(exps.shape[0]), target_columns]
    xp.exp(exps, out=exps)
    return target, exps @ weights[:, :-1]


def _repair_rows(xp: Any, h, weights, target_columns, exps, target, weighted) -> None:
    """Rows whose sum underflowed (or is not finite): recompute them with their exact maximum."""
    rows = xp.flatnonzero(~(weighted[:, -1] >= _underflow_limit(h.dtype)))
    hidden = h.shape[1]
    logits = h[rows] @ weights[:, :hidden].T + weights[:, hidden + 1]
    logits -= logits.max(axis=1, keepdims=True)
    target[rows] = logits[xp.arange(rows.size), target_columns[rows]]
    exps[rows] = xp.exp(logits)
    weighted[rows] = exps[rows] @ weights[:, :-1]


def _needs_repair(weighted) -> bool:
    return not bool((weighted[:, -1] >= _underflow_limit(weighted.dtype)).all())


def _twin_exact_shift_where_needed(xp, row_max, logits):
    logits -= xp.where(row_max < math.log(_underflow_limit(logits.dtype)), row_max, 0)


_LOG_LIMITS = {4: math.log(_underflow_limit(np.float32)), 8: math.log(_underflow_limit(np.float64))}
EXACT_SHIFT_WHERE_NEEDED = FusedKernel(
    "exact_shift_where_needed", "T row_max", "T logits",
    f"T limit = sizeof(T) == 4 ? (T)({_LOG_LIMITS[4]!r}) : (T)({_LOG_LIMITS[8]!r});"
    " if (row_max < limit) logits = logits - row_max", _twin_exact_shift_where_needed)


def _shift_exactly_where_needed(xp, logits) -> None:
    """The device's form of the underflow repair, with no host round trip: rows whose largest
    (bound-shifted) logit is below log(limit), so that their sum may underflow, are shifted by that
    largest logit (exactly as `_repair_rows` does); the others are left as they are (minus 0)."""
    run_kernel(xp, EXACT_SHIFT_WHERE_NEEDED, logits.max(axis=-1, keepdims=True), logits)


def _chunk_block(backend, h_ext, h, weights, exps, targets):
    """One chunk's (target logits, exps @ [V, 1]) by the device's or the host's fused block; the
    host repairs rows whose sum underflowed (the device kernel shifts where needed instead)."""
    xp = backend.xp
    if backend.device:
        return _device_fused_block(xp, h_ext, weights, exps, targets)
    target, weighted = _fused_block(xp, h_ext, weights, exps, targets)
    if _needs_repair(weighted):
        _repair_rows(xp, h, weights, targets, exps, target, weighted)
    return target, weighted


def _device_fused_block(xp: Any, h_ext, weights, exps, target_columns):
    """`_fused_block` and its repair on the device: no host synchronisation."""
    xp.dot(h_ext, weights.T, out=exps)
    _shift_exactly_where_needed(xp, exps)
    target = exps[xp.arange(exps.shape[0]), target_columns]
    xp.exp(exps, out=exps)
    return target, exps @ weights[:, :-1]


def _as_loss(backend, value):
    """A float32/float64 partial loss as a float64: a 0-d device array on the device path (summed
    there, fetched once by the caller), a Python float on the CPU's (the same value)."""
    if backend.device:
        return value.astype(np.float64)
    return float(value)


def _gradient_right_side(xp: Any, h, inverse, step=None):
    """[s h / sum, 0, s / sum] (n, H+2): E^T times it is [V, 1, b_y]'s gradient (times s), with
    nothing in the ones column, so it lands in (or is added to) the storage's layout directly."""
    if step is not None:
        inverse = inverse * step
    rows, hidden = h.shape
    right = xp.empty((rows, hidden + 2), dtype=h.dtype)
    xp.multiply(h, inverse[:, None], out=right[:, :hidden])
    right[:, hidden] = 0
    right[:, hidden + 1] = inverse
    return right


def _stepped_in_place(params, grads: dict, step) -> dict:
    """`grads` as they are without a step; with a step s, params += s * grads in place and {}."""
    if step is None:
        return grads
    for name, grad in grads.items():
        grad *= step
        params[name] += grad
    return {}


class _Block(NamedTuple):
    """One class's share of the class softmax's word layer: views into the per-call buffers."""

    rows: slice  # rows (grouped by class) whose targets are in this class
    offset: int  # start of `logits` in the flat buffer
    logits: Any  # (rows, class size): logits, then exps, then the p - onehot numerators
    h_ext: Any  # [h, -shift, 1] of the rows
    weights: Any  # [V, 1, b_y] of the class's words
    grad: Any  # [dV, db_y] of the class's words (None when no gradients are wanted)


class FullSoftmax(_WordWeights):
    """o = softmax(V h + b_y) over all C words."""

    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
        names: tuple[str, str] = ("V", "b_y"),
    ):
        super().__init__(vocab_size, hidden_size, names)
        self.chunk_rows = max(1, chunk_elements // vocab_size)

    def loss_and_grads(self, backend, params, h, y, step=None, keep_gradients=False, host_y=None):
        """Summed cross-entropy of rows h (n, H) with targets y (n,), dL/dh, and {V, b_y} gradients
        (with `step` s: V, b_y += s * their gradients in place instead, see RNNLM.loss_and_grads;
        with `keep_gradients`: the gradients are views of a buffer kept for the next call, see
        `deferred_updates`)."""
        xp = backend.xp
        n, hidden = h.shape
        weights = self.extended(xp, params)
        h_ext = self.shifted_inputs(xp, params, h)
        single_chunk = 0 < n <= self.chunk_rows  # then the one dV GEMM writes every entry
        fused_step = step is not None and single_chunk
        # Both write E^T [s h / sum, 0, s / sum] into the kept buffer: added to [V, 1, b_y] at once,
        # or held as the gradient until the caller knows its step (clipping needs the global norm).
        into_buffer = fused_step or (keep_gradients and step is None)
        grad_ext = update = None
        if into_buffer:
            update = self._update_buffer(xp, weights)
            if not single_chunk:
                update.fill(0)
        else:
            grad_ext = (xp.empty if single_chunk else xp.zeros)((self.vocab_size, hidden + 1), dtype=h.dtype)
        dh = xp.empty_like(h)
        loss = 0.0
        exps_buffer = xp.empty((min(n, self.chunk_rows), self.vocab_size), dtype=h.dtype)
        for start in range(0, n, self.chunk_rows):
            chunk = slice(start, start + self.chunk_rows)
            exps = exps_buffer[: h_ext[chunk].shape[0]]
            target, weighted = _chunk_block(backend, h_ext[chunk], h[chunk], weights, exps, y[chunk])
            sums = weighted[:, hidden]
            loss = loss + _as_loss(backend, (xp.log(sums) - target).sum())
            inverse = 1 / sums
            xp.multiply(weighted[:, :hidden], inverse[:, None], out=dh[chunk])
            dh[chunk] -= params[self.weight_name][y[chunk]]  # before a fused step moves V
            exps[xp.arange(exps.shape[0]), y[chunk]] -= sums  # (E - sum onehot) / sum = p - onehot
            if into_buffer:
                # the step (if any) rides on the small right side; the product lands in the kept
                # buffer, so the update is one GEMM plus one contiguous add
                right = _gradient_right_side(xp, h[chunk], inverse, step if fused_step else None)
                if single_chunk:
                    xp.dot(exps.T, right, out=update)
                else:
                    update += exps.T @ right
                continue
            # reuse `weighted` for the dV GEMM's right side: [h / sum, 1 / sum]
            xp.multiply(h[chunk], inverse[:, None], out=weighted[:, :hidden])
            weighted[:, hidden] = inverse
            if single_chunk:
                xp.dot(exps.T, weighted, out=grad_ext)
            else:
                grad_ext += exps.T @ weighted
        if fused_step:
            weights += update
            return loss, dh, {}
        if into_buffer:
            return loss, dh, self._kept_gradients(update)
        grads = {self.weight_name: grad_ext[:, :hidden], self.bias_name: grad_ext[:, hidden]}
        return loss, dh, _stepped_in_place(params, grads, step)

    def target_log_probs(self, backend, params, h, y, host_y=None):
        """log p(y_i | h_i) for rows h (n, H), chunked like the training pass."""
        xp = backend.xp
        n = h.shape[0]
        weights = self.extended(xp, params)
        h_ext = self.shifted_inputs(xp, params, h)
        result = xp.empty(n, dtype=h.dtype)
        exps_buffer = xp.empty((min(n, self.chunk_rows), self.vocab_size), dtype=h.dtype)
        for start in range(0, n, self.chunk_rows):
            chunk = slice(start, start + self.chunk_rows)
            exps = exps_buffer[: h_ext[chunk].shape[0]]
            xp.dot(h_ext[chunk], weights.T, out=exps)
            if backend.device:
                _shift_exactly_where_needed(xp, exps)
            target = exps[xp.arange(exps.shape[0]), y[chunk]]
            xp.exp(exps, out=exps)
            sums = exps.sum(axis=1)
            if not backend.device and not bool((sums >= _underflow_limit(h.dtype)).all()):
                weighted = exps @ weights[:, :-1]
                _repair_rows(xp, h[chunk], weights, y[chunk], exps, target, weighted)
                sums = weighted[:, -1]
            xp.subtract(target, xp.log(sums), out=result[chunk])
        return result

    def log_probs(self, backend, params, h):
        """log-softmax over the whole vocabulary for each row of h (B, H) -> (B, C)."""
        logits = h @ params[self.weight_name].T
        logits += params[self.bias_name]
        return _log_softmax_rows(backend.xp, logits)


def frequency_classes(counts: np.ndarray, num_classes: int) -> np.ndarray:
    """Class of each word (ids in descending-count order): contiguous id ranges, class k starting
    where the cumulative unigram mass reaches k/num_classes. A word heavier than one share gets a
    class to itself and pushes the next boundaries along, so all num_classes classes are non-empty."""
    counts = np.maximum(np.asarray(counts, dtype=np.float64), 0)
    vocab_size = counts.size
    mass_before = np.concatenate([[0.0], np.cumsum(counts)[:-1]]) / max(counts.sum(), 1e-300)
    classes = np.arange(num_classes)
    starts = np.searchsorted(mass_before, classes / num_classes, side="left")
    starts = classes + np.maximum.accumulate(starts - classes)  # strictly increasing
    starts = np.minimum(starts, vocab_size - num_classes + classes)  # room for one word per later class
    return np.searchsorted(starts, np.arange(vocab_size), side="right") - 1


def _within_class_results(xp: Any, params, weighted, target, flat, target_index, words, want_grads: bool):
    """(log p(target | its class), 1 / sums, dL/dh) of the word layer's rows (the last two None
    without gradients) from their [E V, sums] and target logits; with gradients the targets' entries
    of the exps buffer `flat` become the p - onehot numerators (E - sum onehot) / sum."""
    hidden = weighted.shape[1] - 1
    sums = weighted[:, hidden]
    log_probs = target - xp.log(sums)
    if not want_grads:
        return log_probs, None, None
    inverse = 1 / sums
    dh = weighted[:, :hidden] * inverse[:, None]
    dh -= params["V"][words]
    flat[target_index] -= sums
    return log_probs, inverse, dh


class ClassSoftmax(_WordWeights):
    """P(w | h) = softmax(V_class h + b_class)[c(w)] * softmax over c(w)'s words of (V h + b_y)."""

    def __init__(self, vocab_size: int, hidden_size: int, class_of_word: np.ndarray):
        super().__init__(vocab_size, hidden_size)
        class_of_word = np.asarray(class_of_word)
        if (
            class_of_word.shape != (vocab_size,)
            or class_of_word.dtype.kind not in "iu"
            or class_of_word[0] != 0
            or np.any(np.diff(class_of_word) != np.clip(np.diff(class_of_word), 0, 1))
        ):
            raise RnnlmError(
                "class_of_word must give each of the vocab_size words a class, numbered 0, 1, ... in id order "
                "(classes are contiguous id ranges); re-create the params file or pass word counts instead"
            )
        self.class_of_word = class_of_word.astype(np.int64)
        self.num_classes = int(class_of_word[-1]) + 1
        sizes = np.bincount(self.class_of_word, minlength=self.num_classes)
        self.class_start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # host ints for slicing
        self._device_tables = None
        self._device_sizes = None
        self.class_layer = FullSoftmax(self.num_classes, hidden_size, names=("V_class", "b_class"))

    def init_params(self, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
        params = super().init_params(rng, dtype)
        params.update(self.class_layer.init_params(rng, dtype))
        return params

    def file_arrays(self) -> dict[str, np.ndarray]:
        return {"class_of_word": self.class_of_word}

    def _tables(self, backend):
        """class_of_word and each word's position inside its class, on the device."""
        if self._device_tables is None:
            position = np.arange(self.vocab_size) - self.class_start[self.class_of_word]
            self._device_tables = (backend.asarray(self.class_of_word), backend.asarray(position))
        return self._device_tables

    def _group_by_class(self, backend, y):
        """Rows whose target's class has more than one word (the others have P(w | class) = 1),
        ordered by class; per-class counts of those rows (host) and their targets' positions."""
        xp = backend.xp
        class_of_word, position = self._tables(backend)
        classes = class_of_word[y]
        rows = xp.flatnonzero(self._class_sizes(backend)[classes] > 1)
        order = rows[xp.argsort(classes[rows], kind="stable")]
        counts = backend.to_host(xp.bincount(classes[rows], minlength=self.num_classes))
        return order, counts, position[y[order]]

    def _class_sizes(self, backend):
        if self._device_sizes is None:
            self._device_sizes = backend.asarray(np.diff(self.class_start))
        return self._device_sizes

    def _word_blocks(self, xp: Any, counts, flat, h_ext, weights, grad_ext):
        """One _Block (views, no copies) per class with targets, in row order."""
        blocks, row, offset = [], 0, 0
        for k in np.flatnonzero(counts):
            rows = slice(row, row + int(counts[k]))
            words = slice(int(self.class_start[k]), int(self.class_start[k + 1]))
            size = words.stop - words.start
            logits = flat[offset : offset + int(counts[k]) * size].reshape(-1, size)
            blocks.append(
                _Block(rows, offset, logits, h_ext[rows], weights[words], None if grad_ext is None else grad_ext[words])
            )
            row, offset = rows.stop, offset + logits.size
        return blocks

    def _word_part(self, backend, params, h, y, want_grads: bool, step=None, keep_gradients=False, host_y=None):
        """Within-class log-probabilities of the targets of the rows `order` (grouped by class) and,
        when asked, their dL/dh and the {V, b_y} gradients of the summed within-class loss (with
        `step` s: V, b_y += s * those gradients in place, class by class, and {} for them; with
        `keep_gradients`: views of the kept buffer, as FullSoftmax.loss_and_grads). `host_y`: the
        targets on the host, when the caller has them (the device path then needs no transfer)."""
        if backend.device:
            return self._word_part_device(backend, params, h, y, want_grads, step, keep_gradients, host_y)
        xp = backend.xp
        hidden = self.hidden_size
        weights = self.extended(xp, params)
        order, counts, positions = self._group_by_class(backend, y)
        h_sorted = h[order]
        h_ext = self.shifted_inputs(xp, params, h_sorted)
        sizes = np.diff(self.class_start)
        flat = xp.empty(int(counts @ sizes), dtype=h.dtype)
        fused_step = want_grads and step is not None
        kept = want_grads and keep_gradients and not fused_step
        grad_ext = None
        if kept:
            grad_ext = self._update_buffer(xp, weights)
        elif want_grads and not fused_step:
            grad_ext = xp.empty((self.vocab_size, hidden + 1), dtype=h.dtype)
        blocks = self._word_blocks(xp, counts, flat, h_ext, weights, grad_ext)
        row_offsets = xp.empty(order.shape[0], dtype=xp.int64)
        weighted = xp.empty((order.shape[0], hidden + 1), dtype=h.dtype)
        for block in blocks:
            xp.dot(block.h_ext, block.weights.T, out=block.logits)
            row_offsets[block.rows] = xp.arange(block.offset, block.offset + block.logits.size, block.logits.shape[1])
        target_index = row_offsets + positions
        target = flat[target_index]
        xp.exp(flat, out=flat)
        for block in blocks:
            xp.dot(block.logits, block.weights[:, :-1], out=weighted[block.rows])
        if _needs_repair(weighted):
            self._repair_class_rows(xp, h_sorted, blocks, target_index, target, weighted)
        log_probs, inverse, dh_sorted = _within_class_results(xp, params, weighted, target, flat, target_index,
                                                              y[order], want_grads)
        if not want_grads:
            return order, log_probs, None, None
        for k in np.flatnonzero(counts == 0) if grad_ext is not None else ():
            grad_ext[self.class_start[k] : self.class_start[k + 1]] = 0  # classes without targets
        if fused_step or kept:
            # Each class's E^T [s h / sum, 0, s / sum] (as FullSoftmax's): with a step it is added to
            # the class's [V, 1, b_y] at once, so classes without targets are never touched and no
            # dense (C, H+1) gradient is formed; kept, it fills the class's rows of the kept buffer.
            right = _gradient_right_side(xp, h_sorted, inverse, step)
            scratch = self._update_buffer(xp, weights)
            for block in blocks:
                block_update = block.grad if kept else scratch[: block.weights.shape[0]]
                xp.dot(block.logits.T, right[block.rows], out=block_update)
                if fused_step:
                    xp.add(block.weights, block_update, out=block.weights)
            return order, log_probs, dh_sorted, self._kept_gradients(grad_ext) if kept else {}
        xp.multiply(h_sorted, inverse[:, None], out=weighted[:, :hidden])
        weighted[:, hidden] = inverse
        for block in blocks:
            xp.dot(block.logits.T, weighted[block.rows], out=block.grad)
        return order, log_probs, dh_sorted, {"V": grad_ext[:, :hidden], "b_y": grad_ext[:, hidden]}

    def _device_layout(self, backend, y, host_y):
        """The padded layout of the device's word layer, made on the host from the batch's targets
        (`host_y`, free; else one transfer of y) and sent in one upload.

        The rows whose target's class has more than one word, ordered by class (`order`, as the CPU
        path), sit in a (K_a, R, .) block of rows per class with targets (K_a of them, R = the most
        rows any has; spare slots repeat row 0 and get a zero gradient right side); each class's
        words in a (K_a, P, .) block (P = the largest such class; spare columns repeat its last word
        and are masked to exp = 0)."""
        xp = backend.xp
        host_y = np.asarray(backend.to_host(y) if host_y is None else host_y).reshape(-1)
        classes = self.class_of_word[host_y]
        sizes = np.diff(self.class_start)
        rows = np.flatnonzero(sizes[classes] > 1)
        order = rows[np.argsort(classes[rows], kind="stable")]
        counts = np.bincount(classes[rows], minlength=self.num_classes)
        active = np.flatnonzero(counts)
        if active.size == 0:
            return None
        active_counts, active_sizes = counts[active], sizes[active]
        padded_rows, padded_words = int(active_counts.max()), int(active_sizes.max())
        class_index = np.repeat(np.arange(active.size), active_counts)
        first_row = np.concatenate([[0], np.cumsum(active_counts)[:-1]])
        slot = class_index * padded_rows + np.arange(order.size) - first_row[class_index]
        slot_rows = np.zeros(active.size * padded_rows, dtype=np.int64)
        slot_rows[slot] = order
        columns = np.arange(padded_words)
        word_map = self.class_start[active][:, None] + np.minimum(columns, active_sizes[:, None] - 1)
        valid = columns < active_sizes[:, None]
        position = host_y[order] - self.class_start[classes[order]]
        tables = [order, slot, slot_rows, word_map.ravel(), slot * padded_words + position,
                  np.flatnonzero(valid.ravel()), word_map[valid], host_y[order]]
        device = backend.asarray(np.concatenate(tables).astype(np.int64))
        bounds = np.cumsum([0] + [table.size for table in tables])
        views = [device[bounds[i] : bounds[i + 1]] for i in range(len(tables))]
        mask = backend.asarray(np.where(valid, 0, -np.inf).astype(self._storage.dtype)[:, None, :])
        return (views, mask, active.size, padded_rows, padded_words)

    def _word_part_device(self, backend, params, h, y, want_grads: bool, step, keep_gradients, host_y):
        """`_word_part` as a fixed number of device calls whatever the number of classes: one
        batched GEMM per pass over (K_a, R, H+2) x (K_a, H+2, P) blocks instead of one GEMM per
        class, the underflow repair without a host round trip."""
        xp = backend.xp
        hidden = self.hidden_size
        weights = self.extended(xp, params)
        layout = self._device_layout(backend, y, host_y)
        fused_step = want_grads and step is not None
        kept = want_grads and keep_gradients and not fused_step
        if layout is None:  # every target's class has one word: P(w | class) = 1
            empty = xp.empty(0, dtype=xp.int64)
            grads = {}
            if kept or (want_grads and not fused_step):
                buffer = self._update_buffer(xp, weights) if kept else xp.empty_like(weights)
                buffer.fill(0)
                grads = self._kept_gradients(buffer) if kept else {"V": buffer[:, :hidden], "b_y": buffer[:, hidden + 1]}
            return empty, xp.zeros(0, dtype=h.dtype), (xp.zeros((0, hidden), dtype=h.dtype) if want_grads else None), grads
        (order, slot, slot_rows, word_map, target_flat, valid_flat, valid_words, order_targets), mask, classes, rows, words = layout
        h_ext = self.shifted_inputs(xp, params, h)
        rows_block = h_ext[slot_rows].reshape(classes, rows, hidden + 2)
        weights_block = weights[word_map].reshape(classes, words, hidden + 2)
        logits = xp.matmul(rows_block, weights_block.transpose(0, 2, 1))  # (K_a, R, P)
        logits += mask
        _shift_exactly_where_needed(xp, logits)
        flat = logits.reshape(-1)
        target = flat[target_flat]
        xp.exp(logits, out=logits)
        weighted = xp.matmul(logits, weights_block[:, :, :-1]).reshape(-1, hidden + 1)[slot]
        log_probs, inverse, dh_sorted = _within_class_results(xp, params, weighted, target, flat, target_flat,
                                                              order_targets, want_grads)
        if not want_grads:
            return order, log_probs, None, None
        right = xp.zeros((classes * rows, hidden + 2), dtype=h.dtype)  # spare slots: no gradient
        right[slot] = _gradient_right_side(xp, h[order], inverse, step if fused_step else None)
        block_grads = xp.matmul(logits.transpose(0, 2, 1), right.reshape(classes, rows, hidden + 2))
        class_grads = block_grads.reshape(-1, hidden + 2)[valid_flat]
        if fused_step:
            weights[valid_words] += class_grads  # each word once: classes without targets untouched
            return order, log_probs, dh_sorted, {}
        buffer = self._update_buffer(xp, weights) if kept else xp.empty_like(weights)
        buffer.fill(0)  # classes without targets
        buffer[valid_words] = class_grads
        if kept:
            return order, log_probs, dh_sorted, self._kept_gradients(buffer)
        return order, log_probs, dh_sorted, {"V": buffer[:, :hidden], "b_y": buffer[:, hidden + 1]}

    def _repair_class_rows(self, xp: Any, h_sorted, blocks, target_index, target, weighted):
        """Exact recomputation of rows whose within-class sum underflowed (or is not finite)."""
        hidden = self.hidden_size
        for row in xp.flatnonzero(~(weighted[:, -1] >= _underflow_limit(weighted.dtype))).tolist():
            block = next(block for block in blocks if block.rows.start <= row < block.rows.stop)
            logits = h_sorted[row] @ block.weights[:, :hidden].T + block.weights[:, hidden + 1]
            logits -= logits.max()
            local = row - block.rows.start
            target[row] = logits[int(target_index[row]) - block.offset - local * logits.size]
            block.logits[local] = xp.exp(logits)
            weighted[row] = block.logits[local] @ block.weights[:, :-1]

    def loss_and_grads(self, backend, params, h, y, step=None, keep_gradients=False, host_y=None):
        class_of_word, _ = self._tables(backend)
        loss, dh, grads = self.class_layer.loss_and_grads(
            backend, params, h, class_of_word[y], step=step, keep_gradients=keep_gradients
        )
        # word layer, rows grouped by class
        order, log_probs, dh_sorted, word_grads = self._word_part(
            backend, params, h, y, want_grads=True, step=step, keep_gradients=keep_gradients, host_y=host_y
        )
        loss = loss - _as_loss(backend, log_probs.sum())
        dh[order] += dh_sorted
        grads.update(word_grads)
        return loss, dh, grads

    def deferred_updates(self, grads: dict) -> list:
        return super().deferred_updates(grads) + self.class_layer.deferred_updates(grads)

    def target_log_probs(self, backend, params, h, y, host_y=None):
        class_of_word, _ = self._tables(backend)
        result = self.class_layer.target_log_probs(backend, params, h, class_of_word[y])
        order, word_log_probs, _, _ = self._word_part(backend, params, h, y, want_grads=False, host_y=host_y)
        result[order] += word_log_probs
        return result

    def log_probs(self, backend, params, h):
        """Full (B, C) log-distribution: class log-probability plus within-class log-softmax."""
        xp = backend.xp
        class_of_word, _ = self._tables(backend)
        logits = h @ params["V"].T
        logits += params["b_y"]
        for k in range(self.num_classes):
            _log_softmax_rows(xp, logits[:, self.class_start[k] : self.class_start[k + 1]])
        logits += self.class_layer.log_probs(backend, params, h)[:, class_of_word]
        return logits


def make_output(config, backend, word_counts=None, class_of_word=None):
    """The output layer named by `config.output`; the class layer needs counts or classes (else
    counts falling like 1/rank are assumed, matching the descending-count id order)."""
    if config.output == "full":
        return FullSoftmax(config.vocab_size, config.hidden_size)
    if class_of_word is None:
        num_classes = config.num_classes or max(1, round(math.sqrt(config.vocab_size)))
        if word_counts is None:
            word_counts = 1.0 / np.arange(1, config.vocab_size + 1)
        word_counts = np.asarray(word_counts)
        if word_counts.shape != (config.vocab_size,):
            raise RnnlmError(
                f"word_counts has shape {word_counts.shape}, expected ({config.vocab_size},): one count per word id"
            )
        class_of_word = frequency_classes(word_counts, num_classes)
    elif config.num_classes and int(np.max(class_of_word)) + 1 != config.num_classes:
        raise RnnlmError(f"class_of_word has {int(np.max(class_of_word)) + 1} classes, the config says {config.num_classes}")
    return ClassSoftmax(config.vocab_size, config.hidden_size, class_of_word)
