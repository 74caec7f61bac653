"""Regenerate the README's run-dependent figures and tables from a finished pipeline run.

Reads `results/` of a `snakemake --cores all` run (the default config on the built-in corpus, or
any other config) and writes:
  * docs/img/gradient_norms.png: the report's vanishing-gradient figure of that run;
  * a Markdown block on standard output: the perplexity table (each model alone and interpolated
    with the n-gram baseline), the spectral radii and gradient decay of the diagnostics, the
    vocabulary's unknown-token rate and the run's CPU-seconds per stage (Snakemake benchmark files),
    ready to paste into README.md's "Results" section.

Usage (from the repository root, after the quick start):
  python benchmarks/readme_figures.py [--results results] [--image docs/img/gradient_norms.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent


def read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def cpu_seconds(results: Path) -> dict[str, float]:
    """Sum of the `cpu_time` column of every Snakemake benchmark file, per stage folder."""
    totals: dict[str, float] = {}
    for path in sorted((results / "benchmarks").glob("*/*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        totals[path.parent.name] = totals.get(path.parent.name, 0.0) + float(frame["cpu_time"].sum())
    return totals


def _number(value) -> str:
    return "—" if value is None else f"{value:.2f}"  # a gated cell's W is not square: no spectral radius


def markdown(results: Path) -> str:
    models = sorted(path.parent.name for path in (results / "models").glob("*/metrics.json"))
    ngram_path = next((results / "baseline").glob("kn*.json"))
    ngram = read(ngram_path)
    data, vocab = read(results / "data" / "stats.json"), read(results / "vocab" / "stats.json")
    unknown = " / ".join(f"{data[split]['unknown_rate']:.1%}" for split in ("train", "valid", "test"))
    lines = [f"Corpus: {data['train']['tokens']:,} training tokens, vocabulary {vocab['size']:,} of the train split's "
             f"{vocab['distinct_words']:,} distinct words ({unknown} of train / valid / test words unknown); "
             f"KN{ngram['order']} test perplexity {ngram['splits']['test']['perplexity']:.1f}.", "",
             "| model | valid | test | + KN (weight) | vs KN |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in models:
        metrics = read(results / "models" / name / "metrics.json")["splits"]
        mixed = read(results / "models" / name / "interpolation.json")
        test = mixed["splits"]["test"]
        lines.append(f"| `{name}` | {metrics['valid']['perplexity']:.1f} | {metrics['test']['perplexity']:.1f} | "
                     f"{test['interpolated_perplexity']:.1f} ({mixed['weight_rnn']:.2f}) | "
                     f"{-test['reduction_vs_ngram']:+.1%} |")
    lines += ["", "| model | spectral radius of W, initial → trained | gradient decay per step, initial → trained |",
              "| --- | --- | --- |"]
    for name in models:
        path = results / "diagnostics" / name / "gradient_norms.json"
        if path.exists():
            result = read(path)
            lines.append(f"| `{name}` | {_number(result['initial']['spectral_radius'])} → "
                         f"{_number(result['trained']['spectral_radius'])} | "
                         f"{_number(result['initial']['decay_per_step'])} → {_number(result['trained']['decay_per_step'])} |")
    stages = cpu_seconds(results)
    lines += ["", "CPU-seconds (Snakemake benchmark files): " + ", ".join(
        f"{stage} {seconds:,.0f}" for stage, seconds in stages.items()) + f"; total {sum(stages.values()):,.0f}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    parser.add_argument("--image", type=Path, default=REPO_ROOT / "docs" / "img" / "gradient_norms.png")
    args = parser.parse_args(argv)
    figure = args.results / "report" / "gradient_norms.png"
    if not figure.exists():
        print(f"{figure} not found: run `snakemake --cores all` first", file=sys.stderr)
        return 1
    shutil.copyfile(figure, args.image)
    print(markdown(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
