"""Index matrices: Split layout and validation, padded batches, deterministic splitting, filtering."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from rnnlm.data import SPLIT_NAMES, Split, build_index
from rnnlm.split import split_corpus, split_sizes
from rnnlm.io import RnnlmError, save_npz
from rnnlm.vocab import SENTENCE_END_ID, SENTENCE_START_ID, Vocabulary

SENTENCES = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14]]


def make_split(sentences=SENTENCES) -> Split:
    return Split.from_ids(np.concatenate([np.asarray(s) for s in sentences]), [len(s) for s in sentences])


def test_layout_matches_the_contract():
    split = make_split()
    assert len(split) == 4 and split.num_tokens == 14
    assert split.x.dtype == np.int32 and split.y.dtype == np.int32 and split.offsets.dtype == np.int64
    assert split.lengths.tolist() == [4, 2, 3, 5]
    for i, ids in enumerate(SENTENCES):
        start, end = split.offsets[i], split.offsets[i + 1]
        assert split.x[start:end].tolist() == [SENTENCE_START_ID] + ids
        assert split.y[start:end].tolist() == ids + [SENTENCE_END_ID]


def test_subset_keeps_the_requested_order():
    subset = make_split().subset([3, 1])
    assert subset.x.tolist() == [0, 11, 12, 13, 14, 0, 8]
    assert subset.y.tolist() == [11, 12, 13, 14, 1, 8, 1]
    assert subset.offsets.tolist() == [0, 5, 7]


def test_save_load_round_trip(tmp_path):
    split = make_split()
    split.save(tmp_path / "s.npz")
    loaded = Split.load(tmp_path / "s.npz")
    for name in ("x", "y", "offsets"):
        assert np.array_equal(getattr(loaded, name), getattr(split, name))
        assert getattr(loaded, name).dtype == getattr(split, name).dtype


def test_load_memory_maps_the_arrays_read_only(tmp_path):
    split = make_split()
    split.vocab_fingerprint = "sha256:abc"
    split.save(tmp_path / "s.npz")
    loaded = Split.load(tmp_path / "s.npz")
    for name in ("x", "y", "offsets"):
        assert isinstance(getattr(loaded, name), np.memmap) and not getattr(loaded, name).flags.writeable
    assert loaded.vocab_fingerprint == "sha256:abc"
    assert [b.tolist() for batch in loaded.batches(3) for b in batch] == \
        [b.tolist() for batch in split.batches(3) for b in batch]


def test_load_reads_a_compressed_archive_whole(tmp_path):
    split = make_split()
    np.savez_compressed(tmp_path / "c.npz", x=split.x, y=split.y, offsets=split.offsets)
    loaded = Split.load(tmp_path / "c.npz")
    assert not isinstance(loaded.x, np.memmap) and np.array_equal(loaded.y, split.y)


def test_load_refuses_truncated_and_pickled_files(tmp_path):
    make_split().save(tmp_path / "s.npz")
    whole = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(RnnlmError, match="not a readable .npz"):
        Split.load(tmp_path / "cut.npz")
    split = make_split()
    with open(tmp_path / "p.npz", "wb") as handle:
        np.savez(handle, x=split.x, y=split.y, offsets=split.offsets, extra=np.array([{"evil": 1}], dtype=object))
    with pytest.raises(RnnlmError, match="pickled objects"):
        Split.load(tmp_path / "p.npz")


@pytest.mark.parametrize(
    "arrays, problem",
    [
        ({"x": np.zeros(3, np.int64), "y": np.zeros(3, np.int32), "offsets": np.array([0, 3])}, "x must be a 1-d int32"),
        ({"x": np.zeros(3, np.int32), "y": np.zeros(2, np.int32), "offsets": np.array([0, 3])}, "x has 3 entries but y has 2"),
        ({"x": np.zeros(3, np.int32), "y": np.zeros(3, np.int32), "offsets": np.array([0, 2])}, "end at 3"),
        ({"x": np.zeros(3, np.int32), "y": np.zeros(3, np.int32), "offsets": np.array([0, 0, 3])}, "increase strictly"),
        ({"x": np.zeros(3, np.int32), "y": np.zeros(3, np.int32)}, "missing arrays"),
    ],
)
def test_load_rejects_malformed_files(tmp_path, arrays, problem):
    save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(RnnlmError, match=problem):
        Split.load(tmp_path / "bad.npz")


def test_batch_is_time_major_and_padded_with_a_mask():
    x, y, mask = make_split().batch([1, 3])
    assert x.shape == y.shape == mask.shape == (5, 2)
    assert x.dtype == np.int32 and y.dtype == np.int32 and mask.dtype == np.float32
    assert x[:, 0].tolist() == [0, 8, 0, 0, 0] and y[:, 0].tolist() == [8, 1, 0, 0, 0]
    assert x[:, 1].tolist() == [0, 11, 12, 13, 14] and y[:, 1].tolist() == [11, 12, 13, 14, 1]
    assert mask[:, 0].tolist() == [1, 1, 0, 0, 0] and mask[:, 1].tolist() == [1] * 5


def batch_members(split: Split, batches) -> list[tuple[int, ...]]:
    """Identify each batch column by the sentence it holds (the sentences here are all distinct)."""
    by_content = {tuple(split.y[split.offsets[i] : split.offsets[i + 1]]): i for i in range(len(split))}
    members = []
    for _, y, mask in batches:
        members.append(tuple(by_content[tuple(y[: int(mask[:, b].sum()), b])] for b in range(y.shape[1])))
    return members


def test_batches_cover_every_sentence_once_in_file_order_without_rng():
    split = make_split()
    assert batch_members(split, split.batches(3)) == [(0, 1, 2), (3,)]


def test_shuffled_batches_are_deterministic_per_seed():
    split = make_split([[i, i + 1][: 1 + i % 2] for i in range(3, 40)])
    first = batch_members(split, split.batches(4, np.random.default_rng(7)))
    again = batch_members(split, split.batches(4, np.random.default_rng(7)))
    other = batch_members(split, split.batches(4, np.random.default_rng(8)))
    assert first == again and first != other
    assert sorted(i for batch in first for i in batch) == list(range(len(split)))


def test_sorting_by_length_reduces_padding():
    rng = np.random.default_rng(0)
    split = make_split([[100 + i] + list(range(3, 3 + n)) for i, n in enumerate(rng.integers(0, 30, size=64))])
    def padding(batches):
        return sum(mask.size - mask.sum() for _, _, mask in batches)
    assert padding(split.batches(8, np.random.default_rng(1), sort_by_length=True)) < padding(split.batches(8, np.random.default_rng(1)))
    members = batch_members(split, split.batches(8, np.random.default_rng(1), sort_by_length=True))
    assert sorted(i for batch in members for i in batch) == list(range(64))


def test_split_sizes():
    assert split_sizes(100, 0.05, 0.1) == (85, 5, 10)
    assert split_sizes(10, 0.01, 0.0) == (9, 1, 0)  # a positive fraction gets at least one sentence
    with pytest.raises(RnnlmError, match="too few for a training split"):
        split_sizes(2, 0.1, 0.1)


def write_corpus(tmp_path, sentences):
    (tmp_path / "sentences.txt").write_text("".join(" ".join(s) + "\n" for s in sentences), encoding="utf-8")
    counts = collections.Counter(t for s in sentences for t in s)
    Vocabulary.build(counts, len(sentences), size=8).save(tmp_path / "vocab.tsv")


def run_index(tmp_path, min_length=1, max_length=80, **options):
    """The split stage (sentence units unless told) and the index stage on tmp_path/sentences.txt."""
    texts = {name: tmp_path / "out" / f"{name}.txt" for name in SPLIT_NAMES}
    paths = {name: tmp_path / "out" / f"{name}.npz" for name in SPLIT_NAMES}
    split_corpus(tmp_path / "sentences.txt", texts, tmp_path / "out" / "split.json", min_length=min_length,
                 max_length=max_length, **{"unit": "sentence", **options})
    stats = build_index(texts, tmp_path / "vocab.tsv", paths, tmp_path / "out" / "stats.json", tmp_path / "out" / "split.json",
                        min_length, max_length)
    return stats, {name: Split.load(path) for name, path in paths.items()}


def test_build_index_splits_deterministically_and_filters_by_length(tmp_path):
    words = "a b c d e f g h i j".split()
    # sentence i has i % 9 + 1 words; one of length 0 cannot occur in a sentences file
    sentences = [[words[(i + k) % 10] for k in range(i % 9 + 1)] for i in range(200)]
    write_corpus(tmp_path, sentences)
    options = dict(min_length=2, max_length=8, valid_fraction=0.1, test_fraction=0.2, seed=3)
    stats, splits = run_index(tmp_path, **options)
    assert stats["dropped_too_short"] == sum(len(s) < 2 for s in sentences)
    assert stats["dropped_too_long"] == sum(len(s) > 8 for s in sentences)
    kept = stats["sentences_kept"]
    assert kept == 200 - stats["dropped_too_short"] - stats["dropped_too_long"]
    assert [len(splits[n]) for n in SPLIT_NAMES] == list(split_sizes(kept, 0.1, 0.2))
    assert all(2 <= length - 1 <= 8 for split in splits.values() for length in split.lengths)
    assert sum(split.num_tokens for split in splits.values()) == sum(len(s) + 1 for s in sentences if 2 <= len(s) <= 8)
    assert 0 < stats["train"]["unknown_rate"] < 1  # 10 words, 5 kept
    assert {split.vocab_fingerprint for split in splits.values()} == {Vocabulary.load(tmp_path / "vocab.tsv").fingerprint}

    # Same seed, same split; another seed, another split.
    _, again = run_index(tmp_path, **options)
    assert all(np.array_equal(again[n].x, splits[n].x) for n in SPLIT_NAMES)
    _, other = run_index(tmp_path, **{**options, "seed": 4})
    assert not np.array_equal(other["valid"].x, splits["valid"].x)


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"min_length": 5, "max_length": 4}, "exceeds max_sentence_length"),
        ({"min_length": 50, "max_length": 60}, "no sentence has between 50 and 60 words"),
        ({"valid_fraction": 0.5, "test_fraction": 0.5}, "leaves nothing to train on"),
        ({"min_length": 3, "valid_fraction": 0.1, "test_fraction": 0.1}, "too few for a training split"),
    ],
)
def test_build_index_errors_leave_nothing(tmp_path, options, problem):
    write_corpus(tmp_path, [["a", "b", "c"], ["b", "c"], ["c", "a", "b", "a"]])
    with pytest.raises(RnnlmError, match=problem):
        run_index(tmp_path, **options)
    assert not (tmp_path / "out").exists()
