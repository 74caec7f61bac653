"""Snakemake glue for rule report_corpus: see rnnlm.report.build_corpus_report."""

from rnnlm.io import log_to
from rnnlm.report import build_corpus_report

log_to(snakemake.log[0])
build_corpus_report(
    snakemake.input.vocab,
    dict(zip(snakemake.params.splits, snakemake.input.splits)),
    {
        "Tokenization (tokens/stats.json)": snakemake.input.tokens_stats,
        "Split (tokens/split.json)": snakemake.input.split_stats,
        "Vocabulary (vocab/stats.json)": snakemake.input.vocab_stats,
        "Index matrices (data/stats.json)": snakemake.input.data_stats,
    },
    snakemake.output.zipf,
    snakemake.output.html,
)
