"""Snakemake glue for the index stage (rnnlm.data.build_index)."""

from rnnlm.data import SPLIT_NAMES, build_index
from rnnlm.io import log_to

log_to(snakemake.log[0])

build_index(
    {split: snakemake.input[split] for split in SPLIT_NAMES},
    snakemake.input.vocab,
    {split: snakemake.output[split] for split in SPLIT_NAMES},
    snakemake.output.stats,
    split_stats_path=snakemake.input.split_stats,
    min_length=snakemake.params.min_sentence_length,
    max_length=snakemake.params.max_sentence_length,
)
