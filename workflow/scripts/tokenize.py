"""Snakemake glue for the tokenize stage (rnnlm.tokenize.tokenize_corpus)."""

from rnnlm.io import log_to
from rnnlm.tokenize import tokenize_corpus

log_to(snakemake.log[0])

tokenize_corpus(
    snakemake.input.documents,
    snakemake.output.sentences,
    snakemake.output.stats,
    lowercase=snakemake.params.lowercase,
    normalize_quotes=snakemake.params.normalize_quotes,
    processes=snakemake.threads,
)
