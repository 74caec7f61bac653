"""Minibatch training of the RNN language model: the tutorial's schedule, clipping, dropout, early
stopping, resume; SGD (the tutorial's) or Adam (`rnnlm.optim`).

Schedule (the tutorial's `train_with_sgd`, evaluated on the validation split instead of the training
set): the loss is measured before training and every `evaluate_every` epochs; when it rises above the
previous measurement the learning rate is multiplied by `lr_decay` (halved by default). The
parameters with the lowest measured loss are kept, and training stops once `patience` measurements
in a row failed to improve on it.

Each update uses the gradient of the mean cross-entropy per predicted token of the batch, rescaled so
that its global L2 norm is at most `clip_norm` (0 disables clipping), computed through fresh dropout
masks when the model has dropout.

Large data: `epoch_tokens` N > 0 makes an "epoch" end after the batch that brings it to N training
tokens; the next one continues where it stopped in the same shuffled pass over the train split, and a
new pass (a new order) starts once one is used up, so over several epochs every sentence is seen.
`valid_tokens` N > 0 measures on a fixed subset of whole validation sentences holding about N tokens.
`checkpoint_minutes` adds a checkpoint after any epoch that ends that long after the last one.

Resume: every `checkpoint_every` epochs the whole training state (current and best parameters,
Adam's moments, the parameter average, learning rate, counters, log rows) is written atomically to the checkpoint file,
which is deleted once the parameters file is written. The batch order of pass p depends only on
(seed, p), the dropout masks of epoch e on (seed, e), and the checkpoint records where in its pass
the last epoch stopped, so a run restarted from a checkpoint performs exactly the updates the
uninterrupted run would have, and ends with byte-identical parameters on the same device. A
checkpoint is only resumed when its fingerprint (model and schedule hyper-parameters, data,
vocabulary) matches the current run; `epochs` is left out (as are `checkpoint_every` and
`checkpoint_minutes`), so a run killed on its way to 10 epochs can be resumed with epochs: 12.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
from tqdm import tqdm

from rnnlm.backend import get_backend
from rnnlm.data import Split
from rnnlm.evaluate import check_split_ids, mean_loss
from rnnlm.io import RnnlmError, load_npz, save_npz, write_text
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.optim import Adam, ParameterAverage
from rnnlm.runlock import exclusive_lock
from rnnlm.vocab import Vocabulary

log = logging.getLogger(__name__)
# Epoch lines: Snakemake jobs show them on the terminal as well as in their log (rnnlm.io.log_to).
progress_log = logging.getLogger("rnnlm.progress")

CHECKPOINT_FORMAT_VERSION = 1
# averaged: 1 when the epoch trained with the parameter average running (its valid_loss is the average's).
LOG_COLUMNS = ("epoch", "examples_seen", "train_loss", "valid_loss", "learning_rate", "tokens_per_s", "seconds",
               "cpu_seconds", "averaged")
# Columns that measure time rather than what was computed (they differ between identical runs).
TIMING_COLUMNS = ("tokens_per_s", "seconds", "cpu_seconds")
# Minimum wall seconds between two within-epoch progress lines.
PROGRESS_INTERVAL = 60.0
# A batch whose mean loss exceeds this multiple of ln(vocabulary size), the loss of uniform guessing,
# is diverging rather than learning.
EXPLODING_LOSS_FACTOR = 3.0
# Epoch e's dropout masks come from the generator seeded by (seed, e, DROPOUT_STREAM), apart from
# the batch order's (seed, pass): a resumed run draws the same masks as the uninterrupted one.
DROPOUT_STREAM = 1
# The validation subset of `valid_tokens` comes from the generator seeded by (seed, 0, VALID_SUBSET_STREAM).
VALID_SUBSET_STREAM = 2
OPTIMIZERS = ("sgd", "adam")
# Adam's usual step sizes are ~1e-3; one this large is almost surely an SGD rate left in place.
ADAM_RATE_WARNING = 0.1
# Wall clock of the checkpoint timer (`checkpoint_minutes`), in seconds; the tests replace it.
checkpoint_clock = time.monotonic


@dataclass(frozen=True)
class TrainConfig:
    learning_rate: float = 2.0
    batch_size: int = 4
    epochs: int = 15
    seed: int = 1
    clip_norm: float = 0.5
    evaluate_every: int = 1
    patience: int = 3
    checkpoint_every: int = 1
    lr_decay: float = 0.5
    optimizer: str = "sgd"
    averaging: bool = False
    epoch_tokens: int = 0           # 0: an epoch is one pass over the train split
    valid_tokens: int = 0           # 0: measure on the whole validation split
    checkpoint_minutes: float = 0.0  # 0: checkpoints every checkpoint_every epochs only

    def __post_init__(self):
        positive = {"learning_rate": self.learning_rate, "batch_size": self.batch_size, "epochs": self.epochs,
                    "evaluate_every": self.evaluate_every, "patience": self.patience,
                    "checkpoint_every": self.checkpoint_every}
        for name, value in positive.items():
            if not value > 0:
                raise RnnlmError(f"training setting {name} must be positive, got {value}")
        if self.optimizer not in OPTIMIZERS:
            raise RnnlmError(f"training setting optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if not 0 < self.lr_decay <= 1:
            raise RnnlmError(f"training setting lr_decay must be in (0, 1], got {self.lr_decay}")
        if not isinstance(self.averaging, bool):
            raise RnnlmError(f"training setting averaging must be true or false, got {self.averaging!r}")
        for name in ("epoch_tokens", "valid_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RnnlmError(f"training setting {name} must be a whole number >= 0 (0 = all), got {value!r}")
        if isinstance(self.checkpoint_minutes, bool) or not (isinstance(self.checkpoint_minutes, (int, float))
                                                             and self.checkpoint_minutes >= 0):
            raise RnnlmError(f"training setting checkpoint_minutes must be a number >= 0 (0 = off), "
                             f"got {self.checkpoint_minutes!r}")
        if self.clip_norm < 0 or self.seed < 0:
            raise RnnlmError(f"training settings clip_norm and seed must be >= 0, got {self.clip_norm} and {self.seed}")


def split_hyperparameters(hyper: Mapping, vocab_size: int, dtype: str) -> tuple[ModelConfig, TrainConfig]:
    """One `models:` entry of config.yaml -> the model's architecture and its training schedule."""
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)} - {"vocab_size", "dtype"}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(hyper) - model_keys - train_keys)
    if unknown:
        raise RnnlmError(f"unknown model settings {unknown}; allowed: {sorted(model_keys | train_keys)}")
    model_config = ModelConfig(vocab_size=vocab_size, dtype=dtype, **{k: v for k, v in hyper.items() if k in model_keys})
    train_config = TrainConfig(**{k: v for k, v in hyper.items() if k in train_keys})
    return model_config, train_config


@dataclass
class TrainState:
    """Everything besides the parameters that a resumed run needs to continue exactly."""

    epoch: int = 0                       # epochs completed
    examples_seen: int = 0
    learning_rate: float = 0.0
    best_loss: float = math.inf
    best_epoch: int = 0
    last_measured_loss: float | None = None
    measurements_without_improvement: int = 0
    stopped_early: bool = False
    optimizer_steps: int = 0             # Adam's update count (its bias correction depends on it)
    averaged_updates: int = 0            # samples in the parameter average; 0 = not started
    cpu_seconds: float = 0.0             # this process's CPU time spent training and measuring, all runs
    data_pass: int = 1                   # the pass over the train split the next batch comes from
    pass_batches: int = 0                # batches of that pass already trained
    rows: list[dict] = field(default_factory=list)


def fingerprint(model_config: ModelConfig, train_config: TrainConfig, train: Split, valid: Split,
                vocab_words: list[str]) -> str:
    """Hash of everything that determines the parameters after a given epoch."""
    digest = hashlib.sha256()
    schedule = {k: v for k, v in dataclasses.asdict(train_config).items()
                if k not in ("epochs", "checkpoint_every", "checkpoint_minutes")}
    digest.update(json.dumps([dataclasses.asdict(model_config), schedule], sort_keys=True).encode())
    for split in (train, valid):
        for array in (split.x, split.y, split.offsets):
            digest.update(np.ascontiguousarray(array))  # hashed in place: no copy of a memory-mapped split
    digest.update("\n".join(vocab_words).encode())
    return digest.hexdigest()


def save_checkpoint(path, model: RNNLM, best_params: dict, state: TrainState, run_id: str,
                    optimizer: Adam | None = None, average: ParameterAverage | None = None) -> None:
    host = model.backend.to_host
    arrays = {f"param.{k}": host(v) for k, v in model.params.items()}
    arrays.update({f"best.{k}": host(v) for k, v in best_params.items()})
    if optimizer is not None:
        state.optimizer_steps = optimizer.steps
        arrays.update({k: host(v) for k, v in optimizer.state_arrays().items()})
    state.averaged_updates = 0 if average is None else average.count
    if average is not None:
        arrays.update({k: host(v) for k, v in average.state_arrays().items()})
    save_npz(path, **arrays,
             state_json=np.array(json.dumps(dataclasses.asdict(state))),
             fingerprint=np.array(run_id),
             format_version=np.array(CHECKPOINT_FORMAT_VERSION))


def load_checkpoint(path, model: RNNLM, run_id: str,
                    optimizer: Adam | None = None) -> tuple[dict, TrainState, ParameterAverage | None] | None:
    """Restore the model's parameters (and the optimizer's moments) from `path`, with the best
    parameters, the training state and the parameter average if one had started; None (start
    afresh) if absent or from another run."""
    if not Path(path).exists():
        return None
    try:
        arrays = load_npz(path, required=("state_json", "fingerprint", "format_version"))
    except RnnlmError as exc:
        log.warning("ignoring unreadable checkpoint, starting afresh: %s", exc)
        return None
    if int(arrays["format_version"]) != CHECKPOINT_FORMAT_VERSION or str(arrays["fingerprint"]) != run_id:
        log.info("checkpoint %s belongs to other settings or data; starting afresh", path)
        return None
    if not all(np.isfinite(arrays[f"{kind}.{name}"]).all() for kind in ("param", "best") for name in model.params):
        log.warning("checkpoint %s holds non-finite parameters; starting afresh", path)
        return None
    if optimizer is not None and not all(key in arrays for key in optimizer.state_arrays()):
        log.warning("checkpoint %s lacks the optimizer's state; starting afresh", path)
        return None
    for name, value in model.params.items():
        value[...] = model.backend.asarray(arrays[f"param.{name}"])
    best = {name: model.backend.asarray(arrays[f"best.{name}"]) for name in model.params}
    state = TrainState(**json.loads(str(arrays["state_json"])))
    if optimizer is not None:
        optimizer.load_state(arrays, state.optimizer_steps, model.backend.asarray)
    average = None
    if state.averaged_updates:
        average = ParameterAverage(model.params, model.backend.xp)
        average.load_state(arrays, state.averaged_updates, model.backend.asarray)
    return best, state, average


def render_log(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # .get: rows of a checkpoint from before a column existed lack it.
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in LOG_COLUMNS})
    return buffer.getvalue()


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


def sgd_step(model: RNNLM, x, y, mask, learning_rate: float, clip_norm: float,
             check: Callable[[float, int, float], None] | None = None,
             dropout_rng=None) -> tuple[float, int, float]:
    """One SGD update on the batch's mean-per-token gradient, clipped to global norm `clip_norm`
    (0: no clipping); returns (summed loss, tokens, gradient norm). `check(loss, tokens, norm)` runs
    before the update is applied and may raise. A model with dropout draws the batch's masks from
    `dropout_rng` (a `backend.rng`); without one it trains the deterministic network.

    U's gradient stays sparse (the batch's words only). Without clipping the step size is known
    before the gradient, so the output layer's update is fused into the GEMM that forms its
    gradient: it is applied before `check` runs, and the norm covers the other parameters only.
    With clipping the output layer's gradient stays in the buffer the layer keeps between steps
    (`keep_output_gradients`), normed and applied as one contiguous array.
    """
    fused_step = None
    if not clip_norm:
        fused_step = -learning_rate / int((model.backend.to_host(mask) > 0).sum())
    dropout = None if dropout_rng is None else model.dropout_masks(dropout_rng, x.shape)
    loss, count, grads = model.loss_and_grads(x, y, mask, sparse_input=True, output_step=fused_step, dropout=dropout,
                                              keep_output_gradients=True, loss_on_device=True)
    loss, norm = _loss_and_gradient_norm(model, loss, grads, count)
    if check is not None:
        check(loss, count, norm)
    model.apply_update(grads, -learning_rate / count * _clip_factor(norm, clip_norm))
    return loss, count, norm


def adam_step(model: RNNLM, optimizer: Adam, x, y, mask, learning_rate: float, clip_norm: float,
              check: Callable[[float, int, float], None] | None = None,
              dropout_rng=None) -> tuple[float, int, float]:
    """As `sgd_step`, with an Adam update: dense for every parameter but U, whose gradient stays
    sparse and gets the lazy update of `rnnlm.optim.Adam` (the batch's words only)."""
    dropout = None if dropout_rng is None else model.dropout_masks(dropout_rng, x.shape)
    loss, count, grads = model.loss_and_grads(x, y, mask, sparse_input=True, dropout=dropout, loss_on_device=True)
    loss, norm = _loss_and_gradient_norm(model, loss, grads, count)
    if check is not None:
        check(loss, count, norm)
    optimizer.update(model.params, grads, _clip_factor(norm, clip_norm) / count, learning_rate)
    return loss, count, norm


def train(model: RNNLM, train_config: TrainConfig, train: Split, valid: Split, vocab_words: list[str],
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
    vocab_size = model.config.vocab_size
    if len(vocab_words) != vocab_size:
        raise RnnlmError(f"the vocabulary has {len(vocab_words)} words but the model expects {vocab_size}; rebuild the vocabulary")
    if len(train) == 0:
        raise RnnlmError("the train split is empty; use a larger corpus or smaller valid/test fractions")
    check_split_ids(train, vocab_size, "train")
    check_split_ids(valid, vocab_size, "valid")
    # Without a validation split the schedule falls back to the tutorial's: the training loss.
    monitors_valid = len(valid) > 0
    monitored = measurement_subset(valid if monitors_valid else train, cfg.valid_tokens, cfg.seed)
    if cfg.valid_tokens:
        log.info("measuring on %d sentences (%d tokens) of the %s split", len(monitored), monitored.num_tokens,
                 "valid" if monitors_valid else "train")
    run_id = fingerprint(model.config, cfg, train, valid, vocab_words)
    backend = model.backend
    clock = _CpuClock()
    stream = _BatchStream(train, cfg)
    report = _Progress(name, cfg.epochs, cfg.epoch_tokens or train.num_tokens, enabled=progress)

    optimizer = Adam(model.params, backend.xp) if cfg.optimizer == "adam" else None
    if optimizer is not None and cfg.learning_rate >= ADAM_RATE_WARNING:
        log.warning("learning_rate %g is very large for Adam (usual: 0.001 to 0.005)", cfg.learning_rate)
    restored = load_checkpoint(checkpoint_path, model, run_id, optimizer)
    average = None
    stop = False
    if restored is None:
        state = TrainState(learning_rate=cfg.learning_rate)
        best = {k: v.copy() for k, v in model.params.items()}
        _measure(model, monitored, monitors_valid, state, best, cfg, train_loss=None, seconds=0.0, tokens=0,
                 clock=clock)
        report.measured(state)
        stop = _observe(observer, state, model, None, clock)
    else:
        best, state, average = restored
        log.info("resuming from %s after epoch %d (learning rate %g)", checkpoint_path, state.epoch, state.learning_rate)

    kept = (f"the checkpoint after epoch {state.epoch}, {checkpoint_path}, is kept" if restored
            else "no checkpoint had been written yet")
    explode_at = EXPLODING_LOSS_FACTOR * math.log(vocab_size)
    last_checkpoint = checkpoint_clock()
    try:
        while state.epoch < cfg.epochs and not state.stopped_early and not stop:
            epoch = state.epoch + 1
            dropout_rng = backend.rng(_stream_seed(cfg.seed, epoch, DROPOUT_STREAM))
            started = time.perf_counter()
            loss_sum, tokens = 0.0, 0
            report.start_epoch(epoch)

            def check(batch_loss: float, count: int, norm: float) -> None:
                if not (math.isfinite(batch_loss) and math.isfinite(norm)) or batch_loss / count > explode_at:
                    raise Divergence(
                        f"training diverged in epoch {epoch}: batch loss {batch_loss / count:.4g} per token, "
                        f"gradient norm {norm:.4g} (uniform guessing scores {math.log(vocab_size):.4g}); "
                        + divergence_advice(cfg, state.learning_rate, model.config.activation)
                    )

            for group in stream.epoch(state):
                x, y, mask = train.batch(group)
                # host arrays: the model checks them and finds the real tokens on the host, then
                # uploads them (on a GPU the batch's one synchronisation is its loss and norm)
                batch = (x, y, mask)
                if optimizer is None:
                    batch_loss, count, _ = sgd_step(model, *batch, state.learning_rate, cfg.clip_norm, check, dropout_rng)
                else:
                    batch_loss, count, _ = adam_step(model, optimizer, *batch, state.learning_rate, cfg.clip_norm,
                                                     check, dropout_rng)
                if average is not None:
                    average.add(model.params)
                loss_sum += batch_loss
                tokens += int(count)
                state.examples_seen += x.shape[1]
                report.batch(tokens, loss_sum / tokens)
            state.epoch = epoch
            seconds = time.perf_counter() - started
            if epoch % cfg.evaluate_every == 0 or epoch == cfg.epochs:
                average = _measure(model, monitored, monitors_valid, state, best, cfg, train_loss=loss_sum / tokens,
                                   seconds=seconds, tokens=tokens, average=average, clock=clock)
                stop = _observe(observer, state, model, average, clock)
            else:
                state.cpu_seconds += clock.lap()
                state.rows.append(_row(state, loss_sum / tokens, None, seconds, tokens, average is not None))
            report.measured(state, averaged=average is not None)
            now = checkpoint_clock()
            timer_due = cfg.checkpoint_minutes and now - last_checkpoint >= 60 * cfg.checkpoint_minutes
            if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs or state.stopped_early or stop or timer_due:
                save_checkpoint(checkpoint_path, model, best, state, run_id, optimizer, average)
                last_checkpoint = now
                kept = f"the checkpoint after epoch {epoch}, {checkpoint_path}, is kept"
    except Divergence as exc:
        raise Divergence(f"{exc}; {kept}") from None
    finally:
        report.close()

    # Written only now: a declared output left by a killed job would make Snakemake refuse to rerun
    # it without --rerun-incomplete, while the checkpoint (not an output) carries the rows meanwhile.
    write_text(log_path, render_log(state.rows))
    summary = {"best_epoch": state.best_epoch, "best_loss": state.best_loss, "epochs_completed": state.epoch,
               "examples_seen": state.examples_seen, "stopped_early": state.stopped_early,
               "monitored_split": "valid" if monitors_valid else "train", "monitored_tokens": monitored.num_tokens,
               "train": dataclasses.asdict(cfg)}
    for name, value in best.items():
        model.params[name][...] = value
    model.save(params_path, vocab_words, {**dict(metadata or {}), "training": summary})
    # A finished run needs no resume point, and the checkpoint records wall times, which would make
    # the results differ from run to run.
    Path(checkpoint_path).unlink(missing_ok=True)
    log.info("best %s loss %.4f after epoch %d; parameters written to %s",
             summary["monitored_split"], state.best_loss, state.best_epoch, params_path)
    return state


def measurement_subset(split: Split, tokens: int, seed: int) -> Split:
    """The sentences the schedule measures on: all of `split` when `tokens` is 0 or covers it, else the
    shortest prefix of a random order (fixed by `seed`) of its whole sentences that holds at least
    `tokens` predicted tokens, in file order. The same subset at every measurement and after a resume."""
    if not tokens or tokens >= split.num_tokens:
        return split
    order = np.random.default_rng([seed, 0, VALID_SUBSET_STREAM]).permutation(len(split))
    count = int(np.searchsorted(np.cumsum(split.lengths[order]), tokens)) + 1
    return split.subset(np.sort(order[:count]))


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


class _CpuClock:
    """This process's CPU seconds, in laps; `pause()` ... `resume()` leaves time out of the next lap."""

    def __init__(self):
        self._start = time.process_time()
        self._paused_at = None

    def lap(self) -> float:
        now = time.process_time()
        elapsed, self._start = now - self._start, now
        return elapsed

    def pause(self) -> None:
        self._paused_at = time.process_time()

    def resume(self) -> None:
        self._start += time.process_time() - self._paused_at


def _observe(observer, state: TrainState, model: RNNLM, average: ParameterAverage | None, clock: _CpuClock) -> bool:
    """Run the observer on the measured parameters (the average while one runs), off the clock."""
    if observer is None:
        return False
    clock.pause()
    if average is not None:
        average.swap(model.params)
    try:
        return bool(observer(state, model))
    finally:
        if average is not None:
            average.swap(model.params)
        clock.resume()


class _Progress:
    """What a person watching sees: one line per epoch (loss, perplexity, speed, CPU time), and
    within long epochs a bar on a terminal or, in a log file, a plain line at most every
    PROGRESS_INTERVAL seconds (no carriage returns)."""

    def __init__(self, name: str, epochs: int, tokens: int, enabled: bool):
        self.name, self.epochs, self.tokens, self.enabled = name, epochs, tokens, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = None
        self.epoch = 0
        self.next_line = 0.0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.next_line = time.monotonic() + PROGRESS_INTERVAL
        if self.tty:
            self.bar = tqdm(total=self.tokens, unit="tok", file=sys.stderr, leave=False, dynamic_ncols=True,
                            desc=f"{self.name} epoch {epoch}/{self.epochs}")

    def batch(self, tokens: int, mean_loss: float) -> None:
        """After each batch: the epoch's tokens so far and their mean loss."""
        if self.bar is not None:
            self.bar.update(tokens - self.bar.n)
            self.bar.set_postfix(loss=f"{mean_loss:.3f}", refresh=False)
        elif self.enabled and time.monotonic() >= self.next_line:
            self.next_line = time.monotonic() + PROGRESS_INTERVAL
            progress_log.info("%s: epoch %d/%d: %s tokens so far, train loss %.3f", self.name, self.epoch,
                              self.epochs, f"{tokens:,}", mean_loss)

    def measured(self, state: TrainState, averaged: bool = False) -> None:
        self.close()
        if not self.enabled:
            return
        row = state.rows[-1]
        parts = [f"{self.name}: epoch {row['epoch']}/{self.epochs}"]
        if row["train_loss"] is not None:
            parts.append(f"train loss {row['train_loss']:.3f}")
        if row["valid_loss"] is not None:
            parts.append(f"valid perplexity {math.exp(row['valid_loss']):.1f}")
        if row["tokens_per_s"]:
            parts.append(f"{row['tokens_per_s']:,.0f} tokens/s")
        parts.append(f"lr {row['learning_rate']:g}")
        parts.append(f"{row['cpu_seconds']:,.0f} CPU-s")
        if averaged:
            parts.append("averaged parameters")
        if state.best_epoch == row["epoch"] and row["valid_loss"] is not None:
            parts.append("best")
        progress_log.info(", ".join(parts))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stream_seed(*key: int) -> int:
    """A 32-bit seed for a device generator, a pure function of `key`."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def _row(state: TrainState, train_loss, valid_loss, seconds: float, tokens: int, averaged: bool) -> dict:
    return {"epoch": state.epoch, "examples_seen": state.examples_seen,
            "train_loss": None if train_loss is None else round(train_loss, 6),
            "valid_loss": None if valid_loss is None else round(valid_loss, 6),
            "learning_rate": state.learning_rate,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "seconds": round(seconds, 3), "cpu_seconds": round(state.cpu_seconds, 3), "averaged": int(averaged)}


def _measure(model: RNNLM, monitored: Split, monitored_is_valid: bool, state: TrainState, best: dict,
             cfg: TrainConfig, train_loss, seconds: float, tokens: int,
             average: ParameterAverage | None = None, clock: "_CpuClock | None" = None) -> ParameterAverage | None:
    """Measure the monitored loss, log it, then apply the schedule and early stopping; returns the
    parameter average (started here, with `averaging`, at the first rise of the loss).

    While an average runs, it is what gets measured and kept as the best parameters: the model's
    own parameters are swapped out for the measurement and back in for further training."""
    if average is not None:
        average.swap(model.params)
    try:
        loss = mean_loss(model, monitored)
    except RnnlmError as exc:
        raise Divergence(f"training diverged after epoch {state.epoch}: {exc}") from None
    if clock is not None:
        state.cpu_seconds += clock.lap()
    state.rows.append(_row(state, train_loss, loss if monitored_is_valid else None, seconds, tokens,
                           average is not None))
    rose = state.last_measured_loss is not None and loss > state.last_measured_loss
    state.last_measured_loss = loss
    if loss < state.best_loss:
        state.best_loss, state.best_epoch = loss, state.epoch
        state.measurements_without_improvement = 0
        for name, value in model.params.items():
            best[name][...] = value
    else:
        state.measurements_without_improvement += 1
        if state.measurements_without_improvement >= cfg.patience:
            state.stopped_early = True
            log.info("no improvement in %d measurements: stopping early", cfg.patience)
    if average is not None:
        average.swap(model.params)
    elif rose and cfg.averaging:
        # The learning rate stays: from now on the average, not a smaller step, damps the noise.
        average = ParameterAverage(model.params, model.backend.xp)
        log.info("loss rose: averaging the parameters from now on (learning rate stays %g)", state.learning_rate)
    elif rose:
        state.learning_rate *= cfg.lr_decay
        log.info("loss rose: learning rate multiplied by %g to %g", cfg.lr_decay, state.learning_rate)
    return average


def run_training(train_path, valid_path, vocab_path, params_path, checkpoint_path, log_path,
                 hyperparameters: Mapping, device: str = "auto", dtype: str = "float32",
                 metadata: Mapping | None = None, progress: bool = True, name: str = "train",
                 observer: Callable[[TrainState, RNNLM], bool] | None = None) -> TrainState:
    """The train stage from files: index matrices + vocabulary -> params, checkpoint, training log."""
    vocabulary = Vocabulary.load(vocab_path)
    train_split, valid_split = Split.load(train_path), Split.load(valid_path)
    for split in (train_split, valid_split):
        split.check_vocabulary(vocabulary.words, f"the vocabulary {vocab_path}")
    model_config, train_config = split_hyperparameters(hyperparameters, len(vocabulary), dtype)
    # The counts shape the word classes of `output: class`.
    model = RNNLM(model_config, get_backend(device), seed=train_config.seed, word_counts=vocabulary.counts)
    # One trainer per checkpoint: a second one (e.g. from a rerun while an orphan still trains) refuses.
    with exclusive_lock(checkpoint_path):
        return train(model, train_config, train_split, valid_split, vocabulary.words, params_path, checkpoint_path,
                     log_path, metadata=metadata, progress=progress, name=name, observer=observer)
