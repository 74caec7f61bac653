"""Index matrices record the fingerprint of the vocabulary that made their ids; every stage where a
model (or a vocabulary) meets data refuses data indexed with another vocabulary, even one of the
same size, whose ids would silently mean other words."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm.cli import main
from rnnlm.data import Split
from rnnlm.diagnostics import run_diagnostics
from rnnlm.evaluate import run_evaluation
from rnnlm.interpolate import interpolate_model
from rnnlm.io import RnnlmError
from rnnlm.ngram import build_baseline
from rnnlm.train import run_training
from rnnlm.vocab import Vocabulary, fingerprint
from tiny_language import FAST, VOCAB_WORDS, run, sentences, split_of, write_tiny_data

SPLITS = ("train", "valid", "test")
ANOTHER = "indexed with another vocabulary"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model trained on the tiny language, and the same text indexed with a vocabulary of the same
    size in which two words swapped ids (and that vocabulary's own baseline)."""
    directory = tmp_path_factory.mktemp("fingerprint")
    write_tiny_data(directory)
    _, _, out = run(directory, {"epochs": 1})
    words = list(VOCAB_WORDS)
    words[5], words[6] = words[6], words[5]
    swapped = Vocabulary(words, np.ones(len(words), dtype=np.int64))
    other = directory / "other"
    for seed, name in enumerate(SPLITS):
        split_of(sentences(20, seed), swapped).save(other / f"{name}.npz")
    swapped.save(other / "vocab.tsv")
    paths = {name: other / f"{name}.npz" for name in SPLITS}
    build_baseline(paths, other / "vocab.tsv", 2, other / "kn2.json", other / "kn2.npz")
    return directory / "vocab.tsv", out / "params.npz", other, paths


def test_index_files_keep_the_fingerprint(tmp_path):
    split = split_of(sentences(5, 0))
    assert split.vocab_fingerprint == fingerprint(VOCAB_WORDS) == Vocabulary(VOCAB_WORDS, [1] * len(VOCAB_WORDS)).fingerprint
    split.save(tmp_path / "s.npz")
    assert Split.load(tmp_path / "s.npz").vocab_fingerprint == split.vocab_fingerprint
    assert split.subset([2, 0]).vocab_fingerprint == split.vocab_fingerprint
    assert fingerprint(VOCAB_WORDS[:-2] + VOCAB_WORDS[:-3:-1]) != fingerprint(VOCAB_WORDS)


def test_evaluate_refuses_data_of_another_vocabulary_of_the_same_size(setup, tmp_path):
    vocab, params, _, paths = setup
    with pytest.raises(RnnlmError, match=f"train.npz was {ANOTHER} than the model .*params.npz"):
        run_evaluation(params, paths, vocab, tmp_path / "metrics.json", device="cpu")
    assert not (tmp_path / "metrics.json").exists()


def test_cli_evaluate_exits_2(setup, capsys):
    vocab, params, other, _ = setup
    status = main(["evaluate", "--params", str(params), "--data-dir", str(other), "--vocab", str(vocab), "--device", "cpu"])
    assert status == 2
    assert ANOTHER in capsys.readouterr().err


def test_interpolate_refuses(setup, tmp_path):
    vocab, params, other, paths = setup
    with pytest.raises(RnnlmError, match=ANOTHER):
        interpolate_model(params, vocab, paths, other / "kn2.npz", tmp_path / "interpolation.json", device="cpu")


def test_diagnostics_refuse(setup, tmp_path):
    _, params, _, paths = setup
    with pytest.raises(RnnlmError, match=f"valid.npz was {ANOTHER}"):
        run_diagnostics(params, paths["valid"], tmp_path / "diag.json", seed=0, max_distance=3, max_sentences=4,
                        batch_size=2, device="cpu")


def test_training_and_baseline_refuse_data_of_another_vocabulary(setup, tmp_path):
    vocab, _, _, paths = setup
    with pytest.raises(RnnlmError, match=f"train.npz was {ANOTHER} than the vocabulary .*vocab.tsv"):
        run_training(paths["train"], paths["valid"], vocab, tmp_path / "params.npz", tmp_path / "checkpoint.npz",
                     tmp_path / "log.csv", FAST, device="cpu", progress=False)
    with pytest.raises(RnnlmError, match=ANOTHER):
        build_baseline(paths, vocab, 2, tmp_path / "kn2.json", tmp_path / "kn2.npz")
    assert list(tmp_path.iterdir()) == []


def test_index_files_without_a_fingerprint_are_refused(setup, tmp_path):
    vocab, params, _, paths = setup
    for name in SPLITS:
        split = Split.load(paths[name])
        Split(split.x, split.y, split.offsets).save(tmp_path / f"{name}.npz")
    with pytest.raises(RnnlmError, match="records no vocabulary fingerprint.*re-create it with the index stage"):
        run_evaluation(params, {name: tmp_path / f"{name}.npz" for name in SPLITS}, vocab, None, device="cpu")
