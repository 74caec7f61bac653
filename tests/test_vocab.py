"""Vocabulary: ids, tie-breaking, counts, special tokens, file format, stats."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from rnnlm.io import RnnlmError
from rnnlm.vocab import SPECIAL_TOKENS, UNKNOWN_ID, Vocabulary, build_vocabulary


def write_sentences(path, sentences):
    path.write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")


def test_ids_follow_count_then_code_points():
    counts = collections.Counter({"b": 3, "a": 3, "Z": 3, "é": 5, "c": 1, "d": 1})
    vocabulary = Vocabulary.build(counts, sentences=4, size=7)
    assert vocabulary.words == list(SPECIAL_TOKENS) + ["é", "Z", "a", "b"]
    assert vocabulary.counts.tolist() == [4, 4, 2, 5, 3, 3, 3]  # unknown: c + d


def test_special_token_spellings_in_the_corpus_are_unknown_words():
    counts = collections.Counter({"word": 2, "other": 1, "third": 1, "SENTENCE_END": 9})
    vocabulary = Vocabulary.build(counts, sentences=1, size=10)
    assert vocabulary.words == list(SPECIAL_TOKENS) + ["word", "other", "third"]
    assert vocabulary.counts[UNKNOWN_ID] == 9
    assert vocabulary.encode(["word", "SENTENCE_END", "SENTENCE_START", "never"]).tolist() == [3, 2, 2, 2]
    assert vocabulary.encode([]).dtype == np.int32


def test_too_few_distinct_words_is_refused():
    with pytest.raises(RnnlmError, match="only 2 distinct words.*larger corpus"):
        Vocabulary.build(collections.Counter({"a": 5, ".": 5, "UNKNOWN_TOKEN": 3}), sentences=5, size=100)


def test_vocabulary_size_must_leave_room_for_words():
    with pytest.raises(RnnlmError, match="vocabulary_size must exceed"):
        Vocabulary.build(collections.Counter("abcdef"), sentences=1, size=3)


def test_save_load_round_trip(tmp_path):
    vocabulary = Vocabulary.build(collections.Counter({"x": 2, "y": 1, "ü": 1}), sentences=2, size=8)
    vocabulary.save(tmp_path / "vocab.tsv")
    lines = (tmp_path / "vocab.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["id\tword\tcount", "0\tSENTENCE_START\t2"]
    loaded = Vocabulary.load(tmp_path / "vocab.tsv")
    assert loaded.words == vocabulary.words
    assert loaded.counts.tolist() == vocabulary.counts.tolist()
    assert loaded.decode([3, 4]) == ["x", "y"]


@pytest.mark.parametrize(
    "content, problem",
    [
        ("word\tid\tcount\n", "first line"),
        ("id\tword\tcount\n0\tSENTENCE_START\t1\n2\tSENTENCE_END\t1\n", "line 3"),
        ("id\tword\tcount\n0\tSENTENCE_START\t1\n1\tSENTENCE_END\tmany\n", "line 3"),
        ("id\tword\tcount\n0\thello\t1\n1\tSENTENCE_END\t1\n2\tUNKNOWN_TOKEN\t1\n", "must start with"),
    ],
)
def test_load_rejects_malformed_files(tmp_path, content, problem):
    (tmp_path / "vocab.tsv").write_text(content, encoding="utf-8")
    with pytest.raises(RnnlmError, match=problem):
        Vocabulary.load(tmp_path / "vocab.tsv")


def test_build_vocabulary_stage_reports_least_frequent_word(tmp_path):
    write_sentences(tmp_path / "sentences.txt", [["a", "b", "a", "c"], ["a", "b", "d", "e"]])
    stats = build_vocabulary(tmp_path / "sentences.txt", tmp_path / "vocab.tsv", tmp_path / "stats.json", size=6)
    assert stats["size"] == 6 and stats["requested_size"] == 6
    assert stats["least_frequent_word"] == "c" and stats["least_frequent_count"] == 1
    assert stats["tokens"] == 8 and stats["unknown_tokens"] == 2 and stats["coverage"] == pytest.approx(0.75)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    assert Vocabulary.load(tmp_path / "vocab.tsv").words[3:] == ["a", "b", "c"]


def test_failed_vocab_stage_writes_nothing(tmp_path):
    write_sentences(tmp_path / "sentences.txt", [["same", "same"]])
    with pytest.raises(RnnlmError):
        build_vocabulary(tmp_path / "sentences.txt", tmp_path / "out" / "vocab.tsv", tmp_path / "out" / "stats.json", size=10)
    assert not (tmp_path / "out").exists()
