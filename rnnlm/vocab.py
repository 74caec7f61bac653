"""Vocabulary stage: the most frequent words plus the special tokens, with ids and counts.

Ids: 0 = SENTENCE_START, 1 = SENTENCE_END, 2 = UNKNOWN_TOKEN, then words by descending count, ties
broken by code points ascending. A corpus token spelled like a special token counts as unknown.
Only the sentences the index stage keeps (within the length limits) are counted, so a dropped
sentence cannot change the vocabulary.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import logging
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from rnnlm.io import RnnlmError, atomic_path, read_json, write_json

log = logging.getLogger(__name__)

SENTENCE_START = "SENTENCE_START"
SENTENCE_END = "SENTENCE_END"
UNKNOWN_TOKEN = "UNKNOWN_TOKEN"
SPECIAL_TOKENS = (SENTENCE_START, SENTENCE_END, UNKNOWN_TOKEN)
SENTENCE_START_ID, SENTENCE_END_ID, UNKNOWN_ID = range(len(SPECIAL_TOKENS))
# Text read at a time by the vocab and index stages (readlines' size hint).
CHUNK_BYTES = 1 << 24
# A corpus needs at least as many distinct words (tokens with a letter or digit; punctuation alone is
# no language) as there are special tokens to be worth modelling.
MIN_DISTINCT_WORDS = len(SPECIAL_TOKENS)
TSV_HEADER = "id\tword\tcount"


class Vocabulary:
    """Words in id order (special tokens first) with their corpus counts.

    The special tokens' counts are how often the model sees them: one SENTENCE_START and one
    SENTENCE_END per sentence, and every corpus token outside the vocabulary for UNKNOWN_TOKEN.
    """

    def __init__(self, words: list[str], counts: Iterable[int]):
        self.words = list(words)
        self.counts = np.asarray(list(counts), dtype=np.int64)
        if tuple(self.words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise RnnlmError(f"a vocabulary must start with {SPECIAL_TOKENS}, not {self.words[:3]}; rebuild it with the vocab stage")
        if len(self.counts) != len(self.words):
            raise RnnlmError(f"vocabulary has {len(self.words)} words but {len(self.counts)} counts; rebuild it with the vocab stage")
        self.ids = {word: index for index, word in enumerate(self.words)}
        if len(self.ids) != len(self.words):
            raise RnnlmError("vocabulary lists a word twice; rebuild it with the vocab stage")
        # Corpus tokens spelled like a special token are ordinary unknown words, not markers.
        self._token_ids = self.ids | dict.fromkeys(SPECIAL_TOKENS, UNKNOWN_ID)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.words)

    @classmethod
    def build(cls, word_counts: collections.Counter, sentences: int, size: int) -> "Vocabulary":
        """The `size` - 3 most frequent words of `word_counts` (from `sentences` sentences) plus the special tokens."""
        if size <= len(SPECIAL_TOKENS):
            raise RnnlmError(f"vocabulary_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {size}; raise it in config.yaml")
        candidates = [(word, count) for word, count in word_counts.items() if word not in SPECIAL_TOKENS]
        words = sum(any(character.isalnum() for character in word) for word, _ in candidates)
        if words < MIN_DISTINCT_WORDS:
            raise RnnlmError(
                f"the corpus has only {words} distinct words with a letter or digit ({len(candidates)} distinct tokens "
                f"in all), fewer than the {MIN_DISTINCT_WORDS} a language model needs; use a larger corpus"
            )
        candidates.sort(key=lambda item: (-item[1], item[0]))
        kept = candidates[: size - len(SPECIAL_TOKENS)]
        unknown = sum(word_counts.values()) - sum(count for _, count in kept)
        return cls(list(SPECIAL_TOKENS) + [word for word, _ in kept], [sentences, sentences, unknown] + [count for _, count in kept])

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """int32 ids of `tokens`; words outside the vocabulary (and special-token spellings) become UNKNOWN_TOKEN."""
        # map() over dict.get runs in C: about three times faster than a generator expression.
        return np.array(list(map(self._token_ids.get, tokens, itertools.repeat(UNKNOWN_ID))), dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(index)] for index in ids]

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(TSV_HEADER + "\n")
            for index, (word, count) in enumerate(zip(self.words, self.counts)):
                handle.write(f"{index}\t{word}\t{count}\n")

    def check_model_words(self, model_words: list[str]) -> None:
        """A model's parameters must have been trained on this vocabulary, the one that indexed the data."""
        if list(model_words) == self.words:
            return
        if len(model_words) != len(self.words):
            detail = f"{len(model_words)} words in the parameters file, {len(self.words)} in the data's vocabulary"
        else:
            first = next(i for i, (a, b) in enumerate(zip(model_words, self.words)) if a != b)
            detail = (f"id {first} is {model_words[first]!r} in the parameters file but {self.words[first]!r} "
                      "in the data's vocabulary")
        raise RnnlmError(f"vocabulary mismatch ({detail}); retrain the model on this data or evaluate it on the data "
                         "it was trained on")

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        try:
            with open(path, encoding="utf-8", newline="\n") as handle:
                lines = handle.read().split("\n")
        except FileNotFoundError:
            raise RnnlmError(f"{path}: file not found; run the vocab stage first") from None
        except UnicodeDecodeError:
            raise RnnlmError(f"{path}: not UTF-8; delete it and re-run the vocab stage") from None
        if lines[0] != TSV_HEADER:
            raise RnnlmError(f"{path}: first line must be {TSV_HEADER!r}; delete it and re-run the vocab stage")
        words, counts = [], []
        for number, line in enumerate(lines[1:], 2):
            if not line:
                continue
            fields = line.split("\t")
            # isdigit() alone takes '²' and other digits int() refuses.
            if len(fields) != 3 or fields[0] != str(len(words)) or not (fields[2].isascii() and fields[2].isdigit()):
                raise RnnlmError(f"{path}: line {number} is not '{len(words)}<TAB>word<TAB>count'; delete it and re-run the vocab stage")
            words.append(fields[1])
            counts.append(int(fields[2]))
        _check_against_stats(path, words)
        return cls(words, counts)


def _check_against_stats(path: str | Path, words: list[str]) -> None:
    """A vocab.tsv cut at a line boundary (or edited) still parses: compare it with the fingerprint
    the vocab stage wrote beside it into stats.json, when that file is there."""
    stats_path = Path(path).with_name("stats.json")
    try:
        with open(stats_path, encoding="utf-8") as handle:
            stats = json.load(handle)
    except (OSError, ValueError):
        return
    if not isinstance(stats, dict) or "fingerprint" not in stats:
        return  # another stage's stats, or an older vocab stage's
    if stats["fingerprint"] != fingerprint(words):
        raise RnnlmError(
            f"{path} holds {len(words)} words that do not match {stats_path} (size {stats.get('size')}, another "
            "fingerprint): the file was cut short or edited; delete both and re-run the vocab stage"
        )


def fingerprint(words: Iterable[str]) -> str:
    """Identity of a vocabulary's ids: sha256 of its words in id order (counts do not matter)."""
    return "sha256:" + hashlib.sha256("\n".join(words).encode("utf-8")).hexdigest()


def line_chunks(sentences_path: str | Path) -> Iterator[tuple[list[str], list[str], np.ndarray, bool]]:
    """Chunk by chunk (about CHUNK_BYTES of text), the lines of a sentences file, their tokens (one flat
    list), their word counts (int64; 0 for the empty lines between documents) and whether the lines
    are canonical (tokens joined by single spaces, as the stages write them). Memory holds one chunk."""
    try:
        with open(sentences_path, encoding="utf-8") as handle:
            while lines := handle.readlines(CHUNK_BYTES):
                text = "".join(lines)
                tokens = text.split()
                # The stages write tokens joined by single spaces: then the spaces of a line give its word
                # count without splitting each line again. That count is exact when no other whitespace
                # occurs (isprintable) and never below the true one, so equal totals prove it exact;
                # any other file is counted line by line. An empty line ("\n") counts 0.
                lengths = np.fromiter(map(str.count, lines, itertools.repeat(" ")), dtype=np.int64, count=len(lines)) + 1
                lengths[np.fromiter(map(len, lines), dtype=np.int64, count=len(lines)) <= 1] = 0
                canonical = bool(lengths.sum() == len(tokens)) and text.replace("\n", "").isprintable()
                if not canonical:
                    lengths = np.fromiter(map(len, map(str.split, lines)), dtype=np.int64, count=len(lines))
                yield lines, tokens, lengths, canonical
    except FileNotFoundError:
        raise RnnlmError(f"{sentences_path}: file not found; run the tokenize stage first") from None


def sentence_chunks(sentences_path: str | Path, min_length: int, max_length: int,
                    dropped: collections.Counter) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Chunk by chunk, the tokens of the sentences with `min_length` to `max_length` words, the ones
    the index stage keeps, as one flat list, their word counts (int64) and the number of the document
    each belongs to (int64, non-decreasing: documents are separated by empty lines, docs/data.md);
    the others are counted in `dropped["too_short"]` and `dropped["too_long"]`. Memory holds one
    chunk, whatever the file's size."""
    check_length_limits(min_length, max_length)
    numbers = DocumentNumbers()
    for _, tokens, lengths, _ in line_chunks(sentences_path):
        kept = kept_lines(lengths, min_length, max_length, dropped)
        document = numbers(lengths)
        if not kept.all():
            tokens = list(itertools.compress(tokens, np.repeat(kept, lengths).tolist()))
        yield tokens, lengths[kept], document[kept]


def kept_lines(lengths: np.ndarray, min_length: int, max_length: int, dropped: collections.Counter | None = None) -> np.ndarray:
    """Which lines (word counts `lengths`, 0 for an empty line) are sentences within the length
    limits; the others that are sentences are counted in `dropped` when given."""
    present = lengths > 0
    if dropped is not None:
        dropped["too_short"] += int(np.count_nonzero(present & (lengths < min_length)))
        dropped["too_long"] += int(np.count_nonzero(lengths > max_length))
    return present & (lengths >= min_length) & (lengths <= max_length)


class DocumentNumbers:
    """Numbers the documents of a sentences file chunk by chunk: called with each chunk's word counts
    in order, returns the document number of every line (int64, non-decreasing; a document starts
    after each run of empty lines)."""

    def __init__(self):
        self.before, self.previous_blank = 0, False

    def __call__(self, lengths: np.ndarray) -> np.ndarray:
        present = lengths > 0
        starts = ~present & np.concatenate(([not self.previous_blank], present[:-1]))
        numbers = self.before + np.cumsum(starts)
        self.before, self.previous_blank = int(numbers[-1]), not bool(present[-1])
        return numbers


def check_length_limits(min_length: int, max_length: int) -> None:
    if min_length > max_length:
        raise RnnlmError(f"min_sentence_length ({min_length}) exceeds max_sentence_length ({max_length}); fix them in config.yaml")


def require_sentences(kept: int, min_length: int, max_length: int, dropped: collections.Counter) -> None:
    if kept == 0:
        raise RnnlmError(
            f"no sentence has between {min_length} and {max_length} words ({dropped['too_short']} shorter, "
            f"{dropped['too_long']} longer); widen min_sentence_length/max_sentence_length in config.yaml"
        )


def count_words(sentences_path: str | Path, min_length: int, max_length: int) -> tuple[collections.Counter, int, collections.Counter]:
    """Token counts and number of the sentences within the length limits, and the dropped counts."""
    word_counts: collections.Counter[str] = collections.Counter()
    dropped: collections.Counter[str] = collections.Counter()
    sentences = 0
    for tokens, lengths, _ in sentence_chunks(sentences_path, min_length, max_length, dropped):
        word_counts.update(tokens)
        sentences += len(lengths)
    require_sentences(sentences, min_length, max_length, dropped)
    return word_counts, sentences, dropped


def build_vocabulary(sentences_path: str | Path, vocab_path: str | Path, stats_path: str | Path, size: int,
                     min_length: int, max_length: int) -> dict:
    """Run the vocab stage on the sentences with `min_length` to `max_length` words: write vocab.tsv
    and its stats; return the stats."""
    word_counts, sentences, dropped = count_words(sentences_path, min_length, max_length)
    vocabulary = Vocabulary.build(word_counts, sentences, size)
    tokens = sum(word_counts.values())
    unknown = int(vocabulary.counts[UNKNOWN_ID])
    least_frequent = len(vocabulary) - 1
    stats = {
        "requested_size": size,
        "size": len(vocabulary),
        "sentences": sentences,
        "sentences_outside_length_limits": dropped["too_short"] + dropped["too_long"],
        "distinct_words": len(word_counts),
        "tokens": tokens,
        "unknown_tokens": unknown,
        "coverage": (tokens - unknown) / tokens,
        "least_frequent_word": vocabulary.words[least_frequent],
        "least_frequent_count": int(vocabulary.counts[least_frequent]),
        "fingerprint": fingerprint(vocabulary.words),  # Vocabulary.load checks vocab.tsv against it
    }
    if len(vocabulary) < size:
        # A pretokenized corpus marks rare words itself (<unk> becomes UNKNOWN_TOKEN): then it does occur.
        unknown_note = (f"UNKNOWN_TOKEN occurs only where the corpus itself marks unknown words ({unknown} tokens)"
                        if unknown else "UNKNOWN_TOKEN never occurs in training")
        log.warning("the vocabulary has %d entries, not the %d requested: the corpus has only %d distinct words, "
                    "so every word is kept and %s", len(vocabulary), size, len(word_counts), unknown_note)
    vocabulary.save(vocab_path)
    write_json(stats_path, stats)
    log.info("Using vocabulary size %d.", len(vocabulary))
    log.info("The least frequent word in our vocabulary is %r and appeared %d times.",
             stats["least_frequent_word"], stats["least_frequent_count"])
    return stats


def unknown_word_types(vocab_path: str | Path) -> int | None:
    """How many distinct training words UNKNOWN_TOKEN stands for (the corpus's words outside the
    vocabulary, at least 1), from the vocab stage's stats.json beside `vocab_path`; None without it.
    Scoring spreads UNKNOWN_TOKEN's probability over that many words (rnnlm.generate)."""
    stats_path = Path(vocab_path).with_name("stats.json")
    if not stats_path.is_file():
        return None
    stats = read_json(stats_path)
    return max(1, int(stats["distinct_words"]) - (int(stats["size"]) - len(SPECIAL_TOKENS)))


def vocabulary_metadata(vocab_path: str | Path) -> dict:
    """What a params file records about its vocabulary beyond the words (for scoring)."""
    types = unknown_word_types(vocab_path)
    return {} if types is None else {"unknown_word_types": types}
