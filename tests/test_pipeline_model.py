"""The model stages run by Snakemake on a tiny corpus: train -> evaluate, generate; reruns; resources.
(Resuming after Snakemake is SIGKILLed mid-training is tests/test_interrupt.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from workflow_runs import write_tiny_corpus

pytestmark = pytest.mark.slow

MODEL = "tiny"
MODEL_DIR = f"results/models/{MODEL}"
TARGETS = [f"{MODEL_DIR}/metrics.json", f"{MODEL_DIR}/samples.txt"]


def configure(workdir: Path, temperature: float = 1.0, **model) -> None:
    """The tiny corpus and a config with one small model `tiny` in `workdir`."""
    write_tiny_corpus(workdir / "corpus.txt")
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config.update(corpus="corpus.txt", vocabulary_size=40, valid_fraction=0.1, test_fraction=0.1, device="cpu",
                  models={MODEL: {"hidden_size": 16, "batch_size": 8, "epochs": 12, "learning_rate": 0.5, **model}},
                  generate={"num_sentences": 4, "min_length": 3, "max_length": 15, "beam_width": 2, "seed": 1,
                            "temperature": temperature})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def succeed(run_snakemake, workdir: Path, *args: str):
    result = run_snakemake(workdir, *args)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result.stdout + result.stderr


def test_train_evaluate_generate_and_rerun_only_what_a_change_shapes(workflow_copy, run_snakemake):
    configure(workflow_copy)
    succeed(run_snakemake, workflow_copy, *TARGETS)
    model_dir = workflow_copy / MODEL_DIR
    assert sorted(p.name for p in model_dir.iterdir()) == ["metrics.json", "params.npz", "samples.txt", "train_log.csv"]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    for split in ("train", "valid", "test"):
        entry = metrics["splits"][split]
        assert entry["perplexity"] < 0.6 * entry["unigram_perplexity"], (split, entry)
    samples = (model_dir / "samples.txt").read_text().splitlines()
    # Two "#" lines per section (title, columns), the sentences as text<TAB>tokens.
    assert samples[0].startswith("# sampled sentences") and len(samples) == 2 + 4 + 2 + 2
    assert "backend: numpy (device=cpu)" in (workflow_copy / f"results/logs/train/{MODEL}.log").read_text()
    assert (workflow_copy / f"results/benchmarks/train/{MODEL}.tsv").exists()

    # A generation setting re-runs generation only; a training setting re-runs training and what follows.
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    configure(workflow_copy, temperature=0.5)
    output = succeed(run_snakemake, workflow_copy, *TARGETS)
    after = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert [name for name in sorted(before) if before[name] != after[name]] == ["samples.txt"], output
    configure(workflow_copy, learning_rate=0.4)
    succeed(run_snakemake, workflow_copy, *TARGETS)
    again = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert all(again[name] != after[name] for name in after)


def test_gpu_resource_only_when_device_is_gpu(workflow_copy, run_snakemake):
    configure(workflow_copy)

    def train_resources(device: str) -> str:
        output = succeed(run_snakemake, workflow_copy, "-n", *TARGETS, "--config", f"device={device}")
        block = output.split("rule train:", 1)[1]
        return next(line for line in block.splitlines() if line.strip().startswith("resources:"))

    gpu, cpu, auto = train_resources("gpu"), train_resources("cpu"), train_resources("auto")
    assert "gpu=1" in gpu and "mem_mb=" in gpu and "runtime=" in gpu
    assert "gpu" not in cpu and "gpu" not in auto
