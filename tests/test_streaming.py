"""The vocab and index stages read the sentences file in chunks: results must not depend on them."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm import vocab
from rnnlm.data import SPLIT_NAMES, build_index, encode_sentences
from rnnlm.split import split_corpus
from rnnlm.vocab import Vocabulary, build_vocabulary

WORDS = "the a cat dog sees river house runs , . ! old".split()


def write_sentences(path, count=400, seed=0):
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 15)))) for _ in range(count)]
    # Documents of 1 to 9 sentences, separated by empty lines.
    for position in sorted(set(np.cumsum(rng.integers(1, 10, size=count // 2)).tolist()) - {0}, reverse=True):
        if position < len(lines):
            lines.insert(position, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def build(tmp_path, name, min_length=2, max_length=10):
    out = tmp_path / name
    sentences = {split: out / f"{split}.txt" for split in SPLIT_NAMES}
    split_corpus(tmp_path / "sentences.txt", sentences, out / "split.json", unit="document", valid_fraction=0.1,
                 test_fraction=0.1, seed=3, min_length=min_length, max_length=max_length)
    build_vocabulary(sentences["train"], out / "vocab.tsv", out / "vocab.json", 8, min_length, max_length)
    build_index(sentences, out / "vocab.tsv", {split: out / f"{split}.npz" for split in SPLIT_NAMES},
                out / "data.json", out / "split.json", min_length, max_length)
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


def test_artifacts_do_not_depend_on_the_chunk_size(tmp_path, monkeypatch):
    write_sentences(tmp_path / "sentences.txt")
    whole = build(tmp_path, "whole")
    monkeypatch.setattr(vocab, "CHUNK_BYTES", 50)  # a few lines per chunk
    assert build(tmp_path, "chunked") == whole


@pytest.mark.parametrize("chunk_bytes", [8, 1 << 24])
def test_irregular_whitespace_is_counted_line_by_line(tmp_path, monkeypatch, chunk_bytes):
    """Files not written by the stages (double spaces, tabs, blank lines, no-break spaces) are read
    like `line.split()`: the fast space count must not be trusted for them."""
    lines = ["a  b", "", "\tc d", " e\u00a0f ", "g h i", "j\tk l"]
    (tmp_path / "sentences.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(vocab, "CHUNK_BYTES", chunk_bytes)
    vocabulary = Vocabulary(list(vocab.SPECIAL_TOKENS) + list("abcdefghijkl"), [0] * 15)
    flat_ids, lengths, _, too_short, too_long = encode_sentences(tmp_path / "sentences.txt", vocabulary, 1, 2)
    expected = [line.split() for line in lines if line.split()]
    assert lengths.tolist() == [2, 2, 2]
    assert (too_short, too_long) == (0, 2)
    kept = [tokens for tokens in expected if len(tokens) <= 2]
    np.testing.assert_array_equal(flat_ids, vocabulary.encode([token for tokens in kept for token in tokens]))


def test_a_tab_and_a_double_space_that_cancel_out_are_still_counted_exactly(tmp_path):
    (tmp_path / "sentences.txt").write_text("a\tb\nc  d\n", encoding="utf-8")  # space counts 1 and 3, words 2 and 2
    vocabulary = Vocabulary(list(vocab.SPECIAL_TOKENS) + list("abcd"), [0] * 7)
    _, lengths, _, _, too_long = encode_sentences(tmp_path / "sentences.txt", vocabulary, 1, 2)
    assert lengths.tolist() == [2, 2] and too_long == 0
