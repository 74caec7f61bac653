"""Split stage: valid and test drawn as whole, seeded units before the vocabulary; documents in the splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from rnnlm import split as split_module
from rnnlm import vocab as vocab_module
from rnnlm.data import SPLIT_NAMES, Split, build_index
from rnnlm.io import RnnlmError, save_npz
from rnnlm.split import AUTO_MIN_DOCUMENTS, resolve_unit, split_corpus
from rnnlm.tokenize import read_sentence_documents
from rnnlm.vocab import SENTENCE_END_ID, UNKNOWN_ID, Vocabulary, build_vocabulary

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())


def make_corpus(path: Path, documents: int = 60, seed: int = 0) -> list[list[str]]:
    """Documents of 1 to 12 sentences, every sentence unique ("d<doc>s<sentence>" plus filler words),
    written in the sentences format; returns them."""
    rng = np.random.default_rng(seed)
    corpus = []
    for d in range(documents):
        corpus.append([" ".join([f"d{d}s{s}"] + ["w"] * int(rng.integers(0, 6)))
                       for s in range(int(rng.integers(1, 13)))])
    path.write_text("\n".join("\n".join(document) + "\n" for document in corpus), encoding="utf-8")
    return corpus


def run(tmp_path: Path, name: str = "out", **options) -> tuple[dict, dict[str, list[list[str]]]]:
    outputs = {split: tmp_path / name / f"{split}.txt" for split in SPLIT_NAMES}
    stats = split_corpus(tmp_path / "sentences.txt", outputs, tmp_path / name / "split.json", **options)
    documents = {split: [[" ".join(tokens) for tokens in document] for document in read_sentence_documents(path)]
                 for split, path in outputs.items()}
    return stats, documents


def sentence_ids(documents: list[list[str]]) -> list[str]:
    return [line.split()[0] for document in documents for line in document]


@pytest.mark.parametrize("unit", ["document", "block", "sentence"])
def test_every_sentence_is_in_exactly_one_split_in_corpus_order(tmp_path, unit):
    corpus = make_corpus(tmp_path / "sentences.txt")
    stats, documents = run(tmp_path, unit=unit, block_sentences=7, valid_fraction=0.1, test_fraction=0.15, seed=2)
    everything = sentence_ids(corpus)
    drawn = {split: sentence_ids(documents[split]) for split in SPLIT_NAMES}
    assert sorted(sum(drawn.values(), [])) == sorted(everything)  # no overlap, nothing lost
    for split, ids in drawn.items():
        assert ids == [sentence for sentence in everything if sentence in set(ids)]  # corpus order
        assert stats["splits"][split]["sentences"] == len(ids)
        assert stats["splits"][split]["documents"] == len(documents[split])
    # Each share is met to within half a unit (documents here have at most 12 sentences).
    total, largest = len(everything), {"document": 12, "block": stats.get("block_sentences"), "sentence": 1}[unit]
    assert abs(stats["splits"]["valid"]["sentences"] - round(0.1 * total)) <= largest / 2
    assert abs(stats["splits"]["test"]["sentences"] - round(0.15 * total)) <= largest / 2
    assert stats["split_unit"] == unit and stats["sentences_kept"] == total


def test_documents_are_drawn_whole_and_stay_documents(tmp_path):
    corpus = make_corpus(tmp_path / "sentences.txt")
    stats, documents = run(tmp_path, unit="document", valid_fraction=0.1, test_fraction=0.1, seed=5)
    for split in ("valid", "test"):
        assert all(document in corpus for document in documents[split])  # whole source documents
        assert stats["splits"][split]["units"] == len(documents[split]) >= 1
    # Train: every document is a whole source document too (removing whole documents cuts none).
    assert all(document in corpus for document in documents["train"])
    assert sum(stats["splits"][split]["units"] for split in SPLIT_NAMES) == len(corpus)


def test_blocks_are_contiguous_and_a_removed_block_cuts_the_train_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(split_module, "MIN_BLOCKS", 1)
    corpus = make_corpus(tmp_path / "sentences.txt")
    everything = sentence_ids(corpus)
    stats, documents = run(tmp_path, unit="block", block_sentences=10, valid_fraction=0.1, test_fraction=0.1, seed=1)
    position = {sentence: index for index, sentence in enumerate(everything)}
    for split in SPLIT_NAMES:
        runs = [[position[s] for s in sentence_ids([document])] for document in documents[split]]
        # Each document of a split is a run of consecutive corpus sentences, across source documents.
        assert all(run == list(range(run[0], run[0] + len(run))) for run in runs)
        # and maximal: two documents of a split are never adjacent in the corpus.
        assert all(later[0] > earlier[-1] + 1 for earlier, later in zip(runs, runs[1:]))
        if split != "train":  # valid and test: whole blocks
            assert all(run[0] % 10 == 0 and (len(run) % 10 == 0 or run[-1] == len(everything) - 1) for run in runs)
    assert stats["splits"]["valid"]["units"] == -(-stats["splits"]["valid"]["sentences"] // 10)
    assert stats["block_sentences"] == 10


def test_a_unit_that_would_overshoot_its_share_is_passed_over():
    sizes = np.array([1] * 40 + [30])
    for seed in range(20):
        labels = split_module.draw_units(sizes, valid_target=4, test_target=3, seed=seed)
        assert labels[40] == 0  # the 30-sentence unit always stays in train
        assert np.bincount(labels, minlength=3).tolist() == [34, 4, 3]
    # Only units larger than twice the target: the first one drawn is taken anyway.
    assert np.bincount(split_module.draw_units(np.array([10, 10, 10]), 1, 1, 0)).tolist() == [1, 1, 1]


def test_the_split_is_seeded(tmp_path):
    make_corpus(tmp_path / "sentences.txt")
    for unit in ("document", "block", "sentence"):
        _, first = run(tmp_path, "a", unit=unit, seed=3)
        first_bytes = (tmp_path / "a" / "valid.txt").read_bytes()
        _, again = run(tmp_path, "b", unit=unit, seed=3)
        assert (tmp_path / "b" / "valid.txt").read_bytes() == first_bytes and again == first
        _, other = run(tmp_path, "c", unit=unit, seed=4)
        assert other["valid"] != first["valid"]


def test_sentence_units_draw_the_former_split(tmp_path):
    """split_unit: sentence keeps the tutorial's split: test the last sentences of a seeded
    permutation of the kept sentences, valid the ones before them."""
    corpus = make_corpus(tmp_path / "sentences.txt")
    everything = sentence_ids(corpus)
    _, documents = run(tmp_path, unit="sentence", valid_fraction=0.05, test_fraction=0.1, seed=7)
    train, valid, test = split_module.split_sizes(len(everything), 0.05, 0.1)
    permutation = np.random.default_rng(7).permutation(len(everything))
    assert sentence_ids(documents["valid"]) == [everything[i] for i in sorted(permutation[train:train + valid])]
    assert sentence_ids(documents["test"]) == [everything[i] for i in sorted(permutation[train + valid:])]


def test_a_dropped_sentence_is_skipped_inside_its_document(tmp_path):
    lines = ["a b c", "x " * 30, "d e", "", "f g", "h", "", "i j k", "l m"]
    (tmp_path / "sentences.txt").write_text("\n".join(line.strip() for line in lines) + "\n", encoding="utf-8")
    stats, documents = run(tmp_path, unit="document", valid_fraction=0.3, test_fraction=0.0, seed=0,
                           min_length=2, max_length=20)
    assert (stats["dropped_too_long"], stats["dropped_too_short"], stats["sentences_kept"]) == (1, 1, 5)
    # The long sentence leaves its document one document ("a b c", "d e"); "h" leaves "f g" alone.
    assert sorted(documents["train"] + documents["valid"]) == [["a b c", "d e"], ["f g"], ["i j k", "l m"]]
    assert documents["test"] == [] and stats["splits"]["test"] == {"units": 0, "documents": 0, "sentences": 0, "tokens": 0}


def test_auto_reads_a_plain_text_or_a_small_collection_as_one_text():
    assert resolve_unit("auto", "text", 10_000) == "block"
    assert resolve_unit("auto", "csv", AUTO_MIN_DOCUMENTS - 1) == "block"
    assert resolve_unit("auto", "csv", AUTO_MIN_DOCUMENTS) == "document"
    assert resolve_unit("auto", None, 68) == "document"  # the built-in corpus: 68 topics
    assert resolve_unit("sentence", "text", 1) == "sentence"
    with pytest.raises(RnnlmError, match="split_unit must be one of"):
        resolve_unit("paragraph", "text", 1)


def test_blocks_are_shortened_in_a_small_corpus():
    assert split_module.block_length(100_000, 50) == 50
    assert split_module.block_length(1_000, 50) == 10  # MIN_BLOCKS (100) blocks
    assert split_module.block_length(40, 50) == 1


def test_auto_uses_the_manifest_format(tmp_path):
    make_corpus(tmp_path / "sentences.txt")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "text"}))
    stats, _ = run(tmp_path, manifest_path=tmp_path / "manifest.json")
    assert (stats["split_unit"], stats["requested_split_unit"]) == ("block", "auto")
    assert stats["block_sentences"] == stats["sentences_kept"] // 100 < 50
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "csv"}))
    assert run(tmp_path, manifest_path=tmp_path / "manifest.json")[0]["split_unit"] == "document"


def test_too_few_units_for_a_training_split_is_refused_and_writes_nothing(tmp_path):
    (tmp_path / "sentences.txt").write_text("a b\nc d\n\ne f\n", encoding="utf-8")
    with pytest.raises(RnnlmError, match="only 2 split units, too few for a training split"):
        run(tmp_path, unit="document", valid_fraction=0.3, test_fraction=0.3)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_results_do_not_depend_on_the_chunk_size(tmp_path, monkeypatch):
    make_corpus(tmp_path / "sentences.txt")
    run(tmp_path, "whole", unit="block", block_sentences=6, min_length=2, max_length=5)
    monkeypatch.setattr(vocab_module, "CHUNK_BYTES", 40)
    run(tmp_path, "chunked", unit="block", block_sentences=6, min_length=2, max_length=5)
    for name in [*(f"{split}.txt" for split in SPLIT_NAMES), "split.json"]:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "chunked" / name).read_bytes()


def test_vocabulary_from_train_only_and_unseen_words_count_as_unknown(tmp_path):
    """A word seen only in valid or test has no entry: it is UNKNOWN_TOKEN there, and still scored."""
    corpus = make_corpus(tmp_path / "sentences.txt")
    texts = {split: tmp_path / f"{split}.txt" for split in SPLIT_NAMES}
    split_corpus(tmp_path / "sentences.txt", texts, tmp_path / "split.json", unit="document", seed=1)
    build_vocabulary(texts["train"], tmp_path / "vocab.tsv", tmp_path / "vocab.json", size=10_000, min_length=1, max_length=80)
    vocabulary = Vocabulary.load(tmp_path / "vocab.tsv")
    train_words = {token for line in texts["train"].read_text().split("\n") for token in line.split()}
    assert set(vocabulary.words[3:]) == train_words
    outputs = {split: tmp_path / f"{split}.npz" for split in SPLIT_NAMES}
    stats = build_index(texts, tmp_path / "vocab.tsv", outputs, tmp_path / "data.json", tmp_path / "split.json")
    valid = Split.load(outputs["valid"])
    valid_lines = [line for line in texts["valid"].read_text().split("\n") if line]
    # Every sentence id of valid ("d7s0") is unseen in training; "w" is known.
    assert np.count_nonzero(valid.y == UNKNOWN_ID) == len(valid_lines)
    assert valid.num_tokens == sum(len(line.split()) + 1 for line in valid_lines)
    words = valid.y[valid.y != SENTENCE_END_ID]
    assert stats["valid"]["unknown_rate"] == pytest.approx(len(valid_lines) / len(words))
    assert stats["train"]["unknown_rate"] == 0.0
    assert stats["valid"]["documents"] == valid.num_documents == json.loads((tmp_path / "split.json").read_text())["splits"]["valid"]["documents"]
    assert [len(document) for document in read_sentence_documents(texts["valid"])] == np.diff(valid.doc_offsets).tolist()
    assert sum(stats[split]["sentences"] for split in SPLIT_NAMES) == sum(map(len, corpus)) == stats["sentences_kept"]


def test_split_defaults_are_the_library_defaults():
    properties = SCHEMA["properties"]
    library = {"split_unit": split_module.SPLIT_UNIT, "split_block_sentences": split_module.BLOCK_SENTENCES,
               "valid_fraction": split_module.VALID_FRACTION, "test_fraction": split_module.TEST_FRACTION,
               "split_seed": split_module.SPLIT_SEED}
    assert {key: properties[key]["default"] for key in library} == library
    assert properties["split_unit"]["enum"] == list(split_module.SPLIT_UNITS)


# --- documents of a Split -------------------------------------------------------------------------


def small_split(doc_offsets=None) -> Split:
    ids = np.arange(3, 13, dtype=np.int32)
    return Split.from_ids(ids, np.array([2, 1, 3, 1, 3]), vocab_fingerprint="sha256:x", doc_offsets=doc_offsets)


def test_split_documents_and_their_subsets(tmp_path):
    split = small_split(np.array([0, 2, 3, 5]))
    assert split.num_documents == 3 and split.doc_offsets.dtype == np.int64
    picked = split.documents([2, 0])
    assert picked.doc_offsets.tolist() == [0, 2, 4]
    assert picked.lengths.tolist() == (split.lengths[[3, 4, 0, 1]]).tolist()
    np.testing.assert_array_equal(picked.y, np.concatenate([split.y[split.offsets[3]:], split.y[:split.offsets[2]]]))
    assert split.subset([4, 1]).doc_offsets.tolist() == [0, 1, 2]  # sentences: each its own document
    split.save(tmp_path / "s.npz")
    assert Split.load(tmp_path / "s.npz").doc_offsets.tolist() == [0, 2, 3, 5]
    assert small_split().doc_offsets.tolist() == list(range(6))


def test_a_file_without_doc_offsets_loads_as_one_sentence_per_document(tmp_path):
    split = small_split(np.array([0, 5]))
    save_npz(tmp_path / "old.npz", x=split.x, y=split.y, offsets=split.offsets, vocab_fingerprint=np.array("sha256:x"))
    assert Split.load(tmp_path / "old.npz").doc_offsets.tolist() == list(range(6))


@pytest.mark.parametrize("doc_offsets, problem", [
    (np.array([0, 2, 2, 5]), "increase strictly"), (np.array([0, 4]), "end at 5"), (np.array([1, 5]), "start at 0"),
    (np.array([0, 5], dtype=np.int32), "int64")])
def test_bad_doc_offsets_are_refused(doc_offsets, problem):
    with pytest.raises(RnnlmError, match=problem):
        split = small_split()
        Split(split.x, split.y, split.offsets, doc_offsets=doc_offsets)
