"""What training reports: the rows of train_log.csv, the lines and bar a person watching sees, and
the CPU clock that times both.

The epoch lines go to this module's logger, `rnnlm.progress`: Snakemake jobs show them on the
terminal as well as in their log (rnnlm.io.log_to).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import sys
import time

from tqdm import tqdm

from rnnlm.checkpoint import TrainState

progress_log = logging.getLogger(__name__)

# averaged: 1 when the epoch trained with the parameter average running (its valid_loss is the average's).
LOG_COLUMNS = ("epoch", "examples_seen", "train_loss", "valid_loss", "learning_rate", "tokens_per_s", "seconds",
               "cpu_seconds", "averaged")
# Columns that measure time rather than what was computed (they differ between identical runs).
TIMING_COLUMNS = ("tokens_per_s", "seconds", "cpu_seconds")
# Minimum wall seconds between two within-epoch progress lines.
PROGRESS_INTERVAL = 60.0


def log_row(state: TrainState, train_loss, valid_loss, seconds: float, tokens: int, averaged: bool) -> dict:
    """The train_log.csv row of the epoch `state` has just completed (None: not measured)."""
    return {"epoch": state.epoch, "examples_seen": state.examples_seen,
            "train_loss": None if train_loss is None else round(train_loss, 6),
            "valid_loss": None if valid_loss is None else round(valid_loss, 6),
            "learning_rate": state.learning_rate,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "seconds": round(seconds, 3), "cpu_seconds": round(state.cpu_seconds, 3), "averaged": int(averaged)}


def render_log(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # .get: rows of a checkpoint from before a column existed lack it.
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in LOG_COLUMNS})
    return buffer.getvalue()


class CpuClock:
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


class Progress:
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
        """After each epoch: its line, from the last row of the log."""
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
