"""Benchmark the data stages on a tutorial-sized corpus (~15,000 documents, ~80,000 sentences, ~1.5M tokens).

The corpus repeats a real text (e.g. tinyshakespeare's input.txt) and groups its blank-line
separated paragraphs into about 15,000 documents. Measured:
  * tokenize, split, vocab and index run in this process (tokenize with --processes workers):
    wall time per stage and peak resident memory of this process and of the largest worker;
  * Snakemake on a copy of the workflow: the full data build, then a no-change re-run
    (with the real environment, and with `scontrol` hidden: the SLURM executor plugin asks
    it for the cluster configuration at start-up, which blocks where no controller answers).

Usage: python benchmarks/bench_data.py /path/to/input.txt [--repeat 6] [--documents 15000] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from rnnlm.corpus import write_documents  # noqa: E402
from rnnlm.data import SPLIT_NAMES, build_index  # noqa: E402
from rnnlm.split import split_corpus  # noqa: E402
from rnnlm.tokenize import tokenize_corpus  # noqa: E402
from rnnlm.vocab import build_vocabulary  # noqa: E402

DATA_TARGETS = [f"results/data/{name}.npz" for name in SPLIT_NAMES] + ["results/data/stats.json"]


def tutorial_sized_documents(source: Path, repeat: int, documents: int) -> list[str]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", source.read_text(encoding="utf-8")) if p.strip()] * repeat
    group = max(1, math.ceil(len(paragraphs) / documents))
    return ["\n\n".join(paragraphs[start : start + group]) for start in range(0, len(paragraphs), group)]


def peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def timed(label: str, timings: dict, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    timings[label] = round(time.perf_counter() - start, 2)
    print(f"{label:>10}: {timings[label]:6.2f} s", flush=True)
    return result


def run_stages(documents: list[str], workdir: Path, processes: int) -> dict:
    documents_path = workdir / "documents.jsonl"
    write_documents(documents_path, documents)
    timings: dict[str, float] = {}
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))
    lengths = {"min_length": config["min_sentence_length"], "max_length": config["max_sentence_length"]}
    start = time.perf_counter()
    tokens = timed("tokenize", timings, tokenize_corpus, documents_path, workdir / "sentences.txt",
                   workdir / "tokens.json", lowercase=True, processes=processes)
    texts = {name: workdir / f"{name}.txt" for name in SPLIT_NAMES}
    split = timed("split", timings, split_corpus, workdir / "sentences.txt", texts, workdir / "split.json",
                  unit=config["split_unit"], block_sentences=config["split_block_sentences"],
                  valid_fraction=config["valid_fraction"], test_fraction=config["test_fraction"],
                  seed=config["split_seed"], **lengths)
    vocab = timed("vocab", timings, build_vocabulary, texts["train"], workdir / "vocab.tsv",
                  workdir / "vocab.json", config["vocabulary_size"], **lengths)
    index = timed("index", timings, build_index, texts, workdir / "vocab.tsv",
                  {name: workdir / f"{name}.npz" for name in SPLIT_NAMES}, workdir / "data.json",
                  workdir / "split.json", **lengths)
    timings["total"] = round(time.perf_counter() - start, 2)
    return {"seconds": timings, "tokenize": tokens, "split": split, "vocab": vocab, "index": index,
            "peak_rss_mib": {"main": round(peak_rss_mib(resource.RUSAGE_SELF)),
                             "largest_worker": round(peak_rss_mib(resource.RUSAGE_CHILDREN))}}


def snakemake_timings(documents: list[str], workdir: Path, processes: int) -> dict:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO_ROOT / name, workdir)
    for name in ("workflow", "rnnlm"):
        shutil.copytree(REPO_ROOT / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / "corpus.txt").write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    command = [sys.executable, "-m", "snakemake", "--cores", str(processes), *DATA_TARGETS, "--config", "corpus=corpus.txt"]
    hidden = workdir / "bin"
    hidden.mkdir()
    (hidden / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (hidden / "scontrol").chmod(0o755)
    quiet_env = dict(os.environ, PATH=f"{hidden}{os.pathsep}{os.environ['PATH']}")

    def run(env) -> float:
        start = time.perf_counter()
        subprocess.run(command, cwd=workdir, env=env, check=True, capture_output=True)
        return round(time.perf_counter() - start, 2)

    results = {"build": run(quiet_env), "no_change_rerun": run(None), "no_change_rerun_scontrol_hidden": run(quiet_env)}
    for label, seconds in results.items():
        print(f"snakemake {label}: {seconds:.2f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a real plain-text corpus to repeat")
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--documents", type=int, default=15_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--skip-snakemake", action="store_true")
    args = parser.parse_args()

    documents = tutorial_sized_documents(args.source, args.repeat, args.documents)
    print(f"{len(documents)} documents, {sum(map(len, documents)) / 1e6:.1f} M characters", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_data_") as scratch:
        stages_dir, snakemake_dir = Path(scratch) / "stages", Path(scratch) / "snakemake"
        stages_dir.mkdir()
        snakemake_dir.mkdir()
        report = run_stages(documents, stages_dir, args.processes)
        if not args.skip_snakemake:
            report["snakemake_seconds"] = snakemake_timings(documents, snakemake_dir, args.processes)
    report["cpu_count"] = os.cpu_count()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
