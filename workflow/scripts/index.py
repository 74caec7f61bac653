"""Snakemake glue for the index stage (rnnlm.data.build_index)."""

from rnnlm.data import build_index
from rnnlm.io import log_to

log_to(snakemake.log[0])

build_index(
    snakemake.input.sentences,
    snakemake.input.vocab,
    {"train": snakemake.output.train, "valid": snakemake.output.valid, "test": snakemake.output.test},
    snakemake.output.stats,
    min_length=snakemake.params.min_sentence_length,
    max_length=snakemake.params.max_sentence_length,
    valid_fraction=snakemake.params.valid_fraction,
    test_fraction=snakemake.params.test_fraction,
    seed=snakemake.params.split_seed,
)
