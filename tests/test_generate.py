"""Generation: sampling rules, beam search (checked against exhaustive search), scoring."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from rnnlm.backend import get_backend
from rnnlm.generate import (MAX_BIGRAM_OVERLAP, GenerateConfig, TrainedModel, beam_search, bigram_overlap,
                            format_scores, run_generation, sample_sentences, score_sentences)
from rnnlm.io import RnnlmError, load_npz, save_npz
from rnnlm.model import RNNLM, ModelConfig
from rnnlm.vocab import SPECIAL_TOKENS, UNKNOWN_ID
from tiny_language import VOCAB_WORDS, WORDS, run, sentences


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    _, model, out = run(tmp_path_factory.mktemp("generate"), {"epochs": 30},
                        metadata={"lowercase": True, "normalize_quotes": True})
    return model, out / "params.npz"


def test_samples_respect_lengths_and_never_emit_special_tokens(trained):
    model = trained[0]
    # Make UNKNOWN_TOKEN the most likely next word everywhere: sampling must still never emit it.
    model.params["b_y"][UNKNOWN_ID] += 10.0
    try:
        sampled = sample_sentences(model, VOCAB_WORDS, 30, min_length=5, max_length=8, seed=1)
    finally:
        model.params["b_y"][UNKNOWN_ID] -= 10.0
    assert len(sampled) == 30
    assert all(5 <= len(s) <= 8 for s in sampled)
    assert not {w for s in sampled for w in s} - set(WORDS)


def test_sampling_is_seeded_and_low_temperature_is_deterministic(trained):
    model = trained[0]
    first = sample_sentences(model, VOCAB_WORDS, 10, min_length=3, max_length=10, seed=5)
    assert first == sample_sentences(model, VOCAB_WORDS, 10, min_length=3, max_length=10, seed=5)
    assert first != sample_sentences(model, VOCAB_WORDS, 10, min_length=3, max_length=10, seed=6)
    cold = sample_sentences(model, VOCAB_WORDS, 5, min_length=3, max_length=10, temperature=1e-3, seed=0)
    assert len({tuple(s) for s in cold}) == 1
    assert tuple(cold[0]) in {tuple(s) for s in sentences(5000, 9)}


def test_trained_model_samples_mostly_grammatical_sentences(trained):
    grammatical = {tuple(s) for s in sentences(5000, 9)}
    sampled = sample_sentences(trained[0], VOCAB_WORDS, 40, min_length=4, max_length=10, temperature=0.7, seed=0)
    assert sum(tuple(s) in grammatical for s in sampled) >= 20


def test_impossible_length_limits_fail_after_bounded_attempts(trained):
    with pytest.raises(RnnlmError, match=r"only \d+ of 2 sampled sentences had 25 to 25 words"):
        sample_sentences(trained[0], VOCAB_WORDS, 2, min_length=25, max_length=25)
    with pytest.raises(RnnlmError, match="min_length <= max_length"):
        sample_sentences(trained[0], VOCAB_WORDS, 2, min_length=9, max_length=3)


def test_prime_words_start_every_sentence(trained):
    model = trained[0]
    sampled = sample_sentences(model, VOCAB_WORDS, 5, min_length=3, max_length=10, prime=["her", "sister"])
    beam = beam_search(model, VOCAB_WORDS, 3, min_length=3, max_length=10, prime=["her", "sister"])
    assert all(s[:2] == ["her", "sister"] for s in sampled + [b.words for b in beam])
    with pytest.raises(RnnlmError, match=r"prime words \['zebra'\] are not in the model's vocabulary"):
        sample_sentences(model, VOCAB_WORDS, 1, prime=["zebra"])
    with pytest.raises(RnnlmError, match="prime words"):
        beam_search(model, VOCAB_WORDS, 1, prime=["UNKNOWN_TOKEN"])


def test_beam_search_matches_exhaustive_search_and_scoring():
    words = [*SPECIAL_TOKENS, "a", "b", "c"]
    model = RNNLM(ModelConfig(vocab_size=len(words), hidden_size=5), get_backend("cpu"), seed=2)
    model.params["W"] *= 4  # a peaked, history-dependent distribution
    model.params["V"] *= 4
    candidates = [list(c) for n in (2, 3) for c in itertools.product(["a", "b", "c"], repeat=n)]
    exact = sorted(score_sentences(model, words, candidates), key=lambda s: -s.log_prob)[:4]
    # Without the near-duplicate rule and as wide as all candidates, beam search is exhaustive.
    found = beam_search(model, words, beam_width=len(candidates), min_length=2, max_length=3, max_overlap=1)[:4]
    assert [s.words for s in found] == [s.words for s in exact]
    np.testing.assert_allclose([s.log_prob for s in found], [s.log_prob for s in exact], rtol=1e-5)
    narrow = beam_search(model, words, beam_width=3, min_length=2, max_length=3, max_overlap=1)
    assert len(narrow) == 3
    assert [s.log_prob for s in narrow] == sorted((s.log_prob for s in narrow), reverse=True)


def test_beams_end_where_the_model_ends_them_and_are_distinct(trained):
    model = trained[0]
    beams = beam_search(model, VOCAB_WORDS, beam_width=3, min_length=2, max_length=9)
    # The tiny language has few distinct ways to say the likeliest things: at least two remain.
    assert 2 <= len(beams) <= 3
    assert all(2 <= len(b.words) <= 9 for b in beams)
    assert all(bigram_overlap(a.words, b.words) <= MAX_BIGRAM_OVERLAP for a, b in itertools.combinations(beams, 2))
    # Each ends at SENTENCE_END as scored: the figure is the whole sentence's, SENTENCE_END included.
    np.testing.assert_allclose([b.log_prob for b in beams],
                               [s.log_prob for s in score_sentences(model, VOCAB_WORDS, [b.words for b in beams])],
                               rtol=1e-5)
    # The tiny language's sentences end after a noun phrase, never on "the": no beam stops mid-phrase
    # at the minimum length just because a shorter sentence is more probable.
    assert all(b.words[-1] != "the" for b in beams)
    plain = beam_search(model, VOCAB_WORDS, beam_width=3, min_length=2, max_length=9, max_overlap=1)
    assert any(bigram_overlap(a.words, b.words) > MAX_BIGRAM_OVERLAP for a, b in itertools.combinations(plain, 2))
    # The groups explore different openings where plain beam search follows the likeliest one.
    assert len({tuple(b.words[:3]) for b in beams}) > len({tuple(b.words[:3]) for b in plain})


def test_beam_search_stops_at_max_length():
    words = [*SPECIAL_TOKENS, "a", "b"]
    model = RNNLM(ModelConfig(vocab_size=len(words), hidden_size=4), get_backend("cpu"), seed=0)
    model.params["b_y"][1] = -30.0  # SENTENCE_END all but impossible: only the length limit ends sentences
    beams = beam_search(model, words, beam_width=2, min_length=1, max_length=4, max_overlap=1)
    assert beams and all(len(b.words) == 4 for b in beams)


def test_beam_width_zero_turns_beam_search_off(trained, tmp_path):
    text = run_generation(trained[1], None, GenerateConfig(num_sentences=2, min_length=2, max_length=8,
                                                           beam_width=0), device="cpu")
    lines = text.splitlines()
    assert lines[-1] == "# beam search: off (beam_width 0)" and len(lines) == 5


def test_scores_rank_grammatical_above_scrambled_and_count_unknown_words(trained):
    model = trained[0]
    good = "the cat sees the ball today".split()
    scrambled = "ball the today sees cat the".split()
    with_unknown = "the cat sees the zebra".split()
    scored = score_sentences(model, VOCAB_WORDS, [good, scrambled, with_unknown])
    assert scored[0].log_prob > scored[1].log_prob + 5
    assert [s.tokens for s in scored] == [7, 7, 6]
    assert [s.unknown for s in scored] == [0, 0, 1]
    assert scored[0].perplexity == pytest.approx(math.exp(-scored[0].log_prob / 7))
    table = format_scores(scored, rank=True).splitlines()
    assert table[0] == "log_prob\tperplexity\ttokens\tunknown\tsentence"
    assert table[1].endswith("\tthe cat sees the ball today")


def test_unknown_words_share_the_unknown_probability_so_they_rank_low(trained):
    model = trained[0]
    known = "the cat sees the ball today".split()
    unknown = "zebra quux blorp sees the".split()
    plain, spread = (score_sentences(model, VOCAB_WORDS, [known, unknown], unknown_word_types=types)
                     for types in (1, 50))
    assert spread[0].log_prob == pytest.approx(plain[0].log_prob)  # no unknown word: unchanged
    assert spread[1].log_prob == pytest.approx(plain[1].log_prob - 3 * math.log(50))
    assert spread[0].log_prob > spread[1].log_prob
    # Without a recorded count the mass goes to as many words as the vocabulary holds.
    default = score_sentences(model, VOCAB_WORDS, [unknown])[0]
    assert default.log_prob == pytest.approx(plain[1].log_prob - 3 * math.log(len(VOCAB_WORDS)))


def test_the_score_table_ends_with_the_file_total(trained):
    scored = score_sentences(trained[0], VOCAB_WORDS, [["the", "cat"], ["zebra", "sees"]])
    total = sum(s.log_prob for s in scored)
    assert format_scores(scored).splitlines()[-1] == (
        f"# total: log_prob {total:.4f}, perplexity {math.exp(-total / 6):.4f}, 6 tokens, 1 unknown words, 2 sentences")


def test_unknown_word_types_come_from_the_vocab_stats(tmp_path):
    from rnnlm.io import write_json
    from rnnlm.vocab import unknown_word_types, vocabulary_metadata

    assert unknown_word_types(tmp_path / "vocab.tsv") is None and vocabulary_metadata(tmp_path / "vocab.tsv") == {}
    write_json(tmp_path / "stats.json", {"distinct_words": 3154, "size": 2000})
    assert vocabulary_metadata(tmp_path / "vocab.tsv") == {"unknown_word_types": 3154 - 1997}
    write_json(tmp_path / "stats.json", {"distinct_words": 10, "size": 13})  # every word kept
    assert unknown_word_types(tmp_path / "vocab.tsv") == 1


def test_score_input_is_tokenized_like_the_training_text(trained):
    lm = TrainedModel.load(trained[1], device="cpu")
    scored = lm.score(["The Cat sees the ball, today.\n", "Her sister’s \u201cball\u201d"])
    assert [s.words for s in scored] == [["the", "cat", "sees", "the", "ball", ",", "today", "."],
                                         ["her", "sister", "'s", "``", "ball", "''"]]
    assert [s.words for s in lm.score(["The cat,x"], pretokenized=True)] == [["the", "cat,x"]]


def test_a_model_without_quote_normalisation_recorded_keeps_its_quotes(trained, tmp_path):
    arrays = load_npz(trained[1])
    arrays["metadata_json"] = np.array(json.dumps({"lowercase": False}))
    old = tmp_path / "params.npz"
    save_npz(old, **arrays)
    lm = TrainedModel.load(old, device="cpu")
    assert lm.score(["Her sister’s"])[0].words == ["Her", "sister", "’", "s"]  # as the old pipeline split it
    assert lm.display(["the", "cat", "."]) == "the cat."  # not capitalised: the text kept its case


def quote_model(tmp_path):
    """An untrained model whose vocabulary holds a contraction, saved as the pipeline saves one."""
    words = [*SPECIAL_TOKENS, "function", "'s", "value", "is", "n't", "here", "."]
    model = RNNLM(ModelConfig(vocab_size=len(words), hidden_size=5), get_backend("cpu"), seed=0)
    path = tmp_path / "params.npz"
    model.save(path, words, {"lowercase": True, "normalize_quotes": True})
    return path


@pytest.mark.parametrize("prime", ["function's", "Function’s"])
def test_prime_is_tokenized_like_the_training_text(tmp_path, prime):
    config = GenerateConfig(num_sentences=3, min_length=3, max_length=8, beam_width=2, prime=prime)
    lines = [line for line in run_generation(quote_model(tmp_path), None, config, device="cpu").splitlines()
             if not line.startswith("#")]
    assert len(lines) == 3 + 2
    for line in lines[:3]:
        text, tokens = line.split("\t")
        assert tokens.startswith("function 's ") and text.startswith("Function's")
    for line in lines[3:]:
        assert line.split("\t")[2].startswith("function 's ")


def test_run_generation_writes_detokenized_samples_with_their_tokens(trained, tmp_path):
    out = tmp_path / "samples.txt"
    config = GenerateConfig(num_sentences=4, min_length=3, max_length=10, beam_width=2, prime="The")
    text = run_generation(trained[1], out, config, device="cpu")
    assert out.read_text() == text
    lines = text.splitlines()
    assert lines[:2] == ["# sampled sentences (temperature 1, seed 0, 3 to 10 words, prime 'The')",
                         "# columns: text, tokens"]
    beams = int(lines[6].split()[4])  # near-duplicates dropped: the tiny language allows one or two
    assert lines[6] == f"# beam search: the {beams} most probable distinct sentences" and len(lines) == 8 + beams
    assert lines[7] == "# columns: log_prob (natural log), text, tokens"
    for line in lines[2:6]:
        display, tokens = line.split("\t")
        assert tokens.startswith("the ") and display.startswith("The ")  # capitalised for display
        assert " ." not in display and display.replace(" ", "") == ("T" + tokens[1:]).replace(" ", "")
    log_prob, display, tokens = lines[8].split("\t")
    assert float(log_prob) < 0 and display.startswith("The ") and tokens.startswith("the ")


def test_trained_model_samples_text(trained):
    lm = TrainedModel.load(trained[1], device="cpu")
    sampled = lm.sample(3, prime="her sister", min_length=4, max_length=10, seed=2)
    assert len(sampled) == 3 and all(text.startswith("Her sister ") for text in sampled)
