"""A tiny synthetic language for the model tests: a fixed vocabulary and sentences from a small
grammar with strong word-to-word regularities, so a few epochs of training visibly beat a unigram."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnlm.data import Split
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
    return Split.from_ids(ids, np.array([len(sentence) for sentence in words], dtype=np.int64))


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
