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
    with pytest.raises(RnnlmError, match="only 1 distinct words with a letter or digit.*larger corpus"):
        Vocabulary.build(collections.Counter({"a": 5, ".": 5, "UNKNOWN_TOKEN": 3}), sentences=5, size=100)


def test_punctuation_alone_is_no_language():
    """Many distinct tokens, none of them a word: nothing a language model could learn."""
    punctuation = collections.Counter({mark: 3 for mark in ".,;:!?-()[]\"'"})
    with pytest.raises(RnnlmError, match=r"only 0 distinct words with a letter or digit \(13 distinct tokens"):
        Vocabulary.build(punctuation, sentences=9, size=100)
    numbers_and_scripts = punctuation + collections.Counter({"1984": 1, "日本": 1, "été": 1})
    assert len(Vocabulary.build(numbers_and_scripts, sentences=9, size=100)) == 3 + 16


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
    stats = build_vocabulary(tmp_path / "sentences.txt", tmp_path / "vocab.tsv", tmp_path / "stats.json", size=6,
                             min_length=1, max_length=80)
    assert stats["size"] == 6 and stats["requested_size"] == 6
    assert stats["least_frequent_word"] == "c" and stats["least_frequent_count"] == 1
    assert stats["tokens"] == 8 and stats["unknown_tokens"] == 2 and stats["coverage"] == pytest.approx(0.75)
    assert json.loads((tmp_path / "stats.json").read_text()) == stats
    assert Vocabulary.load(tmp_path / "vocab.tsv").words[3:] == ["a", "b", "c"]


def test_failed_vocab_stage_writes_nothing(tmp_path):
    write_sentences(tmp_path / "sentences.txt", [["same", "same"]])
    with pytest.raises(RnnlmError):
        build_vocabulary(tmp_path / "sentences.txt", tmp_path / "out" / "vocab.tsv", tmp_path / "out" / "stats.json",
                         size=10, min_length=1, max_length=80)
    assert not (tmp_path / "out").exists()


def test_sentences_outside_the_length_limits_do_not_shape_the_vocabulary(tmp_path):
    """A sentence the index stage drops (here: one very long one) changes neither ids nor counts."""
    kept = [["the", "cat", "sat"], ["a", "dog", "ran"], ["the", "dog", "sat"]]
    write_sentences(tmp_path / "kept.txt", kept)
    write_sentences(tmp_path / "all.txt", kept[:1] + [[f"w{i % 50}" for i in range(500)], ["one"]] + kept[1:])
    limits = dict(min_length=2, max_length=10)
    alone = build_vocabulary(tmp_path / "kept.txt", tmp_path / "kept.tsv", tmp_path / "kept.json", size=6, **limits)
    mixed = build_vocabulary(tmp_path / "all.txt", tmp_path / "all.tsv", tmp_path / "all.json", size=6, **limits)
    assert (tmp_path / "all.tsv").read_text() == (tmp_path / "kept.tsv").read_text()
    assert mixed["sentences"] == 3 and mixed["sentences_outside_length_limits"] == 2
    assert {key: value for key, value in mixed.items() if key != "sentences_outside_length_limits"} == \
        {key: value for key, value in alone.items() if key != "sentences_outside_length_limits"}


def test_vocab_stage_names_empty_length_window(tmp_path):
    write_sentences(tmp_path / "sentences.txt", [["a", "b"], ["c", "d", "e"]])
    with pytest.raises(RnnlmError, match=r"no sentence has between 4 and 9 words \(2 shorter, 0 longer\)"):
        build_vocabulary(tmp_path / "sentences.txt", tmp_path / "vocab.tsv", tmp_path / "stats.json", size=10,
                         min_length=4, max_length=9)
    with pytest.raises(RnnlmError, match=r"min_sentence_length \(5\) exceeds max_sentence_length \(4\)"):
        build_vocabulary(tmp_path / "sentences.txt", tmp_path / "vocab.tsv", tmp_path / "stats.json", size=10,
                         min_length=5, max_length=4)
    assert not (tmp_path / "vocab.tsv").exists()


def test_smaller_vocabulary_than_requested_warns(tmp_path, caplog):
    write_sentences(tmp_path / "sentences.txt", [["a", "b", "c", "d"]])
    build_vocabulary(tmp_path / "sentences.txt", tmp_path / "vocab.tsv", tmp_path / "stats.json", size=50,
                     min_length=1, max_length=80)
    assert "the vocabulary has 7 entries, not the 50 requested" in caplog.text
