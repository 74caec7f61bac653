"""The training settings of one model (`TrainConfig`, one `models:` entry's schedule) and the split of
a `models:` entry into the model's architecture and its training schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

from rnnlm.io import RnnlmError
from rnnlm.model import ModelConfig

OPTIMIZERS = ("sgd", "adam")


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
    bptt: int = 35                  # context: document only: tokens per training window
    weight_decay: float = 0.0       # each update shrinks every weight matrix by learning_rate x this

    def __post_init__(self):
        for name, value in dataclasses.asdict(self).items():  # NaN passes every comparison below
            if isinstance(value, float) and not math.isfinite(value):
                raise RnnlmError(f"training setting {name} must be a finite number, got {value}")
        positive = {"learning_rate": self.learning_rate, "batch_size": self.batch_size, "epochs": self.epochs,
                    "evaluate_every": self.evaluate_every, "patience": self.patience,
                    "checkpoint_every": self.checkpoint_every, "bptt": self.bptt}
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
        if not 0 <= self.weight_decay * self.learning_rate < 1:
            raise RnnlmError(f"training setting weight_decay must be >= 0 and its product with learning_rate below 1 "
                             f"(each update multiplies the weights by 1 - their product), got {self.weight_decay} "
                             f"with learning_rate {self.learning_rate}")
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
