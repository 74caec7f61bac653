"""Snakemake glue for a standard-split corpus (rnnlm.pretokenized.prepare_splits)."""

from rnnlm.io import log_to
from rnnlm.pretokenized import SPLIT_FILES, prepare_splits

log_to(snakemake.log[0])

prepare_splits(
    {split: snakemake.input[split] for split in SPLIT_FILES},
    {split: snakemake.output[split] for split in SPLIT_FILES},
    snakemake.output.stats,
    unknown_token=snakemake.params.unknown_token,
    encoding_errors=snakemake.params.encoding_errors,
    split_stats_path=snakemake.output.split_stats,
)
