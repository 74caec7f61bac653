"""The baseline and interpolate rules run by Snakemake on a tiny corpus, and what a change of order re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from workflow_runs import job_counts, write_tiny_corpus

pytestmark = pytest.mark.slow

MODEL_DIR = "results/models/tiny"


def configure(workdir: Path, order: int) -> list[str]:
    """Tiny corpus, one small model, Kneser-Ney of `order`; returns the targets of these stages."""
    write_tiny_corpus(workdir / "corpus.txt")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config.update(corpus="corpus.txt", vocabulary_size=40, valid_fraction=0.1, test_fraction=0.1, device="cpu",
                  models={"tiny": {"hidden_size": 16, "batch_size": 8, "epochs": 6, "learning_rate": 0.5}},
                  baseline={"order": order})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return [f"results/baseline/kn{order}.json", f"{MODEL_DIR}/interpolation.json", f"{MODEL_DIR}/metrics.json"]


def succeed(run_snakemake, workdir: Path, *args: str) -> str:
    result = run_snakemake(workdir, *args)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


def test_baseline_and_interpolation_rules(workflow_copy, run_snakemake):
    succeed(run_snakemake, workflow_copy, *configure(workflow_copy, order=3))
    baseline = json.loads((workflow_copy / "results/baseline/kn3.json").read_text())
    metrics = json.loads((workflow_copy / f"{MODEL_DIR}/metrics.json").read_text())
    interpolation = json.loads((workflow_copy / f"{MODEL_DIR}/interpolation.json").read_text())
    for split in ("valid", "test"):
        # The tiny grammar is exactly what trigrams capture: far below the unigram baseline.
        assert baseline["splits"][split]["perplexity"] < 0.5 * metrics["splits"][split]["unigram_perplexity"]
        assert baseline["splits"][split]["tokens"] == metrics["splits"][split]["tokens"]
        assert interpolation["splits"][split]["ngram_perplexity"] == pytest.approx(baseline["splits"][split]["perplexity"])
        assert interpolation["splits"][split]["rnn_perplexity"] == pytest.approx(metrics["splits"][split]["perplexity"], rel=1e-5)
    valid = interpolation["splits"]["valid"]
    assert valid["interpolated_perplexity"] <= min(valid["rnn_perplexity"], valid["ngram_perplexity"]) + 1e-9
    for log in ("results/logs/baseline/kn3.log", "results/logs/interpolate/tiny.log"):
        assert (workflow_copy / log).read_text().strip()
    assert (workflow_copy / "results/benchmarks/baseline/kn3.tsv").exists()

    # Another order builds the new baseline and re-interpolates; the model itself is left alone.
    params = workflow_copy / f"{MODEL_DIR}/params.npz"
    before = params.stat().st_mtime_ns
    output = succeed(run_snakemake, workflow_copy, *configure(workflow_copy, order=2))
    assert job_counts(output) == {"baseline": 1, "interpolate": 1}
    assert params.stat().st_mtime_ns == before
    assert json.loads((workflow_copy / f"{MODEL_DIR}/interpolation.json").read_text())["ngram_order"] == 2
