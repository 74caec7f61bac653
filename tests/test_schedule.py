"""The tutorial's schedule, one measurement at a time (rnnlm.schedule.Schedule.update)."""

from __future__ import annotations

from rnnlm.checkpoint import TrainState
from rnnlm.schedule import Schedule
from rnnlm.train_config import TrainConfig


def run_schedule(losses, **settings):
    """(state, decisions) after measuring `losses` at epochs 0, 1, 2, ..."""
    cfg = TrainConfig(**settings)
    state = TrainState(learning_rate=cfg.learning_rate)
    schedule = Schedule(cfg, state)
    decisions = []
    for epoch, loss in enumerate(losses):
        state.epoch = epoch
        decisions.append(schedule.update(loss))
    return state, decisions


def test_a_rise_halves_the_rate_and_the_best_is_kept():
    state, decisions = run_schedule([3.0, 2.5, 2.7, 2.6, 2.0], learning_rate=1.0, patience=5)
    assert [d.keep for d in decisions] == [True, True, False, False, True]
    assert not any(d.start_average for d in decisions)
    assert state.learning_rate == 0.5  # one rise (2.5 -> 2.7); 2.6 and 2.0 fall
    assert (state.best_loss, state.best_epoch, state.stopped_early) == (2.0, 4, False)


def test_patience_measurements_without_a_new_best_stop_training():
    state, _ = run_schedule([3.0, 2.0, 2.1, 2.05, 2.2], patience=3, lr_decay=0.5, learning_rate=1.0)
    assert state.stopped_early and state.measurements_without_improvement == 3
    assert state.learning_rate == 0.25  # rises at 2.0 -> 2.1 and 2.05 -> 2.2


def test_with_averaging_the_first_rise_starts_the_average_and_the_rate_stays():
    state, decisions = run_schedule([3.0, 2.5, 2.7, 2.6, 2.9], averaging=True, learning_rate=1.0, patience=9)
    assert [d.start_average for d in decisions] == [False, False, True, False, False]
    assert state.learning_rate == 1.0


def test_a_resumed_average_is_not_started_again():
    cfg = TrainConfig(averaging=True, learning_rate=1.0)
    state = TrainState(learning_rate=1.0, last_measured_loss=2.0, best_loss=2.0)
    decision = Schedule(cfg, state, averaging=True).update(2.5)
    assert not decision.start_average and not decision.keep and state.learning_rate == 1.0
