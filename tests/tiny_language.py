"""A tiny synthetic language for the model tests: a fixed vocabulary and sentences from a small
grammar with strong word-to-word regularities, so a few epochs of training visibly beat a unigram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnlm.backend import get_backend
from rnnlm.data import Split
from rnnlm.model import RNNLM
from rnnlm.train import train
from rnnlm.train_config import split_hyperparameters
from rnnlm.vocab import SPECIAL_TOKENS, Vocabulary

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "her sister"]
VERBS = ["sees", "likes", "finds", "follows"]
OBJECTS = ["the ball", "a tree", "the river", "some bread", "the house"]
ENDINGS = ["", "today", "again", "in the park", "at night"]
WORDS = sorted({w for phrase in SUBJECTS + VERBS + OBJECTS + ENDINGS for w in phrase.split()})
VOCAB_WORDS = [*SPECIAL_TOKENS, *WORDS]


def sentences(count: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    pick = lambda options: options[rng.integers(len(options))].split()  # noqa: E731
    return [pick(SUBJECTS) + pick(VERBS) + pick(OBJECTS) + pick(ENDINGS) for _ in range(count)]


def split_of(words: list[list[str]], vocabulary: Vocabulary | None = None) -> Split:
    vocabulary = vocabulary or vocabulary_of()
    ids = np.concatenate([vocabulary.encode(sentence) for sentence in words])
    return Split.from_ids(ids, np.array([len(sentence) for sentence in words], dtype=np.int64),
                          vocab_fingerprint=vocabulary.fingerprint)


def vocabulary_of() -> Vocabulary:
    return Vocabulary(VOCAB_WORDS, np.ones(len(VOCAB_WORDS), dtype=np.int64))


def tiny_splits(train: int = 120, valid: int = 20, test: int = 20) -> dict[str, Split]:
    return {"train": split_of(sentences(train, 0)), "valid": split_of(sentences(valid, 1)),
            "test": split_of(sentences(test, 2))}


def write_tiny_data(directory: Path, **sizes) -> tuple[Path, Path]:
    """data/{train,valid,test}.npz and vocab.tsv under `directory`; returns (data dir, vocab path)."""
    data = directory / "data"
    for name, split in tiny_splits(**sizes).items():
        split.save(data / f"{name}.npz")
    vocab = directory / "vocab.tsv"
    vocabulary_of().save(vocab)
    return data, vocab


FAST = {"hidden_size": 12, "learning_rate": 0.5, "batch_size": 8, "epochs": 4, "seed": 3}


def run(tmp_path: Path, hyper: dict | None = None, splits: dict | None = None, name: str = "m", **kwargs):
    """Train on the tiny language into tmp_path/name; returns (state, model, directory)."""
    splits = splits or tiny_splits()
    model_config, train_config = split_hyperparameters({**FAST, **(hyper or {})}, len(VOCAB_WORDS), "float32")
    model = RNNLM(model_config, get_backend("cpu"), seed=train_config.seed)
    out = tmp_path / name
    state = train(model, train_config, splits["train"], splits["valid"], VOCAB_WORDS, out / "params.npz",
                  out / "checkpoint.npz", out / "train_log.csv", progress=False, **kwargs)
    return state, model, out
