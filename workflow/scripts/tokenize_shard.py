"""Snakemake glue for the sharded tokenize stage, step 2 (rnnlm.tokenize_shards.tokenize_shard)."""

from rnnlm.io import log_to
from rnnlm.tokenize_shards import tokenize_shard

log_to(snakemake.log[0])

tokenize_shard(
    snakemake.input.documents,
    snakemake.input.splitter,
    snakemake.wildcards.scatteritem,
    snakemake.output.sentences,
    snakemake.output.words,
    snakemake.output.stats,
    lowercase=snakemake.params.lowercase,
    normalize_quotes=snakemake.params.normalize_quotes,
    processes=snakemake.threads,
)
