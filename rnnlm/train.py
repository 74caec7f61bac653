"""Minibatch training of the RNN language model: the tutorial's loop (`train`), with clipping,
dropout, early stopping and resume; SGD (the tutorial's) or Adam (`rnnlm.optim`).

The parts live beside it: the settings in `rnnlm.train_config`, the schedule (lower the rate on a
rise, keep the best, stop after `patience`, start averaging) in `rnnlm.schedule`, the checkpoint
format in `rnnlm.checkpoint`, the training log and what a person watching sees in `rnnlm.progress`.
The loss is measured before training and every `evaluate_every` epochs.

Each update uses the gradient of the mean cross-entropy per predicted token of the batch, rescaled so
that its global L2 norm is at most `clip_norm` (0 disables clipping), computed through fresh dropout
masks when the model has dropout.

Large data: `epoch_tokens` N > 0 makes an "epoch" end after the batch that brings it to N training
tokens; the next one continues where it stopped in the same shuffled pass over the train split, and a
new pass (a new order) starts once one is used up, so over several epochs every sentence is seen.
`valid_tokens` N > 0 measures on a fixed subset of whole validation sentences holding about N tokens.
`checkpoint_minutes` adds a checkpoint after any epoch that ends that long after the last one.

Context across sentences (`context: document`, `rnnlm.streams`): the batches are windows of `bptt`
tokens over `batch_size` parallel streams of documents (a seeded document order per pass); each
update starts from the state the previous window ended in (detached), reset at document starts.
The cursor counts windows; the carried state goes into the checkpoint, so a resumed run continues
exactly. The schedule measures the validation split read in context.

Resume: every `checkpoint_every` epochs the whole training state (current and best parameters,
Adam's moments, the parameter average, learning rate, counters, log rows) is written atomically to the checkpoint file,
which is deleted once the parameters file is written. The batch order of pass p depends only on
(seed, p), the dropout masks of epoch e on (seed, e), and the checkpoint records where in its pass
the last epoch stopped, so a run restarted from a checkpoint performs exactly the updates the
uninterrupted run would have, and ends with byte-identical parameters on the same device.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from rnnlm.backend import get_backend
from rnnlm.checkpoint import TrainState, fingerprint, load_checkpoint, save_checkpoint
from rnnlm.data import Split, load_splits
from rnnlm.evaluate import mean_loss
from rnnlm.io import RnnlmError, write_text
from rnnlm.model import RNNLM
from rnnlm.optim import Adam, ParameterAverage
from rnnlm.progress import CpuClock, Progress, log_row, progress_log, render_log
from rnnlm.runlock import exclusive_lock
from rnnlm.schedule import Schedule
from rnnlm.streams import TrainingWindows, in_context
from rnnlm.train_config import TrainConfig, split_hyperparameters
from rnnlm.update import Divergence, DivergenceGuard, adam_step, sgd_step
from rnnlm.vocab import Vocabulary

log = logging.getLogger(__name__)

# Epoch e's dropout masks come from the generator seeded by (seed, e, DROPOUT_STREAM), apart from
# the batch order's (seed, pass): a resumed run draws the same masks as the uninterrupted one.
DROPOUT_STREAM = 1
# The validation subset of `valid_tokens` comes from the generator seeded by (seed, 0, VALID_SUBSET_STREAM).
VALID_SUBSET_STREAM = 2
# Adam's usual step sizes are ~1e-3; one this large is almost surely an SGD rate left in place.
ADAM_RATE_WARNING = 0.1
# Wall clock of the checkpoint timer (`checkpoint_minutes`), in seconds; the tests replace it.
checkpoint_clock = time.monotonic


class Interrupted(RnnlmError):
    """Training stopped by Ctrl-C (KeyboardInterrupt): one line naming the checkpoint kept (`kept`:
    whether there is one); the caller adds the command that resumes."""

    def __init__(self, message: str, kept: bool):
        super().__init__(message)
        self.kept = kept


def train(model: RNNLM, train_config: TrainConfig, train_split: Split, valid: Split, vocab_words: list[str],
          params_path, checkpoint_path, log_path, metadata: Mapping | None = None,
          progress: bool = True, name: str = "train",
          observer: Callable[[TrainState, RNNLM], bool] | None = None) -> TrainState:
    """Train `model` in place (it ends holding the best parameters), resuming from `checkpoint_path` when it matches; write params and log.

    The parameters file holds the best parameters (lowest measured loss), `vocab_words` and
    `metadata` plus a summary of the run, so nothing else is needed to evaluate, sample or score.
    `progress`: one line per epoch (and a bar on a terminal) on the `rnnlm.progress` logger,
    prefixed with `name`. `observer(state, model)` runs after each measurement, with the model
    holding the measured parameters; its CPU time is not counted, and a true result ends training
    as if it had run its last epoch (benchmarks use it to score and to stop at a budget).
    """
    cfg = train_config
    _check_data(model, train_split, valid, vocab_words)
    run_id = fingerprint(model.config, cfg, train_split, valid, vocab_words)
    run = _Run(model, cfg, train_split, valid, observer,
               Progress(name, cfg.epochs, cfg.epoch_tokens or train_split.num_tokens, enabled=progress))
    resumed = run.resume(load_checkpoint(checkpoint_path, model, run_id, run.optimizer, run.windows), checkpoint_path)
    timer = _CheckpointTimer(cfg, checkpoint_path, resumed)
    try:
        while not run.schedule.finished and not run.stopped:
            train_loss, tokens, seconds = run.train_epoch()
            if run.state.epoch % cfg.evaluate_every == 0 or run.state.epoch == cfg.epochs:
                run.measure(train_loss, seconds, tokens)
            else:
                run.record(train_loss, seconds, tokens)
            if timer.due(run.state, run.stopped):
                save_checkpoint(checkpoint_path, model, run.best, run.state, run_id, run.optimizer, run.average,
                                None if run.windows is None else run.windows.carried)
                timer.saved(run.state.epoch)
    except Divergence as exc:
        raise Divergence(f"{exc}; {timer.kept}") from None
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted (Ctrl-C) after {run.state.epoch} of {cfg.epochs} epochs; {timer.kept}",
                          kept=timer.kept_epoch is not None) from None
    finally:
        run.report.close()
    run.write_results(params_path, log_path, vocab_words, metadata)
    # A finished run needs no resume point, and the checkpoint records wall times, which would make
    # the results differ from run to run.
    Path(checkpoint_path).unlink(missing_ok=True)
    return run.state


def _check_data(model: RNNLM, train_split: Split, valid: Split, vocab_words: list[str]) -> None:
    vocab_size = model.config.vocab_size
    if len(vocab_words) != vocab_size:
        raise RnnlmError(f"the vocabulary has {len(vocab_words)} words but the model expects {vocab_size}; rebuild the vocabulary")
    if len(train_split) == 0:
        raise RnnlmError("the train split is empty; use a larger corpus or smaller valid/test fractions")
    train_split.check_ids(vocab_size, "train")
    valid.check_ids(vocab_size, "valid")


class _CheckpointTimer:
    """When to write a checkpoint: every `checkpoint_every` epochs, after the last one, when training
    stops, and `checkpoint_minutes` after the last checkpoint; `kept` names the newest one."""

    def __init__(self, cfg: TrainConfig, path, resumed_epoch: int | None):
        self.cfg, self.path = cfg, path
        self.last = self.now = checkpoint_clock()
        self.kept_epoch = resumed_epoch
        self.kept = ("no checkpoint had been written yet" if resumed_epoch is None
                     else f"the checkpoint after epoch {resumed_epoch}, {path}, is kept")

    def due(self, state: TrainState, stopping: bool) -> bool:
        self.now = checkpoint_clock()
        timer_due = self.cfg.checkpoint_minutes and self.now - self.last >= 60 * self.cfg.checkpoint_minutes
        return bool(state.epoch % self.cfg.checkpoint_every == 0 or state.epoch == self.cfg.epochs
                    or state.stopped_early or stopping or timer_due)

    def saved(self, epoch: int) -> None:
        self.last = self.now
        self.kept_epoch = epoch
        self.kept = f"the checkpoint after epoch {epoch}, {self.path}, is kept"


class _Run:
    """One training run between epochs: the model with its optimizer, the parameter average once one
    runs, the best parameters, the schedule over the checkpoint's state, the split the schedule
    measures on, the CPU clock, the display and the observer's verdict (`stopped`)."""

    def __init__(self, model: RNNLM, cfg: TrainConfig, train_split: Split, valid: Split, observer, report: Progress):
        self.model, self.cfg, self.observer, self.report = model, cfg, observer, report
        # Document mode: windows of the document streams, with the state they carry (else sentence batches).
        context = in_context(model)
        self.windows = TrainingWindows(train_split, cfg.batch_size, cfg.bptt, cfg.seed, cfg.epoch_tokens) if context else None
        self.train_split, self.stream = train_split, self.windows or _BatchStream(train_split, cfg)
        # Without a validation split the schedule falls back to the tutorial's: the training loss.
        self.monitors_valid = len(valid) > 0
        self.monitored = measurement_subset(valid if self.monitors_valid else train_split, cfg.valid_tokens, cfg.seed,
                                            documents=context)
        if cfg.valid_tokens:
            log.info("measuring on %d sentences (%d tokens) of the %s split", len(self.monitored),
                     self.monitored.num_tokens, "valid" if self.monitors_valid else "train")
        self.optimizer = Adam(model.params, model.backend.xp) if cfg.optimizer == "adam" else None
        if self.optimizer is not None and cfg.learning_rate >= ADAM_RATE_WARNING:
            log.warning("learning_rate %g is very large for Adam (usual: 0.001 to 0.005)", cfg.learning_rate)
        self.clock = CpuClock()
        self.average: ParameterAverage | None = None
        self.stopped = False

    def resume(self, restored, checkpoint_path) -> int | None:
        """Continue from a restored checkpoint, else measure the untrained model; the epoch resumed after."""
        if restored is not None:
            self.best, self.state, self.average = restored
            self.schedule = Schedule(self.cfg, self.state, averaging=self.average is not None)
            # On the progress logger: the epoch lines' channel, which reaches the terminal under Snakemake too.
            progress_log.info("resuming from %s after epoch %d (learning rate %g)", checkpoint_path, self.state.epoch,
                              self.state.learning_rate)
            return self.state.epoch
        self.state = TrainState(learning_rate=self.cfg.learning_rate)
        self.schedule = Schedule(self.cfg, self.state)
        self.best = {k: v.copy() for k, v in self.model.params.items()}
        self.measure(None, 0.0, 0)
        return None

    def train_epoch(self) -> tuple[float, int, float]:
        """One epoch of updates: (mean training loss per token, tokens, wall seconds)."""
        model, state, backend = self.model, self.state, self.model.backend
        epoch = state.epoch + 1
        dropout_rng = backend.rng(_stream_seed(self.cfg.seed, epoch, DROPOUT_STREAM))
        guard = DivergenceGuard(self.cfg, model, state)
        started = time.perf_counter()
        loss_sum, tokens = 0.0, 0
        self.report.start_epoch(epoch)
        windows = self.windows
        for group in self.stream.epoch(state):
            carry = {}
            if windows is None:
                x, y, mask = self.train_split.batch(group)
            else:  # a window of the document streams, from the state the previous one ended in
                x, y, mask = group.x, group.y, group.mask
                carry = dict(state=windows.carried, resets=backend.asarray(group.resets), return_state=True)
            # host arrays: the model checks them and finds the real tokens on the host, then
            # uploads them (on a GPU the batch's one synchronisation is its loss and norm)
            batch = (x, y, mask)
            if self.optimizer is None:
                result = sgd_step(model, *batch, state.learning_rate, self.cfg.clip_norm, guard.check, dropout_rng,
                                  weight_decay=self.cfg.weight_decay, **carry)
            else:
                result = adam_step(model, self.optimizer, *batch, state.learning_rate, self.cfg.clip_norm,
                                   guard.check, dropout_rng, weight_decay=self.cfg.weight_decay, **carry)
            batch_loss, count = result[:2]
            if windows is not None:
                windows.carried = result[3]
            if self.average is not None:
                self.average.add(model.params)
            loss_sum += batch_loss
            tokens += int(count)
            state.examples_seen += x.shape[1]
            self.report.batch(tokens, loss_sum / tokens)
        state.epoch = epoch
        return loss_sum / tokens, tokens, time.perf_counter() - started

    def measure(self, train_loss: float | None, seconds: float, tokens: int) -> None:
        """Measure the monitored loss, log it, apply the schedule, show the epoch, run the observer.

        While an average runs, it is what gets measured and kept as the best parameters: the model's
        own parameters are swapped out for the measurement and back in for further training."""
        averaged = self.average is not None
        with self._measured_parameters():
            try:
                loss = mean_loss(self.model, self.monitored)
            except RnnlmError as exc:
                raise Divergence(f"training diverged after epoch {self.state.epoch}: {exc}") from None
            self.state.cpu_seconds += self.clock.lap()
            self.state.rows.append(log_row(self.state, train_loss, loss if self.monitors_valid else None, seconds,
                                           tokens, averaged))
            decision = self.schedule.update(loss)
            if decision.keep:
                for name, value in self.model.params.items():
                    self.best[name][...] = value
        if decision.start_average:
            self.average = ParameterAverage(self.model.params, self.model.backend.xp)
        self.report.measured(self.state, averaged=self.average is not None)
        self._observe()

    def record(self, train_loss: float, seconds: float, tokens: int) -> None:
        """Log an epoch without a measurement."""
        self.state.cpu_seconds += self.clock.lap()
        self.state.rows.append(log_row(self.state, train_loss, None, seconds, tokens, self.average is not None))
        self.report.measured(self.state, averaged=self.average is not None)

    def _measured_parameters(self):
        """The model holding what the schedule measures: the parameter average while one runs."""
        return _Swapped(self.average, self.model.params)

    def _observe(self) -> None:
        """Run the observer on the measured parameters, off the clock."""
        if self.observer is None:
            return
        self.clock.pause()
        try:
            with self._measured_parameters():
                self.stopped = bool(self.observer(self.state, self.model))
        finally:
            self.clock.resume()

    def write_results(self, params_path, log_path, vocab_words: list[str], metadata: Mapping | None) -> None:
        """Write the training log, put the best parameters into the model and write the parameters file
        with the run's summary."""
        state, cfg = self.state, self.cfg
        # Written only now: a declared output left by a killed job would make Snakemake refuse to rerun
        # it without --rerun-incomplete, while the checkpoint (not an output) carries the rows meanwhile.
        write_text(log_path, render_log(state.rows))
        summary = {"best_epoch": state.best_epoch, "best_loss": state.best_loss, "epochs_completed": state.epoch,
                   "examples_seen": state.examples_seen, "stopped_early": state.stopped_early,
                   "monitored_split": "valid" if self.monitors_valid else "train",
                   "monitored_tokens": self.monitored.num_tokens, "train": dataclasses.asdict(cfg)}
        for name, value in self.best.items():
            self.model.params[name][...] = value
        self.model.save(params_path, vocab_words, {**dict(metadata or {}), "training": summary})
        log.info("best %s loss %.4f after epoch %d; parameters written to %s",
                 summary["monitored_split"], state.best_loss, state.best_epoch, params_path)


class _Swapped:
    """`with`: the average's parameters in the model (nothing when no average runs), the model's own after."""

    def __init__(self, average: ParameterAverage | None, params: dict):
        self.average, self.params = average, params

    def __enter__(self):
        if self.average is not None:
            self.average.swap(self.params)

    def __exit__(self, *exc):
        if self.average is not None:
            self.average.swap(self.params)
        return False


def measurement_subset(split: Split, tokens: int, seed: int, documents: bool = False) -> Split:
    """The sentences the schedule measures on: all of `split` when `tokens` is 0 or covers it, else the
    shortest prefix of a random order (fixed by `seed`) of its whole sentences (with `documents`: its
    whole documents) that holds at least `tokens` predicted tokens, in file order. The same subset
    at every measurement and after a resume."""
    if not tokens or tokens >= split.num_tokens:
        return split
    lengths = np.diff(split.offsets[split.doc_offsets]) if documents else split.lengths
    order = np.random.default_rng([seed, 0, VALID_SUBSET_STREAM]).permutation(len(lengths))
    count = int(np.searchsorted(np.cumsum(lengths[order]), tokens)) + 1
    chosen = np.sort(order[:count])
    return split.documents(chosen) if documents else split.subset(chosen)


class _BatchStream:
    """The training batches as one stream of passes over the train split: pass p visits every
    sentence once, in minibatches of similar lengths (little work wasted on padding) in a random order
    that depends only on (seed, p). An epoch takes the stream's next batches, from the cursor
    (`state.data_pass`, `state.pass_batches`): one whole pass, or with `epoch_tokens` N until it has
    trained N tokens, crossing into the next pass when one runs out."""

    def __init__(self, train: Split, cfg: TrainConfig):
        self.train, self.cfg = train, cfg
        self.cached_pass, self.groups = 0, []

    def _groups(self, data_pass: int) -> list[np.ndarray]:
        if data_pass != self.cached_pass:
            rng = np.random.default_rng([self.cfg.seed, data_pass])
            self.groups = self.train.batch_groups(self.cfg.batch_size, rng=rng, sort_by_length=True)
            self.cached_pass = data_pass
        return self.groups

    def epoch(self, state: TrainState) -> Iterator[np.ndarray]:
        """The sentence indices of each batch of the next epoch; the cursor moves past each once trained."""
        tokens = 0
        while True:
            groups = self._groups(state.data_pass)
            if state.pass_batches == len(groups):
                state.data_pass, state.pass_batches = state.data_pass + 1, 0
                if not self.cfg.epoch_tokens:
                    return
                continue
            group = groups[state.pass_batches]
            yield group
            state.pass_batches += 1
            tokens += int(self.train.lengths[group].sum())
            if self.cfg.epoch_tokens and tokens >= self.cfg.epoch_tokens:
                return


def _stream_seed(*key: int) -> int:
    """A 32-bit seed for a device generator, a pure function of `key`."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def run_training(train_path, valid_path, vocab_path, params_path, checkpoint_path, log_path,
                 hyperparameters: Mapping, device: str = "auto", dtype: str = "float32",
                 metadata: Mapping | None = None, progress: bool = True, name: str = "train",
                 observer: Callable[[TrainState, RNNLM], bool] | None = None) -> TrainState:
    """The train stage from files: index matrices + vocabulary -> params, checkpoint, training log."""
    vocabulary = Vocabulary.load(vocab_path)
    splits = load_splits({"train": train_path, "valid": valid_path}, vocabulary.words, f"the vocabulary {vocab_path}")
    model_config, train_config = split_hyperparameters(hyperparameters, len(vocabulary), dtype)
    # The counts shape the word classes of `output: class`.
    model = RNNLM(model_config, get_backend(device), seed=train_config.seed, word_counts=vocabulary.counts)
    # One trainer per checkpoint: a second one (e.g. from a rerun while an orphan still trains) refuses.
    with exclusive_lock(checkpoint_path):
        return train(model, train_config, splits["train"], splits["valid"], vocabulary.words, params_path,
                     checkpoint_path, log_path, metadata=metadata, progress=progress, name=name, observer=observer)
