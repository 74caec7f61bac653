"""Benchmark the sharded tokenize stage against the one-job stage, through Snakemake.

Builds a corpus by repeating a real text (blank-line separated paragraphs), runs
`snakemake results/tokens/stats.json` in one working directory with `tokenize_shards: 1` and then
with each requested shard count (results deleted in between), and reports per run: wall time of
the Snakemake command, summed CPU seconds and largest peak RSS of the tokenize jobs (from the
rules' benchmark files), the critical path (splitter + slowest shard + merge: the wall time
with a free node per shard), and whether `tokens/sentences.txt` and `tokens/stats.json` are
byte-identical to the one-job run's.

Usage: python benchmarks/bench_tokenize_shards.py /path/to/input.txt [--repeat 4] [--shards 4 16] [--cores 2]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
def job_benchmarks(results: Path) -> dict[str, list[dict]]:
    """Rows of the tokenize rules' Snakemake benchmark files (s, cpu_time, max_rss, ...) per rule."""
    folder = results / "benchmarks" / "data"
    files = {"sentence_splitter": [folder / "sentence_splitter.tsv"],
             "tokenize_shard": sorted((folder / "tokenize_shard").glob("*.tsv")), "tokenize": [folder / "tokenize.tsv"]}
    rows: dict[str, list[dict]] = {}
    for rule, paths in files.items():
        for path in paths:
            if path.exists():
                with open(path, encoding="utf-8") as handle:
                    rows.setdefault(rule, []).extend(csv.DictReader(handle, delimiter="\t"))
    return rows


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(workdir: Path, shards: int, cores: int) -> dict:
    shutil.rmtree(workdir / "results", ignore_errors=True)
    shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO_ROOT / "Snakefile"), "--directory",
               str(workdir), "--cores", str(cores), "results/tokens/stats.json", "--config", f"tokenize_shards={shards}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    per_rule = job_benchmarks(workdir / "results")
    rows = [row for rule_rows in per_rule.values() for row in rule_rows]
    stats = json.loads((workdir / "results/tokens/stats.json").read_text(encoding="utf-8"))
    return {
        "shards": shards,
        "snakemake_wall_s": round(wall, 1),
        "tokenize_jobs": len(rows),
        "tokenize_cpu_s": round(sum(float(row["cpu_time"]) for row in rows), 1),
        # What a cluster with a free node per shard would wait: splitter, the slowest shard, merge.
        "critical_path_s": round(sum(max(float(row["s"]) for row in rule_rows) for rule_rows in per_rule.values()), 1),
        "largest_job_rss_mib": round(max(float(row["max_rss"]) for row in rows), 1),
        "tokens": stats["tokens"],
        "sentences_sha256": digest(workdir / "results/tokens/sentences.txt"),
        "stats_sha256": digest(workdir / "results/tokens/stats.json"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", type=Path, help="a plain-text corpus to repeat")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--shards", type=int, nargs="+", default=[4])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-shards-") as scratch:
        workdir = Path(scratch)
        text = args.text.read_text(encoding="utf-8").strip()
        (workdir / "corpus.txt").write_text("\n\n".join([text] * args.repeat) + "\n", encoding="utf-8")
        config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text(encoding="utf-8"))
        config["corpus"] = "corpus.txt"
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        runs = [run(workdir, shards, args.cores) for shards in [1, *args.shards]]
    reference = runs[0]
    for result in runs:
        result["identical_to_one_job"] = (result["sentences_sha256"], result["stats_sha256"]) == (
            reference["sentences_sha256"], reference["stats_sha256"])
        print(json.dumps({key: value for key, value in result.items() if not key.endswith("sha256")}))
    return 0 if all(result["identical_to_one_job"] for result in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
