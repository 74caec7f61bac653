"""Scaling benchmark of the data stages and the Kneser-Ney baseline: 1M, 10M and 100M tokens.

A corpus of about N tokens is built by repeating a real text (e.g. tinyshakespeare's input.txt,
documents separated by blank lines as in the original) and Snakemake runs download, tokenize,
vocab, index and baseline (KN3) on a copy of the workflow, exactly as a user's run would. Per job:
  * wall time: Snakemake's benchmark file (results/benchmarks/...);
  * CPU time (user + system, worker processes included) and peak resident memory (the largest
    single process of the job): measured by the job itself at exit with resource.getrusage
    (RUSAGE_SELF and RUSAGE_CHILDREN), through a sitecustomize module put on the jobs' PYTHONPATH.
    Snakemake's own benchmark samples memory and CPU only every 30 s after a job's first 30 s.
Then a no-change `snakemake` re-run is timed. Each size's directory is deleted afterwards
unless --keep (100M tokens take about 3 GB on disk).

--reuse-tokens-above N: for sizes above N tokens the tokenize job is not run; its output is the
previous size's sentences file repeated (byte-identical to tokenizing the repeated corpus, since
every copy is tokenized alike with the same Punkt parameters, trained on the first 2M characters),
marked up to date with `snakemake --touch`; download, vocab, index and baseline still run. For
when tokenizing the largest size does not fit the time available (tokenize's cost per token is
measured at the smaller sizes).

Usage: python benchmarks/bench_scale.py /path/to/input.txt [--tokens 1e6 1e7 1e8] [--cores 2]
           [--workdir DIR] [--timeout 7200] [--keep] [--json results.json] [--reuse-tokens-above 2e7]
"""

from __future__ import annotations

import argparse
import csv
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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from rnnlm.tokenize import DocumentTokenizer, WordTokenizer, sentence_splitter_for  # noqa: E402

STAGES = {  # stage -> (Snakemake benchmark file, script name of its job)
    "download": ("data/download.tsv", "download"),
    "tokenize": ("data/tokenize.tsv", "tokenize"),
    "vocab": ("data/vocab.tsv", "vocab"),
    "index": ("data/index.tsv", "index"),
    "baseline": ("baseline/kn3.tsv", "baseline"),
}
TARGETS = ["results/data/train.npz", "results/data/valid.npz", "results/data/test.npz", "results/data/stats.json",
           "results/baseline/kn3.json"]
RUSAGE_ENV = "RNNLM_BENCH_RUSAGE"
# Imported by every Python process started with it on PYTHONPATH; a job's script appends its rusage.
SITECUSTOMIZE = f'''
import atexit, json, os, resource, sys

def _record():
    self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    entry = {{"argv": sys.argv, "cpu_s": self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime,
             "peak_rss_mib": max(self.ru_maxrss, children.ru_maxrss) / 1024}}
    with open(os.environ["{RUSAGE_ENV}"], "a") as handle:
        handle.write(json.dumps(entry) + "\\n")

if os.environ.get("{RUSAGE_ENV}"):
    atexit.register(_record)
'''


def tokens_per_copy(source: Path) -> tuple[list[str], int]:
    """The source's blank-line separated documents and how many tokens one copy gives (default settings)."""
    documents = [p.strip() for p in re.split(r"\n\s*\n", source.read_text(encoding="utf-8")) if p.strip()]
    words = WordTokenizer(lowercase=True, normalize_quotes=True)
    splitter, _ = sentence_splitter_for(map(words.normalize, documents))
    return documents, DocumentTokenizer(splitter, words).block(documents).tokens


def write_corpus(path: Path, documents: list[str], copies: int) -> None:
    text = "\n\n".join(documents) + "\n\n"
    with open(path, "w", encoding="utf-8") as handle:
        for _ in range(copies):
            handle.write(text)


def workflow_copy(workdir: Path) -> None:
    for name in ("Snakefile", "config.yaml"):
        shutil.copy2(REPO_ROOT / name, workdir)
    for name in ("workflow", "rnnlm", "profiles"):
        shutil.copytree(REPO_ROOT / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))


def job_rusage(path: Path) -> dict[str, dict]:
    """Per stage, the rusage its job's script recorded (matched by the script's file name)."""
    found = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        script = Path(entry["argv"][0]).name if entry["argv"] else ""
        for stage, (_, name) in STAGES.items():
            if script.endswith(f".{name}.py"):
                found[stage] = entry
    return found


def wall_seconds(path: Path) -> float:
    with open(path, newline="") as handle:
        return float(next(csv.DictReader(handle, delimiter="\t"))["s"])


def reuse_tokens(previous: Path, previous_copies: int, copies: int, workdir: Path, run) -> None:
    """Download for real, then the tokenize outputs from `previous` (a smaller size's workdir) repeated."""
    factor = copies // previous_copies
    run(["results/corpus/documents.jsonl"])
    tokens_dir = workdir / "results/tokens"
    tokens_dir.mkdir(parents=True, exist_ok=True)
    with open(tokens_dir / "sentences.txt", "wb") as sink:
        for _ in range(factor):
            with open(previous / "results/tokens/sentences.txt", "rb") as source:
                shutil.copyfileobj(source, sink, 1 << 24)
    stats = json.loads((previous / "results/tokens/stats.json").read_text())
    for key in ("documents", "sentences", "tokens"):
        stats[key] *= factor
    stats["reused_from"] = f"{factor} x the {previous_copies}-copy corpus's tokenize output"
    (tokens_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    run(["--touch", "results/tokens/sentences.txt", "results/tokens/stats.json"])


def measure(source_documents: list[str], copies: int, workdir: Path, cores: int, timeout: int,
            reuse_from: tuple[Path, int] | None = None) -> dict:
    workflow_copy(workdir)
    start = time.perf_counter()
    write_corpus(workdir / "corpus.txt", source_documents, copies)
    print(f"  corpus: {copies} copies, {(workdir / 'corpus.txt').stat().st_size / 1e6:.0f} MB "
          f"({time.perf_counter() - start:.0f} s to write)", flush=True)
    hooks = workdir / "bench_hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    rusage_path = workdir / "rusage.jsonl"
    stand_in = workdir / "bin"  # the SLURM plugin's `scontrol` call blocks where no controller answers
    stand_in.mkdir()
    (stand_in / "scontrol").write_text("#!/bin/sh\nexit 1\n")
    (stand_in / "scontrol").chmod(0o755)
    env = dict(os.environ, PATH=f"{stand_in}{os.pathsep}{os.environ['PATH']}")
    snakemake = ["timeout", "-s", "KILL", str(timeout), sys.executable, "-m", "snakemake", "--cores", str(cores)]
    corpus = ["--config", "corpus=corpus.txt"]
    measured_env = dict(env, PYTHONPATH=str(hooks), **{RUSAGE_ENV: str(rusage_path)})

    def run(targets: list[str]) -> None:
        done = subprocess.run(snakemake + targets + corpus, cwd=workdir,
                              capture_output=True, text=True, env=measured_env)
        if done.returncode != 0:
            raise SystemExit(f"snakemake failed ({done.returncode}):\n{done.stderr[-3000:]}")

    start = time.perf_counter()
    if reuse_from:
        reuse_tokens(*reuse_from, copies, workdir, run)
    run(TARGETS)
    build_seconds = time.perf_counter() - start
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    rerun = subprocess.run(snakemake + TARGETS + corpus, cwd=workdir, capture_output=True, text=True, env=env)
    rerun_seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    rerun_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    nothing = "Nothing to be done" in rerun.stdout + rerun.stderr
    tokens = json.loads((workdir / "results/tokens/stats.json").read_text())
    usage = job_rusage(rusage_path)
    stages = {}
    for stage, (benchmark, _) in STAGES.items():
        if stage not in usage:  # tokenize, when its output was reused
            stages[stage] = None
            continue
        cpu = usage[stage]["cpu_s"]
        stages[stage] = {"wall_s": round(wall_seconds(workdir / "results/benchmarks" / benchmark), 2),
                         "cpu_s": round(cpu, 2), "peak_rss_mib": round(usage[stage]["peak_rss_mib"]),
                         "tokens_per_cpu_s": round(tokens["tokens"] / cpu) if cpu else None}
    return {"copies": copies, "tokens": tokens["tokens"], "sentences": tokens["sentences"],
            "documents": tokens["documents"], "corpus_bytes": (workdir / "corpus.txt").stat().st_size,
            "snakemake_build_s": round(build_seconds, 1), "no_change_rerun_s": round(rerun_seconds, 2), "no_change_rerun_cpu_s": round(rerun_cpu, 2),
            "no_change_rerun_did_nothing": nothing, "stages": stages}


def table(results: list[dict]) -> str:
    lines = ["| tokens | stage | wall s | CPU s | tokens / CPU-s | peak RSS MiB |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
    for result in results:
        for stage, numbers in result["stages"].items():
            if numbers is None:
                lines.append(f"| {result['tokens'] / 1e6:.1f}M | {stage} | not run: previous size's output repeated | | | |")
                continue
            lines.append(f"| {result['tokens'] / 1e6:.1f}M | {stage} | {numbers['wall_s']:.1f} | {numbers['cpu_s']:.1f} | "
                         f"{numbers['tokens_per_cpu_s']:,} | {numbers['peak_rss_mib']:,} |")
        vocab_index = result["stages"]["vocab"]["cpu_s"] + result["stages"]["index"]["cpu_s"]
        lines.append(f"| {result['tokens'] / 1e6:.1f}M | vocab + index | | {vocab_index:.1f} | "
                     f"{round(result['tokens'] / vocab_index):,} | |")
        lines.append(f"| {result['tokens'] / 1e6:.1f}M | no-change re-run | {result['no_change_rerun_s']:.1f} | "
                     f"{result['no_change_rerun_cpu_s']:.1f} | | |")
    lines += ["", "Growth of CPU time and peak RSS between sizes (exponent b of cost ∝ tokens^b; 1 = linear):", "",
              "| from → to | " + " | ".join(STAGES) + " |", "| --- |" + " ---: |" * len(STAGES)]
    for small, large in zip(results, results[1:]):
        ratio = math.log(large["tokens"] / small["tokens"])
        cells = []
        for stage in STAGES:
            if small["stages"][stage] is None or large["stages"][stage] is None:
                cells.append("")
                continue
            cpu = math.log(large["stages"][stage]["cpu_s"] / small["stages"][stage]["cpu_s"]) / ratio
            rss = math.log(large["stages"][stage]["peak_rss_mib"] / small["stages"][stage]["peak_rss_mib"]) / ratio
            cells.append(f"CPU {cpu:.2f}, RSS {rss:.2f}")
        lines.append(f"| {small['tokens'] / 1e6:.0f}M → {large['tokens'] / 1e6:.0f}M | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a real plain-text corpus to repeat")
    parser.add_argument("--tokens", type=float, nargs="+", default=[1e6, 1e7, 1e8], help="corpus sizes (tokens)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="where to build (default: a temporary directory)")
    parser.add_argument("--timeout", type=int, default=7200, help="seconds per Snakemake build")
    parser.add_argument("--keep", action="store_true", help="keep each size's directory")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--reuse-tokens-above", type=float, default=None,
                        help="sizes above this many tokens reuse the previous size's tokenize output (see above)")
    args = parser.parse_args()

    documents, per_copy = tokens_per_copy(args.source)
    print(f"{args.source}: {len(documents)} documents, {per_copy:,} tokens per copy", flush=True)
    base = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.workdir))
    results = []
    previous = None  # (workdir, copies) of the last size, kept while a later size may reuse its tokens
    try:
        for target in args.tokens:
            copies = max(1, round(target / per_copy))
            reuse = args.reuse_tokens_above is not None and target > args.reuse_tokens_above and previous
            if reuse:
                copies = max(1, round(copies / previous[1])) * previous[1]
            workdir = base / f"{target:.0e}"
            workdir.mkdir()
            print(f"{target:.0e} tokens:", flush=True)
            result = measure(documents, copies, workdir, args.cores, args.timeout, previous if reuse else None)
            results.append(result)
            print(json.dumps(result), flush=True)
            if previous and not args.keep:
                shutil.rmtree(previous[0])
            previous = (workdir, copies)
        if previous and not args.keep:
            shutil.rmtree(previous[0])
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"source": str(args.source), "cores": args.cores, "os_cpu_count": os.cpu_count(),
                                         "results": results}, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
