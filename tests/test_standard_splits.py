"""Standard-split corpora (three pretokenized files, PTB/WikiText style) used exactly as given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import validate

from rnnlm.data import Split, build_index
from rnnlm.io import RnnlmError
from rnnlm.pretokenized import prepare_splits
from rnnlm.vocab import SENTENCE_END_ID, SENTENCE_START_ID, UNKNOWN_ID, UNKNOWN_TOKEN, Vocabulary, build_vocabulary

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA = REPO_ROOT / "workflow/schemas/config.schema.yaml"
SPLITS = ("train", "valid", "test")

# PTB-like: leading space, <unk>, N for numbers, mixed case kept as given, a blank line, a long line.
FILES = {
    "train": " the Cat sat on the mat \n the <unk> ran N miles \n\n a dog saw the cat \n" + " the" * 12 + "\n",
    "valid": " the cat saw a <unk> \n",
    "test": " a Mat sat \n the zebra ran \n",
}


def write_files(directory: Path, files: dict[str, str] = FILES) -> dict[str, Path]:
    paths = {}
    for name, text in files.items():
        paths[name] = directory / f"ptb.{name}.txt"
        paths[name].write_text(text, encoding="utf-8")
    return paths


def prepare(tmp_path: Path, **options) -> tuple[dict, dict[str, Path]]:
    sources = write_files(tmp_path)
    outputs = {name: tmp_path / "tokens" / f"{name}.txt" for name in SPLITS}
    return prepare_splits(sources, outputs, tmp_path / "tokens" / "stats.json", **options), outputs


def test_lines_are_kept_as_given_and_unk_becomes_unknown_token(tmp_path):
    stats, outputs = prepare(tmp_path)
    assert outputs["train"].read_text().split("\n") == [
        "the Cat sat on the mat", f"the {UNKNOWN_TOKEN} ran N miles", "a dog saw the cat", " ".join(["the"] * 12), ""]
    assert outputs["test"].read_text() == "a Mat sat\nthe zebra ran\n"
    train = stats["splits"]["train"]
    assert (train["lines"], train["blank_lines"], train["sentences"], train["tokens"], train["unknown_tokens"]) == (5, 1, 4, 28, 1)
    assert stats["lowercase"] is False and stats["format"] == "pretokenized"
    assert json.loads((tmp_path / "tokens" / "stats.json").read_text()) == stats


def test_another_unknown_spelling(tmp_path):
    sources = write_files(tmp_path, {"train": "a UNK b\n", "valid": "a <unk>\n", "test": "b\n"})
    outputs = {name: tmp_path / f"{name}.out" for name in SPLITS}
    stats = prepare_splits(sources, outputs, tmp_path / "stats.json", unknown_token="UNK")
    assert outputs["train"].read_text() == f"a {UNKNOWN_TOKEN} b\n"
    assert outputs["valid"].read_text() == "a <unk>\n"  # another spelling is an ordinary word
    assert stats["splits"]["train"]["unknown_tokens"] == 1


@pytest.mark.parametrize("files, problem", [
    ({"train": " \n\n", "valid": "a\n", "test": "a\n"}, "holds no words"),
    ({"train": "a\n", "valid": "a\n"}, "test"),
])
def test_bad_files_are_refused_and_leave_nothing(tmp_path, files, problem):
    sources = write_files(tmp_path, files)
    sources.setdefault("test", tmp_path / "missing.txt")
    outputs = {name: tmp_path / "out" / f"{name}.txt" for name in SPLITS}
    with pytest.raises(RnnlmError, match=problem):
        prepare_splits(sources, outputs, tmp_path / "out" / "stats.json")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_bad_later_file_removes_the_splits_already_written(tmp_path):
    sources = write_files(tmp_path)
    sources["test"].write_bytes(b"\xff\n")
    outputs = {name: tmp_path / "out" / f"{name}.txt" for name in SPLITS}
    with pytest.raises(RnnlmError, match="not valid UTF-8"):
        prepare_splits(sources, outputs, tmp_path / "out" / "stats.json", encoding_errors="strict")
    assert not any((tmp_path / "out").iterdir())


def test_invalid_utf8_is_refused_under_strict_and_counted_under_replace(tmp_path):
    sources = write_files(tmp_path)
    sources["valid"].write_bytes(b"ok line\nbad \xff byte\n")
    outputs = {name: tmp_path / f"{name}.out" for name in SPLITS}
    with pytest.raises(RnnlmError, match=r"not valid UTF-8 \(line 2, byte 12"):
        prepare_splits(sources, outputs, tmp_path / "stats.json", encoding_errors="strict")
    stats = prepare_splits(sources, outputs, tmp_path / "stats.json")
    assert stats["splits"]["valid"]["replaced_invalid_sequences"] == 1


def test_vocabulary_from_train_and_splits_as_given(tmp_path):
    _, sentences = prepare(tmp_path)
    vocab_stats = build_vocabulary(sentences["train"], tmp_path / "vocab.tsv", tmp_path / "vocab.json", size=100,
                                   min_length=1, max_length=10)
    vocabulary = Vocabulary.load(tmp_path / "vocab.tsv")
    # Every word of the train file, none of valid/test only ("zebra", "Mat"); <unk> is UNKNOWN_TOKEN.
    assert set(vocabulary.words[3:]) == {"the", "Cat", "sat", "on", "mat", "ran", "N", "miles", "a", "dog", "saw", "cat"}
    assert vocab_stats["unknown_tokens"] == 1
    outputs = {name: tmp_path / f"{name}.npz" for name in SPLITS}
    stats = build_index(sentences, tmp_path / "vocab.tsv", outputs, tmp_path / "data.json", max_length=10)
    train, valid, test = (Split.load(outputs[name]) for name in SPLITS)
    # The 12-word train line is dropped by the length limit; valid and test are never filtered.
    assert len(train) == 3 and stats["dropped_too_long"] == 1
    # One document a split file: its lines are one stream.
    assert [split.doc_offsets.tolist() for split in (train, valid, test)] == [[0, 3], [0, 1], [0, 2]]
    assert len(valid) == 1 and len(test) == 2
    ids = vocabulary.ids
    expected = [ids["the"], UNKNOWN_ID, ids["ran"], ids["N"], ids["miles"]]
    np.testing.assert_array_equal(train.x[train.offsets[1]:train.offsets[2]], [SENTENCE_START_ID] + expected)
    np.testing.assert_array_equal(train.y[train.offsets[1]:train.offsets[2]], expected + [SENTENCE_END_ID])
    # Every word and each end of sentence is predicted: 3 + 1 and 3 + 1 tokens in test.
    assert test.num_tokens == 8 and stats["test"]["tokens"] == 8
    np.testing.assert_array_equal(test.y[:4], [ids["a"], UNKNOWN_ID, ids["sat"], SENTENCE_END_ID])


def config_with(corpus) -> dict:
    return {"corpus": corpus, "vocabulary_size": 10, "models": {"m": {}}}


def test_schema_accepts_three_files_and_fills_defaults():
    config = config_with({"train": "a.txt", "valid": "b.txt", "test": "c.txt"})
    validate(config, str(SCHEMA))
    assert config["corpus"]["format"] == "pretokenized" and config["corpus"]["unknown_token"] == "<unk>"


@pytest.mark.parametrize("corpus", [
    {"train": "a.txt", "valid": "b.txt"},
    {"train": "a.txt", "valid": "b.txt", "test": "c.txt", "format": "text"},
    {"train": "a.txt", "valid": "b.txt", "test": "c.txt", "unknown_token": "<u nk>"},
    {"train": "a.txt", "valid": "b.txt", "test": "c.txt", "shuffle": True},
])
def test_schema_refuses_incomplete_or_unknown_settings(corpus):
    with pytest.raises(Exception, match="corpus"):
        validate(config_with(corpus), str(SCHEMA))


@pytest.mark.slow
def test_pipeline_on_standard_splits(workflow_copy, run_snakemake):
    """Snakemake: the given splits reach the index matrices and the baseline; the seeded split's
    settings do not re-run anything; editing the test file re-runs from the standard_splits rule."""
    write_files(workflow_copy)
    config = yaml.safe_load((workflow_copy / "config.yaml").read_text())
    config.update(corpus={name: f"ptb.{name}.txt" for name in SPLITS}, vocabulary_size=100, max_sentence_length=10)
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/data/stats.json", "results/baseline/kn3.json"]
    built = run_snakemake(workflow_copy, *targets, timeout=900)
    assert built.returncode == 0, built.stderr
    assert not (workflow_copy / "results/corpus").exists()
    stats = json.loads((workflow_copy / "results/data/stats.json").read_text())
    assert (stats["train"]["sentences"], stats["valid"]["sentences"], stats["test"]["sentences"]) == (3, 1, 2)
    assert (stats["test"]["tokens"], stats["dropped_too_long"]) == (8, 1)
    # Each split file is one document (one stream), as PTB is read; the same vocab and index rules.
    assert [stats[name]["documents"] for name in SPLITS] == [1, 1, 1] and stats["split_unit"] == "given"
    assert json.loads((workflow_copy / "results/tokens/split.json").read_text())["splits"]["test"]["documents"] == 1
    baseline = json.loads((workflow_copy / "results/baseline/kn3.json").read_text())
    assert baseline["splits"]["test"]["tokens"] == 8
    assert (workflow_copy / "results/benchmarks/data/standard_splits.tsv").exists()

    unchanged = run_snakemake(workflow_copy, *targets, "-n", "--config", "valid_fraction=0.3", "split_seed=5", "lowercase=False",
                             "split_unit=sentence", "split_block_sentences=3", timeout=900)
    assert unchanged.returncode == 0 and "Nothing to be done" in unchanged.stdout + unchanged.stderr

    (workflow_copy / "ptb.test.txt").write_text(" a mat sat \n", encoding="utf-8")
    rerun = run_snakemake(workflow_copy, *targets, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads((workflow_copy / "results/data/stats.json").read_text())["test"]["sentences"] == 1
    assert "rule standard_splits" in rerun.stdout + rerun.stderr


@pytest.mark.slow
def test_lint_is_clean_for_standard_splits(workflow_copy, run_snakemake):
    write_files(workflow_copy)
    (workflow_copy / "splits.yaml").write_text(yaml.safe_dump({"corpus": {name: f"ptb.{name}.txt" for name in SPLITS}}))
    result = run_snakemake(workflow_copy, "--lint", "--configfile", "splits.yaml", timeout=900)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output
