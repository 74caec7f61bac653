"""Index stage: the train/valid/test sentences files -> word ids -> `Split`s, and padded minibatches.

Sentence i of a split has x = [SENTENCE_START] + ids and y = ids + [SENTENCE_END], stored flat:
x[offsets[i]:offsets[i+1]], y likewise; document j is sentences doc_offsets[j]:doc_offsets[j+1]. No
object arrays, no pickles. Each file also records the fingerprint of the vocabulary that made the
ids (`vocab_fingerprint`). Wherever a model or a vocabulary meets data, `load_splits` loads the
splits with every check: the vocabulary's fingerprint (`Split.check_vocabulary`), the id range
(`Split.check_ids`) and, for a model, its words against the workflow's vocabulary
(`Vocabulary.check_model_words`).
"""

from __future__ import annotations

import collections
import logging
import os
import zipfile
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from rnnlm.io import RnnlmError, map_npz, read_json, save_npz, write_json
from rnnlm.vocab import (SENTENCE_END_ID, SENTENCE_START_ID, UNKNOWN_ID, Vocabulary, fingerprint, require_sentences,
                         sentence_chunks)

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "valid", "test")


class Split:
    """A set of sentences as flat int32 `x`, `y` and int64 `offsets` (length n + 1, offsets[0] == 0),
    grouped into documents by int64 `doc_offsets` (length d + 1, from 0 to n: document j is sentences
    doc_offsets[j]:doc_offsets[j+1], in reading order; None: one sentence per document), and the
    fingerprint of the vocabulary whose ids they hold (None: unknown)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, offsets: np.ndarray, source: str = "split",
                 vocab_fingerprint: str | None = None, doc_offsets: np.ndarray | None = None):
        if doc_offsets is None:
            doc_offsets = np.arange(len(offsets), dtype=np.int64) if isinstance(offsets, np.ndarray) else None
        problem = _layout_problem(x, y, offsets) or _documents_problem(doc_offsets, len(offsets) - 1)
        if problem:
            raise RnnlmError(f"{source}: {problem}; re-create it with the index stage")
        self.x, self.y, self.offsets, self.doc_offsets = x, y, offsets, doc_offsets
        self.source, self.vocab_fingerprint = source, vocab_fingerprint
        self.lengths = np.diff(offsets)
        self.num_tokens = len(y)

    @property
    def num_documents(self) -> int:
        return len(self.doc_offsets) - 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_ids(cls, flat_ids: np.ndarray, lengths: np.ndarray, vocab_fingerprint: str | None = None,
                 doc_offsets: np.ndarray | None = None) -> "Split":
        """Build x/y from sentences given as concatenated word ids and per-sentence word counts, grouped
        into documents by `doc_offsets` (None: one sentence per document)."""
        flat_ids = np.asarray(flat_ids, dtype=np.int32)
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths + 1, out=offsets[1:])
        starts, ends = offsets[:-1], offsets[1:] - 1
        x = np.empty(offsets[-1], dtype=np.int32)
        y = np.empty(offsets[-1], dtype=np.int32)
        x[starts] = SENTENCE_START_ID
        y[ends] = SENTENCE_END_ID
        word_in_x = np.ones(len(x), dtype=bool)
        word_in_x[starts] = False
        word_in_y = np.ones(len(y), dtype=bool)
        word_in_y[ends] = False
        x[word_in_x] = flat_ids
        y[word_in_y] = flat_ids
        doc_offsets = None if doc_offsets is None else np.asarray(doc_offsets, dtype=np.int64)
        return cls(x, y, offsets, vocab_fingerprint=vocab_fingerprint, doc_offsets=doc_offsets)

    def subset(self, indices: np.ndarray) -> "Split":
        """The sentences at `indices`, in that order, each its own document (a subset of sentences need
        not keep any document whole; `documents` keeps them)."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Position k of the result comes from offsets_old[sentence] + (k - offsets_new[sentence]).
        source = np.repeat(self.offsets[:-1][indices] - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Split(self.x[source], self.y[source], offsets, vocab_fingerprint=self.vocab_fingerprint)

    def documents(self, indices: np.ndarray) -> "Split":
        """The documents at `indices`, in that order, each kept whole (their sentences in reading order)."""
        indices = np.asarray(indices, dtype=np.int64)
        counts = np.diff(self.doc_offsets)[indices]
        doc_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(counts, out=doc_offsets[1:])
        sentences = np.repeat(self.doc_offsets[:-1][indices] - doc_offsets[:-1], counts) + np.arange(doc_offsets[-1])
        subset = self.subset(sentences)
        subset.doc_offsets = doc_offsets
        return subset

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        """The split in `path`, its x, y and offsets memory-mapped (read-only): batches read only their
        sentences. A file from before documents were recorded (no `doc_offsets`) reads as one sentence
        per document."""
        arrays = map_npz(path, required=("x", "y", "offsets"))
        recorded = arrays.get("vocab_fingerprint")
        doc_offsets = arrays.get("doc_offsets")
        return cls(arrays["x"], arrays["y"], arrays["offsets"], source=str(path),
                   vocab_fingerprint=None if recorded is None else str(recorded),
                   doc_offsets=None if doc_offsets is None else np.asarray(doc_offsets))

    def save(self, path: str | Path) -> None:
        recorded = {} if self.vocab_fingerprint is None else {"vocab_fingerprint": np.array(self.vocab_fingerprint)}
        save_npz(path, x=self.x, y=self.y, offsets=self.offsets, doc_offsets=self.doc_offsets, **recorded)

    def check_vocabulary(self, words: list[str], owner: str) -> None:
        """Refuse to pair these ids with `words` (the vocabulary of `owner`, e.g. a parameters file)
        unless the split was indexed with exactly that vocabulary."""
        if self.vocab_fingerprint is None:
            raise RnnlmError(
                f"{self.source}: records no vocabulary fingerprint (made before fingerprints existed), so it cannot be "
                "matched to a model; re-create it with the index stage (snakemake --forcerun index)"
            )
        if self.vocab_fingerprint != fingerprint(words):
            raise RnnlmError(
                f"{self.source} was indexed with another vocabulary than {owner} ({len(words)} words): its ids mean "
                "other words; use the data the model was trained on, or retrain the model on this data"
            )

    def check_ids(self, vocab_size: int, name: str, owner: str = "the model's vocabulary") -> None:
        """Refuse ids outside `owner`, a vocabulary of `vocab_size` words (`name`: the split's, for the message)."""
        largest = max(int(self.x.max()), int(self.y.max())) if self.num_tokens else -1
        if largest >= vocab_size:
            raise RnnlmError(
                f"the {name} split uses ids up to {largest} but {owner} has {vocab_size} words: they come from "
                "different vocabularies; retrain the model on this data, or re-create the data with the index stage"
            )

    @staticmethod
    def count_tokens(path: str | os.PathLike) -> int:
        """Predicted tokens of a split file, from the header of its `y` array alone (no data read)."""
        with zipfile.ZipFile(path) as archive, archive.open("y.npy") as member:
            major, _ = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(member)
        return int(shape[0])

    def batch(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time-major padded (T, B) int32 x and y and float32 mask (1 real, 0 padding); T = longest sentence."""
        indices = np.asarray(indices, dtype=np.int64)
        lengths = self.lengths[indices]
        steps = int(lengths.max()) if len(indices) else 0
        time = np.arange(steps)[:, None]
        mask = time < lengths[None, :]
        # Padding positions read position 0 of their sentence and are then zeroed.
        positions = self.offsets[:-1][indices][None, :] + np.where(mask, time, 0)
        x = np.where(mask, self.x[positions], 0).astype(np.int32)
        y = np.where(mask, self.y[positions], 0).astype(np.int32)
        return x, y, mask.astype(np.float32)

    def batches(self, batch_size: int, rng: np.random.Generator | None = None,
                sort_by_length: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Minibatches covering every sentence once.

        rng: shuffle the sentences (None keeps file order). sort_by_length: put sentences of similar
        length together to waste less padding; with an rng, ties and the batch order are random.
        """
        for group in self.batch_groups(batch_size, rng, sort_by_length):
            yield self.batch(group)

    def batch_groups(self, batch_size: int, rng: np.random.Generator | None = None,
                     sort_by_length: bool = False) -> list[np.ndarray]:
        """The sentence indices of each minibatch `batches` yields, in the same order."""
        if batch_size < 1:
            raise RnnlmError(f"batch_size must be at least 1, got {batch_size}")
        order = np.arange(len(self)) if rng is None else rng.permutation(len(self))
        if sort_by_length:
            order = order[np.argsort(self.lengths[order], kind="stable")]
        groups = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        if sort_by_length and rng is not None:
            groups = [groups[index] for index in rng.permutation(len(groups))]
        return groups


def _documents_problem(doc_offsets: np.ndarray | None, sentences: int) -> str | None:
    """What is wrong with `doc_offsets` for a split of `sentences` sentences, or None."""
    if not isinstance(doc_offsets, np.ndarray) or doc_offsets.ndim != 1 or doc_offsets.dtype != np.int64:
        return "doc_offsets must be a 1-d int64 array"
    if len(doc_offsets) == 0 or doc_offsets[0] != 0 or doc_offsets[-1] != sentences:
        return f"doc_offsets must start at 0 and end at {sentences} (the number of sentences)"
    if np.any(np.diff(doc_offsets) < 1):
        return "doc_offsets must increase strictly (every document has at least one sentence)"
    return None


def load_splits(paths: Mapping[str, str | Path], words: list[str], owner: str,
                vocab_path: str | Path | None = None) -> dict[str, Split]:
    """The splits at `paths` (name -> file), each checked to hold ids of exactly `words`, the
    vocabulary of `owner` (a model's parameters file, or the vocabulary file itself). `vocab_path`:
    the workflow's vocabulary, which a model's `words` must equal."""
    if vocab_path is not None:
        Vocabulary.load(vocab_path).check_model_words(words)
    splits = {}
    for name, path in paths.items():
        split = Split.load(path)
        split.check_vocabulary(words, owner)
        split.check_ids(len(words), name, owner)
        splits[name] = split
    return splits


def _layout_problem(x: np.ndarray, y: np.ndarray, offsets: np.ndarray) -> str | None:
    """What is wrong with arrays meant to form a Split, or None."""
    for name, array, dtype in (("x", x, np.int32), ("y", y, np.int32), ("offsets", offsets, np.int64)):
        if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype != dtype:
            return f"{name} must be a 1-d {np.dtype(dtype).name} array"
    if len(x) != len(y):
        return f"x has {len(x)} entries but y has {len(y)}"
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(x):
        return f"offsets must start at 0 and end at {len(x)}"
    if np.any(np.diff(offsets) < 1):
        return "offsets must increase strictly (every sentence has at least one token)"
    if len(x) and (min(x.min(), y.min()) < 0):
        return "token ids must be non-negative"
    return None


def encode_sentences(sentences_path: str | Path, vocabulary: Vocabulary, min_length: int, max_length: int,
                     required: bool = True):
    """Word ids of the sentences whose word count lies in [min_length, max_length], their word counts,
    the source document number of each (non-decreasing; documents are separated by empty lines), and
    the drop counts. `required`: no such sentence is an error (else an empty result)."""
    flat, lengths, documents = [], [], []
    dropped: collections.Counter[str] = collections.Counter()
    for tokens, chunk_lengths, chunk_documents in sentence_chunks(sentences_path, min_length, max_length, dropped):
        flat.append(vocabulary.encode(tokens))
        lengths.append(chunk_lengths)
        documents.append(chunk_documents)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    documents = np.concatenate(documents) if documents else np.zeros(0, dtype=np.int64)
    if required:
        require_sentences(len(lengths), min_length, max_length, dropped)
    flat_ids = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int32)
    return flat_ids, lengths, documents, dropped["too_short"], dropped["too_long"]


def document_offsets(documents: np.ndarray) -> np.ndarray:
    """doc_offsets (int64, d + 1) of sentences whose source document numbers are `documents` (non-decreasing)."""
    starts = np.flatnonzero(np.diff(documents)) + 1
    return np.concatenate(([0], starts, [len(documents)])).astype(np.int64) if len(documents) else np.zeros(1, np.int64)


def _split_stats(split: Split) -> dict:
    words = split.y[split.y != SENTENCE_END_ID]
    return {
        "documents": split.num_documents,
        "sentences": len(split),
        "tokens": split.num_tokens,
        "unknown_rate": float(np.mean(words == UNKNOWN_ID)) if len(words) else 0.0,
    }


def build_index(sentence_paths: dict[str, str | Path], vocab_path: str | Path, output_paths: dict[str, str | Path],
                stats_path: str | Path, split_stats_path: str | Path | None = None, min_length: int = 1,
                max_length: int = 80) -> dict:
    """Run the index stage: each split from its own sentences file (`tokens/{train,valid,test}.txt`,
    written by the split stage or given by a standard-split corpus); write the .npz files (keys of
    `output_paths`) and the stats; return the stats.

    The length limits apply to the train split only: valid and test are kept whole, every line
    scored (the split stage has already applied the limits to every split of an ordinary corpus; a
    standard-split corpus's valid and test lines all count, as in published tables). The stats add
    the split stage's own (`split_stats_path`): its unit and the sentences it dropped."""
    vocabulary = Vocabulary.load(vocab_path)
    drawn = read_json(split_stats_path) if split_stats_path else {}
    stats = {"split_unit": drawn.get("split_unit"), "sentences_kept": 0,
             "dropped_too_short": drawn.get("dropped_too_short", 0), "dropped_too_long": drawn.get("dropped_too_long", 0),
             "vocabulary_size": len(vocabulary)}
    for name in SPLIT_NAMES:
        limits = (min_length, max_length) if name == "train" else (0, np.iinfo(np.int64).max)
        flat_ids, lengths, documents, too_short, too_long = encode_sentences(sentence_paths[name], vocabulary, *limits,
                                                                              required=name == "train")
        stats["sentences_kept"] += len(lengths)
        stats["dropped_too_short"] += too_short
        stats["dropped_too_long"] += too_long
        split = Split.from_ids(flat_ids, lengths, vocab_fingerprint=vocabulary.fingerprint,
                               doc_offsets=document_offsets(documents))
        stats[name] = _split_stats(split)
        split.save(output_paths[name])
        log.info("%s: %d documents, %d sentences, %d tokens", name, split.num_documents, len(split), split.num_tokens)
    write_json(stats_path, stats)
    return stats
