"""Regenerate the README's run-dependent figures from a finished pipeline run.

Reads `results/` of a `snakemake --cores all` run (the default config on the built-in corpus) and
  * writes benchmarks/readme_figures.json: every number the README quotes from that run (the
    committed record: tests/test_readme.py fails when README.md and this file disagree);
  * copies the report's vanishing-gradient figure to docs/img/gradient_norms.png;
  * with --update-readme, rewrites README.md's generated blocks (between
    `<!-- readme_figures:NAME -->` and `<!-- /readme_figures:NAME -->`) from the JSON.

Usage (from the repository root, after the quick start):
  python benchmarks/readme_figures.py --update-readme [--results results]
  python benchmarks/readme_figures.py --from-json --update-readme   # re-render from the committed JSON
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parent.parent
FIGURES_JSON = REPO_ROOT / "benchmarks" / "readme_figures.json"
README = REPO_ROOT / "README.md"
BLOCK = re.compile(r"(<!-- readme_figures:(\w+) -->\n)(.*?)(<!-- /readme_figures:\2 -->)", re.S)


def read(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def cpu_seconds(results: Path) -> dict[str, float]:
    """Sum of the `cpu_time` column of every Snakemake benchmark file, per stage folder."""
    totals: dict[str, float] = {}
    for path in sorted((results / "benchmarks").glob("*/*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        totals[path.parent.name] = totals.get(path.parent.name, 0.0) + float(frame["cpu_time"].sum())
    return totals


def _orders_of_magnitude(norms: list) -> tuple[int, float] | None:
    """(farthest distance with a measured norm, log10 of the norm's fall from distance 0 to there)."""
    measured = [(k, value) for k, value in enumerate(norms) if value]
    if len(measured) < 2:
        return None
    (_, first), (last_k, last) = measured[0], measured[-1]
    return last_k, math.log10(first / last)


def collect(results: Path) -> dict:
    """Every README figure of the run, as plain JSON values."""
    models = sorted(path.parent.name for path in (results / "models").glob("*/metrics.json"))
    ngram = read(next((results / "baseline").glob("kn*.json")))
    data, vocab = read(results / "data" / "stats.json"), read(results / "vocab" / "stats.json")
    figures: dict = {
        "corpus": {"train_tokens": data["train"]["tokens"], "vocabulary": vocab["size"],
                   "distinct_words": vocab["distinct_words"],
                   "unknown_rate": {split: data[split]["unknown_rate"] for split in ("train", "valid", "test")}},
        "ngram": {"order": ngram["order"], "test_perplexity": ngram["splits"]["test"]["perplexity"]},
        "models": {},
        "cpu_seconds": cpu_seconds(results),
    }
    for name in models:
        metrics = read(results / "models" / name / "metrics.json")["splits"]
        mixed = read(results / "models" / name / "interpolation.json")
        entry = {"valid": metrics["valid"]["perplexity"], "test": metrics["test"]["perplexity"],
                 "interpolated_test": mixed["splits"]["test"]["interpolated_perplexity"],
                 "weight_rnn": mixed["weight_rnn"], "vs_ngram": -mixed["splits"]["test"]["reduction_vs_ngram"]}
        diagnostics = results / "diagnostics" / name / "gradient_norms.json"
        if diagnostics.exists():
            result = read(diagnostics)
            for state in ("initial", "trained"):
                fall = _orders_of_magnitude(result[state]["mean_norm"])
                entry[state] = {"spectral_radius": result[state]["spectral_radius"],
                                "decay_per_step": result[state]["decay_per_step"],
                                "distance": fall[0] if fall else None, "orders_of_magnitude": fall[1] if fall else None}
        figures["models"][name] = entry
    return figures


def _number(value) -> str:
    return "—" if value is None else f"{value:.2f}"  # a gated cell's W is not square: no spectral radius


def render(figures: dict) -> dict[str, str]:
    """The README's generated blocks, by name, from the figures."""
    corpus, ngram, models, stages = figures["corpus"], figures["ngram"], figures["models"], figures["cpu_seconds"]
    train = stages.get("train", 0.0)
    quickstart = (f"The first command's jobs cost {sum(stages.values()):,.0f} CPU-seconds in all (the sum of "
                  f"`cpu_time` in `results/benchmarks/`, training {train:,.0f} of them).")
    unknown = " / ".join(f"{corpus['unknown_rate'][split]:.1%}" for split in ("train", "valid", "test"))
    results = [f"Corpus: {corpus['train_tokens']:,} training tokens, vocabulary {corpus['vocabulary']:,} of the train "
               f"split's {corpus['distinct_words']:,} distinct words ({unknown} of train / valid / test words "
               f"unknown); KN{ngram['order']} test perplexity {ngram['test_perplexity']:.1f}.", "",
               "| model | valid | test | + KN (weight) | vs KN |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, m in models.items():
        results.append(f"| `{name}` | {m['valid']:.1f} | {m['test']:.1f} | {m['interpolated_test']:.1f} "
                       f"({m['weight_rnn']:.2f}) | {m['vs_ngram']:+.1%} |")
    results += ["", "| model | spectral radius of W, initial → trained | gradient decay per step, initial → trained |",
                "| --- | --- | --- |"]
    gradients = []
    for name, m in models.items():
        if "trained" not in m:
            continue
        initial, trained = m["initial"], m["trained"]
        results.append(f"| `{name}` | {_number(initial['spectral_radius'])} → {_number(trained['spectral_radius'])} | "
                       f"{_number(initial['decay_per_step'])} → {_number(trained['decay_per_step'])} |")
        if trained["orders_of_magnitude"] is not None and initial["orders_of_magnitude"] is not None:
            gradients.append(f"`{name}` loses {trained['orders_of_magnitude']:.1f} orders of magnitude of gradient over "
                             f"{trained['distance']} words after training ({initial['orders_of_magnitude']:.1f} at "
                             f"initialisation; decay per step {_number(initial['decay_per_step'])} → "
                             f"{_number(trained['decay_per_step'])})")
    results += ["", "CPU-seconds (Snakemake benchmark files): " + ", ".join(
        f"{stage} {seconds:,.0f}" for stage, seconds in stages.items()) + f"; total {sum(stages.values()):,.0f}."]
    return {"quickstart": quickstart, "results": "\n".join(results),
            "gradients": "In the quick start's run " + "; ".join(gradients) + "."}


def readme_blocks(text: str) -> dict[str, str]:
    """The generated blocks of README.md's text, by name (without their trailing newline)."""
    return {match.group(2): match.group(3).rstrip("\n") for match in BLOCK.finditer(text)}


def update_readme(text: str, blocks: dict[str, str]) -> str:
    return BLOCK.sub(lambda m: f"{m.group(1)}{blocks[m.group(2)]}\n{m.group(4)}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "results")
    parser.add_argument("--image", type=Path, default=REPO_ROOT / "docs" / "img" / "gradient_norms.png")
    parser.add_argument("--json", type=Path, default=FIGURES_JSON)
    parser.add_argument("--from-json", action="store_true", help="render from the committed JSON, read no results")
    parser.add_argument("--update-readme", action="store_true", help="rewrite README.md's generated blocks")
    args = parser.parse_args(argv)
    if not args.from_json:
        figure = args.results / "report" / "gradient_norms.png"
        if not figure.exists():
            print(f"{figure} not found: run `snakemake --cores all` first", file=sys.stderr)
            return 1
        shutil.copyfile(figure, args.image)
        args.json.write_text(json.dumps(collect(args.results), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    blocks = render(read(args.json))
    if args.update_readme:
        README.write_text(update_readme(README.read_text(encoding="utf-8"), blocks), encoding="utf-8")
    print("\n\n".join(blocks.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
