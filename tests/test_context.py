"""Document mode end to end in the library: training on streams, the schedule and evaluation read in
context, resume after SIGKILL byte-identical, sentence mode untouched."""

from __future__ import annotations


import numpy as np
import pytest

import rnnlm.train as train_module
from rnnlm import evaluate, streams
from rnnlm.data import Split
from rnnlm.model import RNNLM
from rnnlm.train import measurement_subset
from test_train import kill_then_resume, read_log
from tiny_language import run, tiny_splits, write_tiny_data

DOCUMENT = {"context": "document", "bptt": 7, "batch_size": 4}


def with_documents(split, sentences_per_document: int = 4):
    """The split with consecutive runs of sentences as documents (the last one shorter)."""
    return Split(split.x, split.y, split.offsets, vocab_fingerprint=split.vocab_fingerprint,
                 doc_offsets=np.unique(np.append(np.arange(0, len(split), sentences_per_document), len(split))))


def document_splits():
    return {name: with_documents(split) for name, split in tiny_splits().items()}


def test_document_mode_learns_and_is_measured_in_context(tmp_path, monkeypatch):
    seen = []
    original = train_module.sgd_step

    def recording(model, x, y, mask, *args, **kwargs):
        seen.append((x.shape, kwargs.get("state") is not None, np.asarray(kwargs["resets"]).copy()))
        return original(model, x, y, mask, *args, **kwargs)

    monkeypatch.setattr(train_module, "sgd_step", recording)
    splits = document_splits()
    state, model, out = run(tmp_path, DOCUMENT, splits=splits)
    assert model.config.context == "document"
    # Windows of bptt steps on batch_size rows, each epoch a pass over every training token.
    assert all(shape[0] <= 7 and shape[1] == 4 for shape, _, _ in seen)
    windows_per_epoch = -(-(-(-splits["train"].num_tokens // 4)) // 7)
    assert len(seen) == windows_per_epoch * 4
    # The state is carried from each window into the next within a pass, not into a pass's first.
    carried = [has_state for _, has_state, _ in seen]
    assert carried == [w % windows_per_epoch != 0 for w in range(len(seen))]
    assert all(resets[0].all() for _, has_state, resets in seen if not has_state)
    # The schedule's valid loss is the loss read in context, and training beat a unigram model.
    rows = read_log(out / "train_log.csv")
    best, _, _ = RNNLM.load(out / "params.npz", model.backend)
    total, tokens = streams.split_loss(best, splits["valid"])
    assert tokens == splits["valid"].num_tokens
    assert min(float(row["valid_loss"]) for row in rows) == pytest.approx(total / tokens, abs=1e-6)
    assert evaluate.mean_loss(best, splits["valid"]) == pytest.approx(total / tokens, rel=1e-9)
    unigram = evaluate.unigram_loss(evaluate.unigram_log_probs(splits["train"], model.config.vocab_size), splits["valid"])
    assert total / tokens < unigram - 0.3


def test_sentence_mode_is_unchanged_by_document_boundaries(tmp_path):
    # A sentence-mode model ignores doc_offsets: the same bytes with and without them.
    run(tmp_path, name="plain")
    run(tmp_path, splits=document_splits(), name="documents")
    assert (tmp_path / "plain" / "params.npz").read_bytes() == (tmp_path / "documents" / "params.npz").read_bytes()


def test_a_document_mode_run_is_reproducible_and_the_seed_orders_the_documents(tmp_path):
    run(tmp_path, DOCUMENT, splits=document_splits(), name="a")
    run(tmp_path, DOCUMENT, splits=document_splits(), name="b")
    assert (tmp_path / "a" / "params.npz").read_bytes() == (tmp_path / "b" / "params.npz").read_bytes()
    windows = streams.TrainingWindows(document_splits()["train"], 4, 7, seed=3)
    first, second = windows._layout(1).doc_start.copy(), windows._layout(2).doc_start.copy()
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)


def test_valid_tokens_measures_whole_documents():
    valid = with_documents(tiny_splits()["valid"], 3)
    subset = measurement_subset(valid, 60, seed=2, documents=True)
    assert 60 <= subset.num_tokens < 60 + 3 * 12
    offsets = subset.doc_offsets
    assert len(offsets) >= 2 and np.all(np.diff(offsets) >= 1)
    # Its documents are whole documents of the split: each one's tokens appear there, in order.
    whole = {tuple(valid.y[valid.offsets[a]:valid.offsets[b]]) for a, b in
             zip(valid.doc_offsets[:-1], valid.doc_offsets[1:])}
    for a, b in zip(offsets[:-1], offsets[1:]):
        assert tuple(subset.y[subset.offsets[a]:subset.offsets[b]]) in whole


# With epoch_tokens an epoch ends inside a pass: the checkpoint must carry the state of the streams.
@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--epoch-tokens", "250", "--epochs", "9", "--optimizer", "adam",
                                        "--learning-rate", "0.01", "--dropout", "0.2"]],
                         ids=["passes", "epoch-tokens-adam"])
def test_document_mode_resumes_after_sigkill_byte_identical(tmp_path, extra):
    data, vocab = write_tiny_data(tmp_path)
    options = ["--data-dir", str(data), "--vocab", str(vocab), "--device", "cpu", "--epochs", "6", "--hidden-size",
               "12", "--batch-size", "4", "--seed", "3", "--no-progress", "--context", "document", "--bptt", "9", *extra]
    epochs = int(extra[extra.index("--epochs") + 1]) if "--epochs" in extra else 6
    arrays = kill_then_resume(tmp_path, options, epochs)
    assert ("stream.carried_state" in arrays) == bool(extra)  # mid-pass: a state to carry on with


# ------------------------------------------------------------------ the other readers of a document-mode model
def trained_document_model(tmp_path):
    splits = document_splits()
    _, model, out = run(tmp_path, {**DOCUMENT, "epochs": 2}, splits=splits)
    return model, splits, out


def test_interpolation_scores_in_context_aligned_with_y(tmp_path):
    from rnnlm.interpolate import rnn_token_log_probs

    model, splits, _ = trained_document_model(tmp_path)
    valid = splits["valid"]
    scores = rnn_token_log_probs(model, valid, batch_size=3)
    assert scores.shape == valid.y.shape
    np.testing.assert_allclose(scores, streams.token_log_probs(model, valid), rtol=1e-5, atol=1e-6)
    total, _ = streams.split_loss(model, valid)
    np.testing.assert_allclose(-scores.sum(), total, rtol=1e-5)


def test_gradient_diagnostics_reach_across_sentences_within_documents(tmp_path):
    from rnnlm.diagnostics import gradient_norms_by_distance

    model, splits, _ = trained_document_model(tmp_path)
    valid = splits["valid"]
    curve = gradient_norms_by_distance(model, valid, max_distance=30, max_sentences=8, batch_size=2)
    # The first two documents (4 sentences each): pairs (t, k) with s_{t-k} in t's document.
    lengths = np.diff(valid.offsets[valid.doc_offsets[:3]])
    assert curve["pairs"] == [int(np.maximum(lengths - k, 0).sum()) for k in range(31)]
    assert curve["pairs"][int(valid.lengths.max()) + 1] > 0  # further back than any sentence
    assert all(norm is None or np.isfinite(norm) for norm in curve["mean_norm"])


def test_a_prime_paragraph_is_read_as_one_stream_and_beam_scores_match_scoring(tmp_path):
    from rnnlm.generate import TrainedModel, beam_search, sample_sentences, score_sentences
    from rnnlm.tokenize import WordTokenizer
    from tiny_language import VOCAB_WORDS

    model, _, _ = trained_document_model(tmp_path)
    lm = TrainedModel(model, VOCAB_WORDS, {}, WordTokenizer(lowercase=True, normalize_quotes=False))
    context, prime = lm.prime("The cat sees a tree. Her sister likes the river today. The dog")
    assert context == [["the", "cat", "sees", "a", "tree", "."], ["her", "sister", "likes", "the", "river", "today", "."]]
    assert prime == ["the", "dog"]
    assert beam_search(model, VOCAB_WORDS, 3, 3, 12, prime=prime, context=context)[0].words[:2] == ["the", "dog"]
    # Without prime words, the beam's log-probability is the sentence's score given the context before it.
    best = beam_search(model, VOCAB_WORDS, 3, 3, 12, context=context)[0]
    scored = score_sentences(model, VOCAB_WORDS, [*context, best.words], doc_offsets=[0, 3])
    assert scored[-1].log_prob == pytest.approx(best.log_prob, rel=1e-5)
    alone = score_sentences(model, VOCAB_WORDS, [best.words])
    assert alone[0].log_prob != pytest.approx(best.log_prob, rel=1e-5)  # the context mattered
    # Separate documents are read separately: the last sentence scored as if alone.
    separate = score_sentences(model, VOCAB_WORDS, [*context, best.words], doc_offsets=[0, 2, 3])
    assert separate[-1].log_prob == pytest.approx(alone[0].log_prob, rel=1e-5)
    sampled = sample_sentences(model, VOCAB_WORDS, 4, min_length=3, max_length=12, seed=1, prime=prime, context=context)
    assert len(sampled) == 4 and all(sentence[:2] == ["the", "dog"] for sentence in sampled)
    assert lm.sample(2, prime="The cat sees a tree. The dog", min_length=3, seed=1)


def test_a_sentence_model_refuses_context_and_keeps_its_one_sentence_prime(tmp_path):
    from rnnlm.generate import TrainedModel, sample_sentences
    from rnnlm.io import RnnlmError
    from rnnlm.tokenize import WordTokenizer
    from tiny_language import VOCAB_WORDS

    _, model, _ = run(tmp_path, {"epochs": 1})
    lm = TrainedModel(model, VOCAB_WORDS, {}, WordTokenizer(lowercase=True, normalize_quotes=False))
    assert lm.prime("The cat. The dog") == ([], lm.tokenizer.tokenize("The cat. The dog"))
    with pytest.raises(RnnlmError, match="one sentence at a time"):
        sample_sentences(model, VOCAB_WORDS, 1, 1, 5, context=[["the", "cat"]])


def test_rnnlm_score_reads_blocks_between_empty_lines_as_documents(tmp_path, capsys):
    from rnnlm.cli import main

    _, _, out = trained_document_model(tmp_path)
    text = tmp_path / "in.txt"
    text.write_text("the cat sees a tree\nthe dog likes the river\n\nthe dog likes the river\n", encoding="utf-8")
    assert main(["score", "--params", str(out / "params.npz"), "--pretokenized", "--device", "cpu", str(text)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("# total: ") and lines[-1].endswith(", 3 sentences")
    rows = [line.split("\t") for line in lines[1:-1]]
    assert [row[4] for row in rows] == ["the cat sees a tree", "the dog likes the river", "the dog likes the river"]
    in_context, alone = float(rows[1][0]), float(rows[2][0])
    assert in_context != pytest.approx(alone, rel=1e-5)
