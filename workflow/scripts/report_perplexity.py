"""Snakemake glue for rule report_perplexity: see rnnlm.report.build_perplexity_table."""

from rnnlm.io import log_to
from rnnlm.report import build_perplexity_table

log_to(snakemake.log[0])
build_perplexity_table(
    dict(zip(snakemake.params.models, snakemake.input.metrics)),
    snakemake.output.csv,
    snakemake.output.html,
    ngram_paths=[snakemake.input.ngram],
    interpolation_paths=dict(zip(snakemake.params.models, snakemake.input.interpolations)),
)
