"""Tokenize stage: Punkt without nltk_data, word tokens, parallel determinism, stats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnlm import tokenize
from rnnlm.corpus import write_documents
from rnnlm.io import RnnlmError
from rnnlm.tokenize import (DOCUMENTS_PER_TASK, DocumentTokenizer, WordTokenizer, detokenize, read_sentence_documents,
                            read_sentences, tokenize_corpus, train_sentence_splitter)

SUBJECTS = ["The cat", "A dog", "Dr. Brown", "My neighbour", "The old sailor", "Every child"]
VERBS = ["sees", "likes", "follows", "paints", "remembers"]
OBJECTS = ["the river", "a red house", "the market in town", "her friend", "two birds"]


def make_documents(count: int) -> list[str]:
    """Deterministic little documents of two or three sentences each."""
    documents = []
    for index in range(count):
        sentences = [
            f"{SUBJECTS[(index + k) % len(SUBJECTS)]} {VERBS[(index * 3 + k) % len(VERBS)]} "
            f"{OBJECTS[(index * 7 + k) % len(OBJECTS)]}{'!' if (index + k) % 5 == 0 else '.'}"
            for k in range(2 + index % 2)
        ]
        documents.append(" ".join(sentences))
    return documents


def test_sentences_are_split_lowercased_and_word_tokenized():
    splitter, _ = train_sentence_splitter(make_documents(60))
    tokenizer = DocumentTokenizer(splitter, WordTokenizer(lowercase=True, normalize_quotes=True))
    assert tokenizer.sentences("The cat sees the river. It isn't wet!") == [
        ["the", "cat", "sees", "the", "river", "."],
        ["it", "is", "n't", "wet", "!"],
    ]
    cased = DocumentTokenizer(splitter, WordTokenizer(lowercase=False, normalize_quotes=True))
    assert cased.sentences("Hello World.") == [["Hello", "World", "."]]


def test_tokens_never_contain_whitespace():
    splitter, _ = train_sentence_splitter(make_documents(10))
    tokenizer = DocumentTokenizer(splitter, WordTokenizer(lowercase=True, normalize_quotes=True))
    lines = tokenizer.lines(["Tabs\tand\u00a0no-break\u2003spaces\u2028and lines.\nNext line here."])
    for line in lines:
        assert all(token and not any(ch.isspace() for ch in token) for token in line.split(" "))


@pytest.mark.slow
def test_training_is_deterministic_across_hash_seeds(tmp_path):
    """Punkt's trainer iterates over sets; its result must not depend on string hashing."""
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, make_documents(120))
    script = (
        "import sys; from rnnlm.tokenize import tokenize_corpus; "
        "tokenize_corpus(sys.argv[1], sys.argv[2], sys.argv[3])"
    )
    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"sentences{seed}.txt"
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(Path(tokenize.__file__).parents[1]))
        subprocess.run([sys.executable, "-c", script, str(documents_path), str(out), str(tmp_path / "stats.json")],
                       check=True, env=env, timeout=120)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_parallel_output_equals_serial_output(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenize, "DOCUMENTS_PER_TASK", 7)
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, make_documents(50))
    serial = tokenize_corpus(documents_path, tmp_path / "serial.txt", tmp_path / "serial.json", processes=1)
    parallel = tokenize_corpus(documents_path, tmp_path / "parallel.txt", tmp_path / "parallel.json", processes=2)
    assert (tmp_path / "serial.txt").read_bytes() == (tmp_path / "parallel.txt").read_bytes()
    assert serial == parallel


def test_stats_count_documents_sentences_tokens_and_words(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenize, "installed_sentence_splitter", lambda: None)
    documents_path = tmp_path / "documents.jsonl"
    documents = make_documents(40)
    write_documents(documents_path, documents)
    stats = tokenize_corpus(documents_path, tmp_path / "sentences.txt", tmp_path / "stats.json")
    sentences = list(read_sentences(tmp_path / "sentences.txt"))
    assert stats["documents"] == 40
    assert stats["sentences"] == len(sentences) > 40
    assert stats["tokens"] == sum(len(s) for s in sentences)
    assert stats["distinct_words"] == len({t for s in sentences for t in s})
    assert stats["punkt"].startswith("trained on the corpus")
    assert json.loads((tmp_path / "stats.json").read_text()) == stats


def test_documents_are_separated_by_one_empty_line(tmp_path, monkeypatch):
    """The sentences-file contract: a document's sentences are consecutive lines, one empty line
    between documents, none before the first or after the last, and a document without a word token
    (here whitespace, punctuation-free nothing) leaves no trace, across task blocks too."""
    monkeypatch.setattr(tokenize, "installed_sentence_splitter", lambda: None)
    documents = make_documents(2 * DOCUMENTS_PER_TASK + 3)
    for index in (0, 4, 5, DOCUMENTS_PER_TASK - 1, DOCUMENTS_PER_TASK, len(documents) - 1):
        documents[index] = "  \n "
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, documents)
    for processes in (1, 2):
        tokenize_corpus(documents_path, tmp_path / "sentences.txt", tmp_path / "stats.json", processes=processes)
        text = (tmp_path / "sentences.txt").read_text(encoding="utf-8")
        assert not text.startswith("\n") and not text.endswith("\n\n") and "\n\n\n" not in text
        splitter, _ = train_sentence_splitter(documents)
        tokenizer = DocumentTokenizer(splitter, WordTokenizer(lowercase=True, normalize_quotes=True))
        expected = [tokenizer.sentences(document) for document in documents if document.strip()]
        assert list(read_sentence_documents(tmp_path / "sentences.txt")) == expected
        assert len(expected) == len(documents) - 6 and all(len(document) >= 2 for document in expected)


def test_installed_punkt_parameters_are_preferred(tmp_path, monkeypatch):
    installed, _ = train_sentence_splitter(make_documents(5))
    monkeypatch.setattr(tokenize, "installed_sentence_splitter", lambda: installed)
    splitter, source = tokenize.sentence_splitter_for(make_documents(5))
    assert splitter is installed and source.startswith("installed")


def test_training_sample_is_capped_at_whole_documents():
    documents = make_documents(20)
    _, used = train_sentence_splitter(documents, max_characters=len(documents[0]) + len(documents[1]) + 5)
    assert used == 2


def test_a_corpus_without_words_fails_and_leaves_no_output(tmp_path):
    documents_path = tmp_path / "documents.jsonl"
    documents_path.write_text("")
    with pytest.raises(RnnlmError, match="no documents"):
        tokenize_corpus(documents_path, tmp_path / "out" / "sentences.txt", tmp_path / "out" / "stats.json")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_documents_file_is_reported(tmp_path):
    documents_path = tmp_path / "documents.jsonl"
    documents_path.write_text('"fine"\n{"not": "a string"}\n')
    with pytest.raises(RnnlmError, match="line 2 is not a JSON string"):
        tokenize_corpus(documents_path, tmp_path / "sentences.txt", tmp_path / "stats.json")


def test_typographic_quotes_are_normalised_when_configured():
    splitter, _ = train_sentence_splitter(make_documents(60))
    text = "The function\u2019s value hasn\u2019t changed: \u201cyes\u201d, \u2018no\u2019."
    normalised = DocumentTokenizer(splitter, WordTokenizer(lowercase=True, normalize_quotes=True))
    assert normalised.sentences(text) == [
        ["the", "function", "'s", "value", "has", "n't", "changed", ":", "``", "yes", "''", ",", "'", "no", "'", "."]]
    kept = DocumentTokenizer(splitter, WordTokenizer(lowercase=True, normalize_quotes=False))
    assert "\u2019" in kept.sentences(text)[0]


def test_stats_record_quote_normalisation(tmp_path):
    documents_path = tmp_path / "documents.jsonl"
    write_documents(documents_path, ["It\u2019s here. It's there."])
    stats = tokenize_corpus(documents_path, tmp_path / "sentences.txt", tmp_path / "stats.json")
    assert stats["normalize_quotes"] is True
    assert (tmp_path / "sentences.txt").read_text() == "it 's here .\nit 's there .\n"
    stats = tokenize_corpus(documents_path, tmp_path / "sentences.txt", tmp_path / "stats.json",
                            normalize_quotes=False)
    assert stats["normalize_quotes"] is False and "\u2019" in (tmp_path / "sentences.txt").read_text()


@pytest.mark.parametrize("text, capitalize, shown", [
    ("it is n't here , he said .", True, "It isn't here, he said."),
    ("the function 's value ( see below ) : `` yes '' !", True, 'The function\'s value (see below): "yes"!'),
    ("marcius : ay , ' tis a merry mother ?", True, "Marcius: ay, 'tis a merry mother?"),
    ("the ' quoted ' word", False, "the 'quoted' word"),
    ("the dogs ' bones", False, "the dogs' bones"),
    ("`` 3 '' is $ 5 ...", True, '"3" is $5 ...'),
    ("__dict__ holds the attributes .", True, "__dict__ holds the attributes."),
    ("_private names are a convention .", True, "_private names are a convention."),
])
def test_detokenize_reads_like_text(text, capitalize, shown):
    assert detokenize(text.split(" "), capitalize=capitalize) == shown


def test_word_tokenizer_round_trips_through_detokenize():
    words = WordTokenizer(lowercase=False, normalize_quotes=True)
    for sentence in ["He said \"it isn't here,\" and left.", "Use f(x) - it's 3.5% of $10, isn't it?"]:
        assert words.tokenize(detokenize(words.tokenize(sentence))) == words.tokenize(sentence)


def test_word_tokenizer_gives_nltks_tokens_on_tricky_text():
    """The guarded, re-compiled substitutions must reproduce NLTK's word tokenizer exactly."""
    from nltk.tokenize import NLTKWordTokenizer

    pieces = ["word", "Word", "can", "not", "cannot", "CANNOT", "gonna", "gimme", "lemme", "wanna", "gotta",
              "d'ye", "more'n", "'tis", "'Twas", "isn't", "I'm", "they'll", "we'd", "you've", "rock 'n' roll",
              "'", "''", '"', "`", "``", ".", "..", "...", ",", ":", ";", "1,000", "3:4", "?", "!", "(", ")", "[",
              "]", "{", "}", "<", ">", "-", "--", "\u2013", "\u2014", "\u2012", "\u2015", "«", "»", "“", "”", "‘",
              "’", "„", "*", "@", "#", "$", "%", "&", " ", "  ", "\t", "\u00a0", "\u2028", "\n", "Mr.", "e.g."]
    rng = np.random.default_rng(0)
    tokenizer, reference = tokenize.NLTKWordTokens(), NLTKWordTokenizer()
    assert tokenizer.fast
    for _ in range(3000):
        parts = rng.choice(pieces, size=int(rng.integers(1, 14)))
        joiners = rng.choice(["", " ", " "], size=len(parts))
        text = "".join(part + joiner for part, joiner in zip(parts, joiners))
        assert tokenizer.tokenize(text) == reference.tokenize(text), text


def test_unknown_nltk_patterns_fall_back_to_nltk(monkeypatch):
    monkeypatch.setattr(tokenize, "_ANY_OF", {})
    tokenizer = tokenize.NLTKWordTokens()
    assert not tokenizer.fast
    assert tokenizer.tokenize("It isn't.") == ["It", "is", "n't", "."]


def test_documents_are_read_lazily_and_in_bounded_windows(tmp_path, monkeypatch):
    """The stage never asks for more documents than the tasks in flight need."""
    monkeypatch.setattr(tokenize, "DOCUMENTS_PER_TASK", 2)
    splitter, _ = train_sentence_splitter(make_documents(10))
    tokenizer = DocumentTokenizer(splitter, WordTokenizer(lowercase=True, normalize_quotes=True))
    consumed = []

    def documents():
        for index, document in enumerate(make_documents(200)):
            consumed.append(index)
            yield document

    blocks = tokenize.tokenize_blocks(documents(), tokenizer, processes=2)
    next(blocks)
    window = 2 * tokenize.TASKS_IN_FLIGHT_PER_PROCESS * tokenize.DOCUMENTS_PER_TASK
    assert len(consumed) <= window + tokenize.DOCUMENTS_PER_TASK
    rest = list(blocks)
    assert len(consumed) == 200 and sum(block.documents for block in rest) == 198
