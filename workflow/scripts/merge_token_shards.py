"""Snakemake glue for the sharded tokenize stage, step 3 (rnnlm.tokenize_shards.merge_shards)."""

from rnnlm.io import log_to
from rnnlm.tokenize_shards import merge_shards

log_to(snakemake.log[0])

merge_shards(
    list(snakemake.input.sentences),
    list(snakemake.input.words),
    list(snakemake.input.stats),
    snakemake.output.sentences,
    snakemake.output.stats,
)
