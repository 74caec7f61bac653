"""Numerical gradient check: central differences in float64 against `RNNLM.loss_and_grads`.

API: `gradient_check(model, x, y, mask)` -> {parameter: max relative error}.
CLI: `rnnlm gradcheck` (`main(argv)`) builds a small random float64 model and a padded random batch
for the chosen cell / activation / output layer / truncation / embedding, tying and layer stack /
dropouts and exits non-zero above the tolerance.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from rnnlm.backend import get_backend
from rnnlm.io import RnnlmError
from rnnlm.model import ACTIVATIONS, CELLS, OUTPUTS, RNNLM, DropoutMasks, ModelConfig

DEFAULT_TOLERANCE = 1e-6
# Entries whose analytic and numeric gradients are both this small are compared absolutely: their
# finite-difference estimate is dominated by float64 round-off of the loss, not by the gradient.
NEGLIGIBLE_GRADIENT = 1e-5
# Fourth-order central differences, f'(p) ~ (f(p-2e) - f(p+2e) + 8 (f(p+e) - f(p-e))) / 12e: the
# O(e^4) error lets e be large, so round-off in the loss (~1e-14) stays far below the differences.
# relu is not differentiable at 0: a small step keeps perturbations from crossing its kink.
SMOOTH_EPSILON = 1e-3
RELU_EPSILON = 1e-4


def central_difference(loss_at, epsilon: float) -> float:
    """loss_at(offset) evaluates the objective at p + offset; differences first, so equal losses give 0."""
    far = loss_at(-2 * epsilon) - loss_at(2 * epsilon)
    near = loss_at(epsilon) - loss_at(-epsilon)
    return (far + 8 * near) / (12 * epsilon)


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> np.ndarray:
    """|a - n| / (|a| + |n|), the tutorial's measure, with a floor for vanishing gradients."""
    return np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), NEGLIGIBLE_GRADIENT)


def truncated_loss(model: RNNLM, frozen_states, x, y, mask, dropout: DropoutMasks | None = None,
                   resets=None) -> float:
    """The objective truncated BPTT differentiates: step t's loss sees the parameters only through
    the recurrence steps t-k..t, starting from the state before t-k held at `frozen_states`; a
    reset zeroes the state before its step."""
    backend, xp = model.backend, model.backend.xp
    truncate = model.config.bptt_truncate
    x, mask = model._check_batch(x, mask)
    y = model._check_targets(y, x)
    inputs = model._input_projection(x, dropout)
    keep = np.ones(x.shape) if resets is None else 1 - np.asarray(resets, dtype=np.float64)
    total = 0.0
    for t in range(x.shape[0]):
        start = max(0, t - truncate)
        state = frozen_states[start]
        for step in range(start, t + 1):
            state = model.cell.step(xp, model.params, inputs[step], state * backend.asarray(keep[step])[:, None])
        hidden = model.cell.hidden(state)
        if dropout is not None and dropout.hidden is not None:
            hidden = hidden * dropout.hidden[t]
        log_probs = model.output.target_log_probs(backend, model.params, hidden, y[t])
        total -= float((log_probs * mask[t]).sum())
    return total


def gradient_check(
    model: RNNLM,
    x: Any,
    y: Any,
    mask: Any,
    epsilon: float | None = None,
    max_entries: int | None = None,
    seed: int = 0,
    dropout: DropoutMasks | None = None,
    state: Any = None,
    resets: Any = None,
) -> dict[str, float]:
    """Max relative error per parameter between backprop and central differences of the summed loss.

    `dropout`: check the training pass with these (fixed) dropout masks.
    `state`, `resets`: the initial state (held fixed: a window's carried state is detached) and
    the document starts, as `RNNLM.loss_and_grads` takes them.
    With truncated BPTT the reference is `truncated_loss` (the full loss has another gradient).
    Every entry is checked unless `max_entries` caps it (a random sample per parameter then).
    The model must be float64: float32 round-off would swamp the differences.
    """
    if model.dtype != np.float64:
        raise RnnlmError("gradient checks need a float64 model (dtype: float64); float32 is too coarse")
    if epsilon is None:
        relu = model.config.cell == "rnn" and model.config.activation == "relu"
        epsilon = RELU_EPSILON if relu else SMOOTH_EPSILON
    backend = model.backend
    _, _, grads = model.loss_and_grads(x, y, mask, dropout=dropout, state=state, resets=resets)
    if model.config.bptt_truncate:
        frozen_states = model.forward_cache(x, mask, state=state, dropout=dropout, resets=resets).states

        def objective() -> float:
            return truncated_loss(model, frozen_states, x, y, mask, dropout, resets)

    else:

        def objective() -> float:
            return model.loss(x, y, mask, dropout, state=state, resets=resets)[0]

    rng = np.random.default_rng(seed)
    errors = {}
    for name, param in model.params.items():
        analytic = backend.to_host(grads[name]).ravel()
        entries = np.arange(param.size)
        if max_entries is not None and param.size > max_entries:
            entries = np.sort(rng.choice(param.size, size=max_entries, replace=False))
        numeric = np.empty(entries.size)
        for k, flat_index in enumerate(entries):
            index = np.unravel_index(flat_index, param.shape)  # parameters may be strided views
            original = float(param[index])

            def loss_at(offset: float) -> float:
                param[index] = original + offset
                return objective()

            numeric[k] = central_difference(loss_at, epsilon)
            param[index] = original
        errors[name] = float(relative_error(analytic[entries], numeric).max(initial=0.0))
    return errors


def random_batch(rng: np.random.Generator, vocab_size: int, lengths: Sequence[int]):
    """A time-major padded batch of random sentences with the given lengths (padding at the end)."""
    steps, batch = max(lengths), len(lengths)
    x = rng.integers(0, vocab_size, (steps, batch))
    y = rng.integers(0, vocab_size, (steps, batch))
    mask = (np.arange(steps)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64)
    return x, y, mask


def main(argv: Sequence[str] | None = None) -> int:
    from rnnlm.cli import OneLineParser

    parser = OneLineParser(prog="rnnlm gradcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=CELLS, default="rnn")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="tanh")
    parser.add_argument("--output", choices=OUTPUTS, default="full")
    parser.add_argument("--bptt-truncate", type=int, default=0, help="0 = full BPTT")
    parser.add_argument("--dropout", type=float, default=0.0, help="output dropout rate (masks fixed for the check)")
    parser.add_argument("--input-dropout", type=float, default=0.0, help="input dropout rate (masks fixed)")
    parser.add_argument("--embedding-size", type=int, default=0, help="0 = no embedding table (U reads the one-hot word)")
    parser.add_argument("--tie-embeddings", action="store_true", help="the embedding is the output word matrix V")
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--layer-dropout", type=float, default=0.0, help="dropout between layers (masks fixed)")
    parser.add_argument("--locked-dropout", action="store_true", help="one dropout mask per sequence")
    parser.add_argument("--vocab-size", type=int, default=20)
    parser.add_argument("--hidden-size", type=int, default=6)
    parser.add_argument("--lengths", type=int, nargs="+", default=[7, 4, 6], help="sentence lengths of the batch")
    parser.add_argument("--max-entries", type=int, default=None, help="check a random sample per parameter")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--device", choices=["auto", "cpu", "gpu"], default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = ModelConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        activation=args.activation,
        bptt_truncate=args.bptt_truncate,
        cell=args.cell,
        output=args.output,
        dtype="float64",
        dropout=args.dropout,
        input_dropout=args.input_dropout,
        embedding_size=args.embedding_size,
        tie_embeddings=args.tie_embeddings,
        num_layers=args.num_layers,
        layer_dropout=args.layer_dropout,
        locked_dropout=args.locked_dropout,
    )
    backend = get_backend(args.device)
    model = RNNLM(config, backend, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    x, y, mask = random_batch(rng, args.vocab_size, args.lengths)
    dropout = model.dropout_masks(backend.rng(args.seed), x.shape)
    errors = gradient_check(model, x, y, mask, max_entries=args.max_entries, seed=args.seed, dropout=dropout)
    worst = max(errors.values())
    passed = worst < args.tolerance
    report = {"config": vars(args), "max_relative_error": errors, "worst": worst, "passed": passed}
    print(json.dumps(report, indent=2))
    return 0 if passed else 1
