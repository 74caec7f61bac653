"""The checkpoint format: what a resumed run needs to continue exactly (`TrainState` and the arrays of
the model, the best parameters, Adam's moments and the parameter average), and the fingerprint that
decides whether a checkpoint belongs to the current run.

A checkpoint is only resumed when its fingerprint (model and schedule hyper-parameters, data,
vocabulary) matches; `epochs` is left out (as are `checkpoint_every` and `checkpoint_minutes`), so a
run killed on its way to 10 epochs can be resumed with epochs: 12.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnlm.data import Split
from rnnlm.io import RnnlmError, load_npz, save_npz
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.optim import Adam, ParameterAverage
from rnnlm.train_config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
# Settings that change when or how long a run trains, not the parameters after a given epoch.
RESUMABLE_SETTINGS = ("epochs", "checkpoint_every", "checkpoint_minutes")


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


def fingerprint(model_config: ModelConfig, train_config: TrainConfig, train_split: Split, valid: Split,
                vocab_words: list[str]) -> str:
    """Hash of everything that determines the parameters after a given epoch."""
    digest = hashlib.sha256()
    schedule = {k: v for k, v in dataclasses.asdict(train_config).items() if k not in RESUMABLE_SETTINGS}
    digest.update(json.dumps([dataclasses.asdict(model_config), schedule], sort_keys=True).encode())
    for split in (train_split, valid):
        for array in (split.x, split.y, split.offsets):
            digest.update(np.ascontiguousarray(array))  # hashed in place: no copy of a memory-mapped split
        if model_config.context == "document":  # the documents shape the streams (sentence mode: unchanged hash)
            digest.update(split.doc_offsets)
    digest.update("\n".join(vocab_words).encode())
    return digest.hexdigest()


def save_checkpoint(path, model: RNNLM, best_params: dict, state: TrainState, run_id: str,
                    optimizer: Adam | None = None, average: ParameterAverage | None = None,
                    carried_state=None) -> None:
    """`carried_state`: document mode's state after the last trained window (None: none carried)."""
    host = model.backend.to_host
    arrays = {f"param.{k}": host(v) for k, v in model.params.items()}
    if carried_state is not None:
        arrays["stream.carried_state"] = host(carried_state)
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


def load_checkpoint(path, model: RNNLM, run_id: str, optimizer: Adam | None = None,
                    windows=None) -> tuple[dict, TrainState, ParameterAverage | None] | None:
    """Restore the model's parameters (and the optimizer's moments) from `path`, with the best
    parameters, the training state and the parameter average if one had started; None (start
    afresh) if absent or from another run. `windows` (document mode's `rnnlm.streams.TrainingWindows`)
    gets the state its streams carried back."""
    arrays = _matching_arrays(path, model, run_id, optimizer)
    if arrays is None:
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
    if windows is not None:
        carried = arrays.get("stream.carried_state")
        windows.carried = None if carried is None else model.backend.asarray(carried)
    return best, state, average


def _matching_arrays(path, model: RNNLM, run_id: str, optimizer: Adam | None) -> dict | None:
    """The checkpoint's arrays when it exists, is readable, belongs to this run and is complete, else None."""
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
    return arrays
