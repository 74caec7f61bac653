"""The tutorial's schedule (its `train_with_sgd`, measured on the validation split instead of the
training set), one measured loss at a time: keep the parameters with the lowest loss, stop once
`patience` measurements in a row failed to improve on it, and when the loss rises above the previous
measurement multiply the learning rate by `lr_decay` (halve it by default) or, with `averaging`,
start averaging the parameters instead (the rate then stays: the average damps the noise).

The schedule's memory is the checkpoint's `TrainState`, so a resumed run continues it exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rnnlm.checkpoint import TrainState
from rnnlm.train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """What the trainer does after a measurement."""

    keep: bool            # the measured parameters are the best so far: keep a copy
    start_average: bool   # start averaging the parameters from now on


class Schedule:
    """`update(valid_loss)` after each measurement of epoch `state.epoch`; it changes `state`
    (learning rate, best loss and epoch, `stopped_early`) and says what to do with the parameters."""

    def __init__(self, cfg: TrainConfig, state: TrainState, averaging: bool = False):
        self.cfg, self.state = cfg, state
        self.averaging = averaging  # a parameter average runs (from a resumed checkpoint, or started here)

    def update(self, valid_loss: float) -> Decision:
        state, cfg = self.state, self.cfg
        rose = state.last_measured_loss is not None and valid_loss > state.last_measured_loss
        state.last_measured_loss = valid_loss
        keep = valid_loss < state.best_loss
        if keep:
            state.best_loss, state.best_epoch = valid_loss, state.epoch
            state.measurements_without_improvement = 0
        else:
            state.measurements_without_improvement += 1
            if state.measurements_without_improvement >= cfg.patience:
                state.stopped_early = True
                log.info("no improvement in %d measurements: stopping early", cfg.patience)
        start_average = rose and cfg.averaging and not self.averaging
        if start_average:
            self.averaging = True
            log.info("loss rose: averaging the parameters from now on (learning rate stays %g)", state.learning_rate)
        elif rose and not self.averaging:
            state.learning_rate *= cfg.lr_decay
            log.info("loss rose: learning rate multiplied by %g to %g", cfg.lr_decay, state.learning_rate)
        return Decision(keep=keep, start_average=start_average)

    @property
    def finished(self) -> bool:
        return self.state.epoch >= self.cfg.epochs or self.state.stopped_early
