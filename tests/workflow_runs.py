"""Helpers for the end-to-end tests that run the whole Snakemake workflow on a tiny corpus.

Each run gets its own working directory holding `config.yaml` and `corpus.txt` (referenced by a
relative path, so two directories with the same files produce the same bytes) and is driven with
`snakemake --snakefile <repo>/Snakefile --directory <workdir>`, which also picks up the
repository's profiles/default.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from rnnlm.progress import TIMING_COLUMNS  # columns of train_log.csv that measure time

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"

# Two small models that differ in every way the sweep map allows cheaply.
TWO_MODELS = {
    "tiny-tanh": {"hidden_size": 8, "activation": "tanh", "bptt_truncate": 0, "learning_rate": 0.5,
                  "batch_size": 16, "epochs": 2, "seed": 3},
    "tiny-relu": {"hidden_size": 6, "activation": "relu", "bptt_truncate": 3, "learning_rate": 0.1,
                  "batch_size": 8, "epochs": 2, "seed": 4},
}


_SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "her sister", "the bird", "a child"]
_VERBS = ["sees", "likes", "finds", "follows", "watches", "calls", "helps"]
_OBJECTS = ["the ball", "a tree", "the river", "some bread", "the house", "a red car", "the moon"]
_ENDINGS = ["", " today", " again", " in the park", " at night", " every morning"]


def write_tiny_corpus(path: Path, documents: int = 30, sentences_per_document: int = 8, seed: int = 0) -> None:
    """Plain text, documents separated by blank lines, from a fixed little grammar (seeded)."""
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(documents):
        sentences = [
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDINGS)}.".capitalize()
            for _ in range(sentences_per_document)
        ]
        paragraphs.append(" ".join(sentences))
    path.write_text("\n\n".join(paragraphs) + "\n", encoding="utf-8")


def make_workdir(workdir: Path, models: dict | None = None, **overrides) -> Path:
    """A working directory with the tiny corpus and a config for it (small vocabulary and splits)."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_tiny_corpus(workdir / "corpus.txt")
    config = {
        "corpus": "corpus.txt",
        "vocabulary_size": 40,
        "valid_fraction": 0.1,
        "test_fraction": 0.1,
        "device": "cpu",
        "models": models or TWO_MODELS,
        "generate": {"num_sentences": 3, "min_length": 2, "max_length": 12, "beam_width": 2},
        "diagnostics": {"max_distance": 4, "max_sentences": 10, "batch_size": 5},
    }
    config.update(overrides)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return workdir


def snakemake_command(workdir: Path, *args: str, timeout_s: int) -> list[str]:
    """`snakemake` on the repository's workflow in `workdir`, SIGKILLed after `timeout_s`: Snakemake
    answers SIGTERM by waiting for its running jobs, which can be forever."""
    return ["timeout", "-s", "KILL", str(timeout_s), sys.executable, "-m", "snakemake",
            "--snakefile", str(SNAKEFILE), "--directory", str(workdir), *args]


def run_snakemake(workdir: Path, *args: str, env: dict | None = None, timeout_s: int = 240,
                  expect_success: bool = True) -> str:
    """Run snakemake, return its combined output; fail the test with the output's tail otherwise.
    Local runs should pass conftest's `snakemake_env` (no 10 s `scontrol` stall when no SLURM
    controller answers); runs through the SLURM executor need the real environment."""
    result = subprocess.run(snakemake_command(workdir, *args, timeout_s=timeout_s), cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if (result.returncode == 0) != expect_success:
        raise AssertionError(f"snakemake {' '.join(args)} exited with {result.returncode} "
                             f"(expected {'success' if expect_success else 'failure'}); output:\n"
                             f"{result.stdout[-6000:]}")
    return result.stdout


def job_counts(output: str) -> Counter:
    """Jobs per rule from the 'Job stats' table Snakemake prints before running (without `total`)."""
    counts: Counter = Counter()
    table = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    for line in table.splitlines()[3:]:
        match = re.fullmatch(r"(\S+)\s+(\d+)", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def _digest(path: Path) -> str:
    if path.name == "train_log.csv":
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        kept = [{key: value for key, value in row.items() if key not in TIMING_COLUMNS} for row in rows]
        return hashlib.sha256(repr(kept).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


# Artifacts that plot measured time (CPU-seconds), so they differ between identical runs.
TIMED_ARTIFACTS = {"report/time_to_quality.png"}


def artifact_digests(workdir: Path) -> dict[str, str]:
    """sha256 of every artifact under results/, keyed by relative path. Logs, benchmarks and the
    time-to-quality figure are left out (they record times), and so are train_log.csv's timing columns."""
    results = workdir / "results"
    digests = {}
    for path in sorted(results.rglob("*")):
        relative = path.relative_to(results)
        if path.is_file() and relative.parts[0] not in ("logs", "benchmarks") and relative.as_posix() not in TIMED_ARTIFACTS:
            digests[relative.as_posix()] = _digest(path)
    return digests


def differing(left: dict[str, str], right: dict[str, str]) -> list[str]:
    """Artifacts present in only one of two digest maps or with different content."""
    return sorted(name for name in left.keys() | right.keys() if left.get(name) != right.get(name))
