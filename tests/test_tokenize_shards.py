"""Sharded tokenize stage: byte-identical to the unsharded stage for any number of shards."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from rnnlm import tokenize
from rnnlm.corpus import write_documents
from rnnlm.io import RnnlmError
from rnnlm.tokenize import WordTokenizer, tokenize_corpus, train_sentence_splitter
from rnnlm.tokenize_shards import (
    merge_shards,
    parse_shard,
    save_sentence_splitter,
    shard_documents,
    splitter_from_json,
    splitter_to_json,
    tokenize_shard,
)
from test_tokenize import make_documents
from workflow_runs import artifact_digests, differing, job_counts, make_workdir, run_snakemake


def corpus_documents() -> list[str]:
    """Documents of very different sizes (so byte-balanced shards cut at uneven document counts),
    with abbreviations Punkt must learn, non-ASCII text and documents without any word token."""
    documents = make_documents(90)
    documents[5] = " ".join(documents[5:40])  # one long document
    documents[7] = "   "
    documents[11] = "Mr. Ödön Horváth met Dr. Brown at 5 p.m. in St. Gallen. Ça va? « Oui. »"
    documents[12] = "\u201cIt\u2019s late,\u201d said Mrs. Lee. \u2018Go home.\u2019 They went."
    return documents


def run_sharded(documents_path, tmp_path, shards: int, lowercase: bool = True,
                normalize_quotes: bool = True) -> tuple[bytes, dict]:
    splitter = tmp_path / "punkt.json"
    save_sentence_splitter(documents_path, splitter, normalize_quotes=normalize_quotes)
    outputs = []
    for k in range(1, shards + 1):
        shard = tmp_path / f"{k}-of-{shards}"
        paths = (shard / "sentences.txt", shard / "words.txt", shard / "stats.json")
        tokenize_shard(documents_path, splitter, f"{k}-of-{shards}", *paths, lowercase=lowercase,
                       normalize_quotes=normalize_quotes)
        outputs.append(paths)
    sentences, stats = tmp_path / "sentences.txt", tmp_path / "stats.json"
    merge_shards(*(list(column) for column in zip(*outputs)), sentences, stats)
    return sentences.read_bytes(), json.loads(stats.read_text(encoding="utf-8"))


@pytest.fixture
def no_installed_punkt(monkeypatch):
    """Punkt is trained on the corpus (the global state that must be computed once)."""
    monkeypatch.setattr(tokenize, "installed_sentence_splitter", lambda: None)


@pytest.mark.parametrize("shards, lowercase, normalize_quotes",
                         [(1, True, True), (2, True, True), (4, True, True), (4, False, False), (7, True, True),
                          (150, True, True)])
def test_sharded_output_is_byte_identical_to_the_unsharded_stage(tmp_path, no_installed_punkt, shards, lowercase,
                                                                   normalize_quotes):
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, corpus_documents())
    tokenize_corpus(documents_path, tmp_path / "sentences.txt", tmp_path / "stats.json", lowercase=lowercase,
                    normalize_quotes=normalize_quotes)
    expected_stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert expected_stats["punkt"].startswith("trained on the corpus")

    sentences, stats = run_sharded(documents_path, tmp_path / "sharded", shards, lowercase, normalize_quotes)
    assert sentences == (tmp_path / "sentences.txt").read_bytes()
    assert sentences.count(b"\n\n") == expected_stats["documents"] - 2  # 89 documents with words (one is blank): 88 separators
    assert stats == expected_stats


def test_punkt_is_trained_on_the_whole_corpus_prefix_not_per_shard(tmp_path, no_installed_punkt):
    """A shard that trained its own Punkt would split differently: the saved parameters are those
    learned from the corpus's leading documents, quotes normalised."""
    documents = corpus_documents()
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, documents)
    save_sentence_splitter(documents_path, tmp_path / "punkt.json")
    saved = json.loads((tmp_path / "punkt.json").read_text(encoding="utf-8"))
    normalize = WordTokenizer(lowercase=False, normalize_quotes=True).normalize
    trained, used = train_sentence_splitter([normalize(document) for document in documents])
    assert saved == splitter_to_json(trained, f"trained on the corpus ({used} documents)")
    assert "dr" in saved["abbrev_types"]


def test_punkt_parameters_survive_the_round_trip():
    splitter, _ = train_sentence_splitter(corpus_documents())
    data = json.loads(json.dumps(splitter_to_json(splitter, "trained")))
    restored, source = splitter_from_json(data, "punkt.json")
    assert source == "trained"
    original, copy = splitter._params, restored._params
    assert copy.abbrev_types == original.abbrev_types and copy.collocations == original.collocations
    assert copy.sent_starters == original.sent_starters
    assert {k: v for k, v in copy.ortho_context.items() if v} == {k: v for k, v in original.ortho_context.items() if v}
    assert copy.ortho_context["never-seen-word"] == 0


def test_shards_partition_the_documents_in_order(tmp_path):
    documents = corpus_documents()
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, documents)
    for shards in (1, 3, 8, 500):
        parts = [list(shard_documents(documents_path, k, shards)) for k in range(shards)]
        assert [document for part in parts for document in part] == documents
    # Balanced by bytes: with 3 shards no shard holds more than half of the file.
    sizes = [sum(len(json.dumps(d)) for d in shard_documents(documents_path, k, 3)) for k in range(3)]
    assert max(sizes) < sum(sizes) / 2


def test_shard_names_are_checked():
    assert parse_shard("1-of-4") == (0, 4)
    assert parse_shard("4-of-4") == (3, 4)
    for bad in ("0-of-4", "5-of-4", "a-of-b", "3"):
        with pytest.raises(RnnlmError, match="k-of-n"):
            parse_shard(bad)


def test_an_empty_corpus_fails_before_any_shard(tmp_path):
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, [])
    with pytest.raises(RnnlmError, match="holds no documents"):
        save_sentence_splitter(documents_path, tmp_path / "punkt.json")
    assert not (tmp_path / "punkt.json").exists()


def test_shards_without_words_fail_at_the_merge_and_leave_no_output(tmp_path, no_installed_punkt):
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, ["   ", "\n\n", "\t"])
    with pytest.raises(RnnlmError, match="no sentence with a word token"):
        run_sharded(documents_path, tmp_path, 2)
    assert not (tmp_path / "sentences.txt").exists() and not (tmp_path / "stats.json").exists()


def test_a_bad_line_is_reported_with_its_byte_offset(tmp_path):
    documents_path = tmp_path / "documents.jsonl"
    documents_path.write_text('"one"\n{"not": "a string"}\n', encoding="utf-8")
    with pytest.raises(RnnlmError, match="line at byte 6 is not a JSON string"):
        list(shard_documents(documents_path, 0, 1))


@pytest.mark.slow
def test_four_shards_through_snakemake_give_the_unsharded_artifacts(tmp_path, snakemake_env):
    """The workflow with `tokenize_shards: 4` runs the splitter once, four shard jobs and the merge,
    and every data artifact equals the one-job run's byte for byte; the shards' files are removed.
    Both runs use one directory (the manifest records the corpus's absolute path)."""
    runs = {}
    for shards in (1, 4):
        workdir = make_workdir(tmp_path / "run", tokenize_shards=shards)
        shutil.rmtree(workdir / "results", ignore_errors=True)
        output = run_snakemake(workdir, "--cores", "2", "results/data/stats.json", env=snakemake_env)
        runs[shards] = (job_counts(output), artifact_digests(workdir))
    (jobs, digests), (unsharded_jobs, unsharded_digests) = runs[4], runs[1]
    assert jobs == unsharded_jobs + Counter(sentence_splitter=1, tokenize_shard=4)
    assert set(digests) - set(unsharded_digests) == {"tokens/punkt.json"}
    assert differing({name: digests[name] for name in unsharded_digests}, unsharded_digests) == []
    assert not (workdir / "results" / "tokens" / "shards").exists()
