"""Snakemake glue for the sharded tokenize stage, step 1 (rnnlm.tokenize_shards.save_sentence_splitter)."""

from rnnlm.io import log_to
from rnnlm.tokenize_shards import save_sentence_splitter

log_to(snakemake.log[0])

save_sentence_splitter(
    snakemake.input.documents, snakemake.output.splitter, normalize_quotes=snakemake.params.normalize_quotes
)
