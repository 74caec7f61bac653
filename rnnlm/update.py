"""One update of the parameters on one batch: the SGD step (the tutorial's) and the Adam step, both on
the batch's mean-per-token gradient clipped to a global norm, and the guard that stops a diverging run
with advice on what to change."""

from __future__ import annotations

import math
from typing import Callable

from rnnlm.checkpoint import TrainState
from rnnlm.io import RnnlmError
from rnnlm.model import RNNLM
from rnnlm.optim import Adam
from rnnlm.train_config import TrainConfig

# A batch whose mean loss exceeds this multiple of ln(vocabulary size), the loss of uniform guessing,
# is diverging rather than learning.
EXPLODING_LOSS_FACTOR = 3.0


class Divergence(RnnlmError):
    """Training produced a NaN, infinite or exploding loss."""


def divergence_advice(cfg: TrainConfig, learning_rate: float, activation: str) -> str:
    """What to change after a divergence, given the settings in force (no advice to turn on what is on)."""
    if cfg.optimizer == "adam":
        # Adam's steps are about learning_rate per parameter whatever the gradient's size or clipping.
        advice = f"lower learning_rate (now {learning_rate:g}; Adam usually needs 0.001 to 0.005)"
    elif cfg.clip_norm:
        advice = (f"lower learning_rate (now {learning_rate:g}) or clip_norm (now {cfg.clip_norm:g}): a clipped "
                  "SGD step still moves the parameters by up to their product")
    else:
        advice = f"lower learning_rate (now {learning_rate:g}) or turn on gradient clipping (clip_norm: 0.5)"
    if activation == "relu":
        advice += ", or use activation: tanh (relu states are unbounded)"
    return advice


def _loss_and_gradient_norm(model: RNNLM, loss, grads: dict, tokens: int) -> tuple[float, float]:
    """(summed loss, global L2 norm of the mean-per-token gradient) on the host, fetched together:
    the batch's one host synchronisation on a GPU (`grads` are gradients of the summed loss)."""
    loss, squared = model.loss_and_norm(loss, grads)
    return loss, math.sqrt(squared) / tokens


def _clip_factor(norm: float, clip_norm: float) -> float:
    """The factor that rescales a gradient of global norm `norm` to `clip_norm` when it is longer."""
    return clip_norm / norm if clip_norm and norm > clip_norm else 1.0


def _carry(state, resets, return_state: bool) -> dict:
    """The state keywords of a document-mode step; none at all in sentence mode (its calls unchanged)."""
    if state is None and resets is None and not return_state:
        return {}
    return {"state": state, "resets": resets, "return_state": return_state}


def sgd_step(model: RNNLM, x, y, mask, learning_rate: float, clip_norm: float,
             check: Callable[[float, int, float], None] | None = None,
             dropout_rng=None, state=None, resets=None, return_state: bool = False, weight_decay: float = 0.0):
    """One SGD update on the batch's mean-per-token gradient, clipped to global norm `clip_norm`
    (0: no clipping), then `decay_weights`; returns (summed loss, tokens, gradient norm). `check(loss, tokens, norm)` runs
    before the update is applied and may raise. A model with dropout draws the batch's masks from
    `dropout_rng` (a `backend.rng`); without one it trains the deterministic network.

    U's gradient stays sparse (the batch's words only). Without clipping the step size is known
    before the gradient, so the output layer's update is fused into the GEMM that forms its
    gradient: it is applied before `check` runs, and the norm covers the other parameters only.
    With clipping the output layer's gradient stays in the buffer the layer keeps between steps
    (`keep_output_gradients`), normed and applied as one contiguous array.
    `state`, `resets`, `return_state` (document mode): as `RNNLM.loss_and_grads`; the final state
    comes back as a 4th result.
    """
    fused_step = None
    if not clip_norm:
        fused_step = -learning_rate / int((model.backend.to_host(mask) > 0).sum())
    dropout = None if dropout_rng is None else model.dropout_masks(dropout_rng, x.shape)
    result = model.loss_and_grads(x, y, mask, sparse_input=True, output_step=fused_step, dropout=dropout,
                                  keep_output_gradients=True, loss_on_device=True, **_carry(state, resets, return_state))
    loss, count, grads = result[:3]
    loss, norm = _loss_and_gradient_norm(model, loss, grads, count)
    if check is not None:
        check(loss, count, norm)
    model.apply_update(grads, -learning_rate / count * _clip_factor(norm, clip_norm))
    decay_weights(model, learning_rate, weight_decay)
    return (loss, count, norm, *result[3:])


def adam_step(model: RNNLM, optimizer: Adam, x, y, mask, learning_rate: float, clip_norm: float,
              check: Callable[[float, int, float], None] | None = None,
              dropout_rng=None, state=None, resets=None, return_state: bool = False, weight_decay: float = 0.0):
    """As `sgd_step`, with an Adam update: dense for every parameter but U, whose gradient stays
    sparse and gets the lazy update of `rnnlm.optim.Adam` (the batch's words only)."""
    dropout = None if dropout_rng is None else model.dropout_masks(dropout_rng, x.shape)
    result = model.loss_and_grads(x, y, mask, sparse_input=True, dropout=dropout, loss_on_device=True,
                                  **_carry(state, resets, return_state))
    loss, count, grads = result[:3]
    loss, norm = _loss_and_gradient_norm(model, loss, grads, count)
    if check is not None:
        check(loss, count, norm)
    optimizer.update(model.params, grads, _clip_factor(norm, clip_norm) / count, learning_rate)
    decay_weights(model, learning_rate, weight_decay)
    return (loss, count, norm, *result[3:])


def decay_weights(model: RNNLM, learning_rate: float, weight_decay: float) -> None:
    """Decoupled weight decay (Loshchilov & Hutter's AdamW; for SGD the same as an L2 penalty of
    weight_decay / 2): every weight matrix is multiplied by 1 - learning_rate * weight_decay after
    the update. Biases are left alone. A tied V is one matrix, decayed once."""
    if not weight_decay:
        return
    factor = 1.0 - learning_rate * weight_decay
    for value in model.params.values():
        if value.ndim >= 2:
            value *= factor


class DivergenceGuard:
    """The `check` of each update in the epoch after `state.epoch`: a NaN, infinite or exploding loss
    or gradient norm ends training with advice on what to change."""

    def __init__(self, cfg: TrainConfig, model: RNNLM, state: TrainState):
        self.cfg, self.model, self.state = cfg, model, state
        self.uniform_loss = math.log(model.config.vocab_size)

    def check(self, batch_loss: float, count: int, norm: float) -> None:
        exploding = batch_loss / count > EXPLODING_LOSS_FACTOR * self.uniform_loss
        if not (math.isfinite(batch_loss) and math.isfinite(norm)) or exploding:
            raise Divergence(
                f"training diverged in epoch {self.state.epoch + 1}: batch loss {batch_loss / count:.4g} per token, "
                f"gradient norm {norm:.4g} (uniform guessing scores {self.uniform_loss:.4g}); "
                + divergence_advice(self.cfg, self.state.learning_rate, self.model.config.activation)
            )
