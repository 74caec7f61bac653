"""The data stages run by Snakemake: build, re-run only what changed, and fail cleanly on bad input.

Only the data targets are requested, so these tests do not depend on the model stages.
"""

from __future__ import annotations

import csv
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from rnnlm.data import Split

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

DATA_TARGETS = ["results/data/train.npz", "results/data/valid.npz", "results/data/test.npz", "results/data/stats.json"]
STAGE_OUTPUTS = {
    "download": ["results/corpus/documents.jsonl", "results/corpus/manifest.json"],
    "tokenize": ["results/tokens/sentences.txt", "results/tokens/stats.json"],
    "split": ["results/tokens/train.txt", "results/tokens/valid.txt", "results/tokens/test.txt", "results/tokens/split.json"],
    "vocab": ["results/vocab/vocab.tsv", "results/vocab/stats.json"],
    "index": DATA_TARGETS,
}
STAGES = list(STAGE_OUTPUTS)
WORDS = ("river house market garden window letter morning evening story friend teacher sailor city road "
         "old small quiet bright green walks sees finds writes remembers paints carries follows").split()


def tiny_corpus(documents: int = 60, seed: int = 0) -> str:
    """Plain text: blank-line separated documents of a few capitalised sentences."""
    rng = random.Random(seed)
    paragraphs = []
    for _ in range(documents):
        sentences = []
        for _ in range(rng.randint(1, 4)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?"))
        paragraphs.append(" ".join(sentences))
    return "\n\n".join(paragraphs) + "\n"


def mtimes(workdir: Path) -> dict[str, int]:
    return {path: (workdir / path).stat().st_mtime_ns for stage in STAGES for path in STAGE_OUTPUTS[stage]}


def changed_stages(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return [stage for stage in STAGES if any(before[p] != after[p] for p in STAGE_OUTPUTS[stage])]


def test_build_then_only_changed_stages_rerun(workflow_copy, run_snakemake):
    (workflow_copy / "corpus.txt").write_text(tiny_corpus())
    base = ["corpus=corpus.txt", "vocabulary_size=20"]

    built = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", *base)
    assert built.returncode == 0, built.stderr
    manifest = json.loads((workflow_copy / "results/corpus/manifest.json").read_text())
    assert manifest["documents"] == 60 and manifest["format"] == "text"
    train = Split.load(workflow_copy / "results/data/train.npz")
    assert len(train) > 0 and int(train.y.max()) < 20
    stats = json.loads((workflow_copy / "results/data/stats.json").read_text())
    assert stats["vocabulary_size"] == 20 and stats["valid"]["sentences"] >= 1
    # A plain-text corpus is one text: valid and test are blocks of it, each split's documents the runs.
    split = json.loads((workflow_copy / "results/tokens/split.json").read_text())
    assert stats["split_unit"] == split["split_unit"] == "block"
    for name in ("train", "valid", "test"):
        assert stats[name]["documents"] == split["splits"][name]["documents"] == Split.load(
            workflow_copy / f"results/data/{name}.npz").num_documents
    assert sum(stats[name]["sentences"] for name in ("train", "valid", "test")) == json.loads(
        (workflow_copy / "results/tokens/stats.json").read_text())["sentences"]
    for stage in STAGES:
        assert (workflow_copy / f"results/logs/data/{stage}.log").exists()
        assert (workflow_copy / f"results/benchmarks/data/{stage}.tsv").exists()
    first = mtimes(workflow_copy)

    # (a) nothing changed: nothing to do.
    again = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", *base)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    assert changed_stages(first, mtimes(workflow_copy)) == []

    # (b) vocabulary_size: vocab and index re-run, tokenize and download do not.
    base = ["corpus=corpus.txt", "vocabulary_size=25"]
    resized = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", *base)
    assert resized.returncode == 0, resized.stderr
    second = mtimes(workflow_copy)
    assert changed_stages(first, second) == ["vocab", "index"]
    assert json.loads((workflow_copy / "results/vocab/stats.json").read_text())["size"] == 25

    # (c) a tokenization option: tokenize and everything after it re-run, download does not.
    recased = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", *base, "lowercase=False")
    assert recased.returncode == 0, recased.stderr
    third = mtimes(workflow_copy)
    assert changed_stages(second, third) == ["tokenize", "split", "vocab", "index"]
    assert json.loads((workflow_copy / "results/tokens/stats.json").read_text())["lowercase"] is False

    # (d) a split setting: split, vocab (train only) and index re-run, tokenize does not.
    base += ["lowercase=False"]
    for setting in ("split_unit=sentence", "split_seed=4"):
        base.append(setting)
        resplit = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", *base)
        assert resplit.returncode == 0, resplit.stderr
        fourth = mtimes(workflow_copy)
        assert changed_stages(third, fourth) == ["split", "vocab", "index"], setting
        third = fourth
    assert json.loads((workflow_copy / "results/data/stats.json").read_text())["split_unit"] == "sentence"


def test_csv_shaped_like_the_tutorials(workflow_copy, run_snakemake):
    with open(workflow_copy / "comments.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body"])
        for paragraph in tiny_corpus(40, seed=1).strip().split("\n\n"):
            writer.writerow([paragraph.replace(". ", ', "she said".\n', 1)])  # quotes, commas, newlines
    result = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", "corpus=comments.csv", "vocabulary_size=30")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((workflow_copy / "results/corpus/manifest.json").read_text())
    assert manifest["format"] == "csv" and manifest["documents"] == 40
    # Under 50 documents auto reads the collection as one text too; named, its documents stay whole.
    assert json.loads((workflow_copy / "results/tokens/split.json").read_text())["split_unit"] == "block"
    result = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", "corpus=comments.csv", "vocabulary_size=30",
                           "split_unit=document", "valid_fraction=0.1", "test_fraction=0.1")
    assert result.returncode == 0, result.stderr
    split = json.loads((workflow_copy / "results/tokens/split.json").read_text())
    assert split["split_unit"] == "document" and split["source_documents"] == 40
    assert sum(split["splits"][name]["units"] for name in split["splits"]) == 40
    for name in ("valid", "test"):
        assert split["splits"][name]["documents"] == split["splits"][name]["units"] >= 1


def all_output(workdir: Path, result) -> str:
    logs = sorted((workdir / "results/logs").rglob("*.log")) if (workdir / "results/logs").exists() else []
    return result.stdout + result.stderr + "".join(log.read_text() for log in logs)


BAD_INPUTS = {
    "empty corpus": (b"", [], "download", "contains no text"),
    "too few distinct words": (b"Yes yes.\n\nYes yes yes.\n\n" * 20, [], "vocab", "only 1 distinct words"),
    "punctuation only": (b"... !!! ???\n\n-- ; : ,\n\n( ) [ ] ' \"\n\n" * 20, [], "vocab", "only 0 distinct words with a letter"),
    "too few sentences for a training split": (b"Yes yes.\n", [], "split", "too few for a training split"),
    "csv without the column": (b"text\nSome words here.\n", ["corpus_format=csv"], "download", "no column 'body'"),
    "non-utf-8 with strict": ("Caf\u00e9 au lait.".encode("latin-1"), ["encoding_errors=strict"], "download", "not valid UTF-8"),
    "checksum mismatch": (b"Fine text.\n", ["checksum=sha256:" + "0" * 64], "download", "checksum mismatch"),
    "sentences outside the length limits": (b"Short one.\n", ["min_sentence_length=10"], "split", "no sentence has between 10"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_fails_cleanly(workflow_copy, run_snakemake, case):
    content, extra_config, failing_stage, message = BAD_INPUTS[case]
    (workflow_copy / "corpus.txt").write_bytes(content)
    result = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", "corpus=corpus.txt", *extra_config)
    assert result.returncode != 0
    # The message reaches the terminal as one line, and ends the stage's log without a traceback.
    assert f"ERROR rnnlm: " in result.stderr and message in result.stderr
    log = (workflow_copy / f"results/logs/data/{failing_stage}.log").read_text()
    assert message in log.splitlines()[-1] and "Traceback" not in log
    for stage in STAGES[STAGES.index(failing_stage):]:
        for path in STAGE_OUTPUTS[stage] + [f"results/benchmarks/data/{stage}.tsv"]:
            assert not (workflow_copy / path).exists(), path
    leftovers = [p for p in (workflow_copy / "results").rglob(".*")]
    assert leftovers == []


def test_warnings_reach_the_terminal_and_dropped_sentences_do_not_shape_the_vocabulary(workflow_copy, run_snakemake):
    """A vocabulary smaller than requested is said on the terminal, not only in the log; a sentence
    longer than max_sentence_length changes no vocabulary entry."""
    text = tiny_corpus()
    (workflow_copy / "corpus.txt").write_text(text)
    result = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", "corpus=corpus.txt", "vocabulary_size=500")
    assert result.returncode == 0, result.stderr
    assert "WARNING rnnlm.vocab: the vocabulary has 33 entries, not the 500 requested" in result.stderr
    vocab = (workflow_copy / "results/vocab/vocab.tsv").read_text()
    long_sentence = " ".join(f"rare{i % 300}" for i in range(1000)) + "."
    (workflow_copy / "corpus.txt").write_text(text + "\n" + long_sentence + "\n")
    result = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", "corpus=corpus.txt", "vocabulary_size=500")
    assert result.returncode == 0, result.stderr
    assert (workflow_copy / "results/vocab/vocab.tsv").read_text() == vocab
    assert json.loads((workflow_copy / "results/data/stats.json").read_text())["dropped_too_long"] == 1


def test_wrong_config_stops_snakemake_with_the_key_named(workflow_copy, run_snakemake):
    result = run_snakemake(workflow_copy, *DATA_TARGETS, "--config", "vocabulary_size=many")
    assert result.returncode != 0
    assert "On instance['vocabulary_size']" in result.stdout + result.stderr
    assert not (workflow_copy / "results").exists()


@pytest.mark.parametrize(
    "key, value",
    [("vocabulary_size", 3), ("vocabulary_size", 1.5), ("valid_fraction", 0.9), ("test_fraction", -0.1),
     ("lowercase", "perhaps"), ("checksum", "md5:abc"), ("corpus_format", "xml"), ("encoding_errors", "ignore"),
     ("text_column", ""), ("min_sentence_length", 0), ("max_sentence_length", "long"), ("split_seed", -1),
     ("split_unit", "paragraph"), ("split_block_sentences", 0),
     ("corpus", "")],
)
def test_schema_names_the_bad_data_key(key, value):
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    config[key] = value
    with pytest.raises(WorkflowError, match=re.escape(f"On instance['{key}']")):
        validate(config, str(REPO_ROOT / "workflow/schemas/config.schema.yaml"))


@pytest.mark.parametrize("corpus", ["builtin", "local", "sharded"])
def test_lint_is_clean(workflow_copy, run_snakemake, corpus):
    """`snakemake --lint` has nothing to say about any rule or file, for a built-in or a local corpus,
    and with the sharded tokenize rules."""
    args = ["--lint"]
    if corpus == "local":
        (workflow_copy / "corpus.txt").write_text("A sentence here. Another one there.\n", encoding="utf-8")
        args += ["--config", "corpus=corpus.txt"]
    if corpus == "sharded":
        args += ["--config", "tokenize_shards=4"]
    result = run_snakemake(workflow_copy, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Lints for" not in output


def test_snakemake_files_are_snakefmt_formatted():
    """Every Snakemake file stays as `snakefmt` (configured in pyproject.toml) writes it."""
    files = [REPO_ROOT / "Snakefile", *sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk"))]
    result = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *map(str, files)], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, f"run `snakefmt Snakefile workflow/rules` to format:\n{result.stderr}"
