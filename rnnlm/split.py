"""Split stage: sentences -> train/valid/test sentences files, drawn before the vocabulary exists.

Valid and test are drawn as whole units, seeded (`split_unit`, docs/data.md):

- ``document``: the corpus's documents (a CSV row, a topic of the built-in corpus): a collection
  of unrelated texts, each kept whole.
- ``block``: the corpus is one text (a play, a novel: its blank-line paragraphs are consecutive
  parts of it), read as one stream and cut into blocks of `block_sentences` consecutive sentences
  (fewer in a corpus too small for MIN_BLOCKS such blocks).
- ``sentence``: single sentences, today's tutorial split (the same membership as before units existed).
- ``auto``: ``block`` for a plain-text corpus or one with fewer than AUTO_MIN_DOCUMENTS documents,
  ``document`` otherwise.

Units are taken from the end of a seeded permutation: test until it holds its share of the sentences
(passing over a unit that would overshoot it by more than it brings), then valid likewise, the rest
is train (with sentence units exactly the former split).
Each split keeps corpus order, and its documents are the maximal runs of sentences that are
consecutive in the corpus, come from one source document (in block mode the whole corpus is one)
and went to that split: a removed block cuts a train document in two, and two drawn neighbours
stay one stream. The length limits are applied first: a dropped sentence is skipped (its document's
context goes on without it, it never joins unrelated text), and a document left without sentences
disappears. The files are in the sentences format (one empty line between documents), so the vocab
stage (train only) and the index stage read them like a standard-split corpus's.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import operator
from pathlib import Path

import numpy as np

from rnnlm.data import SPLIT_NAMES
from rnnlm.io import RnnlmError, atomic_path, read_json, write_json
from rnnlm.vocab import DocumentNumbers, check_length_limits, kept_lines, line_chunks, require_sentences

log = logging.getLogger(__name__)

SPLIT_UNITS = ("auto", "document", "block", "sentence")
# Defaults of the config keys (the schema's defaults equal these; tested).
SPLIT_UNIT = "auto"
BLOCK_SENTENCES = 50
VALID_FRACTION = 0.05
TEST_FRACTION = 0.05
SPLIT_SEED = 0
# auto takes documents as units only when there are enough for valid and test (5 % each) to hold
# a few of them; fewer documents are read as one text cut into blocks.
AUTO_MIN_DOCUMENTS = 50
# Blocks are made shorter than split_block_sentences where the corpus would give fewer than this many
# (a small corpus), so that 5 % valid and test still hold a few blocks each.
MIN_BLOCKS = 100
# Written before a line that starts a new document of its split (not before a split's first line).
_PREFIX = ("", "\n")


def split_sizes(sentences: int, valid_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, valid, test) sentence targets; a positive fraction always gets at least one sentence."""
    def size(fraction: float) -> int:
        return max(1, round(fraction * sentences)) if fraction > 0 else 0

    valid, test = size(valid_fraction), size(test_fraction)
    train = sentences - valid - test
    if train < 1:
        raise RnnlmError(
            f"only {sentences} sentences remain after length filtering, too few for a training split besides "
            f"{valid} validation and {test} test sentences; use a larger corpus, widen min/max_sentence_length "
            "or lower valid_fraction/test_fraction"
        )
    return train, valid, test


def resolve_unit(unit: str, corpus_format: str | None, documents: int) -> str:
    """The unit `auto` stands for (see the module docstring); other values are returned as they are."""
    if unit not in SPLIT_UNITS:
        raise RnnlmError(f"split_unit must be one of {SPLIT_UNITS}, not {unit!r}")
    if unit != "auto":
        return unit
    return "block" if corpus_format == "text" or documents < AUTO_MIN_DOCUMENTS else "document"


def draw_units(unit_sizes: np.ndarray, valid_target: int, test_target: int, seed: int) -> np.ndarray:
    """Split label (0 train, 1 valid, 2 test, int8) of each unit. From the end of a seeded permutation,
    test takes each unit that brings its size closer to `test_target` sentences (a unit larger than
    twice what is missing is passed over), until it is reached; then valid likewise; a positive
    target gets at least one unit. With units of one sentence this is the permutation's last
    `test_target` units for test and the `valid_target` before them for valid."""
    labels = np.zeros(len(unit_sizes), dtype=np.int8)
    order = np.random.default_rng(seed).permutation(len(unit_sizes))[::-1]
    for label, target in ((2, test_target), (1, valid_target)):
        if target <= 0:
            continue
        taken, passed, total, remaining = [], [], 0, order
        # Every unit before the one that reaches the target brings the total closer: take those at
        # once (a cumulative sum), then decide on that one; a passed-over unit lets the search go on.
        while total < target and len(remaining):
            reached = total + np.cumsum(unit_sizes[remaining])
            before = int(np.searchsorted(reached, target))
            taken.append(remaining[:before])
            if before == len(remaining):
                remaining = remaining[:0]
                break
            total = int(reached[before - 1]) if before else total
            unit, remaining = remaining[before], remaining[before + 1:]
            if 2 * total + int(unit_sizes[unit]) <= 2 * target:
                taken.append(np.array([unit]))
                total += int(unit_sizes[unit])
            else:
                passed.append(unit)
        taken = np.concatenate(taken) if taken else np.zeros(0, dtype=np.int64)
        rest = np.concatenate([np.array(passed, dtype=np.int64), remaining])
        if len(taken) == 0:  # every unit was larger than twice the target: the first one drawn
            taken, rest = rest[:1], rest[1:]
        labels[taken] = label
        order = rest
    if len(order) == 0:
        raise RnnlmError(
            f"the corpus has only {len(unit_sizes)} split units, too few for a training split besides the validation "
            "and test ones; use split_unit: block (or sentence), smaller split_block_sentences, or lower "
            "valid_fraction/test_fraction"
        )
    return labels


def assign(lengths: np.ndarray, documents: np.ndarray, unit: str, block_sentences: int,
           valid_fraction: float, test_fraction: float, seed: int) -> dict:
    """The split of each kept sentence (corpus order; `lengths` its words, `documents` its source
    document number, non-decreasing): `label` (int8), `starts` (bool: the sentence starts a document
    of its split), `unit_labels` (the split of each unit) and `block_sentences` (the block length used)."""
    if valid_fraction + test_fraction >= 1:
        raise RnnlmError(f"valid_fraction + test_fraction = {valid_fraction + test_fraction} leaves nothing to train on; lower them")
    if block_sentences < 1:
        raise RnnlmError(f"split_block_sentences must be at least 1, got {block_sentences}")
    sentences = len(lengths)
    new_document = np.ones(sentences, dtype=bool)
    new_document[1:] = documents[1:] != documents[:-1]
    _, valid_target, test_target = split_sizes(sentences, valid_fraction, test_fraction)
    if unit == "sentence":
        unit_of = np.arange(sentences, dtype=np.int64)
    elif unit == "document":
        unit_of = np.cumsum(new_document) - 1
    else:  # block: the corpus as one stream
        block_sentences = block_length(sentences, block_sentences)
        unit_of = np.arange(sentences, dtype=np.int64) // block_sentences
        new_document[1:] = False
    unit_labels = draw_units(np.bincount(unit_of), valid_target, test_target, seed)
    label = unit_labels[unit_of]
    starts = new_document.copy()
    starts[1:] |= label[1:] != label[:-1]
    return {"label": label, "starts": starts, "unit_labels": unit_labels, "block_sentences": block_sentences}


def block_length(sentences: int, block_sentences: int) -> int:
    """Sentences per block: `block_sentences`, or fewer where that would give under MIN_BLOCKS blocks."""
    return max(1, min(block_sentences, sentences // MIN_BLOCKS))


def read_layout(sentences_path: str | Path, min_length: int, max_length: int) -> tuple[np.ndarray, np.ndarray, collections.Counter]:
    """Word counts and source document numbers of the sentences within the length limits, and the
    dropped counts, read chunk by chunk (the same chunks `write_splits` reads)."""
    check_length_limits(min_length, max_length)
    lengths, documents = [], []
    dropped: collections.Counter[str] = collections.Counter()
    numbers = DocumentNumbers()
    for _, _, chunk, _ in line_chunks(sentences_path):
        kept = kept_lines(chunk, min_length, max_length, dropped)
        document = numbers(chunk)
        lengths.append(chunk[kept])
        documents.append(document[kept])
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    require_sentences(len(lengths), min_length, max_length, dropped)
    return lengths, np.concatenate(documents), dropped


def write_splits(sentences_path: str | Path, output_paths: dict[str, str | Path], min_length: int, max_length: int,
                 label: np.ndarray, starts: np.ndarray) -> None:
    """Stream the kept sentences into their splits' files (atomic), one empty line before each
    sentence that starts a document of its split, except a split's first."""
    first = np.zeros(len(label), dtype=bool)
    for index in range(len(SPLIT_NAMES)):
        members = np.flatnonzero(label == index)
        if len(members):
            first[members[0]] = True
    separator = starts & ~first
    with contextlib.ExitStack() as stack:
        handles = []
        for name in SPLIT_NAMES:
            tmp = stack.enter_context(atomic_path(output_paths[name]))
            handles.append(stack.enter_context(open(tmp, "w", encoding="utf-8", newline="\n")))
        position = 0
        for lines, _, lengths, canonical in line_chunks(sentences_path):
            kept = kept_lines(lengths, min_length, max_length)
            lines = list(itertools.compress(lines, kept.tolist()))
            if not canonical:
                lines = [" ".join(line.split()) + "\n" for line in lines]
            elif lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            chunk_label = label[position : position + len(lines)]
            chunk_separator = separator[position : position + len(lines)]
            position += len(lines)
            for index, handle in enumerate(handles):
                mine = (chunk_label == index).tolist()
                prefixes = map(_PREFIX.__getitem__, itertools.compress(chunk_separator.tolist(), mine))
                handle.write("".join(map(operator.add, prefixes, itertools.compress(lines, mine))))
        if position != len(label):
            raise RnnlmError(f"{sentences_path} changed while the split stage read it; re-run the workflow")


def split_corpus(sentences_path: str | Path, output_paths: dict[str, str | Path], stats_path: str | Path,
                 manifest_path: str | Path | None = None, unit: str = SPLIT_UNIT, block_sentences: int = BLOCK_SENTENCES,
                 valid_fraction: float = VALID_FRACTION, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED,
                 min_length: int = 1, max_length: int = 80) -> dict:
    """Run the split stage: write `output_paths` (train/valid/test sentences files) and the stats; return them.

    `manifest_path`: the download stage's manifest, whose `format` ("text" for a plain-text file)
    `auto` reads."""
    lengths, documents, dropped = read_layout(sentences_path, min_length, max_length)
    source_documents = int(np.count_nonzero(np.diff(documents)) + 1)
    corpus_format = read_json(manifest_path).get("format") if manifest_path else None
    resolved = resolve_unit(unit, corpus_format, source_documents)
    drawn = assign(lengths, documents, resolved, block_sentences, valid_fraction, test_fraction, seed)
    write_splits(sentences_path, output_paths, min_length, max_length, drawn["label"], drawn["starts"])
    stats = {"split_unit": resolved, "requested_split_unit": unit, "seed": seed,
             "valid_fraction": valid_fraction, "test_fraction": test_fraction,
             "sentences_kept": len(lengths), "dropped_too_short": dropped["too_short"],
             "dropped_too_long": dropped["too_long"], "source_documents": source_documents, "splits": {}}
    if resolved == "block":
        stats["block_sentences"] = drawn["block_sentences"]
    for index, name in enumerate(SPLIT_NAMES):
        member = drawn["label"] == index
        stats["splits"][name] = {"units": int(np.count_nonzero(drawn["unit_labels"] == index)),
                                 "documents": int(np.count_nonzero(drawn["starts"] & member)),
                                 "sentences": int(np.count_nonzero(member)),
                                 "tokens": int(lengths[member].sum())}
        log.info("%s: %d %s units, %d documents, %d sentences, %d tokens", name, stats["splits"][name]["units"],
                 resolved, stats["splits"][name]["documents"], stats["splits"][name]["sentences"],
                 stats["splits"][name]["tokens"])
    write_json(stats_path, stats)
    return stats
