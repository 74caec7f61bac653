"""Snakemake glue for the vocab stage (rnnlm.vocab.build_vocabulary)."""

from rnnlm.io import log_to
from rnnlm.vocab import build_vocabulary

log_to(snakemake.log[0])

build_vocabulary(
    snakemake.input.sentences,
    snakemake.output.vocab,
    snakemake.output.stats,
    snakemake.params.vocabulary_size,
    min_length=snakemake.params.min_sentence_length,
    max_length=snakemake.params.max_sentence_length,
)
