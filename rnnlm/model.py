"""The RNN language model: parameters, minibatch forward/backward (BPTT), scoring, stepping, params file.

Batches are time-major and padded at the end: `x`, `y` int (T, B), `mask` (T, B) with 1 for real
tokens and 0 for padding. Padding never reaches the loss or a gradient: only the rows with mask 1 go
through the output layer, and since padding only follows a sentence, nothing flows back from it.

The recurrence lives in `rnnlm.cells` (rnn | gru | lstm), the output layer in `rnnlm.softmax`;
this module ties them together, applies dropout to the non-recurrent connections of a training pass
(each word's input projection; the hidden state on its way to the output layer), and owns
backpropagation through time:

* full BPTT (`bptt_truncate` 0, or at least T-1): one backward sweep, dL/ds_t summed as it goes;
* truncated BPTT (k > 0): the loss at step t reaches the steps t, t-1, ..., t-k only, as the
  tutorial's `bptt` loop. Every step's gradient "wavefront" is moved back one step at a time for
  all t at once (k vectorized steps over all T*B rows instead of T*k small ones), the wavefronts
  that sit on the same step are summed, and the parameter gradients come out of one final pass.

State across batches (document mode, `rnnlm.streams`): `state` starts a batch from a given state
(None: zeros); `resets` (T, B), 1 where a document starts at step t, zeroes the state before that
step (the cell reads s_{t-1} * (1 - resets_t), in the forward and the backward pass alike);
`return_state` hands back the batch's final state for the next window. That state is detached:
no gradient flows from one window into the previous one (truncated BPTT over windows). With
stacked layers the state holds every layer's, side by side, and a reset zeroes all of them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnlm.backend import Backend
from rnnlm.cells import make_cell
from rnnlm.io import RnnlmError, available_memory_bytes, load_npz, npz_headers, save_npz
from rnnlm.softmax import make_output

FORMAT_VERSION = 1
ACTIVATIONS = ("tanh", "relu")
CELLS = ("rnn", "gru", "lstm")
OUTPUTS = ("full", "class")
CONTEXTS = ("sentence", "document")  # how the model reads text: rnnlm.streams
_FILE_KEYS = ("format_version", "config_json", "metadata_json", "vocab")
_HEADER_KEYS = ("format_version", "config_json", "metadata_json")
# An untrusted params file may declare anything; these bound what is read before its config is checked.
HEADER_ARRAY_BYTES = 64 << 20  # config_json, metadata_json and format_version together
MAX_WORD_CHARACTERS = 1024  # longest vocabulary entry read (the tokenizer's words are far shorter)


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int = 64
    activation: str = "tanh"  # rnn cell only; gated cells use their own sigmoid/tanh
    bptt_truncate: int = 0  # 0 = full BPTT
    cell: str = "rnn"  # rnn | gru | lstm
    output: str = "full"  # full | class
    dtype: str = "float32"  # float32 | float64
    num_classes: int = 0  # class output only; 0 = round(sqrt(vocab_size))
    dropout: float = 0.0  # training only: drop rate of the hidden state the output layer reads
    input_dropout: float = 0.0  # training only: drop rate of each word's input projection U[:, x]
    context: str = "sentence"  # sentence: each from a zero state; document: streams of a document's sentences
    embedding_size: int = 0  # D: 0 = the one-hot input through U (G*H x C); > 0 = a table E (C x D) read by U (G*H x D)
    tie_embeddings: bool = False  # the input embedding is the output word matrix V (needs embedding_size == hidden_size)
    num_layers: int = 1  # stacked recurrent layers; layer l > 0 reads layer l-1's hidden state
    layer_dropout: float = 0.0  # training only: drop rate of a layer's hidden state on its way to the layer above
    locked_dropout: bool = False  # training only: one dropout mask per sequence of a batch, the same at every step

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.vocab_size, int) and self.vocab_size >= 2, "vocab_size must be an integer >= 2"),
            (isinstance(self.hidden_size, int) and self.hidden_size >= 1, "hidden_size must be an integer >= 1"),
            (self.activation in ACTIVATIONS, "activation must be tanh or relu"),
            (isinstance(self.bptt_truncate, int) and self.bptt_truncate >= 0, "bptt_truncate must be an integer >= 0"),
            (self.cell in CELLS, "cell must be rnn, gru or lstm"),
            (self.output in OUTPUTS, "output must be full or class"),
            (self.dtype in ("float32", "float64"), "dtype must be float32 or float64"),
            (
                isinstance(self.num_classes, int) and 0 <= self.num_classes <= self.vocab_size,
                "num_classes must be an integer between 0 and vocab_size",
            ),
            (_is_rate(self.dropout), "dropout must be a number in [0, 1)"),
            (_is_rate(self.input_dropout), "input_dropout must be a number in [0, 1)"),
            (self.context in CONTEXTS, "context must be sentence or document"),
            (
                isinstance(self.embedding_size, int) and not isinstance(self.embedding_size, bool)
                and self.embedding_size >= 0,
                "embedding_size must be an integer >= 0 (0: no embedding table, U reads the one-hot word)",
            ),
            (isinstance(self.tie_embeddings, bool), "tie_embeddings must be true or false"),
            (
                not self.tie_embeddings or self.embedding_size == self.hidden_size,
                f"tie_embeddings needs embedding_size equal to hidden_size (the output word matrix V is C x "
                f"hidden_size and is the embedding table): set embedding_size: {self.hidden_size}",
            ),
            (
                isinstance(self.num_layers, int) and not isinstance(self.num_layers, bool) and self.num_layers >= 1,
                "num_layers must be an integer >= 1",
            ),
            (_is_rate(self.layer_dropout), "layer_dropout must be a number in [0, 1)"),
            (
                not self.layer_dropout or self.num_layers >= 2,
                "layer_dropout acts between stacked layers: set num_layers >= 2 or layer_dropout: 0",
            ),
            (
                not self.bptt_truncate or self.num_layers == 1,
                "bptt_truncate works with one layer only: set bptt_truncate: 0 (full BPTT) or num_layers: 1",
            ),
            (isinstance(self.locked_dropout, bool), "locked_dropout must be true or false"),
        ]
        for ok, message in checks:
            if not ok:
                raise RnnlmError(f"bad model config {dataclasses.asdict(self)}: {message}")

    @property
    def uses_dropout(self) -> bool:
        """Whether a training pass draws dropout masks at all."""
        return bool(self.dropout or self.input_dropout or self.layer_dropout)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RnnlmError(f"unknown model config keys {unknown}; known keys are {sorted(known)}")
        try:
            return cls(**values)
        except TypeError as exc:
            raise RnnlmError(f"bad model config {values}: {exc}") from None


def _is_rate(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1


@dataclass
class DropoutMasks:
    """One training batch's inverted-dropout masks (entries 0 or 1 / (1 - rate)); None where that
    dropout is off. Kept masks make the training loss a deterministic function of the parameters,
    so the same masks serve the forward pass, the backward pass and the gradient check. With
    `locked_dropout` every (T, B, ...) mask is one (B, ...) mask repeated at every step."""

    inputs: Any  # (T, B, G*H): multiplies each token's input projection (U[:, x_t] or U E[x_t]; not b_h)
    hidden: Any  # (T, B, H): multiplies the hidden state the output layer reads (not the recurrence)
    layers: Any = None  # [(T, B, H)] per layer above the first: the hidden state of the layer below, on its way up


def layer_parameter_names(layer: int) -> tuple[str, str, str]:
    """The names of layer `layer`'s input weights, recurrent weights and biases: U, W, b_h for the
    first layer (today's names, so one-layer params files are unchanged), U1, W1, b_h1 ... above."""
    suffix = str(layer) if layer else ""
    return f"U{suffix}", f"W{suffix}", f"b_h{suffix}"


@dataclass
class SparseRows:
    """A gradient that is zero outside the rows of the batch's words: `rows[i]` is word
    `indices[i]`'s (indices unique), so a step at B = 1 touches <= T words, not all C.
    `word_axis` 1: the words are the parameter's columns (U, G*H x C); 0: its rows (E or a tied V, C x D)."""

    indices: Any
    rows: Any
    word_axis: int = 1

    def word_major(self, param):
        """The (C, ...) view of `param` whose rows `indices` this gradient holds."""
        return param.T if self.word_axis == 1 else param


@dataclass
class LayerCache:
    """One recurrent layer's pass: what its input weights multiplied (`inputs`: the embedded words
    (T*B, D) of the first layer with an embedding, the dropped-out hidden states (T, B, H) of the
    layer below for the others, None for the one-hot input), all states (states[0] the initial
    one) and the cell's extras."""

    inputs: Any
    states: Any
    extras: Any


@dataclass
class ForwardCache:
    """What backward needs: inputs, mask, the top layer's states (states[0] is the initial state)
    and cell extras, the dropout masks of a training pass (None otherwise), and every layer's
    cache (`layers[-1]` holds the same states and extras)."""

    x: Any
    mask: Any
    states: Any
    extras: Any
    dropout: DropoutMasks | None = None
    layers: list = dataclasses.field(default_factory=list)
    keep: Any = None  # (T, B, 1) 1 - resets, or None (no resets)


class RNNLM:
    def __init__(
        self,
        config: ModelConfig,
        backend: Backend,
        seed: int = 0,
        word_counts: Any = None,
        class_of_word: Any = None,
    ):
        """`word_counts` (C,) or `class_of_word` (C,) shape the word classes of `output: class`."""
        self.config = config
        self.backend = backend
        self.dtype = np.dtype(config.dtype)
        self.cell = make_cell(config.cell, config.hidden_size, config.activation)
        self.output = make_output(config, backend, word_counts=word_counts, class_of_word=class_of_word)
        # The word-indexed input matrix: U's columns (no embedding), E's rows, or the output's V.
        self.embedding_name = None
        if config.embedding_size:
            self.embedding_name = "V" if config.tie_embeddings else "E"
        # Initialise on the host so a seed gives the same parameters on every device; the first
        # layer and the output layer draw first, as a one-layer model without embedding always did.
        rng = np.random.default_rng(seed)
        host = self.cell.init_params(rng, config.embedding_size or config.vocab_size, self.dtype)
        if self.embedding_name == "E":
            bound = 1.0 / math.sqrt(config.embedding_size)
            host["E"] = rng.uniform(-bound, bound, (config.vocab_size, config.embedding_size)).astype(self.dtype)
        for layer in range(1, config.num_layers):
            layer_params = self.cell.init_params(rng, config.hidden_size, self.dtype)
            host.update(zip(layer_parameter_names(layer), (layer_params[key] for key in ("U", "W", "b_h"))))
        host.update(self.output.init_params(rng, self.dtype))
        self.params = {name: backend.asarray(value) for name, value in host.items()}
        if not config.embedding_size:
            # U is kept word-major, (C, G*H) in memory, exposed as its (G*H, C) transpose: the per-token
            # gather then reads whole rows, and dU (built word-major by scatter-add) shares U's layout.
            self.params["U"] = backend.asarray(np.ascontiguousarray(host["U"].T)).T

    # ------------------------------------------------------------------ batches
    def _check_ids(self, ids, what: str):
        """`ids` as a device int64 array, refused if any id is outside the vocabulary. Host arrays are
        checked before the upload (free); a device array costs one deliberate synchronisation, since
        CuPy's integer indexing wraps an out-of-range id around instead of raising."""
        xp = self.backend.xp
        if not hasattr(ids, "dtype"):  # a list or scalar
            ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise RnnlmError(f"{what} must hold integer word ids, got dtype {ids.dtype}")
        on_host = isinstance(ids, np.ndarray)
        outside = (ids < 0) | (ids >= self.config.vocab_size)
        if ids.size and (outside.any() if on_host else bool(outside.any())):
            raise RnnlmError(
                f"{what} holds word ids outside 0..{self.config.vocab_size - 1}; the data was indexed with another "
                "vocabulary than this model's: rebuild the index or the model with the same vocabulary"
            )
        return self.backend.asarray(ids).astype(xp.int64, copy=False)

    def _check_batch(self, x, mask):
        x = self._check_ids(x, "x")
        mask = mask if hasattr(mask, "dtype") else np.asarray(mask)
        if x.ndim != 2 or mask.shape != x.shape:
            raise RnnlmError(f"x {x.shape} and mask {mask.shape} must both be time-major (T, B) arrays")
        # As for the ids: free on a host mask, one deliberate synchronisation on a device mask.
        padding_first = (mask[1:] > mask[:-1]).any()
        if padding_first if isinstance(mask, np.ndarray) else bool(padding_first):
            raise RnnlmError("mask has padding before real tokens; pad sentences at the end (time-major, mask 1 then 0)")
        return x, self.backend.asarray(mask, dtype=self.dtype)

    def _check_targets(self, y, x):
        y = self._check_ids(y, "y")
        if y.shape != x.shape:
            raise RnnlmError(f"y {y.shape} must have the shape of x {x.shape}")
        return y

    def _layer_params(self, layer: int) -> dict[str, Any]:
        """Layer `layer`'s parameters under the names the cells use (U, W, b_h)."""
        return dict(zip(("U", "W", "b_h"), (self.params[name] for name in layer_parameter_names(layer))))

    def _layer_state(self, state, layer: int):
        """Layer `layer`'s columns of a stacked (B, num_layers * state size) state."""
        size = self.cell.state_size
        return state[:, layer * size : (layer + 1) * size]

    def _first_layer_inputs(self, x, dropout: DropoutMasks | None = None):
        """(U[:, x].T or E[x] U^T, times the dropout masks, + b_h) for every token, (..., G*H), and
        the embedded words E[x] (N, D) U multiplied (None without an embedding table)."""
        tokens = x.reshape(-1)
        embedded = None
        if self.embedding_name is None:
            inputs = self.params["U"].T[tokens]
        else:
            embedded = self.params[self.embedding_name][tokens]
            inputs = embedded @ self.params["U"].T
        if dropout is not None and dropout.inputs is not None:
            inputs *= dropout.inputs.reshape(inputs.shape)
        inputs += self.params["b_h"]
        return inputs.reshape(x.shape + (inputs.shape[-1],)), embedded

    def _input_projection(self, x, dropout: DropoutMasks | None = None):
        """The first layer's input pre-activations (..., G*H) of the tokens `x`."""
        return self._first_layer_inputs(x, dropout)[0]

    def initial_state(self, batch_size: int):
        """Zeros (B, num_layers * state size): the layers' states side by side, first layer first."""
        size = self.config.num_layers * self.cell.state_size
        return self.backend.xp.zeros((batch_size, size), dtype=self.dtype)

    def dropout_masks(self, rng, shape) -> DropoutMasks | None:
        """Fresh dropout masks for a (T, B) training batch from the device generator `rng`
        (`backend.rng`); None when the model has no dropout."""
        config, backend = self.config, self.backend
        if not config.uses_dropout:
            return None
        steps, batch = shape

        def draw(size: int, rate: float):
            if not config.locked_dropout:
                return backend.dropout_mask(rng, (steps, batch, size), rate, self.dtype)
            one = backend.dropout_mask(rng, (1, batch, size), rate, self.dtype)
            return backend.xp.broadcast_to(one, (steps, batch, size)).copy()

        hidden_size = config.hidden_size
        inputs = draw(self.cell.gates * hidden_size, config.input_dropout) if config.input_dropout else None
        hidden = draw(hidden_size, config.dropout) if config.dropout else None
        layers = None
        if config.layer_dropout:
            layers = [draw(hidden_size, config.layer_dropout) for _ in range(1, config.num_layers)]
        return DropoutMasks(inputs, hidden, layers)

    def _reset_keep(self, resets, shape):
        """1 - resets as a (T, B, 1) device array of the model's dtype, or None for no resets."""
        if resets is None:
            return None
        if tuple(resets.shape) != tuple(shape):
            raise RnnlmError(f"resets {tuple(resets.shape)} must have the shape of x {tuple(shape)}")
        return (1 - self.backend.asarray(resets, dtype=self.dtype))[..., None]

    def forward_cache(self, x, mask, state=None, dropout: DropoutMasks | None = None, resets=None) -> ForwardCache:
        """Run the recurrence over a batch and keep every state (diagnostics and backward use it).
        Stacked layers run one after the other, each over the whole batch (layer-major); a reset
        zeroes every layer's state."""
        xp = self.backend.xp
        x, mask = self._check_batch(x, mask)
        state0 = self.initial_state(x.shape[1]) if state is None else self.backend.asarray(state, dtype=self.dtype)
        expected = (x.shape[1], self.config.num_layers * self.cell.state_size)
        if state0.shape != expected:
            raise RnnlmError(f"state {tuple(state0.shape)} must be {expected}, as initial_state(B)")
        reset_keep = self._reset_keep(resets, x.shape)
        inputs, layer_input = self._first_layer_inputs(x, dropout)
        layers = []
        for layer in range(self.config.num_layers):
            params = self._layer_params(layer)
            if layer:
                layer_input = self.cell.hidden(layers[-1].states[1:])
                keep = None if dropout is None or dropout.layers is None else dropout.layers[layer - 1]
                if keep is not None:
                    layer_input = layer_input * keep
                inputs = layer_input.reshape(-1, self.config.hidden_size) @ params["U"].T
                inputs += params["b_h"]
                inputs = inputs.reshape(x.shape + (inputs.shape[-1],))
            states, extras = self.cell.forward(xp, params, inputs, self._layer_state(state0, layer), reset_keep)
            layers.append(LayerCache(layer_input, states, extras))
        return ForwardCache(x, mask, layers[-1].states, layers[-1].extras, dropout, layers, reset_keep)

    def _final_state(self, cache: ForwardCache):
        """The state after the last step, detached (a copy: later windows never write into this
        cache), every layer's side by side as in `initial_state`."""
        if len(cache.layers) == 1:
            return cache.states[-1].copy()
        return self.backend.xp.concatenate([layer.states[-1] for layer in cache.layers], axis=1)

    def _hidden_keep(self, cache: ForwardCache):
        """The output dropout mask as (T*B, H) rows, or None."""
        if cache.dropout is None or cache.dropout.hidden is None:
            return None
        return cache.dropout.hidden.reshape(-1, self.config.hidden_size)

    def _valid_rows(self, cache: ForwardCache, y, host_rows=None):
        """Hidden rows (after output dropout), targets and row numbers (in the flattened T*B
        order) of the real tokens. `host_rows`: those row numbers found on the host (`_host_rows`)."""
        xp = self.backend.xp
        hidden = self.cell.hidden(cache.states[1:]).reshape(-1, self.config.hidden_size)
        keep = self._hidden_keep(cache)
        if keep is not None:
            hidden = hidden * keep
        y = y.reshape(-1)
        if host_rows is not None:
            rows = None if host_rows.size == y.size else self.backend.asarray(host_rows)
        else:
            # The number of real tokens fixes the output layer's shapes, so it must reach the host:
            # a device mask costs a synchronisation here (flatnonzero's size); a host mask none.
            rows = xp.flatnonzero(cache.mask.reshape(-1) > 0)
            rows = None if rows.size == y.size else rows
        if rows is None:
            return hidden, y, None
        return hidden[rows], y[rows], rows

    @staticmethod
    def _host_rows(x, y, mask):
        """(real-token row numbers, their targets, their inputs) on the host when the batch came as
        host arrays (the trainer's), else (None, None, None): what the device path would otherwise
        fetch from the device (the token count, the class softmax's layout, the batch's words)."""
        if not all(isinstance(array, np.ndarray) for array in (x, y, mask)):
            return None, None, None
        rows = np.flatnonzero(mask.reshape(-1) > 0)
        return rows, y.reshape(-1)[rows], x.reshape(-1)[rows]

    # ------------------------------------------------------------------ training
    def loss_and_grads(
        self, x, y, mask, sparse_input: bool = False, output_step: float | None = None,
        dropout: DropoutMasks | None = None, keep_output_gradients: bool = False,
        state=None, resets=None, return_state: bool = False, loss_on_device: bool = False,
    ):
        """Sum of the masked token cross-entropies, number of predicted tokens, gradients of that sum
        (and, with `return_state`, the final state, detached, as a 4th result).

        `state`, `resets`: the initial state and the document starts (module docstring).

        `dropout`: the training pass's masks (`dropout_masks`); None is the deterministic network.
        `sparse_input`: the gradient of the word-indexed input matrix (U without an embedding
        table, else E) comes as `SparseRows` (no dense C-sized array is built).
        `output_step` s: the output layer's parameters p are updated in place, p += s * dL/dp, as
        their gradients are formed, and are left out of the returned gradients (an SGD step that
        never holds dV: the caller must know its step size before the gradient, i.e. no clipping).
        With tied embeddings V's input-side gradient then comes alone, as `SparseRows`.
        `keep_output_gradients`: the output layer's gradients are views of buffers it keeps for the
        next call (no fresh C x H array per step); `apply_update` and `gradient_squared_norm` then
        treat each buffer as one contiguous array (the clipped SGD step).
        `loss_on_device`: the loss stays a 0-d device array on the device path (`loss_and_norm`
        fetches it with the gradient norm in the batch's one transfer).
        Tied embeddings: V's gradient is the sum of both uses, the input side added into the output
        layer's gradient (dense or kept buffer) where there is one.
        """
        xp = self.backend.xp
        host_rows, host_targets, host_tokens = self._host_rows(x, y, mask)
        cache = self.forward_cache(x, mask, state=state, dropout=dropout, resets=resets)
        y = self._check_targets(y, cache.x)
        steps, batch = cache.x.shape
        hidden_rows, targets, rows = self._valid_rows(cache, y, host_rows)
        loss, d_hidden, grads = self.output.loss_and_grads(
            self.backend, self.params, hidden_rows, targets, step=output_step, keep_gradients=keep_output_gradients,
            host_y=host_targets,
        )
        keep = self._hidden_keep(cache)
        if keep is not None:
            d_hidden *= keep if rows is None else keep[rows]
        d_state = xp.zeros((steps * batch, self.cell.state_size), dtype=self.dtype)
        if rows is None:
            d_state[:, : self.config.hidden_size] = d_hidden
        else:
            d_state[rows, : self.config.hidden_size] = d_hidden
        d_state = d_state.reshape(steps, batch, -1)
        for layer in range(self.config.num_layers - 1, 0, -1):
            d_state = self._upper_layer_grads(cache, layer, d_state, grads)
        dz = self._backprop(cache.layers[0], self._layer_params(0), d_state, cache.keep)
        self._first_layer_grads(cache, dz, rows, sparse_input, grads, host_tokens)
        loss = loss if loss_on_device and self.backend.device else float(loss)
        if return_state:
            return loss, int(hidden_rows.shape[0]), grads, self._final_state(cache)
        return loss, int(hidden_rows.shape[0]), grads

    def _upper_layer_grads(self, cache: ForwardCache, layer: int, d_state, grads: dict[str, Any]):
        """Backpropagate through layer `layer` > 0 from dL/ds of its steps; its U, W, b_h gradients
        go into `grads`; returns dL/ds (T, B, state size) of the layer below."""
        xp, hidden_size = self.backend.xp, self.config.hidden_size
        params, layer_cache = self._layer_params(layer), cache.layers[layer]
        dz = self._backprop(layer_cache, params, d_state, cache.keep)
        dz_rows = dz.reshape(-1, dz.shape[-1])
        names = layer_parameter_names(layer)
        grads[names[0]] = dz_rows.T @ layer_cache.inputs.reshape(-1, hidden_size)
        grads[names[1]] = self.cell.weight_grad(xp, params, layer_cache.states, layer_cache.extras, dz, cache.keep)
        grads[names[2]] = dz_rows.sum(axis=0)
        d_below = (dz_rows @ params["U"]).reshape(dz.shape[:2] + (hidden_size,))
        keep = None if cache.dropout is None or cache.dropout.layers is None else cache.dropout.layers[layer - 1]
        if keep is not None:
            d_below *= keep
        below = xp.zeros(d_state.shape[:2] + (self.cell.state_size,), dtype=self.dtype)
        below[..., :hidden_size] = d_below
        return below

    def apply_update(self, grads: dict[str, Any], step: float) -> None:
        """SGD in place: p += step * grad for each gradient (dense or SparseRows); the dense
        gradients are scaled in place on the way (consumed), so no temporary is allocated."""
        step = self.dtype.type(step)
        kept, grads = self._split_kept_gradients(grads)
        for buffer, storage in kept:
            buffer *= step
            storage += buffer
        for name, grad in grads.items():
            param = self.params[name]
            if isinstance(grad, SparseRows):
                grad.rows *= step
                word_major = grad.word_major(param)  # U's own memory layout: its columns are contiguous rows here
                word_major[grad.indices] += grad.rows
            else:
                grad *= step
                param += grad

    def _split_kept_gradients(self, grads: dict[str, Any]) -> tuple[list, dict[str, Any]]:
        """([(buffer, storage)] of the output layer's kept gradient buffers, the other gradients)."""
        rest = dict(grads)
        kept = []
        for names, buffer, storage in self.output.deferred_updates(grads):
            kept.append((buffer, storage))
            for name in names:
                del rest[name]
        return kept, rest

    def gradient_squared_norm(self, grads: dict[str, Any], on_device: bool = False) -> float:
        """Sum of squares of all gradients (a SparseRows counts its rows only: the rest is zero);
        `on_device`: as a 0-d device array (no transfer)."""
        xp = self.backend.xp
        kept, grads = self._split_kept_gradients(grads)
        parts = [buffer for buffer, _ in kept]  # contiguous, so ravel() below is a view, not a copy
        parts += [grad.rows if isinstance(grad, SparseRows) else grad for grad in grads.values()]
        # Summed on the device, then one deliberate transfer of the scalar: the caller decides on
        # the host whether to clip and whether training diverged.
        total = sum(xp.vdot(part.ravel(), part.ravel()) for part in parts)
        return total if on_device else float(total)

    def loss_and_norm(self, loss, grads: dict[str, Any]) -> tuple[float, float]:
        """(loss, squared gradient norm) as host floats, in one transfer on the device path: a
        training batch's one synchronisation (`loss` from `loss_and_grads(loss_on_device=True)`)."""
        squared = self.gradient_squared_norm(grads, on_device=True)
        if not self.backend.device:
            return float(loss), float(squared)
        xp = self.backend.xp
        totals = self.backend.to_host(xp.stack([xp.asarray(loss, dtype=xp.float64), squared.astype(xp.float64)]))
        return float(totals[0]), float(totals[1])

    def _backprop(self, layer: LayerCache, params, d_state, keep=None):
        """Pre-activation gradients (T, B, G*H) of one layer from dL_t/ds_t of every step, full or truncated."""
        xp, cell = self.backend.xp, self.cell
        steps = d_state.shape[0]
        truncate = self.config.bptt_truncate
        if truncate == 0 or truncate >= steps - 1:
            # one fused step per t: the carry from t+1 is added inside the cell's kernel, which
            # writes dz[t] in place
            dz = xp.empty(d_state.shape[:-1] + (cell.gates * self.config.hidden_size,), dtype=d_state.dtype)
            carry = None
            for t in range(steps - 1, -1, -1):
                _, carry = cell.backward(xp, params, layer.states, layer.extras, slice(t, t + 1), d_state[t : t + 1],
                                         keep, carry, dz[t : t + 1])
            return dz
        total = d_state.copy()
        front = d_state
        for k in range(1, truncate + 1):
            # wavefronts on steps 1..T-k move to steps 0..T-k-1; the one on step 0 has nowhere to go
            _, front = cell.backward(xp, params, layer.states, layer.extras, slice(1, steps - k + 1), front[1:], keep)
            total[: steps - k] += front
        dz, _ = cell.backward(xp, params, layer.states, layer.extras, slice(0, steps), total, keep)
        return dz

    def _first_layer_grads(self, cache: ForwardCache, dz, rows, sparse_input: bool, grads: dict[str, Any],
                           host_tokens=None) -> None:
        """U, W, b_h gradients of the first layer into `grads`, then the embedding table's (E, or
        the tied V's input side). The word-indexed gradient sums the real tokens' rows per word
        (padding has dz = 0), each row times its dropout masks. `host_tokens`: the real tokens' ids
        on the host (the device then needs no `unique`)."""
        xp, params = self.backend.xp, self._layer_params(0)
        layer = cache.layers[0]
        dz_rows = dz.reshape(-1, dz.shape[-1])
        tokens = cache.x.reshape(-1)
        embedded = layer.inputs
        input_keep = None if cache.dropout is None else cache.dropout.inputs
        if input_keep is not None:
            input_keep = input_keep.reshape(dz_rows.shape)
        if rows is not None:
            dz_rows, tokens = dz_rows[rows], tokens[rows]
            input_keep = None if input_keep is None else input_keep[rows]
            embedded = None if embedded is None else embedded[rows]
        token_grads = dz_rows if input_keep is None else dz_rows * input_keep
        if self.embedding_name is None:
            grads["U"] = self._word_gradient(tokens, token_grads, sparse_input, word_axis=1, host_tokens=host_tokens)
        else:
            grads["U"] = token_grads.T @ embedded
        grads["W"] = self.cell.weight_grad(xp, params, layer.states, layer.extras, dz, cache.keep)
        grads["b_h"] = dz_rows.sum(axis=0)
        if self.embedding_name is None:
            return
        d_embedded = token_grads @ params["U"]
        shared = grads.get(self.embedding_name)
        if shared is not None:
            # Tied: V's output-side gradient (dense, or the output layer's kept buffer) takes the
            # input side too, so every update path sees the sum of both uses.
            self.backend.scatter_add(shared, tokens, d_embedded, host_indices=host_tokens)
        else:
            # E, or a tied V whose output side a fused step has already applied: this is the rest.
            grads[self.embedding_name] = self._word_gradient(
                tokens, d_embedded, sparse_input or self.config.tie_embeddings, word_axis=0, host_tokens=host_tokens
            )

    def _word_gradient(self, tokens, token_grads, sparse: bool, word_axis: int, host_tokens=None):
        """The gradient of a word-indexed matrix from per-token rows: SparseRows, or dense (C, n)
        word-major (returned as its transpose for U's (G*H, C) layout)."""
        if sparse:
            unique, sums = self.backend.sum_by_index(tokens, token_grads, host_indices=host_tokens)
            return SparseRows(unique, sums, word_axis=word_axis)
        dense = self.backend.xp.zeros((self.config.vocab_size, token_grads.shape[-1]), dtype=self.dtype)
        self.backend.scatter_add(dense, tokens, token_grads)
        return dense.T if word_axis == 1 else dense

    # ------------------------------------------------------------------ diagnostics primitives
    # For stacked layers both act on the top layer's state (the one the output layer reads).
    def loss_grad_state(self, cache: ForwardCache, y, t: int):
        """dL_t/ds_t (B, state size): the gradient of step t's summed loss w.r.t. its (top layer's) state."""
        xp = self.backend.xp
        y = self._check_targets(y, cache.x)
        valid = xp.flatnonzero(cache.mask[t] > 0)
        grad = xp.zeros((cache.x.shape[1], self.cell.state_size), dtype=self.dtype)
        if valid.size:
            hidden = self.cell.hidden(cache.states[t + 1])[valid]
            _, d_hidden, _ = self.output.loss_and_grads(self.backend, self.params, hidden, y[t][valid])
            grad[valid, : self.config.hidden_size] = d_hidden
        return grad

    def state_vjp(self, cache: ForwardCache, t: int, grad_state):
        """dL/ds_{t-1} from dL/ds_t (B, state size), through step t of the top layer alone."""
        _, grad_prev = self.cell.backward(
            self.backend.xp,
            self._layer_params(self.config.num_layers - 1),
            cache.states,
            cache.extras,
            slice(t, t + 1),
            self.backend.asarray(grad_state, dtype=self.dtype)[None],
            cache.keep,
        )
        return grad_prev[0]

    # ------------------------------------------------------------------ scoring and generation
    def _target_log_probs(self, x, y, mask, dropout: DropoutMasks | None, state=None, resets=None):
        """log p(y_t | x_<=t) as a (T, B) device array (0 at padding), and the forward cache."""
        xp = self.backend.xp
        cache = self.forward_cache(x, mask, state=state, dropout=dropout, resets=resets)
        y = self._check_targets(y, cache.x)
        hidden_rows, targets, rows = self._valid_rows(cache, y)
        log_probs = self.output.target_log_probs(self.backend, self.params, hidden_rows, targets)
        if rows is not None:
            scattered = xp.zeros(cache.x.size, dtype=self.dtype)
            scattered[rows] = log_probs
            log_probs = scattered
        return log_probs.reshape(cache.x.shape), cache

    def token_log_probs(self, x, y, mask, dropout: DropoutMasks | None = None, state=None, resets=None,
                        return_state: bool = False):
        """log p(y_t | x_<=t) as a (T, B) host array; 0 at padding. `dropout`: score as the
        training pass with these masks does (the gradient check's objective). The transfer is the
        point: callers (scoring, interpolation) need every token's figure on the host.
        `state`, `resets`, `return_state` as in `loss_and_grads` (then a pair: log-probs, final state)."""
        log_probs, cache = self._target_log_probs(x, y, mask, dropout, state, resets)
        if return_state:
            return self.backend.to_host(log_probs), self._final_state(cache)
        return self.backend.to_host(log_probs)

    def loss(self, x, y, mask, dropout: DropoutMasks | None = None, state=None, resets=None,
             return_state: bool = False):
        """Sum of the masked token cross-entropies and the number of predicted tokens (no gradients)
        (and the final state as a 3rd result with `return_state`). Summed on the device (in float64);
        only the totals come back, in one transfer."""
        xp = self.backend.xp
        log_probs, cache = self._target_log_probs(x, y, mask, dropout, state, resets)
        loss_sum = -log_probs.sum(dtype=xp.float64)
        if isinstance(mask, np.ndarray):
            totals = float(self.backend.to_host(loss_sum)), int((mask > 0).sum())
        else:
            both = self.backend.to_host(xp.stack([loss_sum, (mask > 0).sum(dtype=xp.float64)]))
            totals = float(both[0]), int(both[1])
        return totals + (self._final_state(cache),) if return_state else totals

    def step(self, tokens, state):
        """Feed one token per sequence: (log-probabilities of the next word (B, C), new state)."""
        xp = self.backend.xp
        tokens = self._check_ids(tokens, "tokens").reshape(-1)
        state = self.backend.asarray(state, dtype=self.dtype)
        inputs = self._input_projection(tokens)
        new_states = []
        for layer in range(self.config.num_layers):
            params = self._layer_params(layer)
            if layer:
                inputs = self.cell.hidden(new_states[-1]) @ params["U"].T
                inputs += params["b_h"]
            new_states.append(self.cell.step(xp, params, inputs, self._layer_state(state, layer)))
        new_state = new_states[0] if len(new_states) == 1 else xp.concatenate(new_states, axis=1)
        return self.output.log_probs(self.backend, self.params, self.cell.hidden(new_states[-1])), new_state

    # ------------------------------------------------------------------ params file
    def save(self, path, vocab_words: list[str], metadata: dict) -> None:
        """Parameters, vocabulary, config and metadata in one .npz (no pickles), written atomically."""
        if len(vocab_words) != self.config.vocab_size:
            raise RnnlmError(
                f"the vocabulary has {len(vocab_words)} words but the model has vocab_size {self.config.vocab_size}"
            )
        arrays = {name: self.backend.to_host(value) for name, value in self.params.items()}  # to write them
        arrays.update(self.output.file_arrays())
        arrays["vocab"] = np.array(list(vocab_words), dtype=np.str_)
        arrays["config_json"] = np.array(json.dumps(dataclasses.asdict(self.config), sort_keys=True))
        arrays["metadata_json"] = np.array(json.dumps(metadata, sort_keys=True))
        arrays["format_version"] = np.array(FORMAT_VERSION, dtype=np.int64)
        save_npz(path, **arrays)

    @classmethod
    def load(cls, path, backend: Backend) -> tuple["RNNLM", list[str], dict]:
        """Read a params file written by `save`; RnnlmError on anything corrupt, pickled or inconsistent.

        The file is checked before anything large is allocated: the array headers against the
        config's shapes, and the model's size against the memory available (a small file declaring
        hidden_size 60000 is refused, not built); members the model does not use are never read."""
        what = "an .npz parameters file"
        fix = "re-create it with `rnnlm train` (or snakemake)"
        headers = npz_headers(path, what)
        missing = [name for name in _FILE_KEYS if name not in headers]
        if missing:
            raise RnnlmError(f"{path}: missing arrays {missing}; the file is from another tool or version, re-create it")
        arrays = load_npz(path, names=_HEADER_KEYS, max_bytes=HEADER_ARRAY_BYTES, what=what)
        try:
            version = int(arrays["format_version"])
            config_values = json.loads(str(arrays["config_json"]))
            metadata = json.loads(str(arrays["metadata_json"]))
        except (TypeError, ValueError, RecursionError) as exc:
            raise RnnlmError(f"{path}: unreadable header arrays ({type(exc).__name__}: {str(exc)[:200]}); {fix}") from None
        if version != FORMAT_VERSION:
            raise RnnlmError(f"{path}: params format version {version}, this tool reads {FORMAT_VERSION}; {fix}")
        if not isinstance(config_values, dict) or not isinstance(metadata, dict):
            raise RnnlmError(f"{path}: config_json and metadata_json must be JSON objects; {fix}")
        config = ModelConfig.from_dict(config_values)
        vocab = headers["vocab"]
        if (vocab.dtype.kind != "U" or vocab.shape != (config.vocab_size,)
                or vocab.dtype.itemsize > 4 * MAX_WORD_CHARACTERS):
            raise RnnlmError(
                f"{path}: vocab must be {config.vocab_size} strings (the config's vocab_size) of at most "
                f"{MAX_WORD_CHARACTERS} characters, found {vocab.dtype} {vocab.shape}; {fix}"
            )
        shapes = cls._expected_shapes(path, config, headers)
        itemsize = np.dtype(config.dtype).itemsize
        model_bytes = sum(int(np.prod(shape)) for shape in shapes.values()) * itemsize
        needed = 2 * model_bytes + vocab.nbytes  # the file's arrays and the model's own copy
        if needed > available_memory_bytes():
            raise RnnlmError(
                f"{path}: the model it declares (hidden_size {config.hidden_size}, vocab_size {config.vocab_size}) needs "
                f"{needed / 2**20:,.0f} MiB, more than the {available_memory_bytes() / 2**20:,.0f} MiB available; "
                "run on a machine with more memory, or use a smaller model"
            )
        for name, shape in shapes.items():
            member = headers.get(name)
            if member is None:
                raise RnnlmError(f"{path}: parameter {name} is missing; {fix}")
            if member.shape != shape or member.dtype.kind != "f":
                raise RnnlmError(
                    f"{path}: parameter {name} is {member.dtype} {member.shape}, the config needs float {shape}; {fix}"
                )
        readable = tuple(shapes) + ("vocab", "class_of_word")
        arrays.update(load_npz(path, names=readable, what=what, max_bytes=needed))
        model = cls(config, backend, **cls._output_arrays(arrays))
        for name in model.params:
            value = arrays[name]
            if not np.isfinite(value).all():
                raise RnnlmError(f"{path}: parameter {name} holds NaN or infinite values; retrain the model")
            model.params[name][...] = backend.asarray(value, dtype=model.dtype)
        return model, [str(word) for word in arrays["vocab"]], metadata

    @staticmethod
    def _expected_shapes(path, config: ModelConfig, headers: dict) -> dict[str, tuple[int, ...]]:
        """The parameter shapes `config` implies, computed without allocating them; the class softmax's
        class count comes from class_of_word (which must then be vocab_size integers)."""
        hidden, vocab = config.hidden_size, config.vocab_size
        rows = make_cell(config.cell, hidden, config.activation).gates * hidden
        shapes = {"U": (rows, config.embedding_size or vocab), "W": (rows, hidden), "b_h": (rows,)}
        if config.embedding_size and not config.tie_embeddings:
            shapes["E"] = (vocab, config.embedding_size)
        for layer in range(1, config.num_layers):
            shapes.update(zip(layer_parameter_names(layer), ((rows, hidden), (rows, hidden), (rows,))))
        shapes.update(V=(vocab, hidden), b_y=(vocab,))
        classes = headers.get("class_of_word")
        if classes is not None:
            if classes.shape != (vocab,) or classes.dtype.kind not in "iu":
                raise RnnlmError(f"{path}: class_of_word must be {vocab} integers (vocab_size), found "
                                 f"{classes.dtype} {classes.shape}; re-create it with `rnnlm train` (or snakemake)")
            class_of_word = load_npz(path, names=("class_of_word",), max_bytes=classes.nbytes)["class_of_word"]
            num_classes = int(class_of_word[-1]) + 1 if 0 < int(class_of_word[-1]) + 1 <= vocab else vocab
            shapes.update(V_class=(num_classes, hidden), b_class=(num_classes,))
        return shapes

    @staticmethod
    def _output_arrays(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"class_of_word": arrays["class_of_word"]} if "class_of_word" in arrays else {}
