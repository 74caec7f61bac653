"""A document-mode model (`context: document`) through Snakemake beside a sentence-mode one: train,
evaluate, interpolate with the KN baseline, gradient diagnostics and generation, on the same tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from rnnlm.data import Split
from workflow_runs import write_tiny_corpus

pytestmark = pytest.mark.slow

MODELS = {"sentences": {"hidden_size": 16, "batch_size": 8, "epochs": 6, "learning_rate": 0.5},
          "documents": {"hidden_size": 16, "batch_size": 4, "epochs": 6, "learning_rate": 0.5,
                        "context": "document", "bptt": 9}}


def test_a_document_mode_model_runs_every_stage_on_the_same_tokens(workflow_copy, run_snakemake):
    write_tiny_corpus(workflow_copy / "corpus.txt")
    config = yaml.safe_load((workflow_copy / "config.yaml").read_text())
    config.update(corpus="corpus.txt", vocabulary_size=40, valid_fraction=0.1, test_fraction=0.1, device="cpu",
                  models=MODELS, baseline={"order": 3},
                  generate={"num_sentences": 3, "min_length": 3, "max_length": 15, "beam_width": 2, "seed": 1,
                            "prime": "The cat"})
    (workflow_copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"results/{kind}/{name}/{file}" for name in MODELS for kind, file in
               (("models", "metrics.json"), ("models", "interpolation.json"), ("models", "samples.txt"),
                ("diagnostics", "gradient_norms.json"))]
    result = run_snakemake(workflow_copy, *targets)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]

    def read(name: str, kind: str, file: str) -> dict:
        return json.loads((workflow_copy / f"results/{kind}/{name}/{file}").read_text())

    metrics = {name: read(name, "models", "metrics.json") for name in MODELS}
    interpolation = {name: read(name, "models", "interpolation.json") for name in MODELS}
    for split in ("train", "valid", "test"):
        # The same predicted tokens, so the perplexities compare; both learned the tiny grammar.
        assert metrics["documents"]["splits"][split]["tokens"] == metrics["sentences"]["splits"][split]["tokens"]
        entry = metrics["documents"]["splits"][split]
        assert entry["perplexity"] < 0.6 * entry["unigram_perplexity"], (split, entry)
    for split in ("valid", "test"):
        # Interpolation scores the model's tokens as evaluation does (read in context), token by token.
        mixed = interpolation["documents"]["splits"][split]
        assert mixed["tokens"] == metrics["documents"]["splits"][split]["tokens"]
        assert mixed["rnn_perplexity"] == pytest.approx(metrics["documents"]["splits"][split]["perplexity"], rel=1e-5)
    valid = interpolation["documents"]["splits"]["valid"]  # the weight is tuned there: never worse than either
    assert valid["interpolated_perplexity"] <= min(valid["rnn_perplexity"], valid["ngram_perplexity"]) + 1e-9
    diagnostics = read("documents", "diagnostics", "gradient_norms.json")
    assert diagnostics["context"] == "document" and diagnostics["trained"]["pairs"][0] > 0
    samples = (workflow_copy / "results/models/documents/samples.txt").read_text().splitlines()
    assert samples[0].startswith("# sampled sentences") and all(line.split("\t")[-1].startswith("the cat")
                                                                 for line in samples[2:5])
    # The index stage kept the documents (8 sentences each in the tiny corpus): read across sentences.
    valid = Split.load(workflow_copy / "results/data/valid.npz")
    assert valid.num_documents < len(valid) and np.all(np.diff(valid.doc_offsets) >= 1)
